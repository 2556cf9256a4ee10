"""Build row-group indexes of a Petastorm dataset and load them back.

:func:`build_rowgroup_index` reads the indexed columns of every row group (distributed over a Spark
context when one is given, in this process otherwise), decodes them with the fields' codecs, feeds the
rows to the indexers and stores the merged indexes in ``_common_metadata`` under
:data:`~petastorm.etl.dataset_metadata.ROWGROUPS_INDEX_KEY`, pickled as the original library does.
Row-group ids are positions in :func:`petastorm.etl.dataset_metadata.load_row_groups` order.

Readers use :func:`load_rowgroup_indexes` (allow-list unpickling) and :func:`select_row_groups`.
"""
from __future__ import annotations

import copy
import posixpath
from typing import Any, Iterable, Optional

from petastorm.errors import PetastormArgumentError, PetastormDatasetError, PetastormMetadataError
from petastorm.etl import RowGroupIndexerBase
from petastorm.etl.dataset_metadata import (
    COMMON_METADATA_FILE,
    ROWGROUPS_INDEX_KEY,
    RowGroupPiece,
    count_row_groups_per_file,
    dataset_location,
    dataset_row_groups,
    ensure_paths_exist,
    load_num_row_groups_per_file,
    load_unischema,
    read_dataset_metadata,
    resolve_dataset_url,
    write_petastorm_metadata,
)
from petastorm.etl.safe_unpickle import dumps_unischema, safe_loads

__all__ = [
    "ROWGROUPS_INDEX_KEY",
    "build_rowgroup_index",
    "get_row_group_indexes",
    "load_rowgroup_indexes",
    "select_row_groups",
    "index_row_group",
]

_NO_INDEX = ("Row groups index is not available in the dataset metadata file. You can generate it on an "
             "existing dataset using rowgroup_indexing_run.py")
_PIECES_PER_TASK = 16


def load_rowgroup_indexes(metadata: dict, source: str) -> dict[str, RowGroupIndexerBase]:
    """Indexes stored in ``metadata`` (index name -> indexer); ``{}`` when the dataset has none.

    Raises
    ------
    PetastormMetadataError
        Naming ``source``, when the stored pickle is refused or does not hold indexers.
    """
    raw = metadata.get(ROWGROUPS_INDEX_KEY)
    if raw is None:
        return {}
    indexes = safe_loads(raw, source)
    if not isinstance(indexes, dict) or not all(
            isinstance(k, str) and isinstance(v, RowGroupIndexerBase) for k, v in indexes.items()):
        raise PetastormMetadataError(f"{source}: {ROWGROUPS_INDEX_KEY.decode()} does not hold a dict of indexers")
    for name, indexer in indexes.items():
        data = getattr(indexer, "_index_data", None)
        if not isinstance(data, (dict, set)) or (isinstance(data, dict) and not all(
                isinstance(v, (set, frozenset)) for v in data.values())):
            raise PetastormMetadataError(f"{source}: the row-group index {name!r} has malformed data")
    return dict(indexes)


def get_row_group_indexes(dataset: Any) -> dict[str, RowGroupIndexerBase]:
    """Indexes stored with ``dataset`` (a ``pyarrow.parquet.ParquetDataset`` or an object with
    ``filesystem`` and ``base_path``).

    Raises
    ------
    PetastormDatasetError (a ValueError)
        When the dataset has no row-group index, with the original's message.
    """
    filesystem, path = dataset_location(dataset)
    indexes = load_rowgroup_indexes(read_dataset_metadata(filesystem, path),
                                    posixpath.join(path, COMMON_METADATA_FILE))
    if not indexes:
        raise PetastormDatasetError(f"{_NO_INDEX} (dataset: {path})")
    return indexes


def select_row_groups(selector: Any, indexes: Optional[dict[str, RowGroupIndexerBase]],
                      source: str = "") -> set[int]:
    """Row-group ids that ``selector`` (a :class:`petastorm.selectors.RowGroupSelectorBase`) picks.

    Raises
    ------
    PetastormDatasetError (a ValueError)
        The dataset has no index (``indexes`` empty or None).
    PetastormArgumentError (a ValueError)
        The selector names indexes the dataset lacks.
    """
    where = f" (dataset: {source})" if source else ""
    if not indexes:
        raise PetastormDatasetError(f"{_NO_INDEX}{where}")
    missing = [name for name in selector.get_index_names() if name not in indexes]
    if missing:
        raise PetastormArgumentError(
            f"Some of required indexes {missing} are not available in {list(indexes)}{where}")
    return set(selector.select_row_groups(indexes))


# --- building ------------------------------------------------------------------------------------------

def _decode_rows(schema: Any, table: Any, piece: RowGroupPiece, columns: list[str]) -> list[dict]:
    """Decode the ``columns`` of one row group into a list of row dicts (partition columns included)."""
    from petastorm.codecs import decode_native_column

    n = table.num_rows
    partitions = dict(piece.partition_keys)
    decoded: dict[str, Any] = {}
    for name in columns:
        field = schema.fields[name]
        if name in table.column_names:
            column = table.column(name)
            decoded[name] = field.codec.decode_column(field, column) if field.codec is not None \
                else decode_native_column(field, column)
        elif name in partitions:
            raw = partitions[name]
            value = field.codec.decode(field, raw) if field.codec is not None else raw
            decoded[name] = [value] * n
        else:
            raise PetastormDatasetError(f"{piece.path}: column {name!r} is neither in the file nor a partition key")
    return [{name: decoded[name][i] for name in columns} for i in range(n)]


def index_row_group(filesystem: Any, schema: Any, piece: RowGroupPiece, piece_index: int,
                    indexers: Iterable[RowGroupIndexerBase]) -> None:
    """Read and decode the indexed columns of one row group and add its rows to ``indexers``."""
    import pyarrow.parquet as pq

    indexers = list(indexers)
    columns = sorted({c for ix in indexers for c in ix.column_names})
    try:
        with filesystem.open_input_file(piece.path) as f:
            parquet_file = pq.ParquetFile(f)
            in_file = [c for c in columns if c in parquet_file.schema_arrow.names]
            table = parquet_file.read_row_group(piece.row_group, columns=in_file)
            rows = _decode_rows(schema, table, piece, columns)
    except (OSError, ValueError) as e:
        if isinstance(e, PetastormDatasetError):
            raise
        raise PetastormDatasetError(f"{piece.path}: cannot read row group {piece.row_group}: {e}") from e
    for indexer in indexers:
        indexer.build_index(rows, piece_index)


def _combine(left: list, right: list) -> list:
    return [a + b for a, b in zip(left, right)]


def _index_pieces(dataset_url: str, hdfs_driver: str, storage_options: Optional[dict], schema: Any, blank: list,
                  numbered_pieces: Iterable[tuple[int, RowGroupPiece]]) -> list:
    """Index a batch of row groups with fresh copies of ``blank`` (runs in Spark executors too)."""
    filesystem, _ = resolve_dataset_url(dataset_url, hdfs_driver, storage_options)
    indexers = copy.deepcopy(blank)
    for number, piece in numbered_pieces:
        index_row_group(filesystem, schema, piece, number, indexers)
    return indexers


def build_rowgroup_index(dataset_url: str, spark_context: Any, indexers: list[RowGroupIndexerBase],
                         hdfs_driver: str = "libhdfs3", storage_options: Optional[dict] = None) -> None:
    """Build row-group indexes of the dataset at ``dataset_url`` and store them in its ``_common_metadata``.

    Parameters
    ----------
    dataset_url : str
    spark_context : pyspark.SparkContext or None
        With a context, row groups are indexed in Spark tasks (``parallelize``); with ``None``, in this
        process.
    indexers : list of RowGroupIndexerBase
        For example ``[SingleFieldIndexer('by_id', 'id'), FieldNotNullIndexer('has_label', 'label')]``;
        indexes already stored under other names are kept, those with the same name replaced.
    hdfs_driver : str
    storage_options : dict, optional
        Filesystem options (s3fs style) for ``dataset_url``; petastorm's addition to the original signature.

    Raises
    ------
    OSError
        The dataset does not exist.
    PetastormMetadataError
        The dataset has no stored Unischema.
    PetastormArgumentError
        An indexer names a field that is not in the schema.
    """
    indexers = list(indexers)
    if not indexers or not all(isinstance(ix, RowGroupIndexerBase) for ix in indexers):
        raise PetastormArgumentError(f"indexers must be a non-empty list of RowGroupIndexerBase, got {indexers!r}")
    filesystem, path = resolve_dataset_url(dataset_url, hdfs_driver, storage_options)
    ensure_paths_exist(filesystem, path)  # a missing dataset is an OSError, as the original's
    source = posixpath.join(path, COMMON_METADATA_FILE)
    metadata = read_dataset_metadata(filesystem, path)
    schema = load_unischema(metadata, source)
    if schema is None:
        raise PetastormMetadataError(f"{dataset_url}: the dataset has no Petastorm schema; generate its metadata "
                                     f"first (petastorm-generate-metadata)")
    for indexer in indexers:
        unknown = [c for c in indexer.column_names if c not in schema.fields]
        if unknown:
            raise PetastormArgumentError(f"indexer {indexer.index_name!r}: fields {unknown} are not in the schema "
                                         f"{list(schema.fields)}")
    pieces = dataset_row_groups(filesystem, path, metadata, source)
    numbered = list(enumerate(pieces))
    blank = copy.deepcopy(indexers)
    if spark_context is None or not numbered:
        built = _index_pieces(dataset_url, hdfs_driver, storage_options, schema, blank, numbered)
    else:
        slices = max(1, min(len(numbered), (len(numbered) + _PIECES_PER_TASK - 1) // _PIECES_PER_TASK,
                            spark_context.defaultParallelism * 4))
        built = (spark_context.parallelize(numbered, slices)
                 .mapPartitions(lambda part: [_index_pieces(dataset_url, hdfs_driver, storage_options, schema,
                                                            blank, part)])
                 .reduce(_combine))
    stored = load_rowgroup_indexes(metadata, source)
    stored.update({ix.index_name: ix for ix in built})
    counts = load_num_row_groups_per_file(metadata, source) or count_row_groups_per_file(filesystem, path)
    write_petastorm_metadata(filesystem, path, schema, counts, extra={ROWGROUPS_INDEX_KEY: dumps_unischema(stored)})
