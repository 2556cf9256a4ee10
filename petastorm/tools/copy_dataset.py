"""Copy a Petastorm dataset with Spark, optionally keeping only some fields and rows.

Command line (console script ``petastorm-copy-dataset``, alias ``petastorm-copy-dataset.py``)::

    petastorm-copy-dataset file:///data/src file:///data/dst --field-regex 'id' 'image_.*' \\
        --not-null-fields image_png --partition-count 10 --row-group-size-mb 64 --master 'local[4]'

The copy is a Spark job (``spark.read.parquet`` -> select -> filter -> ``write.parquet``) inside
:func:`~petastorm.etl.dataset_metadata.materialize_dataset`, so the target has Petastorm metadata and reads
back with ``make_reader``. Encoded cells are copied as they are (nothing is decoded). Hive partition columns
of the source become ordinary columns of the target, as in the original. ``--engine pyarrow`` (or
``copy_dataset(None, ...)``) makes the same copy with pyarrow in this process, without a JVM.
"""
from __future__ import annotations

import argparse
import numbers
import sys
from types import SimpleNamespace
from typing import Any, Optional, Sequence

from petastorm.cli_support import positive_float, positive_int, run_cli
from petastorm.errors import NoMatchingFieldsError, PetastormArgumentError
from petastorm.etl.spark_progress import spark_progress

__all__ = ["copy_dataset", "args_parser", "main"]

_PROG = "petastorm-copy-dataset"


def _ensure_names(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    values = list(value)
    for item in values:
        if not isinstance(item, str):
            raise PetastormArgumentError(f"{name} must be a list of strings, got {type(item).__name__}: {item!r}")
    return values


def _ensure_optional_positive(name: str, value: Any, integer: bool) -> Any:
    if value is None:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value < float("inf"):
        raise PetastormArgumentError(
            f"{name} must be a positive {'integer' if integer else 'number'} or None, got {value!r}")
    return int(value) if integer or float(value).is_integer() else float(value)


def _selected_fields(schema: Any, field_regex: list[str], source_url: str) -> list:
    from petastorm.unischema import match_unischema_fields

    if not field_regex:
        return list(schema.fields.values())
    fields = match_unischema_fields(schema, field_regex)
    if not fields:  # the original's ValueError, worded as one sentence
        raise NoMatchingFieldsError(
            f"Regular expressions ({field_regex}) do not match any fields ({list(schema.fields)}) of {source_url}")
    return fields


def _ensure_target_free(target_url: str, hdfs_driver: str, overwrite_output: bool) -> None:
    """Refuse an existing target before any Spark work (the original let Spark fail after reading)."""
    if overwrite_output:
        return
    import pyarrow.fs as pafs

    from petastorm.fs_utils import get_filesystem_and_path_or_paths

    fs, path = get_filesystem_and_path_or_paths(target_url, hdfs_driver=hdfs_driver)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        raise PetastormArgumentError(
            f"target_url {target_url} already exists: pass overwrite_output=True (--overwrite-output) to replace it")


def _check_copy(source_url: str, target_url: str, field_regex: Any, not_null_fields: Any, overwrite_output: bool,
                partitions_count: Any, row_group_size_mb: Any, hdfs_driver: str) -> SimpleNamespace:
    """Every check that needs no Spark. Returns the plan: ``source_schema``, ``target_schema``, ``names``
    (copied fields), ``not_null``, ``partitions_count``, ``row_group_size_mb`` (normalised)."""
    from petastorm.etl.dataset_metadata import get_schema_from_dataset_url

    regexes = _ensure_names("field_regex", field_regex)
    not_null = _ensure_names("not_null_fields", not_null_fields)
    partitions_count = _ensure_optional_positive("partitions_count", partitions_count, integer=True)
    row_group_size_mb = _ensure_optional_positive("row_group_size_mb", row_group_size_mb, integer=False)
    schema = get_schema_from_dataset_url(source_url, hdfs_driver=hdfs_driver)
    fields = _selected_fields(schema, regexes, source_url)
    unknown = [name for name in not_null if name not in schema.fields]
    if unknown:
        raise PetastormArgumentError(
            f"not_null_fields {unknown} are not fields of {source_url} (fields: {', '.join(schema.fields)})")
    _ensure_target_free(target_url, hdfs_driver, overwrite_output)
    target_schema = schema if len(fields) == len(schema.fields) else schema.create_schema_view(fields)
    return SimpleNamespace(source_schema=schema, target_schema=target_schema, names=[f.name for f in fields],
                           not_null=not_null, partitions_count=partitions_count, row_group_size_mb=row_group_size_mb)


def copy_dataset(spark: Any, source_url: str, target_url: str, field_regex: Optional[Sequence[str]],
                 not_null_fields: Optional[Sequence[str]], overwrite_output: bool, partitions_count: Optional[int],
                 row_group_size_mb: Optional[float], hdfs_driver: str = "libhdfs3", *,
                 progress: bool = False) -> None:
    """Copy the Petastorm dataset at ``source_url`` to ``target_url``, optionally a subset of it.

    Parameters
    ----------
    spark : pyspark.sql.SparkSession or None
        A classic session (the metadata step sets the Hadoop configuration). With None (petastorm's addition;
        the original required a session), the copy is made with pyarrow in this process, no JVM: each source
        file gives one target file (or ``partitions_count`` files of equal row counts), row groups are cut at
        ``row_group_size_mb`` MiB of Arrow data (128 MiB by default, Spark's block size).
    source_url, target_url : str
        Dataset URLs with a scheme (``file:///``, ``hdfs://``...).
    field_regex : list of str or None
        Copy only the fields whose names match (in full) one of these regular expressions; None: all fields.
        The target's schema is then the view ``<SourceSchema>_view`` with the fields in source order.
    not_null_fields : list of str or None
        Drop the rows where any of these fields is null. They must be fields of the source; unlike the
        original, they need not be among the copied fields.
    overwrite_output : bool
        Replace an existing ``target_url``; if False and it exists, nothing is done and an error is raised.
    partitions_count : int or None
        Repartition to this many Spark partitions (Parquet files) before writing.
    row_group_size_mb : float or None
        Target row-group size of the copy, in MiB (None: Spark's default).
    hdfs_driver : str
        ``'libhdfs3'`` or ``'libhdfs'`` for ``hdfs://`` URLs.
    progress : bool
        Show a tqdm progress bar of the Spark tasks on stderr (petastorm's addition; the CLI sets it).

    Raises
    ------
    DatasetNotFoundError
        (An ``OSError``.) No dataset at ``source_url`` (the original's 'Passed non-file path').
    NoMatchingFieldsError
        (A ``ValueError``.) ``field_regex`` matches no field (as the original, which raised ``ValueError``).
    PetastormArgumentError
        (A ``ValueError``.) ``target_url`` exists and ``overwrite_output`` is False, a ``not_null_fields``
        name the source lacks, or a bad count or size. All checked before Spark reads anything.
    """
    plan = _check_copy(source_url, target_url, field_regex, not_null_fields, overwrite_output, partitions_count,
                       row_group_size_mb, hdfs_driver)
    if spark is None:
        from petastorm.tools._arrow_copy import copy_with_pyarrow

        copy_with_pyarrow(source_url, target_url, plan.target_schema, plan.source_schema, plan.names, plan.not_null,
                          overwrite_output, plan.partitions_count, plan.row_group_size_mb, hdfs_driver, progress)
        return
    from petastorm.etl.dataset_metadata import materialize_dataset

    df = spark.read.parquet(source_url)
    for name in plan.not_null:
        df = df.filter(df[name].isNotNull())
    df = df.select(*plan.names)
    if plan.partitions_count is not None:
        df = df.repartition(plan.partitions_count)
    with spark_progress(spark, enabled=progress, desc=_PROG):
        with materialize_dataset(spark, target_url, plan.target_schema, plan.row_group_size_mb):
            writer = df.write.mode("overwrite" if overwrite_output else "errorifexists")
            writer.option("compression", "none").parquet(target_url)  # uncompressed, as the original


def args_parser() -> argparse.ArgumentParser:
    """The command line of ``petastorm-copy-dataset`` (the original's arguments and defaults)."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="This command line utility creates a copy of a Petastorm dataset while optionally:\n"
                    " - selects a set of columns\n"
                    " - filters out rows with null values in specified fields.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source_url", type=str, help="A url of a source petastorm dataset")
    parser.add_argument("target_url", type=str, help="A url of a target petastorm datset")
    parser.add_argument("--overwrite-output", action="store_true",
                        help="If the flag is set to false, the script will fail in case when the output "
                             "directory already exists")
    parser.add_argument("--field-regex", type=str, nargs="+",
                        help="A list of regular expressions. Only fields that match one of the regex patterns "
                             "will be copied.")
    parser.add_argument("--not-null-fields", type=str, nargs="+",
                        help="All names in this list must be not null in the source dataset in order to be "
                             "copied to the target dataset.")
    parser.add_argument("--partition-count", type=positive_int, required=False,
                        help="Specifies number of partitions in the output dataset")
    parser.add_argument("--row-group-size-mb", type=positive_float, required=False,
                        help="Specifies the row group size in the created dataset")
    parser.add_argument("--hdfs-driver", type=str, default="libhdfs3",
                        help="A string denoting the hdfs driver to use (if using a dataset on hdfs). Current "
                             "choices are libhdfs (java through JNI) or libhdfs3 (C++)")
    parser.add_argument("--master", type=str,
                        help='Spark master. Default if not specified. To run on a local machine, specify '
                             '"local[W]" (where W is the number of local spark workers, e.g. local[10])')
    parser.add_argument("--spark-session-config", type=_key_value, nargs="+",
                        help='A list of "=" separated key-value pairs used to configure SparkSession object. '
                             'For example: --spark-session-config spark.executor.cores=2 '
                             'spark.executor.memory=10g')
    parser.add_argument("--engine", choices=["spark", "pyarrow"], default="spark",
                        help="spark (default, as the original): a Spark job. pyarrow: copy in this process with "
                             "pyarrow, no JVM (each source file gives one target file unless --partition-count)")
    parser.add_argument("--no-progress", action="store_true",
                        help="Do not show the progress bar (Spark tasks, or files with --engine pyarrow) on stderr")
    return parser


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def _spark_session(master: Optional[str], config: Optional[list]) -> tuple[Any, bool]:
    """The Spark session to copy with, and whether this tool created it (and must stop it)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ImportError("pyspark is not installed: pip install 'petastorm[spark]', or copy without Spark "
                          "with --engine pyarrow") from None

    created = SparkSession.getActiveSession() is None
    builder = SparkSession.builder.appName(_PROG)
    if master:
        builder = builder.master(master)
    for key, value in config or []:
        builder = builder.config(key, value)
    return builder.getOrCreate(), created


def _main(sys_argv: Optional[Sequence[str]]) -> int:
    """Run ``petastorm-copy-dataset`` with ``sys_argv`` (without the program name); return the exit status.

    Everything that can be checked without Spark (the source, the regexes, the not-null fields, the target)
    is checked before a Spark session is started.
    """
    def body(args: argparse.Namespace) -> None:
        if args.engine == "pyarrow" and (args.master or args.spark_session_config):
            raise PetastormArgumentError("--master and --spark-session-config configure Spark: they cannot be "
                                         "used with --engine pyarrow")
        _check_copy(args.source_url, args.target_url, args.field_regex, args.not_null_fields, args.overwrite_output,
                    args.partition_count, args.row_group_size_mb, args.hdfs_driver)
        if args.engine == "pyarrow":
            copy_dataset(None, args.source_url, args.target_url, args.field_regex, args.not_null_fields,
                         args.overwrite_output, args.partition_count, args.row_group_size_mb, args.hdfs_driver,
                         progress=not args.no_progress)
            return
        spark, created = _spark_session(args.master, args.spark_session_config)
        try:
            copy_dataset(spark, args.source_url, args.target_url, args.field_regex, args.not_null_fields,
                         args.overwrite_output, args.partition_count, args.row_group_size_mb, args.hdfs_driver,
                         progress=not args.no_progress)
        finally:
            if created:
                spark.stop()

    return run_cli(_PROG, args_parser(), sys_argv, body)


def main() -> None:
    """Console script entry point: ``sys.exit(_main(sys.argv[1:]))``."""
    sys.exit(_main(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    main()
