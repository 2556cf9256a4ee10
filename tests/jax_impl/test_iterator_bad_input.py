"""make_jax_iterator against a hostile user, on one device: the defects a hostile user's input showed.

Each test is a defect that was shown by a script first: a user's ``transform_fn`` writing into buffers it
reuses, a ``transform_fn`` returning a ragged list, a ``seed`` that is no integer, a state whose digest was
removed after it was edited, a ``batch_size`` given as a one-element array.
"""
import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.errors import PetastormArgumentError, PetastormStateError, PetastormTypeError
from petastorm.jax import make_jax_iterator
from tests.jax_impl._parity_inputs import StopsOnSecondBatch


def _aligned(rows: int) -> np.ndarray:
    """A float32 buffer on a 64-byte boundary: JAX's CPU client takes such host memory without a copy."""
    raw = np.empty(rows * 4 + 64, np.uint8)
    offset = (-raw.ctypes.data) % 64
    return raw[offset:offset + rows * 4].view(np.float32)


class _ReusedBuffers:
    """A transform_fn that writes its output into one buffer per batch length, reused from batch to batch
    (a common way to save allocations)."""

    def __init__(self) -> None:
        self.buffers = {}

    def __call__(self, batch):
        rows = len(batch["id"])
        out = self.buffers.setdefault(rows, _aligned(rows))
        out[:] = batch["id"]
        return {"x": out}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("make", [make_batch_reader, make_reader])
def test_batches_from_a_transform_fn_reusing_its_buffers_keep_their_own_rows(synthetic_dataset, make, prefetch):
    # the arrays JAX made were views of the user's buffer: with prefetch the first batch already held the rows
    # of the third when yielded, and every kept batch ended up holding the last batch's rows
    with make(synthetic_dataset, schema_fields=["id"], shuffle_row_groups=False, workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=10, prefetch=prefetch, transform_fn=_ReusedBuffers()) as batches:
        kept = list(batches)
    got = [np.asarray(batch["x"]).tolist() for batch in kept]
    assert got == [list(range(start, start + 10)) for start in range(0, 100, 10)]


@pytest.mark.timeout(60)
def test_a_transform_fn_returning_a_ragged_list_is_an_error_naming_the_field(synthetic_dataset):
    def ragged(batch):
        return {"id": batch["id"], "seq": [np.zeros(i) for i in range(len(batch["id"]))]}

    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=10, transform_fn=ragged)
        with pytest.raises(PetastormTypeError, match="'seq'"):  # was a bare ValueError from numpy
            next(batches)
        batches.close()


@pytest.mark.parametrize("seed", ["7", 1.5])
def test_a_seed_that_is_no_integer_is_refused_naming_it(synthetic_dataset, seed):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        with pytest.raises(TypeError, match="seed"):  # was numpy's SeedSequence TypeError, not naming seed
            make_jax_iterator(reader, batch_size=10, shuffling_queue_capacity=20, seed=seed)


@pytest.mark.timeout(60)
def test_a_negative_seed_shuffles_reproducibly_as_the_torch_loaders_accept_it(synthetic_dataset):
    def ids():
        with make_batch_reader(synthetic_dataset, schema_fields=["id"], shuffle_row_groups=False,
                               workers_count=1) as reader, \
                make_jax_iterator(reader, batch_size=10, shuffling_queue_capacity=30, seed=-1) as batches:
            return [np.asarray(b["id"]).tolist() for b in batches]  # was ValueError('expected non-negative integer')

    first = ids()
    assert first == ids()
    assert sorted(sum(first, [])) == list(range(100)) and sum(first, []) != list(range(100))


@pytest.mark.timeout(60)
def test_a_state_edited_and_stripped_of_its_digest_is_refused(synthetic_dataset):
    def iterator(reader):
        return make_jax_iterator(reader, batch_size=4, prefetch=3)

    with make_batch_reader(synthetic_dataset, schema_fields=["id"], shuffle_row_groups=False, workers_count=1,
                           seed=1) as reader, iterator(reader) as batches:
        next(batches)
        state = batches.state_dict()
    del state["digest"]  # with the digest gone, an edit (here: dropping a prefetched batch) was accepted
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], shuffle_row_groups=False, workers_count=1,
                           seed=1) as reader, iterator(reader) as batches:
        with pytest.raises(PetastormStateError, match="digest"):
            batches.load_state_dict(state)


def test_a_batch_size_given_as_a_one_element_array_is_refused_naming_it(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        with pytest.raises((TypeError, PetastormArgumentError), match="batch_size"):
            make_jax_iterator(reader, batch_size=np.array([8]))


@pytest.fixture(scope="module")
def nullable_ids_dataset(tmp_path_factory):
    """20 rows: a nullable int64 ``big`` (2**40 + i, None every 3rd row) and ``small`` (i, None every 3rd row)."""
    from _fixtures.datasets import write_synthetic_dataset

    from petastorm.codecs import ScalarCodec
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("NullableIds", [
        UnischemaField("id", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
        UnischemaField("big", np.int64, (), ScalarCodec(spark_type("LongType")), True),
        UnischemaField("small", np.int64, (), ScalarCodec(spark_type("LongType")), True),
    ])

    def row(i):
        return {"id": i, "big": None if i % 3 == 1 else 2 ** 40 + i, "small": None if i % 3 == 1 else i}

    return write_synthetic_dataset(str(tmp_path_factory.mktemp("nullable_ids") / "d"), rows=20, rows_per_group=10,
                                   schema=schema, row_fn=row)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", [make_batch_reader, make_reader])
def test_nullable_integers_that_float32_would_round_raise_naming_the_field(nullable_ids_dataset, make):
    # with 64-bit mode off they arrived as float32: 2**40 + 2, 2**40 + 3 ... all became 2**40, silently
    from petastorm.errors import PetastormSchemaError

    with make(nullable_ids_dataset, schema_fields=["id", "big"], shuffle_row_groups=False,
              workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=5)
        with pytest.raises(PetastormSchemaError, match="'big'.*enable_x64"):
            next(batches)
        batches.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", [make_batch_reader, make_reader])
def test_nullable_integers_that_float32_holds_exactly_still_arrive_as_floats_with_nan(nullable_ids_dataset, make):
    with make(nullable_ids_dataset, schema_fields=["id", "small"], shuffle_row_groups=False,
              workers_count=1) as reader, make_jax_iterator(reader, batch_size=20) as batches:
        small = np.asarray(next(batches)["small"])
    assert small.dtype == np.float32
    expected = np.array([np.nan if i % 3 == 1 else i for i in range(20)], dtype=np.float32)
    np.testing.assert_array_equal(small, expected)


@pytest.mark.parametrize("reader", [None, "file:///tmp/some/dataset", [{"id": 1}]])
def test_something_that_is_no_reader_is_refused_up_front_naming_the_argument(reader):
    # None was accepted: next() raised "'NoneType' object is not iterable" and close() an AttributeError ('stop')
    with pytest.raises(PetastormTypeError, match="reader: make_jax_iterator needs a petastorm reader"):
        make_jax_iterator(reader, batch_size=4)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", [make_batch_reader, make_reader])
def test_a_big_endian_field_arrives_with_its_values(big_endian_dataset, make):
    # over make_batch_reader JAX raised its own TypeError ("Dtype >f4 is not a valid JAX array type"), naming no field
    with make(big_endian_dataset, schema_fields=["id", "v"], shuffle_row_groups=False, workers_count=1) as reader, \
            make_jax_iterator(reader, batch_size=4) as batches:
        got = [np.asarray(batch["v"]) for batch in batches]
    assert all(v.dtype == np.float32 for v in got)
    np.testing.assert_array_equal(np.concatenate(got), np.repeat(np.arange(12, dtype=np.float32)[:, None], 3, 1))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_transform_fn_raising_stop_iteration_does_not_end_the_pass_silently(synthetic_dataset, prefetch):
    # re-raised by next(), the StopIteration ended the training loop after 1 of 10 batches as if the pass had ended
    # (the torch DataLoader gives PEP 479's RuntimeError for the same collate_fn)
    from petastorm.errors import PetastormWorkerError

    with make_batch_reader(synthetic_dataset, schema_fields=["id"], shuffle_row_groups=False,
                           workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=10, prefetch=prefetch, transform_fn=StopsOnSecondBatch())
        seen = []
        with pytest.raises(RuntimeError, match="transform_fn raised StopIteration") as error:
            for batch in batches:
                seen.append(batch)
        assert isinstance(error.value, PetastormWorkerError) and len(seen) == 1
        batches.close()


@pytest.fixture(scope="module")
def nullable_timestamps_dataset(tmp_path_factory):
    """A plain Parquet file of 6 rows: ``id`` and a timestamp ``ts`` that is null in every other row."""
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("nullable_ts")
    stamps = [None if i % 2 else datetime.datetime(2020, 1, 1, 0, 0, i) for i in range(6)]
    pq.write_table(pa.table({"id": np.arange(6), "ts": pa.array(stamps, pa.timestamp("us"))}),
                   str(path / "a.parquet"))
    return "file://" + str(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("x64", [True, False])
def test_missing_timestamps_are_an_error_naming_the_field_not_a_sentinel(nullable_timestamps_dataset, x64):
    # NaT arrived as int64 -9223372036854775808 (the year 1677) with 64-bit mode on; with it off the error said
    # the values did not fit int32 and advised turning 64-bit mode on, which led to the sentinel
    import jax

    with make_batch_reader(nullable_timestamps_dataset, workers_count=1) as reader:
        with jax.enable_x64(x64):
            batches = make_jax_iterator(reader, batch_size=6)
        with pytest.raises(PetastormTypeError, match="'ts'.*NaT"):
            next(batches)
        batches.close()
