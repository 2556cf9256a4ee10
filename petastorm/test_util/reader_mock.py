"""A stand-in for a petastorm ``Reader`` in users' unit tests: rows made up from the schema, no dataset.

:class:`ReaderMock` yields rows forever, as namedtuples of its schema, each built by calling
``schema_data_generator(schema)``. Two generators come with it:

- :func:`schema_data_generator_example`: the original's, the same row every time: zeros of every field's dtype
  as arrays (0-d for scalars), 10 for every dimension of unknown size, ``''``/``b''`` for strings and bytes,
  ``Decimal('0.0')``;
- :func:`schema_data_generator_random`: random values of every field's dtype and shape, new in every row
  (numpy scalars for scalar fields, as ``make_reader`` gives), each one encodable by the field's codec.

Code that consumes a reader (a training loop, a framework adapter) can then be tested without writing a
Parquet dataset::

    reader = ReaderMock(MySchema, schema_data_generator_example)
    with reader:
        row = next(reader)
"""
from __future__ import annotations

import string
from decimal import Decimal
from typing import Any, Callable, Optional

import numpy as np

from petastorm.errors import PetastormArgumentError, PetastormTypeError
from petastorm.unischema import Unischema, UnischemaField

__all__ = ["ReaderMock", "schema_data_generator_example", "schema_data_generator_random"]

# Lengths given to a dimension of unknown size (``None`` in a field's shape) by the random generator.
_VARIABLE_DIM_SIZES = (1, 6)
# ... and by the example generator (recorded from 0.12.1: every unknown dimension is 10).
_EXAMPLE_DIM_SIZE = 10


class ReaderMock:
    """An endless reader of made-up rows.

    Parameters
    ----------
    schema : Unischema
        Schema of the rows; also exposed as :attr:`schema`, as a real reader does.
    schema_data_generator : callable
        ``schema_data_generator(schema) -> dict`` of field name to value, called once per row (once per
        offset of the window when ``ngram`` is given). Fields it leaves out are ``None``.
    ngram : petastorm.ngram.NGram, optional
        When given, each item is a window ``{offset: namedtuple}`` as a real ngram reader returns, with
        the timestamp field increasing by ``ngram.delta_threshold`` from one offset to the next.

    Attributes
    ----------
    schema, ngram
    batched_output, is_batched_reader : bool
        Always False: one row per item.
    last_row_consumed : bool
        Always False: the mock never runs out of rows.
    stopped : bool
        True once :meth:`stop` was called (lets a test check that the code under test stopped its reader).
    reader_pool_type : str
        Always ``'dummy'``: the rows are made in the thread that iterates the mock.
    """

    reader_pool_type = "dummy"

    def __init__(self, schema: Unischema, schema_data_generator: Callable[[Unischema], dict],
                 ngram: Optional[Any] = None) -> None:
        if not isinstance(schema, Unischema):
            raise PetastormTypeError(f"ReaderMock: schema must be a Unischema, got {type(schema).__name__}")
        if not callable(schema_data_generator):
            raise PetastormTypeError(f"ReaderMock: schema_data_generator must be callable, got "
                            f"{type(schema_data_generator).__name__}")
        self.schema = schema
        self.schema_data_generator = schema_data_generator
        self.ngram = ngram
        if ngram is not None:
            ngram.resolve_regex_field_names(schema)
        self.batched_output = False
        self.is_batched_reader = False
        self.last_row_consumed = False
        self.stopped = False
        self._rows_read = 0

    # --- the reader protocol ----------------------------------------------------------------------------

    def fetch(self, timeout: Optional[float] = None) -> Any:
        """The next made-up row (or ngram window). ``timeout`` is accepted and unused."""
        self._rows_read += 1
        if self.ngram is not None:
            return self._fetch_ngram()
        return self.schema.make_namedtuple(**self._generate(self.schema))

    def __iter__(self) -> "ReaderMock":
        return self

    def __next__(self) -> Any:
        return self.fetch()

    def next(self) -> Any:
        """Same as ``next(reader)`` (the original's name)."""
        return self.fetch()

    def reset(self) -> None:
        """Start a new pass (nothing to do: the mock never ends)."""
        self.last_row_consumed = False

    def stop(self) -> None:
        """Stop the reader (records the call in :attr:`stopped`)."""
        self.stopped = True

    def join(self) -> None:
        """Wait for the reader to stop (nothing to wait for)."""

    @property
    def diagnostics(self) -> dict:
        """Counters, as a real reader has: ``{'rows_read': n}``."""
        return {"rows_read": self._rows_read}

    def __enter__(self) -> "ReaderMock":
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.stop()
        self.join()

    # --- helpers ------------------------------------------------------------------------------------------

    def _generate(self, schema: Unischema) -> dict:
        values = self.schema_data_generator(schema)
        if not isinstance(values, dict):
            raise PetastormTypeError(f"ReaderMock: schema_data_generator must return a dict of field name to value, "
                            f"got {type(values).__name__}")
        unknown = sorted(set(values) - set(schema.fields))
        if unknown:
            raise PetastormArgumentError(f"ReaderMock: schema_data_generator returned fields {unknown} that are not in the "
                             f"schema (fields: {list(schema.fields)})")
        return values

    def _fetch_ngram(self) -> dict:
        ngram = self.ngram
        ts_field = ngram.timestamp_field
        ts_name = ts_field.name if isinstance(ts_field, UnischemaField) else ts_field
        rows = [self._generate(self.schema) for _ in range(ngram.length)]
        start = rows[0].get(ts_name)
        start = np.zeros((), dtype=_numpy_type(self.schema.fields[ts_name])) if start is None else start
        step = ngram.delta_threshold
        for k, row in enumerate(rows):
            value = start + k * step if k else start
            if isinstance(start, np.generic):
                value = np.asarray(value).astype(start.dtype)[()]
            row[ts_name] = value
        window = ngram.form_ngram(rows, self.schema)[0]
        return ngram.make_namedtuple(self.schema, window)


# --- the example generator ------------------------------------------------------------------------------------

def _numpy_type(field: UnischemaField) -> Any:
    if field.numpy_dtype in (str, bytes):
        return {str: np.str_, bytes: np.bytes_}[field.numpy_dtype]
    if field.numpy_dtype is Decimal:
        return Decimal
    try:
        return np.dtype(field.numpy_dtype).type
    except TypeError:
        return field.numpy_dtype


def _concrete_shape(field: UnischemaField, rng: np.random.Generator) -> tuple:
    from petastorm.codecs import CompressedImageCodec

    shape = []
    for i, dim in enumerate(field.shape or ()):
        if dim is not None:
            shape.append(int(dim))
        elif isinstance(field.codec, CompressedImageCodec) and i == 2:
            shape.append(3)  # an image of unknown channel count: make it RGB
        else:
            shape.append(int(rng.integers(*_VARIABLE_DIM_SIZES, endpoint=True)))
    return tuple(shape)


def _random_strings(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    letters = np.array(list(string.ascii_letters + string.digits))
    count = int(np.prod(shape, dtype=np.int64))
    words = ["".join(rng.choice(letters, size=int(rng.integers(1, 9)))) for _ in range(count)]
    return np.array(words, dtype=np.str_).reshape(shape)


def _random_array(kind: Any, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    if kind is np.str_:
        return _random_strings(rng, shape)
    if kind is np.bytes_:
        return np.char.encode(_random_strings(rng, shape), "ascii").astype(np.bytes_)
    if kind is np.bool_:
        return rng.random(shape) < 0.5
    if kind is np.datetime64:
        seconds = rng.integers(0, 2 ** 31, size=shape)
        return (np.datetime64("1970-01-01T00:00:00", "us") + seconds.astype("timedelta64[s]")).astype("datetime64[us]")
    dtype = np.dtype(kind)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "f":
        return (rng.random(shape) * 200 - 100).astype(dtype)
    if dtype.kind == "c":
        return (rng.random(shape) + 1j * rng.random(shape)).astype(dtype)
    raise PetastormArgumentError(f"schema_data_generator_random cannot make values of type {kind}")


def _random_value(field: UnischemaField, rng: np.random.Generator) -> Any:
    from petastorm.codecs import ScalarCodec

    kind = _numpy_type(field)
    shape = _concrete_shape(field, rng)
    if kind is Decimal:
        if shape:
            raise PetastormArgumentError(f"schema_data_generator_random: field {field.name!r} is an array of Decimal, "
                             f"which petastorm cannot store")
        # Fits DecimalType(10, 9) and any wider type: six digits after the point, below 1.
        return Decimal(int(rng.integers(0, 10 ** 6))).scaleb(-6)
    array = _random_array(kind, shape, rng)
    if shape:
        return array
    # A scalar: a numpy scalar for native columns and ScalarCodec (numpy.str_ for a string field, as
    # make_reader gives), a 0-d array for the array codecs.
    if field.codec is None or isinstance(field.codec, ScalarCodec):
        return array[()]
    return np.asarray(array)


def schema_data_generator_random(schema: Unischema, rng: Optional[np.random.Generator] = None) -> dict:
    """A random value for every field of ``schema``: right dtype, right shape, encodable by its codec.

    Dimensions of unknown size (``None``) get a random length from 1 to 6, the channels of an image
    of unknown channel count are 3; strings are short ASCII words; decimals are below 1 with six digits.
    Nullable fields get a value too.

    Parameters
    ----------
    schema : Unischema
    rng : numpy.random.Generator, optional
        Source of randomness (a fresh, unseeded one when not given).

    Returns
    -------
    dict of field name to value.
    """
    rng = np.random.default_rng() if rng is None else rng
    return {field.name: _random_value(field, rng) for field in schema.fields.values()}


def _zero_value(field: UnischemaField) -> Any:
    kind = _numpy_type(field)
    if kind is Decimal:
        return Decimal("0.0")
    shape = tuple(_EXAMPLE_DIM_SIZE if dim is None else int(dim) for dim in (field.shape or ()))
    if kind is np.datetime64:
        return np.zeros(shape, dtype="datetime64[us]")  # the original raised numpy's 'generic units' error here
    if kind is np.str_:
        return np.zeros(shape, dtype="<U1")
    if kind is np.bytes_:
        return np.zeros(shape, dtype="S1")
    return np.zeros(shape, dtype=kind)


def schema_data_generator_example(schema: Unischema) -> dict:
    """The original's example generator: the same row every time, zeros of every field's dtype.

    Recorded from 0.12.1: every value is a numpy array, 0-d for a scalar field (``array(0, dtype=int32)``,
    ``array(0.)``, ``array('', dtype='<U1')``, ``array(b'', dtype='|S1')``, ``array(False)``), every dimension
    of unknown size is 10 (an image of shape ``(None, None, None)`` is ``(10, 10, 10)``), a Decimal field is
    ``Decimal('0.0')``. One difference: a ``np.datetime64`` field is the epoch (``datetime64[us]``) where the
    original raised numpy's "generic units" ``ValueError``. For values that vary from row to row, pass
    :func:`schema_data_generator_random` instead.

    Parameters
    ----------
    schema : Unischema

    Returns
    -------
    dict of field name to value.
    """
    return {field.name: _zero_value(field) for field in schema.fields.values()}
