"""numpy column batches -> torch tensors on a device, run on the loaders' prefetch thread.

:class:`TensorConverter` is the ``convert`` of a :class:`~petastorm.adapters.BatchPipeline`: every column
becomes a tensor (``torch.from_numpy``, no copy when the array is writable and contiguous) after the
original's type promotions (:mod:`~petastorm.pytorch_impl.dtypes`), then the user's ``transform_fn`` of
tensors (if any), then ``pin_memory()`` and ``.to(device, non_blocking=True)``. On CUDA the copy is issued
on a side stream of the prefetch thread; :meth:`TensorConverter.ready` makes the consumer's stream wait
for it, so the training step never waits on batching and never reads a batch before it has arrived.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Optional

import numpy as np

from petastorm.adapters.nulls import nullable_numbers_as_nan
from petastorm.errors import (
    PetastormArgumentError,
    PetastormBatchShapeError,
    PetastormTypeError,
    PetastormValueTypeError,
)
from petastorm.pytorch_impl.dtypes import (
    ARRAY_PROMOTIONS,
    is_text_or_object_dtype,
    nullable_error,
    string_array_error,
)

__all__ = ["resolve_device", "column_to_tensor", "numeric_to_tensor", "string_column_error", "TensorConverter",
           "AS_IS_DTYPES",
           "block_to_tensors", "NULLS_HINT", "STRINGS_HINT"]


def resolve_device(device: Any) -> Any:
    """``device`` as a ``torch.device`` (None stays None: tensors stay on the CPU).

    Parameters
    ----------
    device : None, str (``'cpu'``, ``'cuda'``, ``'cuda:1'``, ...), int (a CUDA index) or torch.device

    Raises
    ------
    PetastormArgumentError
        (a ``ValueError``) for a string torch does not know, another type, or a CUDA device when CUDA is
        not available (a CPU-only torch build or no GPU) or the index is out of range.

    Notes
    -----
    ``'cuda'`` (no index) is the current CUDA device of the calling thread (``torch.cuda.set_device``) at this
    call, and the result carries that index: the batches are copied by the prefetch thread, and CUDA's current
    device is per thread (device 0 in a new thread), as ``torch.utils.data.DataLoader``'s pin-memory thread
    also handles (it calls ``torch.cuda.set_device`` with the main thread's device).
    """
    import torch

    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise PetastormArgumentError(f"device must be None, a string such as 'cpu' or 'cuda', or a torch.device, "
                                     f"got {device!r} ({type(device).__name__})")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise PetastormArgumentError(f"device={device!r} is not a device torch knows: {e}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch is a CPU-only build" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise PetastormArgumentError(
                f"device={device!r} but CUDA is not available ({build}; torch.cuda.is_available() is False). "
                f"Use device='cpu' or None, or install a CUDA build of torch on a machine with a GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PetastormArgumentError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s)")
        if dev.index is None:  # the caller's current device, not the prefetch thread's (see Notes)
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type == "meta":
        raise PetastormArgumentError(f"device={device!r}: meta tensors hold no data; use 'cpu', 'cuda' or another "
                                     f"accelerator")
    elif dev.type != "cpu":
        try:  # 'mps', 'xpu', 'hpu', 'xla'...: torch's own error now, not at the first batch on the prefetch thread
            torch.empty(0).to(dev)
        except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, AssertionError or ImportError here
            raise PetastormArgumentError(f"device={device!r} cannot hold tensors in this process "
                                         f"({type(e).__name__}: {e})") from None
    return dev


#: What to do about a field no tensor can hold (after the original's string/object message).
STRINGS_HINT = ("BatchedDataLoader makes tensors of whole columns: leave the field out (schema_fields), turn it "
                "into numbers with a TransformSpec or transform_fn, or use DataLoader, which keeps str and Decimal "
                "values as lists")
_HINT = STRINGS_HINT


#: What to do about a None in a make_reader field (after the original's nullable message).
NULLS_HINT = ("BatchedDataLoader makes tensors of whole columns: fill the nulls with a TransformSpec or leave the "
              "field out (schema_fields)")

#: dtypes that become tensors as they are (no promotion, no check)
AS_IS_DTYPES = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8,
                                        np.uint8, np.complex64, np.complex128))
_AS_IS = AS_IS_DTYPES


def string_column_error(name: str) -> PetastormValueTypeError:
    """The error for field ``name`` whose values no tensor can hold (strings, bytes, Decimal...), with what to do."""
    # a TypeError (the original's message, over make_batch_reader) and a ValueError (over make_reader, the
    # original's BatchedDataLoader and InMemBatchedDataLoader let torch fail with "too many dimensions 'str'")
    return PetastormValueTypeError(f"{string_array_error(name)} {_HINT}")


def _numeric_object_column(name: str, col: np.ndarray, row_values: bool) -> np.ndarray:
    """A numeric array from an object column, as the original treats them (recorded from 0.12.1).

    - ``None`` among numbers: a ``make_batch_reader`` column becomes floats with NaN for the nulls (the
      original read such columns through pandas); from ``make_reader`` rows it is the original's "Pytorch does
      not support nullable fields" ``TypeError``.
    - numbers (or equally shaped arrays) of Python/numpy types: one numeric array.
    - anything else (str, bytes, Decimal, ragged arrays): the original's ``TypeError`` naming the field.
    """
    values = col.ravel().tolist() if col.ndim == 1 else None
    if values is None:
        raise string_column_error(name)
    if any(v is None for v in values):
        present = [v for v in values if v is not None]
        # numbers with nulls: NaN, as the original; a batch of nulls only (of an array field: NaN scalars would
        # give it the wrong shape) or of arrays with nulls: the nullable TypeError
        out = None if row_values or not present else nullable_numbers_as_nan(col)
        if out is None:
            if row_values or not present or isinstance(present[0], np.ndarray):
                raise PetastormTypeError(f"{nullable_error(name)}. {NULLS_HINT}")
            raise string_column_error(name)
        return out
    if values and all(isinstance(v, np.ndarray) for v in values):
        try:
            stacked = np.stack(values)
        except ValueError:
            shapes = sorted({v.shape for v in values})[:4]
            # a TypeError and the original's RuntimeError (recorded from 0.12.1: torch's "Sizes of tensors must
            # match"), as DataLoader's error for the same cells
            raise PetastormBatchShapeError(f"field {name!r} has cells of different shapes (e.g. {shapes}): they "
                                           f"cannot form one tensor. {_HINT}") from None
    else:
        try:
            stacked = np.asarray(values)
        except ValueError:
            raise string_column_error(name) from None
    if is_text_or_object_dtype(stacked.dtype):
        raise string_column_error(name)
    return stacked


def column_to_tensor(name: str, col: np.ndarray, row_values: bool = False) -> Any:
    """One numpy column as a torch tensor, with the original's promotions.

    Parameters
    ----------
    name : str
        Field name (for error messages).
    col : numpy.ndarray, shape (rows, ...)
    row_values : bool
        The column was gathered from ``make_reader`` rows: scalar columns (``ndim == 1``) get only the
        original's scalar promotion (``bool -> uint8``; ``uint16``/``uint32`` kept), array columns the
        array promotions (``bool -> uint8``, ``uint16 -> int32``, ``uint32 -> int64``), as the original's
        ``BatchedDataLoader`` gives them (recorded from 0.12.1).

    Raises
    ------
    PetastormTypeError
        (a ``TypeError``) for string, bytes, Decimal or other object columns, naming the field (the
        original's message, with what to do), ``None`` in a ``make_reader`` field (the original's nullable
        message), and dtypes torch has no tensor for. Object columns of numbers (``None`` included, from
        ``make_batch_reader``: NaN) or of equally shaped arrays become numeric tensors.
    """
    import torch

    if col.dtype in _AS_IS and col.flags.writeable and col.flags.c_contiguous:
        return torch.from_numpy(col)  # the common case, no checks needed
    if col.dtype.kind == "O":
        col = _numeric_object_column(name, col, row_values)
    if is_text_or_object_dtype(col.dtype):
        raise string_column_error(name)
    if row_values and col.ndim == 1:
        target = np.dtype(np.uint8) if col.dtype == np.bool_ else None
    else:
        target = ARRAY_PROMOTIONS.get(col.dtype)
    return numeric_to_tensor(name, col, target, "convert it with a TransformSpec or leave it out with schema_fields")


def numeric_to_tensor(name: str, col: np.ndarray, target: Optional[np.dtype], hint: str) -> Any:
    """A numeric column as a tensor that owns writable memory: cast to ``target`` (a promotion) when given,
    else copied if read-only or strided (reader arrays may be read-only Arrow buffers), else shared.

    Raises
    ------
    PetastormTypeError
        (a ``TypeError``) for a dtype torch has no tensor for (``datetime64``...), naming the field; ``hint``
        says what to do about it.
    """
    import torch

    if not col.dtype.isnative:  # a big-endian field ('>f4', as FITS arrays are): torch takes native order only
        col = col.astype(col.dtype.newbyteorder("="))
        target = target if target is not None else ARRAY_PROMOTIONS.get(col.dtype)
    if target is not None:
        col = col.astype(target)
    elif not col.flags.writeable or not col.flags.c_contiguous:
        col = np.array(col)
    try:
        return torch.from_numpy(col)
    except TypeError as e:
        raise PetastormTypeError(f"field {name!r}: torch has no tensor type for numpy {col.dtype} ({e}); "
                                 f"{hint}") from None


def block_to_tensors(columns: Dict[str, np.ndarray], k: int, convert_column: Callable,
                     promote: Callable) -> list:
    """``k`` batches of tensors from a block of ``k`` equal batches: ``[{name: tensor of rows i*bs..}]``.

    A column of a dtype kept as it is, or promoted (``promote(col) -> numpy dtype or None``), becomes one
    tensor (``torch.from_numpy``; one ``astype`` for a promotion, one copy for a read-only or strided column)
    viewed as ``(k, bs, ...)`` and ``unbind``-ed into ``k`` views, cheaper than a slice and a ``from_numpy``
    per batch and column. Other columns (objects, strings) go through
    ``convert_column(name, rows)`` batch by batch. The batches are what converting each row range alone
    gives (values, dtypes, writable memory).
    """
    import torch

    from_numpy, as_is = torch.from_numpy, AS_IS_DTYPES
    per_column = []
    for name, col in columns.items():
        flags = col.flags
        if col.dtype in as_is and flags.writeable and flags.c_contiguous:  # the common case first
            # numpy's reshape (a view) is cheaper than torch's view; unbind makes the k tensors in one call
            per_column.append(from_numpy(col.reshape(k, -1) if col.ndim == 1
                                         else col.reshape((k, len(col) // k) + col.shape[1:])).unbind(0))
            continue
        bs = len(col) // k
        if col.dtype.kind in "OUSMm":
            per_column.append([convert_column(name, col[i * bs:(i + 1) * bs]) for i in range(k)])
            continue
        target = None if col.dtype in as_is else promote(col)
        if target is not None:
            col = col.astype(target)
        elif col.dtype not in as_is:
            per_column.append([convert_column(name, col[i * bs:(i + 1) * bs]) for i in range(k)])
            continue
        else:
            col = np.array(col)  # tensors must own writable memory (as the batch-by-batch path)
        per_column.append(from_numpy(col).view((k, bs) + col.shape[1:]).unbind(0))
    names = list(columns)
    return [dict(zip(names, tensors)) for tensors in zip(*per_column)]


def _map_tensors(obj: Any, fn: Callable) -> Any:
    """``fn`` applied to every tensor in a dict / list / tuple (nested) or to a tensor."""
    import torch

    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [_map_tensors(v, fn) for v in obj]
        return type(obj)(out) if not hasattr(obj, "_fields") else type(obj)(*out)
    return obj


class TensorConverter:
    """numpy column batch -> dict of tensors (-> ``batch_transform``) -> pinned -> on ``device``.

    Parameters
    ----------
    device : torch.device or None
        From :func:`resolve_device`; None keeps tensors on the CPU.
    pin_memory : bool
        Pin the CPU tensors (page-locked) before the copy to a CUDA device. Without an accelerator it is
        ignored with a warning, as ``torch.utils.data.DataLoader`` does.
    row_values : bool
        Columns gathered from ``make_reader`` rows (see :func:`column_to_tensor`).
    batch_transform : callable, optional
        Run on the dict of CPU tensors before pinning and the device copy.
    """

    def __init__(self, device: Any = None, pin_memory: bool = False, row_values: bool = False,
                 batch_transform: Optional[Callable] = None) -> None:
        import torch

        self.device = device
        self.row_values = row_values
        self.batch_transform = batch_transform
        self.pin_memory = bool(pin_memory)
        if self.pin_memory and not torch.cuda.is_available():
            warnings.warn("pin_memory=True but no accelerator is available: memory is not pinned", UserWarning,
                          stacklevel=3)
            self.pin_memory = False
        self._cuda = device is not None and device.type == "cuda"
        self._from_numpy = torch.from_numpy
        self._stream: Any = None
        # a block of k batches is converted at once when the batches are plain CPU tensors
        plain = batch_transform is None and not self.pin_memory and (device is None or device.type == "cpu")
        self.convert_block: Optional[Callable] = self._convert_block if plain else None

    def _promote(self, col: np.ndarray) -> Any:
        if self.row_values and col.ndim == 1:
            return np.dtype(np.uint8) if col.dtype == np.bool_ else None
        return ARRAY_PROMOTIONS.get(col.dtype)

    def _convert_block(self, columns: Dict[str, np.ndarray], k: int) -> list:
        """``k`` equal batches at once (see :func:`block_to_tensors`); only on the plain CPU path."""
        row_values = self.row_values
        return block_to_tensors(columns, k, lambda name, col: column_to_tensor(name, col, row_values), self._promote)

    def __call__(self, columns: Dict[str, np.ndarray]) -> Any:
        from_numpy, as_is, row_values = self._from_numpy, AS_IS_DTYPES, self.row_values
        out: Any = {}
        for name, col in columns.items():
            flags = col.flags
            # the common case inline (no call, no import per column): a third cheaper per column
            if col.dtype in as_is and flags.writeable and flags.c_contiguous:
                out[name] = from_numpy(col)
            else:
                out[name] = column_to_tensor(name, col, row_values)
        if self.batch_transform is not None:
            out = self.batch_transform(out)
        if self.pin_memory:
            out = _map_tensors(out, lambda t: t.pin_memory() if t.device.type == "cpu" else t)
        if self.device is None or self.device.type == "cpu":
            if self.device is None or self.batch_transform is None:  # the columns are CPU tensors already
                return out
            return _map_tensors(out, lambda t: t.to(self.device))
        if not self._cuda:
            return _map_tensors(out, lambda t: t.to(self.device, non_blocking=self.pin_memory))
        import torch

        if self._stream is None:
            self._stream = torch.cuda.Stream(device=self.device)
        with torch.cuda.stream(self._stream):
            out = _map_tensors(out, lambda t: t.to(self.device, non_blocking=True))
            event = torch.cuda.Event()
            event.record(self._stream)
        return _OnDevice(out, event)

    @property
    def on_cuda(self) -> bool:
        """Batches are copied to a CUDA device on a side stream (the consumer must call :meth:`ready`)."""
        return self._cuda

    def ready(self, item: Any) -> Any:
        """In the consumer's thread: wait (on the GPU, not the CPU) for a batch copied on the side stream."""
        if not isinstance(item, _OnDevice):
            return item
        import torch

        stream = torch.cuda.current_stream(self.device)
        stream.wait_event(item.event)
        _map_tensors(item.batch, lambda t: t.record_stream(stream) if t.is_cuda else None)
        return item.batch


class _OnDevice:
    """A batch copied to a CUDA device on a side stream, and the event marking the end of the copy."""

    __slots__ = ("batch", "event")

    def __init__(self, batch: Any, event: Any) -> None:
        self.batch, self.event = batch, event
