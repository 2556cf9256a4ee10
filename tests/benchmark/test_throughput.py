"""reader_throughput and petastorm-throughput on our reader.

Values marked "0.12.1" were recorded from the original's petastorm.benchmark (run with TensorFlow 2.16).
"""
import inspect
import re
import threading

import psutil
import pytest
from _fixtures.cli import assert_one_line_error, run_console_script

from petastorm.benchmark import cli
from petastorm.benchmark.throughput import BenchmarkResult, ReadMethod, WorkerPoolType, reader_throughput
from petastorm.errors import DatasetNotFoundError, NoMatchingFieldsError, PetastormArgumentError

SCRIPTS = ["petastorm-throughput", "petastorm-throughput.py"]
TIMEOUT = 180
# 0.12.1 printed exactly this line, e.g. "Average sample read rate: 847.95 samples/sec; RAM 252.51 MB (rss); CPU 84.40%"
RESULT_LINE = re.compile(r"^Average sample read rate: \d+\.\d\d samples/sec; RAM \d+\.\d\d MB \(rss\); CPU \d+\.\d\d%$")


def _run_script(name, *args):
    return run_console_script(name, *args, timeout=TIMEOUT, TF_CPP_MIN_LOG_LEVEL="3")


def _assert_one_line_error(stderr, *words):
    assert_one_line_error(stderr, "petastorm-throughput", *words)


def _measuring_processes():
    """Children running the measurement (the reader's own process pool may keep parked workers: not these)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any("_child_main" in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _assert_result(result, measure_cycles):
    assert isinstance(result, BenchmarkResult)
    assert result._fields == ("time_mean", "samples_per_second", "memory_info", "cpu")  # 0.12.1
    assert result.time_mean > 0
    assert result.samples_per_second == pytest.approx(1 / result.time_mean)
    assert result.memory_info.rss > 10 * 2 ** 20 and result.memory_info.uss > 0  # psutil memory_full_info()
    assert result.cpu >= 0


# --- the interface recorded from 0.12.1 ----------------------------------------------------------------------

def test_reader_throughput_signature_and_enums_are_the_originals():
    params = inspect.signature(reader_throughput).parameters
    defaults = {name: p.default for name, p in params.items() if p.kind is not p.KEYWORD_ONLY}
    assert defaults == {
        "dataset_url": inspect.Parameter.empty, "field_regex": None, "warmup_cycles_count": 300,
        "measure_cycles_count": 1000, "pool_type": WorkerPoolType.THREAD, "loaders_count": 3,
        "profile_threads": False, "read_method": ReadMethod.PYTHON, "shuffling_queue_size": 500,
        "min_after_dequeue": 400, "reader_extra_args": None, "spawn_new_process": True}
    assert [(e.name, e.value) for e in ReadMethod] == [("TF", "tf"), ("PYTHON", "python")]
    assert [(e.name, e.value) for e in WorkerPoolType] == [("THREAD", "thread"), ("PROCESS", "process"),
                                                          ("NONE", "dummy")]


def test_command_line_defaults_are_the_originals():
    args = vars(cli._parse_args(["/some/dataset"]))
    args.pop("no_progress")
    assert args == {"dataset_path": "/some/dataset", "field_regex": None, "workers_count": 3,
                    "pool_type": WorkerPoolType.THREAD, "warmup_cycles": 200, "measure_cycles": 1000,
                    "profile_threads": False, "read_method": ReadMethod.PYTHON, "shuffling_queue_size": 500,
                    "min_after_dequeue": None, "vv": False, "v": False}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_of_both_console_scripts_lists_the_original_options(script):
    result = _run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    for option in ["dataset_path", "--field-regex", "-w WORKERS_COUNT, --workers-count",
                   "-p {thread,process,dummy}, --pool-type", "-m WARMUP_CYCLES, --warmup-cycles",
                   "-n MEASURE_CYCLES, --measure-cycles", "--profile-threads", "-d {tf,python}, --read-method",
                   "-q SHUFFLING_QUEUE_SIZE, --shuffling-queue-size", "--min-after-dequeue", "-vv", "-v"]:
        assert option in result.stdout
    assert "measures its throughput" in result.stdout


# --- measurements ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pool_type", list(WorkerPoolType))
def test_measures_every_pool_type_in_this_process(synthetic_dataset, pool_type):
    # more cycles than the 100-row dataset has rows: the reader loops over it (num_epochs=None)
    before = set(threading.enumerate())
    result = reader_throughput(synthetic_dataset, warmup_cycles_count=10, measure_cycles_count=150,
                               pool_type=pool_type, loaders_count=2, spawn_new_process=False)
    _assert_result(result, 150)
    assert [t for t in set(threading.enumerate()) - before if t.is_alive()] == []  # the reader was stopped


def test_spawned_measurement_returns_the_result_and_leaves_no_process(synthetic_dataset):
    result = reader_throughput(synthetic_dataset, ["id", "value"], warmup_cycles_count=5, measure_cycles_count=50,
                               pool_type="process", reader_extra_args={"shuffle_row_groups": False})
    _assert_result(result, 50)
    assert _measuring_processes() == []


def test_spawned_measurement_raises_the_childs_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="missing"):  # 0.12.1: OSError 'Passed non-file path'
        reader_throughput("file://" + str(tmp_path / "missing"), warmup_cycles_count=1, measure_cycles_count=1)
    assert _measuring_processes() == []


@pytest.mark.slow
def test_tf_read_method_goes_through_graph_tensors_and_a_shuffling_queue(synthetic_dataset):
    result = reader_throughput(synthetic_dataset, ["id", "value", "matrix"], warmup_cycles_count=5,
                               measure_cycles_count=60, read_method=ReadMethod.TF, shuffling_queue_size=20,
                               min_after_dequeue=10, spawn_new_process=False)
    _assert_result(result, 60)
    # the queue settings reach petastorm.tf_utils.tf_tensors, which checks them
    with pytest.raises(PetastormArgumentError, match=r"min_after_dequeue \(20\) must be smaller"):
        reader_throughput(synthetic_dataset, ["id"], warmup_cycles_count=0, measure_cycles_count=1,
                          read_method="tf", shuffling_queue_size=20, min_after_dequeue=20, spawn_new_process=False)
    assert [t for t in threading.enumerate() if "QueueRunner" in t.name or "petastorm" in t.name.lower()] == []


def test_profile_threads_prints_the_profile_of_the_worker_threads_too(synthetic_dataset, capsys):
    reader_throughput(synthetic_dataset, warmup_cycles_count=0, measure_cycles_count=20, profile_threads=True,
                      loaders_count=2, spawn_new_process=False)
    out = capsys.readouterr().out
    assert re.search(r"Profile of [3-9] threads", out) and "function calls" in out
    assert "reader_impl/worker.py" in out  # decoding runs in the worker threads, not in the caller's
    assert threading.getprofile() is None  # the hook for new threads is removed


# --- bad input ------------------------------------------------------------------------------------------------

def test_bad_arguments_name_the_argument(synthetic_dataset):
    for kwargs, name in [({"measure_cycles_count": 0}, "measure_cycles_count"),
                         ({"warmup_cycles_count": -1}, "warmup_cycles_count"),
                         ({"loaders_count": 0}, "loaders_count"),
                         ({"pool_type": "gpu"}, "pool_type"),
                         ({"read_method": "torch"}, "read_method"),
                         ({"reader_extra_args": ["x"]}, "reader_extra_args")]:
        with pytest.raises(PetastormArgumentError, match=name):
            reader_throughput(synthetic_dataset, spawn_new_process=False, **kwargs)


def test_a_regex_matching_no_field_is_an_error(synthetic_dataset):
    # 0.12.1 silently benchmarked every field instead; we refuse, naming the regex and the fields
    with pytest.raises(NoMatchingFieldsError, match=r"\['zzz'\] matches no field.*id_div_10"):
        reader_throughput(synthetic_dataset, ["zzz"], spawn_new_process=False)


# --- the command line -----------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_prints_the_originals_result_line_and_a_progress_bar(synthetic_dataset, script):
    result = _run_script(script, synthetic_dataset, "-m", "5", "-n", "120", "-w", "2", "--field-regex", "id.*")
    assert result.returncode == 0, result.stderr
    assert RESULT_LINE.match(result.stdout.strip()), result.stdout
    assert "measure: 100%" in result.stderr and "125/125" in result.stderr  # tqdm bar of warmup + measure


def test_in_process_command_line_with_the_original_short_options(synthetic_dataset, capsys):
    assert cli._main([synthetic_dataset, "-m", "3", "-n", "30", "-p", "dummy", "-d", "python", "-q", "0",
                      "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert RESULT_LINE.match(out.strip()), out
    assert "samples" not in err  # --no-progress


def test_console_script_bad_input_is_one_line_and_status_1(synthetic_dataset, tmp_path):
    result = _run_script(SCRIPTS[0], "file://" + str(tmp_path / "missing"), "-n", "1")
    assert result.returncode == 1  # 0.12.1: 1 too, with a traceback (OSError: Passed non-file path)
    _assert_one_line_error(result.stderr, str(tmp_path / "missing"))
    result = _run_script(SCRIPTS[1], synthetic_dataset, "--field-regex", "zzz", "-n", "1")
    assert result.returncode == 1  # 0.12.1: status 0, every field benchmarked
    _assert_one_line_error(result.stderr, "zzz", "matches no field")


@pytest.mark.parametrize("args, words", [
    (["-m", "abc"], ["-m/--warmup-cycles", "invalid int value: 'abc'"]),  # 0.12.1: same, status 2
    (["-n", "0"], ["-n/--measure-cycles", "positive"]),
    (["-w", "-1"], ["-w/--workers-count"]),
    (["-p", "gpu"], ["-p/--pool-type", "'gpu'"]),  # 0.12.1: status 2
    (["-d", "torch"], ["-d/--read-method", "'torch'"]),
])
def test_refused_command_line_is_status_2_naming_the_argument(synthetic_dataset, capsys, args, words):
    assert cli._main([synthetic_dataset, *args]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("petastorm-throughput: error: argument ") and "Traceback" not in err
    for word in words:
        assert word in last
