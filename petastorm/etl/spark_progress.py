"""A tqdm progress bar of the Spark tasks run while a block executes (classic Spark sessions)."""
from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["spark_progress"]

_POLL_SECONDS = 0.5
_GROUP_KEY = "spark.jobGroup.id"
_DESCRIPTION_KEY = "spark.job.description"
_INTERRUPT_KEY = "spark.job.interruptOnCancel"


def _spark_context(spark: Any) -> Any:
    """The session's SparkContext, or None (Spark Connect has none)."""
    try:
        return spark.sparkContext
    except Exception:  # noqa: BLE001 - Spark Connect raises here: no bar, the work still runs
        return None


class _TaskCounter:
    """Completed and total tasks of the jobs of one job group (the jobs the block started)."""

    def __init__(self, tracker: Any, group: str) -> None:
        self._tracker = tracker
        self._group = group

    def poll(self) -> tuple[int, int]:
        done = total = 0
        for job_id in self._tracker.getJobIdsForGroup(self._group):
            job = self._tracker.getJobInfo(job_id)
            if job is None:
                continue
            succeeded = str(job.status) == "SUCCEEDED"
            for stage_id in job.stageIds:
                stage = self._tracker.getStageInfo(stage_id)
                if stage is None:
                    continue
                total += stage.numTasks
                # a finished job's skipped stages (their output was reused) count as done
                done += stage.numTasks if succeeded else stage.numCompletedTasks
        return done, total


@contextmanager
def spark_progress(spark: Any, enabled: bool = True, desc: str = "spark") -> Iterator[None]:
    """Show the Spark tasks of the jobs started inside the block as a tqdm bar on stderr.

    The block's jobs are tagged with a job group of their own (the caller's thread-local job group, description
    and interrupt setting are restored on exit); a polling thread updates the bar and is joined on exit.
    Nothing is shown when ``enabled`` is False or the session has no SparkContext (Spark Connect).
    """
    sc = _spark_context(spark) if enabled else None
    if sc is None:
        yield
        return
    from tqdm.auto import tqdm

    previous = {key: sc.getLocalProperty(key) for key in (_GROUP_KEY, _DESCRIPTION_KEY, _INTERRUPT_KEY)}
    group = f"petastorm-{uuid.uuid4().hex}"
    sc.setJobGroup(group, desc)
    counter = _TaskCounter(sc.statusTracker(), group)
    stop = threading.Event()
    bar = tqdm(total=0, unit=" tasks", desc=desc)

    def update() -> None:
        done, total = counter.poll()
        if (done, total) != (bar.n, bar.total):
            bar.total = total
            bar.n = done
            bar.refresh()

    def poll_loop() -> None:
        while not stop.wait(_POLL_SECONDS):
            try:
                update()
            except Exception:  # noqa: BLE001 - a failed poll must not fail the work
                return

    thread = threading.Thread(target=poll_loop, name="petastorm-spark-progress", daemon=True)
    thread.start()
    try:
        yield
        stop.set()
        thread.join()
        update()
    finally:
        stop.set()
        thread.join()
        bar.close()
        for key, value in previous.items():
            sc.setLocalProperty(key, value)
