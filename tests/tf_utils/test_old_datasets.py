"""petastorm.tf_utils over the datasets written by old releases of the original
(``legacy/`` 0.4.0-0.7.6 and ``all_codecs_0.12.1`` of the shared test data) through ``make_petastorm_dataset``
(rows and batches) and ``tf_tensors`` (TF1 graph mode).

Every element spec and value below was recorded from the original petastorm 0.12.1 (TensorFlow 2.16.2) through
its public API over the same files (the legacy schemas' ``pyspark.serializers._restore`` supplied to it, as
its pyspark lacks it); ours gave the same specs and the same values for every field and row (compared by
value hash, field by field), except where 0.12.1 failed: it could not read codec fields (images, ndarrays,
Decimal) of a batch reader (``Unsupported object type decimal.Decimal`` / the encoded bytes fed to TF), nor
``tf_tensors`` of the legacy batch readers. Nullable fields are left out (a ``None`` raises, naming the field,
tested in ``test_datetime_and_null_values.py``).
"""
import os

import numpy as np
import pytest
import tensorflow as tf

from petastorm import make_batch_reader, make_reader
from petastorm.tf_utils import make_petastorm_dataset, tf_tensors

LEGACY = ["0.4.0", "0.4.3", "0.5.1", "0.6.0", "0.7.0", "0.7.6"]
NULLABLE = {"matrix_nullable", "string_array_nullable", "integer_nullable", "maybe", "maybe_int"}

# (TF dtype, static shape of one row) recorded from 0.12.1 (rows; batches add a leading None)
LEGACY_SPECS = {
    "decimal": ("string", ()), "empty_matrix_string": ("string", (None,)), "id": ("int64", ()),
    "id2": ("int32", ()), "id_float": ("float64", ()), "id_odd": ("bool", ()), "image_png": ("uint8", (32, 16, 3)),
    "matrix": ("float32", (32, 16, 3)), "matrix_uint16": ("int32", (32, 16, 3)),
    "matrix_uint32": ("int64", (32, 16, 3)), "partition_key": ("string", ()), "python_primitive_uint8": ("uint8", ()),
    "sensor_name": ("string", (1,)),
}
ALL_CODECS_SPECS = {
    "dec": ("string", ()), "f32": ("float32", ()), "f64": ("float64", ()), "flag": ("bool", ()),
    "gray": ("uint8", (20, 30)), "id": ("int64", ()), "id16": ("int16", ()), "id32": ("int32", ()),
    "jpeg": ("uint8", (32, 48, 3)), "matrix": ("float32", (8, 4, 3)), "name": ("string", ()),
    "partition": ("string", ()), "png": ("uint8", (32, 48, 3)), "strings": ("string", (None,)),
    "var": ("int16", (None, 5)), "znd": ("float64", (6, 6)),
}


def _url(testdata_dir, name):
    sub = "legacy" if name in LEGACY else "original-0.12.1"
    return "file://" + os.path.join(testdata_dir, sub, name)


def _spec(element_spec):
    return {f: (s.dtype.name, tuple(s.shape.as_list())) for f, s in element_spec._asdict().items()}


def _fields(url):
    with make_reader(url, workers_count=1) as reader:
        return [f for f in reader.schema.fields if f not in NULLABLE]


def _rows_by_id(dataset, batched):
    rows = {}
    for element in dataset:
        values = {f: v.numpy() for f, v in element._asdict().items()}
        if batched:
            for i, rid in enumerate(values["id"]):
                rows[int(rid)] = {f: v[i] for f, v in values.items()}
        else:
            rows[int(values["id"])] = values
    return rows


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", LEGACY + ["all_codecs_0.12.1"])
def test_old_datasets_rows_and_batches_have_the_originals_specs_and_values(testdata_dir, name):
    url = _url(testdata_dir, name)
    fields = _fields(url)
    expected = LEGACY_SPECS if name in LEGACY else ALL_CODECS_SPECS
    if name in LEGACY:
        # matrix_uint32 is in 0.7.6 only; matrix_string has one dimension before 0.6.0, two from it (recorded)
        expected = {f: s for f, s in expected.items() if f in fields}
        expected["matrix_string"] = ("string", (None,) if name in ("0.4.0", "0.4.3", "0.5.1") else (None, None))
    with make_reader(url, workers_count=1, schema_fields=fields, shuffle_row_groups=False) as reader:
        dataset = make_petastorm_dataset(reader)
        spec = _spec(dataset.element_spec)
        rows = _rows_by_id(dataset, batched=False)
    for field, want in expected.items():
        assert spec[field] == want, field
    assert sorted(rows) == list(range(100 if name in LEGACY else 60))

    with make_batch_reader(url, workers_count=1, schema_fields=fields, shuffle_row_groups=False) as reader:
        dataset = make_petastorm_dataset(reader)
        batch_spec = _spec(dataset.element_spec)
        batch_rows = _rows_by_id(dataset, batched=True)
    for field, (dtype, shape) in expected.items():
        assert batch_spec[field] == (dtype, (None,) + shape), field
    assert sorted(batch_rows) == sorted(rows)
    for rid, row in rows.items():  # a batch reader's values are the rows' values (0.12.1 could not read most)
        for field, value in row.items():
            other = batch_rows[rid][field]
            assert np.asarray(value).dtype == np.asarray(other).dtype or value.dtype.kind in "SO", (rid, field)
            assert np.asarray(value).tolist() == np.asarray(other).tolist(), (rid, field)

    # values recorded from 0.12.1
    if name == "0.7.6":
        assert [rows[i]["decimal"] for i in range(3)] == [b"1.28", b"1.34", b"1.28"]
        assert rows[1]["matrix_string"].tolist() == [[b"BA\x00BABA", b"", b""], [b"ABBBBBBBAB", b"\x00B", b"A"]]
        assert rows[0]["partition_key"] == b"p_0" and rows[0]["empty_matrix_string"].shape == (0,)
        assert [bool(batch_rows[i]["id_odd"]) for i in range(3)] == [False, True, False]
    if name == "0.4.0":
        assert [rows[i]["decimal"] for i in range(3)] == [b"1.44", b"1.37", b"1.44"]
        assert rows[0]["sensor_name"].tolist() == [b"test_sensor"]
    if name == "all_codecs_0.12.1":
        assert [rows[i]["dec"] for i in range(3)] == [b"0", b"0.001", b"0.002"]
        assert rows[1]["strings"].tolist() == [b"a1", b"bb"]
        assert rows[0]["var"].tolist() == [[-91, -84, -25, 66, -20]] and rows[2]["var"].shape == (3, 5)
        expected_arrays = np.load(os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1.expected.npz"))
        for field in ["matrix", "png", "gray", "znd"]:
            got = np.stack([rows[int(i)][field] for i in expected_arrays["id"]])
            np.testing.assert_array_equal(got, expected_arrays[field])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["0.4.0", "0.7.6", "all_codecs_0.12.1"])
@pytest.mark.parametrize("batched", [False, True])
def test_old_datasets_through_tf_tensors_in_graph_mode(testdata_dir, name, batched):
    # recorded from 0.12.1: every row, then OutOfRangeError (its legacy batch readers failed with
    # InvalidArgumentError before the first batch; here they read)
    url = _url(testdata_dir, name)
    fields = ["id", "decimal" if name in LEGACY else "dec", "id_float" if name in LEGACY else "f64"]
    factory = make_batch_reader if batched else make_reader
    ids = []
    with tf.compat.v1.Graph().as_default(), factory(url, workers_count=1, schema_fields=fields) as reader:
        tensors = tf_tensors(reader)
        assert tensors.id.shape.as_list() == ([None] if batched else [])
        with tf.compat.v1.Session() as session:
            with pytest.raises(tf.errors.OutOfRangeError):
                for _ in range(200):
                    ids += np.reshape(session.run(tensors).id, [-1]).tolist()
    assert sorted(ids) == list(range(100 if name in LEGACY else 60))
