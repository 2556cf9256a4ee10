"""petastorm.settings: every PETASTORM_* variable, its default, the values it takes and the ones it refuses."""
import dataclasses
import multiprocessing as mp
import os
import re

import pytest

from petastorm.errors import PetastormArgumentError, PetastormKeyError
from petastorm.settings import (
    SETTINGS_TABLE,
    Settings,
    other_program_variable,
    settings,
    settings_table_markdown,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: (variable, field, [(value as set, parsed value)], [refused values]) for every variable.
CASES = [
    ("PETASTORM_MP_START", "mp_start",
     [(m, m) for m in mp.get_all_start_methods()] + [(" Spawn ", "spawn")],
     ["teleport", "threads", "off", "1"]),
    ("PETASTORM_STARTUP_LANE", "startup_lane",
     [("1", True), ("true", True), ("YES", True), ("on", True),
      ("0", False), ("false", False), ("No", False), ("off", False), (" OFF ", False)],
     ["2", "enabled", "nope", "-1"]),
    ("PETASTORM_POOL_TRANSPORT", "pool_transport",
     [("shm", "shm"), ("pipe", "pipe"), (" PIPE", "pipe")],
     ["socket", "off", "0"]),
    ("PETASTORM_SHM_CACHE_MB", "shm_cache_mb",
     [("0", 0.0), ("256", 256.0), ("0.5", 0.5), (" 16 ", 16.0), ("1e3", 1000.0)],
     ["lots", "-1", "nan", "inf", "off", "16MB"]),
    ("PETASTORM_RESULTS_BUDGET_MB", "results_budget_mb",
     [("0", 0.0), ("16", 16.0), ("64.5", 64.5)],
     ["sixty-four", "-0.5", "-inf", "off", "1,5"]),
    ("PETASTORM_DIRECT_READ", "direct_read",
     [("1", True), ("on", True), ("True", True), ("0", False), ("off", False), ("false", False), ("no", False)],
     ["disabled", "10", "n"]),
    ("PETASTORM_MMAP_READ", "mmap_read",
     [("1", True), ("on", True), ("0", False), ("off", False)],
     ["never", "2"]),
    ("PETASTORM_ARROW_POOL", "arrow_pool",
     [("default", "default"), ("jemalloc", "jemalloc"), ("mimalloc", "mimalloc"), ("System", "system")],
     ["no-such-pool", "off", "tcmalloc"]),
]
DEFAULTS = {"mp_start": None, "startup_lane": True, "pool_transport": None, "shm_cache_mb": 256.0,
            "results_budget_mb": 64.0, "direct_read": True, "mmap_read": True, "arrow_pool": None}


def test_every_variable_of_the_package_is_in_the_table_and_tested():
    names = {var.name for var in SETTINGS_TABLE}
    assert names == {case[0] for case in CASES}
    assert {var.field for var in SETTINGS_TABLE} == {f.name for f in dataclasses.fields(Settings)}
    # every PETASTORM_* name the package mentions is a setting
    mentioned = set()
    for root, _, files in os.walk(os.path.join(REPO, "petastorm")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    mentioned |= set(re.findall(r"PETASTORM_[A-Z_]+[A-Z]", f.read()))
    assert mentioned <= names, mentioned - names


def test_defaults_when_unset_empty_or_blank():
    assert dataclasses.asdict(Settings.from_environ({})) == DEFAULTS
    assert dataclasses.asdict(Settings()) == DEFAULTS
    blank = {var.name: value for var, value in zip(SETTINGS_TABLE, ["", " ", "\t", "  ", "", " \n", ""])}
    assert Settings.from_environ(blank) == Settings()
    unrelated = {"PETASTORM_TESTDATA": "/x", "HOME": "/root", "PETASTORM_POOL_KEEPALIVE_S": "nonsense"}
    assert Settings.from_environ(unrelated) == Settings()  # names not in the table are not read


@pytest.mark.parametrize("name,field,good,bad", CASES, ids=[c[0] for c in CASES])
def test_good_values_parse_to_the_field(name, field, good, bad):
    for raw, expected in good:
        got = getattr(Settings.from_environ({name: raw}), field)
        assert got == expected and type(got) is type(expected), (raw, got)
        # the other fields keep their defaults
        others = {k: v for k, v in dataclasses.asdict(Settings.from_environ({name: raw})).items() if k != field}
        assert others == {k: v for k, v in DEFAULTS.items() if k != field}


@pytest.mark.parametrize("name,field,good,bad", CASES, ids=[c[0] for c in CASES])
def test_bad_values_raise_naming_the_variable_and_the_value(name, field, good, bad):
    for raw in bad:
        with pytest.raises(PetastormArgumentError) as info:
            Settings.from_environ({name: raw})
        assert f"{name}={raw!r}" in str(info.value)
        assert isinstance(info.value, ValueError)  # the built-in a user may already catch


def test_switches_take_the_same_words():
    for raw in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        a = Settings.from_environ({"PETASTORM_STARTUP_LANE": raw}).startup_lane
        b = Settings.from_environ({"PETASTORM_DIRECT_READ": raw}).direct_read
        assert a == b == (raw in ("1", "true", "yes", "on"))


def test_sizes_in_bytes():
    config = Settings.from_environ({"PETASTORM_SHM_CACHE_MB": "0.5", "PETASTORM_RESULTS_BUDGET_MB": "16"})
    assert config.shm_cache_bytes == 1 << 19 and config.results_budget_bytes == 16 << 20
    assert Settings().shm_cache_bytes == 256 << 20 and Settings().results_budget_bytes == 64 << 20
    assert Settings.from_environ({"PETASTORM_SHM_CACHE_MB": "0"}).shm_cache_bytes == 0


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().direct_read = False
    assert dataclasses.replace(Settings(), direct_read=False).direct_read is False


def test_settings_follow_the_environment_and_parse_once_per_values(monkeypatch):
    for var in SETTINGS_TABLE:
        monkeypatch.delenv(var.name, raising=False)
    first = settings()
    assert first == Settings() and settings() is first  # parsed once
    monkeypatch.setenv("PETASTORM_DIRECT_READ", "off")
    assert settings().direct_read is False  # a value set after import is honoured
    monkeypatch.setenv("PETASTORM_DIRECT_READ", "on")
    assert settings() == first
    monkeypatch.setenv("PETASTORM_SHM_CACHE_MB", "lots")
    for _ in range(2):  # a bad value is not cached away: every call says so until it is fixed
        with pytest.raises(PetastormArgumentError, match="PETASTORM_SHM_CACHE_MB='lots'"):
            settings()
    monkeypatch.delenv("PETASTORM_SHM_CACHE_MB")
    assert settings() == first


def test_a_bad_value_stops_a_reader_before_it_starts(monkeypatch, synthetic_dataset):
    from petastorm import make_reader

    monkeypatch.setenv("PETASTORM_DIRECT_READ", "maybe")
    with pytest.raises(PetastormArgumentError, match="PETASTORM_DIRECT_READ='maybe'"):
        make_reader(synthetic_dataset, reader_pool_type="dummy")
    monkeypatch.setenv("PETASTORM_DIRECT_READ", "off")
    with make_reader(synthetic_dataset, reader_pool_type="dummy", schema_fields=["id"]) as reader:
        assert len(list(reader)) == 100
    monkeypatch.setenv("PETASTORM_MP_START", "teleport")  # checked first: before the dataset is looked at
    for pool in ("thread", "process"):
        with pytest.raises(PetastormArgumentError, match="PETASTORM_MP_START='teleport'"):
            make_reader("file:///no/such/dataset", reader_pool_type=pool)


def test_docs_page_shows_the_current_table():
    with open(os.path.join(REPO, "docs", "settings.md"), encoding="utf-8") as f:
        page = f.read()
    assert settings_table_markdown() in page, "regenerate docs/settings.md from settings_table_markdown()"
    for var in SETTINGS_TABLE:
        assert page.count(f"`{var.name}`") >= 1


# ---- variables of other programs --------------------------------------------------------------------------

def test_variables_of_other_programs_are_read_raw_and_only_when_listed(monkeypatch):
    monkeypatch.setenv("HOROVOD_RANK", " 3 ")
    assert other_program_variable("HOROVOD_RANK") == " 3 "  # their format is their program's
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert other_program_variable("AWS_REGION") is None
    with pytest.raises(PetastormKeyError, match="HOME is not in petastorm.settings.OTHER_PROGRAMS_VARIABLES"):
        other_program_variable("HOME")
    assert isinstance(PetastormKeyError("x"), KeyError)


@pytest.mark.parametrize("env,expected", [
    ({"HOROVOD_RANK": "1", "HOROVOD_SIZE": "2"}, (1, 2)),
    ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4"}, (0, 4)),
    ({"PMI_RANK": "2", "PMI_SIZE": "3"}, (2, 3)),
    ({"HOROVOD_RANK": "1"}, (None, None)),  # half a pair: not a Horovod run
    ({"HOROVOD_RANK": "x", "HOROVOD_SIZE": "2"}, (None, None)),  # Horovod's variable, not ours: no error
    ({}, (None, None)),
])
def test_horovod_rank_and_size_from_the_launchers_variables(monkeypatch, env, expected):
    from petastorm.spark.loaders import horovod_rank_and_size

    for name in ("HOROVOD_RANK", "HOROVOD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK",
                 "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert horovod_rank_and_size() == expected


#: The settings module, and modules that build a child process's environment (allowed by issue 13): the
#: benchmark's measuring interpreter, the fork server's one-thread-BLAS setup (it sets a variable).
_CHILD_ENVIRONMENT_BUILDERS = {"petastorm/settings.py", "petastorm/benchmark/throughput.py",
                               "petastorm/reader_impl/process/fork_server_setup.py"}


def test_the_environment_is_read_in_the_settings_module_only():
    import ast

    readers = set()
    for root, _, files in os.walk(os.path.join(REPO, "petastorm")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if ((isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb")
                     and isinstance(node.value, ast.Name) and node.value.id == "os")):
                    readers.add(os.path.relpath(path, REPO))
    assert readers - _CHILD_ENVIRONMENT_BUILDERS == set(), "read petastorm.settings instead of os.environ"
