"""petastorm-explain: the table and the JSON a user gets for a real dataset, and bad input in one line."""
import json
import subprocess
import sys

from petastorm.tools.explain import _main


def test_prints_the_read_plan_table(synthetic_dataset, capsys):
    assert _main([synthetic_dataset, "--shard", "1", "--shard-count", "2", "--shard-mode", "balanced",
                  "--seed", "3", "--buffer", "20", "--batch-size", "4", "--pool", "process", "--workers", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Read plan of {synthetic_dataset}")
    assert "shard 1 of 2 (balanced)" in out
    assert "50 rows" in out  # 100 rows dealt to 2 balanced shards
    assert "with loader buffer" in out
    assert "Pool: process, 3 worker(s)" in out  # the pool asked for is reported; none was started


def test_json_output_is_the_structured_result(synthetic_dataset, capsys):
    assert _main([synthetic_dataset, "--json", "--seed", "1", "--fields", "id", "value", "--no-shuffle-row-groups",
                  "--filters", '[["id", ">", 50]]', "--rows"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fields"] == ["id", "value"]
    assert data["rows_per_epoch"] == 100
    assert data["shuffle_quality"]["displacement_mean"] == 0  # dataset order
    assert data["options"]["shuffle_row_groups"] is False
    assert any("id" in f for f in data["row_filters"])


def test_bad_input_is_one_line_with_exit_status_1(tmp_path, capsys):
    assert _main([str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("petastorm-explain: error:") and "missing" in err[0]
    assert _main([str(tmp_path), "--shard", "0"]) == 1
    assert "--shard-count" in capsys.readouterr().err
    assert _main([str(tmp_path), "--filters", "not json"]) == 1
    assert "--filters" in capsys.readouterr().err
    assert _main([str(tmp_path), "--drop-partitions", "0"]) == 2  # argparse refuses it, naming the option
    assert "--drop-partitions" in capsys.readouterr().err


def test_runs_as_a_module(synthetic_dataset):
    done = subprocess.run([sys.executable, "-m", "petastorm.tools.explain", synthetic_dataset, "--seed", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Shuffle quality" in done.stdout and "10 work items" in done.stdout
