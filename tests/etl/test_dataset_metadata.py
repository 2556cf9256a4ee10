"""Writing and reading Petastorm metadata: keys, JSON first, safe pickle, errors that name the file,
row-group order, and compatibility of what we write with the original's class layout."""
import json
import os
import pickle
import subprocess
import sys
import textwrap
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormMetadataError
from petastorm.etl import dataset_metadata as dm
from petastorm.etl.schema_json import unischema_from_json, unischema_to_json
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField, encode_row

LOCAL = pafs.LocalFileSystem()

SCHEMA = Unischema("MetaSchema", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("name", np.str_, (), ScalarCodec(spark_type("StringType")), False),
    UnischemaField("dec", Decimal, (), ScalarCodec(spark_type("DecimalType", 10, 3)), True),
    UnischemaField("matrix", np.float32, (2, 3), NdarrayCodec(), False),
    UnischemaField("var", np.int16, (None, 2), NdarrayCodec(), True),
    UnischemaField("znd", np.float64, (2, 2), CompressedNdarrayCodec(), False),
    UnischemaField("img", np.uint8, (4, 6, 3), CompressedImageCodec("png"), False),
])


def _arrow_schema(schema):
    return dm._arrow_schema_of(schema)


def _row(i):
    return {"id": i, "name": f"row_{i}", "dec": Decimal(i) / 1000 if i % 2 else None,
            "matrix": np.full((2, 3), i, np.float32), "var": np.zeros((i % 3, 2), np.int16) if i % 4 else None,
            "znd": np.eye(2) * i, "img": np.full((4, 6, 3), i, np.uint8)}


def write_plain_dataset(path, schema=SCHEMA, rows_per_file=(5, 5), row_group_rows=2, subdirs=None):
    """Encode rows with the codecs and write Parquet files with pyarrow (no Petastorm metadata)."""
    os.makedirs(path, exist_ok=True)
    arrow_schema = _arrow_schema(schema)
    start = 0
    rels = []
    for number, count in enumerate(rows_per_file):
        rows = [encode_row(schema, _row(i)) for i in range(start, start + count)]
        start += count
        rel = f"part-{number:05d}.parquet" if subdirs is None else f"{subdirs[number]}/part-{number:05d}.parquet"
        os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema), os.path.join(path, rel),
                       row_group_size=row_group_rows)
        rels.append(rel)
    return rels


def write_petastorm_dataset(path, **kwargs):
    rels = write_plain_dataset(path, **kwargs)
    dm.write_petastorm_metadata(LOCAL, str(path), kwargs.get("schema", SCHEMA),
                                dm.count_row_groups_per_file(LOCAL, str(path)))
    return rels


def _replace_metadata_keys(path, **changes):
    """Rewrite ``_common_metadata`` with some keys replaced (bytes) or removed (None)."""
    md_path = os.path.join(path, "_common_metadata")
    schema = pq.read_schema(md_path)
    metadata = dict(schema.metadata)
    for key, value in changes.items():
        key = getattr(dm, key)
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    pq.write_metadata(schema.with_metadata(metadata), md_path)
    return md_path


class _Reduces:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# --- round trip ------------------------------------------------------------------------------------------

def test_written_metadata_has_every_key_and_loads_back(tmp_path):
    path = str(tmp_path / "ds")
    rels = write_petastorm_dataset(path)
    metadata = dm.read_dataset_metadata(LOCAL, path)
    assert {dm.UNISCHEMA_KEY, dm.UNISCHEMA_JSON_KEY, dm.ROW_GROUPS_PER_FILE_KEY} <= set(metadata)
    assert dm.load_unischema(metadata, path) == SCHEMA
    assert dm.load_num_row_groups_per_file(metadata, path) == {rels[0]: 3, rels[1]: 3}
    assert pickle.loads(metadata[dm.UNISCHEMA_KEY]) == SCHEMA  # the original reads it with plain pickle
    assert dm.get_schema_from_dataset_url("file://" + path) == SCHEMA
    assert dm.get_schema_from_dataset_url(path, filesystem=LOCAL) == SCHEMA  # no scheme: with a filesystem
    assert dm.get_schema(pq.ParquetDataset(path)) == SCHEMA
    assert dm.infer_or_load_unischema(pq.ParquetDataset(path)) == SCHEMA
    from petastorm.reader_impl.dataset import open_dataset

    assert dm.get_schema(open_dataset("file://" + path)) == SCHEMA
    assert len(dm.load_row_groups(open_dataset(path))) == 6
    # the stored Arrow schema is the data files' schema
    assert pq.read_schema(os.path.join(path, "_common_metadata")).names == list(SCHEMA.fields)


def test_schema_of_a_list_of_file_urls_in_hive_partitions(tmp_path):
    path = str(tmp_path / "hive")
    rels = write_petastorm_dataset(path, subdirs=["part=a", "part=b"])
    assert dm.get_schema_from_dataset_url(["file://" + os.path.join(path, r) for r in rels]) == SCHEMA
    assert dm.get_schema_from_dataset_url(["file://" + os.path.join(path, rels[1])]) == SCHEMA


def test_rewriting_metadata_keeps_other_keys(tmp_path):
    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    md_path = _replace_metadata_keys(path, ROWGROUPS_INDEX_KEY=b"kept")
    dm.write_petastorm_metadata(LOCAL, path, SCHEMA, {"part-00000.parquet": 3, "part-00001.parquet": 3},
                                extra={b"my.key": b"v"})
    metadata = pq.read_schema(md_path).metadata
    assert metadata[dm.ROWGROUPS_INDEX_KEY] == b"kept" and metadata[b"my.key"] == b"v"


def test_row_groups_come_in_the_original_order_of_relative_paths(tmp_path):
    path = str(tmp_path / "nested")
    write_plain_dataset(path, rows_per_file=(3, 3, 3, 1), row_group_rows=2,
                        subdirs=["a=1/b=2", "a=1/b=10", "a=1-x/b=0", "a=0/b=9"])
    pieces = dm.load_row_groups(pq.ParquetDataset(path, partitioning="hive"))
    rels = [os.path.relpath(p.path, path) for p in pieces]
    # plain string order of the relative paths, as the original numbers row groups ('-' < '/')
    assert rels == ["a=0/b=9/part-00003.parquet",
                    "a=1-x/b=0/part-00002.parquet", "a=1-x/b=0/part-00002.parquet",
                    "a=1/b=10/part-00001.parquet", "a=1/b=10/part-00001.parquet",
                    "a=1/b=2/part-00000.parquet", "a=1/b=2/part-00000.parquet"]
    assert [p.row_group for p in pieces] == [0, 0, 1, 0, 1, 0, 1]
    assert pieces[0].partition_keys == (("a", "0"), ("b", "9"))


def test_hidden_and_underscore_files_are_not_data_files(tmp_path):
    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    for name in ("_SUCCESS", ".part-00000.parquet.crc", "_temporary/x.parquet"):
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        open(os.path.join(path, name), "wb").close()
    assert dm.list_data_files(LOCAL, path) == ["part-00000.parquet", "part-00001.parquet"]


# --- JSON schema ----------------------------------------------------------------------------------------

_DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
           np.float16, np.float32, np.float64, np.str_, np.bytes_, Decimal, np.datetime64,
           np.dtype("datetime64[ns]"), np.dtype("<f4"), str, bytes]


@pytest.mark.parametrize("dtype", _DTYPES, ids=str)
def test_json_schema_round_trips_every_dtype_exactly(dtype):
    schema = Unischema("J", [UnischemaField("x", dtype, (None, 3), NdarrayCodec(), True),
                             UnischemaField("y", dtype, (), None, False)])
    loaded = unischema_from_json(unischema_to_json(schema), "f")
    assert loaded.fields["x"].numpy_dtype is dtype or loaded.fields["x"].numpy_dtype == dtype
    assert type(loaded.fields["x"].numpy_dtype) is type(dtype)
    assert loaded.fields["x"].shape == (None, 3) and loaded.fields["x"].nullable is True
    assert loaded == schema


_CODEC_CHOICES = [None, NdarrayCodec(), CompressedNdarrayCodec(), CompressedImageCodec("png"),
                  CompressedImageCodec("jpeg", 33), ScalarCodec(spark_type("LongType")),
                  ScalarCodec(spark_type("DecimalType", 20, 4)), ScalarCodec(spark_type("StringType"))]


# generated names may clash with Unischema's own attributes (``__dict__``): the original's warning, expected
@pytest.mark.filterwarnings("ignore:Can not create dynamic property")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=12), st.sampled_from(_DTYPES),
                          st.lists(st.one_of(st.none(), st.integers(0, 10_000)), max_size=4),
                          st.sampled_from(_CODEC_CHOICES), st.booleans()),
                unique_by=lambda f: f[0], max_size=8),
       st.text(max_size=20))
def test_json_schema_round_trip_property(fields, name):
    schema = Unischema(name, [UnischemaField(n, d, tuple(s), c, nul) for n, d, s, c, nul in fields])
    loaded = unischema_from_json(unischema_to_json(schema).encode("utf-8"), "f")
    assert loaded._name == name and loaded == schema
    for field in schema.fields.values():
        other = loaded.fields[field.name]
        assert (other.shape, other.nullable, type(other.codec)) == (field.shape, field.nullable, type(field.codec))
        assert type(other.numpy_dtype) is type(field.numpy_dtype) and other.numpy_dtype == field.numpy_dtype


def test_json_schema_round_trips_every_codec_with_its_arguments():
    schema = Unischema("Codecs", list(SCHEMA.fields.values()) + [
        UnischemaField("jpg", np.uint8, (8, 8, 3), CompressedImageCodec("jpeg", 55), False),
        UnischemaField("arr", np.int32, (None,), ScalarCodec(spark_type("ArrayType", spark_type("IntegerType"))),
                       False)])
    loaded = unischema_from_json(unischema_to_json(schema), "f")
    assert loaded == schema
    assert loaded.jpg.codec.image_codec == "jpeg" and loaded.jpg.codec._quality == 55
    assert loaded.dec.codec.spark_dtype().precision == 10 and loaded.dec.codec.spark_dtype().scale == 3
    assert type(loaded.arr.codec.spark_dtype().elementType).__name__ == "IntegerType"


def test_json_key_is_read_before_the_pickle(tmp_path):
    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    marker = tmp_path / "pwned"
    _replace_metadata_keys(path, UNISCHEMA_KEY=pickle.dumps(_Reduces(os.system, f"touch {marker}")))
    assert dm.get_schema_from_dataset_url("file://" + path) == SCHEMA
    assert not marker.exists()


def test_malicious_pickle_without_json_key_is_refused_naming_the_file(tmp_path):
    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    marker = tmp_path / "pwned"
    md_path = _replace_metadata_keys(path, UNISCHEMA_JSON_KEY=None,
                                     UNISCHEMA_KEY=pickle.dumps(_Reduces(os.system, f"touch {marker}"), protocol=2))
    for call in (lambda: dm.get_schema_from_dataset_url("file://" + path),
                 lambda: dm.infer_or_load_unischema(pq.ParquetDataset(path))):
        with pytest.raises(PetastormMetadataError) as e:
            call()
        assert md_path in str(e.value) and "system" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("key", ["UNISCHEMA_JSON_KEY", "ROW_GROUPS_PER_FILE_KEY"])
@pytest.mark.parametrize("bad", [b'{"format": "petastorm.unischema.json.v1", "name": "x", "fie', b"\xff\xfe{}"],
                         ids=["truncated", "not-utf8"])
def test_truncated_or_non_utf8_json_names_the_file(tmp_path, key, bad):
    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    md_path = _replace_metadata_keys(path, **{key: bad})
    metadata = dm.read_dataset_metadata(LOCAL, path)
    with pytest.raises(PetastormMetadataError, match=md_path.replace("/", ".")):
        if key == "UNISCHEMA_JSON_KEY":
            dm.get_schema_from_dataset_url("file://" + path)
        else:
            dm.load_num_row_groups_per_file(metadata, md_path)


def test_json_with_unknown_codec_or_dtype_is_refused():
    doc = json.loads(unischema_to_json(SCHEMA))
    doc["fields"][0]["codec"] = {"type": "os.system"}
    with pytest.raises(PetastormMetadataError, match="unknown codec"):
        unischema_from_json(json.dumps(doc), "meta")
    doc = json.loads(unischema_to_json(SCHEMA))
    doc["fields"][0]["dtype"] = "numpy.load"
    with pytest.raises(PetastormMetadataError, match="numpy.load"):
        unischema_from_json(json.dumps(doc), "meta")


# --- missing and corrupt metadata ------------------------------------------------------------------------

def test_missing_common_metadata_gives_the_original_message(tmp_path):
    path = str(tmp_path / "plain")
    write_plain_dataset(path)
    with pytest.raises(PetastormMetadataError, match="Could not find _common_metadata file.*petastorm-generate"):
        dm.get_schema_from_dataset_url("file://" + path)


def test_common_metadata_without_schema_gives_the_original_message(tmp_path):
    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    _replace_metadata_keys(path, UNISCHEMA_KEY=None, UNISCHEMA_JSON_KEY=None)
    with pytest.raises(PetastormMetadataError, match="Could not find the unischema in the dataset common metadata"):
        dm.get_schema_from_dataset_url("file://" + path)


def test_corrupt_common_metadata_names_the_file(tmp_path):
    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    with open(os.path.join(path, "_common_metadata"), "wb") as f:
        f.write(b"PAR1 this is not parquet")
    with pytest.raises(PetastormMetadataError, match="_common_metadata"):
        dm.get_schema_from_dataset_url("file://" + path)


def test_plain_parquet_schema_is_inferred(tmp_path):
    path = str(tmp_path / "plain")
    pq.write_table(pa.table({"a": [1, 2], "s": ["x", "y"]}), os.path.join(tmp_path, "plain.parquet"))
    os.makedirs(path)
    os.rename(os.path.join(tmp_path, "plain.parquet"), os.path.join(path, "p.parquet"))
    schema = dm.infer_or_load_unischema(pq.ParquetDataset(path))
    assert list(schema.fields) == ["a", "s"]
    assert schema.a.numpy_dtype == np.int64 and schema.s.numpy_dtype == np.str_


# --- the original's class layout --------------------------------------------------------------------------

_STUBS = {
    "petastorm/__init__.py": "",
    "petastorm/unischema.py": textwrap.dedent("""
        from collections import namedtuple
        UnischemaField = namedtuple('UnischemaField', ['name', 'numpy_dtype', 'shape', 'codec', 'nullable'])
        class Unischema(object):
            pass
    """),
    "petastorm/codecs.py": textwrap.dedent("""
        class ScalarCodec(object): pass
        class NdarrayCodec(object): pass
        class CompressedNdarrayCodec(object): pass
        class CompressedImageCodec(object): pass
    """),
    "pyspark/__init__.py": "",
    "pyspark/sql/__init__.py": "",
    "pyspark/sql/types.py": "".join(f"class {n}(object): pass\n" for n in (
        "LongType", "StringType", "DecimalType", "IntegerType", "ShortType", "BooleanType", "DoubleType")),
}

_CHECK_WITH_STUBS = textwrap.dedent("""
    import sys
    sys.path.insert(0, {stubs!r})
    import pickle, json, collections
    import petastorm, pyspark.sql.types as t
    assert petastorm.__file__.startswith({stubs!r}), petastorm.__file__
    s = pickle.loads(open({pickled!r}, 'rb').read())
    assert type(s).__module__ == 'petastorm.unischema' and type(s).__name__ == 'Unischema'
    assert set(vars(s)) >= {{'_name', '_fields'}}, vars(s)
    assert isinstance(s._fields, collections.OrderedDict)
    out = {{'name': s._name, 'fields': []}}
    for name, f in s._fields.items():
        assert getattr(s, name) is f            # one attribute per field, as the original stores it
        c = f.codec
        out['fields'].append([name, f.numpy_dtype.__name__, list(f.shape), type(c).__module__ + '.' +
                              type(c).__name__, {{k: (type(v).__module__ + '.' + type(v).__name__, vars(v))
                              if hasattr(v, '__dict__') else v for k, v in vars(c).items()}}, f.nullable])
    print(json.dumps(out))
""")


def test_written_pickle_loads_with_the_original_class_layout(tmp_path):
    stubs = tmp_path / "stubs"
    for rel, text in _STUBS.items():
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text(text)
    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    pickled = tmp_path / "unischema.pickle"
    pickled.write_bytes(dm.read_dataset_metadata(LOCAL, path)[dm.UNISCHEMA_KEY])
    script = _CHECK_WITH_STUBS.format(stubs=str(stubs), pickled=str(pickled))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["name"] == "MetaSchema"
    fields = {f[0]: f for f in out["fields"]}
    assert list(fields) == list(SCHEMA.fields)
    assert fields["id"][1:4] == ["int64", [], "petastorm.codecs.ScalarCodec"]
    assert fields["id"][4] == {"_spark_type": ["pyspark.sql.types.LongType", {}]}
    assert fields["dec"][4]["_spark_type"] == ["pyspark.sql.types.DecimalType",
                                               {"precision": 10, "scale": 3, "hasPrecisionInfo": True}]
    assert fields["dec"][1] == "Decimal" and fields["dec"][5] is True
    assert fields["var"][2] == [None, 2] and fields["var"][3] == "petastorm.codecs.NdarrayCodec"
    assert fields["znd"][3] == "petastorm.codecs.CompressedNdarrayCodec"
    assert fields["img"][3:5] == ["petastorm.codecs.CompressedImageCodec", {"_image_codec": ".png", "_quality": 80}]
    assert fields["name"][1] == "str_"


def test_unpickled_schema_with_a_field_that_is_not_well_formed_is_refused():
    import collections

    bad = Unischema("Bad", [UnischemaField("x", np.int32, (), collections.OrderedDict(), False)])
    with pytest.raises(PetastormMetadataError, match="src.*malformed.*OrderedDict"):
        dm.load_unischema({dm.UNISCHEMA_KEY: pickle.dumps(bad)}, "src")


@pytest.mark.parametrize("data", [
    b"\x80\x02cpetastorm.unischema\nUnischema\n)\x81.",                             # no state at all
    b"\x80\x02cpetastorm.unischema\nUnischema\n)\x81}U\x07_fields}U\x01xK\x01ssb.",  # a field that is an int
    b"\x80\x02cpetastorm.codecs\nNdarrayCodec\n)\x81.",                             # not a Unischema
], ids=["no-state", "int-field", "codec"])
def test_unpickled_schema_without_a_usable_state_is_refused_naming_the_file(data):
    with pytest.raises(PetastormMetadataError, match="^src"):
        dm.load_unischema({dm.UNISCHEMA_KEY: data}, "src")


def test_metadata_and_indexes_on_s3(s3_server, tmp_path):
    """Write, read, generate metadata and build an index on a real S3-protocol server."""
    from petastorm.etl.petastorm_generate_metadata import generate_petastorm_metadata
    from petastorm.etl.rowgroup_indexers import SingleFieldIndexer
    from petastorm.etl.rowgroup_indexing import build_rowgroup_index, load_rowgroup_indexes

    local = str(tmp_path / "ds")
    rels = write_plain_dataset(local, subdirs=["part=a", "part=b"])
    bucket = s3_server.make_bucket()
    s3 = s3_server.pyarrow_filesystem()
    for rel in rels:
        with open(os.path.join(local, rel), "rb") as src, s3.open_output_stream(f"{bucket}/ds/{rel}") as dst:
            dst.write(src.read())
    url = f"s3://{bucket}/ds"
    with pytest.raises(PetastormMetadataError, match="Could not find _common_metadata"):
        dm.get_schema_from_dataset_url(url, storage_options=s3_server.storage_options)
    dm.write_petastorm_metadata(s3, f"{bucket}/ds", SCHEMA, dm.count_row_groups_per_file(s3, f"{bucket}/ds"))
    assert dm.get_schema_from_dataset_url(url, storage_options=s3_server.storage_options) == SCHEMA
    assert dm.get_schema_from_dataset_url(url, filesystem=s3) == SCHEMA
    metadata = dm.read_dataset_metadata(s3, f"{bucket}/ds")
    assert dm.load_num_row_groups_per_file(metadata, url) == {rels[0]: 3, rels[1]: 3}
    pieces = dm.dataset_row_groups(s3, f"{bucket}/ds")
    assert [(p.path, p.row_group) for p in pieces][:2] == [(f"{bucket}/ds/{rels[0]}", 0), (f"{bucket}/ds/{rels[0]}", 1)]
    # regenerate from the stored schema, then build an index, both through the URL and storage options
    generate_petastorm_metadata(None, url, storage_options=s3_server.storage_options)
    build_rowgroup_index(url, None, [SingleFieldIndexer("by_id", "id")], storage_options=s3_server.storage_options)
    indexes = load_rowgroup_indexes(dm.read_dataset_metadata(s3, f"{bucket}/ds"), url)
    assert indexes["by_id"].get_row_group_indexes(0) == {0} and indexes["by_id"].get_row_group_indexes(9) == {5}


# --- hostile metadata: refused, naming the file, never a crash or a bare error (issue 10) -----------------

_GET_SCHEMA_AND_PRINT = textwrap.dedent("""
    import sys
    from petastorm.errors import PetastormMetadataError
    from petastorm.etl.dataset_metadata import get_schema_from_dataset_url
    try:
        schema = get_schema_from_dataset_url(sys.argv[1])
    except PetastormMetadataError as e:
        print("refused:", e)
        sys.exit(0)
    print("accepted", flush=True)
    print(schema)  # what a user does first; reading the field does the same with its dtype
""")


@pytest.mark.parametrize("where", ["dtype", "values"])
def test_crafted_void_pickle_is_refused_by_get_schema_from_dataset_url_naming_the_file(tmp_path, where):
    from .test_safe_unpickle import crafted_void_schema_pickle

    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    md_path = _replace_metadata_keys(path, UNISCHEMA_JSON_KEY=None, UNISCHEMA_KEY=crafted_void_schema_pickle(where))
    done = subprocess.run([sys.executable, "-c", _GET_SCHEMA_AND_PRINT, "file://" + path], capture_output=True,
                          timeout=120)
    assert done.returncode == 0, f"crashed or failed (rc {done.returncode}): {done.stderr[-2000:]!r}"
    assert done.stdout.decode().startswith("refused:") and md_path in done.stdout.decode(), done.stdout


def _nested(depth, open_, close):
    return open_ * depth + close * depth


_JSON_DOC = json.loads(unischema_to_json(SCHEMA))


def _doc_with(path, value):
    doc = json.loads(json.dumps(_JSON_DOC))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(doc)


_HOSTILE_JSON = {
    "list nested 100000 deep": _nested(100_000, "[", "]"),
    "object nested 100000 deep": _nested(100_000, '{"a":', "}")[:-1] + "1" + "}" * 100_000,
    "key nested 100000 deep in a field": _doc_with(["fields", 0, "codec"], None).replace(
        '"codec": null', '"codec": ' + _nested(100_000, "[", "]")),
    "huge integer": _doc_with(["fields", 0, "shape"], [1]).replace("[1]", "[" + "9" * 5000 + "]"),
    "huge dimension": _doc_with(["fields", 0, "shape"], [2 ** 80]),
    "negative dimension": _doc_with(["fields", 0, "shape"], [-1]),
    "infinite quality": _doc_with(["fields", 6, "codec", "quality"], 1e999),
    "boolean precision": _doc_with(["fields", 2, "codec", "spark_type", "precision"], True),
    "ArrayType 40 deep": _doc_with(["fields", 0, "codec", "spark_type"], json.loads(
        '{"type": "ArrayType", "element": ' * 40 + '{"type": "LongType"}' + "}" * 40)),
    "document is a list": "[]",
    "fields is an object": _doc_with(["fields"], {}),
    "field is a string": _doc_with(["fields", 0], "id"),
    "name is a number": _doc_with(["name"], 5),
    "field name is a list": _doc_with(["fields", 0, "name"], ["id"]),
    "dtype is an object": _doc_with(["fields", 0, "dtype"], {"a": 1}),
    "dtype is structured": _doc_with(["fields", 0, "dtype"], "dtype:i8,i8"),
    "dtype is object": _doc_with(["fields", 0, "dtype"], "dtype:O"),
    "codec is a string": _doc_with(["fields", 0, "codec"], "ScalarCodec"),
    "codec type is a list": _doc_with(["fields", 0, "codec", "type"], ["ScalarCodec"]),
    "spark type is a number": _doc_with(["fields", 0, "codec", "spark_type"], 3),
    "spark type name is an object": _doc_with(["fields", 0, "codec", "spark_type", "type"], {}),
    "image codec is a list": _doc_with(["fields", 6, "codec", "image_codec"], ["png"]),
    "nullable is a string": _doc_with(["fields", 0, "nullable"], "yes"),
    "duplicate field names": _doc_with(["fields", 1, "name"], "id"),
}


@pytest.mark.parametrize("text", list(_HOSTILE_JSON.values()), ids=list(_HOSTILE_JSON))
def test_hostile_json_schema_is_a_metadata_error_naming_the_file(tmp_path, text):
    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    md_path = _replace_metadata_keys(path, UNISCHEMA_JSON_KEY=text.encode("utf-8"))
    with pytest.raises(PetastormMetadataError) as e:
        dm.get_schema_from_dataset_url("file://" + path)
    assert md_path in str(e.value)


# --- get_schema_from_dataset_url: the original's exception types and lead phrases ------------------------

@pytest.mark.parametrize("url", ["/path/without/scheme", "relative/path", ["/a/b.parquet"]])
def test_url_without_scheme_raises_value_error_as_the_original(url):
    with pytest.raises(ValueError, match=r'^ERROR! A scheme-less dataset url .* Please prepend "file://"'):
        dm.get_schema_from_dataset_url(url)


def test_existing_path_without_scheme_raises_value_error_as_the_original(tmp_path):
    path = str(tmp_path / "ds")
    write_petastorm_dataset(path)
    with pytest.raises(ValueError, match="scheme-less dataset url"):
        dm.get_schema_from_dataset_url(path)


@pytest.mark.parametrize("missing", ["missing_dir", "ds/missing_file.parquet"])
def test_missing_path_raises_os_error_as_the_original(tmp_path, missing):
    write_petastorm_dataset(str(tmp_path / "ds"))
    url = (tmp_path / missing).as_uri()
    for argument in (url, [url]):
        with pytest.raises(OSError, match=f"^Passed non-file path: {tmp_path / missing}"):
            dm.get_schema_from_dataset_url(argument)


def test_directory_without_metadata_raises_metadata_error_as_the_original(tmp_path):
    write_plain_dataset(str(tmp_path / "plain"))
    with pytest.raises(PetastormMetadataError, match="^Could not find _common_metadata file") as e:
        dm.get_schema_from_dataset_url((tmp_path / "plain").as_uri())
    assert not isinstance(e.value, (ValueError, OSError))  # the original's is neither
