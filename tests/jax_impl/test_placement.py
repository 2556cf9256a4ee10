"""make_jax_iterator with a sharding across several devices, on CPU.

JAX fixes its device count when it is first imported, so the tests' bodies run in one fresh Python with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the test process itself may already hold JAX with one
device), one section per test. The child prints JSON facts about the arrays it got (sharding, per-device shard
shapes and values, errors); each test makes its assertions on its own section's facts here.
"""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _fixtures.datasets import write_synthetic_dataset

_PRELUDE = """
import json, sys
import numpy as np
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from petastorm import make_batch_reader, make_reader
from petastorm.jax import make_jax_iterator
assert len(jax.devices()) == 4, jax.devices()
FIELDS = ["id", "timestamp", "matrix"]  # id and timestamp (int64) travel as one stack
URL = sys.argv[1]
SMALL_URL = sys.argv[2]
data_mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
data = NamedSharding(data_mesh, PartitionSpec("data"))

def shards(array):
    return sorted(([int(s.device.id), list(s.data.shape), np.asarray(s.data).reshape(-1).tolist()]
                   for s in array.addressable_shards), key=lambda t: t[0])

def error(fn):
    try:
        fn()
    except Exception as e:
        return [type(e).__name__, str(e)]
    return None
"""


_SECTIONS: dict = {}  # test name -> the code its child section runs (filling ``out``); defined with the tests


def _child_code() -> str:
    """One child runs every section, each in its own function; an exception is recorded for its test only."""
    parts = [_PRELUDE, "import traceback", "facts = {}"]
    for name, body in _SECTIONS.items():
        parts.append(f"def {name}(out):\n" + textwrap.indent(textwrap.dedent(body), "    ") + "    pass\n")
        parts.append(f"facts[{name!r}] = {{}}\ntry:\n    {name}(facts[{name!r}])\nexcept Exception:\n"
                     f"    facts[{name!r}] = {{'__error__': traceback.format_exc()}}")
    parts.append("print('RESULT' + json.dumps(facts))")
    return "\n".join(parts) + "\n"


@pytest.fixture(scope="module")
def mesh_facts(synthetic_dataset, tmp_path_factory):
    """The facts of every section, from one child Python with 4 CPU devices (one JAX start for the module).
    The small dataset has 25 rows (an odd count): 5 row groups of 5 rows."""
    small_url = write_synthetic_dataset(str(tmp_path_factory.mktemp("jax_small") / "d"), rows=25, rows_per_group=5)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _child_code(), synthetic_dataset, small_url], env=env,
                          capture_output=True, text=True, timeout=300, cwd=os.path.dirname(__file__))
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def _facts(mesh_facts: dict, name: str) -> dict:
    out = mesh_facts[name]
    assert "__error__" not in out, out.get("__error__")
    return out


_SECTIONS["test_batches_are_split_across_the_data_axis_with_the_right_values"] = """
        with make_batch_reader(URL, schema_fields=FIELDS, shuffle_row_groups=False, workers_count=2) as reader:
            it = make_jax_iterator(reader, batch_size=8, sharding=data)
            batches = list(it)
        first = batches[0]
        out["sharding_is_data"] = first["id"].sharding == data and first["matrix"].sharding == data
        out["id_shards"] = shards(first["id"])
        out["timestamp_shards"] = shards(first["timestamp"])
        out["timestamp_sharding_is_data"] = first["timestamp"].sharding == data
        out["matrix_shard_shapes"] = [s[1] for s in shards(first["matrix"])]
        out["matrix_first"] = np.asarray(first["matrix"]).tolist()
        out["sizes"] = [int(b["id"].shape[0]) for b in batches]
        out["last_shards"] = shards(batches[-1]["id"])
        out["ids"] = np.concatenate([np.asarray(b["id"]) for b in batches]).tolist()
    """


@pytest.mark.slow
def test_batches_are_split_across_the_data_axis_with_the_right_values(mesh_facts):
    out = _facts(mesh_facts, "test_batches_are_split_across_the_data_axis_with_the_right_values")
    assert out["sharding_is_data"]
    # device 0 holds rows 0..3 of the batch, device 1 rows 4..7
    assert out["id_shards"] == [[0, [4], [0, 1, 2, 3]], [1, [4], [4, 5, 6, 7]]]
    assert out["timestamp_sharding_is_data"]
    assert out["timestamp_shards"] == [[0, [4], [1000, 1010, 1020, 1030]], [1, [4], [1040, 1050, 1060, 1070]]]
    assert out["matrix_shard_shapes"] == [[4, 4, 3], [4, 4, 3]]
    expected = np.arange(8, dtype=np.float32)[:, None, None] + np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(np.array(out["matrix_first"], dtype=np.float32), expected)
    # 100 rows: 12 batches of 8 and a last one of 4 rows, which 2 shards split evenly (2 rows each)
    assert out["sizes"] == [8] * 12 + [4]
    assert out["last_shards"] == [[0, [2], [96, 97]], [1, [2], [98, 99]]]
    assert out["ids"] == list(range(100))


_SECTIONS["test_two_dimensional_mesh_splits_the_batch_on_data_and_replicates_on_model"] = """
        mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
        sharding = NamedSharding(mesh, PartitionSpec("data"))
        with make_reader(URL, schema_fields=FIELDS, shuffle_row_groups=False, workers_count=1) as reader:
            with make_jax_iterator(reader, batch_size=6, sharding=sharding, drop_last=True) as it:
                batches = list(it)
        out["shards"] = shards(batches[0]["id"])
        out["timestamp_shards"] = shards(batches[0]["timestamp"])
        out["count"] = len(batches)
        out["ids"] = np.concatenate([np.asarray(b["id"]) for b in batches]).tolist()
    """


@pytest.mark.slow
def test_two_dimensional_mesh_splits_the_batch_on_data_and_replicates_on_model(mesh_facts):
    out = _facts(mesh_facts, "test_two_dimensional_mesh_splits_the_batch_on_data_and_replicates_on_model")
    # devices 0,1 share mesh row 'data'=0 (rows 0..2 of the batch), devices 2,3 'data'=1 (rows 3..5)
    assert out["shards"] == [[0, [3], [0, 1, 2]], [1, [3], [0, 1, 2]], [2, [3], [3, 4, 5]], [3, [3], [3, 4, 5]]]
    assert out["timestamp_shards"] == [[0, [3], [1000, 1010, 1020]], [1, [3], [1000, 1010, 1020]],
                                       [2, [3], [1030, 1040, 1050]], [3, [3], [1030, 1040, 1050]]]
    assert out["count"] == 16  # 96 rows; the last 4 dropped
    assert out["ids"] == list(range(96))


_SECTIONS["test_batch_size_not_divisible_and_last_short_batch_are_explicit"] = """
        with make_batch_reader(URL, schema_fields=FIELDS, workers_count=1) as reader:
            out["odd_batch"] = error(lambda: make_jax_iterator(reader, batch_size=5, sharding=data))
            mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
            both = NamedSharding(mesh, PartitionSpec(("data", "model")))
            out["odd_batch_2d"] = error(lambda: make_jax_iterator(reader, batch_size=6, sharding=both))
        # 25 rows in batches of 4: 6 full batches, then 1 row that 2 shards cannot split
        with make_batch_reader(SMALL_URL, schema_fields=FIELDS, shuffle_row_groups=False, workers_count=1) as r:
            it = make_jax_iterator(r, batch_size=4, sharding=data)
            got = []
            def consume():
                for b in it:
                    got.append(np.asarray(b["id"]).tolist())
            out["short_last"] = error(consume)
            out["before_error"] = got
        with make_batch_reader(SMALL_URL, schema_fields=FIELDS, shuffle_row_groups=False, workers_count=1) as r:
            with make_jax_iterator(r, batch_size=4, sharding=data, drop_last=True) as it:
                out["dropped"] = [np.asarray(b["id"]).tolist() for b in it]
    """


@pytest.mark.slow
def test_batch_size_not_divisible_and_last_short_batch_are_explicit(mesh_facts):
    out = _facts(mesh_facts, "test_batch_size_not_divisible_and_last_short_batch_are_explicit")
    kind, message = out["odd_batch"]
    assert kind == "PetastormArgumentError"
    assert "batch_size 5" in message and "2 shards" in message and "'data'" in message
    kind, message = out["odd_batch_2d"]
    assert kind == "PetastormArgumentError" and "batch_size 6" in message and "4 shards" in message
    kind, message = out["short_last"]
    assert kind == "PetastormArgumentError"
    assert "has 1 row," in message and "2 shards" in message and "drop_last=True" in message
    assert out["before_error"] == [list(range(i, i + 4)) for i in range(0, 24, 4)]
    assert out["dropped"] == [list(range(i, i + 4)) for i in range(0, 24, 4)]


_SECTIONS["test_sharded_iterator_resumes_exactly"] = """
        import pickle
        kw = dict(schema_fields=FIELDS, shuffle_row_groups=True, seed=3, workers_count=2)
        with make_batch_reader(URL, **kw) as reader:
            with make_jax_iterator(reader, 8, data, shuffling_queue_capacity=30, seed=7) as it:
                full = [np.asarray(b["id"]).tolist() for b in it]
        with make_batch_reader(URL, **kw) as reader:
            it = make_jax_iterator(reader, 8, data, shuffling_queue_capacity=30, seed=7)
            head = [np.asarray(next(it)["id"]).tolist() for _ in range(5)]
            state = pickle.dumps(it.state_dict())
            it.close()
        with make_batch_reader(URL, **kw) as reader:
            it = make_jax_iterator(reader, 8, data, shuffling_queue_capacity=30, seed=7)
            it.load_state_dict(pickle.loads(state))
            rest = [b for b in it]
            out["rest_sharding"] = all(b["id"].sharding == data for b in rest)
            rest = [np.asarray(b["id"]).tolist() for b in rest]
        out["full"], out["resumed"] = full, head + rest
    """


@pytest.mark.slow
def test_sharded_iterator_resumes_exactly(mesh_facts):
    out = _facts(mesh_facts, "test_sharded_iterator_resumes_exactly")
    assert out["resumed"] == out["full"]
    assert sorted(sum(out["full"], [])) == list(range(100))
    assert out["full"][0] != list(range(8))  # shuffled
    assert out["rest_sharding"]


_SECTIONS["test_the_callers_default_device_context_applies_on_every_path"] = """
        target = jax.devices()[3]
        with jax.default_device(target):
            for capacity in (0, 30):
                with make_batch_reader(URL, schema_fields=FIELDS, shuffle_row_groups=False, workers_count=1) as r, \\
                        make_jax_iterator(r, batch_size=8, shuffling_queue_capacity=capacity, seed=0) as it:
                    out[str(capacity)] = sorted({int(d.id) for b in it for a in b.values() for d in a.devices()})
    """


@pytest.mark.slow
def test_the_callers_default_device_context_applies_on_every_path(mesh_facts):
    # jax.default_device is thread-local: before, the shuffled path (placed on the prefetch thread) put every
    # batch on device 0
    out = _facts(mesh_facts, "test_the_callers_default_device_context_applies_on_every_path")
    assert out == {"0": [3], "30": [3]}
