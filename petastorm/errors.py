"""One exception hierarchy for petastorm.

Every error raised on purpose by petastorm derives from :class:`PetastormError`. Where the original
library raised a built-in type (``ValueError``, ``RuntimeError``...), our class derives from that type
too, so ``except ValueError`` in existing user code keeps working.
"""
from __future__ import annotations

__all__ = [
    "PetastormError",
    "PetastormMetadataError",
    "PetastormMetadataGenerationError",
    "PetastormSchemaError",
    "PetastormStateError",
    "PetastormWorkerError",
    "PetastormFilesystemError",
    "PetastormDriverMissingError",
    "PetastormFilesystemUnavailableError",
    "PetastormDatasetError",
    "PetastormReaderError",
    "PetastormEmptyBufferError",
    "PetastormArgumentError",
    "CompressionCodecError",
    "PetastormWriteError",
    "NoDataAvailableError",
    "NoMatchingFieldsError",
    "DatasetNotFoundError",
    "PetastormTransformError",
    "PetastormTypeError",
    "PetastormBatchShapeError",
    "PetastormKeyError",
    "EmptyResultError",
    "TimeoutWaitingForResultError",
    "PetastormDecodeError",
    "PetastormValueTypeError",
    "PetastormArgumentTypeError",
]


class PetastormError(Exception):
    """Base class of every error petastorm raises on purpose."""


class PetastormMetadataError(PetastormError):
    """The Petastorm metadata of a dataset is missing, unreadable or refused as unsafe.

    Same name and role as the original's ``petastorm.etl.dataset_metadata.PetastormMetadataError``.
    """


class PetastormMetadataGenerationError(PetastormError):
    """Metadata could not be generated for a dataset (original name kept)."""


class PetastormSchemaError(PetastormError, ValueError):
    """A value does not fit its Unischema field (dtype, shape, nullability) or a schema is invalid."""


class PetastormStateError(PetastormError, ValueError):
    """A saved reader state does not fit the reader it is loaded into."""


class PetastormWorkerError(PetastormError, RuntimeError):
    """A worker thread or process failed or died."""


class PetastormFilesystemError(PetastormError, ValueError):
    """A URL cannot be resolved to a filesystem, or the driver for it is missing."""


class PetastormDriverMissingError(PetastormFilesystemError, ImportError):
    """The package that reads a URL's scheme (gcsfs, adlfs, s3fs...) is not installed; the message names it.
    An ``ImportError``, as the original's (fsspec's) error was."""


class PetastormFilesystemUnavailableError(PetastormFilesystemError, OSError):
    """A filesystem cannot be reached (HDFS: libhdfs or the JVM cannot be loaded, the namenode does not answer);
    the message names the URL. An ``OSError``, as pyarrow's error (and the original's) was."""


class PetastormDatasetError(PetastormError, ValueError):
    """A dataset location holds no readable Parquet data, or a file in it is corrupt."""


class PetastormReaderError(PetastormError, RuntimeError):
    """A reader was used in a way its state does not allow (for example after ``stop()``)."""


class PetastormEmptyBufferError(PetastormReaderError, IndexError):
    """``retrieve()`` on an empty shuffling buffer. A ``RuntimeError`` and the ``IndexError`` the original's
    ``NoopShufflingBuffer`` raised (``pop from an empty deque``)."""


class PetastormArgumentError(PetastormError, ValueError):
    """An argument has a value that is not allowed; the message names the argument."""


class CompressionCodecError(PetastormArgumentError, RuntimeError):
    """``compression_codec`` of ``make_spark_converter`` is not a Parquet codec Spark writes (a
    ``RuntimeError``, as in the original)."""


class PetastormWriteError(PetastormError, OSError):
    """Writing a dataset failed; nothing was published. Also an ``OSError``: the target is a file or a
    directory that is no dataset, the disk is full, a worker died; code that catches ``OSError`` around a
    write catches it."""


class NoDataAvailableError(PetastormError, RuntimeError):
    """A reader, shard or predicate selects no data (original name kept)."""


class EmptyResultError(PetastormError, RuntimeError):
    """No more results (original name kept, from ``petastorm.workers_pool``)."""


class TimeoutWaitingForResultError(PetastormError, RuntimeError):
    """Timed out waiting for a result from a worker (original name kept)."""


class NoMatchingFieldsError(PetastormSchemaError, RuntimeError):
    """``schema_fields`` selects no field (the original raised ``RuntimeError`` with the same wording)."""


class DatasetNotFoundError(PetastormDatasetError, FileNotFoundError):
    """The dataset path does not exist (the original let pyarrow raise an ``OSError``)."""


class PetastormTransformError(PetastormSchemaError, TypeError):
    """A ``TransformSpec`` function returned something of the wrong type or without a declared field."""


class PetastormTypeError(PetastormError, TypeError):
    """An argument has the wrong type; the message names the argument."""


class PetastormBatchShapeError(PetastormTypeError, RuntimeError):
    """Values of one field cannot be stacked into one tensor (cells of different shapes in one batch). A
    ``RuntimeError``, as torch's own stacking error that the original let through, and a ``TypeError``."""


class PetastormKeyError(PetastormError, KeyError):
    """A name (an index, a field) is not where it was looked up; the message says which."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class PetastormDecodeError(PetastormSchemaError):
    """A stored cell cannot be decoded (a corrupt ``.npy``, ``.npz`` or image), or decodes to a value that
    does not fit its field (another dtype or shape). The reader's message names the field, the Parquet
    file, the row group and the row. A ``ValueError``, as the original's decoding errors were.

    Attributes
    ----------
    row : int or None
        Index of the cell in the column that was decoded (the reader turns it into the row of the row group).
    detail : str
        What is wrong with the cell, without the place.
    """

    def __init__(self, message: str, row: "int | None" = None, detail: "str | None" = None) -> None:
        super().__init__(message)
        self.row = row
        self.detail = message if detail is None else detail


class PetastormValueTypeError(PetastormSchemaError, TypeError):
    """A value given for a field has a Python type the field cannot take (``dict_to_spark_row``, the codecs'
    ``encode``). Both a ``TypeError`` and a ``ValueError``: the original raised one or the other depending on
    the field's codec and the value."""


class PetastormArgumentTypeError(PetastormArgumentError, PetastormTypeError):
    """An argument, or an element of it, has the wrong type; the message names the argument. Both a
    ``ValueError`` and a ``TypeError``: the original raised one or the other for the same argument depending on
    the entry point (``schema_fields=3``: ``ValueError`` from ``make_reader``, ``TypeError`` from
    ``dataset_as_rdd``)."""


def add_note(error: BaseException, note: str) -> None:
    """``error.add_note(note)`` where Python has it (3.11+); on 3.10 the note is appended to the first argument
    of a plain exception whose message is a string (other exceptions are left as they are)."""
    if hasattr(error, "add_note"):
        error.add_note(note)
    elif error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]} ({note})",) + error.args[1:]
