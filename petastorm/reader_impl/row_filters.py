"""Values of Hive partition directories and pyarrow filter masks, shared by the planning
(:mod:`~petastorm.reader_impl.selection`: pruning by partition values) and the worker (rows of a row group)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from petastorm.errors import PetastormSchemaError

__all__ = ["partition_scalar", "filter_mask"]


def partition_scalar(value: Optional[str], typ: Any, name: str) -> Any:
    """A Hive directory value (a string, or None for a null partition) as a Python value of ``typ``."""
    import pyarrow as pa

    if value is None or pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return value
    try:
        if pa.types.is_integer(typ):
            return int(value)
        if pa.types.is_floating(typ):
            return float(value)
        if pa.types.is_boolean(typ):
            return value.lower() == "true"
        if pa.types.is_decimal(typ):
            from decimal import Decimal

            return Decimal(value)
        if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
            return value.encode()
    except (ValueError, ArithmeticError) as e:
        raise PetastormSchemaError(f"partition {name}={value!r} does not fit the field's type {typ}: {e}") from e
    return value


def filter_mask(table: Any, expression: Any) -> np.ndarray:
    """Boolean mask, shape ``(table.num_rows,)``, of the rows for which ``expression`` is true (null: false)."""
    import pyarrow as pa

    tbl = pa.table(table) if not isinstance(table, pa.Table) else table
    marker = "__petastorm_row__"
    kept = tbl.append_column(marker, pa.array(np.arange(tbl.num_rows, dtype=np.int64))).filter(expression)
    mask = np.zeros(tbl.num_rows, dtype=bool)
    mask[kept.column(marker).to_numpy()] = True
    return mask
