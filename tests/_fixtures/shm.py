"""A process-pool worker's shared-memory writer and the parent's reader joined by a real unix socket, for the
transport tests (tests/reader_impl/process/)."""
import gc
import socket
from collections import deque

from petastorm.reader_impl.process.transport import ShmReader, ShmWriter


class ShmPair:
    """A writer (the worker's side) and a reader (the parent's) over a socket pair; ``msgs`` holds what the
    writer sent to the parent and :meth:`roundtrip` has not applied yet."""

    def __init__(self, max_free: int = 4):
        self.a, self.b = socket.socketpair()
        self.msgs: list = []
        self.writer = ShmWriter(self.msgs.append, self.a, "shm", max_free)
        self.releases: deque = deque()
        self.reader = ShmReader(self.b, 0, self.releases)

    def roundtrip(self, obj):
        """``(payload, decoded)`` of ``obj`` sent through the writer and read back by the reader."""
        payload = self.writer.encode(obj)
        for m in self.msgs:
            if m[0] == "seg":
                self.reader.add_segment(m[1], m[2])
            elif m[0] == "drop":
                self.reader.drop_segment(m[1])
        self.msgs.clear()
        return payload, self.reader.decode(payload)

    def release_collected(self):
        """Hand back to the writer the segments of the results the garbage collector freed; their ids."""
        gc.collect()
        sids = [sid for _key, sid in self.releases]
        self.releases.clear()
        self.writer.release(sids)
        return sids

    def close(self):
        self.writer.close()
        self.reader.close()
        self.a.close()
        self.b.close()
