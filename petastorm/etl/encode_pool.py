"""Encoding stage of the embedded writer: rows in, Arrow record batches out, in input order.

:func:`encoded_batches` takes the items the user gives to :func:`petastorm.etl.writer.write_dataset`
(row dicts, or Arrow record batches / tables / pandas DataFrames whose columns are already encoded) and
yields ``(pyarrow.RecordBatch, first_row_index)`` pairs whose columns have exactly the Arrow types of
:func:`dataset_arrow_schema`.

Row dicts are grouped in chunks (``chunk_rows`` rows, at most :data:`CHUNK_BYTES` of arrays) and encoded
with the fields' codecs (:func:`petastorm.unischema.encode_row`) in a process pool; a worker turns its
chunk into one Arrow record batch. At most ``2 * workers_count`` chunks are in flight, which bounds
memory; results come back in input order whatever order the workers finish in.

Process start method: ``forkserver`` where the platform has it (``spawn`` elsewhere), never a plain
``fork`` of a process that may run threads (OpenCV, Arrow, tqdm). As with every spawn-style pool, a
script that writes with several workers must guard its entry point with ``if __name__ == "__main__":``.
The schema travels to the workers with cloudpickle, so codecs defined in a script or a notebook work.
Each worker runs a thread that exits it once the writing process is gone (checked every 0.5 s by pid and
start time): a writer killed by SIGKILL or the OOM killer cannot stop its pool, whose workers would
otherwise wait on their queue forever (and keep the forkserver alive).
"""
from __future__ import annotations

import collections
import functools
import multiprocessing
import os
import signal
import uuid
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional

import pyarrow as pa

from petastorm.errors import PetastormError, PetastormSchemaError, PetastormWorkerError, PetastormWriteError
from petastorm.etl.arrow_encoding import (
    dataset_arrow_schema,
    encode_rows_to_batch,
    is_encoded_input,
    validate_encoded_batch,
)
from petastorm.etl.parent_watch import process_identity, start_parent_watch
from petastorm.unischema import Unischema

__all__ = ["dataset_arrow_schema", "encode_rows_to_batch", "validate_encoded_batch", "is_encoded_input",
           "encoded_batches"]

#: Chunks in flight per worker: enough to keep every worker busy while the main process writes.
_INFLIGHT_PER_WORKER = 2
#: A chunk of row dicts is sent once its arrays reach this many bytes, even before ``chunk_rows`` rows.
CHUNK_BYTES = 4 << 20  # also keeps the batches below mimalloc's huge-allocation size (mmap + munmap each)

_MAIN_GUARD_HINT = ("If the writing script has no `if __name__ == \"__main__\":` guard, add one (worker processes "
                    "import the main module); or pass workers_count=1 to encode in this process.")



_SHM_MIN_BYTES = 4096  # smaller arrays travel in the pickle
_ALIGN = 64


class _ShmArray(NamedTuple):
    """Where one array of a chunk lies in the slot's input block."""

    offset: int
    dtype: Any
    shape: tuple
    order: str

    def view(self, buf: Any) -> Any:
        import numpy as np

        return np.ndarray(self.shape, self.dtype, buffer=buf, offset=self.offset, order=self.order)


def _shm(name: str, size: int = 0) -> Any:
    from multiprocessing import shared_memory

    return shared_memory.SharedMemory(name=name, create=size > 0, size=size)


def _shm_free(shm: Any, unlink: bool = True) -> None:
    try:
        shm.close()
    except BufferError:  # a view is still alive somewhere; the mapping goes with it
        pass
    if unlink:
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


def _shm_room(nbytes: int) -> bool:
    """Whether ``/dev/shm`` (where it exists) has room for ``nbytes`` with margin: a full tmpfs would
    kill the process with SIGBUS on first touch instead of raising."""
    try:
        st = os.statvfs("/dev/shm")
    except (OSError, AttributeError):
        return True
    return st.f_bavail * st.f_frsize > 4 * nbytes + (64 << 20)


def _ipc_size(batch: pa.RecordBatch) -> int:
    counter = pa.MockOutputStream()
    with pa.ipc.new_stream(counter, batch.schema) as writer:
        writer.write_batch(batch)
    return counter.size()


def _write_ipc(batch: pa.RecordBatch, buf: Any) -> None:
    target = pa.py_buffer(buf)
    stream = pa.FixedSizeBufferWriter(target)
    with pa.ipc.new_stream(stream, batch.schema) as writer:
        writer.write_batch(batch)
    stream.close()


class _Slot:
    """The shared blocks of one chunk in flight (``None`` until needed)."""

    __slots__ = ("name", "gen", "inp", "out")

    def __init__(self, name: str) -> None:
        self.name, self.gen, self.inp, self.out = name, 0, None, None

    def _grow(self, attr: str, need: int) -> Any:
        block = getattr(self, attr)
        if block is None or block.size < need:
            if block is not None:
                _shm_free(block)
            self.gen += 1
            block = _shm(f"{self.name}{attr[0]}{self.gen}", max(need + need // 4, 1 << 20))
            setattr(self, attr, block)
        return block

    def pack(self, rows: list) -> tuple[Optional[tuple], list]:
        """Copy the large arrays of ``rows`` into the input block: ``((in, out, out size), packed rows)``,
        or ``(None, rows)`` when shared memory is not used."""
        import numpy as np

        packed, placed, total = [], [], 0
        for row in rows:
            out = {}
            for key, value in row.items():
                if type(value) is np.ndarray and not value.dtype.hasobject and value.nbytes >= _SHM_MIN_BYTES:
                    order = "F" if value.flags.f_contiguous and not value.flags.c_contiguous else "C"
                    offset = -(-total // _ALIGN) * _ALIGN
                    out[key] = ref = _ShmArray(offset, value.dtype, value.shape, order)
                    placed.append((ref, value))
                    total = offset + value.nbytes
                else:
                    out[key] = value
            packed.append(out)
        if not placed or not _shm_room(2 * total):
            return None, rows
        try:
            inp = self._grow("inp", total)
            out = self._grow("out", total + (1 << 20))
        except OSError:
            return None, rows
        for ref, value in placed:
            np.copyto(ref.view(inp.buf), value)
        return (inp.name, out.name, out.size), packed

    def unpack(self, result: Any) -> pa.RecordBatch:
        """The batch a worker returned: copied out of the output block (or of a one-off block)."""
        if isinstance(result, pa.RecordBatch):
            return result
        name, size = result
        block = self.out if name == self.out.name else _shm(name)
        try:
            data = pa.allocate_buffer(size, memory_pool=pa.system_memory_pool())  # see _ParquetFile._open
            view = block.buf[:size]
            memoryview(data).cast("B")[:] = view
            view.release()
        finally:
            if block is not self.out:
                _shm_free(block)
                self._grow("out", size)  # next time it fits
        return pa.ipc.open_stream(data).read_next_batch()

    def close(self) -> None:
        for block in (self.inp, self.out):
            if block is not None:
                _shm_free(block)
        self.inp = self.out = None


# --- the worker side ----------------------------------------------------------------------------------------

_WORKER_STATE: dict = {}
_ATTACHED: "collections.OrderedDict[str, Any]" = collections.OrderedDict()
_MAX_ATTACHED = 16


def _attached(name: str) -> Any:
    """A shared block mapped once per worker and kept (its pages stay faulted in)."""
    block = _ATTACHED.pop(name, None) or _shm(name)
    _ATTACHED[name] = block
    while len(_ATTACHED) > _MAX_ATTACHED:
        _shm_free(_ATTACHED.popitem(last=False)[1], unlink=False)
    return block


def _init_worker(schema_bytes: bytes, parent_pid: Optional[int] = None,
                 parent_identity: Optional[str] = None) -> None:
    """Process pool initializer: load the schema once; leave Ctrl-C to the parent; exit when the parent dies."""
    import cloudpickle

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        start_parent_watch(parent_pid, parent_identity)
    _keep_freed_memory()
    schema = cloudpickle.loads(schema_bytes)
    _WORKER_STATE["schema"] = schema
    _WORKER_STATE["arrow_schema"] = dataset_arrow_schema(schema)
    from petastorm.codecs import CompressedImageCodec
    from petastorm.image_io import opencv

    cv2 = opencv() if any(isinstance(f.codec, CompressedImageCodec) for f in schema.fields.values()) else None
    if cv2 is not None:
        cv2.setNumThreads(1)  # one process per core already; OpenCV threads would only contend


def _keep_freed_memory() -> None:
    """glibc only: keep freed chunks of up to 64 MiB in the heap. A worker allocates and frees the same
    few megabytes per chunk; by default glibc returns them to the OS and faults them in again each time."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 64 << 20)   # M_MMAP_THRESHOLD
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _starting_workers() -> Any:
    """Context for ``submit()``, which may start workers: a script read from stdin (``python - <<EOF``), whose
    main module has a ``__file__`` that names no file, is not re-run by them (they would try to run
    '<cwd>/<stdin>' and die); a script file is re-imported as usual, so that the rows' values of classes it
    defines (an ``IntEnum`` of labels) unpickle in the workers."""
    import contextlib
    import sys

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None or os.path.isfile(path):
        return contextlib.nullcontext()
    from petastorm.main_module import main_module_not_reimported

    return main_module_not_reimported()


def _encode_in_worker(rows: list, first_row: int, blocks: Optional[tuple]) -> Any:
    """Encode one chunk. Returns the batch itself, or ``(block name, size)`` of its IPC stream."""
    schema, arrow_schema = _WORKER_STATE["schema"], _WORKER_STATE["arrow_schema"]
    if blocks is None:
        return encode_rows_to_batch(schema, arrow_schema, rows, first_row)
    in_name, out_name, out_size = blocks
    buf = _attached(in_name).buf
    rows = [{k: v.view(buf) if isinstance(v, _ShmArray) else v for k, v in row.items()} for row in rows]
    batch = encode_rows_to_batch(schema, arrow_schema, rows, first_row)
    del rows, buf
    size = _ipc_size(batch)
    if size <= out_size:
        _write_ipc(batch, _attached(out_name).buf)
        return out_name, size
    block = _shm(out_name + "x", size)  # a one-off block; the main process unlinks it
    try:
        _write_ipc(batch, block.buf)
    finally:
        _shm_free(block, unlink=False)
    return block.name, size


def _preload_modules(schema: Unischema) -> list[str]:
    import importlib.util

    from petastorm.codecs import CompressedImageCodec

    names = ["petastorm.etl.encode_pool", "petastorm.codecs", "cloudpickle", "pyarrow.parquet"]
    if importlib.util.find_spec("pandas"):
        names.append("pandas")  # pyarrow imports it on the first pa.array() of a list, in every worker
    for f in schema.fields.values():  # the codecs' modules, and pyspark's for ScalarCodec(<pyspark type>)
        for obj in (f.codec, getattr(f.codec, "_spark_type", None)):
            module = type(obj).__module__
            if obj is not None and module not in names and module not in ("__main__", "builtins"):
                names.append(module)
    if any(isinstance(f.codec, CompressedImageCodec) for f in schema.fields.values()):
        names += ["petastorm.image_io"] + (["cv2"] if importlib.util.find_spec("cv2") else [])
    return names


# --- the main side ------------------------------------------------------------------------------------------

class _Pending:
    """One chunk on its way: a pool future, or work deferred to this process (so errors keep input order)."""

    __slots__ = ("first_row", "num_rows", "future", "thunk", "slot")

    def __init__(self, first_row: int, num_rows: int, future: Optional[Future] = None,
                 thunk: Optional[Callable[[], Optional[pa.RecordBatch]]] = None, slot: Optional[_Slot] = None) -> None:
        self.first_row, self.num_rows, self.future, self.thunk, self.slot = first_row, num_rows, future, thunk, slot

    def result(self) -> Optional[pa.RecordBatch]:
        if self.thunk is not None:
            return self.thunk()
        rows = f"rows {self.first_row:,}..{self.first_row + self.num_rows - 1:,} of the input"
        try:
            return self.slot.unpack(self.future.result())
        except BrokenProcessPool as e:
            raise _worker_died(f"while {rows} were being encoded") from e
        except PetastormError:
            raise
        except Exception as e:  # the chunk could not be sent to or returned from the worker
            raise PetastormWriteError(f"{rows} could not be encoded in a worker process: "
                                      f"{type(e).__name__}: {e}") from e


def _worker_died(when: str) -> PetastormWorkerError:
    return PetastormWorkerError(
        f"an encoding worker process died {when} (killed, out of memory, or a crash in a codec); nothing was "
        f"published. {_MAIN_GUARD_HINT}")


class _EncoderPool:
    """A process pool started on first use, its shared-memory slots, and a quick teardown on abort."""

    def __init__(self, schema: Unischema, workers_count: int, slots: int) -> None:
        self._schema = schema
        self._workers_count = workers_count
        self._executor: Optional[ProcessPoolExecutor] = None
        prefix = f"psw{os.getpid() % 100000}_{uuid.uuid4().hex[:8]}_"
        self._slots = [_Slot(f"{prefix}{i}") for i in range(slots)]
        self._free = collections.deque(self._slots)

    @property
    def started(self) -> bool:
        return self._executor is not None

    def _start(self) -> ProcessPoolExecutor:
        import cloudpickle

        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if context.get_start_method() == "forkserver":  # imported once in the server, not in every worker
            context.set_forkserver_preload(_preload_modules(self._schema))
        return ProcessPoolExecutor(max_workers=self._workers_count, mp_context=context,
                                   initializer=_init_worker,
                                   initargs=(cloudpickle.dumps(self._schema), os.getpid(),
                                             process_identity(os.getpid())))

    def submit(self, rows: list, first_row: int) -> _Pending:
        if self._executor is None:
            self._executor = self._start()
        slot = self._free.popleft()
        blocks, packed = slot.pack(rows)
        try:
            with _starting_workers():  # the workers start in submit(), in this thread
                future = self._executor.submit(_encode_in_worker, packed, first_row, blocks)
        except BrokenProcessPool as e:  # a worker died since the last chunk: seen here, before its result
            self._free.append(slot)
            raise _worker_died(f"before rows {first_row:,}..{first_row + len(rows) - 1:,} of the input could "
                               f"be sent to one") from e
        return _Pending(first_row, len(rows), future=future, slot=slot)

    def release(self, entry: _Pending) -> None:
        if entry.slot is not None:
            self._free.append(entry.slot)

    def shutdown(self, abort: bool) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            if abort:  # do not wait for chunks nobody will read: stop the workers now
                for process in list((getattr(executor, "_processes", None) or {}).values()):
                    if process.is_alive():
                        process.terminate()
            executor.shutdown(wait=True, cancel_futures=True)
        for slot in self._slots:
            if slot.out is not None:
                try:
                    _shm_free(_shm(slot.out.name + "x"))
                except (FileNotFoundError, OSError):
                    pass
            slot.close()


def encoded_batches(schema: Unischema, items: Iterable[Any], *, workers_count: int = 1,
                    chunk_rows: int = 64) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Encode the writer's input into record batches, in input order.

    Parameters
    ----------
    schema : Unischema
    items : iterable
        Row dicts, and/or pyarrow RecordBatches / Tables / pandas DataFrames of already encoded columns.
    workers_count : int
        Encoding processes; 1 encodes in this process. The pool starts only once a full chunk of row
        dicts is there, so a small input never pays for starting processes.
    chunk_rows : int
        Row dicts sent to a worker at a time.

    Yields
    ------
    (pyarrow.RecordBatch, int)
        A batch of :func:`dataset_arrow_schema` columns and the input index of its first row.

    Raises
    ------
    PetastormSchemaError
        For the first bad row (in input order), naming the row and the field.
    PetastormWorkerError
        When a worker process dies; never hangs.
    """
    arrow_schema = dataset_arrow_schema(schema)
    max_inflight = _INFLIGHT_PER_WORKER * max(1, workers_count)
    pool = _EncoderPool(schema, workers_count, max_inflight) if workers_count > 1 else None
    pending: collections.deque[_Pending] = collections.deque()
    chunk: list = []
    chunk_first = chunk_bytes = next_row = 0

    def queue_chunk(final: bool) -> None:
        nonlocal chunk, chunk_bytes
        rows, first = chunk, chunk_first
        chunk, chunk_bytes = [], 0
        if pool is not None and (pool.started or not final):
            pending.append(pool.submit(rows, first))
        else:
            pending.append(_Pending(first, len(rows),
                                    thunk=lambda: encode_rows_to_batch(schema, arrow_schema, rows, first)))

    def take() -> tuple[Optional[pa.RecordBatch], int]:
        entry = pending[0]
        batch = entry.result()
        pending.popleft()
        if pool is not None:
            pool.release(entry)
        return batch, entry.first_row

    completed = False
    try:
        for item in items:
            if type(item) is dict or isinstance(item, Mapping):
                if not chunk:
                    chunk_first = next_row
                chunk.append(item)
                chunk_bytes += sum(getattr(v, "nbytes", 0) for v in item.values())
                next_row += 1
                if len(chunk) >= chunk_rows or chunk_bytes >= CHUNK_BYTES:
                    queue_chunk(final=False)
            else:
                if chunk:
                    queue_chunk(final=not is_encoded_input(item))
                first = next_row
                if is_encoded_input(item):
                    next_row += len(item)
                    thunk = functools.partial(validate_encoded_batch, schema, arrow_schema, item, first)
                else:  # reported in input order, after the rows before it
                    next_row += 1
                    thunk = functools.partial(_raise, PetastormSchemaError(
                        f"row {first:,} of the input: expected a dict of field name to value (or a pyarrow "
                        f"RecordBatch/Table or pandas DataFrame of encoded rows), got {type(item).__name__}"))
                pending.append(_Pending(first, next_row - first, thunk=thunk))
            while len(pending) >= max_inflight:
                batch, first = take()
                if batch is not None:
                    yield batch, first
        if chunk:
            queue_chunk(final=True)
        while pending:
            batch, first = take()
            if batch is not None:
                yield batch, first
        completed = True
    finally:
        if pool is not None:
            pool.shutdown(abort=not completed)


def _raise(error: BaseException) -> None:
    raise error
