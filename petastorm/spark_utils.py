"""A Petastorm dataset as a Spark RDD of decoded rows.

:func:`dataset_as_rdd` reads the dataset with Spark (``spark.read.parquet``, so Spark's own Hadoop
filesystem settings apply) and decodes the cells with the dataset's Unischema codecs inside the Spark
tasks: the driver only reads the Petastorm metadata. Each element of the RDD is a namedtuple of the
selected fields, holding the same values and types as a ``make_reader`` row.

RDDs belong to classic Spark: a Spark Connect session has none, and is refused with a clear error.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from petastorm.errors import (
    PetastormDecodeError,
    PetastormError,
    PetastormTypeError,
    add_note,
)

__all__ = ["dataset_as_rdd"]


def _ensure_classic_session(spark_session: Any) -> None:
    """Refuse what is not a classic ``SparkSession`` (None, a SparkContext, a Spark Connect session)."""
    module = type(spark_session).__module__ or ""
    if module.startswith("pyspark.sql.connect"):
        raise PetastormTypeError(
            "dataset_as_rdd needs a classic SparkSession: spark_session is a Spark Connect session, and Spark "
            "Connect has no RDDs. Read the dataset with petastorm.make_reader / make_batch_reader, or its raw "
            "columns with spark.read.parquet(dataset_url)")
    if not (hasattr(spark_session, "read") and hasattr(spark_session, "sparkContext")):
        raise PetastormTypeError(
            f"spark_session must be a pyspark.sql.SparkSession, got {type(spark_session).__name__}: "
            f"{spark_session!r}")


def _selected_schema(schema: Any, schema_fields: Optional[Sequence[Any]], dataset_url: str) -> Any:
    """The schema view of the fields ``schema_fields`` selects: the readers' rules
    (:func:`~petastorm.reader_impl.fields.resolve_fields`), but an empty list selects no field, as the
    original's ``dataset_as_rdd``.

    Rows are named as the original's: ``'<schema>_view'`` without ``schema_fields``, ``'<schema>_view_view'``
    with them (recorded from 0.12.1).
    """
    from petastorm.reader_impl.fields import resolve_fields

    if schema_fields is None:
        return schema  # its rows are '<schema>_view' (Unischema names its namedtuple so)
    names = resolve_fields(schema, schema_fields, dataset_url, empty_selects_all=False)
    return schema.create_schema_view([schema.fields[name] for name in names])  # rows: '<schema>_view_view'


def _decode_value(field: Any, value: Any, row: int) -> Any:
    """One cell as Spark gives it (``bytearray``, ``int``, ``str``...) -> the value ``make_reader`` gives.

    Raises
    ------
    PetastormDecodeError
        A cell that petastorm's codecs cannot decode, or that decodes to another dtype or shape than the
        field's. A codec of the user's raises its own exception, with a note naming the field.
    """
    if value is None:
        return None
    codec = field.codec
    if codec is not None:
        decode_cell = getattr(codec, "_decode_cell", None)  # DataframeColumnCodec's: checks, names the field
        return decode_cell(field, row, value) if decode_cell is not None else codec.decode(field, value)
    from petastorm.codecs import decode_error, dtype_type

    kind = dtype_type(field.numpy_dtype)
    try:
        if kind is Decimal:
            return value if isinstance(value, Decimal) else Decimal(value)
        if isinstance(value, (list, tuple)):
            return np.asarray(value, dtype=kind)
        return kind(value)
    except (TypeError, ValueError, ArithmeticError) as e:
        raise decode_error(field, row, f"cannot convert the stored {type(value).__name__} to "
                                       f"{getattr(kind, '__name__', kind)}: {e}") from e


def _decode_partition(schema: Any, dataset_url: str, partition: int, rows: Iterable[Any]) -> Iterator[tuple]:
    """Runs in the Spark tasks: the Spark ``Row`` s of one partition -> namedtuples of decoded values."""
    fields = list(schema.fields.values())
    make = schema._get_namedtuple()._make
    for number, row in enumerate(rows):
        values = []
        for i, field in enumerate(fields):
            try:
                values.append(_decode_value(field, row[i], number))
            except PetastormDecodeError as e:
                raise PetastormDecodeError(
                    f"{dataset_url}: field {field.name!r}, row {number} of Spark partition {partition}: "
                    f"{e.detail}", row=number, detail=e.detail) from e
            except Exception as e:  # a codec of the user's: its own exception, with the place
                if not isinstance(e, PetastormError):
                    add_note(e, f"dataset_as_rdd: decoding field {field.name!r} of {dataset_url}, row {number} "
                                f"of Spark partition {partition}")
                raise
        yield make(values)


def dataset_as_rdd(dataset_url: str, spark_session: Any,
                   schema_fields: Optional[Sequence[Union[Any, str]]] = None,
                   hdfs_driver: str = "libhdfs3", storage_options: Optional[dict] = None) -> Any:
    """An RDD of the decoded rows of the Petastorm dataset at ``dataset_url``.

    Parameters
    ----------
    dataset_url : str
        URL of a Petastorm dataset (one written by ``materialize_dataset`` or ``write_dataset``), with a
        scheme Spark can read (``file:///...``, ``hdfs://...``, ``s3a://...``).
    spark_session : pyspark.sql.SparkSession
        A classic session (Spark Connect has no RDDs).
    schema_fields : list of UnischemaField or str, optional
        Fields to read: UnischemaFields of the dataset's schema (in the order given) and/or regular
        expressions matched against whole field names (petastorm's addition; the original took only
        UnischemaFields), as ``make_reader`` takes them. ``None`` reads every field; an empty list reads
        none (each row is an empty namedtuple), as the original.
    hdfs_driver : str
        Driver used to read the Petastorm metadata from ``hdfs://`` on the driver (as ``make_reader``).
    storage_options : dict, optional
        Filesystem options used to read the Petastorm metadata on the driver (petastorm's addition; Spark
        reads the rows with its own Hadoop settings).

    Returns
    -------
    pyspark.RDD
        Of namedtuples of the selected fields, decoded in the Spark tasks: ndarrays of the fields' dtypes
        and shapes, numpy scalars, ``Decimal``, ``None`` for nulls, as ``make_reader`` rows. The RDD is
        lazy: no row is read until an action (``collect``, ``count``...) runs. A stored value that cannot
        be decoded fails the Spark job with a :class:`~petastorm.errors.PetastormDecodeError` naming the
        dataset, the field and the row (within its Spark partition).

    Raises
    ------
    OSError
        (:class:`~petastorm.errors.DatasetNotFoundError`) The dataset does not exist (the original's
        'Passed non-file path').
    ValueError
        A URL without a scheme (:class:`~petastorm.errors.PetastormArgumentError`); a UnischemaField that is
        not in the dataset's schema (:class:`~petastorm.errors.PetastormSchemaError`).
    PetastormMetadataError
        The location holds Parquet files without Petastorm metadata (use ``make_batch_reader``, or
        ``petastorm-generate-metadata``).
    NoMatchingFieldsError
        Regular expressions in ``schema_fields`` that match no field.
    PetastormArgumentTypeError
        (A ``ValueError`` and a ``TypeError``.) ``schema_fields`` holds something that is neither a
        UnischemaField nor a string, or is not a collection.
    TypeError
        (:class:`~petastorm.errors.PetastormTypeError`) ``spark_session`` is not a classic SparkSession.

    Examples
    --------
    >>> rdd = dataset_as_rdd('file:///tmp/hello_world_dataset', spark, schema_fields=[HelloWorldSchema.id])
    >>> rdd.map(lambda row: int(row.id)).sum()
    """
    from petastorm.etl.dataset_metadata import get_schema_from_dataset_url

    _ensure_classic_session(spark_session)
    schema = get_schema_from_dataset_url(dataset_url, hdfs_driver=hdfs_driver, storage_options=storage_options)
    schema = _selected_schema(schema, schema_fields, dataset_url)
    frame = spark_session.read.parquet(dataset_url)
    frame = frame.select(*[frame["`" + name.replace("`", "``") + "`"] for name in schema.fields])
    return frame.rdd.mapPartitionsWithIndex(
        lambda partition, rows: _decode_partition(schema, dataset_url, partition, rows))
