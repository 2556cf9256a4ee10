"""make_jax_iterator on one device: batches, values, types, the last batch, resume, lifecycle, bad input.

The multi-device (sharded) path is in tests/jax_impl/test_placement.py.
"""
import gc
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.errors import (
    PetastormArgumentError,
    PetastormReaderError,
    PetastormSchemaError,
    PetastormStateError,
    PetastormTypeError,
)
from petastorm.jax import JaxIterator, make_jax_iterator

NUMERIC = ["id", "id_div_10", "value", "matrix", "image"]


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "petastorm-batch-prefetch"]


def _ids(batches):
    return [np.asarray(b["id"]).tolist() for b in batches]


def _expected_matrix(ids):
    ids = np.asarray(ids, dtype=np.float32)
    return ids[:, None, None] + np.arange(12, dtype=np.float32).reshape(4, 3)


# --- batches and values ----------------------------------------------------------------------------------------


def test_batch_reader_yields_dicts_of_jax_arrays_with_the_dataset_values(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, schema_fields=NUMERIC, shuffle_row_groups=False,
                           workers_count=2) as reader:
        with make_jax_iterator(reader, batch_size=16) as batches:
            got = list(batches)
    assert [int(b["id"].shape[0]) for b in got] == [16] * 6 + [4]
    first = got[0]
    assert set(first) == set(NUMERIC)
    assert all(isinstance(v, jax.Array) for v in first.values())
    assert first["matrix"].shape == (16, 4, 3) and first["matrix"].dtype == jnp.float32
    assert first["image"].shape == (16, 8, 6, 3) and first["image"].dtype == jnp.uint8
    # JAX's 64-bit mode is off: int64 -> int32 and float64 -> float32, values kept
    assert first["id"].dtype == jnp.int32 and first["value"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(first["id"]), np.arange(16))
    np.testing.assert_allclose(np.asarray(first["value"]), np.arange(16) / 7, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(first["matrix"]), _expected_matrix(range(16)))
    assert sum(_ids(got), []) == list(range(100))


def test_row_reader_rows_are_gathered_into_the_same_batches(synthetic_dataset):
    with make_reader(synthetic_dataset, schema_fields=NUMERIC, shuffle_row_groups=False, workers_count=2) as reader:
        with make_jax_iterator(reader, batch_size=16) as batches:
            got = list(batches)
    assert [int(b["id"].shape[0]) for b in got] == [16] * 6 + [4]
    assert sum(_ids(got), []) == list(range(100))
    np.testing.assert_array_equal(np.asarray(got[-1]["matrix"]), _expected_matrix(range(96, 100)))
    assert got[0]["image"].shape == (16, 8, 6, 3)


def test_batches_are_on_the_device_and_ready_when_yielded(synthetic_dataset):
    device = jax.devices()[0]
    fields = ["id", "timestamp", "matrix"]  # id and timestamp (int64) travel as one stack
    with make_batch_reader(synthetic_dataset, schema_fields=fields, shuffle_row_groups=False,
                           workers_count=1) as reader:
        with make_jax_iterator(reader, batch_size=10, sharding=device) as batches:
            batch = next(batches)
    assert all(batch[f].devices() == {device} and batch[f].is_ready() for f in fields)
    np.testing.assert_array_equal(np.asarray(batch["timestamp"]), 1000 + 10 * np.arange(10))


def test_a_jitted_step_consumes_the_batches(synthetic_dataset):
    @jax.jit
    def step(total, batch):
        return total + jnp.sum(batch["matrix"]) + jnp.sum(batch["id"])

    total = jnp.zeros((), jnp.float32)
    with make_batch_reader(synthetic_dataset, schema_fields=["id", "matrix"], workers_count=2) as reader:
        with make_jax_iterator(reader, batch_size=20, drop_last=True) as batches:
            for batch in batches:
                total = step(total, batch)
    assert float(total) == float(_expected_matrix(range(100)).sum() + sum(range(100)))


def test_many_small_columns_of_one_type_and_a_large_one_arrive_with_their_own_values(synthetic_dataset):
    # 6 float32 columns and 2 int64 columns are moved as two stacks and split on device; 'big' (over 1 MiB
    # per batch) and 'matrix' (its own row shape) travel alone
    def many(batch):
        out = {f"f{i}": batch["matrix"][:, i // 3, i % 3] * (i + 1) for i in range(6)}
        out.update(id=batch["id"], id_x2=batch["id"] * 2, matrix=batch["matrix"])
        out["big"] = np.repeat(batch["id"].astype(np.uint8)[:, None], 120_000, axis=1)
        return out

    with make_batch_reader(synthetic_dataset, schema_fields=["id", "matrix"], shuffle_row_groups=False,
                           workers_count=1) as reader:
        with make_jax_iterator(reader, batch_size=10, transform_fn=many) as batches:
            got = list(batches)
    assert len(got) == 10
    for start, batch in zip(range(0, 100, 10), got):
        ids = np.arange(start, start + 10)
        assert list(batch) == [f"f{i}" for i in range(6)] + ["id", "id_x2", "matrix", "big"]
        matrix = _expected_matrix(ids)
        for i in range(6):
            assert batch[f"f{i}"].shape == (10,) and batch[f"f{i}"].dtype == jnp.float32
            np.testing.assert_array_equal(np.asarray(batch[f"f{i}"]), matrix[:, i // 3, i % 3] * (i + 1))
        np.testing.assert_array_equal(np.asarray(batch["id"]), ids)
        np.testing.assert_array_equal(np.asarray(batch["id_x2"]), ids * 2)
        np.testing.assert_array_equal(np.asarray(batch["matrix"]), matrix)
        assert batch["big"].shape == (10, 120_000)
        np.testing.assert_array_equal(np.asarray(batch["big"][:, -1]), ids.astype(np.uint8))


def test_last_short_batch_is_kept_by_default_and_dropped_with_drop_last(synthetic_dataset):
    sizes = {}
    for drop_last in (False, True):
        with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
            with make_jax_iterator(reader, batch_size=30, drop_last=drop_last) as batches:
                sizes[drop_last] = [int(b["id"].shape[0]) for b in batches]
    assert sizes == {False: [30, 30, 30, 10], True: [30, 30, 30]}


def test_shuffling_is_seeded_and_serves_every_row_once(synthetic_dataset):
    runs = []
    for _ in range(2):
        with make_reader(synthetic_dataset, schema_fields=["id"], shuffle_row_groups=False, workers_count=1) as r:
            with make_jax_iterator(r, batch_size=8, shuffling_queue_capacity=40, seed=5) as batches:
                runs.append(sum(_ids(batches), []))
    assert runs[0] == runs[1]
    assert runs[0] != list(range(100)) and sorted(runs[0]) == list(range(100))


def test_prefetch_zero_uses_no_thread(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        with make_jax_iterator(reader, batch_size=10, prefetch=0) as batches:
            next(batches)
            assert _prefetch_threads() == []
            assert len(sum(_ids(batches), [])) == 90


def test_reader_with_num_epochs_none_never_ends(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], num_epochs=None, workers_count=1) as reader:
        with make_jax_iterator(reader, batch_size=32) as batches:
            ids = np.concatenate([np.asarray(next(batches)["id"]) for _ in range(20)])  # 640 rows, 6.4 epochs
    assert len(ids) == 640
    assert np.bincount(ids, minlength=100).min() >= 6
    assert _prefetch_threads() == []


# --- types JAX cannot hold --------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, words", [
    ("name", "holds strings"),
    ("dec", "holds Decimal values"),
    ("var", "has a variable shape (None,)"),
])
def test_non_numeric_field_is_refused_up_front_naming_it(synthetic_dataset, field, words):
    with make_batch_reader(synthetic_dataset, schema_fields=["id", field], workers_count=1) as reader:
        with pytest.raises(PetastormTypeError) as info:
            make_jax_iterator(reader, batch_size=10)
    message = str(info.value)
    assert f"field {field!r}" in message and words in message
    assert "schema_fields" in message and "transform_fn" in message


def test_string_column_made_by_transform_fn_is_refused_naming_it(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=10, transform_fn=lambda b: {**b, "tag": b["id"].astype(str)})
        with pytest.raises(PetastormTypeError, match=r"field 'tag' holds strings \(numpy <U"):
            next(batches)
        batches.close()


def test_none_in_a_nullable_number_field_is_nan_as_the_torch_loaders_give_it(synthetic_dataset):
    # 'maybe' is a nullable int32 field, None in every third row: float NaN there (before: PetastormTypeError),
    # as BatchedDataLoader gives it (0.12.1's batch reader went through pandas: float64 with NaN)
    with make_batch_reader(synthetic_dataset, schema_fields=["id", "maybe"], workers_count=1, shuffle_rows=False,
                           shuffle_row_groups=False) as reader:
        with make_jax_iterator(reader, batch_size=10) as batches:
            batch = next(batches)
    ids, maybe = np.asarray(batch["id"]), np.asarray(batch["maybe"])
    assert np.issubdtype(maybe.dtype, np.floating)
    assert np.array_equal(np.isnan(maybe), ids % 3 == 0)
    assert np.array_equal(maybe[ids % 3 != 0], ids[ids % 3 != 0])


def test_none_in_a_field_that_is_no_number_is_an_error_naming_it_and_stops_the_reader(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, schema_fields=["id", "maybe"], workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=10, transform_fn=lambda b: {
            "id": b["id"], "maybe": np.array([None if v is None else "x" for v in b["maybe"]], dtype=object)})
        with pytest.raises(PetastormTypeError, match="field 'maybe' holds None"):
            next(batches)
        with pytest.raises(PetastormReaderError):
            next(reader)  # stopped on the error
    assert _prefetch_threads() == []


def test_transform_fn_can_drop_and_fill_fields_jax_cannot_hold(synthetic_dataset):
    def to_numeric(batch):
        maybe = batch["maybe"]
        missing = np.array([v is None for v in maybe])
        filled = np.where(missing, -1, maybe).astype(np.int32)
        return {"id": batch["id"], "maybe": filled, "maybe_missing": missing}

    with make_batch_reader(synthetic_dataset, shuffle_row_groups=False, workers_count=1) as reader:
        with make_jax_iterator(reader, batch_size=50, transform_fn=to_numeric) as batches:
            batch = next(batches)
    assert set(batch) == {"id", "maybe", "maybe_missing"}
    assert batch["maybe_missing"].dtype == jnp.bool_
    ids = np.arange(50)
    np.testing.assert_array_equal(np.asarray(batch["maybe"]), np.where(ids % 3 == 0, -1, ids))


def test_transform_fn_may_return_jax_arrays(synthetic_dataset):
    def on_device(batch):
        return {"id": batch["id"], "scaled": jnp.asarray(batch["matrix"]) * 2}

    with make_batch_reader(synthetic_dataset, schema_fields=["id", "matrix"], shuffle_row_groups=False,
                           workers_count=1) as reader:
        with make_jax_iterator(reader, batch_size=10, transform_fn=on_device) as batches:
            batch = next(batches)
    assert isinstance(batch["scaled"], jax.Array) and batch["scaled"].shape == (10, 4, 3)
    np.testing.assert_array_equal(np.asarray(batch["scaled"]), _expected_matrix(range(10)) * 2)


def test_bfloat16_columns_made_by_transform_fn_are_placed(synthetic_dataset):
    def half(batch):
        return {"id": batch["id"], "m16": batch["matrix"].astype(jnp.bfloat16)}

    with make_batch_reader(synthetic_dataset, schema_fields=["id", "matrix"], shuffle_row_groups=False,
                           workers_count=1) as reader:
        with make_jax_iterator(reader, batch_size=10, transform_fn=half) as batches:
            batch = next(batches)
    assert batch["m16"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(batch["m16"], dtype=np.float32), _expected_matrix(range(10)))


def test_int64_values_that_int32_cannot_hold_raise_naming_the_field(synthetic_dataset):
    def big(batch):
        return {"id": batch["id"], "big": batch["id"] + 2 ** 40}

    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=10, transform_fn=big)
        with pytest.raises(PetastormSchemaError) as info:
            next(batches)
    message = str(info.value)
    assert "field 'big'" in message and "int32" in message and "jax_enable_x64" in message


def test_timestamps_without_x64_raise_naming_the_field_and_the_unit(synthetic_dataset):
    def stamps(batch):
        return {"id": batch["id"], "when": np.datetime64("2024-01-01", "s") + batch["id"].astype("timedelta64[s]")}

    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=10, transform_fn=stamps)
        with pytest.raises(PetastormSchemaError, match=r"field 'when' holds datetime64\[s\] \(as int64 nanoseconds\)"):
            next(batches)


@pytest.mark.slow
def test_with_x64_on_int64_values_and_timestamps_arrive_whole(synthetic_dataset):
    code = textwrap.dedent("""
        import sys, numpy as np, jax
        from petastorm import make_batch_reader
        from petastorm.jax import make_jax_iterator
        def add(batch):
            stamps = np.datetime64("2024-01-01T00:00:00", "s") + batch["id"].astype("timedelta64[s]")
            return {"big": batch["id"] + 2 ** 40, "when": stamps, "value": batch["value"]}
        with make_batch_reader(sys.argv[1], schema_fields=["id", "value"], shuffle_row_groups=False,
                               workers_count=1) as reader:
            with make_jax_iterator(reader, batch_size=4, transform_fn=add) as batches:
                b = next(batches)
        print(b["big"].dtype, b["when"].dtype, b["value"].dtype)
        print(np.asarray(b["big"]).tolist())
        print(np.asarray(b["when"]).tolist())
    """)
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code, synthetic_dataset], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dtypes, big, when = proc.stdout.strip().splitlines()[-3:]
    assert dtypes == "int64 int64 float64"
    assert eval(big) == [2 ** 40 + i for i in range(4)]
    base = 1704067200 * 10 ** 9  # 2024-01-01T00:00:00 in ns
    assert eval(when) == [base + i * 10 ** 9 for i in range(4)]


# --- resume ----------------------------------------------------------------------------------------------------


def _reader(url, **kw):
    return make_reader(url, schema_fields=["id", "matrix"], shuffle_row_groups=True, seed=11, workers_count=2, **kw)


def _iterator(reader, **kw):
    return make_jax_iterator(reader, batch_size=7, shuffling_queue_capacity=25, seed=3, **kw)


@pytest.mark.parametrize("checkpoint", [0, 4, 14])
def test_resume_mid_epoch_yields_the_uninterrupted_sequence(synthetic_dataset, checkpoint):
    with _reader(synthetic_dataset) as reader, _iterator(reader) as batches:
        full = _ids(batches)
    assert len(full) == 15 and sorted(sum(full, [])) == list(range(100))
    with _reader(synthetic_dataset) as reader:
        batches = _iterator(reader, prefetch=3)
        head = [np.asarray(next(batches)["id"]).tolist() for _ in range(checkpoint)]
        state = pickle.loads(pickle.dumps(batches.state_dict()))
        batches.close()
    with _reader(synthetic_dataset) as reader, _iterator(reader) as batches:
        batches.load_state_dict(state)
        rest = list(batches)
    assert head + _ids(rest) == full
    np.testing.assert_array_equal(np.asarray(rest[0]["matrix"]), _expected_matrix(rest[0]["id"]))


def test_state_from_other_settings_names_the_setting(synthetic_dataset):
    with _reader(synthetic_dataset) as reader, _iterator(reader) as batches:
        next(batches)
        state = batches.state_dict()
    with _reader(synthetic_dataset) as reader:
        other = make_jax_iterator(reader, batch_size=8, shuffling_queue_capacity=25, seed=3)
        with pytest.raises(PetastormStateError, match=r"batch_size \(saved 7, now 8\)"):
            other.load_state_dict(state)
        other = _iterator(reader, drop_last=True)
        with pytest.raises(PetastormStateError, match=r"drop_last \(saved False, now True\)"):
            other.load_state_dict(state)
        with pytest.raises(PetastormStateError, match="not a state of make_jax_iterator"):
            other.load_state_dict(reader.state_dict())


def test_a_state_changed_after_state_dict_or_of_a_torch_loader_is_refused(synthetic_dataset):
    # before: a prefetched batch dropped from the state resumed with its rows lost; a torch loader's state was
    # refused as "got dict"
    from petastorm.pytorch import BatchedDataLoader

    with _reader(synthetic_dataset) as reader, _iterator(reader, prefetch=0) as batches:
        next(batches)
        state = batches.state_dict()
        torch_loader = BatchedDataLoader(reader, batch_size=7)
        next(iter(torch_loader))
        torch_state = torch_loader.state_dict()
    changed = pickle.loads(pickle.dumps(state))
    changed["core"]["batches_served"] = 0
    with _reader(synthetic_dataset) as reader, _iterator(reader, prefetch=0) as batches:
        with pytest.raises(PetastormStateError, match=r"make_jax_iterator state was changed or cut after state_dict"):
            batches.load_state_dict(changed)
        with pytest.raises(PetastormStateError, match="got a BatchedDataLoader state"):
            batches.load_state_dict(torch_state)
    with _reader(synthetic_dataset) as reader, _iterator(reader, prefetch=0) as batches:
        batches.load_state_dict(pickle.loads(pickle.dumps(state)))  # as saved: resumes
        assert next(batches)["id"].shape == (7,)


def test_state_from_another_dataset_is_refused(synthetic_dataset, tmp_path):
    from _fixtures.datasets import write_synthetic_dataset

    other_url = write_synthetic_dataset(str(tmp_path / "other"), rows=40)
    with _reader(synthetic_dataset) as reader, _iterator(reader) as batches:
        next(batches)
        state = batches.state_dict()
    with _reader(other_url) as reader, _iterator(reader) as batches:
        with pytest.raises(PetastormStateError):
            batches.load_state_dict(state)


# --- lifecycle -------------------------------------------------------------------------------------------------


def test_context_manager_stops_and_joins_the_reader_mid_epoch(synthetic_dataset):
    reader = make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=2)
    with make_jax_iterator(reader, batch_size=10) as batches:
        next(batches)
        assert len(_prefetch_threads()) == 1
    assert _prefetch_threads() == []
    with pytest.raises(PetastormReaderError):
        next(reader)
    with pytest.raises(PetastormReaderError):
        next(batches)
    batches.close()  # idempotent


def test_abandoned_iterator_leaves_no_thread_once_collected(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=5, prefetch=2)
        next(batches)
        assert len(_prefetch_threads()) == 1
        del batches
        gc.collect()
        assert _prefetch_threads() == []


@pytest.mark.timeout(60)
def test_transform_fn_error_reaches_the_caller_and_stops_the_reader(synthetic_dataset):
    calls = []

    def fails_on_third(batch):
        calls.append(1)
        if len(calls) == 3:
            raise ZeroDivisionError("bad batch")
        return batch

    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=2) as reader:
        batches = make_jax_iterator(reader, batch_size=10, transform_fn=fails_on_third)
        got = 0
        with pytest.raises(ZeroDivisionError, match="bad batch"):
            for _ in batches:
                got += 1
        assert got == 2
        with pytest.raises(PetastormReaderError):
            next(reader)
        # before: a state taken now resumed after the failed batch, its rows silently skipped
        with pytest.raises(PetastormStateError, match=r"the pass failed with ZeroDivisionError\('bad batch'\)"):
            batches.state_dict()
    assert _prefetch_threads() == []


# --- bad arguments ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, words", [
    ({"batch_size": 0}, PetastormArgumentError, "batch_size must be an integer >= 1, got 0"),
    ({"batch_size": -4}, PetastormArgumentError, "batch_size must be an integer >= 1, got -4"),
    ({"batch_size": 2.5}, PetastormTypeError, "batch_size must be an integer >= 1, got 2.5"),
    ({"batch_size": True}, PetastormTypeError, "batch_size must be an integer >= 1, got True"),
    ({"batch_size": 4, "prefetch": -1}, PetastormArgumentError, "prefetch must be an integer >= 0, got -1"),
    ({"batch_size": 4, "shuffling_queue_capacity": -1}, PetastormArgumentError,
     "shuffling_queue_capacity must be an integer >= 0"),
    ({"batch_size": 4, "sharding": "cpu"}, PetastormTypeError, "sharding must be a jax.sharding.Sharding"),
    ({"batch_size": 4, "transform_fn": 3}, PetastormTypeError, "transform_fn must be callable"),
])
def test_bad_arguments_are_named(synthetic_dataset, kwargs, error, words):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        with pytest.raises(error) as info:
            make_jax_iterator(reader, **kwargs)
    assert words in str(info.value)
    assert isinstance(info.value, (ValueError, TypeError))
    assert _prefetch_threads() == []


def test_numpy_integer_arguments_are_accepted(synthetic_dataset):
    # sizes computed with numpy (np.int64) were refused as "not an int"; the torch loaders take them
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1, shuffle_row_groups=False) as reader:
        with make_jax_iterator(reader, batch_size=np.int64(40), prefetch=np.int32(1),
                               shuffling_queue_capacity=np.int64(0)) as batches:
            assert [b["id"].shape[0] for b in batches] == [40, 40, 20]


def test_transform_fn_that_returns_no_dict_is_named(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=10, transform_fn=lambda b: list(b.values()))
        with pytest.raises(PetastormTypeError, match="does transform_fn return a dict"):
            next(batches)


def test_ngram_reader_is_refused(synthetic_dataset):
    from petastorm.ngram import NGram

    ngram = NGram({0: ["id"], 1: ["id"]}, delta_threshold=10, timestamp_field="timestamp")
    with make_reader(synthetic_dataset, schema_fields=ngram, workers_count=1) as reader:
        with pytest.raises(PetastormArgumentError, match="ngram"):
            make_jax_iterator(reader, batch_size=4)


def test_missing_jax_is_an_import_error_saying_what_to_install(synthetic_dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # as if JAX were not installed
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        with pytest.raises(ImportError, match=r"petastorm\[jax\]"):
            make_jax_iterator(reader, batch_size=4)


def test_make_jax_iterator_returns_a_jax_iterator_that_is_its_own_iterator(synthetic_dataset):
    with make_batch_reader(synthetic_dataset, schema_fields=["id"], workers_count=1) as reader:
        with make_jax_iterator(reader, 50) as batches:
            assert isinstance(batches, JaxIterator) and iter(batches) is batches


def test_the_callers_x64_context_applies_on_the_prefetch_thread_too(synthetic_dataset):
    """``with jax.enable_x64(True):`` is thread-local: before, the shuffled path (placed on the prefetch thread)
    gave int32 ids while the reader-order path (placed in next()) gave int64."""
    import jax

    from petastorm import make_batch_reader
    from petastorm.jax import make_jax_iterator

    enable_x64 = getattr(jax, "enable_x64", None)
    if enable_x64 is None:  # older JAX
        from jax.experimental import enable_x64
    dtypes = {}
    with enable_x64(True):
        for capacity in (0, 50):
            with make_batch_reader(synthetic_dataset, schema_fields=["id"], shuffle_row_groups=False,
                                   workers_count=1) as reader, \
                    make_jax_iterator(reader, batch_size=10, shuffling_queue_capacity=capacity, seed=0) as it:
                dtypes[capacity] = {str(b["id"].dtype) for b in it}
    assert dtypes == {0: {"int64"}, 50: {"int64"}}


def test_a_transform_fn_returning_columns_of_different_lengths_is_refused_naming_them(synthetic_dataset):
    # before: served silently (the rows of the two fields no longer belonged together); the torch loaders refuse it
    with make_batch_reader(synthetic_dataset, schema_fields=["id", "maybe"], workers_count=1) as reader:
        batches = make_jax_iterator(reader, batch_size=10, transform_fn=lambda b: {"id": b["id"], "half": b["id"][::2]})
        with pytest.raises(PetastormSchemaError, match=r"different lengths: 'id' 10 rows, 'half' 5 rows"):
            next(batches)
        batches.close()
