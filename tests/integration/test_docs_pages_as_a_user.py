"""README.md and the docs pages checked as a new user reads them, after ``make demo``: what the pages' own runs
leave unchecked, each against the page's own words.

The pages' blocks run elsewhere: ``test_framework_guides_as_a_user.py`` (pytorch, tensorflow, jax),
``tests/spark/test_examples_spark.py`` and ``test_spark_guide_as_a_user.py`` (spark),
``tests/reader_impl/test_elastic_docs.py`` (elastic_resume), ``test_readme_snippets.py`` (the README's blocks
exit 0); ``tests/test_settings.py`` checks docs/settings.md's table, ``tests/compat/test_original_error_wording.py``
docs/original_errors.md. Here:

- README: the values its snippets' comments promise (the training block's last batch of 4 rows, the
  ``ValueError`` of ``device='cuda'`` without CUDA, a reader's state "small, JSON"), ``print(reader.explain())``,
  the Tuning list against ``petastorm/settings.py``, and the writing block run from stdin (a shell heredoc).
- docs/settings.md: its block, and the error message it quotes, from a fresh interpreter.
- docs/migration.md: the rows of "Cases where the original did not raise, and we do", the ``filters`` example
  on ``legacy/0.7.6``, the deprecated arguments' warnings and the ``ReaderMock`` row.
- README: every ``make`` target of the Makefile is named.
- docs/architecture.md: the reader state's keys, two module/function names, and every module of the package
  in its module map.
- docs/spark.md: the converter block's batches against the dtypes and shapes its comments give; every console
  script in its tools list and table, each option it names taken by the tool, ``petastorm-explain`` as described.
- docs/api/: every module or name the pages above tell users to import or call has an API page; every page
  is in the reference's index.

Found by the docs review (helper Y6) and fixed in the pages: the README said ``reader.explain()`` "prints" (it
returns a ``ReadPlan`` and prints nothing), its Tuning list lacked ``PETASTORM_MMAP_READ`` and a parenthesis
was left open; migration.md said ``ReaderMock``'s example generator gives "numpy scalars ... both compare the
same" (0.12.1's gives zeros in every row, ours random values); architecture.md listed 7 of the state's 9 keys
and two names that moved. Found in the code and fixed: the README's writing block failed from stdin (the
encoding workers tried to run `<cwd>/<stdin>`), and `--unischema_class` of a module that cannot be imported
did not say so. Found by the review of round K (helper K7) and fixed in the pages: ``petastorm-explain`` was in no
guide's tools list; ``Reader.explain()``'s ``ReadPlan``, ``petastorm.spark_types``, ``register_delete_dir_handler``
and ``clear_segment_cache`` had no API page.
"""
import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.errors import DatasetNotFoundError, PetastormArgumentError, PetastormDatasetError
from petastorm.settings import SETTINGS_TABLE, Settings
from petastorm.test_util.reader_mock import ReaderMock, schema_data_generator_example

from .test_framework_guides_as_a_user import _blocks, _result, _run
from .test_readme_snippets import _readme_blocks

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _page(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def _section(text, title):
    """The text of the Markdown section ``## title`` (up to the next ``## ``)."""
    return re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M).group(1)


# --- README.md ---------------------------------------------------------------------------------------------

README_TRAILER = """
import json
from petastorm import make_reader
with make_reader('file:///tmp/hello_world', seed=7, shuffle_rows=True) as r:
    next(iter(r))
    reader_state = r.state_dict()
    plan = str(r.explain())
    returned = r.explain()
cuda_reader = make_batch_reader('file:///tmp/hello_world', num_epochs=1)
try:
    BatchedDataLoader(cuda_reader, batch_size=16, device='cuda')
    cuda_error = None
except ValueError as e:
    cuda_error = str(e)
finally:
    cuda_reader.stop()
    cuda_reader.join()
print('RESULT ' + json.dumps({'last': [str(images.dtype), list(images.shape)], 'device': images.device.type,
      'loader_state': sorted(state), 'reader_state': json.dumps(reader_state), 'plan': plan,
      'returned': type(returned).__name__, 'cuda': torch.cuda.is_available(), 'cuda_error': cuda_error}))
"""


@pytest.mark.slow
def test_readme_training_block_gives_what_its_comments_say(tmp_path):
    write, _, train = _readme_blocks()
    dataset = str(tmp_path / "hello_world")
    _run(write.replace("/tmp/hello_world", dataset), tmp_path / "write.py")
    got = _result(_run((train + README_TRAILER).replace("/tmp/hello_world", dataset), tmp_path / "train.py"))
    # "torch.uint8 (16, 128, 256, 3); the last batch of the pass: 4 rows" (100 rows, batch_size=16)
    assert got["last"] == ["torch.uint8", [4, 128, 256, 3]]
    assert got["device"] == ("cuda" if got["cuda"] else "cpu")
    assert got["loader_state"]                     # "exact resume: load_state_dict(state) on a new loader"
    # "Resumable: state = reader.state_dict() (small, JSON)"
    assert len(got["reader_state"]) < 4096 and json.loads(got["reader_state"])
    # "print(reader.explain()) ... shows what will be read, pruned and dealt to each shard"
    assert got["returned"] == "ReadPlan" and got["plan"].startswith(f"Read plan of file://{dataset}")
    assert "Rows per epoch" in got["plan"] and "Shuffle quality" in got["plan"]
    if not got["cuda"]:                            # "device='cuda' without CUDA is a ValueError that says so"
        assert "device='cuda'" in got["cuda_error"] and "CUDA is not available" in got["cuda_error"]


@pytest.mark.slow
def test_readme_writing_block_runs_from_stdin(tmp_path):
    # a shell heredoc (`python - <<'EOF'`), as in CI scripts: the block has its `if __name__ == '__main__':`
    write = _readme_blocks()[0].replace("/tmp/hello_world", str(tmp_path / "hello_world"))
    out = subprocess.run([sys.executable, "-"], input=write, capture_output=True, text=True, timeout=300,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "hello_world" / "_common_metadata").exists()


def test_readme_says_print_reader_explain_as_explain_prints_nothing():
    readme = _page("README.md")
    assert "`print(reader.explain())`" in readme and "`reader.explain()` (and" not in readme


def test_readme_tuning_lists_every_setting_with_its_default():
    tuning = _section(_page("README.md"), "Tuning")
    listed = dict(re.findall(r"^- `(PETASTORM_\w+)` \(([^)]*)\)", tuning, re.M))
    assert sorted(listed) == sorted(var.name for var in SETTINGS_TABLE)
    defaults = Settings()
    for var in SETTINGS_TABLE:
        value = getattr(defaults, var.field)
        if isinstance(value, bool):
            assert listed[var.name] == ("on" if value else "off"), var.name
        elif isinstance(value, float):
            assert float(listed[var.name]) == value, var.name


def test_readme_development_names_every_make_target():
    # make test-spark4, compat-diff and gpu-check were in no page the README links
    with open(os.path.join(ROOT, "Makefile")) as f:
        targets = re.search(r"^\.PHONY:(.*)$", f.read(), re.M).group(1).split()
    readme = _page("README.md")
    assert [t for t in targets if not re.search(rf"\bmake {t}\b", readme)] == []


def test_readme_storage_options_parenthesis_is_closed():
    reading = _section(_page("README.md"), "Reading")
    assert reading.count("(") == reading.count(")")


# --- docs/settings.md --------------------------------------------------------------------------------------

def test_settings_page_block_runs_and_its_quoted_error_is_the_real_one(tmp_path):
    page = _page(os.path.join("docs", "settings.md"))
    (block,) = _blocks("settings.md")
    quoted = re.search(r"for example `(PETASTORM_SHM_CACHE_MB=.*?)`:", page, re.S).group(1)
    trailer = """
import json, os
os.environ['PETASTORM_SHM_CACHE_MB'] = 'lots'
from petastorm import make_reader
from petastorm.errors import PetastormArgumentError
try:
    make_reader('file:///nowhere')
except PetastormArgumentError as e:
    print('RESULT ' + json.dumps({'error': str(e), 'value_error': isinstance(e, ValueError)}))
"""
    got = _result(_run(block + trailer, tmp_path / "settings_page.py"))
    assert got["value_error"]
    assert " ".join(quoted.split()) in got["error"]   # the page wraps the quoted message over two lines


# --- docs/migration.md -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("plain")
    pq.write_table(pa.table({"id": pa.array(range(10), pa.int32())}), str(path / "part-0.parquet"))
    return "file://" + str(path)


def _raises(cls, fn, *args, **kwargs):
    with pytest.raises(cls) as info:
        reader = fn(*args, **kwargs)
        reader.stop()
        reader.join()
    return str(info.value)


def test_migration_cases_where_the_original_did_not_raise(plain_store, tmp_path):
    # "`cur_shard >= shard_count`, or negative | a UserWarning and no rows | ValueError naming both arguments"
    for shard in (2, -1):
        message = _raises(ValueError, make_batch_reader, plain_store, cur_shard=shard, shard_count=2)
        assert "cur_shard" in message and "shard_count" in message
    # "`workers_count` <= 0 | hangs | ValueError naming the argument"
    assert "workers_count" in _raises(ValueError, make_batch_reader, plain_store, workers_count=0)
    # "an empty directory | IndexError | PetastormDatasetError: no Parquet files found in ..."
    (tmp_path / "empty").mkdir()
    assert "no Parquet files found in" in _raises(PetastormDatasetError, make_batch_reader,
                                                  "file://" + str(tmp_path / "empty"))
    # "a missing path | OSError: Passed non-file path | DatasetNotFoundError (a FileNotFoundError), same words"
    message = _raises(FileNotFoundError, make_reader, "file://" + str(tmp_path / "missing"))
    assert "Passed non-file path" in message and issubclass(DatasetNotFoundError, FileNotFoundError)
    # "make_reader(None), make_reader(123): ValueError: directory url must be a string; make_reader([]):
    # ValueError: dataset url list must be non-empty. (Both factories.)"
    for factory in (make_reader, make_batch_reader):
        for bad in (None, 123):
            assert _raises(PetastormArgumentError, factory, bad).startswith("directory url must be a string")
        assert _raises(ValueError, factory, []).startswith("dataset url list must be non-empty.")


def test_migration_filters_example_on_legacy_0_7_6(testdata_dir):
    # "on the 100-row legacy dataset legacy/0.7.6, [('id', '<', 15)] gave all 100 rows [in 0.12.1]": now 15
    url = "file://" + os.path.join(testdata_dir, "legacy", "0.7.6")
    with make_reader(url, filters=[("id", "<", 15)], workers_count=1) as reader:
        assert sorted(int(row.id) for row in reader) == list(range(15))
    with make_batch_reader(url, filters=[("id", "<", 15)], schema_fields=["id"], workers_count=1) as reader:
        assert sorted(int(i) for batch in reader for i in batch.id) == list(range(15))


def test_migration_sharding_after_filters_and_before_the_selector(testdata_dir):
    # "the shards deal out the row groups that the filters leave (fewer of them than shards ... raises
    # NoDataAvailableError); then each shard keeps those its rowgroup_selector ... accept (a shard left with
    # none warns ... and yields nothing)": both recorded from 0.12.1 on legacy/0.7.6 (p_1 holds one row group)
    from petastorm.errors import NoDataAvailableError
    from petastorm.selectors import SingleIndexSelector

    url = "file://" + os.path.join(testdata_dir, "legacy", "0.7.6")
    for shard in (0, 1):
        with pytest.raises(NoDataAvailableError):
            make_reader(url, filters=[("partition_key", "=", "p_1")], cur_shard=shard, shard_count=2)
        with pytest.warns(UserWarning, match="No matching data is available for loading"):
            with make_reader(url, rowgroup_selector=SingleIndexSelector("id", [99999]), cur_shard=shard,
                             shard_count=2, workers_count=1) as reader:
                assert list(reader) == []


def test_migration_kept_for_compatibility_arguments_warn(plain_store):
    # "pyarrow_serialize and zmq_copy_buffers are accepted with a DeprecationWarning ... shard_seed warns"
    for kwargs, category in (({"pyarrow_serialize": True}, DeprecationWarning),
                             ({"zmq_copy_buffers": False}, DeprecationWarning),
                             ({"shard_seed": 3}, UserWarning)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with make_reader(plain_store, **kwargs):
                pass
        assert any(issubclass(w.category, category) and next(iter(kwargs)) in str(w.message) for w in caught), \
            kwargs


def test_migration_reader_mock_row_as_the_page_says():
    # the page's row: 0.12.1 gave the same row every time, 0-d arrays of zeros (recorded from 0.12.1:
    # id -> array(0, dtype=int32), f -> array(0.)); so does ours; schema_data_generator_random varies
    from petastorm.codecs import ScalarCodec
    from petastorm.spark_types import DoubleType, IntegerType
    from petastorm.test_util.reader_mock import schema_data_generator_random
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("S", [UnischemaField("id", np.int32, (), ScalarCodec(IntegerType()), False),
                             UnischemaField("f", np.float64, (), ScalarCodec(DoubleType()), False)])
    rows = [row for row, _ in zip(ReaderMock(schema, schema_data_generator_example), range(5))]
    assert all(type(row.id) is np.ndarray and row.id.shape == () and row.id == 0 and row.f == 0 for row in rows)
    rows = [row for row, _ in zip(ReaderMock(schema, schema_data_generator_random), range(20))]
    assert all(type(row.id) is np.int32 and type(row.f) is np.float64 for row in rows)   # numpy scalars
    assert len({float(row.f) for row in rows}) > 1                                       # new in every row
    page = _page(os.path.join("docs", "migration.md"))
    assert "| `ReaderMock(schema, schema_data_generator_example)` rows | the same row every time" in page


# --- docs/architecture.md ----------------------------------------------------------------------------------

def test_architecture_state_keys_are_those_of_a_reader_state(plain_store):
    # the page listed 7 keys ("dataset fingerprint", ...) where a state has 9 (options, extra)
    listed = re.search(r"The state is `\{(.*?)\}`", _page(os.path.join("docs", "architecture.md")), re.S).group(1)
    with make_batch_reader(plain_store) as reader:
        next(iter(reader))
        state = reader.state_dict()
    assert sorted(" ".join(listed.split()).split(", ")) == sorted(state)


def test_architecture_names_the_modules_and_functions_that_exist():
    from petastorm.reader_impl.process import fork_server, result_pickle

    page = _page(os.path.join("docs", "architecture.md"))
    assert "`fork_server.main_module_not_reimported()`" in page and fork_server.main_module_not_reimported
    assert "(`process/result_pickle.py`, `ResultPickler.reducer_override`)" in page
    assert "reducer_override" in vars(result_pickle.ResultPickler)


def test_architecture_module_map_names_every_module_of_the_package():
    # the map lacked passing_rows.py, row_filters.py, row_blocks.py, read_plan.py, ... (modules added or split
    # after it was written); a module is named by its file name, in its package's entry
    page = _page(os.path.join("docs", "architecture.md"))
    package = os.path.join(ROOT, "petastorm")
    missing = sorted(os.path.relpath(os.path.join(d, f), package) for d, _, files in os.walk(package) for f in files
                     if f.endswith(".py") and f != "__init__.py" and not re.search(rf"\b{re.escape(f)}\b", page))
    assert missing == []


# --- docs/spark.md -----------------------------------------------------------------------------------------

_LOADER_COMMENT = re.compile(r"^(\s*)x, pair = .*#\s*(\w+)\.(\w+) \((\d+),\), \w+\.(\w+) \((\d+), (\d+)\)\s*$")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_spark_converter_block_gives_the_dtypes_and_shapes_of_its_comments(spark_session, tmp_path):
    # `x, pair = batch['x'], batch['pair']   # torch.float32 (100,), torch.int64 (100, 2)` (and the tf line):
    # tests/spark/test_examples_spark.py runs the block; here each batch is checked against its comment
    (block,) = [b for b in _blocks("spark.md") if "make_spark_converter(df)" in b and ".remote(" not in b]
    lines, promised = [], []
    for line in block.splitlines():
        lines.append(line)
        match = _LOADER_COMMENT.match(line)
        if match:
            indent, framework, x_dtype, rows, pair_dtype, pair_rows, width = match.groups()
            promised.append((framework, x_dtype, (int(rows),), pair_dtype, (int(pair_rows), int(width))))
            lines.append(f"{indent}seen.append(({framework!r}, getattr(x.dtype, 'name', str(x.dtype)), "
                         f"tuple(x.shape), getattr(pair.dtype, 'name', str(pair.dtype)), tuple(pair.shape)))")
    assert [p[0] for p in promised] == ["torch", "tf"]
    conf = "petastorm.spark.converter.parentCacheDirUrl"
    previous = spark_session.conf.get(conf, None)
    namespace = {"spark": spark_session, "seen": []}
    try:
        exec(compile("\n".join(lines).replace("file:///tmp/", f"file://{tmp_path}/"), "spark.md", "exec"), namespace)
    finally:
        if previous is None:
            spark_session.conf.unset(conf)
        else:
            spark_session.conf.set(conf, previous)
    seen = namespace["seen"]
    for framework, x_dtype, x_shape, pair_dtype, pair_shape in promised:
        got = {(d1.replace("torch.", ""), s1, d2.replace("torch.", ""), s2)
               for f, d1, s1, d2, s2 in seen if f == framework}
        assert got == {(x_dtype, x_shape, pair_dtype, pair_shape)}, (framework, got)
    assert len(seen) == 2 * 1000 // 100                 # spark.range(1000), batch_size=100, one pass each


def test_generate_metadata_unischema_class_in_the_current_directory_names_the_import(plain_store, tmp_path):
    # docs/spark.md: `petastorm-generate-metadata --dataset_url URL [--unischema_class module.Schema]`; a user's
    # schema module sits in the directory they run the tool from
    (tmp_path / "hw_schema.py").write_text(
        "import numpy as np\nfrom petastorm.codecs import ScalarCodec\nfrom petastorm.spark_types import IntegerType\n"
        "from petastorm.unischema import Unischema, UnischemaField\n"
        "Schema = Unischema('Schema', [UnischemaField('id', np.int32, (), ScalarCodec(IntegerType()), False)])\n")
    tool = os.path.join(os.path.dirname(sys.executable), "petastorm-generate-metadata")
    env = dict(os.environ)   # the current directory off PYTHONPATH, as in a plain shell
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p not in ("", "."))
    out = subprocess.run([tool, "--dataset_url", plain_store, "--unischema_class", "hw_schema.Schema", "--no-progress"],
                         capture_output=True, text=True, timeout=120, cwd=str(tmp_path), env=env)
    assert out.returncode == 1 and "petastorm-generate-metadata: error: " in out.stderr
    assert re.search(r"hw_schema\b.*(not|cannot|could not) be imported|No module named 'hw_schema'", out.stderr), \
        out.stderr


def _tools_section():
    return _section(_page(os.path.join("docs", "spark.md")), "Command-line tools")


def _console_scripts():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return sorted(name for name in tomllib.load(f)["project"]["scripts"] if not name.endswith(".py"))


def test_spark_guide_lists_every_console_script_with_options_it_takes():
    # "Console scripts, each with `--help`": petastorm-explain was missing from the list and the table
    section, page = _tools_section(), _page(os.path.join("docs", "spark.md"))
    bin_dir = os.path.dirname(sys.executable)
    for name in _console_scripts():
        usage = re.search(rf"^- `({re.escape(name)} [^`]*)`", section, re.M | re.S)
        assert usage, f"{name} is not listed in docs/spark.md's Command-line tools"
        assert f"| `{name}` |" in page, f"{name} is not in docs/spark.md's table"
        out = subprocess.run([os.path.join(bin_dir, name), "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        for flag in set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage.group(1))):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}\b", out.stdout), f"{name}: {flag} is not an option"


def test_petastorm_explain_prints_the_plan_and_its_json_as_the_spark_guide_says(plain_store):
    # "prints what a reader with these options would read, reading no data ... `--json` prints
    # `ReadPlan.to_dict()`. From Python: `print(reader.explain())`"
    tool = os.path.join(os.path.dirname(sys.executable), "petastorm-explain")
    args = [plain_store, "--shard", "0", "--shard-count", "2", "--shard-mode", "balanced", "--seed", "1"]
    table = subprocess.run([tool] + args, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert "Rows per epoch" in table.stdout and "shard 0 of 2 (balanced)" in table.stdout
    as_json = subprocess.run([tool] + args + ["--json"], capture_output=True, text=True, timeout=120)
    assert as_json.returncode == 0, as_json.stderr
    with make_batch_reader(plain_store, cur_shard=0, shard_count=2, shard_mode="balanced", seed=1) as reader:
        expected = reader.explain().to_dict()
    got = json.loads(as_json.stdout)
    assert sorted(got) == sorted(expected) and got["shards"] == json.loads(json.dumps(expected["shards"]))


# --- docs/api/ ---------------------------------------------------------------------------------------------

def _api_documented():
    """(modules, objects) that the API reference's pages document."""
    modules, objects = set(), set()
    for name in os.listdir(os.path.join(ROOT, "docs", "api")):
        text = _page(os.path.join("docs", "api", name))
        modules.update(re.findall(r"^\.\. automodule:: ([\w.]+)", text, re.M))
        objects.update(re.findall(r"^\.\. auto(?:function|class):: ([\w.]+)", text, re.M))
    return modules, objects


def _is_module(dotted):
    import importlib.util

    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:  # a function or class of a module: 'petastorm.etl.dataset_metadata.get_schema'
        return False


def test_api_reference_documents_every_module_and_name_the_pages_tell_users_to_use():
    # the README said `petastorm.spark_types` and docs/settings.md `petastorm.reader_impl.process.clear_segment_cache()`,
    # Reader.explain() returns a ReadPlan: none of them had an API page
    modules, objects = _api_documented()
    pages = ["README.md"] + [os.path.join("docs", p) for p in ("index.md", "migration.md", "settings.md",
                                                                "elastic_resume.md", "spark.md", "benchmarks.md")]
    undocumented = set()
    for page in pages:
        for dotted in set(re.findall(r"\bpetastorm(?:\.\w+)+", _page(page))):
            parts = dotted.split(".")
            module = next(".".join(parts[:i]) for i in range(len(parts), 0, -1) if _is_module(".".join(parts[:i])))
            if module not in modules and dotted not in objects:
                undocumented.add(f"{page}: {dotted}")
    assert not undocumented
    assert "petastorm.reader_impl.explain" in modules


def test_api_reference_lists_every_page_and_documents_the_top_level_exports():
    # docs/api/petastorm.md documents `petastorm.__all__` (make_reader, ..., merge_state_dicts) where users import it
    petastorm_page = _page(os.path.join("docs", "api", "petastorm.md"))
    assert re.search(r"^\.\. automodule:: petastorm$", petastorm_page, re.M) and ":members:" not in petastorm_page
    index = _page(os.path.join("docs", "api", "index.md"))
    listed = set(re.findall(r"^(\w+)$", index, re.M))
    pages = {name[:-3] for name in os.listdir(os.path.join(ROOT, "docs", "api")) if name != "index.md"}
    assert pages <= listed, sorted(pages - listed)
