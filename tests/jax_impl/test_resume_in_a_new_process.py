"""A make_jax_iterator state saved mid-epoch, pickled to a file and loaded in a NEW Python process.

A job that is preempted restarts in another process: nothing of the first one (compiled functions, the reader's
workers, module state) is there. The batches the second process yields after ``load_state_dict`` must be the
ones the uninterrupted run yields after the same point: no row lost, none repeated, in the same order.
"""
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

_CHILD = textwrap.dedent("""
    import pickle, sys
    import numpy as np
    from petastorm import make_batch_reader, make_reader
    from petastorm.jax import make_jax_iterator

    url, kind, mode, path, taken = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    make = make_reader if kind == "make_reader" else make_batch_reader
    reader = make(url, schema_fields=["id", "matrix"], num_epochs=2, seed=3, shuffle_rows=True, workers_count=2)
    with make_jax_iterator(reader, batch_size=7, shuffling_queue_capacity=30, seed=5, prefetch=3) as batches:
        if mode == "save":
            ids = [np.asarray(next(batches)["id"]).tolist() for _ in range(taken)]
            state = batches.state_dict()
        else:
            ids, state = pickle.load(open(path, "rb"))
            batches.load_state_dict(state)
            rest = [b for b in batches]
            assert all(np.array_equal(np.asarray(b["matrix"])[:, 0, 0], np.asarray(b["id"])) for b in rest)
            ids += [np.asarray(b["id"]).tolist() for b in rest]
    pickle.dump((ids, state), open(path, "wb"))
""")


def _child(url, kind, mode, path, taken=0):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _CHILD, url, kind, mode, path, str(taken)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(path, "rb") as f:
        return pickle.load(f)[0]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["make_reader", "make_batch_reader"])
def test_a_state_pickled_mid_epoch_resumes_in_a_new_process_with_the_uninterrupted_sequence(
        synthetic_dataset, tmp_path, kind):
    from petastorm import make_batch_reader, make_reader
    from petastorm.jax import make_jax_iterator

    make = make_reader if kind == "make_reader" else make_batch_reader
    reader = make(synthetic_dataset, schema_fields=["id", "matrix"], num_epochs=2, seed=3, shuffle_rows=True,
                  workers_count=2)
    with make_jax_iterator(reader, batch_size=7, shuffling_queue_capacity=30, seed=5, prefetch=3) as batches:
        expected = [np.asarray(b["id"]).tolist() for b in batches]
    path = str(tmp_path / "checkpoint.pkl")
    taken = 17  # into the second epoch, mid reader batch, with rows in the shuffling buffer
    first = _child(synthetic_dataset, kind, "save", path, taken)
    assert first == expected[:taken]
    resumed = _child(synthetic_dataset, kind, "resume", path)
    assert resumed == expected
    assert sorted(sum(resumed, [])) == sorted(list(range(100)) * 2)
