"""The element structure of a reader as TensorFlow sees it, as the original laid it out (0.12.1, recorded).

- ``make_reader``: one element per row, a namedtuple of the reader's schema (the type of the reader's own
  rows, e.g. ``MySchema_view``), each field a tensor of the field's shape.
- ``make_batch_reader``: one element per batch, the same namedtuple, each field of shape
  ``(None,) + field shape``.
- an ngram reader: one element per window, a dict ``{offset: namedtuple of the fields at that offset}``.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from petastorm.errors import PetastormSchemaError, PetastormTypeError
from petastorm.tf_impl.convert import FieldConversion, convert_column, convert_value, field_conversion

__all__ = ["ElementLayout"]


class _Part:
    """One namedtuple of the element: its type and the conversion of each of its fields, in its order."""

    def __init__(self, offset: Optional[int], schema: Any) -> None:
        self.offset = offset
        self.type = schema._get_namedtuple()
        self.convs = [field_conversion(schema.fields[name]) for name in self.type._fields]


class ElementLayout:
    """How a reader's items become TensorFlow elements.

    Parameters
    ----------
    reader : Reader
        A reader of :func:`petastorm.make_reader` or :func:`petastorm.make_batch_reader` (or anything with
        ``schema``, ``ngram`` and ``batched_output`` such as ``petastorm.test_util.reader_mock.ReaderMock``).

    caller : str
        The public function the layout is made for (named in the error for something that is no reader).

    Raises
    ------
    PetastormTypeError
        ``reader`` is no reader (``None``, a URL string, a loader): the message names the argument.
    PetastormSchemaError
        If a field cannot be a tensor (see :mod:`petastorm.tf_impl.convert`).
    """

    def __init__(self, reader: Any, caller: str = "make_petastorm_dataset") -> None:
        if not hasattr(reader, "schema") or not hasattr(reader, "__next__"):
            # the original let a bare AttributeError ('NoneType' object has no attribute 'ngram') through
            raise PetastormTypeError(f"reader: {caller} needs a petastorm reader (make_reader / make_batch_reader), "
                                     f"got {type(reader).__name__}")
        self.batched = bool(getattr(reader, "batched_output", False))
        ngram = getattr(reader, "ngram", None)
        schema = reader.schema
        if ngram is not None:
            offsets = range(min(ngram.fields), max(ngram.fields) + 1)
            self.parts = [_Part(t, ngram.get_schema_at_timestep(schema, t)) for t in offsets]
        else:
            self.parts = [_Part(None, schema)]
        self.is_ngram = ngram is not None
        self._convert = convert_column if self.batched else convert_value

    # --- signature ----------------------------------------------------------------------------------------

    def _shape(self, conv: FieldConversion) -> Tuple[Optional[int], ...]:
        return ((None,) if self.batched else ()) + conv.shape

    def flat_specs(self) -> List[Tuple[str, Tuple[Optional[int], ...]]]:
        """``(tf dtype name, static shape)`` of every tensor of an element, in :meth:`flatten` order."""
        return [(c.tf_dtype, self._shape(c)) for part in self.parts for c in part.convs]

    # --- items -> elements -----------------------------------------------------------------------------------

    def _part_values(self, part: _Part, row: Any) -> list:
        convert, shape_of = self._convert, self._shape
        values = [convert(c, getattr(row, c.name)) for c in part.convs]
        for c, value in zip(part.convs, values):
            expected = shape_of(c)
            actual = np.shape(value)
            if len(actual) != len(expected) or any(e is not None and e != a for e, a in zip(expected, actual)):
                raise PetastormSchemaError(
                    f"field {c.name!r} has a value of shape {actual} where the schema says "
                    f"{expected} ({'a batch column' if self.batched else 'one row'}): TensorFlow's element spec "
                    f"is the schema's; fix the TransformSpec's edit_fields or the data")
        return values

    def element(self, item: Any) -> Any:
        """A reader item -> the element of numpy arrays (a namedtuple, or a dict of them for ngrams)."""
        if self.is_ngram:
            return {p.offset: p.type(*self._part_values(p, item[p.offset])) for p in self.parts}
        part = self.parts[0]
        return part.type(*self._part_values(part, item))

    def flatten(self, item: Any) -> List[np.ndarray]:
        """A reader item -> the list of its converted arrays, in :meth:`flat_specs` order."""
        if self.is_ngram:
            return [v for p in self.parts for v in self._part_values(p, item[p.offset])]
        return self._part_values(self.parts[0], item)

    def unflatten(self, values: Any) -> Any:
        """Values in :meth:`flatten` order (any iterable) -> the element's structure."""
        values = iter(values)
        built = {p.offset: p.type(*[next(values) for _ in p.convs]) for p in self.parts}
        return built if self.is_ngram else built[None]
