"""petastorm-copy-dataset: copy_dataset with a real local Spark, the command line, bad input.

Expected values marked "0.12.1" were recorded by running the original's petastorm-copy-dataset.py on the
same source (shared/testdata/original-0.12.1/all_codecs_0.12.1, 60 rows, ``maybe_int`` null when id % 5 == 0).
"""
import inspect
import os
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from _fixtures.cli import assert_one_line_error, run_console_script

from petastorm import make_reader
from petastorm.errors import DatasetNotFoundError, NoMatchingFieldsError, PetastormArgumentError
from petastorm.etl.dataset_metadata import get_schema_from_dataset_url
from petastorm.tools.copy_dataset import _main, args_parser, copy_dataset

SCRIPTS = ["petastorm-copy-dataset", "petastorm-copy-dataset.py"]
TIMEOUT = 120


@pytest.fixture(scope="module")
def source_url(testdata_dir):
    return "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")


def _rows_by_id(url, fields=None):
    with make_reader(url, schema_fields=fields, workers_count=1, shuffle_row_groups=False) as reader:
        return {int(row.id): row for row in reader}


def _data_files(path):
    return sorted(f for f in os.listdir(path) if f.endswith(".parquet"))


def _run_script(name, *args):
    return run_console_script(name, *args, timeout=TIMEOUT, SPARK_LOCAL_IP="127.0.0.1")


def _assert_one_line_error(stderr, *words):
    assert_one_line_error(stderr, "petastorm-copy-dataset", *words)


# --- the interface recorded from 0.12.1 ----------------------------------------------------------------------

def test_copy_dataset_signature_is_the_originals():
    # 0.12.1: copy_dataset(spark, source_url, target_url, field_regex, not_null_fields, overwrite_output,
    #                      partitions_count, row_group_size_mb, hdfs_driver='libhdfs3')
    params = inspect.signature(copy_dataset).parameters
    assert list(params)[:9] == ["spark", "source_url", "target_url", "field_regex", "not_null_fields",
                                "overwrite_output", "partitions_count", "row_group_size_mb", "hdfs_driver"]
    assert params["hdfs_driver"].default == "libhdfs3"
    assert all(p.kind is p.KEYWORD_ONLY for p in list(params.values())[9:])


def test_command_line_defaults_are_the_originals():
    # 0.12.1 parse of "a b": every option's default
    args = vars(args_parser().parse_args(["a", "b"]))
    assert args.pop("no_progress") is False and args.pop("engine") == "spark"  # our additions
    assert args == {"source_url": "a", "target_url": "b", "overwrite_output": False, "field_regex": None,
                    "not_null_fields": None, "partition_count": None, "row_group_size_mb": None,
                    "hdfs_driver": "libhdfs3", "master": None, "spark_session_config": None}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_of_both_console_scripts_lists_the_original_options(script):
    result = _run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    for option in ["source_url", "target_url", "--overwrite-output", "--field-regex", "--not-null-fields",
                   "--partition-count", "--row-group-size-mb", "--hdfs-driver", "--master",
                   "--spark-session-config"]:
        assert option in result.stdout
    assert "creates a copy of a Petastorm dataset" in result.stdout


# --- copies ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_full_copy_keeps_schema_rows_and_values(spark_session, source_url, tmp_path):
    target = "file://" + str(tmp_path / "full")
    copy_dataset(spark_session, source_url, target, None, None, False, None, None)
    # 0.12.1: a full copy keeps the source schema (its name too) and all 60 rows, in uncompressed Parquet files
    assert get_schema_from_dataset_url(target) == get_schema_from_dataset_url(source_url)
    assert get_schema_from_dataset_url(target)._name == "AllCodecsSchema"
    files = _data_files(str(tmp_path / "full"))
    assert files and pq.ParquetFile(str(tmp_path / "full" / files[0])).metadata.row_group(0).column(0).compression \
        == "UNCOMPRESSED"
    source, copy = _rows_by_id(source_url), _rows_by_id(target)
    assert sorted(copy) == list(range(60))
    for i in (0, 7, 59):
        for name in ("matrix", "png", "znd", "var", "name", "dec", "partition"):
            np.testing.assert_equal(getattr(copy[i], name), getattr(source[i], name))
        assert copy[i].maybe_int == source[i].maybe_int


@pytest.mark.slow
def test_command_line_copies_a_subset_and_shows_spark_progress(spark_session, source_url, tmp_path, capsys):
    path = tmp_path / "subset"
    status = _main([source_url, "file://" + str(path), "--field-regex", "^id$", "f64", "maybe_int",
                    "--not-null-fields", "maybe_int", "--partition-count", "2", "--row-group-size-mb", "1"])
    assert status == 0
    # 0.12.1: 48 rows (the 12 with a null maybe_int dropped), 2 files, schema 'AllCodecsSchema_view'
    # (0.12.1 ordered the view's fields as f64, maybe_int, id; we keep the source order)
    schema = get_schema_from_dataset_url("file://" + str(path))
    assert schema._name == "AllCodecsSchema_view" and list(schema.fields) == ["id", "f64", "maybe_int"]
    assert len(_data_files(str(path))) == 2
    rows = _rows_by_id("file://" + str(path))
    assert sorted(rows) == [i for i in range(60) if i % 5 != 0]
    assert rows[7].f64 == pytest.approx(7 / 3) and rows[7].maybe_int is not None
    err = capsys.readouterr().err  # the tqdm bar of the Spark tasks: at the end, every task done
    finals = re.findall(r"petastorm-copy-dataset: 100%\S* (\d+)/(\d+) \[.* tasks", err)
    assert finals and all(done == total and int(total) > 0 for done, total in finals), err
    assert not spark_session.sparkContext._jsc.sc().isStopped()  # the caller's session is left running


@pytest.mark.slow
def test_not_null_fields_need_not_be_copied(spark_session, source_url, tmp_path):
    # 0.12.1 failed in Spark (UNRESOLVED_COLUMN) when a not-null field was not among the copied ones
    target = "file://" + str(tmp_path / "ids")
    copy_dataset(spark_session, source_url, target, ["id"], ["maybe_int", "maybe"], False, 1, 0.5)
    assert list(get_schema_from_dataset_url(target).fields) == ["id"]
    assert sorted(_rows_by_id(target)) == [i for i in range(60) if i % 5 != 0 and i % 3 != 0]


@pytest.mark.slow
def test_existing_output_needs_overwrite(spark_session, source_url, tmp_path):
    path = tmp_path / "twice"
    copy_dataset(spark_session, source_url, "file://" + str(path), ["id", "name"], None, False, 1, None)
    # 0.12.1: Spark's AnalysisException [PATH_ALREADY_EXISTS] after the read; we refuse before any Spark work
    with pytest.raises(PetastormArgumentError, match="already exists.*--overwrite-output"):
        copy_dataset(spark_session, source_url, "file://" + str(path), ["id"], None, False, None, None)
    copy_dataset(spark_session, source_url, "file://" + str(path), ["id"], None, True, None, None)
    assert list(get_schema_from_dataset_url("file://" + str(path)).fields) == ["id"]
    assert len(_rows_by_id("file://" + str(path))) == 60


# --- bad input, before any Spark work --------------------------------------------------------------------------

def test_copy_dataset_refuses_bad_input_before_touching_spark(source_url, tmp_path):
    spark = object()  # never used: each check fails before Spark is reached
    target = "file://" + str(tmp_path / "t")
    with pytest.raises(DatasetNotFoundError):  # 0.12.1: OSError 'Passed non-file path'
        copy_dataset(spark, "file://" + str(tmp_path / "missing"), target, None, None, False, None, None)
    # 0.12.1: ValueError 'Regular expressions (%s) do not match any fields (%s)'
    with pytest.raises(NoMatchingFieldsError, match=r"do not match any fields.*'id'") as info:
        copy_dataset(spark, source_url, target, ["zzz_nomatch"], None, False, None, None)
    assert isinstance(info.value, ValueError)
    with pytest.raises(PetastormArgumentError, match="not_null_fields.*nosuchfield"):
        copy_dataset(spark, source_url, target, None, ["nosuchfield"], False, None, None)
    with pytest.raises(PetastormArgumentError, match="partitions_count"):
        copy_dataset(spark, source_url, target, None, None, False, 0, None)
    with pytest.raises(PetastormArgumentError, match="row_group_size_mb"):
        copy_dataset(spark, source_url, target, None, None, False, None, -1)
    assert not os.path.exists(tmp_path / "t")


def test_console_script_bad_input_is_one_line_and_status_1(source_url, tmp_path):
    script = SCRIPTS[0]
    target = "file://" + str(tmp_path / "t")
    result = _run_script(script, "file://" + str(tmp_path / "missing"), target)
    assert result.returncode == 1  # 0.12.1: 1 too, with a traceback (OSError: Passed non-file path)
    _assert_one_line_error(result.stderr, str(tmp_path / "missing"))
    result = _run_script(script, source_url, target, "--field-regex", "zzz_nomatch")
    assert result.returncode == 1  # 0.12.1: 1, with a traceback (ValueError)
    _assert_one_line_error(result.stderr, "zzz_nomatch", "do not match any fields")
    (tmp_path / "exists").mkdir()
    result = _run_script(SCRIPTS[1], source_url, "file://" + str(tmp_path / "exists"))
    assert result.returncode == 1  # 0.12.1: 1, Spark's AnalysisException [PATH_ALREADY_EXISTS] with a traceback
    _assert_one_line_error(result.stderr, "already exists", "--overwrite-output")
    assert not os.path.exists(tmp_path / "t")


@pytest.mark.parametrize("args, words", [
    (["--partition-count", "abc"], ["--partition-count", "invalid int value: 'abc'"]),  # 0.12.1: same, status 2
    (["--partition-count", "0"], ["--partition-count", "positive"]),
    (["--row-group-size-mb", "big"], ["--row-group-size-mb", "'big'"]),
    (["--spark-session-config", "novalue"], ["--spark-session-config", "key=value"]),
])
def test_refused_command_line_is_status_2_naming_the_argument(source_url, tmp_path, capsys, args, words):
    assert _main([source_url, "file://" + str(tmp_path / "t"), *args]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("petastorm-copy-dataset: error: argument ") and "Traceback" not in err
    for word in words:
        assert word in last


def test_missing_arguments_print_usage_with_status_2(capsys):
    assert _main([]) == 2
    assert "the following arguments are required: source_url, target_url" in capsys.readouterr().err


def test_in_process_bad_input_returns_1_with_one_line(source_url, tmp_path, capsys):
    assert _main([source_url, "file://" + str(tmp_path / "t"), "--not-null-fields", "nosuchfield"]) == 1
    _assert_one_line_error(capsys.readouterr().err, "nosuchfield")


# --- the copy without Spark (copy_dataset(None, ...), --engine pyarrow): petastorm's addition -----------------

def _as_tuples(rows):
    return {i: tuple(np.asarray(v).tobytes() if isinstance(v, np.ndarray) else v for v in row)
            for i, row in rows.items()}


def test_copy_without_spark_equals_the_source(source_url, tmp_path):
    target = "file://" + str(tmp_path / "arrow_full")
    copy_dataset(None, source_url, target, None, None, False, None, None)
    assert get_schema_from_dataset_url(target) == get_schema_from_dataset_url(source_url)
    source_files = [f for _, _, files in os.walk(source_url[len("file://"):]) for f in files if f.endswith(".parquet")]
    files = _data_files(str(tmp_path / "arrow_full"))
    assert len(files) == len(source_files)  # one target file per source file
    assert pq.ParquetFile(str(tmp_path / "arrow_full" / files[0])).metadata.row_group(0).column(0).compression \
        == "UNCOMPRESSED"
    source, copy = _rows_by_id(source_url), _rows_by_id(target)
    assert sorted(copy) == list(range(60))
    for i in range(60):
        for name in source[i]._fields:
            np.testing.assert_equal(getattr(copy[i], name), getattr(source[i], name))
    # replaced only with overwrite_output
    with pytest.raises(PetastormArgumentError, match="already exists"):
        copy_dataset(None, source_url, target, ["id"], None, False, None, None)
    copy_dataset(None, source_url, target, ["id"], None, True, 3, None)
    assert list(get_schema_from_dataset_url(target).fields) == ["id"]
    assert len(_data_files(str(tmp_path / "arrow_full"))) == 3 and sorted(_rows_by_id(target)) == list(range(60))


def test_console_script_copies_without_spark_with_the_same_options(source_url, tmp_path):
    path = tmp_path / "arrow_subset"
    result = _run_script(SCRIPTS[0], source_url, "file://" + str(path), "--engine", "pyarrow",
                         "--field-regex", "^id$", "f64", "maybe_int", "--not-null-fields", "maybe_int",
                         "--partition-count", "2", "--row-group-size-mb", "0.0002")
    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr and "files" in result.stderr  # the progress bar (source files)
    schema = get_schema_from_dataset_url("file://" + str(path))
    assert schema._name == "AllCodecsSchema_view" and list(schema.fields) == ["id", "f64", "maybe_int"]
    files = _data_files(str(path))
    assert len(files) == 2
    metadata = [pq.ParquetFile(str(path / f)).metadata for f in files]
    assert [m.num_rows for m in metadata] == [24, 24]
    assert all(m.num_row_groups > 1 for m in metadata)  # row groups cut at ~200 bytes of data
    assert sorted(_rows_by_id("file://" + str(path))) == [i for i in range(60) if i % 5 != 0]


@pytest.mark.slow
def test_spark_and_pyarrow_copies_hold_the_same_rows(spark_session, source_url, tmp_path):
    args = (["id", "name", "png", "matrix", "var", "maybe", "partition"], ["maybe"], False, 2, 1)
    copy_dataset(spark_session, source_url, "file://" + str(tmp_path / "s"), *args)
    copy_dataset(None, source_url, "file://" + str(tmp_path / "a"), *args)
    spark_rows, arrow_rows = _rows_by_id("file://" + str(tmp_path / "s")), _rows_by_id("file://" + str(tmp_path / "a"))
    assert sorted(spark_rows) == [i for i in range(60) if i % 3 != 0]
    assert _as_tuples(spark_rows) == _as_tuples(arrow_rows)
    assert get_schema_from_dataset_url("file://" + str(tmp_path / "s")) == \
        get_schema_from_dataset_url("file://" + str(tmp_path / "a"))


def test_engine_pyarrow_refuses_spark_options(source_url, tmp_path, capsys):
    assert _main([source_url, "file://" + str(tmp_path / "t"), "--engine", "pyarrow", "--master", "local[1]"]) == 1
    _assert_one_line_error(capsys.readouterr().err, "--master", "--engine pyarrow")
    assert _main([source_url, "file://" + str(tmp_path / "t"), "--engine", "arrow"]) == 2
    assert "argument --engine: invalid choice: 'arrow'" in capsys.readouterr().err


def test_more_bad_sources_and_regexes_are_one_line(source_url, tmp_path, capsys):
    import pyarrow as pa

    target = "file://" + str(tmp_path / "t")
    assert _main([source_url[len("file://"):], target]) == 1  # the original's refusal of a scheme-less url
    _assert_one_line_error(capsys.readouterr().err, "scheme-less dataset url")
    assert _main([source_url, target, "--field-regex", "("]) == 1
    _assert_one_line_error(capsys.readouterr().err, "'('")
    plain = tmp_path / "plain"
    plain.mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), str(plain / "part.parquet"))
    assert _main(["file://" + str(plain), target, "--engine", "pyarrow"]) == 1  # no Petastorm metadata
    _assert_one_line_error(capsys.readouterr().err, "_common_metadata")
    assert not os.path.exists(tmp_path / "t")


def test_copy_without_spark_leaves_nothing_when_a_source_file_is_corrupt(synthetic_dataset, tmp_path, capsys):
    import shutil

    source = tmp_path / "corrupt_src"
    shutil.copytree(synthetic_dataset[len("file://"):], source)
    last = _data_files(str(source))[-1]
    with open(source / last, "r+b") as f:
        f.truncate(100)
    target = tmp_path / "never"
    assert _main(["file://" + str(source), "file://" + str(target), "--engine", "pyarrow"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("petastorm-copy-dataset: error: ") and "Traceback" not in err
    assert not os.path.exists(target)  # the files copied before the failure were removed
