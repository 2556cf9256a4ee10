"""make_jax_iterator fed to the patterns real JAX scripts use, on one device.

Defect found and fixed: a plain Parquet ``list<float>`` column whose lists all have one length (embeddings,
the common way to store a vector without a codec) was refused when the iterator was made ("variable shape
(None,)"), although ``make_batch_reader`` gives it as a ``(rows, length)`` array and the torch loaders take it.
Its schema shape is ``(None,)`` only because Parquet lists carry no length; it is now checked per batch: lists of
one length arrive as a 2-D array, lists of several lengths and missing lists are errors naming the field.

The other tests pin what was checked and found correct: a ``jit`` step with ``donate_argnums`` on the batches
(donated buffers do not corrupt later batches nor the state), and JAX's 64-bit mode turned on around the
iterator for 64-bit and unsigned columns.
"""
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from petastorm import make_batch_reader
from petastorm.errors import PetastormTypeError
from petastorm.jax import make_jax_iterator

_ROWS = 40


@pytest.fixture(scope="module")
def lists_dataset(tmp_path_factory):
    """A plain Parquet store of 40 rows in row groups of 16: ``emb`` (8 float32 = id), ``ragged`` (1 + id % 3
    int64), ``holes`` (8 float32, None every 4th row), 64-bit and unsigned scalars."""
    path = str(tmp_path_factory.mktemp("lists"))
    ids = np.arange(_ROWS)
    table = pa.table({
        "id": ids,
        "emb": pa.array([np.full(8, i, np.float32) for i in ids]),
        "ragged": pa.array([np.full(1 + i % 3, i, np.int64) for i in ids]),
        "holes": pa.array([None if i % 4 == 0 else np.full(8, i, np.float32) for i in ids], type=pa.list_(pa.float32())),
        "big": pa.array(ids.astype(np.int64) + 2 ** 40),
        "ubig": pa.array(ids.astype(np.uint64) + 2 ** 63),
        "third": pa.array(ids / 3),
    })
    pq.write_table(table, os.path.join(path, "part.parquet"), row_group_size=16)
    return "file://" + path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shuffling_queue_capacity", [0, 20])
def test_a_list_column_of_one_length_arrives_as_a_2d_array(lists_dataset, shuffling_queue_capacity):
    # was refused up front: "field 'emb' has a variable shape (None,)"
    with make_batch_reader(lists_dataset, schema_fields=["id", "emb"], shuffle_row_groups=False,
                           workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=10, shuffling_queue_capacity=shuffling_queue_capacity,
                              seed=0) as batches:
        got = [(np.asarray(b["id"]), np.asarray(b["emb"])) for b in batches]
    ids = np.concatenate([i for i, _ in got])
    emb = np.concatenate([e for _, e in got])
    assert sorted(ids.tolist()) == list(range(_ROWS))
    assert emb.dtype == np.float32 and emb.shape == (_ROWS, 8)
    np.testing.assert_array_equal(emb, np.repeat(ids[:, None].astype(np.float32), 8, axis=1))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("field, what", [("ragged", "arrays of different shapes"), ("holes", "holds None")])
def test_a_list_column_jax_cannot_hold_is_an_error_naming_the_field(lists_dataset, field, what):
    with make_batch_reader(lists_dataset, schema_fields=["id", field], shuffle_row_groups=False,
                           workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=10)
        with pytest.raises(PetastormTypeError, match=f"field '{field}'.*{what}"):
            next(batches)
        batches.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shuffling_queue_capacity", [0, 20])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_jit_step_donating_its_batches_and_state_sees_every_batch_as_yielded(synthetic_dataset, prefetch,
                                                                             shuffling_queue_capacity):
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(total, x):
        return total + x.sum(), x + 0.5  # the output may take the donated batch's buffer

    seen, outs = [], []
    total = jnp.zeros((), jnp.float32)
    with make_batch_reader(synthetic_dataset, schema_fields=["id", "value"], shuffle_row_groups=False,
                           workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=8, prefetch=prefetch, seed=0,
                              shuffling_queue_capacity=shuffling_queue_capacity) as batches:
        for batch in batches:
            seen.append((np.asarray(batch["id"]).copy(), np.asarray(batch["value"]).copy()))
            total, out = step(total, batch["value"])
            outs.append(out)
    ids = np.concatenate([i for i, _ in seen])
    values = np.concatenate([v for _, v in seen])
    assert sorted(ids.tolist()) == list(range(100))
    np.testing.assert_allclose(values, (ids / 7).astype(np.float32))
    np.testing.assert_allclose(np.concatenate([np.asarray(o) for o in outs]), values + 0.5)
    np.testing.assert_allclose(float(total), float(values.sum()), rtol=1e-5)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shuffling_queue_capacity", [0, 20])
def test_64_bit_and_unsigned_columns_keep_their_values_under_enable_x64(lists_dataset, shuffling_queue_capacity):
    with jax.enable_x64(True):
        reader = make_batch_reader(lists_dataset, schema_fields=["id", "big", "ubig", "third"],
                                   shuffle_row_groups=False, workers_count=1)
        batches = make_jax_iterator(reader, batch_size=8, shuffling_queue_capacity=shuffling_queue_capacity, seed=0)
    with batches:  # iterated outside the context: the iterator keeps the settings it was made with
        got = list(batches)
    assert {str(got[0][name].dtype) for name in ("big", "ubig", "third")} == {"int64", "uint64", "float64"}
    ids = np.concatenate([np.asarray(b["id"]) for b in got]).astype(np.int64)
    np.testing.assert_array_equal(np.concatenate([np.asarray(b["big"]) for b in got]), ids + 2 ** 40)
    np.testing.assert_array_equal(np.concatenate([np.asarray(b["ubig"]) for b in got]),
                                  ids.astype(np.uint64) + np.uint64(2 ** 63))
    np.testing.assert_array_equal(np.concatenate([np.asarray(b["third"]) for b in got]), ids / 3)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("drop_last", ["False", "no", 2, [True]])
def test_a_drop_last_that_is_no_bool_is_refused_naming_it(synthetic_dataset, drop_last):
    # drop_last='False' (a string from a config file or the command line) was truthy: the last 4 rows of the
    # pass were dropped silently
    from petastorm.errors import PetastormArgumentTypeError

    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        with pytest.raises(PetastormArgumentTypeError, match="drop_last must be True or False"):
            make_jax_iterator(reader, batch_size=8, drop_last=drop_last)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("drop_last, rows", [(False, 100), (0, 100), (None, 100), (np.bool_(True), 96), (1, 96)])
def test_drop_last_takes_bools_0_or_1_and_none(synthetic_dataset, drop_last, rows):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=8, drop_last=drop_last) as batches:
        assert sum(int(b["id"].shape[0]) for b in batches) == rows


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore:Currently make_reader supports reading only Petastorm datasets")
def test_integer_columns_of_a_plain_parquet_store_read_by_make_reader_stay_integers(lists_dataset):
    # the fields make_reader infers from a plain Parquet store are all nullable: they must not be taken for
    # nullable integer fields declared in a Unischema (which arrive as floats in every batch)
    from petastorm import make_reader

    with make_reader(lists_dataset, schema_fields=["id"], shuffle_row_groups=False, workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=8) as batches:
        got = [np.asarray(b["id"]) for b in batches]
    assert {ids.dtype for ids in got} == {np.dtype(np.int32)}
    assert np.concatenate(got).tolist() == list(range(_ROWS))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("shuffling_queue_capacity", [0, 20])
def test_batches_are_placed_under_a_transfer_guard_that_disallows_implicit_transfers(synthetic_dataset, prefetch,
                                                                                   shuffling_queue_capacity):
    # with jax.transfer_guard('disallow') (how JAX users catch implicit transfers in a training step), a batch of
    # several columns of one dtype failed: "Disallowed host-to-device transfer: aval=ShapedArray(float32[2,8])"
    from petastorm import make_reader

    with jax.transfer_guard("disallow"):
        with make_reader(synthetic_dataset, schema_fields=["id", "value", "timestamp"], shuffle_row_groups=False,
                         workers_count=1) as reader, \
                make_jax_iterator(reader, batch_size=8, prefetch=prefetch, seed=0,
                                  shuffling_queue_capacity=shuffling_queue_capacity) as batches:
            got = [(np.asarray(b["id"]), np.asarray(b["value"]), np.asarray(b["timestamp"])) for b in batches]
            with pytest.raises(Exception, match="Disallowed host-to-device transfer"):
                jnp.add(jnp.zeros(3), np.ones(3))  # the guard still applies to the user's own code
    ids = np.concatenate([i for i, _, _ in got])
    assert sorted(ids.tolist()) == list(range(100))
    np.testing.assert_allclose(np.concatenate([v for _, v, _ in got]), (ids / 7).astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([t for _, _, t in got]), 1000 + ids * 10)


@pytest.fixture(scope="module")
def tall_dataset(tmp_path_factory):
    """A plain Parquet store of 20,000 rows (``id``) in row groups of 5,000."""
    path = str(tmp_path_factory.mktemp("tall"))
    pq.write_table(pa.table({"id": np.arange(20_000)}), os.path.join(path, "part.parquet"), row_group_size=5_000)
    return "file://" + path


@pytest.mark.timeout(120)
@pytest.mark.parametrize("prefetch", [0, 2])
def test_threads_sharing_one_iterator_get_every_row_once(tall_dataset, prefetch):
    # three threads calling next() on one shuffling iterator: rows were repeated and lost, and the pass failed
    # with "cannot add 3500 rows: only -500 of 3000 are free" or "the prefetch thread ended unexpectedly"
    import threading

    got, errors = [], []
    with make_batch_reader(tall_dataset, workers_count=2) as reader, \
            make_jax_iterator(reader, batch_size=100, prefetch=prefetch, shuffling_queue_capacity=2_000,
                              seed=0) as batches:
        def consume():
            try:
                for batch in batches:
                    got.append(np.asarray(batch["id"]))
            except Exception as error:  # noqa: BLE001 - asserted below
                errors.append(error)

        threads = [threading.Thread(target=consume) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(100)
    assert errors == []
    assert np.sort(np.concatenate(got)).tolist() == list(range(20_000))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shuffling_queue_capacity", [0, 20])
def test_a_nested_batch_from_transform_fn_is_an_error_naming_the_field(synthetic_dataset, shuffling_queue_capacity):
    # {'inputs': {...}, 'label': ...} (as flax code nests them) was blamed as "'inputs' a scalar"
    with make_batch_reader(synthetic_dataset, schema_fields=["id", "value"], workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=8, shuffling_queue_capacity=shuffling_queue_capacity,
                                    transform_fn=lambda b: {"inputs": {"value": b["value"]}, "label": b["id"]})
        with pytest.raises(PetastormTypeError, match="field 'inputs' holds a dict \\(a nested batch\\)"):
            next(batches)
        batches.close()


@pytest.mark.timeout(60)
def test_field_names_of_several_types_from_transform_fn_are_an_error_saying_so(synthetic_dataset):
    # was JAX's bare "ValueError: Comparator raised exception while sorting pytree dictionary keys."
    with make_batch_reader(synthetic_dataset, schema_fields=["id", "value"], workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=8, transform_fn=lambda b: {"x": b["value"], 1: b["id"]})
        with pytest.raises(PetastormTypeError, match="field names are of several types \\(\\['int', 'str'\\]\\)"):
            next(batches)
        batches.close()


@pytest.mark.timeout(60)
def test_integer_field_names_from_transform_fn_still_work(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, schema_fields=["id", "value"], shuffle_row_groups=False,
                           workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=8, transform_fn=lambda b: {0: b["value"], 1: b["id"]}) as batches:
        first = next(batches)
    assert sorted(first) == [0, 1] and np.asarray(first[1]).tolist() == list(range(8))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("reader_kind", ["batch", "rows"])
def test_an_iterator_over_a_reader_read_to_its_end_is_refused_not_empty(synthetic_dataset, reader_kind):
    # `for epoch in range(3): batches = make_jax_iterator(reader, ...)` over one reader: epochs 2 and 3 yielded no
    # batch, silently; reader.reset() between passes is the way the message gives, and it reads every row again
    from petastorm import make_reader
    from petastorm.errors import PetastormArgumentError

    make = make_batch_reader if reader_kind == "batch" else make_reader
    with make(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        first = make_jax_iterator(reader, batch_size=10)
        assert sum(int(b["id"].shape[0]) for b in first) == 100
        with pytest.raises(PetastormArgumentError, match="reader: its rows were all read already.*reader.reset"):
            make_jax_iterator(reader, batch_size=10)
        reader.reset()
        second = make_jax_iterator(reader, batch_size=10)
        assert sorted(int(i) for b in second for i in np.asarray(b["id"])) == list(range(100))


@pytest.fixture(scope="module")
def groups_of_20(tmp_path_factory):
    """The synthetic dataset in 400 rows: 20 row groups of 20 rows, 4 per file."""
    from _fixtures.datasets import write_synthetic_dataset

    return write_synthetic_dataset(str(tmp_path_factory.mktemp("groups_of_20") / "d"), rows=400, rows_per_group=20,
                                   groups_per_file=4)


_OVERFLOW_CHILD = """
import ctypes, sys, warnings
import numpy as np
from petastorm import make_batch_reader
from petastorm.jax import make_jax_iterator

def leave_freed_heap_chunks_holding(value):
    # fill and free chunks of the C heap (512 B to 4 KiB, 7 of each: what glibc keeps per size for reuse) with
    # value as float64, as a long-running process's heap holds leftovers: the next uninitialised buffers read it
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    pattern = np.full(1024, value).tobytes()
    for size in range(512, 4200, 16):
        chunks = [libc.malloc(size) for _ in range(7)]
        for chunk in chunks:
            ctypes.memmove(chunk, pattern, min(size, len(pattern)))
        for chunk in chunks:
            libc.free(chunk)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with make_batch_reader(sys.argv[1], schema_fields=["id", "value", "matrix"], reader_pool_type="thread",
                           workers_count=2, num_epochs=None) as reader, \\
            make_jax_iterator(reader, batch_size=8) as batches:
        leave_freed_heap_chunks_holding(1e300)  # the pages are allocated at the first next()
        for _, batch in zip(range(60), batches):
            np.testing.assert_allclose(np.asarray(batch["value"]), (np.asarray(batch["id"]) / 7).astype(np.float32))
print("WARNINGS", sorted({str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)}))
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_placing_float64_columns_raises_no_overflow_warning_for_rows_never_served(groups_of_20):
    # the host page of a block was uninitialised memory past the block's rows; JAX casts a float64 page to float32
    # (64-bit mode off), and leftover heap bytes gave "RuntimeWarning: overflow encountered in cast" on every block
    # for rows never served. Seen at random in the suite (the loader-leak tests of tests/reader_impl/); made
    # certain in a fresh interpreter whose heap is filled first
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _OVERFLOW_CHILD, groups_of_20], capture_output=True, text=True,
                          timeout=170, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "WARNINGS []"


_NEXT_INSIDE = """
import sys
from petastorm import make_batch_reader
from petastorm.jax import make_jax_iterator

holder = {}

def transform(columns):
    next(holder["it"])  # a user's bug: the training loop's iterator used inside its own transform_fn
    return columns

reader = make_batch_reader(sys.argv[1], schema_fields=["id"], reader_pool_type="dummy")
holder["it"] = make_jax_iterator(reader, batch_size=4, transform_fn=transform, prefetch=2)
try:
    next(holder["it"])
except Exception as error:
    print(type(error).__name__, error)
finally:
    holder["it"].close()
"""


@pytest.mark.timeout(120)
def test_next_from_inside_transform_fn_on_the_prefetch_thread_is_an_error_not_a_hang(synthetic_dataset):
    # the prefetch thread waited for itself: the process hung (in a child: a hang must not block this process)
    import subprocess

    try:
        out = subprocess.run([sys.executable, "-c", _NEXT_INSIDE, synthetic_dataset], capture_output=True, text=True,
                             timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("next() inside transform_fn hung")
    assert out.stdout.startswith("PetastormWorkerError next() on the iterator was called from the loader's or the "
                                 "reader's own thread 'petastorm-batch-prefetch'"), out.stdout + out.stderr[-2000:]
