"""Blocks of whole batches converted at once (``TensorConverter.convert_block``, ``columns_block_to_torch``):
every batch equals what the batch-by-batch conversion gives, and the loaders using them resume exactly."""
import io
import os
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from petastorm import make_batch_reader
from petastorm.pytorch import BatchedDataLoader, DataLoader
from petastorm.pytorch_impl.collate import columns_block_to_torch, columns_to_torch
from petastorm.pytorch_impl.device import TensorConverter, resolve_device

K, BS = 4, 3


def _block():
    n = K * BS
    ro = np.arange(n, dtype=np.float32)
    ro.setflags(write=False)
    return {
        "f32": np.arange(n, dtype=np.float32) / 2,
        "mat": np.arange(n * 6, dtype=np.float64).reshape(n, 2, 3),
        "b": np.arange(n) % 2 == 0,
        "u16": np.arange(n, dtype=np.uint16),
        "u32": np.arange(n, dtype=np.uint32),
        "readonly": ro,
        "strided": np.arange(n * 2, dtype=np.int64).reshape(n, 2)[:, 1],
        "u64": np.arange(n, dtype=np.uint64),
    }


def _parts(block):
    return [{k: v[i * BS:(i + 1) * BS] for k, v in block.items()} for i in range(K)]


def _same(a, b):
    assert list(a) == list(b)
    for name in a:
        x, y = a[name], b[name]
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape, name
            assert torch.equal(x, y), name
        else:
            assert type(x) is type(y) and list(x) == list(y), name


@pytest.mark.parametrize("row_values", [False, True])
def test_a_converted_block_equals_its_batches_converted_one_by_one(row_values):
    conv = TensorConverter(resolve_device("cpu"), row_values=row_values)
    block = _block()
    batches = conv.convert_block(block, K)
    assert len(batches) == K
    for got, part in zip(batches, _parts(block)):
        _same(got, conv(part))
    assert batches[0]["b"].dtype == torch.uint8 and batches[0]["readonly"].dtype == torch.float32
    assert batches[1]["u16"].dtype == (torch.uint16 if row_values else torch.int32)


def test_block_tensors_are_writable_and_do_not_share_rows_between_batches():
    batches = TensorConverter().convert_block(_block(), K)
    for b in batches:
        b["readonly"] *= 0  # read-only input was copied: no warning, no error
        b["f32"] += 1
    assert batches[1]["f32"].tolist() == [2.5, 3.0, 3.5]


@pytest.mark.parametrize("kwargs", [{"pin_memory": True}, {"batch_transform": lambda b: b}])
def test_no_block_conversion_off_the_plain_cpu_path(kwargs):
    with pytest.warns(UserWarning) if kwargs.get("pin_memory") else _nothing():
        conv = TensorConverter(**kwargs)
    if kwargs.get("pin_memory") and not torch.cuda.is_available():
        assert conv.convert_block is not None  # pinning is off without an accelerator: plain again
    else:
        assert conv.convert_block is None


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_the_collate_block_keeps_strings_and_decimals_as_lists_per_batch():
    block = _block()
    block["name"] = np.array([f"n{i}" for i in range(K * BS)])
    block["dec"] = np.array([Decimal(i) / 4 for i in range(K * BS)], dtype=object)
    batches = columns_block_to_torch(block, K)
    for got, part in zip(batches, _parts(block)):
        _same(got, columns_to_torch(part))
    assert batches[2]["name"] == ["n6", "n7", "n8"]
    assert batches[2]["u32"].dtype == torch.int64


def test_the_collate_block_raises_for_a_none_naming_the_field():
    block = {"x": np.array([1, None, 3, 4, 5, 6], dtype=object)}
    with pytest.raises(TypeError, match="x"):
        columns_block_to_torch(block, 2)


# --- loaders over a reader whose row groups hold many batches ------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """1,000 rows in row groups of 300: id (int64), x = id / 2 (float32), flag (bool)."""
    path = tmp_path_factory.mktemp("blocks") / "store"
    os.makedirs(path)
    ids = np.arange(1000, dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "x": ids.astype(np.float32) * 0.5, "flag": ids % 3 == 0}),
                   str(path / "a.parquet"), row_group_size=300)
    return "file://" + str(path)


def _reader(store):
    return make_batch_reader(store, shuffle_row_groups=False, workers_count=2, num_epochs=1)


def _save_load(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf)


@pytest.mark.parametrize("make", [
    lambda r, **kw: BatchedDataLoader(r, batch_size=16, **kw),
    lambda r, **kw: DataLoader(r, batch_size=16),
], ids=["BatchedDataLoader", "DataLoader"])
@pytest.mark.parametrize("cut", [1, 7, 18, 40])
def test_loaders_resume_exactly_from_inside_a_block(store, make, cut):
    with make(_reader(store)) as loader:
        full = [(b["id"].tolist(), b["flag"].dtype) for b in loader]
    assert [len(ids) for ids, _ in full][:18] == [16] * 18 and sum(len(ids) for ids, _ in full) == 1000
    assert {dtype for _, dtype in full} == {torch.uint8}
    with make(_reader(store)) as first:
        it = iter(first)
        head = [next(it)["id"].tolist() for _ in range(cut)]
        state = _save_load(first.state_dict())
        it.close()
    with make(_reader(store)) as second:
        second.load_state_dict(state)
        rest = [b["id"].tolist() for b in second]
    assert head + rest == [ids for ids, _ in full]


def test_batched_loader_block_batches_match_prefetch_off(store):
    def batches(prefetch):
        with BatchedDataLoader(_reader(store), batch_size=16, prefetch=prefetch) as loader:
            return [(b["id"].tolist(), b["x"].tolist()) for b in loader]

    assert batches(2) == batches(0)
