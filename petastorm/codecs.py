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

import ctypes
import os
import threading
import weakref
import zipfile
from abc import ABC, abstractmethod
from decimal import Decimal
from io import BytesIO
from typing import Any

import numpy as np

from petastorm.errors import PetastormSchemaError
from petastorm.npy_format import array_to_npy_bytes, npy_bytes_to_array, parse_npy_header
from petastorm.spark_types import spark_type, spark_type_name, to_pyspark

__all__ = [
    "DataframeColumnCodec",
    "ScalarCodec",
    "NdarrayCodec",
    "CompressedNdarrayCodec",
    "CompressedImageCodec",
    "spark_type_for_numpy",
    "encode_native",
    "decode_native_column",
    "check_value_fits_field",
    "set_batch_allocator",
]


# --- checks shared by the codecs ---------------------------------------------------------------------------

def _dtype_type(numpy_dtype: Any) -> Any:
    """The numpy scalar type of a field's dtype (``np.float32`` for ``np.dtype('<f4')`` too)."""
    if numpy_dtype in (Decimal, str, bytes):
        return {Decimal: Decimal, str: np.str_, bytes: np.bytes_}[numpy_dtype]
    try:
        return np.dtype(numpy_dtype).type
    except TypeError:
        return numpy_dtype


def _is_compliant_shape(actual: tuple, expected: tuple) -> bool:
    if len(actual) != len(expected):
        return False
    return all(e is None or a == e for a, e in zip(actual, expected))


def check_value_fits_field(field: Any, value: Any) -> np.ndarray:
    """Check that an array value has the field's dtype and shape; return it as an ndarray.

    Raises
    ------
    PetastormSchemaError
        Naming the field, the expected and the actual dtype and shape.
    """
    if not isinstance(value, np.ndarray):
        raise PetastormSchemaError(
            f"field {field.name!r} expects a numpy array of {np.dtype(_dtype_type(field.numpy_dtype)).name} "
            f"with shape {field.shape}, got {type(value).__name__}")
    expected_type = _dtype_type(field.numpy_dtype)
    if value.dtype.type is not expected_type:
        raise PetastormSchemaError(
            f"field {field.name!r} expects {np.dtype(expected_type).name} of shape {field.shape}, got "
            f"{value.dtype.name} of shape {value.shape}")
    if not _is_compliant_shape(value.shape, tuple(field.shape)):
        raise PetastormSchemaError(
            f"field {field.name!r} expects {value.dtype.name} of shape {tuple(field.shape)}, got "
            f"{value.dtype.name} of shape {value.shape}")
    return value


def _binary_cells(column: Any) -> tuple[np.ndarray, np.ndarray, Any]:
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


class _BatchMemory:
    """Memory of decoded batch arrays, recycled once every view of a batch (the rows handed out) is gone.

    Batches are allocated in the pool's worker threads and freed in the consumer's. Through ``np.empty``
    (malloc), glibc's per-thread arenas and sliding mmap threshold kept ~90 MB more mapped over a (64, 64)
    float32 pass than the batches in flight; a fresh ``mmap`` per batch releases it but pays ~10 ms of page
    faults per 8 MB batch. Here a batch's array is a view of a ``bytearray`` slab (size rounded up to
    ``granule``) through a ctypes lease; when the lease dies (no view of the batch is left) the slab goes back
    to a short free list and the next batch of that size reuses it (no page faults). Free slabs are at most
    ``keep`` and ``max_free_bytes`` in all (the oldest are dropped). Arrays are writeable and C-contiguous.
    """

    def __init__(self, keep: int = 4, max_free_bytes: int = 256 << 20, min_bytes: int = 1 << 20,
                 granule: int = 1 << 20) -> None:
        self._keep = keep
        self._max_free_bytes = max_free_bytes
        #: Smaller arrays are plain ``np.empty`` (and, in a process worker, are not given shared memory).
        self.min_bytes = min_bytes
        self._granule = granule
        self._free: list = []  # slabs, most recently freed last
        self._lock = threading.Lock()

    def empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        """``np.empty(shape, dtype)`` backed by a recycled slab (small or object arrays: plain ``np.empty``)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * dtype.itemsize
        if nbytes < self.min_bytes or dtype.hasobject:
            return np.empty(shape, dtype)
        if _ALLOCATOR is not None:  # a process-pool worker: decode straight into shared memory
            out = _ALLOCATOR(shape, dtype)
            if out is not None:
                return out
        size = -(-nbytes // self._granule) * self._granule
        slab = None
        with self._lock:
            for i in range(len(self._free) - 1, -1, -1):
                if len(self._free[i]) == size:
                    slab = self._free.pop(i)
                    break
        if slab is None:
            slab = bytearray(size)
        lease = (ctypes.c_char * size).from_buffer(slab)
        weakref.finalize(lease, self._give_back, slab).atexit = False
        return np.frombuffer(lease, dtype=dtype, count=count).reshape(shape)

    def _give_back(self, slab: bytearray) -> None:
        with self._lock:
            self._free.append(slab)
            total = sum(len(s) for s in self._free)
            while self._free and (len(self._free) > self._keep or total > self._max_free_bytes):
                total -= len(self._free.pop(0))


_BATCH_MEMORY = _BatchMemory()
_ALLOCATOR: Any = None


def set_batch_allocator(fn: Any) -> None:
    """Let ``fn(shape, dtype) -> ndarray or None`` allocate the decoded batches (>= 1 MiB) of this process.

    A process-pool worker installs its shared-memory allocator here, so fixed-shape columns are decoded
    straight into the memory that crosses to the reader's process (no copy). ``None`` restores the default.
    """
    global _ALLOCATOR
    _ALLOCATOR = fn


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
        decoded = [None if v is None else self.decode(unischema_field, v) for v in values]
        return _stack_or_object(decoded)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _stack_or_object(decoded: list) -> np.ndarray:
    if decoded and all(isinstance(d, np.ndarray) for d in decoded):
        first = decoded[0]
        if all(d.shape == first.shape and d.dtype == first.dtype for d in decoded):
            return np.stack(decoded) if first.ndim else np.array(decoded)
    return _object_column(decoded)


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
        if isinstance(value, np.ndarray) and value.shape != ():
            raise PetastormSchemaError(
                f"field {unischema_field.name!r} expects a scalar ({kind}), got an array of shape {value.shape}")
        if kind in ("ByteType", "ShortType", "IntegerType", "LongType"):
            if isinstance(value, (float, np.floating)) and not float(value).is_integer():
                raise PetastormSchemaError(
                    f"field {unischema_field.name!r} expects an integer ({kind}), got {value!r}")
            if isinstance(value, (str, bytes)):
                raise PetastormSchemaError(
                    f"field {unischema_field.name!r} expects an integer ({kind}), got {type(value).__name__}")
            return int(value)
        if kind in ("FloatType", "DoubleType"):
            if isinstance(value, (str, bytes)):
                raise PetastormSchemaError(
                    f"field {unischema_field.name!r} expects a float ({kind}), got {type(value).__name__}")
            return float(value)
        if kind == "BooleanType":
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
        offsets, data, column = _binary_cells(column)
        n = len(offsets) - 1
        if n == 0:
            return _empty_fixed(unischema_field)
        lengths = np.diff(offsets)
        if column.null_count == 0 and (lengths == lengths[0]).all() and lengths[0] > 0:
            first = data[offsets[0]:offsets[1]]
            header = parse_npy_header(first)
            if not header.fortran_order:
                cells = data[offsets[0]:offsets[-1]].reshape(n, int(lengths[0]))
                off = header.data_offset
                if (cells[:, :off] == first[:off]).all():
                    view = _cells_view(column, int(offsets[0]) + off, n, int(lengths[0]), header)
                    if view is not None:
                        return view
                    view = _cells_copy_view(data, int(offsets[0]) + off, n, int(lengths[0]), header)
                    if view is not None:
                        return view
                    return _compact_copy(cells[:, off:], tuple(header.shape), header.dtype)
        valid = column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else None
        decoded = []
        for i in range(n):
            if valid is not None and not valid[i]:
                decoded.append(None)
            else:
                decoded.append(npy_bytes_to_array(data[offsets[i]:offsets[i + 1]].data).copy())
        return _stack_or_object(decoded)

    def decode_fixed_cells(self, unischema_field: Any, cells: Any) -> "np.ndarray | None":
        """The ``(n,) + shape`` array of equal-length npy values placed by
        :func:`petastorm.reader_impl.fixed_binary.read_fixed_binary`: a view of ``cells.buffer`` with rows
        ``cells.stride`` bytes apart where the dtype's alignment allows, else a compact copy. None when the
        values are not all the same C-order npy header followed by its data (:meth:`decode_column` then
        decodes, or reports, them)."""
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
        start = cells.start + off
        if not cells.stride % dtype.itemsize and not (buf.ctypes.data + start) % max(1, dtype.alignment):
            return np.ndarray((n,) + shape, dtype=dtype, buffer=buf, offset=start,
                              strides=_cell_strides(cells.stride, shape, dtype))
        return _compact_copy(np.ndarray((n, row_bytes), np.uint8, buffer=buf, offset=start, strides=(cells.stride, 1)),
                             shape, dtype)


_LENT_BUFFERS: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()
_LENT_LOCK = threading.Lock()


def _locks_after_fork() -> None:
    """In a forked child, fresh locks: another thread of the parent may have held them at the fork."""
    global _LENT_LOCK
    _LENT_LOCK = threading.Lock()
    _BATCH_MEMORY._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_locks_after_fork)


def _cells_view(column: Any, start: int, n: int, stride: int, header: Any) -> "np.ndarray | None":
    """The ``(n,) + shape`` array of fixed-size npy cells as a writable view of the Arrow data buffer: each
    row is a C-contiguous array inside its cell, rows ``stride`` bytes apart (no copy). The view keeps the
    buffer alive. Writing into rows is safe: cells do not overlap, the reader decodes each column of a row
    group it read once, and a buffer is lent to one decoded batch at a time (decoding the same column again
    while that batch lives copies it, with whatever was written into it).

    None where a copy is wanted: in a process-pool worker (the batch allocator puts the copy straight into
    shared memory), for an immutable buffer, for a slice of less than half the buffer (the view would keep
    all of it alive), or when cells are not aligned for the dtype or not a whole number of elements apart.
    """
    if _ALLOCATOR is not None:
        return None
    dtype = np.dtype(header.dtype)
    buf = column.buffers()[2]
    if (buf is None or not buf.is_mutable or dtype.hasobject or (buf.address + start) % max(1, dtype.alignment)
            or stride % dtype.itemsize  # torch.from_numpy wants strides in whole elements
            or 2 * n * stride < buf.size):  # a slice (drop partitions): a view would pin the whole buffer
        return None
    with _LENT_LOCK:  # a buffer already lent to live views (the same column decoded again): copy instead
        if _LENT_BUFFERS.get(buf.address) is not None:
            return None
        exporter = (ctypes.c_char * buf.size).from_address(buf.address)
        exporter._arrow_buffer = buf  # keeps the Arrow memory alive as long as any row views it
        _LENT_BUFFERS[buf.address] = exporter
    flat = np.frombuffer(exporter, dtype=np.uint8)
    shape = tuple(header.shape)
    first = flat[start:start + (n - 1) * stride + dtype.itemsize * int(np.prod(shape, dtype=np.int64))]
    return np.ndarray((n,) + shape, dtype=dtype, buffer=first, offset=0, strides=_cell_strides(stride, shape, dtype))


def _compact_copy(rows: np.ndarray, shape: tuple, dtype: Any) -> np.ndarray:
    """The ``(n,) + shape`` array of ``dtype`` whose rows are the bytes of ``rows`` (uint8, ``(n, row bytes)``,
    any strides), copied into a C-contiguous batch array."""
    out = _BATCH_MEMORY.empty((len(rows),) + tuple(shape), dtype)
    np.copyto(out.view(np.uint8).reshape(rows.shape), rows)
    return out


def _cell_strides(stride: int, shape: tuple, dtype: np.dtype) -> tuple:
    """Strides of ``(n,) + shape`` cells ``stride`` bytes apart, each a C-contiguous ``shape`` array."""
    inner = [dtype.itemsize] * (len(shape) + 1)
    for i in range(len(shape) - 1, 0, -1):
        inner[i - 1] = inner[i] * shape[i]
    return (stride,) + tuple(inner[:len(shape)])


def _cells_copy_view(data: np.ndarray, start: int, n: int, stride: int, header: Any) -> "np.ndarray | None":
    """In a process-pool worker, for a batch of 1 MiB or more: the cells' whole span copied at once (one
    ``memcpy``, the npy headers between the cells included: ~1% more bytes than the arrays) into the shared
    memory of the batch allocator, and the ``(n,) + shape`` array viewed there with rows ``stride`` bytes
    apart, as :func:`_cells_view` does over the Arrow buffer in threads. The transport sends the span and
    rebuilds the same view in the reader's process. None elsewhere, or when the layout does not allow a
    view (alignment, a stride that is not a whole number of elements)."""
    if _ALLOCATOR is None:
        return None
    dtype = np.dtype(header.dtype)
    shape = tuple(header.shape)
    row_bytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if dtype.hasobject or stride % dtype.itemsize:
        return None
    span = (n - 1) * stride + row_bytes
    if span < _BATCH_MEMORY.min_bytes:  # small batches: a compact copy (in band, or packed with others)
        return None
    # the copy keeps the source's position modulo 64 bytes, so an aligned cell stays aligned
    lead = (data.ctypes.data + start) % 64
    if lead % max(1, dtype.alignment):
        return None
    raw = _ALLOCATOR((lead + span,), np.uint8)
    if raw is None:
        return None
    np.copyto(raw[lead:], data[start:start + span])
    return np.ndarray((n,) + shape, dtype=dtype, buffer=raw, offset=lead, strides=_cell_strides(stride, shape, dtype))


def _empty_fixed(field: Any) -> np.ndarray:
    shape = tuple(field.shape) if all(d is not None for d in field.shape) else None
    if shape is None:
        return np.empty(0, dtype=object)
    return np.empty((0,) + shape, dtype=_dtype_type(field.numpy_dtype))


class CompressedNdarrayCodec(DataframeColumnCodec):
    """An ndarray stored as ``.npz`` bytes (``numpy.savez_compressed`` with the key ``arr``)."""

    def encode(self, unischema_field: Any, value: Any) -> bytearray:
        value = check_value_fits_field(unischema_field, value)
        memfile = BytesIO()
        np.savez_compressed(memfile, arr=value)
        return bytearray(memfile.getbuffer())

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
        self._image_codec = "." + codec
        self._quality = quality

    @property
    def image_codec(self) -> str:
        """``'png'`` or ``'jpeg'``."""
        return self._image_codec[1:]

    def encode(self, unischema_field: Any, value: Any) -> bytearray:
        value = check_value_fits_field(unischema_field, value)
        if value.ndim not in (2, 3) or (value.ndim == 3 and value.shape[2] not in (1, 3, 4)):
            raise PetastormSchemaError(
                f"field {unischema_field.name!r}: an image must have shape (H, W) or (H, W, 1|3|4), "
                f"got {value.shape}")
        from petastorm import image_io

        return bytearray(image_io.encode_image(value, self._image_codec, self._quality))

    def decode(self, unischema_field: Any, value: Any) -> np.ndarray:
        from petastorm import image_io

        return image_io.decode_image(value)

    def decode_column(self, unischema_field: Any, column: Any) -> np.ndarray:
        from petastorm import image_io

        offsets, data, column = _binary_cells(column)
        return image_io.decode_image_cells(unischema_field, offsets, data, column)

    def __repr__(self) -> str:
        return f"CompressedImageCodec({self.image_codec!r}, {self._quality})"


# --- fields with no codec (native Parquet columns) ----------------------------------------------------------

def spark_type_for_numpy(numpy_dtype: Any, shape: tuple = (), field_name: str = "?") -> Any:
    """Spark SQL type that stores values of ``numpy_dtype`` (an ``ArrayType`` when ``shape`` is 1-D)."""
    t = _dtype_type(numpy_dtype)
    table = {
        np.int8: "ByteType", np.uint8: "ShortType", np.int16: "ShortType", np.uint16: "IntegerType",
        np.int32: "IntegerType", np.uint32: "LongType", np.int64: "LongType", np.float32: "FloatType",
        np.float64: "DoubleType", np.bool_: "BooleanType", np.str_: "StringType", np.bytes_: "BinaryType",
        np.datetime64: "TimestampType",
    }
    if t is Decimal:
        base = spark_type("DecimalType", 38, 18)
    elif t in table:
        base = spark_type(table[t])
    else:
        raise PetastormSchemaError(f"field {field_name!r}: numpy type {numpy_dtype} has no Spark SQL type")
    if shape == () or shape is None:
        return base
    if len(shape) == 1:
        return spark_type("ArrayType", base)
    raise PetastormSchemaError(
        f"field {field_name!r}: a field with no codec must be a scalar or 1-D, got shape {shape}; "
        f"use NdarrayCodec for arrays")


def encode_native(field: Any, value: Any) -> Any:
    """Encode a value of a field with no codec into a native Parquet value (scalar or list)."""
    if field.shape in ((), None):
        if isinstance(value, np.ndarray) and value.shape != ():
            raise PetastormSchemaError(f"field {field.name!r} expects a scalar, got an array of shape {value.shape}")
        if isinstance(value, np.generic):
            return value.item()
        return value
    arr = check_value_fits_field(field, np.asarray(value) if not isinstance(value, np.ndarray) else value)
    return arr.tolist()


def decode_native_column(field: Any, column: Any) -> np.ndarray:
    """Arrow column of a native Parquet type -> numpy array of shape ``(rows,)`` (object for lists,
    strings, decimals and columns with nulls)."""
    from petastorm.arrow_types import arrow_column_to_numpy

    return arrow_column_to_numpy(column, field)
