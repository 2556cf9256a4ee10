"""Small synthetic Petastorm datasets written with plain pyarrow + the codecs + our metadata writer.

Written directly (not with write_dataset) so the reader tests control files and row groups exactly.
"""
from __future__ import annotations

import os
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from petastorm.arrow_types import arrow_type_for_field
from petastorm.codecs import CompressedImageCodec, NdarrayCodec, ScalarCodec
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField, encode_row

SyntheticSchema = Unischema("SyntheticSchema", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("id_div_10", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
    UnischemaField("value", np.float64, (), ScalarCodec(spark_type("DoubleType")), False),
    UnischemaField("name", np.str_, (), ScalarCodec(spark_type("StringType")), False),
    UnischemaField("matrix", np.float32, (4, 3), NdarrayCodec(), False),
    UnischemaField("image", np.uint8, (8, 6, 3), CompressedImageCodec("png"), False),
    UnischemaField("var", np.int16, (None,), NdarrayCodec(), False),
    UnischemaField("maybe", np.int32, (), ScalarCodec(spark_type("IntegerType")), True),
    UnischemaField("dec", Decimal, (), ScalarCodec(spark_type("DecimalType", 10, 3)), False),
    UnischemaField("timestamp", np.int64, (), ScalarCodec(spark_type("LongType")), False),
])


def synthetic_row(i: int) -> dict:
    rng = np.random.default_rng(i)
    return {
        "id": i,
        "id_div_10": i // 10,
        "value": i / 7,
        "name": f"row_{i}",
        "matrix": np.full((4, 3), i, dtype=np.float32) + np.arange(12, dtype=np.float32).reshape(4, 3),
        "image": rng.integers(0, 255, (8, 6, 3), dtype=np.uint8),
        "var": np.arange(i % 5, dtype=np.int16),
        "maybe": None if i % 3 == 0 else i,
        "dec": Decimal(i) / Decimal(1000),
        "timestamp": 1000 + i * 10,
    }


def write_synthetic_dataset(path: str, rows: int = 100, rows_per_group: int = 10, groups_per_file: int = 2,
                            schema: Unischema = SyntheticSchema, row_fn=synthetic_row) -> str:
    """Write ``rows`` rows in row groups of ``rows_per_group`` rows, ``groups_per_file`` per file.

    Returns the dataset URL (``file://...``).
    """
    from petastorm.etl.dataset_metadata import write_petastorm_metadata

    os.makedirs(path, exist_ok=True)
    arrow_schema = pa.schema([pa.field(f.name, arrow_type_for_field(f), nullable=bool(f.nullable))
                              for f in schema.fields.values()])
    counts = {}
    group_starts = list(range(0, rows, rows_per_group))
    for file_no in range(0, len(group_starts), groups_per_file):
        name = f"part-{file_no // groups_per_file:05d}.parquet"
        with pq.ParquetWriter(os.path.join(path, name), arrow_schema) as writer:
            for start in group_starts[file_no:file_no + groups_per_file]:
                encoded = [encode_row(schema, row_fn(i), i) for i in range(start, min(rows, start + rows_per_group))]
                cols = {f: [r[f] for r in encoded] for f in schema.fields}
                writer.write_table(pa.table(cols, schema=arrow_schema), row_group_size=rows_per_group)
        counts[name] = len(group_starts[file_no:file_no + groups_per_file])
    import pyarrow.fs as pafs

    write_petastorm_metadata(pafs.LocalFileSystem(), path, schema, counts, arrow_schema=arrow_schema)
    return "file://" + path
