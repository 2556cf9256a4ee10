"""make_batch_reader and make_reader on a real S3-protocol server (moto on 127.0.0.1, the ``s3_server`` fixture),
reaching it through ``storage_options`` and through ``filesystem=``, with thread and process pools."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _fixtures.datasets import SyntheticSchema, synthetic_row

from petastorm import make_batch_reader, make_reader
from petastorm.errors import PetastormDatasetError
from petastorm.predicates import in_lambda

_ROWS = 40


def _table(start, stop):
    ids = np.arange(start, stop, dtype=np.int64)
    return pa.table({"id": ids, "value": ids / 8.0, "name": [f"r{i}" for i in ids],
                     "vec": pa.array([[float(i), -float(i)] for i in ids], pa.list_(pa.float32()))})


@pytest.fixture(scope="module")
def s3_stores(s3_server):
    """One bucket with a plain Parquet store, a Hive-partitioned store and a Petastorm dataset.

    - ``plain/``: 2 files x 2 row groups x 10 rows, ids 0..39 in file and row-group order;
    - ``hive/``: ``half=0|1/`` directories, ids 0..39;
    - ``petastorm/``: 30 rows of the synthetic schema written by ``write_dataset`` through storage_options.
    """
    from petastorm.etl.writer import write_dataset

    bucket = s3_server.make_bucket()
    fs = s3_server.pyarrow_filesystem()
    for file_no in range(2):
        pq.write_table(_table(file_no * 20, file_no * 20 + 20), f"{bucket}/plain/part-{file_no}.parquet",
                       filesystem=fs, row_group_size=10)
    hive = _table(0, _ROWS).append_column("half", pa.array((np.arange(_ROWS) >= 20).astype(np.int64)))
    pq.write_to_dataset(hive, f"{bucket}/hive", partition_cols=["half"], filesystem=fs)
    write_dataset(f"s3://{bucket}/petastorm", SyntheticSchema, [synthetic_row(i) for i in range(30)],
                  row_group_size_mb=0.001, workers_count=1, progress=False, num_files=3,
                  storage_options=s3_server.storage_options)
    return bucket


def _access(s3_server, how):
    """Keyword arguments that reach the server: fsspec storage_options, or a ready filesystem."""
    if how == "storage_options":
        return {"storage_options": s3_server.storage_options}
    if how == "pyarrow-filesystem":
        return {"filesystem": s3_server.pyarrow_filesystem()}
    import s3fs

    return {"filesystem": s3fs.S3FileSystem(**s3_server.storage_options, skip_instance_cache=True)}


# every access path with threads; process pools (the filesystem is rebuilt in each worker process) on one
# path per reader, to keep the module fast: storage_options resolve to a pyarrow S3FileSystem, s3fs to a
# PyFileSystem wrapper
_BATCH_CASES = [("storage_options", "thread"), ("pyarrow-filesystem", "thread"), ("s3fs-filesystem", "thread"),
                ("storage_options", "process")]
_ROW_CASES = [("storage_options", "thread"), ("pyarrow-filesystem", "thread"), ("s3fs-filesystem", "thread"),
              ("s3fs-filesystem", "process")]


def _columns(batches):
    """Concatenated columns of the non-empty batches (a row group emptied by ``filters`` yields an empty batch,
    whose list columns have no known row length)."""
    batches = [b for b in batches if len(b[0])]
    return {name: np.concatenate([getattr(b, name) for b in batches]) for name in batches[0]._fields}


@pytest.mark.parametrize("how, pool", _BATCH_CASES)
def test_make_batch_reader_reads_a_plain_parquet_store_on_s3(s3_server, s3_stores, how, pool):
    with make_batch_reader(f"s3://{s3_stores}/plain", reader_pool_type=pool, workers_count=2,
                           shuffle_row_groups=False, **_access(s3_server, how)) as reader:
        batches = list(reader)
        assert list(reader.schema.fields) == ["id", "value", "name", "vec"]
    assert [len(b.id) for b in batches] == [10, 10, 10, 10]
    cols = _columns(batches)
    np.testing.assert_array_equal(cols["id"], np.arange(_ROWS))
    np.testing.assert_array_equal(cols["value"], np.arange(_ROWS) / 8.0)
    assert cols["name"].tolist() == [f"r{i}" for i in range(_ROWS)]
    assert cols["vec"].dtype == np.float32 and cols["vec"].shape == (_ROWS, 2)
    np.testing.assert_array_equal(cols["vec"][:, 0], np.arange(_ROWS, dtype=np.float32))


@pytest.mark.parametrize("how", ["storage_options", "pyarrow-filesystem"])
def test_make_batch_reader_reads_a_list_of_s3_file_urls(s3_server, s3_stores, how):
    urls = [f"s3://{s3_stores}/plain/part-1.parquet"]
    with make_batch_reader(urls, workers_count=1, shuffle_row_groups=False, **_access(s3_server, how)) as reader:
        ids = _columns(list(reader))["id"]
    np.testing.assert_array_equal(ids, np.arange(20, 40))


def test_make_batch_reader_reads_hive_partitions_on_s3_with_filters(s3_server, s3_stores, pool="thread"):
    url = f"s3://{s3_stores}/hive"
    with make_batch_reader(url, reader_pool_type=pool, workers_count=2,
                           storage_options=s3_server.storage_options) as reader:
        cols = _columns(list(reader))
    order = np.argsort(cols["id"])
    np.testing.assert_array_equal(cols["id"][order], np.arange(_ROWS))
    np.testing.assert_array_equal(cols["half"][order], (np.arange(_ROWS) >= 20).astype(np.int64))
    with make_batch_reader(url, reader_pool_type=pool, workers_count=2, storage_options=s3_server.storage_options,
                           filters=[("half", "=", 1), ("id", "<", 23)]) as reader:
        assert sorted(_columns(list(reader))["id"].tolist()) == [20, 21, 22]


def _check_synthetic_rows(rows, ids):
    assert [int(r.id) for r in rows] == list(ids)
    for r in rows:
        want = synthetic_row(int(r.id))
        assert r.name == want["name"] and r.dec == want["dec"] and r.value == want["value"]
        np.testing.assert_array_equal(r.matrix, want["matrix"])
        np.testing.assert_array_equal(r.image, want["image"])
        np.testing.assert_array_equal(r.var, want["var"])
        assert r.maybe == want["maybe"]


@pytest.mark.parametrize("how, pool", _ROW_CASES)
def test_make_reader_reads_a_petastorm_dataset_on_s3(s3_server, s3_stores, how, pool):
    with make_reader(f"s3://{s3_stores}/petastorm", reader_pool_type=pool, workers_count=2,
                     shuffle_row_groups=False, **_access(s3_server, how)) as reader:
        assert set(reader.schema.fields) == set(SyntheticSchema.fields)
        rows = list(reader)
    _check_synthetic_rows(rows, range(30))


def test_make_reader_on_s3_with_fields_predicate_and_seeded_shuffle(s3_server, s3_stores):
    kwargs = dict(schema_fields=["id", "matrix"], predicate=in_lambda(["id"], lambda i: i % 3 == 0),
                  shuffle_rows=True, seed=11, workers_count=2, storage_options=s3_server.storage_options)
    with make_reader(f"s3://{s3_stores}/petastorm", **kwargs) as reader:
        first = [int(r.id) for r in reader]
    with make_reader(f"s3://{s3_stores}/petastorm", reader_pool_type="process", **kwargs) as reader:
        rows = list(reader)
    assert sorted(first) == list(range(0, 30, 3))
    assert [int(r.id) for r in rows] == first  # same seed: same order for thread and process pools
    assert rows[0]._fields == ("id", "matrix")
    for r in rows:
        np.testing.assert_array_equal(r.matrix, synthetic_row(int(r.id))["matrix"])


def test_make_batch_reader_reads_the_petastorm_dataset_on_s3_with_its_stored_schema(s3_server, s3_stores):
    with make_batch_reader(f"s3://{s3_stores}/petastorm", schema_fields=["id", "matrix", "name"], workers_count=2,
                           shuffle_row_groups=False, storage_options=s3_server.storage_options) as reader:
        assert reader.schema.fields["matrix"].shape == (4, 3)
        cols = _columns(list(reader))
    np.testing.assert_array_equal(cols["id"], np.arange(30))
    assert cols["matrix"].shape == (30, 4, 3)
    np.testing.assert_array_equal(cols["matrix"][7], synthetic_row(7)["matrix"])
    assert cols["name"].tolist() == [f"row_{i}" for i in range(30)]


def test_make_reader_state_resumes_on_s3(s3_server, s3_stores):
    kwargs = dict(seed=5, shuffle_rows=True, workers_count=2, storage_options=s3_server.storage_options,
                  schema_fields=["id"])
    url = f"s3://{s3_stores}/petastorm"
    with make_reader(url, **kwargs) as reader:
        full = [int(r.id) for r in reader]
    with make_reader(url, **kwargs) as reader:
        head = [int(next(reader).id) for _ in range(13)]
        state = reader.state_dict()
    with make_reader(url, resume_from=state, **kwargs) as reader:
        tail = [int(r.id) for r in reader]
    assert head + tail == full


def test_a_missing_s3_prefix_is_a_dataset_error_naming_it(s3_server, s3_stores):
    with pytest.raises(PetastormDatasetError, match="no-such-prefix"):
        make_batch_reader(f"s3://{s3_stores}/no-such-prefix", storage_options=s3_server.storage_options)


def test_make_reader_on_a_plain_s3_store_suggests_make_batch_reader_and_reads_it(s3_server, s3_stores):
    with pytest.warns(UserWarning, match="make_batch_reader"):  # the original's warning, then it reads
        reader = make_reader(f"s3://{s3_stores}/plain", storage_options=s3_server.storage_options,
                             reader_pool_type="dummy")
    with reader:
        rows = list(reader)
    with make_batch_reader(f"s3://{s3_stores}/plain", storage_options=s3_server.storage_options,
                           reader_pool_type="dummy") as batches:
        expected = sum(len(b[0]) for b in batches)
    assert len(rows) == expected > 0
