"""The schema model in petastorm.unischema, as petastorm users know it from the original 0.13.1 API."""
import pickle
import re
import warnings
from collections import OrderedDict
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormValueTypeError
from petastorm.unischema import (
    Unischema,
    UnischemaField,
    dict_to_spark_row,
    insert_explicit_nulls,
    match_unischema_fields,
)


def _spark_types():
    import pyspark.sql.types as T

    return T


@pytest.fixture()
def schema():
    T = _spark_types()
    return Unischema("TestSchema", [
        UnischemaField("id", np.int64, (), ScalarCodec(T.LongType()), False),
        UnischemaField("id2", np.int32, (), ScalarCodec(T.IntegerType()), False),
        UnischemaField("id_float", np.float64, (), ScalarCodec(T.DoubleType()), False),
        UnischemaField("name", np.str_, (), ScalarCodec(T.StringType()), False),
        UnischemaField("image", np.uint8, (8, 6, 3), CompressedImageCodec("png"), False),
        UnischemaField("matrix", np.float32, (4, None), NdarrayCodec(), False),
        UnischemaField("znd", np.float64, (3, 3), CompressedNdarrayCodec(), False),
        UnischemaField("decimal", Decimal, (), ScalarCodec(T.DecimalType(10, 9)), False),
        UnischemaField("maybe", np.int16, (2,), NdarrayCodec(), True),
    ])


def _row(i=0):
    rng = np.random.default_rng(i)
    return {
        "id": np.int64(i), "id2": np.int32(2 * i), "id_float": i / 3, "name": f"row_{i}",
        "image": rng.integers(0, 255, (8, 6, 3), dtype=np.uint8),
        "matrix": rng.normal(size=(4, i + 1)).astype(np.float32),
        "znd": rng.normal(size=(3, 3)), "decimal": Decimal(i) / 1000,
        "maybe": None if i % 2 else np.array([i, -i], dtype=np.int16),
    }


# --- UnischemaField --------------------------------------------------------------------------------------------

def test_field_is_a_namedtuple_with_the_original_layout_and_defaults():
    f = UnischemaField("x", np.float32, (2, 3))
    assert isinstance(f, tuple)
    assert UnischemaField._fields == ("name", "numpy_dtype", "shape", "codec", "nullable")
    assert f.codec is None and f.nullable is False
    name, dtype, shape, codec, nullable = f
    assert (name, dtype, shape, codec, nullable) == ("x", np.float32, (2, 3), None, False)
    assert f._replace(nullable=True).nullable is True


def test_field_equality_and_hash_ignore_the_codec_instance():
    T = _spark_types()
    a = UnischemaField("a", np.int32, (), ScalarCodec(T.IntegerType()), False)
    b = UnischemaField("a", np.int32, (), ScalarCodec(T.IntegerType()), False)
    assert a.codec is not b.codec
    assert a == b and not (a != b)
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert {a: 1}[b] == 1


def test_field_equality_ignores_the_codec_as_the_original_does():
    # The original 0.13.1 leaves the codec out of __eq__/__hash__ (checked as a black box); user code
    # that puts fields in sets or compares schemas relies on it.
    a = UnischemaField("m", np.float32, (2,), NdarrayCodec(), False)
    b = UnischemaField("m", np.float32, (2,), CompressedNdarrayCodec(), False)
    assert a == b and hash(a) == hash(b)
    assert UnischemaField("m", np.float32, (2,), None, False) == a


@pytest.mark.parametrize("change", [
    {"name": "other"}, {"numpy_dtype": np.float64}, {"shape": (3,)}, {"nullable": True},
])
def test_field_equality_considers_name_dtype_shape_and_nullability(change):
    a = UnischemaField("m", np.float32, (2,), NdarrayCodec(), False)
    assert a != a._replace(**change)


def test_field_pickle_round_trip_keeps_every_attribute():
    T = _spark_types()
    for f in [UnischemaField("d", Decimal, (), ScalarCodec(T.DecimalType(10, 9)), True),
              UnischemaField("img", np.uint8, (None, None, 3), CompressedImageCodec("jpeg", 60), False),
              UnischemaField("s", np.str_, (), None, False)]:
        for protocol in (2, pickle.HIGHEST_PROTOCOL):
            g = pickle.loads(pickle.dumps(f, protocol=protocol))
            assert g == f and hash(g) == hash(f)
            assert type(g) is UnischemaField
            assert type(g.codec) is type(f.codec)
            assert g.nullable is f.nullable
    g = pickle.loads(pickle.dumps(UnischemaField("img", np.uint8, (4, 4, 3), CompressedImageCodec("jpeg", 60))))
    assert g.codec.image_codec == "jpeg" and g.codec._quality == 60


# --- Unischema ---------------------------------------------------------------------------------------------------

def test_fields_are_attributes_and_an_ordered_dict_in_declaration_order(schema):
    assert isinstance(schema.fields, OrderedDict)
    assert list(schema.fields) == ["id", "id2", "id_float", "name", "image", "matrix", "znd", "decimal", "maybe"]
    assert schema.id is schema.fields["id"]
    assert schema.matrix.shape == (4, None)
    assert schema.image.codec.image_codec == "png"


def test_a_field_called_name_is_reachable_as_an_attribute(schema):
    # The original has no ``name`` property: a field called 'name' (as in real datasets) is schema.name.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = Unischema("S", [UnischemaField("name", np.str_, ())])
    assert s.name == UnischemaField("name", np.str_, ())
    assert pickle.loads(pickle.dumps(s)).name == UnischemaField("name", np.str_, ())
    assert schema.name is schema.fields["name"]


def test_duplicate_field_names_are_refused():
    with pytest.raises(ValueError, match="x"):
        Unischema("S", [UnischemaField("x", np.int8, ()), UnischemaField("x", np.int16, ())])


def test_unischema_pickle_round_trip_keeps_fields_order_and_attributes(schema):
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        loaded = pickle.loads(pickle.dumps(schema, protocol=protocol))
        assert loaded == schema
        assert list(loaded.fields) == list(schema.fields)
        assert loaded.matrix == schema.matrix
        assert type(loaded.image.codec) is CompressedImageCodec
        assert loaded.make_namedtuple(**{k: 1 for k in loaded.fields})._fields == tuple(schema.fields)


def test_pickled_state_has_the_original_layout(schema):
    state = schema.__getstate__() if hasattr(schema, "__getstate__") else vars(schema)
    assert isinstance(state["_fields"], OrderedDict)
    assert state["_name"] == "TestSchema"
    assert state["id"] == schema.fields["id"]
    # No cached class or other unpicklable-by-the-original object in the state.
    for value in state.values():
        assert isinstance(value, (str, OrderedDict, UnischemaField))


def test_schema_built_from_a_generator_of_fields():
    s = Unischema("G", (UnischemaField(f"f{i}", np.int8, ()) for i in range(3)))
    assert list(s.fields) == ["f0", "f1", "f2"]


# --- create_schema_view --------------------------------------------------------------------------------------------

def test_view_from_fields_keeps_the_order_given(schema):
    # the original 0.12.1: create_schema_view([S.v, S.id]) -> fields ['v', 'id']
    view = schema.create_schema_view([schema.matrix, schema.id])
    assert list(view.fields) == ["matrix", "id"]
    assert view.id == schema.id
    assert isinstance(view, Unischema)


def test_view_from_regexes_uses_full_match(schema):
    assert list(schema.create_schema_view(["id"]).fields) == ["id"]
    assert list(schema.create_schema_view(["id.*"]).fields) == ["id", "id2", "id_float"]
    assert list(schema.create_schema_view(["i.*", "m.*"]).fields) == ["id", "id2", "id_float", "image", "matrix",
                                                                    "maybe"]
    assert list(schema.create_schema_view([]).fields) == []


def test_view_mixing_fields_and_regexes(schema):
    # given fields first, then the regex matches in schema order, each field once
    assert list(schema.create_schema_view([schema.znd, "id\\d"]).fields) == ["znd", "id2"]
    assert list(schema.create_schema_view(["id.*", schema.id2, schema.id2]).fields) == ["id2", "id", "id_float"]


def test_view_with_a_field_of_another_schema_is_a_value_error_naming_it(schema):
    # the original 0.12.1: ValueError "field {'zzz'} does not belong to the schema <the schema>"
    foreign = UnischemaField("not_here", np.int64, ())
    with pytest.raises(ValueError, match=r"^field \{'not_here'\} does not belong to the schema TestSchema"):
        schema.create_schema_view([foreign])


def test_view_takes_a_field_by_name_and_holds_the_schemas_own(schema):
    # the original 0.12.1 matches given fields by name: a same-named field of another dtype selects this
    # schema's field
    view = schema.create_schema_view([UnischemaField("id", np.float32, ())])
    assert list(view.fields) == ["id"] and view.id is schema.id


@pytest.mark.parametrize("element", [5, None, b"id", ("id", np.int64, ()), re.compile("id")])
def test_view_of_something_neither_a_field_nor_a_string_raises_the_original_value_error(schema, element):
    with pytest.raises(ValueError, match='^Elements of "fields" must be either a string \\(regular expressions\\) or '
                                         'an instance of UnischemaField class. Got '):
        schema.create_schema_view([schema.id, element])


def test_view_of_a_regex_matching_nothing_is_empty(schema):
    view = schema.create_schema_view(["nothing", "i"])  # full match: 'i' matches no field
    assert list(view.fields) == [] and view.make_namedtuple()._fields == ()


def test_view_of_a_view_and_its_namedtuple(schema):
    view = schema.create_schema_view(["id.*"]).create_schema_view(["id"])
    assert list(view.fields) == ["id"]
    row = view.make_namedtuple(id=5)
    assert row.id == 5 and row._fields == ("id",)


# --- namedtuples -------------------------------------------------------------------------------------------------

def test_make_namedtuple_orders_values_as_the_schema(schema):
    view = schema.create_schema_view(["id", "name", "decimal"])
    row = view.make_namedtuple(name="a", decimal=Decimal("1.5"), id=3)
    assert tuple(row) == (3, "a", Decimal("1.5"))
    assert row._fields == ("id", "name", "decimal")
    assert type(row) is type(view.make_namedtuple(id=1, name="b", decimal=Decimal(0)))


def test_make_namedtuple_with_an_unknown_field_is_an_error(schema):
    with pytest.raises((ValueError, TypeError)):
        schema.make_namedtuple(id=1, not_a_field=2)


def test_make_namedtuple_tf_takes_positional_values(schema):
    view = schema.create_schema_view(["id", "id2"])
    row = view.make_namedtuple_tf(1, 2)
    assert row.id == 1 and row.id2 == 2
    assert view.make_namedtuple_tf(id=1, id2=2) == row


def test_namedtuples_with_more_than_255_fields():
    n = 300
    big = Unischema("Big", [UnischemaField(f"f{i}", np.int32, ()) for i in range(n)])
    row = big.make_namedtuple(**{f"f{i}": i for i in range(n)})
    assert len(row) == n
    assert row.f299 == 299 and row[256] == 256
    assert big.make_namedtuple_tf(*range(n)) == row
    assert pickle.loads(pickle.dumps(big)) == big
    assert len(big.create_schema_view(["f2.*"]).fields) == 1 + 10 + 100


def test_schema_name_that_is_not_an_identifier_still_makes_namedtuples():
    s = Unischema("my-schema 1", [UnischemaField("a", np.int8, ())])
    assert s.make_namedtuple(a=1).a == 1


# --- match_unischema_fields -------------------------------------------------------------------------------------

def test_match_is_a_full_match_not_a_prefix_match(schema):
    assert [f.name for f in match_unischema_fields(schema, ["id"])] == ["id"]
    assert [f.name for f in match_unischema_fields(schema, ["id2"])] == ["id2"]
    assert [f.name for f in match_unischema_fields(schema, ["d"])] == []
    assert [f.name for f in match_unischema_fields(schema, [".*a.*"])] == ["id_float", "name", "image", "matrix",
                                                                          "decimal", "maybe"]


def test_match_returns_schema_order_without_duplicates(schema):
    got = match_unischema_fields(schema, ["matrix", "id", "i.*"])
    assert [f.name for f in got] == ["id", "id2", "id_float", "image", "matrix"]
    assert all(isinstance(f, UnischemaField) for f in got)


def test_match_with_no_patterns_is_empty(schema):
    assert match_unischema_fields(schema, []) == []


def test_invalid_regex_names_the_pattern(schema):
    with pytest.raises(ValueError, match=r"\(unclosed"):
        match_unischema_fields(schema, ["(unclosed"])


# --- insert_explicit_nulls -------------------------------------------------------------------------------------

def test_insert_explicit_nulls_adds_none_for_missing_nullable_fields(schema):
    row = _row(1)
    del row["maybe"]
    insert_explicit_nulls(schema, row)
    assert "maybe" in row and row["maybe"] is None


def test_insert_explicit_nulls_keeps_given_values(schema):
    row = _row(0)
    before = row["maybe"]
    insert_explicit_nulls(schema, row)
    assert row["maybe"] is before


def test_insert_explicit_nulls_refuses_a_missing_non_nullable_field(schema):
    row = _row(0)
    del row["id2"]
    with pytest.raises(ValueError, match="Field id2 is not found in the row_dict, but is not nullable"):
        insert_explicit_nulls(schema, row)


# --- Spark ------------------------------------------------------------------------------------------------------

def test_as_spark_schema_maps_every_codec_and_nullability(schema):
    T = _spark_types()
    struct = schema.as_spark_schema()
    assert isinstance(struct, T.StructType)
    assert struct.names == list(schema.fields)
    types = {f.name: f.dataType for f in struct.fields}
    assert types["id"] == T.LongType()
    assert types["id2"] == T.IntegerType()
    assert types["id_float"] == T.DoubleType()
    assert types["name"] == T.StringType()
    assert types["decimal"] == T.DecimalType(10, 9)
    for binary in ("image", "matrix", "znd", "maybe"):
        assert types[binary] == T.BinaryType()
    nullable = {f.name: f.nullable for f in struct.fields}
    assert nullable["maybe"] is True and nullable["id"] is False


# The original 0.12.1's Spark types of scalar fields without a codec (Unischema([...]).as_spark_schema()):
ORIGINAL_CODECLESS_SPARK_TYPES = {
    np.int8: "ByteType", np.uint8: "ShortType", np.int16: "ShortType", np.uint16: "IntegerType",
    np.int32: "IntegerType", np.int64: "LongType", np.float32: "FloatType", np.float64: "DoubleType",
    np.bool_: "BooleanType", np.str_: "StringType", np.bytes_: "StringType",
}


@pytest.mark.parametrize("numpy_type", list(ORIGINAL_CODECLESS_SPARK_TYPES), ids=lambda t: t.__name__)
def test_as_spark_schema_maps_codecless_scalars_as_the_original(numpy_type):
    T = _spark_types()
    struct = Unischema("Plain", [UnischemaField("f", numpy_type, (), None, True)]).as_spark_schema()
    assert struct["f"].dataType == getattr(T, ORIGINAL_CODECLESS_SPARK_TYPES[numpy_type])()
    assert struct["f"].nullable is True


def test_as_spark_schema_maps_a_codecless_str_field_to_string_type():
    T = _spark_types()
    for numpy_type in (np.str_, str, np.dtype("<U3")):
        struct = Unischema("S", [UnischemaField("s", numpy_type, (), None, False)]).as_spark_schema()
        assert struct["s"].dataType == T.StringType()


def test_as_spark_schema_maps_types_the_original_could_not():
    # kept on purpose: the original raised 'Was not able to map type ...' for these
    T = _spark_types()
    s = Unischema("More", [UnischemaField("u32", np.uint32, ()), UnischemaField("t", np.datetime64, ()),
                           UnischemaField("d", Decimal, ()), UnischemaField("i", np.dtype("int32"), ())])
    types = {f.name: f.dataType for f in s.as_spark_schema().fields}
    assert types == {"u32": T.LongType(), "t": T.TimestampType(), "d": T.DecimalType(38, 18),
                     "i": T.IntegerType()}


@pytest.mark.parametrize("shape", [(3,), (None,), (2, 2)])
def test_as_spark_schema_refuses_a_non_scalar_field_without_codec(shape):
    s = Unischema("S", [UnischemaField("arr", np.int64, shape, None, False)])
    with pytest.raises(ValueError, match="^An instance of non-scalar UnischemaField 'arr' has codec set to None. "
                                         "Don't know how to guess a Spark type for it"):
        s.as_spark_schema()


@pytest.mark.parametrize("numpy_type", [np.uint64, np.float16, np.complex64, np.object_, np.timedelta64, "x"])
def test_as_spark_schema_of_an_unmappable_type_uses_the_original_wording(numpy_type):
    s = Unischema("S", [UnischemaField("c", numpy_type, (), None, False)])
    with pytest.raises(ValueError, match=f"^Was not able to map type {re.escape(str(numpy_type))} to a spark type. "
                                         f"Field 'c'"):
        s.as_spark_schema()


def test_dict_to_spark_row_encodes_every_field(schema):
    from pyspark.sql import Row

    row = dict_to_spark_row(schema, _row(2))
    assert isinstance(row, Row)
    d = row.asDict()
    assert set(d) == set(schema.fields)
    assert d["id"] == 2 and type(d["id"]) is int
    assert d["name"] == "row_2"
    assert d["decimal"] == Decimal(2) / 1000
    np.testing.assert_array_equal(schema.matrix.codec.decode(schema.matrix, d["matrix"]), _row(2)["matrix"])
    np.testing.assert_array_equal(schema.image.codec.decode(schema.image, d["image"]), _row(2)["image"])
    np.testing.assert_array_equal(schema.znd.codec.decode(schema.znd, d["znd"]), _row(2)["znd"])
    assert dict_to_spark_row(schema, _row(1)).asDict()["maybe"] is None


def test_dict_to_spark_row_fills_a_missing_nullable_field_with_none(schema):
    row = _row(0)
    del row["maybe"]
    assert dict_to_spark_row(schema, row).asDict()["maybe"] is None
    assert "maybe" not in row  # the caller's dict is left alone, as the original


def test_dict_to_spark_row_refuses_a_missing_non_nullable_field_with_the_original_message(schema):
    row = _row(0)
    del row["id2"]
    with pytest.raises(ValueError, match="^Field id2 is not found in the row_dict, but is not nullable"):
        dict_to_spark_row(schema, row)


def test_dict_to_spark_row_refuses_extra_keys_listing_them(schema):
    row = _row(0)
    row["extra"] = 1
    with pytest.raises(ValueError, match="^Dictionary fields \n(.+\n)+ do not match schema fields \n") as info:
        dict_to_spark_row(schema, row)
    assert "not in the schema 'TestSchema': ['extra']" in str(info.value)


def test_dict_to_spark_row_refuses_none_in_a_non_nullable_field(schema):
    # the original 0.12.1: ValueError 'Field {} is not "nullable", but got passes a None value' (sic)
    row = _row(0)
    row["matrix"] = None
    with pytest.raises(ValueError, match='^Field matrix is not "nullable", but got passes a None value'):
        dict_to_spark_row(schema, row)


@pytest.mark.parametrize("field,value", [("id", object()), ("id", [1]), ("id", np.arange(3))])
def test_dict_to_spark_row_value_of_a_wrong_python_type_is_a_type_error(schema, field, value):
    # the original 0.12.1 raised TypeError for these (from int(), or 'Expected a scalar as a value for field'); ours
    # is also a ValueError, as the original's other refusals of a value
    row = _row(0)
    row[field] = value
    with pytest.raises(TypeError, match=field) as info:
        dict_to_spark_row(schema, row)
    assert isinstance(info.value, PetastormValueTypeError) and isinstance(info.value, ValueError)


def test_dict_to_spark_row_refuses_a_value_that_does_not_fit(schema):
    row = _row(0)
    row["image"] = np.zeros((8, 6, 4), np.uint8)
    with pytest.raises(ValueError, match=r"image.*\(8, 6, 3\).*\(8, 6, 4\)"):
        dict_to_spark_row(schema, row)


@pytest.mark.spark
@pytest.mark.slow
def test_rows_and_schema_make_a_real_spark_dataframe(spark_session, schema):
    rows = [dict_to_spark_row(schema, _row(i)) for i in range(4)]
    df = spark_session.createDataFrame(rows, schema.as_spark_schema())
    assert df.columns == list(schema.fields)
    collected = sorted(df.collect(), key=lambda r: r.id)
    assert [r.id for r in collected] == [0, 1, 2, 3]
    for r in collected:
        expected = _row(r.id)
        np.testing.assert_array_equal(schema.matrix.codec.decode(schema.matrix, r.matrix), expected["matrix"])
        assert r.decimal == expected["decimal"]
        assert (r.maybe is None) == (expected["maybe"] is None)


# --- from_arrow_schema -------------------------------------------------------------------------------------------

def _arrow_table():
    return pa.table({
        "i8": pa.array([1, 2], pa.int8()), "u16": pa.array([1, 2], pa.uint16()),
        "i64": pa.array([1, None], pa.int64()), "f32": pa.array([1.5, 2.5], pa.float32()),
        "f64": pa.array([1.5, 2.5], pa.float64()), "flag": pa.array([True, False]),
        "s": pa.array(["a", "b"]), "blob": pa.array([b"x", b"y"]),
        "dec": pa.array([Decimal("1.25"), Decimal("2.50")], pa.decimal128(5, 2)),
        "ts": pa.array([0, 1], pa.timestamp("us")),
        "ints": pa.array([[1, 2], [3]], pa.list_(pa.int32())),
        "nested": pa.array([[[1.0]], [[2.0, 3.0]]], pa.list_(pa.list_(pa.float64()))),
    })


def test_from_arrow_schema_maps_scalar_and_list_types():
    s = Unischema.from_arrow_schema(_arrow_table().schema)
    f = s.fields
    assert list(f) == _arrow_table().column_names
    assert f["i8"].numpy_dtype == np.int8 and f["u16"].numpy_dtype == np.uint16
    assert f["i64"].numpy_dtype == np.int64 and f["i64"].shape == ()
    assert f["f32"].numpy_dtype == np.float32 and f["f64"].numpy_dtype == np.float64
    assert f["flag"].numpy_dtype == np.bool_
    assert f["s"].numpy_dtype == np.str_ and f["blob"].numpy_dtype == np.bytes_
    assert f["dec"].numpy_dtype is Decimal
    assert f["ts"].numpy_dtype == np.datetime64
    assert f["ints"].numpy_dtype == np.int32 and f["ints"].shape == (None,)
    assert f["nested"].numpy_dtype == np.float64 and f["nested"].shape == (None, None)
    assert all(field.codec is None for field in f.values())
    assert f["i64"].nullable is True


def test_from_arrow_schema_omits_unsupported_columns_with_a_warning():
    schema = pa.schema([("ok", pa.int32()), ("st", pa.struct([("a", pa.int32())])),
                        ("m", pa.map_(pa.string(), pa.int32()))])
    with pytest.warns(UserWarning, match="st"):
        s = Unischema.from_arrow_schema(schema)
    assert list(s.fields) == ["ok"]


def test_from_arrow_schema_raises_on_unsupported_columns_when_asked():
    schema = pa.schema([("ok", pa.int32()), ("st", pa.struct([("a", pa.int32())]))])
    with pytest.raises(ValueError, match="st"):
        Unischema.from_arrow_schema(schema, omit_unsupported_fields=False)


@pytest.fixture()
def hive_dir(tmp_path):
    for part in ("p_0", "p_1"):
        d = tmp_path / f"partition={part}"
        d.mkdir()
        pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64()), "v": pa.array([[1.0], [2.0]])}),
                       str(d / "part.parquet"))
    return tmp_path


def test_from_arrow_schema_of_a_hive_partitioned_dataset(hive_dir):
    dataset = pads.dataset(str(hive_dir), format="parquet", partitioning="hive")
    s = Unischema.from_arrow_schema(dataset)
    assert set(s.fields) == {"id", "v", "partition"}
    assert s.fields["partition"].numpy_dtype == np.str_
    assert s.fields["v"].shape == (None,)
    assert s.fields["id"].numpy_dtype == np.int64


def test_from_arrow_schema_of_a_parquet_dataset(hive_dir):
    s = Unischema.from_arrow_schema(pq.ParquetDataset(str(hive_dir)))
    assert {"id", "v", "partition"} <= set(s.fields)
    assert s.fields["partition"].numpy_dtype == np.str_


# The original 0.12.1 on an NdarrayCodec field 'arr' of float32 (2, 2), through dict_to_spark_row:
#   (3, 3) array  -> ValueError 'Unexpected dimensions of arr feature. Expected (2, 2). Got (3, 3)'
#   float64 array -> ValueError "Unexpected type of arr feature. Expected <class 'numpy.float32'>. Got float64"
@pytest.mark.parametrize("value,lead", [
    (np.zeros((3, 3), np.float32), r"Unexpected dimensions of arr feature. Expected \(2, 2\). Got \(3, 3\)"),
    (np.zeros((2, 2), np.float64), r"Unexpected type of arr feature. Expected <class 'numpy.float32'>. Got float64"),
])
def test_dict_to_spark_row_value_of_a_wrong_shape_or_dtype_leads_with_the_original_message(value, lead):
    s = Unischema("S", [UnischemaField("arr", np.float32, (2, 2), NdarrayCodec(), False)])
    with pytest.raises(ValueError, match="^" + lead):
        dict_to_spark_row(s, {"arr": value})


def test_encoding_an_image_without_an_image_library_is_an_import_error_not_a_bad_value():
    # before: "PetastormSchemaError: ...CompressedImageCodec needs OpenCV or Pillow...: field 'image1' cannot take a
    # ndarray value", blaming the value for a missing optional dependency
    import subprocess
    import sys
    code = ("import sys; sys.modules['cv2'] = None; sys.modules['PIL'] = None\n"
            "import numpy as np\nfrom petastorm.codecs import CompressedImageCodec\n"
            "from petastorm.unischema import Unischema, UnischemaField, encode_row\n"
            "S = Unischema('S', [UnischemaField('image1', np.uint8, (4, 4, 3), CompressedImageCodec('png'), False)])\n"
            "try:\n    encode_row(S, {'image1': np.zeros((4, 4, 3), np.uint8)}, 0)\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ImportError CompressedImageCodec needs OpenCV or Pillow"), out.stdout
    assert "cannot take" not in out.stdout
