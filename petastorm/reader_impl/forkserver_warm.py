"""The fork server imports this module after its own: a two-row Parquet file read from memory, so that the workers
it forks find Arrow's lazily initialised parts (the Snappy codec, the Parquet reader's and the binary
decoder's first-use set-up) ready instead of each paying 10-100 ms for them on its first row group.

The file is embedded (written once by ``pyarrow.parquet.write_table``, whose first call imports pandas:
~0.45 s the fork server must not spend). Reading it starts no thread and imports nothing (checked in the
tests). Imported anywhere but in the fork server (or a process it forked), the module does nothing.
"""
from __future__ import annotations

import base64

from petastorm.reader_impl.worker_env import in_fork_server

__all__ = ["TINY_PARQUET", "WARMED", "warm_arrow"]

#: True in the fork server once the read went through (and so in every worker it forks after that).
WARMED = False

#: ``id`` int64 [1, 2] and ``blob`` binary [b"ab", b"cd"], Snappy, one row group.
TINY_PARQUET = base64.b64decode(
    "UEFSMRUEFSAVJEwVBBUAEgAAEDwBAAAAAAAAAAIAAAAAAAAAFQAVEhUWLBUEFRAVBhUGHBgIAgAAAAAAAAAYCAEAAAAAAAAA"
    "FgAoCAIAAAAAAAAAGAgBAAAAAAAAABERAAAACSACAAAABAEBAwIVBBUYFRxMFQQVABIAAAwsAgAAAGFiAgAAAGNkFQAVEhUW"
    "LBUEFRAVBhUGHDYAKAJjZBgCYWIREQAAAAkgAgAAAAQBAQMCFQQZPDUAGAZzY2hlbWEVBAAVBCUCGAJpZAAVDCUCGARibG9i"
    "ABYEGRwZLCYAHBUEGTUABhAZGAJpZBUCFgQWzAEW1AEmSCYIHBgIAgAAAAAAAAAYCAEAAAAAAAAAFgAoCAIAAAAAAAAAGAgB"
    "AAAAAAAAABERABksFQQVABUCABUAFRAVAgA8KQYZJgAEAAAAJgAcFQwZNQAGEBkYBGJsb2IVAhYEFoQBFowBJpQCJtwBHDYA"
    "KAJjZBgCYWIREQAZLBUEFQAVAgAVABUQFQIAPBYIGQYZJgAEAAAAFtACFgQmCBbgAgAoIHBhcnF1ZXQtY3BwLWFycm93IHZl"
    "cnNpb24gMjYuMC4xGSwcAAAcAAAAEQEAAFBBUjE=")


def warm_arrow() -> None:
    """Read :data:`TINY_PARQUET` the way a worker reads a row group (returns nothing)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.ParquetFile(pa.BufferReader(TINY_PARQUET), buffer_size=1 << 20).read_row_group(0, use_threads=False)
    np.frombuffer(table.column("blob").chunk(0).buffers()[2], dtype=np.uint8)


if in_fork_server():
    try:
        warm_arrow()
        WARMED = True
    except Exception:  # noqa: BLE001 - an optimisation: never stop the fork server over it
        pass
