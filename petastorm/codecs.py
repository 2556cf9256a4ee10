"""Codecs turn a field's value into a Parquet cell and back.

- :class:`ScalarCodec` - a native Parquet scalar column of a given Spark SQL type.
- :class:`NdarrayCodec` - an array as ``.npy`` bytes.
- :class:`CompressedNdarrayCodec` - an array as ``.npz`` (zip, deflate) bytes.
- :class:`CompressedImageCodec` - an image as PNG or JPEG bytes (OpenCV, Pillow as a fall-back).

Bytes are what the original library writes, and the pickled state of each codec has the original's
layout, so datasets move both ways. Besides the per-value ``encode``/``decode`` of the original, every
codec has :meth:`DataframeColumnCodec.decode_column`, which decodes a whole Arrow column at once: a
fixed-shape ``NdarrayCodec`` column becomes one ``(rows,) + shape`` array by parsing the ``.npy`` header
once and viewing the binary buffer, with no Python loop per cell.
"""
from __future__ import annotations

import math
import zipfile
from abc import ABC, abstractmethod
from decimal import Decimal
from io import BytesIO
from typing import Any

import numpy as np

from petastorm.batch_memory import cell_strides, cells_copy_view, cells_view, compact_copy
from petastorm.codec_checks import (  # re-exported: their home before
    FLOAT32_MAX,
    check_value_fits_field,
    decode_error,
    dtype_type,
    encode_native,
    misfit,
)
from petastorm.errors import PetastormDecodeError, PetastormSchemaError, PetastormTypeError, add_note
from petastorm.npy_format import array_to_npy_bytes, npy_bytes_to_array, parse_npy_header
from petastorm.spark_types import spark_type, spark_type_name, to_pyspark

__all__ = [
    "DataframeColumnCodec",
    "ScalarCodec",
    "NdarrayCodec",
    "CompressedNdarrayCodec",
    "CompressedImageCodec",
    "encode_native",
    "decode_native_column",
    "check_value_fits_field",
    "decode_error",
    "dtype_type",
    "binary_cells",
    "stack_or_object",
]


# --- column helpers shared by the codecs -----------------------------------------------------------------

def binary_cells(column: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    """Offsets (int32 for ``binary``/``string``, int64 for the large types; shape (rows + 1,)), data bytes
    (uint8 view) and the (single-chunk) Arrow array of a binary column. Views of the Arrow buffers: no copy,
    no ``pyarrow.compute``."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    typ = column.type
    if pa.types.is_binary(typ) or pa.types.is_string(typ):
        offset_type = np.int32
    elif pa.types.is_large_binary(typ) or pa.types.is_large_string(typ):
        offset_type = np.int64
    else:
        raise PetastormSchemaError(f"expected a binary column, got Arrow type {typ}")
    bufs = column.buffers()
    item = np.dtype(offset_type).itemsize
    if bufs[1] is None:  # an empty array may have no offsets buffer
        return np.zeros(len(column) + 1, np.int64), np.zeros(0, np.uint8), column
    offsets = np.frombuffer(bufs[1], dtype=offset_type, count=len(column) + 1, offset=column.offset * item)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data, column


def _object_column(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# --- the codecs -----------------------------------------------------------------------------------------

class DataframeColumnCodec(ABC):
    """Base class of codecs (the original's name)."""

    @abstractmethod
    def encode(self, unischema_field: Any, value: Any) -> Any:
        """Encode one value into a Parquet cell value."""

    @abstractmethod
    def decode(self, unischema_field: Any, value: Any) -> Any:
        """Decode one Parquet cell value."""

    def spark_dtype(self) -> Any:
        """Spark SQL type of the column (pyspark's class, or petastorm's stand-in without pyspark)."""
        return spark_type("BinaryType")

    def arrow_type(self, unischema_field: Any) -> Any:
        """Arrow type of the column this codec writes."""
        import pyarrow as pa

        return pa.binary()

    def decode_column(self, unischema_field: Any, column: Any) -> np.ndarray:
        """Decode a whole Arrow column.

        Returns
        -------
        numpy.ndarray
            Shape ``(rows,) + field.shape`` when every value has the same shape and none is null;
            otherwise an object array of shape ``(rows,)`` holding arrays (``None`` for nulls).
        """
        values = column.to_pylist()
        decoded = [None if v is None else self._decode_cell(unischema_field, i, v) for i, v in enumerate(values)]
        return stack_or_object(decoded)

    #: Whether :meth:`decode_column` checks each decoded array against the field's dtype and shape.
    _checks_decoded_arrays = False

    def _decode_cell(self, field: Any, row: int, value: Any) -> Any:
        """``decode`` of cell ``row``. For petastorm's codecs a failure is a :class:`PetastormDecodeError`
        naming the field and the row; a codec of the user's keeps its own exception, with a note."""
        try:
            out = self.decode(field, value)
        except PetastormDecodeError:
            raise
        except Exception as e:
            if type(self).__module__ != __name__:
                add_note(e, f"decoding field {field.name!r}, row {row} of the decoded column")
                raise
            raise decode_error(field, row, f"cannot decode the stored value: {e}") from e
        if self._checks_decoded_arrays and isinstance(out, np.ndarray):
            why = misfit(field, out.dtype, out.shape)
            if why:
                raise decode_error(field, row, why)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def stack_or_object(decoded: list) -> np.ndarray:
    """``np.stack`` of decoded values when all are arrays of one shape and dtype (shape ``(rows,) + shape``),
    else an object array of shape ``(rows,)`` holding them."""
    if decoded and all(isinstance(d, np.ndarray) for d in decoded):
        first = decoded[0]
        if all(d.shape == first.shape and d.dtype == first.dtype for d in decoded):
            return np.stack(decoded) if first.ndim else np.array(decoded)
    return _object_column(decoded)


def _parsed(convert: Any, value: Any, name: str, expected: str) -> Any:
    """``convert(value)`` as the original encodes numbers (``'12'`` is 12); a value it cannot convert is a
    ``PetastormSchemaError`` (a ``ValueError``) led by Python's own words, as the original's was."""
    try:
        return convert(value)
    except ValueError as e:
        raise PetastormSchemaError(f"{e}: field {name!r} expects {expected}, got {type(value).__name__}") from None


class ScalarCodec(DataframeColumnCodec):
    """A native Parquet scalar column of the given Spark SQL type.

    Parameters
    ----------
    spark_type : pyspark.sql.types.DataType
        For example ``LongType()``, ``StringType()``, ``DecimalType(10, 9)``.
    """

    def __init__(self, spark_type: Any) -> None:
        self._spark_type = spark_type

    def encode(self, unischema_field: Any, value: Any) -> Any:
        kind = spark_type_name(self._spark_type)
        name = unischema_field.name
        if isinstance(value, (np.ndarray, list, tuple, dict, set)) and getattr(value, "shape", None) != ():
            what = f"an array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            raise PetastormTypeError(
                f"Expected a scalar as a value for field '{name}'. Got a non-numpy type'{type(value)}': "
                f"field {name!r} expects a scalar ({kind}), got {what}")
        if unischema_field.shape:
            raise PetastormSchemaError(
                f"The shape field of unischema_field '{name}' must be an empty tuple (i.e. '()' to indicate a "
                f"scalar. However, the actual shape is {tuple(unischema_field.shape)}: a ScalarCodec field holds "
                f"one value per row; use NdarrayCodec for arrays")
        if kind in ("ByteType", "ShortType", "IntegerType", "LongType"):
            if isinstance(value, (float, np.floating)) and not float(value).is_integer():
                raise PetastormSchemaError(
                    f"field {unischema_field.name!r} expects an integer ({kind}), got {value!r}")
            return _parsed(int, value, name, f"an integer ({kind})")
        if kind in ("FloatType", "DoubleType"):
            number = _parsed(float, value, name, f"a float ({kind})")
            if kind == "FloatType" and math.isfinite(number) and abs(number) > FLOAT32_MAX:
                raise PetastormSchemaError(f"field {name!r}: value {value!r} does not fit the column type float32 "
                                           f"(FloatType; it would be stored as infinity): use DoubleType")
            return number
        if kind == "BooleanType":
            if isinstance(value, (str, bytes, np.str_, np.bytes_)):  # bool('false') is True
                raise PetastormSchemaError(f"field {name!r} expects a boolean (BooleanType), got the string "
                                           f"{value!r}: convert it first")
            return bool(value)
        if kind == "StringType":
            if not isinstance(value, str):
                raise PetastormSchemaError(
                    f"Expected a string value for field {unischema_field.name}. Got type {type(value)}")
            return str(value)
        if kind == "DecimalType":
            return value if isinstance(value, Decimal) else Decimal(str(value))
        if kind == "BinaryType":
            return bytes(value)
        return value

    def decode(self, unischema_field: Any, value: Any) -> Any:
        dtype = unischema_field.numpy_dtype
        if dtype is Decimal:
            return value if isinstance(value, Decimal) else Decimal(value)
        if isinstance(value, (list, np.ndarray)):
            return np.asarray(value, dtype=dtype)
        return dtype(value)

    def decode_column(self, unischema_field: Any, column: Any) -> np.ndarray:
        return decode_native_column(unischema_field, column)

    def spark_dtype(self) -> Any:
        """The Spark SQL type: pyspark's class when pyspark is installed (a schema loaded from metadata holds
        petastorm's stand-in, converted here), else the stand-in."""
        return to_pyspark(self._spark_type)

    def arrow_type(self, unischema_field: Any) -> Any:
        from petastorm.arrow_types import arrow_type_for_spark_type

        return arrow_type_for_spark_type(self._spark_type, unischema_field)

    def __repr__(self) -> str:
        return f"ScalarCodec({self._spark_type!r})"


class NdarrayCodec(DataframeColumnCodec):
    """An ndarray stored as ``.npy`` bytes (``numpy.save``)."""

    def encode(self, unischema_field: Any, value: Any) -> bytearray:
        return array_to_npy_bytes(check_value_fits_field(unischema_field, value))

    def decode(self, unischema_field: Any, value: Any) -> np.ndarray:
        return npy_bytes_to_array(value).copy()

    def decode_column(self, unischema_field: Any, column: Any) -> np.ndarray:
        offsets, data, column = binary_cells(column)
        n = len(offsets) - 1
        if n == 0:
            return _empty_fixed(unischema_field)
        lengths = np.diff(offsets)
        if column.null_count == 0 and (lengths == lengths[0]).all() and lengths[0] > 0:
            first = data[offsets[0]:offsets[1]]
            try:
                header = parse_npy_header(first)
            except PetastormSchemaError as e:
                raise decode_error(unischema_field, 0, f"cannot decode the stored value: {e}") from e
            if not header.fortran_order:
                cells = data[offsets[0]:offsets[-1]].reshape(n, int(lengths[0]))
                off = header.data_offset
                if (cells[:, :off] == first[:off]).all():  # every cell has the first one's header
                    why = misfit(unischema_field, header.dtype, header.shape)
                    if why:
                        raise decode_error(unischema_field, 0, f"{why} (and so are all the column's values)")
                    view = cells_view(column, int(offsets[0]) + off, n, int(lengths[0]), header)
                    if view is not None:
                        return view
                    view = cells_copy_view(data, int(offsets[0]) + off, n, int(lengths[0]), header)
                    if view is not None:
                        return view
                    return compact_copy(cells[:, off:], tuple(header.shape), header.dtype)
        valid = column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else None
        decoded = []
        for i in range(n):
            if valid is not None and not valid[i]:
                decoded.append(None)
                continue
            try:
                cell = npy_bytes_to_array(data[offsets[i]:offsets[i + 1]].data)
            except PetastormSchemaError as e:
                raise decode_error(unischema_field, i, f"cannot decode the stored value: {e}") from e
            why = misfit(unischema_field, cell.dtype, cell.shape)
            if why:
                raise decode_error(unischema_field, i, why)
            decoded.append(cell.copy())
        return stack_or_object(decoded)

    def decode_fixed_cells(self, unischema_field: Any, cells: Any) -> "np.ndarray | None":
        """The ``(n,) + shape`` array of equal-length npy values placed by
        :func:`petastorm.reader_impl.fixed_binary.read_fixed_binary`: a view of ``cells.buffer`` with rows
        ``cells.stride`` bytes apart where the dtype's alignment allows, else a compact copy. None when the
        values are not all the same C-order npy header followed by its data (:meth:`decode_column` then
        decodes, or reports, them).

        Raises
        ------
        PetastormDecodeError
            When the values are all of a dtype or shape the field does not allow (row 0 is named).
        """
        n, buf = cells.count, cells.buffer
        try:
            header = parse_npy_header(buf[cells.start:cells.start + cells.length])
        except PetastormSchemaError:  # not npy bytes: decode_column reports it, naming the field
            return None
        dtype, shape, off = np.dtype(header.dtype), tuple(header.shape), header.data_offset
        row_bytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if header.fortran_order or dtype.hasobject or not dtype.itemsize or off + row_bytes != cells.length:
            return None
        heads = np.ndarray((n, off), np.uint8, buffer=buf, offset=cells.start, strides=(cells.stride, 1))
        if not (heads == heads[0]).all():
            return None
        why = misfit(unischema_field, dtype, shape)  # once per column: every cell has this header
        if why:
            raise decode_error(unischema_field, 0, f"{why} (and so are all the column's values)")
        start = cells.start + off
        if not cells.stride % dtype.itemsize and not (buf.ctypes.data + start) % max(1, dtype.alignment):
            return np.ndarray((n,) + shape, dtype=dtype, buffer=buf, offset=start,
                              strides=cell_strides(cells.stride, shape, dtype))
        return compact_copy(np.ndarray((n, row_bytes), np.uint8, buffer=buf, offset=start, strides=(cells.stride, 1)),
                             shape, dtype)


def _empty_fixed(field: Any) -> np.ndarray:
    shape = tuple(field.shape) if all(d is not None for d in field.shape) else None
    if shape is None:
        return np.empty(0, dtype=object)
    return np.empty((0,) + shape, dtype=dtype_type(field.numpy_dtype))


class CompressedNdarrayCodec(DataframeColumnCodec):
    """An ndarray stored as ``.npz`` bytes (``numpy.savez_compressed`` with the key ``arr``)."""

    def encode(self, unischema_field: Any, value: Any) -> bytearray:
        value = check_value_fits_field(unischema_field, value)
        memfile = BytesIO()
        np.savez_compressed(memfile, arr=value)
        return bytearray(memfile.getbuffer())

    _checks_decoded_arrays = True

    def decode(self, unischema_field: Any, value: Any) -> np.ndarray:
        with zipfile.ZipFile(BytesIO(value)) as zf:
            try:
                npy = zf.read("arr.npy")
            except KeyError:
                raise PetastormSchemaError(
                    f"field {unischema_field.name!r}: .npz value has no 'arr' entry ({zf.namelist()})") from None
        return npy_bytes_to_array(npy).copy()


class CompressedImageCodec(DataframeColumnCodec):
    """An image stored as PNG or JPEG bytes.

    3-channel images are RGB in memory and BGR in the stored bytes' channel order as OpenCV writes them,
    exactly as the original library does. OpenCV is used when installed; Pillow otherwise.

    Parameters
    ----------
    image_codec : {'png', 'jpeg'}
    quality : int
        JPEG quality, 0..100 (ignored for PNG).
    """

    def __init__(self, image_codec: str = "png", quality: int = 80) -> None:
        codec = str(image_codec).lower().lstrip(".")
        if codec == "jpg":
            codec = "jpeg"
        if codec not in ("png", "jpeg"):
            raise PetastormSchemaError(f"image_codec must be 'png' or 'jpeg', got {image_codec!r}")
        if quality is not None and (isinstance(quality, (bool, np.bool_)) or not isinstance(quality, (int, np.integer))):
            raise PetastormSchemaError(f"CompressedImageCodec: quality must be an integer from 0 to 100, got "
                                       f"{quality!r}")
        self._image_codec = "." + codec
        self._quality = 95 if quality is None else int(quality)  # None: OpenCV's default, as the original uses

    @property
    def image_codec(self) -> str:
        """``'png'`` or ``'jpeg'``."""
        return self._image_codec[1:]

    def encode(self, unischema_field: Any, value: Any) -> bytearray:
        value = check_value_fits_field(unischema_field, value, image=True)
        if value.ndim not in (2, 3) or (value.ndim == 3 and value.shape[2] not in (1, 3, 4)):
            raise PetastormSchemaError(
                f"field {unischema_field.name!r}: an image must have shape (H, W) or (H, W, 1|3|4), "
                f"got {value.shape}")
        self._check_format_holds(unischema_field.name, value)
        from petastorm import image_io

        return bytearray(image_io.encode_image(value, self._image_codec, self._quality))

    def _check_format_holds(self, name: str, value: np.ndarray) -> None:
        """Refuse an image the format cannot store as is (it would be written altered, or unreadable as the
        field's dtype/shape): no pixel; PNG of other than uint8/uint16; JPEG of other than uint8 or with 4
        channels."""
        if value.size == 0:
            raise PetastormSchemaError(f"field {name!r}: an image needs at least one pixel, got shape {value.shape}")
        fmt = self.image_codec
        dtypes = (np.uint8, np.uint16) if fmt == "png" else (np.uint8,)
        if value.dtype not in dtypes:
            raise PetastormSchemaError(
                f"field {name!r}: {fmt.upper()} stores {' or '.join(np.dtype(d).name for d in dtypes)} pixels, "
                f"got {value.dtype} (use NdarrayCodec or CompressedNdarrayCodec for other dtypes)")
        if fmt == "jpeg" and value.ndim == 3 and value.shape[2] == 4:
            raise PetastormSchemaError(f"field {name!r}: JPEG stores 1 or 3 channels, got shape {value.shape} "
                                       f"(use CompressedImageCodec('png') for 4 channels)")

    def decode(self, unischema_field: Any, value: Any) -> np.ndarray:
        from petastorm import image_io

        return image_io.decode_image(value)

    def decode_column(self, unischema_field: Any, column: Any) -> np.ndarray:
        from petastorm import image_io

        offsets, data, column = binary_cells(column)
        return image_io.decode_image_cells(unischema_field, offsets, data, column)

    def __repr__(self) -> str:
        return f"CompressedImageCodec({self.image_codec!r}, {self._quality})"


# --- fields with no codec (native Parquet columns) ----------------------------------------------------------

def decode_native_column(field: Any, column: Any) -> np.ndarray:
    """Arrow column of a native Parquet type -> numpy array of shape ``(rows,)`` (object for lists,
    strings, decimals and columns with nulls)."""
    from petastorm.arrow_types import arrow_column_to_numpy

    return arrow_column_to_numpy(column, field)
