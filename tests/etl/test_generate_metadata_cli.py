"""petastorm-generate-metadata as a command-line tool: --help, progress bar, bad input as one line.

(Its metadata output is tested in tests/etl/test_materialize.py.) Values marked "0.12.1" were recorded
from the original's petastorm-generate-metadata.py.
"""
import json
import os
import shutil

import pytest
from _fixtures.cli import assert_one_line_error, run_console_script

from petastorm.etl.petastorm_generate_metadata import _main, main

SCRIPTS = ["petastorm-generate-metadata", "petastorm-generate-metadata.py"]
TIMEOUT = 120


@pytest.fixture
def dataset_copy(synthetic_dataset, tmp_path):
    """A writable copy of the 100-row synthetic dataset (5 files of 2 row groups)."""
    path = str(tmp_path / "ds")
    shutil.copytree(synthetic_dataset[len("file://"):], path)
    return path


def _run_script(name, *args):
    return run_console_script(name, *args, timeout=TIMEOUT)


def _counts(path):
    import pyarrow.parquet as pq

    metadata = pq.read_schema(os.path.join(path, "_common_metadata")).metadata
    return json.loads(metadata[b"dataset-toolkit.num_row_groups_per_file.v1"])


def _assert_one_line_error(stderr, *words):
    assert_one_line_error(stderr, "petastorm-generate-metadata", *words)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_of_both_console_scripts_lists_the_original_options(script):
    result = _run_script(script, "--help")
    assert result.returncode == 0, result.stderr
    for option in ["--dataset_url", "--unischema_class", "--master", "--spark-driver-memory",
                   "--use-summary-metadata", "--hdfs-driver"]:  # 0.12.1's options
        assert option in result.stdout
    assert "Add necessary petastorm metadata to an existing dataset" in result.stdout


def test_console_script_refreshes_the_counts_under_a_progress_bar(dataset_copy):
    removed = sorted(f for f in os.listdir(dataset_copy) if f.endswith(".parquet"))[0]
    os.remove(os.path.join(dataset_copy, removed))
    result = _run_script(SCRIPTS[1], "--dataset_url", "file://" + dataset_copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote file://{dataset_copy}/_common_metadata"
    assert removed not in _counts(dataset_copy) and sum(_counts(dataset_copy).values()) == 8
    assert "100%" in result.stderr and "4/4" in result.stderr and "files" in result.stderr


def test_no_progress_hides_the_bar(dataset_copy, capsys):
    assert main(["--dataset_url", "file://" + dataset_copy, "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "_common_metadata" in out and err == ""


def test_missing_dataset_is_one_line_and_status_1(tmp_path):
    missing = str(tmp_path / "missing")
    result = _run_script(SCRIPTS[0], "--dataset_url", "file://" + missing)
    assert result.returncode == 1  # 0.12.1: 1 too, with a traceback (OSError: Passed non-file path)
    _assert_one_line_error(result.stderr, missing)


def test_bad_schema_inputs_are_one_line_and_status_1(dataset_copy, capsys):
    assert _main(["--dataset_url", dataset_copy, "--unischema_class", "os.path.join"]) == 1
    _assert_one_line_error(capsys.readouterr().err, "os.path.join",
                           "is not an instance of a petastorm.Unischema object")
    os.remove(os.path.join(dataset_copy, "_common_metadata"))
    assert _main(["--dataset_url", dataset_copy]) == 1  # no stored schema to reuse
    _assert_one_line_error(capsys.readouterr().err, "_common_metadata")


def test_refused_command_line_is_status_2(capsys):
    assert _main([]) == 2
    assert "the following arguments are required: --dataset_url" in capsys.readouterr().err
    assert _main(["--dataset_url", "x", "--no-such-option"]) == 2
    assert "unrecognized arguments: --no-such-option" in capsys.readouterr().err


@pytest.mark.slow
def test_with_master_counts_in_spark_tasks_under_a_progress_bar(dataset_copy, spark_session, capsys):
    # the running session is reused (getOrCreate) and left running
    assert _main(["--dataset_url", "file://" + dataset_copy, "--master", "local[2]"]) == 0
    out, err = capsys.readouterr()
    assert "_common_metadata" in out
    assert "petastorm-generate-metadata: 100%" in err and "tasks" in err
    assert sum(_counts(dataset_copy).values()) == 10
    assert not spark_session.sparkContext._jsc.sc().isStopped()
