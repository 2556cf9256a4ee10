"""Codecs: per-value encode/decode, whole-column decode, bytes the original library can read, and errors."""
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from decimal import Decimal

import cv2
import numpy as np
import pyarrow as pa
import pyspark.sql.types as T  # pyspark is a test dependency
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormSchemaError
from petastorm.unischema import UnischemaField


def _field(dtype, shape, codec, nullable=False, name="f"):
    return UnischemaField(name, dtype, shape, codec, nullable)


def _column(cells, type_=pa.binary()):
    return pa.array([None if c is None else bytes(c) for c in cells], type=type_)


def _rgb(h=16, w=12, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    hi = 255 if dtype == np.uint8 else 65535
    return rng.integers(0, hi, (h, w, 3), dtype=dtype)


def _smooth_rgb(h=32, w=48):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 5, y * 7, (x + y) * 3], axis=-1).astype(np.uint8)


# --- ScalarCodec ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spark_type, dtype, value, stored", [
    (T.ByteType(), np.int8, np.int8(-5), -5),
    (T.ShortType(), np.int16, np.int16(300), 300),
    (T.ShortType(), np.uint8, np.uint8(200), 200),
    (T.IntegerType(), np.int32, np.int32(-70000), -70000),
    (T.LongType(), np.int64, np.int64(2 ** 40), 2 ** 40),
    (T.LongType(), np.int64, 7, 7),
    (T.FloatType(), np.float32, np.float32(1.5), 1.5),
    (T.DoubleType(), np.float64, 0.1, 0.1),
    (T.BooleanType(), np.bool_, np.bool_(True), True),
    (T.StringType(), np.str_, "héllo", "héllo"),
    (T.DecimalType(10, 9), Decimal, Decimal("0.123456789"), Decimal("0.123456789")),
])
def test_scalar_codec_round_trip(spark_type, dtype, value, stored):
    codec = ScalarCodec(spark_type)
    field = _field(dtype, (), codec)
    encoded = codec.encode(field, value)
    assert encoded == stored
    assert type(encoded) is type(stored)  # plain Python values, what Spark and pyarrow accept
    decoded = codec.decode(field, encoded)
    assert decoded == value
    if dtype is not Decimal:
        assert isinstance(decoded, dtype)
    assert codec.spark_dtype() == spark_type


def test_scalar_codec_refuses_a_non_string_for_a_string_field():
    codec = ScalarCodec(T.StringType())
    with pytest.raises(ValueError, match="Expected a string value for field name"):
        codec.encode(_field(np.str_, (), codec, name="name"), 5)


def test_scalar_codec_refuses_an_array_value_with_the_originals_type_error():
    codec = ScalarCodec(T.LongType())
    with pytest.raises(TypeError, match="^Expected a scalar as a value for field 'id'.*shape \\(3,\\)"):
        codec.encode(_field(np.int64, (), codec, name="id"), np.arange(3))


def test_scalar_codec_refuses_a_fractional_value_for_an_integer_field():
    codec = ScalarCodec(T.IntegerType())
    with pytest.raises(PetastormSchemaError, match="'n'"):
        codec.encode(_field(np.int32, (), codec, name="n"), 1.5)


def test_scalar_codec_decode_column_equals_per_cell_decode():
    codec = ScalarCodec(T.IntegerType())
    field = _field(np.int32, (), codec)
    col = pa.array([1, 2, 3], pa.int32())
    out = codec.decode_column(field, col)
    assert out.shape == (3,) and out.dtype == np.int32
    np.testing.assert_array_equal(out, [codec.decode(field, v) for v in col.to_pylist()])


def test_scalar_codec_decode_column_with_nulls_gives_none():
    codec = ScalarCodec(T.LongType())
    field = _field(np.int64, (), codec, nullable=True)
    out = codec.decode_column(field, pa.chunked_array([pa.array([1, None], pa.int64()), pa.array([3], pa.int64())]))
    assert out.shape == (3,)
    assert out[1] is None and out[0] == 1 and out[2] == 3


def test_scalar_codec_decode_column_of_strings_and_decimals():
    s_codec = ScalarCodec(T.StringType())
    out = s_codec.decode_column(_field(np.str_, (), s_codec), pa.array(["a", "bc"]))
    assert list(out) == ["a", "bc"]
    d_codec = ScalarCodec(T.DecimalType(5, 2))
    out = d_codec.decode_column(_field(Decimal, (), d_codec), pa.array([Decimal("1.25")], pa.decimal128(5, 2)))
    assert out[0] == Decimal("1.25")


# --- NdarrayCodec --------------------------------------------------------------------------------------------------

_NUMERIC = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
            "float16", "float32", "float64", "complex64"]


@pytest.mark.parametrize("dtype", _NUMERIC)
@pytest.mark.parametrize("codec_cls", [NdarrayCodec, CompressedNdarrayCodec])
def test_ndarray_codecs_round_trip_every_dtype(codec_cls, dtype):
    rng = np.random.default_rng(1)
    value = (rng.normal(size=(3, 4, 2)) * 100).astype(dtype)
    codec = codec_cls()
    field = _field(np.dtype(dtype).type, (3, None, 2), codec)
    encoded = codec.encode(field, value)
    assert isinstance(encoded, bytearray)
    decoded = codec.decode(field, encoded)
    assert decoded.dtype == value.dtype and decoded.shape == value.shape
    np.testing.assert_array_equal(decoded, value)
    assert decoded.flags.writeable  # users modify decoded arrays in place, as np.load allows


@pytest.mark.parametrize("codec_cls", [NdarrayCodec, CompressedNdarrayCodec])
def test_ndarray_codecs_round_trip_strings_bytes_and_datetimes(codec_cls):
    codec = codec_cls()
    for dtype, value in [(np.str_, np.array([["a", "bcd"], ["", "é"]])),
                         (np.bytes_, np.array([b"x", b"yz", b""])),
                         (np.datetime64, np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]"))]:
        field = _field(dtype, (None,) * value.ndim, codec)
        np.testing.assert_array_equal(codec.decode(field, codec.encode(field, value)), value)


def test_ndarray_codec_writes_exactly_what_np_save_writes():
    value = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    field = _field(np.float32, (2, 3, 4), NdarrayCodec())
    buf = io.BytesIO()
    np.save(buf, value)
    assert bytes(field.codec.encode(field, value)) == buf.getvalue()
    # And the original's reader (np.load) reads our bytes.
    np.testing.assert_array_equal(np.load(io.BytesIO(field.codec.encode(field, value))), value)


def test_compressed_ndarray_codec_writes_an_npz_with_the_key_arr():
    value = np.linspace(0, 1, 36).reshape(6, 6)
    field = _field(np.float64, (6, 6), CompressedNdarrayCodec())
    encoded = bytes(field.codec.encode(field, value))
    with np.load(io.BytesIO(encoded)) as npz:
        assert list(npz.keys()) == ["arr"]
        np.testing.assert_array_equal(npz["arr"], value)
    # Bytes written by numpy directly (as the original does) decode too.
    buf = io.BytesIO()
    np.savez_compressed(buf, arr=value)
    np.testing.assert_array_equal(field.codec.decode(field, buf.getvalue()), value)


def test_compressed_ndarray_is_smaller_for_compressible_data():
    value = np.zeros((100, 100), np.float32)
    nd, znd = _field(np.float32, (100, 100), NdarrayCodec()), _field(np.float32, (100, 100), CompressedNdarrayCodec())
    assert len(znd.codec.encode(znd, value)) < len(nd.codec.encode(nd, value)) / 10


_dtypes = st.sampled_from(["|b1", "<i1", "<u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"])


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=_dtypes.map(np.dtype),
       shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
       codec_cls=st.sampled_from([NdarrayCodec, CompressedNdarrayCodec]))
def test_ndarray_codecs_round_trip_any_array(data, dtype, shape, codec_cls):
    value = data.draw(hnp.arrays(dtype, shape))
    field = _field(dtype.type, tuple(None if i % 2 else d for i, d in enumerate(shape)), codec_cls())
    decoded = field.codec.decode(field, field.codec.encode(field, value))
    assert decoded.dtype == value.dtype and decoded.shape == value.shape
    np.testing.assert_array_equal(decoded, value)


# --- decode_column of the ndarray codecs ------------------------------------------------------------------------

def _per_cell(field, column):
    return [None if v is None else field.codec.decode(field, v) for v in column.to_pylist()]


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=_dtypes.map(np.dtype),
       shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4),
       rows=st.integers(1, 6), big=st.booleans(),
       codec_cls=st.sampled_from([NdarrayCodec, CompressedNdarrayCodec]))
def test_decode_column_of_fixed_shape_is_one_array_equal_to_per_cell_decode(data, dtype, shape, rows, big,
                                                                            codec_cls):
    dtype = dtype.newbyteorder(">") if big and dtype.itemsize > 1 else dtype
    values = [data.draw(hnp.arrays(dtype, shape)) for _ in range(rows)]
    field = _field(dtype.type, shape, codec_cls())
    col = _column([field.codec.encode(field, v) for v in values], data.draw(st.sampled_from([pa.binary(),
                                                                                             pa.large_binary()])))
    out = field.codec.decode_column(field, col)
    assert out.shape == (rows,) + shape
    assert out.dtype.type is dtype.type  # same kind and size; byte order may be made native
    np.testing.assert_array_equal(out, np.stack(values))
    np.testing.assert_array_equal(out, np.stack(_per_cell(field, col)))


def test_decode_column_of_variable_shapes_is_an_object_array_of_arrays():
    field = _field(np.int16, (None, 5), NdarrayCodec())
    values = [np.full((n, 5), n, np.int16) for n in (1, 3, 0, 2)]
    col = _column([field.codec.encode(field, v) for v in values])
    out = field.codec.decode_column(field, col)
    assert out.dtype == object and out.shape == (4,)
    for got, want in zip(out, values):
        assert got.dtype == np.int16
        np.testing.assert_array_equal(got, want)


def test_decode_column_of_same_byte_length_but_different_shapes_is_not_mixed_up():
    field = _field(np.float32, (None, None), NdarrayCodec())
    values = [np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(6, dtype=np.float32).reshape(3, 2)]
    col = _column([field.codec.encode(field, v) for v in values])
    out = field.codec.decode_column(field, col)
    assert [o.shape for o in out] == [(2, 3), (3, 2)]


@pytest.mark.parametrize("codec_cls", [NdarrayCodec, CompressedNdarrayCodec])
def test_decode_column_with_nulls_is_an_object_array_with_none(codec_cls):
    field = _field(np.float32, (2, 2), codec_cls(), nullable=True)
    values = [np.eye(2, dtype=np.float32), None, np.ones((2, 2), np.float32)]
    col = _column([None if v is None else field.codec.encode(field, v) for v in values])
    out = field.codec.decode_column(field, col)
    assert out.dtype == object and out.shape == (3,)
    assert out[1] is None
    np.testing.assert_array_equal(out[0], values[0])
    np.testing.assert_array_equal(out[2], values[2])


def test_decode_column_of_a_sliced_and_chunked_column():
    field = _field(np.int32, (3,), NdarrayCodec())
    values = [np.array([i, i + 1, i + 2], np.int32) for i in range(10)]
    col = _column([field.codec.encode(field, v) for v in values])
    np.testing.assert_array_equal(field.codec.decode_column(field, col.slice(3, 4)), np.stack(values[3:7]))
    chunked = pa.chunked_array([col.slice(0, 4), col.slice(4, 6)])
    np.testing.assert_array_equal(field.codec.decode_column(field, chunked), np.stack(values))


def test_decode_column_of_fortran_order_cells():
    field = _field(np.float64, (3, 4), NdarrayCodec())
    values = [np.asfortranarray(np.arange(12.0).reshape(3, 4) + i) for i in range(3)]
    col = _column([field.codec.encode(field, v) for v in values])
    out = field.codec.decode_column(field, col)
    np.testing.assert_array_equal(np.stack(list(out)), np.stack(values))


def test_decode_column_of_an_empty_column():
    field = _field(np.float32, (2, 3), NdarrayCodec())
    out = field.codec.decode_column(field, pa.array([], pa.binary()))
    assert out.shape[0] == 0


def test_decoded_column_is_writable_and_decoding_it_again_gives_an_independent_batch():
    field = _field(np.float32, (4,), NdarrayCodec())
    col = _column([field.codec.encode(field, np.zeros(4, np.float32)) for _ in range(3)])
    out = field.codec.decode_column(field, col)
    out[0, 0] = 1.0  # a user may write into a decoded batch (a view of the column's memory: the reader
    assert out[0, 0] == 1.0 and out[1, 0] == 0.0  # decodes each column of a row group it read once)
    again = field.codec.decode_column(field, col)  # while `out` lives, a second decode is a copy
    again[2, 3] = 5.0
    assert out[2, 3] == 0.0 and again[1, 0] == 0.0


def test_fixed_shape_cells_decode_to_a_view_that_outlives_the_arrow_column():
    import gc

    field = _field(np.float32, (8, 3), NdarrayCodec())
    values = [np.arange(24, dtype=np.float32).reshape(8, 3) * (i + 1) for i in range(50)]
    col = _column([field.codec.encode(field, v) for v in values]).slice(5, 40)
    out = field.codec.decode_column(field, col)
    rows = list(out)
    del out, col
    gc.collect()
    _ = [np.ones(100_000) for _ in range(20)]  # reuse freed memory, if any was freed
    for i, row in enumerate(rows):
        assert row.flags.c_contiguous and row.flags.writeable
        np.testing.assert_array_equal(row, values[5 + i])


# --- errors on encode --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec_cls", [NdarrayCodec, CompressedNdarrayCodec])
def test_wrong_dtype_names_field_expected_and_actual(codec_cls):
    field = _field(np.float32, (2, 3), codec_cls(), name="matrix")
    with pytest.raises(PetastormSchemaError) as e:
        field.codec.encode(field, np.zeros((2, 3), np.float64))
    msg = str(e.value)
    assert "matrix" in msg and "float32" in msg and "float64" in msg
    assert isinstance(e.value, ValueError)  # the original raised ValueError


@pytest.mark.parametrize("codec_cls", [NdarrayCodec, CompressedNdarrayCodec])
def test_wrong_shape_names_field_expected_and_actual(codec_cls):
    field = _field(np.float32, (2, None), codec_cls(), name="matrix")
    with pytest.raises(PetastormSchemaError) as e:
        field.codec.encode(field, np.zeros((3, 3), np.float32))
    msg = str(e.value)
    assert "matrix" in msg and "(2, None)" in msg and "(3, 3)" in msg
    with pytest.raises(PetastormSchemaError, match=r"\(2, 3, 1\)"):
        field.codec.encode(field, np.zeros((2, 3, 1), np.float32))


def test_a_list_is_refused_where_an_array_is_expected():
    field = _field(np.int64, (2,), NdarrayCodec(), name="pair")
    with pytest.raises(PetastormSchemaError, match="pair"):
        field.codec.encode(field, [1, 2])


# --- CompressedImageCodec --------------------------------------------------------------------------------------

def test_png_is_byte_identical_to_what_opencv_writes_for_the_bgr_image():
    img = _rgb()
    field = _field(np.uint8, img.shape, CompressedImageCodec("png"))
    encoded = bytes(field.codec.encode(field, img))
    ok, expected = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok and encoded == expected.tobytes()


@pytest.mark.parametrize("quality", [30, 80, 95])
def test_jpeg_is_byte_identical_to_what_opencv_writes_with_the_quality(quality):
    img = _smooth_rgb()
    field = _field(np.uint8, img.shape, CompressedImageCodec("jpeg", quality))
    encoded = bytes(field.codec.encode(field, img))
    ok, expected = cv2.imencode(".jpeg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    assert ok and encoded == expected.tobytes()


def test_rgb_image_decoded_by_raw_opencv_is_bgr_and_by_pillow_is_rgb():
    from PIL import Image

    img = _rgb()
    field = _field(np.uint8, img.shape, CompressedImageCodec("png"))
    encoded = bytes(field.codec.encode(field, img))
    raw = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(raw, img[..., ::-1])
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encoded))), img)


def test_png_written_by_opencv_from_bgr_decodes_to_rgb():
    img = _rgb(seed=3)
    stored = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()
    field = _field(np.uint8, img.shape, CompressedImageCodec("png"))
    np.testing.assert_array_equal(field.codec.decode(field, stored), img)


@pytest.mark.parametrize("img", [
    _rgb(), _rgb(5, 7, seed=2),
    np.random.default_rng(0).integers(0, 255, (9, 11), dtype=np.uint8),
    np.random.default_rng(0).integers(0, 255, (9, 11, 4), dtype=np.uint8),
    _rgb(6, 5, dtype=np.uint16),
    np.random.default_rng(0).integers(0, 65535, (9, 11), dtype=np.uint16),
], ids=["rgb", "rgb-small", "grey", "rgba", "rgb16", "grey16"])
def test_png_round_trip_is_lossless(img):
    field = _field(img.dtype.type, (None,) * img.ndim, CompressedImageCodec("png"))
    decoded = field.codec.decode(field, field.codec.encode(field, img))
    assert decoded.dtype == img.dtype and decoded.shape == img.shape
    np.testing.assert_array_equal(decoded, img)


def test_jpeg_round_trip_is_close_and_quality_trades_size():
    img = _smooth_rgb()
    sizes = {}
    for q in (20, 95):
        field = _field(np.uint8, img.shape, CompressedImageCodec("jpeg", q))
        encoded = field.codec.encode(field, img)
        sizes[q] = len(encoded)
        decoded = field.codec.decode(field, encoded)
        assert decoded.shape == img.shape and decoded.dtype == np.uint8
        assert np.abs(decoded.astype(int) - img).mean() < (12 if q == 20 else 4)
    assert sizes[20] < sizes[95]


def test_image_codec_keeps_the_original_state_and_pickles():
    for codec, state in [(CompressedImageCodec("png"), {"_image_codec": ".png", "_quality": 80}),
                         (CompressedImageCodec("jpeg", 50), {"_image_codec": ".jpeg", "_quality": 50})]:
        assert vars(codec) == state
        clone = pickle.loads(pickle.dumps(codec))
        assert vars(clone) == state and clone.image_codec == codec.image_codec
    assert vars(ScalarCodec(T.LongType())) == {"_spark_type": T.LongType()}
    assert vars(NdarrayCodec()) == {} and vars(CompressedNdarrayCodec()) == {}


def test_binary_codecs_are_binary_spark_columns():
    for codec in (NdarrayCodec(), CompressedNdarrayCodec(), CompressedImageCodec("png"), CompressedImageCodec("jpeg")):
        assert codec.spark_dtype() == T.BinaryType()


@pytest.mark.parametrize("shape, value_shape", [
    ((8, 6, 3), (8, 6, 4)),        # field says 3 channels, value has 4
    ((8, 6, 3), (8, 6)),           # grey value for a colour field
])
def test_image_with_the_wrong_channel_count_names_field_and_shapes(shape, value_shape):
    field = _field(np.uint8, shape, CompressedImageCodec("png"), name="image")
    with pytest.raises(PetastormSchemaError) as e:
        field.codec.encode(field, np.zeros(value_shape, np.uint8))
    msg = str(e.value)
    assert "image" in msg and str(shape) in msg and str(value_shape) in msg


@pytest.mark.parametrize("value_shape", [(8, 6, 2), (8, 6, 5), (8,), (2, 8, 6, 3)])
def test_image_of_an_unencodable_layout_is_a_schema_error(value_shape):
    field = _field(np.uint8, (None,) * len(value_shape), CompressedImageCodec("png"), name="image")
    with pytest.raises(PetastormSchemaError, match="image"):
        field.codec.encode(field, np.zeros(value_shape, np.uint8))


def test_image_of_the_wrong_dtype_names_both_dtypes():
    field = _field(np.uint8, (4, 4, 3), CompressedImageCodec("png"), name="image")
    with pytest.raises(PetastormSchemaError, match="image.*uint8.*float32"):
        field.codec.encode(field, np.zeros((4, 4, 3), np.float32))


def test_corrupt_image_bytes_give_a_schema_error():
    field = _field(np.uint8, (4, 4, 3), CompressedImageCodec("png"), name="image")
    with pytest.raises(PetastormSchemaError):
        field.codec.decode(field, b"definitely not a png")


def test_unknown_image_codec_is_refused():
    with pytest.raises(ValueError, match="gif"):
        CompressedImageCodec("gif")


@pytest.mark.parametrize("codec", [CompressedImageCodec("png"), CompressedImageCodec("jpeg", 90)])
@pytest.mark.parametrize("img_shape", [(10, 14, 3), (10, 14)])
def test_image_decode_column_of_fixed_shape_equals_per_cell_decode(codec, img_shape):
    field = _field(np.uint8, img_shape, codec)
    imgs = [np.random.default_rng(i).integers(0, 255, img_shape, dtype=np.uint8) for i in range(4)]
    col = _column([codec.encode(field, im) for im in imgs])
    out = codec.decode_column(field, col)
    assert out.shape == (4,) + img_shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.stack(_per_cell(field, col)))
    if codec.image_codec == "png":
        np.testing.assert_array_equal(out, np.stack(imgs))


def test_image_decode_column_with_nulls_and_variable_sizes():
    codec = CompressedImageCodec("png")
    field = _field(np.uint8, (None, None, 3), codec, nullable=True)
    imgs = [_rgb(4, 5), None, _rgb(6, 2, seed=1)]
    col = _column([None if im is None else codec.encode(field, im) for im in imgs])
    out = codec.decode_column(field, col)
    assert out.dtype == object and out.shape == (3,)
    assert out[1] is None
    np.testing.assert_array_equal(out[0], imgs[0])
    np.testing.assert_array_equal(out[2], imgs[2])


def test_image_decode_column_refuses_an_image_of_another_size_than_the_field():
    codec = CompressedImageCodec("png")
    small = _field(np.uint8, (4, 5, 3), codec, name="image")
    col = _column([codec.encode(small, _rgb(4, 5)), codec.encode(_field(np.uint8, (6, 5, 3), codec), _rgb(6, 5))])
    with pytest.raises(PetastormSchemaError, match="image"):
        codec.decode_column(small, col)


# --- Pillow fall-back (OpenCV made unimportable in a child process) ------------------------------------------------

_PILLOW_CHILD = textwrap.dedent("""
    import json, sys
    sys.modules['cv2'] = None          # 'import cv2' now raises ImportError
    import numpy as np
    from petastorm import image_io
    from petastorm.codecs import CompressedImageCodec
    from petastorm.unischema import UnischemaField
    assert image_io.opencv() is None
    src, out_dir = sys.argv[1], sys.argv[2]
    inputs = np.load(src)
    result = {}
    for key in ('rgb', 'grey', 'rgba'):
        img = inputs[key]
        for ext in ('png', 'jpeg'):
            if key == 'rgba' and ext == 'jpeg':
                continue
            f = UnischemaField(key, np.uint8, img.shape, CompressedImageCodec(ext, 95))
            enc = bytes(f.codec.encode(f, img))
            open(f'{out_dir}/{key}.{ext}', 'wb').write(enc)
            np.save(f'{out_dir}/{key}.{ext}.roundtrip.npy', f.codec.decode(f, enc))
        # decode what OpenCV wrote in the parent
        f = UnischemaField(key, np.uint8, img.shape, CompressedImageCodec('png'))
        np.save(f'{out_dir}/{key}.fromcv2.npy', f.codec.decode(f, open(f'{out_dir}/{key}.cv2.png', 'rb').read()))
    result['cv2_loaded'] = sys.modules.get('cv2') is not None
    print(json.dumps(result))
""")


@pytest.fixture(scope="module")
def pillow_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pillow")
    images = {"rgb": _smooth_rgb(), "grey": _smooth_rgb()[..., 0],
              "rgba": np.concatenate([_smooth_rgb(), np.full((32, 48, 1), 200, np.uint8)], axis=-1)}
    np.savez(d / "in.npz", **images)
    for key, img in images.items():
        f = _field(np.uint8, img.shape, CompressedImageCodec("png"))
        (d / f"{key}.cv2.png").write_bytes(bytes(f.codec.encode(f, img)))
    proc = subprocess.run([sys.executable, "-c", _PILLOW_CHILD, str(d / "in.npz"), str(d)],
                          capture_output=True, text=True, timeout=120, cwd=os.path.dirname(__file__))
    assert proc.returncode == 0, proc.stderr
    return d, images, json.loads(proc.stdout.strip().splitlines()[-1])


def test_pillow_fallback_round_trips_without_opencv(pillow_run):
    d, images, result = pillow_run
    assert result["cv2_loaded"] is False
    for key, img in images.items():
        np.testing.assert_array_equal(np.load(d / f"{key}.png.roundtrip.npy"), img)
        if key != "rgba":
            jpeg = np.load(d / f"{key}.jpeg.roundtrip.npy")
            assert jpeg.shape == img.shape and np.abs(jpeg.astype(int) - img).mean() < 4


@pytest.mark.parametrize("key", ["rgb", "rgba"])
def test_pillow_fallback_bytes_are_interchangeable_with_opencv_bytes(pillow_run, key):
    d, images, _ = pillow_run
    img = images[key]
    # What Pillow wrote, read by raw OpenCV, is what OpenCV would give for the original's bytes.
    raw = cv2.imdecode(np.fromfile(d / f"{key}.png", np.uint8), cv2.IMREAD_UNCHANGED)
    expected_raw = cv2.imdecode(np.fromfile(d / f"{key}.cv2.png", np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(raw, expected_raw)
    # What OpenCV wrote, decoded by the Pillow path, is the RGB image.
    np.testing.assert_array_equal(np.load(d / f"{key}.fromcv2.npy"), img)


def test_pillow_fallback_grey_bytes_are_interchangeable_with_opencv_bytes(pillow_run):
    d, images, _ = pillow_run
    raw = cv2.imdecode(np.fromfile(d / "grey.png", np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(raw, images["grey"])
    np.testing.assert_array_equal(np.load(d / "grey.fromcv2.npy"), images["grey"])


def test_fixed_shape_column_decode_parses_one_header_and_loops_over_no_cell(monkeypatch):
    import petastorm.codecs as codecs_module

    field = _field(np.float32, (8, 8), NdarrayCodec())
    values = np.random.default_rng(0).normal(size=(1000, 8, 8)).astype(np.float32)
    col = _column([field.codec.encode(field, v) for v in values])
    calls = []
    real_parse = codecs_module.parse_npy_header

    def counting_parse(buf):
        calls.append(1)
        return real_parse(buf)

    def no_per_cell(*args, **kwargs):
        raise AssertionError("per-cell decode used for a fixed-shape column")

    monkeypatch.setattr(codecs_module, "parse_npy_header", counting_parse)
    monkeypatch.setattr(codecs_module, "npy_bytes_to_array", no_per_cell)
    out = field.codec.decode_column(field, col)
    np.testing.assert_array_equal(out, values)
    assert len(calls) == 1


def test_scalar_column_stored_narrower_than_the_field_is_cast_to_the_field_dtype():
    # The original's test schema stores an int32 field as Spark ShortType (an int16 Parquet column).
    codec = ScalarCodec(T.ShortType())
    field = _field(np.int32, (), codec, name="id2")
    out = codec.decode_column(field, pa.array([1, -2, 300], pa.int16()))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [1, -2, 300])


def test_field_declared_with_a_dtype_instance_accepts_arrays_of_that_dtype():
    field = _field(np.dtype("float32"), (2,), NdarrayCodec(), name="m")
    value = np.array([1.5, 2.5], np.float32)
    np.testing.assert_array_equal(field.codec.decode(field, field.codec.encode(field, value)), value)
    with pytest.raises(PetastormSchemaError, match="float32.*float64"):
        field.codec.encode(field, value.astype(np.float64))


def test_cells_in_an_immutable_arrow_buffer_are_copied_not_viewed():
    field = _field(np.float32, (4,), NdarrayCodec())
    cells = [bytes(field.codec.encode(field, np.full(4, i, np.float32))) for i in range(3)]
    offsets = np.cumsum([0] + [len(c) for c in cells]).astype(np.int32)
    data = pa.py_buffer(b"".join(cells))  # wraps a bytes object: immutable
    assert not data.is_mutable
    col = pa.Array.from_buffers(pa.binary(), 3, [None, pa.py_buffer(offsets.tobytes()), data])
    out = field.codec.decode_column(field, col)
    assert out.flags.writeable and out.flags.c_contiguous
    out[1, 0] = 9.0
    np.testing.assert_array_equal(field.codec.decode_column(field, col)[1], np.full(4, 1, np.float32))


def test_a_small_slice_of_cells_is_copied_so_that_it_does_not_pin_the_whole_buffer():
    field = _field(np.float32, (4,), NdarrayCodec())
    col = _column([field.codec.encode(field, np.full(4, i, np.float32)) for i in range(40)])
    part = field.codec.decode_column(field, col.slice(10, 5))  # a quarter of a row group (drop partitions)
    assert part.flags.c_contiguous  # a copy of the five cells
    np.testing.assert_array_equal(part[:, 0], np.arange(10, 15, dtype=np.float32))
    whole = field.codec.decode_column(field, col)
    assert not whole.flags.c_contiguous  # the whole column: a view, no copy


# --- validation errors lead with the original's words (recorded from 0.12.1's codec.encode) ------------------------

def test_scalar_codec_field_with_a_shape_refuses_a_value_with_the_originals_value_error():
    codec = ScalarCodec(T.LongType())
    field = _field(np.int64, (2,), codec, name="x")
    with pytest.raises(ValueError, match=r"^The shape field of unischema_field 'x' must be an empty tuple .*\(2,\)"):
        codec.encode(field, 5)
    with pytest.raises(TypeError, match="^Expected a scalar"):  # the original checks the value first
        codec.encode(field, np.array([1, 2]))


@pytest.mark.parametrize("codec_cls", [NdarrayCodec, CompressedNdarrayCodec])
def test_ndarray_of_the_wrong_shape_or_dtype_leads_with_the_originals_words(codec_cls):
    field = _field(np.float32, (4, 4), codec_cls(), name="m")
    with pytest.raises(ValueError, match=r"^Unexpected dimensions of m feature\. Expected \(4, 4\)\. Got \(3, 3\)"):
        field.codec.encode(field, np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"^Unexpected type of m feature\. Expected <class 'numpy\.float32'>\. "
                                         r"Got float64"):
        field.codec.encode(field, np.zeros((4, 4), np.float64))


def test_image_of_the_wrong_shape_or_dtype_leads_with_the_originals_words():
    field = _field(np.uint8, (4, 5, 3), CompressedImageCodec("png"), name="im")
    with pytest.raises(ValueError, match=r"^Unexpected dimensions of im feature, expected \(4, 5, 3\), got \(4, 6, 3\)"):
        field.codec.encode(field, np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(ValueError, match=r"^Unexpected type of im feature, expected <class 'numpy\.uint8'>, "
                                         r"got float32"):
        field.codec.encode(field, np.zeros((4, 5, 3), np.float32))


def test_fixed_shape_column_of_cells_of_another_shape_raises_naming_field_and_row():
    from petastorm.errors import PetastormDecodeError

    codec = NdarrayCodec()
    field = _field(np.float32, (4, 4), codec, name="m")
    small = _field(np.float32, (3, 3), codec, name="m")
    column = _column([codec.encode(small, np.zeros((3, 3), np.float32)) for _ in range(3)])
    with pytest.raises(PetastormDecodeError, match=r"'m', row 0 .*shape \(3, 3\)"):
        codec.decode_column(field, column)


@pytest.mark.parametrize("spark_type, numpy_type, text, expected", [
    (T.LongType(), np.int64, "12", 12), (T.IntegerType(), np.int32, " -3 ", -3), (T.DoubleType(), np.float64, "1.5", 1.5)])
def test_scalar_codec_encodes_numeric_strings_as_the_original(spark_type, numpy_type, text, expected):
    field = UnischemaField("n", numpy_type, (), ScalarCodec(spark_type), False)
    assert field.codec.encode(field, text) == expected


@pytest.mark.parametrize("spark_type, numpy_type, phrase", [
    (T.LongType(), np.int64, "invalid literal for int() with base 10: 'abc'"),
    (T.DoubleType(), np.float64, "could not convert string to float: 'abc'")])
def test_scalar_codec_refuses_a_non_numeric_string_leading_with_pythons_words(spark_type, numpy_type, phrase):
    field = UnischemaField("n", numpy_type, (), ScalarCodec(spark_type), False)
    with pytest.raises(ValueError) as info:
        field.codec.encode(field, "abc")
    assert isinstance(info.value, PetastormSchemaError)
    assert str(info.value).startswith(phrase) and "field 'n'" in str(info.value)
