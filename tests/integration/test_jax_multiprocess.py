"""make_jax_iterator in a multi-process JAX job (multi-host training), on CPU.

Two Python processes join one JAX job with ``jax.distributed.initialize`` on loopback, each with 2 CPU devices
(4 devices in the job). Each reads its own balanced reader shard with a per-process ``batch_size`` of 4;
the sharding splits the batch over all 4 devices, so every batch is a global array of 8 rows of which each
process holds its own 4. The children print JSON facts; the assertions are made here.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

_CHILD = textwrap.dedent("""
    import json, os, sys
    pid, port, url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    import jax
    import numpy as np
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                               initialization_timeout=60)
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from petastorm import make_batch_reader
    from petastorm.jax import make_jax_iterator

    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))
    out = {"fully_addressable": sharding.is_fully_addressable, "batches": []}
    try:
        make_jax_iterator(None, batch_size=3, sharding=sharding)
    except Exception as e:
        out["odd"] = [type(e).__name__, str(e)]
    with make_batch_reader(url, schema_fields=["id", "timestamp", "matrix"], cur_shard=pid, shard_count=2,
                           shard_mode="balanced", shuffle_row_groups=False, workers_count=1) as reader:
        with make_jax_iterator(reader, batch_size=4, sharding=sharding) as batches:
            for batch in batches:
                out["batches"].append({
                    "shape": list(batch["id"].shape), "matrix_shape": list(batch["matrix"].shape),
                    "sharding_ok": batch["id"].sharding == sharding and batch["timestamp"].sharding == sharding,
                    "shards": sorted([s.index[0].start, np.asarray(s.data).tolist(),
                                      np.asarray(batch["timestamp"].addressable_data(i)).tolist()]
                                     for i, s in enumerate(batch["id"].addressable_shards)),
                })
    print("RESULT" + json.dumps(out), flush=True)
    jax.distributed.shutdown()
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_each_process_places_its_rows_in_a_global_batch(synthetic_dataset):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, str(pid), port, synthetic_dataset], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(__file__)) for pid in (0, 1)]
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0, stderr[-4000:]
            results.append(json.loads([ln for ln in stdout.splitlines() if ln.startswith("RESULT")][-1][6:]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    seen = []
    for pid, out in enumerate(results):
        assert out["fully_addressable"] is False
        kind, message = out["odd"]
        assert kind == "PetastormArgumentError"
        assert "batch_size 3" in message and "2 shards" in message and "this process's devices" in message
        # 50 rows per process: 12 batches of 4 and a last one of 2 (1 row per local device)
        batches = out["batches"]
        assert [b["shape"] for b in batches] == [[8]] * 12 + [[4]]
        assert all(b["matrix_shape"][1:] == [4, 3] and b["sharding_ok"] for b in batches)
        for b in batches:
            rows = b["shape"][0] // 4
            # process 0 holds global rows [0, rows*2), process 1 the rest; each of its 2 devices `rows` of them
            assert [s[0] for s in b["shards"]] == [(2 * pid) * rows, (2 * pid + 1) * rows]
            for _, ids, stamps in b["shards"]:
                assert stamps == [1000 + 10 * i for i in ids]
                seen.extend(ids)
    assert len(results[0]["batches"]) == len(results[1]["batches"])
    assert sorted(seen) == list(range(100))
