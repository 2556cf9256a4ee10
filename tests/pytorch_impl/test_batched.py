"""BatchedDataLoader and InMemBatchedDataLoader (petastorm.pytorch): the original's outputs, types, transform_fn,
errors and re-iteration rules (recorded from petastorm 0.12.1 as a black box), plus device placement, prefetch,
exact resume and lifecycle."""
import gc
import io
import os
import time
import warnings
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from _fixtures.datasets import write_synthetic_dataset
from _fixtures.threads import new_prefetch_threads, no_new_prefetch_thread_within

from petastorm import make_batch_reader, make_reader
from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormArgumentError, PetastormReaderError, PetastormStateError
from petastorm.pytorch import BatchedDataLoader, InMemBatchedDataLoader
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

TypesSchema = Unischema("TypesSchema", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("name", np.str_, (), ScalarCodec(spark_type("StringType")), False),
    UnischemaField("dec", Decimal, (), ScalarCodec(spark_type("DecimalType", 10, 3)), False),
    UnischemaField("u16", np.uint16, (), ScalarCodec(spark_type("IntegerType")), False),
    UnischemaField("b", np.bool_, (), ScalarCodec(spark_type("BooleanType")), False),
    UnischemaField("i8", np.int8, (), ScalarCodec(spark_type("ShortType")), False),
    UnischemaField("mat", np.float32, (2, 3), NdarrayCodec(), False),
    UnischemaField("u8", np.uint8, (4,), NdarrayCodec(), False),
])


def _types_row(i):
    return {"id": i, "name": f"n{i}", "dec": Decimal(i) / 1000, "u16": i % 60000, "b": bool(i % 2), "i8": i % 100,
            "mat": np.full((2, 3), i, np.float32), "u8": np.full(4, i % 256, np.uint8)}


@pytest.fixture(scope="module")
def types_dataset(tmp_path_factory):
    """50 rows, row groups of 10: str, Decimal, uint16 (stored as int32), bool, int8 (stored as int16), arrays."""
    path = str(tmp_path_factory.mktemp("batched") / "types")
    return write_synthetic_dataset(path, rows=50, rows_per_group=10, schema=TypesSchema, row_fn=_types_row)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A plain Parquet store of 1000 rows in row groups of 97: id (int64) and x = id / 2 (float32)."""
    path = tmp_path_factory.mktemp("batched") / "store"
    os.makedirs(path)
    ids = np.arange(1000, dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "x": ids.astype(np.float32) * 0.5}), str(path / "a.parquet"), row_group_size=97)
    return "file://" + str(path)


@pytest.fixture(scope="module")
def unsigned_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("batched") / "unsigned"
    os.makedirs(path)
    n = 20
    pq.write_table(pa.table({"id": np.arange(n, dtype=np.int64), "u16": np.arange(n, dtype=np.uint16),
                             "u32": np.arange(n, dtype=np.uint32), "b": np.arange(n) % 2 == 0,
                             "i8": np.arange(n, dtype=np.int8), "f64": np.arange(n, dtype=np.float64),
                             "i16": np.arange(n, dtype=np.int16), "u8": np.arange(n, dtype=np.uint8)}),
                   str(path / "a.parquet"), row_group_size=10)
    return "file://" + str(path)


def _ordered(url, **kw):
    kw.setdefault("shuffle_row_groups", False)
    kw.setdefault("workers_count", 2)
    return make_batch_reader(url, **kw)


def _all_ids(batches):
    return torch.cat([b["id"] for b in batches]).tolist()


# --- outputs and types (recorded from 0.12.1) ---------------------------------------------------------------

def test_batches_over_make_batch_reader_are_dicts_of_tensors(store):
    # 0.12.1: {'id': Tensor int64 (8,), 'x': Tensor float32 (8,)}; 1000 rows in batches of 300: 300, 300, 300, 100
    with BatchedDataLoader(_ordered(store), batch_size=300) as loader:
        batches = list(loader)
    assert all(type(b) is dict and set(b) == {"id", "x"} for b in batches)
    assert [len(b["id"]) for b in batches] == [300, 300, 300, 100]
    assert batches[0]["id"].dtype == torch.int64 and batches[0]["x"].dtype == torch.float32
    assert _all_ids(batches) == list(range(1000))
    assert torch.equal(batches[1]["x"], batches[1]["id"].float() * 0.5)


def test_column_types_are_promoted_as_the_original(unsigned_store):
    # 0.12.1 (pure Parquet store): bool -> uint8; int8, int16, int64, uint8, float64 kept (its reader left the
    # unsigned 16/32-bit columns out; the promotions of such arrays, uint16 -> int32 and uint32 -> int64, are
    # the original's array promotions)
    with BatchedDataLoader(_ordered(unsigned_store), batch_size=4) as loader:
        b = next(iter(loader))
    assert {k: v.dtype for k, v in b.items()} == {
        "id": torch.int64, "u16": torch.int32, "u32": torch.int64, "b": torch.uint8, "i8": torch.int8,
        "f64": torch.float64, "i16": torch.int16, "u8": torch.uint8}
    assert b["b"].tolist() == [1, 0, 1, 0]


def test_batches_over_make_reader_gather_rows_into_columns(types_dataset):
    # 0.12.1 over make_reader: u8 uint8 (4, 4), mat float32 (4, 2, 3), b uint8, id int64, u16 uint16 (a row's
    # uint16 scalar is kept), i8 int8; 50 rows in batches of 4: 12 x 4 then 2
    fields = ["id", "u16", "b", "i8", "mat", "u8"]
    with BatchedDataLoader(make_reader(types_dataset, schema_fields=fields, shuffle_row_groups=False,
                                       workers_count=2), batch_size=4) as loader:
        batches = list(loader)
    b = batches[0]
    assert {k: (v.dtype, tuple(v.shape)) for k, v in b.items()} == {
        "id": (torch.int64, (4,)), "u16": (torch.uint16, (4,)), "b": (torch.uint8, (4,)), "i8": (torch.int8, (4,)),
        "mat": (torch.float32, (4, 2, 3)), "u8": (torch.uint8, (4, 4))}
    assert [len(x["id"]) for x in batches] == [4] * 12 + [2]
    assert sorted(_all_ids(batches)) == list(range(50))
    for x in batches:
        assert torch.equal(x["mat"][:, 0, 0], x["id"].float()) and torch.equal(x["b"], (x["id"] % 2).to(torch.uint8))


@pytest.mark.parametrize("field", ["name", "dec"])
@pytest.mark.parametrize("rows", [False, True])
def test_string_and_decimal_columns_raise_the_originals_type_error_naming_the_field(types_dataset, field, rows):
    # 0.12.1: TypeError('Pytorch does not support arrays of string or object classes. Found in field name.')
    make = make_reader if rows else make_batch_reader
    reader = make(types_dataset, schema_fields=["id", field], workers_count=2)
    loader = BatchedDataLoader(reader, batch_size=4)
    with pytest.raises(TypeError, match=f"Pytorch does not support arrays of string or object classes. Found in "
                                        f"field {field}.*schema_fields.*DataLoader"):
        next(iter(loader))
    with pytest.raises(PetastormReaderError):  # the reader was stopped: nothing left running
        next(reader)
    assert no_new_prefetch_thread_within()


def test_transform_fn_is_applied_per_column_of_each_reader_batch(store):
    # 0.12.1: transform_fn is called once per field with the reader batch's numpy column (97 rows here), before
    # batching; its result becomes the column
    seen = []

    def double(col):
        seen.append((type(col), col.dtype, col.shape))
        return col * 2

    with BatchedDataLoader(_ordered(store), batch_size=4, transform_fn=double) as loader:
        b = next(iter(loader))
    assert seen[:2] == [(np.ndarray, np.dtype(np.int64), (97,)), (np.ndarray, np.dtype(np.float32), (97,))]
    assert b["id"].tolist() == [0, 2, 4, 6] and b["x"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_transform_fn_may_return_tensors(store):
    with BatchedDataLoader(_ordered(store), batch_size=4, transform_fn=lambda c: torch.from_numpy(c) + 1) as loader:
        assert next(iter(loader))["id"].tolist() == [1, 2, 3, 4]


def test_transform_fn_may_return_lists_and_what_is_no_array_names_the_field(store):
    with BatchedDataLoader(_ordered(store), batch_size=4, transform_fn=lambda c: [v * 2 for v in c.tolist()]) as loader:
        assert next(iter(loader))["id"].tolist() == [0, 2, 4, 6]
    with BatchedDataLoader(_ordered(store, schema_fields=["id"]), batch_size=4,
                           transform_fn=lambda c: [[1, 2], [3]]) as loader:
        with pytest.raises(TypeError, match=r"transform_fn returned a list for field 'id', which is not an array"):
            next(iter(loader))


@pytest.mark.parametrize("capacity", [1, 10, 100])
def test_a_shuffling_queue_smaller_than_the_batch_works_as_in_the_original(store, capacity):
    # 0.12.1: batch_size=64 with shuffling_queue_capacity 1, 10 or 100 gives 15 batches of 64 and one of 40
    with BatchedDataLoader(_ordered(store), batch_size=64, shuffling_queue_capacity=capacity) as loader:
        batches = list(loader)
    assert [len(b["id"]) for b in batches] == [64] * 15 + [40]
    ids = _all_ids(batches)
    assert sorted(ids) == list(range(1000)) and ids != list(range(1000))


def test_shuffling_is_seeded_by_the_reader_seed_or_the_loaders(store):
    def ids(reader_seed, seed=None):
        with BatchedDataLoader(make_batch_reader(store, seed=reader_seed, workers_count=2), batch_size=50,
                               shuffling_queue_capacity=300, seed=seed) as loader:
            return _all_ids(loader)

    assert ids(1) == ids(1)
    assert ids(1, seed=5) == ids(1, seed=5) != ids(1, seed=6)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_is_a_clear_error(store, batch_size):
    # 0.12.1 hung forever on batch_size 0 and -1
    with pytest.raises(PetastormArgumentError, match="batch_size must be an integer >= 1"):
        BatchedDataLoader(_ordered(store), batch_size=batch_size)
    with pytest.raises(ValueError, match="batch_size"):
        BatchedDataLoader(_ordered(store), batch_size=batch_size, shuffling_queue_capacity=10)


@pytest.mark.parametrize("make, kwargs", [
    (lambda r, kw: BatchedDataLoader(r, **kw), {"batch_size": 4.0}),
    (lambda r, kw: BatchedDataLoader(r, **kw), {"batch_size": 4, "shuffling_queue_capacity": 10.0}),
    (lambda r, kw: BatchedDataLoader(r, **kw), {"batch_size": "4"}),
    (lambda r, kw: InMemBatchedDataLoader(r, **kw), {"batch_size": 4.0}),
    (lambda r, kw: InMemBatchedDataLoader(r, **kw), {"batch_size": 4, "num_epochs": 2.0}),
])
def test_arguments_that_are_no_integers_raise_a_type_error_as_in_the_original(store, make, kwargs):
    # recorded from 0.12.1: each raised TypeError ("slice indices must be integers...", "'float' object cannot be
    # interpreted as an integer", "'>=' not supported between instances of 'int' and 'str'"); here the same class
    # (also a ValueError, as for out-of-range values) naming the argument, when the loader is made
    name = next(k for k, v in kwargs.items() if not isinstance(v, int))
    with _ordered(store) as reader, pytest.raises(TypeError, match=f"{name} must be an integer") as info:
        make(reader, kwargs)
    assert isinstance(info.value, PetastormArgumentError)


def test_a_finished_pass_may_be_followed_by_another_and_parallel_passes_raise(store):
    # 0.12.1: two passes give [300, 300, 300, 100] each; a second iter() during a pass raises RuntimeError
    loader = BatchedDataLoader(_ordered(store), batch_size=300)
    assert [len(b["id"]) for b in loader] == [300, 300, 300, 100]
    assert [len(b["id"]) for b in loader] == [300, 300, 300, 100]
    it = iter(loader)
    next(it)
    with pytest.raises(RuntimeError, match="You must finish a full pass of Petastorm DataLoader"):
        next(iter(loader))
    loader.__exit__(None, None, None)


def test_len_is_unknown_as_in_the_original(store):
    # 0.12.1: TypeError("object of type 'BatchedDataLoader' has no len()")
    with BatchedDataLoader(_ordered(store), batch_size=8) as loader:
        with pytest.raises(TypeError, match="has no len"):
            len(loader)


# --- device, pin_memory, prefetch ------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_device_cpu(store, device):
    with BatchedDataLoader(_ordered(store), batch_size=16, device=device) as loader:
        b = next(iter(loader))
    assert b["id"].device.type == "cpu" and b["id"].tolist() == list(range(16))


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_a_cuda_device_gives_cuda_batches_or_a_clear_error_without_cuda(store, device):
    if not torch.cuda.is_available():
        with pytest.raises(PetastormArgumentError, match=r"device=.*cuda.*CUDA is not available"):
            BatchedDataLoader(_ordered(store), batch_size=16, device=device)
        return
    with BatchedDataLoader(_ordered(store), batch_size=64, device=device, pin_memory=True,
                           shuffling_queue_capacity=200) as loader:
        batches = list(loader)
    # 'cuda' is this thread's current device, even though the prefetch thread's current device is its own
    assert loader.device == torch.device("cuda", torch.cuda.current_device())
    assert all(b["id"].device == loader.device for b in batches)
    assert sorted(torch.cat([b["id"] for b in batches]).cpu().tolist()) == list(range(1000))
    assert all(torch.equal(b["x"], b["id"].float() * 0.5) for b in batches)


@pytest.mark.parametrize("device", ["gpu0", 3.5])
def test_an_unknown_device_is_named(store, device):
    with pytest.raises(PetastormArgumentError, match="device"):
        BatchedDataLoader(_ordered(store), batch_size=16, device=device)


@pytest.mark.parametrize("device", ["meta", "fpga", torch.device("ipu")])
def test_a_device_that_cannot_hold_tensors_here_is_refused_when_the_loader_is_made(store, device):
    # before: 'meta' gave tensors without data and 'fpga'/'ipu' raised torch's error at the first batch
    with pytest.raises(PetastormArgumentError, match=r"device=.*(meta|fpga|ipu)"):
        BatchedDataLoader(_ordered(store), batch_size=16, device=device)


def test_pin_memory_works_and_warns_without_an_accelerator(store):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = BatchedDataLoader(_ordered(store), batch_size=16, pin_memory=True)
    with loader:
        b = next(iter(loader))
    assert b["id"].tolist() == list(range(16))
    warned = any("pin_memory" in str(w.message) for w in caught)
    assert warned != torch.cuda.is_available()
    if torch.cuda.is_available():
        assert b["id"].is_pinned()


@pytest.mark.parametrize("prefetch", [0, 1, 4])
def test_prefetch_does_not_change_the_batches(store, prefetch):
    def ids(prefetch):
        with BatchedDataLoader(make_batch_reader(store, seed=3, workers_count=2), batch_size=33,
                               shuffling_queue_capacity=100, prefetch=prefetch) as loader:
            return [b["id"].tolist() for b in loader]

    assert ids(prefetch) == ids(2)


def test_batches_are_tensors_the_user_may_write_to(store):
    with BatchedDataLoader(_ordered(store), batch_size=50) as loader:
        batches = list(loader)
    for b in batches:
        b["x"] *= 0  # no warning about read-only memory, no effect on other batches
    assert batches[1]["id"][0].item() == 50


# --- resume ------------------------------------------------------------------------------------------------

def _save_load(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf)  # torch's default weights_only=True


@pytest.mark.parametrize("capacity", [0, 150])
def test_resume_mid_epoch_continues_exactly_with_no_row_lost_or_repeated(store, capacity):
    def loader(reader):
        return BatchedDataLoader(reader, batch_size=40, shuffling_queue_capacity=capacity)

    def reader():
        return make_batch_reader(store, seed=11, num_epochs=2, workers_count=2)

    with loader(reader()) as full_loader:
        full = [b["id"].tolist() for b in full_loader]
    assert len(full) == 50
    with loader(reader()) as first:
        it = iter(first)
        head = [next(it)["id"].tolist() for _ in range(23)]
        time.sleep(0.05)  # batches prefetched but not consumed are part of the state
        state = _save_load(first.state_dict())
        it.close()
    with loader(reader()) as second:
        second.load_state_dict(state)
        rest = [b["id"].tolist() for b in second]
    assert head + rest == full


def test_resume_over_make_reader(types_dataset):
    def make():
        return BatchedDataLoader(make_reader(types_dataset, schema_fields=["id", "mat"], seed=2, workers_count=2),
                                 batch_size=6, shuffling_queue_capacity=20)

    with make() as loader:
        full = [b["id"].tolist() for b in loader]
    with make() as loader:
        it = iter(loader)
        head = [next(it)["id"].tolist() for _ in range(4)]
        state = loader.state_dict()
        it.close()
    with make() as loader:
        loader.load_state_dict(state)
        assert head + [b["id"].tolist() for b in loader] == full


def _state_after_one_batch(store, batch_size):
    """The state of an unshuffled loader of ``store`` after its first batch of ``batch_size`` rows."""
    with BatchedDataLoader(_ordered(store), batch_size=batch_size) as loader:
        it = iter(loader)
        next(it)
        state = loader.state_dict()
        it.close()
    return state


def test_a_state_with_other_settings_is_refused_naming_the_setting(store):
    state = _state_after_one_batch(store, 40)
    with BatchedDataLoader(_ordered(store), batch_size=20) as loader:
        with pytest.raises(PetastormStateError, match=r"batch_size \(saved 40, now 20\)"):
            loader.load_state_dict(state)
    with BatchedDataLoader(_ordered(store), batch_size=40, shuffling_queue_capacity=100) as loader:
        with pytest.raises(PetastormStateError, match=r"shuffling_queue_capacity \(saved 0, now 100\)"):
            loader.load_state_dict(state)


def test_a_state_from_another_dataset_is_refused(store, unsigned_store):
    state = _state_after_one_batch(store, 4)
    with BatchedDataLoader(_ordered(unsigned_store), batch_size=4) as loader:
        with pytest.raises(PetastormStateError, match="different dataset"):
            loader.load_state_dict(state)


# --- lifecycle -----------------------------------------------------------------------------------------------

def test_a_transform_fn_that_raises_reaches_the_loop_and_stops_the_reader(store):
    def bad(col):
        raise KeyError("boom")

    reader = _ordered(store)
    loader = BatchedDataLoader(reader, batch_size=8, transform_fn=bad)
    with pytest.raises(KeyError, match="boom"):  # 0.12.1 raised the transform_fn's KeyError('boom')
        for _ in loader:
            pass
    with pytest.raises(PetastormReaderError):
        next(reader)
    assert no_new_prefetch_thread_within()
    with pytest.raises(RuntimeError, match="last time iteration failed"):
        next(iter(loader))


def test_an_iterator_abandoned_mid_epoch_leaves_no_thread_once_collected(store):
    reader = make_batch_reader(store, num_epochs=None, workers_count=2)
    # (shuffled: the pass has a prefetch thread; plain CPU batches of a pooled reader are cut in next())
    loader = BatchedDataLoader(reader, batch_size=8, prefetch=4, shuffling_queue_capacity=32)
    it = iter(loader)
    next(it)
    assert new_prefetch_threads()
    del it, loader
    gc.collect()
    assert no_new_prefetch_thread_within()
    reader.stop()
    reader.join()


def test_context_manager_stops_the_reader(store):
    reader = _ordered(store)
    with BatchedDataLoader(reader, batch_size=8) as loader:
        next(iter(loader))
    with pytest.raises(PetastormReaderError):
        next(reader)
    assert no_new_prefetch_thread_within()


# --- InMemBatchedDataLoader ------------------------------------------------------------------------------------

def test_in_memory_epochs_as_the_original(types_dataset):
    # 0.12.1: 50 rows, batch_size 4, num_epochs 2: 26 batches, each epoch ends with a short batch [.., 4, 4, 2];
    # id int64, u16 int32, b uint8; every row once per epoch. (i8: 0.12.1's reader gave the stored int16, ours
    # the Unischema's int8; the loader keeps what the reader gives)
    loader = InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id", "u16", "b", "i8"]), batch_size=4,
                                    num_epochs=2)
    assert len(loader) == 26
    batches = list(loader)
    assert len(batches) == 26 and [len(b["id"]) for b in batches[10:14]] == [4, 4, 2, 4]
    assert {k: v.dtype for k, v in batches[0].items()} == {"id": torch.int64, "u16": torch.int32,
                                                          "b": torch.uint8, "i8": torch.int8}
    assert sorted(_all_ids(batches[:13])) == list(range(50)) == sorted(_all_ids(batches[13:]))


def test_in_memory_loader_iterates_once(types_dataset):
    # 0.12.1: RuntimeError("InMemBatchedDataLoader couldn't be used multiple times, please ...")
    loader = InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), batch_size=10)
    assert len(list(loader)) == 5
    with pytest.raises(RuntimeError, match="InMemBatchedDataLoader couldn't be used multiple times, please +specify "
                                           "total number of epochs using num_epochs in constructor."):
        list(loader)


def test_in_memory_shuffle_reshuffles_every_epoch(types_dataset):
    loader = InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), batch_size=10, num_epochs=3,
                                    shuffle=True, seed=4)
    batches = [b["id"].tolist() for b in loader]
    epochs = [sum(batches[i * 5:(i + 1) * 5], []) for i in range(3)]
    assert all(sorted(e) == list(range(50)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != list(range(50))


def test_in_memory_rows_capacity_bounds_the_rows_loaded(types_dataset):
    # 0.12.1: rows_capacity=20 over 50 rows serves 20 rows (2 batches of 10), silently; here with a warning
    loader = InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), batch_size=10, rows_capacity=20)
    with pytest.warns(UserWarning, match="rows_capacity=20"):
        assert [len(b["id"]) for b in loader] == [10, 10]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), batch_size=10, rows_capacity=50)
        assert len(list(exact)) == 5


def test_in_memory_over_an_endless_reader_is_a_clear_error(types_dataset):
    reader = make_batch_reader(types_dataset, schema_fields=["id"], num_epochs=None)
    with pytest.raises(PetastormArgumentError, match="num_epochs=None"):
        InMemBatchedDataLoader(reader, batch_size=10)
    reader.stop()
    reader.join()


def test_in_memory_bad_arguments(types_dataset):
    # 0.12.1: batch_size=0 -> ValueError('range() arg 3 must not be zero') on iteration
    with pytest.raises(ValueError, match="batch_size"):
        InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), batch_size=0)
    with pytest.raises(PetastormArgumentError, match="rows_capacity"):
        InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), rows_capacity=0)


def test_in_memory_endless_epochs(types_dataset):
    loader = InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), batch_size=20, num_epochs=None)
    it = iter(loader)
    assert [len(next(it)["id"]) for _ in range(7)] == [20, 20, 10, 20, 20, 10, 20]
    with pytest.raises(TypeError):
        len(loader)
    it.close()


def test_in_memory_transform_fn_per_column(types_dataset):
    # 0.12.1: transform_fn is called per field with the reader batch's numpy column (10 rows here)
    seen = []

    def f(col):
        seen.append((type(col), col.shape))
        return col * 2

    loader = InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id", "i8"]), batch_size=10,
                                    transform_fn=f)
    b = next(iter(loader))
    assert seen[0] == (np.ndarray, (10,)) and len(seen) == 10
    assert torch.equal(b["i8"].long(), b["id"]) and b["id"][1].item() - b["id"][0].item() == 2


@pytest.mark.parametrize("transform, rows", [
    (lambda col: col[:-1], 45),                            # one row fewer per reader batch (of 10; 50 rows)
    (lambda col: np.concatenate([col, col]), 100),         # every row twice
])
def test_in_memory_serves_the_rows_a_transform_fn_gives(types_dataset, transform, rows):
    # before: the rows were counted before transform_fn, so a transform_fn that drops rows gave an empty last
    # batch (and a len() too long), one that adds rows lost them (100 rows given, 50 served)
    # (0.12.1: any transform_fn raised AttributeError "'numpy.ndarray' object has no attribute 'device'")
    loader = InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id", "i8"]), batch_size=16,
                                    transform_fn=transform, num_epochs=2)
    with loader:
        batches = [b["id"].tolist() for b in loader]
    assert [len(b) for b in batches] == ([16] * (rows // 16) + [rows % 16]) * 2
    assert len(loader) == len(batches)


@pytest.mark.parametrize("transform, got", [(lambda col: col.sum(), "int64"), (lambda col: None, "NoneType"),
                                           (lambda col: {"x": col}, "dict")])
def test_a_transform_fn_returning_no_column_names_the_field(types_dataset, transform, got):
    # before: TypeError("len() of unsized object"), naming nothing
    for make in (BatchedDataLoader, InMemBatchedDataLoader):
        with make(_ordered(types_dataset, schema_fields=["id"]), batch_size=4, transform_fn=transform) as loader:
            with pytest.raises(TypeError, match=f"transform_fn returned a {got} for field 'id', not a column"):
                next(iter(loader))


def test_a_transform_fn_giving_columns_of_different_lengths_names_them(types_dataset):
    # 0.12.1 served misaligned batches (recorded: [(4, 4), ..., (4, 0), (3, 2)]); so did this loader
    def transform(col):
        return col[:-1] if col.dtype.kind == "i" and col.dtype.itemsize == 1 else col

    for make in (BatchedDataLoader, InMemBatchedDataLoader):
        with make(_ordered(types_dataset, schema_fields=["id", "i8"]), batch_size=4, transform_fn=transform) as loader:
            with pytest.raises(ValueError, match=r"transform_fn returned columns of different lengths: 'id' 10 "
                                                 r"rows, 'i8' 9 rows"):
                next(iter(loader))


def test_in_memory_resume(types_dataset):
    def make():
        return InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), batch_size=8, num_epochs=3,
                                      shuffle=True, seed=9)

    full = [b["id"].tolist() for b in make()]
    loader = make()
    it = iter(loader)
    head = [next(it)["id"].tolist() for _ in range(10)]
    state = _save_load(loader.state_dict())
    it.close()
    resumed = make()
    resumed.load_state_dict(state)
    assert head + [b["id"].tolist() for b in resumed] == full
    other = InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), batch_size=8, num_epochs=3,
                                   shuffle=True, seed=10)
    with pytest.raises(PetastormStateError, match=r"seed \(saved 9, now 10\)"):
        other.load_state_dict(state)


def test_in_memory_batches_do_not_alias_the_stored_rows(types_dataset):
    loader = InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), batch_size=50, num_epochs=2)
    first, second = [b["id"] for b in loader]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first.zero_()
    assert second.tolist() == list(range(50))


# --- balanced shards: the state records the global row ------------------------------------------------------

def test_a_balanced_shard_state_records_the_global_row_position(store):
    # 1000 rows, 2 balanced shards: shard 1 reads global rows 500..999 (reader order: no shuffling)
    reader = make_batch_reader(store, cur_shard=1, shard_count=2, shard_mode="balanced", shuffle_row_groups=False,
                               workers_count=2)
    assert reader.state_dict()["extra"]["global_row"] == 500
    with BatchedDataLoader(reader, batch_size=100) as loader:
        it = iter(loader)
        first = next(it)
        state = loader.state_dict()
        it.close()
    assert first["id"].tolist() == list(range(500, 600))
    body = state["body"]
    # what the loader has yielded ends at global row 600; rows read ahead sit in the loader (rows_held)
    assert body["global_row"] - body["rows_held"] == 600


# --- the original's batched shuffling buffers (pytorch_shuffling_buffer) ----------------------------------------

def test_batched_noop_buffer_as_the_original():
    from petastorm.reader_impl.pytorch_shuffling_buffer import BatchedNoopShufflingBuffer

    # recorded from 0.12.1: FIFO batches of batch_size as lists of tensors; numpy input accepted; can_add always;
    # can_retrieve with batch_size rows (after finish: any row); an empty finished buffer gives empty tensors
    b = BatchedNoopShufflingBuffer(batch_size=4)
    assert (b.size, b.can_add(), b.can_retrieve()) == (0, True, False)
    b.add_many([torch.arange(10), torch.arange(10) * 10])
    assert (b.size, b.can_retrieve()) == (10, True)
    first = b.retrieve()
    assert type(first) is list and [t.tolist() for t in first] == [[0, 1, 2, 3], [0, 10, 20, 30]]
    b.add_many([np.arange(3), np.arange(3)])
    assert b.size == 9
    b.retrieve()
    assert [t.tolist() for t in b.retrieve()] == [[8, 9, 0, 1], [80, 90, 0, 1]]
    assert (b.size, b.can_retrieve()) == (1, False)
    b.finish()
    assert (b.can_retrieve(), b.can_add()) == (True, True)
    assert [t.tolist() for t in b.retrieve()] == [[2], [2]]
    empty = b.retrieve()
    assert [t.tolist() for t in empty] == [[], []] and empty[0].dtype == torch.int64


def test_batched_random_buffer_as_the_original():
    from petastorm.reader_impl.pytorch_shuffling_buffer import (
        BatchedRandomShufflingBuffer,
        BatchedShufflingBufferBase,
    )

    # recorded from 0.12.1: can_add while size < capacity; can_retrieve with >= batch_size rows and more than
    # min_after_retrieve (after finish: any row); too many rows and a retrieve that cannot be served raise
    # RuntimeError with the original's words
    b = BatchedRandomShufflingBuffer(10, min_after_retrieve=5, extra_capacity=100, batch_size=4, seed=0)
    assert (b.size, b.can_add(), b.can_retrieve()) == (0, True, False)
    b.add_many([torch.arange(8), torch.arange(8) * 10])
    assert (b.size, b.can_add(), b.can_retrieve()) == (8, True, True)
    out = [b.retrieve()]
    b.add_many([torch.arange(8, 20), torch.arange(8, 20) * 10])
    assert (b.size, b.can_add(), b.can_retrieve()) == (16, False, True)
    states = []
    while b.can_retrieve():
        states.append((b.size, b.can_add()))
        out.append(b.retrieve())
    assert states == [(16, False), (12, False), (8, True)] and b.size == 4
    with pytest.raises(RuntimeError, match="Attempt to enqueue more elements than the capacity allows. Current "
                                           "size: 4, new size 204, maximum allowed: 110"):
        b.add_many([torch.arange(200), torch.arange(200)])
    b.finish()
    assert (b.can_retrieve(), b.can_add()) == (True, False)
    out.append(b.retrieve())
    ids = torch.cat([x[0] for x in out]).tolist()
    assert sorted(ids) == list(range(20)) and ids != list(range(20))
    assert all(torch.equal(x[1], x[0] * 10) for x in out)
    small = BatchedRandomShufflingBuffer(2, min_after_retrieve=1, batch_size=4)
    small.add_many([torch.arange(3)])
    assert (small.size, small.can_retrieve(), small.can_add()) == (3, False, False)
    with pytest.raises(RuntimeError, match='Can not dequeue. Check the return value of "can_dequeue\\(\\)"'):
        small.retrieve()
    with pytest.raises(TypeError, match="abstract"):
        BatchedShufflingBufferBase()


def test_in_memory_state_taken_after_len_before_iterating_resumes_from_the_start(types_dataset):
    def make():
        return InMemBatchedDataLoader(_ordered(types_dataset, schema_fields=["id"]), batch_size=8, num_epochs=2)

    full = [b["id"].tolist() for b in make()]
    loader = make()
    assert len(loader) == 14  # loads the rows: the reader is read to its end
    state = loader.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert [b["id"].tolist() for b in resumed] == full
    assert [b["id"].tolist() for b in loader] == full


def test_nulls_as_the_original(synthetic_dataset):
    # 0.12.1 over make_batch_reader: a nullable int column with None becomes float64 with NaN for the nulls;
    # over make_reader: TypeError('Pytorch does not support nullable fields. Found None in maybe')
    with BatchedDataLoader(_ordered(synthetic_dataset, schema_fields=["id", "maybe"]), batch_size=4) as loader:
        b = next(iter(loader))
    assert b["maybe"].dtype == torch.float64
    assert [None if np.isnan(v) else v for v in b["maybe"].tolist()] == [None, 1.0, 2.0, None]
    reader = make_reader(synthetic_dataset, schema_fields=["id", "maybe"], shuffle_row_groups=False, workers_count=2)
    with BatchedDataLoader(reader, batch_size=4) as loader:
        with pytest.raises(TypeError, match="Pytorch does not support nullable fields. Found None in maybe"):
            next(iter(loader))


def test_cells_of_different_shapes_are_named(synthetic_dataset):
    with BatchedDataLoader(_ordered(synthetic_dataset, schema_fields=["id", "var"]), batch_size=4) as loader:
        with pytest.raises(TypeError, match="field 'var' has cells of different shapes"):
            next(iter(loader))


def test_over_reader_mock():
    # ReaderMock (petastorm.test_util) is what users' tests give the loaders: endless generated rows
    from _fixtures.datasets import SyntheticSchema

    from petastorm.test_util.reader_mock import ReaderMock

    schema = SyntheticSchema.create_schema_view([SyntheticSchema.id, SyntheticSchema.matrix])
    reader = ReaderMock(schema, lambda s: {"id": np.int64(1), "matrix": np.ones((4, 3), np.float32)})
    loader = BatchedDataLoader(reader, batch_size=4, shuffling_queue_capacity=8)
    it = iter(loader)
    b = next(it)
    assert b["id"].tolist() == [1] * 4 and b["matrix"].shape == (4, 4, 3)
    with pytest.raises(PetastormStateError, match="ReaderMock has no state_dict"):
        loader.state_dict()
    it.close()
    assert no_new_prefetch_thread_within()
