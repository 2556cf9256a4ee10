"""TransformSpec: a user function that edits rows (``make_reader``) or column batches
(``make_batch_reader``) inside the workers, and the schema it produces.

Public API (the original's): :class:`TransformSpec`, :func:`transform_schema`, :func:`edit_field`.
The readers' workers call :func:`apply_row_transform` and :func:`apply_batch_transform`.

- ``make_reader``: ``func`` receives one row as a ``dict`` of field name to value and returns a ``dict``.
- ``make_batch_reader``: ``func`` receives a ``pandas.DataFrame`` (one row per row of the batch;
  multi-dimensional fields are object columns holding one array per row) and returns a ``DataFrame``.

Fields the transform drops or leaves out are removed from its output per the
:func:`transform_schema` of the spec; a transform that returns the wrong type or misses a field of
the transformed schema raises :class:`~petastorm.errors.PetastormSchemaError` naming the transform
and the field. An exception raised inside ``func`` propagates unchanged with a note (PEP 678,
``__notes__``) naming the transform function.
"""
from __future__ import annotations

import datetime
import warnings
from decimal import Decimal
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from petastorm.errors import PetastormSchemaError, PetastormTransformError, add_note
from petastorm.unischema import Unischema, UnischemaField

__all__ = [
    "TransformSpec",
    "transform_schema",
    "edit_field",
    "apply_row_transform",
    "apply_batch_transform",
]


class TransformSpec:
    """A transformation applied to the data in the reader's workers, and how it changes the schema.

    Parameters
    ----------
    func : callable or None
        ``make_reader``: ``func(row: dict) -> dict``. ``make_batch_reader``:
        ``func(df: pandas.DataFrame) -> pandas.DataFrame``. None only edits the schema (removes or
        selects fields).
    edit_fields : list of tuples ``(name, numpy_dtype, shape, is_nullable)`` or UnischemaFields
        Fields the transform adds or whose type or shape it changes (see :func:`edit_field`).
    removed_fields : list of str
        Names of fields the transform removes.
    selected_fields : list of str or None
        If given, the transformed schema holds exactly these fields, in this order. Give either
        ``removed_fields`` or ``selected_fields``, not both (``PetastormSchemaError``, a ValueError, as the
        original's).
    """

    def __init__(self, func: Optional[Callable] = None, edit_fields: Optional[Sequence] = None,
                 removed_fields: Optional[Sequence[str]] = None,
                 selected_fields: Optional[Sequence[str]] = None) -> None:
        if func is not None and not callable(func):
            raise PetastormSchemaError(f"TransformSpec func must be callable or None, got {type(func).__name__}")
        if removed_fields is not None and selected_fields is not None:
            # the original's ValueError and message (recorded from 0.12.1), even for an empty list
            raise PetastormSchemaError(
                f"User can only specify one of removed_fields and selected_fields in TransformSpec. Got "
                f"removed_fields={removed_fields!r} and selected_fields={selected_fields!r}")
        self.func = func
        self.edit_fields = list(edit_fields) if edit_fields else []
        self.removed_fields = list(removed_fields) if removed_fields else []
        self.selected_fields = list(selected_fields) if selected_fields is not None else None
        for i, e in enumerate(self.edit_fields):
            _edit_to_field(e, i)  # fail early on a malformed entry

    def __repr__(self) -> str:
        return (f"TransformSpec(func={_func_name(self.func)}, edit_fields={self.edit_fields!r}, "
                f"removed_fields={self.removed_fields!r}, selected_fields={self.selected_fields!r})")


def edit_field(name: str, numpy_dtype: Any, shape: tuple, nullable: bool = False) -> tuple:
    """The 4-tuple ``(name, numpy_dtype, shape, nullable)`` used in ``TransformSpec(edit_fields=...)``."""
    return (name, numpy_dtype, shape, nullable)


def _edit_to_field(edit: Any, index: int = 0) -> UnischemaField:
    if isinstance(edit, UnischemaField):
        # Edited fields hold decoded values: no codec, the output is what the transform returns.
        return UnischemaField(edit.name, edit.numpy_dtype, tuple(edit.shape), None, bool(edit.nullable))
    if not isinstance(edit, (tuple, list)) or len(edit) != 4 or not isinstance(edit[0], str):
        raise PetastormSchemaError(
            f"TransformSpec edit_fields[{index}] must be a UnischemaField or a tuple (name, numpy_dtype, shape, "
            f"is_nullable), got {edit!r}")
    name, dtype, shape, nullable = edit
    if not isinstance(shape, (tuple, list)):
        raise PetastormSchemaError(
            f"TransformSpec edit_fields[{index}] ({name!r}): shape must be a tuple, got {shape!r}")
    return UnischemaField(name, dtype, tuple(shape), None, bool(nullable))


def transform_schema(schema: Unischema, transform_spec: TransformSpec) -> Unischema:
    """The schema of the data after ``transform_spec`` has been applied.

    Removed fields are dropped; edited fields replace the field of the same name or are appended (in
    ``edit_fields`` order) and win over ``removed_fields``; ``selected_fields``, when given, picks and
    orders the result. Names in ``removed_fields`` or ``selected_fields`` that are not in the schema
    are ignored with a ``UserWarning`` (as in the original).

    Parameters
    ----------
    schema : Unischema
        The schema before the transform.
    transform_spec : TransformSpec

    Returns
    -------
    Unischema named ``<schema name>_transformed``.
    """
    if not isinstance(transform_spec, TransformSpec):
        raise PetastormSchemaError(f"transform_spec must be a TransformSpec, got {type(transform_spec).__name__}")
    removed = set(transform_spec.removed_fields)
    unknown = [n for n in transform_spec.removed_fields if n not in schema.fields]
    if unknown:
        warnings.warn("remove_fields specified some field names that are not part of the schema. "
                      f"These field names will be ignored \"{', '.join(map(str, unknown))}\". "
                      f"Schema {schema._name!r} fields: {list(schema.fields)}")
    edited = [_edit_to_field(e, i) for i, e in enumerate(transform_spec.edit_fields)]
    edited_names = {f.name for f in edited}
    fields = [f for name, f in schema.fields.items() if name not in removed and name not in edited_names]
    fields += edited
    if transform_spec.selected_fields is not None:
        by_name = {f.name: f for f in fields}
        missing = [n for n in transform_spec.selected_fields if n not in by_name]
        if missing:
            warnings.warn("selected_fields specified some field names that are not part of the schema. "
                          f"These field names will be ignored \"{', '.join(map(str, missing))}\". "
                          f"Fields after the transform: {list(by_name)}")
        fields = [by_name[n] for n in dict.fromkeys(transform_spec.selected_fields) if n in by_name]
    return Unischema(f"{schema._name}_transformed", fields)


# --- applying a transform (called by the workers) -----------------------------------------------------------

def _func_name(func: Any) -> str:
    if func is None:
        return "None"
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module and module not in ("builtins", "__main__") else name


def _call_user_func(spec: TransformSpec, arg: Any) -> Any:
    try:
        return spec.func(arg)
    except Exception as e:
        add_note(e, f"raised in the TransformSpec func {_func_name(spec.func)!r}")
        raise


def _output_names(spec: TransformSpec, input_names: Iterable[str], output_schema: Optional[Unischema]) -> list:
    """Names the transform's output keeps, in output order."""
    if output_schema is not None:
        return list(output_schema.fields)
    removed = set(spec.removed_fields)
    names = [n for n in input_names if n not in removed]
    if spec.selected_fields is not None:
        present = set(names)
        names = [n for n in dict.fromkeys(spec.selected_fields) if n in present]
    return names


def _check_no_undeclared(spec: TransformSpec, produced: Iterable[str], given: Iterable[str],
                         output_schema: Optional[Unischema]) -> None:
    if output_schema is None:
        return
    given = set(given)
    removed = set(spec.removed_fields)
    undeclared = [n for n in produced if n not in output_schema.fields and n not in given and n not in removed]
    if undeclared:
        raise PetastormSchemaError(
            f"TransformSpec func {_func_name(spec.func)!r} returned field(s) {undeclared} that are not in the "
            f"transformed schema {list(output_schema.fields)}; declare them in TransformSpec(edit_fields=...)")


def apply_row_transform(spec: TransformSpec, row: dict, output_schema: Optional[Unischema] = None) -> dict:
    """Apply a :class:`TransformSpec` to one row (``make_reader``).

    Parameters
    ----------
    spec : TransformSpec
    row : dict of str to value
        One decoded row. It is not modified.
    output_schema : Unischema, optional
        ``transform_schema(input_schema, spec)``. When given, the result has exactly its fields, in its
        order (missing nullable fields become ``None``), and a missing non-nullable field or an
        undeclared new field raises.

    Returns
    -------
    dict of str to value

    Raises
    ------
    PetastormSchemaError
        If ``func`` does not return a dict, or the result misses a field of ``output_schema``.
    """
    if spec.func is not None:
        result = _call_user_func(spec, dict(row))
        if not isinstance(result, dict):
            kind = type(result).__name__
            raise PetastormTransformError(  # the original's wording (a TypeError from make_namedtuple), then ours
                f"petastorm.unischema.Unischema.make_namedtuple() argument after ** must be a mapping, not {kind}: "
                f"TransformSpec func {_func_name(spec.func)!r} must return a dict of field name to value "
                f"(make_reader rows), got {kind}")
        _check_no_undeclared(spec, result.keys(), row.keys(), output_schema)
    else:
        result = row
    names = _output_names(spec, result.keys(), output_schema)
    out = {}
    for name in names:
        if name in result:
            out[name] = result[name]
        elif output_schema is not None and output_schema.fields[name].nullable:
            out[name] = None
        else:
            raise PetastormSchemaError(
                f"TransformSpec func {_func_name(spec.func)!r} returned a row without field {name!r}, which the "
                f"transformed schema requires (got fields {list(result)}); remove it with "
                f"TransformSpec(removed_fields=[{name!r}]) or make it nullable")
    return out


def apply_batch_transform(spec: TransformSpec, columns: dict,
                          output_schema: Optional[Unischema] = None) -> dict:
    """Apply a :class:`TransformSpec` to a column batch (``make_batch_reader``).

    With a ``func``, the columns go into a ``pandas.DataFrame`` (arrays with more than one dimension
    become object columns of one array per row), ``func`` returns a ``DataFrame`` and it comes back to
    numpy columns: scalar fields as 1-D arrays of the field's dtype (object where values are missing
    or strings), array fields stacked to ``(rows,) + shape`` when every row has the same shape, else
    an object array of arrays. The transform may change the number of rows.

    Parameters
    ----------
    spec : TransformSpec
    columns : dict of str to numpy.ndarray
        Every array has shape ``(num_rows,) + field shape`` or ``(num_rows,)`` of dtype object.
    output_schema : Unischema, optional
        ``transform_schema(input_schema, spec)``: when given, the output follows its fields and dtypes
        and is checked against them.

    Returns
    -------
    dict of str to numpy.ndarray, every array of the same length.

    Raises
    ------
    PetastormSchemaError
        Naming the transform and the field: ``func`` returned something other than a DataFrame, a
        field of ``output_schema`` is missing, or a column cannot be converted to its field's type.
    """
    if spec.func is None:
        names = _output_names(spec, columns.keys(), output_schema)
        missing = [n for n in names if n not in columns]
        if missing:
            raise PetastormSchemaError(f"the batch lacks field(s) {missing} of the transformed schema "
                                       f"(batch columns: {list(columns)})")
        return {n: columns[n] for n in names}

    import pandas as pd

    frame = columns_to_dataframe(columns)
    result = _call_user_func(spec, frame)
    tname = _func_name(spec.func)
    if not isinstance(result, pd.DataFrame):
        raise PetastormTransformError(
            f"TransformSpec func {tname!r} must return a pandas.DataFrame (make_batch_reader passes one and "
            f"expects one back), got {type(result).__name__}")
    produced = [str(c) for c in result.columns]
    _check_no_undeclared(spec, produced, columns.keys(), output_schema)
    names = _output_names(spec, produced, output_schema)
    declared = {_edit_to_field(e, i).name for i, e in enumerate(spec.edit_fields)}
    out = {}
    for name in names:
        if name not in result.columns:
            raise PetastormSchemaError(
                f"TransformSpec func {tname!r} returned a DataFrame without column {name!r}, which the "
                f"transformed schema requires (got columns {produced}); remove it with "
                f"TransformSpec(removed_fields=[{name!r}]) or return it")
        field = output_schema.fields[name] if output_schema is not None else None
        out[name] = _series_to_column(result[name], field, tname, name, name in declared)
    return out


def columns_to_dataframe(columns: dict) -> Any:
    """A ``pandas.DataFrame`` of numpy columns; arrays of 2+ dimensions become object columns of rows."""
    import pandas as pd

    data = {}
    n = None
    for name, col in columns.items():
        col = np.asarray(col) if not isinstance(col, np.ndarray) else col
        if n is None:
            n = len(col)
        if col.ndim > 1:
            obj = np.empty(len(col), dtype=object)
            for i in range(len(col)):
                obj[i] = col[i]
            col = obj
        data[name] = pd.Series(col, copy=False)
    return pd.DataFrame(data, index=pd.RangeIndex(n or 0))


def _fixed_shape(shape: tuple, value_shape: tuple) -> bool:
    return len(shape) == len(value_shape) and all(s is None or s == v for s, v in zip(shape, value_shape))


def _target_type(field: Any) -> Any:
    from petastorm.codecs import dtype_type

    return dtype_type(field.numpy_dtype)


def _series_to_column(series: Any, field: Optional[UnischemaField], tname: str, name: str,
                      declared: bool = True) -> np.ndarray:
    values = series.to_numpy()
    if values.dtype != object and values.dtype.kind not in "biufcmMUSV":
        values = values.astype(object)  # pandas extension types that came out odd
    if field is None:
        return _object_to_best(values)
    target = _target_type(field)
    where = f"TransformSpec func {tname!r}: column {name!r}"
    if tuple(field.shape) == ():
        return _scalar_column(values, field, target, where, declared)
    return _array_column(values, field, target, where)


def _object_to_best(values: np.ndarray) -> np.ndarray:
    """Stack an object column of equal-shape arrays into one array; leave anything else alone."""
    if values.dtype != object or len(values) == 0:
        return values
    first = values[0]
    if isinstance(first, np.ndarray) and all(
            isinstance(v, np.ndarray) and v.shape == first.shape and v.dtype == first.dtype for v in values):
        return np.stack(list(values))
    return values


def _scalar_column(values: np.ndarray, field: UnischemaField, target: Any, where: str,
                   declared: bool = True) -> np.ndarray:
    if target is np.str_ and values.dtype == object and len(values) and all(isinstance(v, str) for v in values):
        # a ``<U`` column where every value is a str, as without a transform and as 0.12.1 gave it after one
        # (recorded: ``<U3``; ours was an object array); None or NaN among the values keeps the object array
        # (the Arrow column lets as_original_values keep the object array where a '<U' array would be much larger
        # than its characters: one long string among many short ones padded every cell to its length)
        import pyarrow as pa

        from petastorm.value_types import as_original_values

        try:
            column = pa.array(values, type=pa.large_string())
        except (pa.ArrowException, TypeError, ValueError):
            return values
        return as_original_values("str", values, batch=True, column=column)
    if target in (np.str_, np.bytes_, Decimal, np.object_) or not isinstance(target, type) or \
            not issubclass(target, np.generic):
        if values.dtype.kind in "US":
            return values.astype(object)
        return values
    if values.dtype.kind in "mM" and target in (np.datetime64, np.timedelta64):
        return values
    if values.dtype.kind in "biufcmM":
        if values.dtype == np.dtype(target):
            return values
        if declared and values.dtype.kind == "f" and np.dtype(target).kind in "biu" and not np.isnan(values).any():
            # floats for a field declared as integers: the function's floats in every batch (0.12.1 never cast), so
            # a batch's dtype does not depend on whether its values happen to be whole
            fractional = values != np.trunc(values)
            if fractional.any():
                _warn_kept(where, target, values, values[np.argmax(fractional)])
            return values
        if not declared:
            # a dtype the function chose for a field it did not declare in edit_fields: its values as they are,
            # as 0.12.1 gave them (recorded: int32 / 3 stayed float64, float32 -> int64 stayed int64); a cast to
            # the stored field's dtype would change them silently (333.33 -> 333)
            return values
        if values.dtype.kind == "f" and np.dtype(target).kind in "biu" and np.isnan(values).any():
            if not field.nullable:
                raise PetastormSchemaError(f"{where} of non-nullable {np.dtype(target).name} field has missing "
                                           f"values (NaN)")
            return np.array([None if np.isnan(v) else target(v) for v in values], dtype=object)
        try:
            with np.errstate(invalid="ignore", over="ignore"):
                cast = values.astype(target, copy=False)
        except (TypeError, ValueError) as e:
            raise PetastormSchemaError(f"{where}: cannot convert {values.dtype} to the field's "
                                       f"{np.dtype(target).name}: {e}") from None
        changed = _changed_mask(values, cast)
        if changed.any():  # declared with a type that cannot hold the values: kept as the function gave them
            _warn_kept(where, target, values, values[np.argmax(changed)])
            return values
        return cast
    # object column: strings, Nones, numpy scalars, arrays...
    if target is np.datetime64 and any(v is not None for v in values) and all(
            v is None or (isinstance(v, datetime.date) and not isinstance(v, datetime.datetime)) for v in values):
        # datetime.date objects (a date column): kept as they are, as without a transform and as 0.12.1 gave
        # them after one (recorded: an object array of datetime.date; ours was datetime64[D])
        if not field.nullable and any(v is None for v in values):
            raise PetastormSchemaError(f"{where} holds None but the field is not nullable")
        return values
    has_null = any(v is None for v in values)
    if has_null and not field.nullable:
        raise PetastormSchemaError(f"{where} holds None but the field is not nullable")
    bad = next((v for v in values if v is not None and (isinstance(v, (str, bytes, np.ndarray, list, dict)))), None)
    if bad is not None and not (isinstance(bad, np.ndarray) and bad.shape == ()):
        raise PetastormSchemaError(f"{where} expects {np.dtype(target).name} scalars, got {type(bad).__name__} "
                                   f"value {bad!r:.80}")
    try:
        if has_null:
            return np.array([None if v is None else target(v) for v in values], dtype=object)
        return np.asarray(list(values)).astype(target) if len(values) else np.empty(0, target)
    except (TypeError, ValueError) as e:
        raise PetastormSchemaError(f"{where}: cannot convert values to {np.dtype(target).name}: {e}") from None


def _changed_mask(values: np.ndarray, cast: np.ndarray) -> np.ndarray:
    """Which values a cast changed beyond a float's rounding: fractions and out-of-range values for integers and
    booleans, values beyond a float's range (made infinite)."""
    with np.errstate(invalid="ignore", over="ignore"):
        if cast.dtype.kind in "fc":
            return np.isinf(cast) & ~np.isinf(values)
        if cast.dtype.kind in "mM":
            return np.zeros(len(values), dtype=bool)
        return cast != values


def _warn_kept(where: str, target: Any, values: np.ndarray, example: Any) -> None:
    """Say that values which do not fit the dtype declared in edit_fields are kept as the function gave them
    (as 0.12.1 kept them: it never cast)."""
    warnings.warn(f"{where}: the values do not fit the {np.dtype(target).name} declared in edit_fields (e.g. "
                  f"{example!r}); they are kept as {values.dtype} (as petastorm 0.12.1 did): declare the field's "
                  f"dtype as {values.dtype}", UserWarning, stacklevel=4)


def _array_column(values: np.ndarray, field: UnischemaField, target: Any, where: str) -> np.ndarray:
    shape = tuple(field.shape)
    if values.dtype != object:
        values_2d = values  # pandas gave a plain 1-D array: a field declared as array got scalars
        raise PetastormSchemaError(f"{where} expects arrays of shape {shape}, got scalars of {values_2d.dtype}")
    cells = []
    for i, v in enumerate(values):
        if v is None:
            if not field.nullable:
                raise PetastormSchemaError(f"{where}, row {i}: None in a field that is not nullable")
            cells.append(None)
            continue
        arr = np.asarray(v)
        if not _fixed_shape(shape, arr.shape):
            raise PetastormSchemaError(f"{where}, row {i}: expected shape {shape}, got {arr.shape}")
        cells.append(arr)
    convert = target if isinstance(target, type) and issubclass(target, np.generic) and \
        target not in (np.str_, np.bytes_, np.object_) else None
    if cells and all(c is not None for c in cells) and all(c.shape == cells[0].shape for c in cells):
        stacked = np.stack(cells)
        if convert is not None and stacked.dtype.type is not convert:
            try:
                stacked = stacked.astype(convert)
            except (TypeError, ValueError) as e:
                raise PetastormSchemaError(f"{where}: cannot convert {stacked.dtype} to "
                                           f"{np.dtype(convert).name}: {e}") from None
        return stacked
    if not cells:
        dims = tuple(0 if s is None else s for s in shape)
        return np.empty((0,) + dims, dtype=convert or object)
    out = np.empty(len(cells), dtype=object)
    for i, c in enumerate(cells):
        out[i] = c if c is None or convert is None or c.dtype.type is convert else c.astype(convert)
    return out
