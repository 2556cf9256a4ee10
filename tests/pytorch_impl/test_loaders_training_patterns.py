"""Training-script patterns of users migrating from 0.12.1, through the torch loaders.

Each expected behaviour was recorded from petastorm 0.12.1 (black box, public API) on
``original-0.12.1/all_codecs_0.12.1`` (60 rows, readers with ``workers_count=1``, ``reader_pool_type='dummy'``,
``shuffle_row_groups=False``), unless the test says it is ours. Found correct (no fix needed); kept as guards.
"""
from __future__ import annotations

import os

import pytest
import torch

from petastorm import TransformSpec, make_batch_reader, make_reader
from petastorm.ngram import NGram
from petastorm.pytorch import BatchedDataLoader, DataLoader, InMemBatchedDataLoader

pytestmark = pytest.mark.timeout(120)

_KW = dict(workers_count=1, reader_pool_type="dummy", shuffle_row_groups=False)
_RESET_ERROR = "Currently do not support resetting a reader while in the middle of iteration"


@pytest.fixture(scope="module")
def url(testdata_dir) -> str:
    return "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")


def _loader(kind, reader, **kw):
    return DataLoader(reader, batch_size=16, **kw) if kind == "DataLoader" else \
        BatchedDataLoader(reader, batch_size=16, **kw)


_KINDS = pytest.mark.parametrize("kind", ["DataLoader", "BatchedDataLoader"])


@_KINDS
def test_reader_reset_by_the_user_between_passes_of_one_loader(url, kind):
    # recorded from 0.12.1: the loader resets the reader itself at its next pass, so a reset() of the user's in
    # between leaves the reader "in the middle" for that second reset: NotImplementedError; one loader per epoch
    # over the reset reader works ([60, 60, 60])
    reader = make_reader(url, schema_fields=["id"], num_epochs=1, **_KW)
    with _loader(kind, reader) as loader:
        assert sum(len(b["id"]) for b in loader) == 60
        reader.reset()
        with pytest.raises(NotImplementedError, match=_RESET_ERROR):
            list(loader)
    reader = make_reader(url, schema_fields=["id"], num_epochs=1, **_KW)
    rows = []
    for _ in range(3):
        rows.append(sum(len(b["id"]) for b in _loader(kind, reader)))
        reader.reset()
    reader.stop()
    reader.join()
    assert rows == [60, 60, 60]


@_KINDS
def test_one_batch_for_shapes_then_the_loop(url, kind):
    # recorded from 0.12.1: next(iter(loader)) leaves its pass mid-epoch, so the loop's pass cannot reset the reader
    reader = make_reader(url, schema_fields=["id"], num_epochs=1, **_KW)
    with _loader(kind, reader) as loader:
        assert len(next(iter(loader))["id"]) == 16
        with pytest.raises(NotImplementedError, match=_RESET_ERROR):
            list(loader)


@_KINDS
def test_an_endless_reader_with_break_every_epoch(url, kind):
    # recorded from 0.12.1: the first "epoch" of 5 batches is served ([0, 4, 8] first), the second iter() cannot
    # reset the endless reader mid-epoch
    reader = make_reader(url, schema_fields=["id"], num_epochs=None, **_KW)
    with DataLoader(reader, batch_size=8) if kind == "DataLoader" else BatchedDataLoader(reader, batch_size=8) as loader:
        ids = []
        for i, batch in enumerate(loader):
            ids += batch["id"].tolist()
            if i == 4:
                break
        assert ids[:3] == [0, 4, 8] and len(ids) == 40
        with pytest.raises(NotImplementedError, match=_RESET_ERROR):
            for _ in loader:
                break


def test_the_loader_after_the_readers_with_block(url):
    # recorded from 0.12.1: RuntimeError('Trying to read a sample after a reader created by
    # make_reader/make_batch_reader has stopped...')
    with make_reader(url, schema_fields=["id"], num_epochs=1, **_KW) as reader:
        loader = DataLoader(reader, batch_size=16)
        assert sum(len(b["id"]) for b in loader) == 60
    with pytest.raises(RuntimeError, match="Trying to read a sample after a reader created by make_reader"):
        list(loader)


@pytest.mark.parametrize("kind", ["DataLoader", "BatchedDataLoader", "InMemBatchedDataLoader"])
def test_len(url, kind):
    # recorded from 0.12.1: no len() for any loader (TypeError); ours: InMemBatchedDataLoader has one (new)
    reader = make_reader(url, schema_fields=["id"], num_epochs=1, **_KW)
    if kind == "InMemBatchedDataLoader":
        with InMemBatchedDataLoader(reader, batch_size=16, num_epochs=2) as loader:
            assert len(loader) == 8
        return
    with _loader(kind, reader) as loader, pytest.raises(TypeError, match="has no len"):
        len(loader)


def test_schema_fields_as_regex_and_as_unischema_fields(url):
    # recorded from 0.12.1: ['id.*', 'f6.*'] -> f64 float64, id int64, id16 int16, id32 int32;
    # [schema.id, schema.matrix] -> id int64 (16,), matrix float32 (16, 8, 4, 3)
    with DataLoader(make_reader(url, schema_fields=["id.*", "f6.*"], num_epochs=1, **_KW), batch_size=16) as loader:
        batch = next(iter(loader))
    assert {k: v.dtype for k, v in batch.items()} == {"id": torch.int64, "id16": torch.int16, "id32": torch.int32,
                                                      "f64": torch.float64}
    with make_reader(url, num_epochs=1, **_KW) as reader:
        schema = reader.schema
    with BatchedDataLoader(make_reader(url, schema_fields=[schema.id, schema.matrix], num_epochs=1, **_KW),
                           batch_size=16) as loader:
        batch = next(iter(loader))
    assert {k: (v.dtype, tuple(v.shape)) for k, v in batch.items()} == {
        "id": (torch.int64, (16,)), "matrix": (torch.float32, (16, 8, 4, 3))}


def test_transform_spec_removed_fields(url):
    # recorded from 0.12.1: the fields left, with their dtypes
    spec = TransformSpec(removed_fields=["name", "dec", "partition", "maybe", "maybe_int", "strings", "var"])
    with DataLoader(make_reader(url, transform_spec=spec, num_epochs=1, **_KW), batch_size=16) as loader:
        batch = next(iter(loader))
    assert {k: str(v.dtype) for k, v in batch.items()} == {
        "f32": "torch.float32", "f64": "torch.float64", "flag": "torch.uint8", "gray": "torch.uint8",
        "id": "torch.int64", "id16": "torch.int16", "id32": "torch.int32", "jpeg": "torch.uint8",
        "matrix": "torch.float32", "png": "torch.uint8", "znd": "torch.float64"}


def test_transform_spec_selected_fields(url):
    # 0.12.1 failed here (TypeError from its row namedtuple: "unexpected keyword argument 'flag'"); ours serves
    # the selected fields in the order given
    spec = TransformSpec(selected_fields=["id", "png", "f32"])
    with DataLoader(make_reader(url, transform_spec=spec, num_epochs=1, **_KW), batch_size=16) as loader:
        batch = next(iter(loader))
    assert [(k, v.dtype) for k, v in batch.items()] == [("id", torch.int64), ("png", torch.uint8),
                                                         ("f32", torch.float32)]


@_KINDS
def test_an_ngram_reader_is_refused_naming_the_reader(url, kind):
    # 0.12.1: AttributeError("'dict' object has no attribute '_asdict'") at the first batch; ours: a ValueError
    # naming the argument when the loader is made
    from petastorm.errors import PetastormArgumentError

    with make_reader(url, num_epochs=1, **_KW) as reader:
        schema = reader.schema
    ngram = NGram({0: [schema.id, schema.f64], 1: [schema.id]}, delta_threshold=10, timestamp_field=schema.id)
    reader = make_reader(url, schema_fields=ngram, num_epochs=1, **_KW)
    try:
        with pytest.raises(PetastormArgumentError, match="reader: .* does not support readers with an ngram"):
            _loader(kind, reader)
    finally:
        reader.stop()
        reader.join()


@pytest.mark.parametrize("make", [make_reader, make_batch_reader], ids=["make_reader", "make_batch_reader"])
@pytest.mark.parametrize("kind", ["DataLoader", "BatchedDataLoader", "InMemBatchedDataLoader"])
def test_a_training_step_writing_its_batch_in_place_changes_no_later_batch(url, make, kind):
    # recorded from 0.12.1 (same values): f64 = id / 3 in every epoch although every batch is zeroed in place
    reader = make(url, schema_fields=["id", "f64", "matrix"], num_epochs=1 if kind == "InMemBatchedDataLoader" else 3,
                  **_KW)
    loader = InMemBatchedDataLoader(reader, batch_size=8, num_epochs=3, shuffle=True) \
        if kind == "InMemBatchedDataLoader" else _loader(kind, reader, shuffling_queue_capacity=20)
    with loader:
        seen = 0
        for batch in loader:
            assert torch.allclose(batch["f64"], batch["id"].double() / 3)
            assert (batch["matrix"] != 0).any()
            batch["f64"].zero_()
            batch["matrix"].zero_()
            batch["id"].fill_(-1)
            seen += len(batch["id"])
    assert seen == 180


@_KINDS
def test_resume_after_in_place_writes_continues_the_uninterrupted_values(url, kind):
    def make():
        return _loader(kind, make_batch_reader(url, schema_fields=["id", "f64"], num_epochs=1, seed=2, **_KW),
                       shuffling_queue_capacity=20)

    with make() as loader:
        expected = [b["id"].tolist() for b in loader]
    with make() as loader:
        it = iter(loader)
        for _ in range(2):
            next(it)["id"].fill_(-1)
        state = loader.state_dict()
    with make() as loader:
        loader.load_state_dict(state)
        rest = [b["id"].tolist() for b in loader]
    assert rest == expected[2:]


@pytest.mark.parametrize("kind", ["DataLoader", "BatchedDataLoader", "InMemBatchedDataLoader"])
def test_a_compiled_training_step_compiles_once(url, kind):
    # batches are views of reader batches (other storage offsets): dynamo must not recompile per batch
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(96, 4))

    @torch.compile(backend="eager")
    def step(x, y):
        return torch.nn.functional.cross_entropy(model(x), y)

    reader = make_batch_reader(url, schema_fields=["id", "matrix"], num_epochs=1, **_KW)
    loader = InMemBatchedDataLoader(reader, batch_size=8, num_epochs=2) if kind == "InMemBatchedDataLoader" \
        else (DataLoader if kind == "DataLoader" else BatchedDataLoader)(reader, batch_size=8)
    steps = 0
    with loader:
        for batch in loader:
            if len(batch["id"]) == 8:
                step(batch["matrix"], batch["id"] % 4).backward()
                steps += 1
    assert steps >= 7
    assert counters["stats"]["unique_graphs"] == 1
    assert sum(counters["recompiles"].values()) == 0


@pytest.mark.parametrize("make", [make_reader, make_batch_reader], ids=["make_reader", "make_batch_reader"])
def test_batched_dataloader_integral_float_batch_size(url, make):
    # recorded from 0.12.1: BatchedDataLoader(make_reader(...), batch_size=8.0) served the 60 rows; over
    # make_batch_reader it raised TypeError ("slice indices must be integers...")
    reader = make(url, schema_fields=["id"], num_epochs=1, **_KW)
    with reader:
        if make is make_batch_reader:
            with pytest.raises(TypeError, match="batch_size must be an integer"):
                BatchedDataLoader(reader, batch_size=8.0)
            return
        loader = BatchedDataLoader(reader, batch_size=8.0)
        assert loader.batch_size == 8 and isinstance(loader.batch_size, int)
        assert sorted(torch.cat([b["id"] for b in loader]).tolist()) == list(range(60))
    with make_reader(url, schema_fields=["id"], num_epochs=1, **_KW) as reader, \
            pytest.raises(TypeError, match="batch_size must be an integer"):
        BatchedDataLoader(reader, batch_size=8.5)


@pytest.mark.parametrize("make_loader, name", [
    (lambda r: DataLoader(r, batch_size=8, collate_fn=None), "collate_fn"),
    (lambda r: BatchedDataLoader(r, batch_size=8, transform_fn=5), "transform_fn"),
    (lambda r: InMemBatchedDataLoader(r, batch_size=8, transform_fn=5), "transform_fn"),
])
def test_a_function_argument_that_is_not_callable_is_a_type_error_naming_it(url, make_loader, name):
    # recorded from 0.12.1: TypeError ("'NoneType' object is not callable", "'int' object is not callable") at the
    # first batch; ours names the argument when the loader is made, and stays a TypeError (and a ValueError)
    with make_reader(url, schema_fields=["id"], num_epochs=1, **_KW) as reader:
        with pytest.raises(TypeError, match=f"{name} must be callable") as info:
            make_loader(reader)
        assert isinstance(info.value, ValueError)
