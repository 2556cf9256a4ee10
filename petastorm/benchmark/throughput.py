"""Reader throughput: samples per second, memory and CPU of a ``make_reader`` reading a dataset.

The original's ``petastorm.benchmark.throughput`` names are kept: :func:`reader_throughput`,
:class:`BenchmarkResult`, :class:`ReadMethod` and :class:`WorkerPoolType`. The measurement runs in a fresh
process by default (``spawn_new_process=True``) so that ``memory_info`` is the footprint of the reader alone.
The ``'tf'`` read method pulls rows through graph-mode tensors (:func:`petastorm.tf_utils.tf_tensors`) and a
``RandomShuffleQueue``, as the original did; TensorFlow is imported only then.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections import namedtuple
from contextlib import nullcontext
from enum import Enum
from types import SimpleNamespace
from typing import Any, Callable, Optional, Sequence

from petastorm.errors import NoMatchingFieldsError, PetastormArgumentError

__all__ = ["BenchmarkResult", "ReadMethod", "WorkerPoolType", "reader_throughput"]

logger = logging.getLogger(__name__)

BenchmarkResult = namedtuple("BenchmarkResult", ["time_mean", "samples_per_second", "memory_info", "cpu"])
BenchmarkResult.__doc__ = """Result of :func:`reader_throughput`.

time_mean : float
    Mean time of one read cycle (one sample), in seconds.
samples_per_second : float
    Samples read per second during the measure cycles.
memory_info : psutil ``pfullmem`` namedtuple
    Memory of the measuring process at the end (``rss``, ``vms``, ``uss``... in bytes).
cpu : float
    CPU use of the measuring process during the measure cycles, in percent of one core.
"""


class ReadMethod(Enum):
    """Whether a Tensorflow or plain Python reading method would be used during the benchmark."""

    TF = "tf"
    PYTHON = "python"


class WorkerPoolType(Enum):
    """Parallelism used by the reader: multithreading, multiprocessing or none (single thread)."""

    THREAD = "thread"
    PROCESS = "process"
    NONE = "dummy"


def _ensure_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PetastormArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _ensure_enum(name: str, value: Any, enum: type) -> Any:
    try:
        return value if isinstance(value, enum) else enum(value)
    except ValueError:
        choices = ", ".join(repr(e.value) for e in enum)
        raise PetastormArgumentError(f"{name} must be one of {choices}, got {value!r}") from None


def _schema_fields(dataset_url: str, field_regex: Optional[Sequence[str]], hdfs_driver: str) -> Optional[list]:
    """The fields selected by ``field_regex`` (None: every field).

    Unlike the original (which read every field when no field matched), a regex list that matches no field
    is an error: a benchmark of the wrong fields is worse than none.
    """
    if not field_regex:
        return None
    if isinstance(field_regex, str):
        field_regex = [field_regex]
    from petastorm.etl.dataset_metadata import get_schema_from_dataset_url
    from petastorm.unischema import match_unischema_fields

    schema = get_schema_from_dataset_url(dataset_url, hdfs_driver=hdfs_driver)
    fields = match_unischema_fields(schema, field_regex)
    if not fields:
        raise NoMatchingFieldsError(
            f"field_regex {list(field_regex)} matches no field of {dataset_url} "
            f"(fields: {', '.join(schema.fields)})")
    return fields


_BAR_STEP = 16


def _progress(enabled: bool, total: int) -> Any:
    if not enabled or total == 0:
        return SimpleNamespace(update=lambda n=1: None, set_description=lambda d: None, close=lambda: None)
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=" samples", desc="warmup", mininterval=0.5)


def _time_cycles(next_sample: Callable[[], Any], warmup_cycles_count: int, measure_cycles_count: int,
                 progress: bool) -> tuple[float, float]:
    """Run the warmup then the measure cycles; return (seconds of the measure cycles, CPU percent).

    The progress bar is updated every ``_BAR_STEP`` samples, so that it costs next to nothing per sample.
    """
    process = _psutil().Process()
    bar = _progress(progress, warmup_cycles_count + measure_cycles_count)

    def cycles(count: int) -> None:
        for done in range(1, count + 1):
            next_sample()
            if done % _BAR_STEP == 0:
                bar.update(_BAR_STEP)
        bar.update(count % _BAR_STEP)

    try:
        cycles(warmup_cycles_count)
        bar.set_description("measure")
        process.cpu_percent()  # starts the CPU measurement interval
        start = time.perf_counter()
        cycles(measure_cycles_count)
        elapsed = time.perf_counter() - start
        cpu = process.cpu_percent()
    finally:
        bar.close()
    return elapsed, cpu


def _psutil() -> Any:
    try:
        import psutil
    except ImportError:
        raise ImportError("the throughput benchmark measures memory and CPU with psutil: pip install psutil") \
            from None
    return psutil


def _python_cycles(reader: Any, warmup: int, measure: int, progress: bool) -> tuple[float, float]:
    return _time_cycles(lambda: next(reader), warmup, measure, progress)


def _tf_cycles(reader: Any, warmup: int, measure: int, shuffling_queue_size: int, min_after_dequeue: int,
               progress: bool) -> tuple[float, float]:
    import tensorflow as tf

    from petastorm.tf_utils import tf_tensors

    with tf.Graph().as_default():
        tensors = tf_tensors(reader, shuffling_queue_capacity=shuffling_queue_size,
                             min_after_dequeue=min_after_dequeue)
        with tf.compat.v1.Session() as session:
            coordinator = tf.compat.v1.train.Coordinator()
            threads = tf.compat.v1.train.start_queue_runners(sess=session, coord=coordinator)
            try:
                return _time_cycles(lambda: session.run(tensors), warmup, measure, progress)
            finally:
                coordinator.request_stop()
                for runner in tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.QUEUE_RUNNERS):
                    session.run(runner.cancel_op)  # unblocks a runner waiting to enqueue
                coordinator.join(threads, stop_grace_period_secs=10)


class _ThreadProfiles:
    """cProfile of the calling thread and of every thread started inside the ``with`` block (the reader's
    worker threads); on exit, the merged statistics are printed, the 30 costliest calls first. Worker
    processes (``pool_type='process'``) are not profiled."""

    def __enter__(self) -> "_ThreadProfiles":
        import cProfile

        self._new_profile = cProfile.Profile
        self._profiles = [cProfile.Profile()]
        threading.setprofile(self._start_in_thread)
        self._profiles[0].enable()
        return self

    def _start_in_thread(self, frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)  # runs once, first thing in each new thread: hand over to a cProfile of its own
        profile = self._new_profile()
        self._profiles.append(profile)
        profile.enable()

    def __exit__(self, *exc: Any) -> None:
        import pstats

        threading.setprofile(None)
        self._profiles[0].disable()
        stats = None
        for profile in self._profiles:
            profile.create_stats()
            if not profile.stats:
                continue
            if stats is None:
                stats = pstats.Stats(profile)
            else:
                stats.add(profile)
        if stats is not None:
            print(f"Profile of {len(self._profiles)} threads (the reader's worker threads included):")
            stats.sort_stats("cumulative").print_stats(30)


def reader_throughput(dataset_url: str, field_regex: Optional[Sequence[str]] = None, warmup_cycles_count: int = 300,
                      measure_cycles_count: int = 1000, pool_type: Any = WorkerPoolType.THREAD, loaders_count: int = 3,
                      profile_threads: bool = False, read_method: Any = ReadMethod.PYTHON,
                      shuffling_queue_size: int = 500, min_after_dequeue: int = 400,
                      reader_extra_args: Optional[dict] = None, spawn_new_process: bool = True,
                      *, progress: bool = False) -> BenchmarkResult:
    """Read ``warmup_cycles_count`` then ``measure_cycles_count`` samples with ``make_reader``; time the latter.

    Parameters
    ----------
    dataset_url : str
        URL of a Petastorm dataset (``file:///...``, ``hdfs://...``, ``s3://...``).
    field_regex : list of str, optional
        Read only the fields whose names match one of these regular expressions; by default every field.
    warmup_cycles_count : int
        Samples read before the measurement (not timed).
    measure_cycles_count : int
        Samples read and timed (>= 1).
    pool_type : WorkerPoolType or {'thread', 'process', 'dummy'}
    loaders_count : int
        Reader workers (``make_reader(workers_count=...)``).
    profile_threads : bool
        Profile the reading thread and the reader's worker threads with cProfile and print the 30 costliest
        calls when the reader has stopped (worker processes are not profiled).
    read_method : ReadMethod or {'python', 'tf'}
        ``'python'``: ``next(reader)``; ``'tf'``: ``session.run`` of :func:`petastorm.tf_utils.tf_tensors`.
    shuffling_queue_size, min_after_dequeue : int
        Capacity and minimum fill of the TF ``RandomShuffleQueue`` (``'tf'`` only; 0 for no queue).
    reader_extra_args : dict, optional
        More keyword arguments for ``make_reader`` (``num_epochs`` defaults to None: the dataset is read in a
        loop, so the cycle counts may exceed its size).
    spawn_new_process : bool
        Measure in a fresh process (spawned), so ``memory_info`` is the reader's footprint alone.
    progress : bool
        Show a tqdm progress bar of the cycles on stderr (petastorm's addition; the CLI sets it).

    Returns
    -------
    BenchmarkResult
        ``(time_mean, samples_per_second, memory_info, cpu)``: seconds per sample, samples per second,
        psutil ``memory_full_info()`` in bytes, CPU percent.

    Raises
    ------
    PetastormArgumentError
        (A ``ValueError``.) A bad count, pool type or read method; the message names the argument.
    NoMatchingFieldsError
        ``field_regex`` matches no field (the original read every field then).
    DatasetNotFoundError
        (An ``OSError``.) No dataset at ``dataset_url``.
    """
    warmup = _ensure_count("warmup_cycles_count", warmup_cycles_count, 0)
    measure = _ensure_count("measure_cycles_count", measure_cycles_count, 1)
    loaders = _ensure_count("loaders_count", loaders_count, 1)
    pool = _ensure_enum("pool_type", pool_type, WorkerPoolType)
    method = _ensure_enum("read_method", read_method, ReadMethod)
    queue_size = _ensure_count("shuffling_queue_size", shuffling_queue_size, 0)
    min_after = _ensure_count("min_after_dequeue", min_after_dequeue, 0)
    if reader_extra_args is not None and not isinstance(reader_extra_args, dict):
        raise PetastormArgumentError(f"reader_extra_args must be a dict, got {type(reader_extra_args).__name__}")
    kwargs = dict(field_regex=field_regex, warmup_cycles_count=warmup, measure_cycles_count=measure,
                  pool_type=pool, loaders_count=loaders, profile_threads=profile_threads, read_method=method,
                  shuffling_queue_size=queue_size, min_after_dequeue=min_after,
                  reader_extra_args=reader_extra_args, progress=progress)
    if spawn_new_process:
        return _measure_in_new_process(dataset_url, kwargs)
    return _measure(dataset_url, **kwargs)


_CHILD = "import sys; from petastorm.benchmark.throughput import _child_main; _child_main(sys.argv[1])"


def _measure_in_new_process(dataset_url: str, kwargs: dict) -> BenchmarkResult:
    """Run :func:`_measure` in a new interpreter (not a fork: the caller may hold threads and memory; not
    multiprocessing's spawn: that re-imports the caller's ``__main__``). Arguments and the result (or the
    exception) travel as pickles through a temporary file; stdout and stderr are shared."""
    import os
    import pickle
    import subprocess
    import tempfile

    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [package_root, env.get("PYTHONPATH", "")] if p)
    with tempfile.TemporaryDirectory(prefix="petastorm-throughput-") as tmp:
        path = os.path.join(tmp, "io.pickle")
        with open(path, "wb") as f:
            pickle.dump((dataset_url, kwargs, logging.getLogger().getEffectiveLevel()), f)
        process = subprocess.Popen([sys.executable, "-c", _CHILD, path], env=env)
        try:
            returncode = process.wait()
        except BaseException:  # KeyboardInterrupt: leave no measuring process behind
            process.kill()
            process.wait()
            raise
        try:
            with open(path, "rb") as f:
                ok, value = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError):
            raise RuntimeError(f"the measuring process exited with status {returncode} before reporting "
                               f"a result") from None
    if not ok:
        raise value
    return value


def _child_main(path: str) -> None:
    """Entry point of the measuring process started by :func:`_measure_in_new_process`."""
    import pickle

    with open(path, "rb") as f:
        dataset_url, kwargs, level = pickle.load(f)
    logging.basicConfig(level=level)
    try:
        outcome: tuple = (True, _measure(dataset_url, **kwargs))
    except Exception as e:  # reported to the parent, which raises it
        outcome = (False, e)
    try:
        data = pickle.dumps(outcome)
    except Exception:
        data = pickle.dumps((False, RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]}")))
    with open(path, "wb") as f:
        f.write(data)


def _measure(dataset_url: str, *, field_regex: Any, warmup_cycles_count: int, measure_cycles_count: int,
             pool_type: WorkerPoolType, loaders_count: int, profile_threads: bool, read_method: ReadMethod,
             shuffling_queue_size: int, min_after_dequeue: int, reader_extra_args: Optional[dict],
             progress: bool) -> BenchmarkResult:
    from petastorm.reader import make_reader

    psutil = _psutil()

    extra = dict(reader_extra_args or {})
    hdfs_driver = extra.get("hdfs_driver", "libhdfs3")
    fields = _schema_fields(dataset_url, field_regex, hdfs_driver)
    extra.setdefault("num_epochs", None)
    logger.info("Arguments: %s", dict(dataset_url=dataset_url, field_regex=field_regex, pool_type=pool_type,
                                      loaders_count=loaders_count, read_method=read_method))
    with _ThreadProfiles() if profile_threads else nullcontext():
        with make_reader(dataset_url, schema_fields=fields, reader_pool_type=pool_type.value,
                         workers_count=loaders_count, **extra) as reader:
            if read_method is ReadMethod.PYTHON:
                elapsed, cpu = _python_cycles(reader, warmup_cycles_count, measure_cycles_count, progress)
            else:
                elapsed, cpu = _tf_cycles(reader, warmup_cycles_count, measure_cycles_count, shuffling_queue_size,
                                          min_after_dequeue, progress)
            memory = psutil.Process().memory_full_info()  # while the reader and its buffers are alive
    result = BenchmarkResult(time_mean=elapsed / measure_cycles_count,
                             samples_per_second=measure_cycles_count / elapsed if elapsed > 0 else float("inf"),
                             memory_info=memory, cpu=cpu)
    logger.info("Done measuring: %s", result)
    return result
