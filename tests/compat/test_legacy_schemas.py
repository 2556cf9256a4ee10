"""Datasets written by old releases of the original library: their stored schema, row-group counts and
row-group indexes load field by field, with pyspark and without it."""
import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from petastorm.etl import dataset_metadata as dm
from petastorm.etl.rowgroup_indexing import load_rowgroup_indexes

S, L, SH, D, B, STR = "ScalarCodec", "LongType", "ShortType", "DoubleType", "BooleanType", "StringType"
ND, IMG, ZND = "NdarrayCodec", "CompressedImageCodec", "CompressedNdarrayCodec"

# (name, numpy type, shape, codec, codec detail, nullable) - the original's test schema, by hand.
_BASE_040 = [
    ("decimal", "Decimal", [], S, ["DecimalType", 10, 9], False),
    ("empty_matrix_string", "bytes_", [None], ND, None, False),
    ("id", "int64", [], S, [L], False),
    ("id2", "int32", [], S, [SH], False),
    ("image_png", "uint8", [32, 16, 3], IMG, ["png", 80], False),
    ("matrix", "float32", [32, 16, 3], ND, None, False),
    ("matrix_nullable", "uint16", [32, 16, 3], ND, None, True),
    ("matrix_string", "bytes_", [None], ND, None, False),
    ("matrix_uint16", "uint16", [32, 16, 3], ND, None, False),
    ("partition_key", "str_", [], S, [STR], False),
    ("python_primitive_uint8", "uint8", [], S, [SH], False),
    ("sensor_name", "str_", [1], ND, None, False),
    ("string_array_nullable", "str_", [None], ND, None, True),
]
_ADDED_051 = [("id_float", "float64", [], S, [D], False), ("id_odd", "bool", [], S, [B], False)]
_ADDED_076 = [("integer_nullable", "int32", [], S, [SH], True),
              ("matrix_uint32", "uint32", [32, 16, 3], ND, None, False)]


def _with(base, added=(), replaced=()):
    fields = {f[0]: f for f in list(base) + list(added)}
    for f in replaced:
        fields[f[0]] = f
    return sorted(fields.values())


_SCHEMA_051 = _with(_BASE_040, _ADDED_051)
_SCHEMA_060 = _with(_SCHEMA_051, replaced=[("matrix_string", "bytes_", [None, None], ND, None, False)])
_SCHEMA_076 = _with(_SCHEMA_060, _ADDED_076)

_ALL_CODECS_0121 = [
    ("id", "int64", [], S, [L], False),
    ("id32", "int32", [], S, ["IntegerType"], False),
    ("id16", "int16", [], S, [SH], False),
    ("f64", "float64", [], S, [D], False),
    ("f32", "float32", [], S, ["FloatType"], False),
    ("flag", "bool", [], S, [B], False),
    ("name", "str_", [], S, [STR], False),
    ("dec", "Decimal", [], S, ["DecimalType", 10, 9], False),
    ("partition", "str_", [], S, [STR], False),
    ("png", "uint8", [32, 48, 3], IMG, ["png", 80], False),
    ("jpeg", "uint8", [32, 48, 3], IMG, ["jpeg", 95], False),
    ("gray", "uint8", [20, 30], IMG, ["png", 80], False),
    ("matrix", "float32", [8, 4, 3], ND, None, False),
    ("var", "int16", [None, 5], ND, None, False),
    ("znd", "float64", [6, 6], ZND, None, False),
    ("maybe", "float32", [3], ND, None, True),
    ("maybe_int", "int32", [], S, ["IntegerType"], True),
    ("strings", "bytes_", [None], ND, None, False),
]

EXPECTED = {
    "legacy/0.4.0": (sorted(_BASE_040), "TestSchema", ["id", "sensor_name", "string_array_nullable"]),
    "legacy/0.4.3": (sorted(_BASE_040), "TestSchema", ["id", "sensor_name", "string_array_nullable"]),
    "legacy/0.5.1": (_SCHEMA_051, "TestSchema", ["id", "sensor_name", "string_array_nullable"]),
    "legacy/0.6.0": (_SCHEMA_060, "TestSchema", ["id", "partition_key", "sensor_name", "string_array_nullable"]),
    "legacy/0.7.0": (_SCHEMA_060, "TestSchema", ["id", "partition_key", "sensor_name", "string_array_nullable"]),
    "legacy/0.7.6": (_SCHEMA_076, "TestSchema", ["id", "partition_key", "sensor_name", "string_array_nullable"]),
    "original-0.12.1/all_codecs_0.12.1": (_ALL_CODECS_0121, "AllCodecsSchema", []),
}

_NUMPY_NAMES = {np.bool_: "bool", np.str_: "str_", np.bytes_: "bytes_", Decimal: "Decimal"}


def describe_schema(schema):
    """JSON-able description of every field: the same with pyspark's types and with the stand-ins."""
    out = []
    for f in schema.fields.values():
        dtype = _NUMPY_NAMES.get(f.numpy_dtype) or np.dtype(f.numpy_dtype).name
        codec = type(f.codec).__name__
        detail = None
        if codec == "ScalarCodec":
            st = f.codec.spark_dtype()
            detail = [type(st).__name__] + ([st.precision, st.scale] if type(st).__name__ == "DecimalType" else [])
        elif codec == "CompressedImageCodec":
            detail = [f.codec.image_codec, f.codec._quality]
        out.append([f.name, dtype, list(f.shape), codec, detail, bool(f.nullable)])
    return out


def _as_tuples(description):
    return [(n, d, s, c, det, nul) for n, d, s, c, det, nul in description]


@pytest.mark.parametrize("dataset", sorted(EXPECTED))
def test_stored_schema_equals_the_original_test_schema(testdata_dir, dataset):
    expected_fields, expected_name, _ = EXPECTED[dataset]
    url = "file://" + os.path.join(testdata_dir, dataset)
    schema = dm.get_schema_from_dataset_url(url)
    assert schema._name == expected_name
    got = _as_tuples(describe_schema(schema))
    assert sorted(got) == sorted(expected_fields)
    # attribute access works on the loaded schema, and the field objects are the real ones
    assert schema.fields["id"].numpy_dtype is np.int64
    assert getattr(schema, "matrix", schema.fields.get("matrix")) == schema.fields.get("matrix")


@pytest.mark.parametrize("dataset", sorted(EXPECTED))
def test_row_group_counts_match_the_files_on_disk(testdata_dir, dataset):
    path = os.path.join(testdata_dir, dataset)
    fs = pafs.LocalFileSystem()
    metadata = dm.read_dataset_metadata(fs, path)
    stored = dm.load_num_row_groups_per_file(metadata, path)
    on_disk = {rel: pq.ParquetFile(os.path.join(path, rel)).metadata.num_row_groups
               for rel in dm.list_data_files(fs, path)}
    assert stored == on_disk
    assert sum(stored.values()) == len(dm.load_row_groups(pq.ParquetDataset(path)))


@pytest.mark.parametrize("dataset", [d for d in sorted(EXPECTED) if EXPECTED[d][2]])
def test_stored_rowgroup_indexes_load_and_point_at_the_right_row_groups(testdata_dir, dataset):
    path = os.path.join(testdata_dir, dataset)
    fs = pafs.LocalFileSystem()
    indexes = load_rowgroup_indexes(dm.read_dataset_metadata(fs, path), path)
    assert sorted(indexes) == EXPECTED[dataset][2]
    pieces = dm.dataset_row_groups(fs, path)
    ids_in_piece = [set(pq.ParquetFile(p.path).read_row_group(p.row_group, columns=["id"]).column("id").to_pylist())
                    for p in pieces]
    id_index = indexes["id"]
    assert len(id_index.indexed_values) == 100
    for value in id_index.indexed_values:
        (piece,) = id_index.get_row_group_indexes(value)
        assert int(value) in ids_in_piece[piece], f"id {value} is not in row group {piece} ({pieces[piece].path})"
    assert indexes["sensor_name"].get_row_group_indexes("test_sensor") == set(range(len(pieces)))
    if "partition_key" in indexes:
        for number, piece in enumerate(pieces):
            assert indexes["partition_key"].get_row_group_indexes(dict(piece.partition_keys)["partition_key"]) \
                == {number}


_WITHOUT_PYSPARK = textwrap.dedent("""
    import json, sys
    sys.modules['pyspark'] = None      # as if pyspark were not installed
    sys.path.insert(0, {tests_dir!r})
    from petastorm.etl import dataset_metadata as dm
    from petastorm.etl.rowgroup_indexing import load_rowgroup_indexes
    from petastorm.spark_types import pyspark_available
    from test_legacy_schemas import EXPECTED, describe_schema
    import pyarrow.fs as pafs
    assert not pyspark_available()
    out = {{}}
    for name in EXPECTED:
        path = {testdata!r} + '/' + name
        schema = dm.get_schema_from_dataset_url('file://' + path)
        indexes = load_rowgroup_indexes(dm.read_dataset_metadata(pafs.LocalFileSystem(), path), path)
        out[name] = [schema._name, describe_schema(schema), sorted(indexes or {{}}),
                     type(schema.fields['id'].codec.spark_dtype()).__module__]
    assert 'pyspark' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]
    print(json.dumps(out))
""")


def test_schemas_and_indexes_load_without_pyspark(testdata_dir):
    script = _WITHOUT_PYSPARK.format(tests_dir=os.path.dirname(__file__), testdata=testdata_dir)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for dataset, (fields, name, index_names) in EXPECTED.items():
        got_name, description, got_indexes, spark_module = out[dataset]
        assert got_name == name
        assert sorted(_as_tuples(description)) == sorted(fields), dataset
        assert got_indexes == index_names
        assert spark_module == "petastorm.spark_types"
