"""A tqdm progress bar of the Spark tasks run while a block executes (classic Spark sessions)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["spark_progress"]

_POLL_SECONDS = 0.5


def _status_tracker(spark: Any) -> Any:
    """The session's ``StatusTracker``, or None (Spark Connect has no SparkContext)."""
    try:
        return spark.sparkContext.statusTracker()
    except Exception:  # noqa: BLE001 - Spark Connect raises here: no bar, the work still runs
        return None


class _TaskCounter:
    """Completed / total tasks of the stages that ran since the block started (stage id -> counts)."""

    def __init__(self, tracker: Any) -> None:
        self._tracker = tracker
        self._stages: dict[int, list[int]] = {}
        self._known_before = set(tracker.getActiveStageIds())

    def poll(self) -> tuple[int, int]:
        active = set(self._tracker.getActiveStageIds()) - self._known_before
        for stage_id in active:
            info = self._tracker.getStageInfo(stage_id)
            if info is not None:
                self._stages[stage_id] = [info.numCompletedTasks, info.numTasks]
        for stage_id, counts in self._stages.items():
            if stage_id not in active:  # finished (or skipped): count it as done
                counts[0] = counts[1]
        return sum(c[0] for c in self._stages.values()), sum(c[1] for c in self._stages.values())


@contextmanager
def spark_progress(spark: Any, enabled: bool = True, desc: str = "spark") -> Iterator[None]:
    """Show the Spark tasks run inside the block as a tqdm bar on stderr (a polling thread, joined on exit).

    Nothing is shown when ``enabled`` is False or the session has no status tracker (Spark Connect).
    """
    tracker = _status_tracker(spark) if enabled else None
    if tracker is None:
        yield
        return
    from tqdm.auto import tqdm

    counter = _TaskCounter(tracker)
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
            except Exception:  # noqa: BLE001 - a failed poll must not fail the copy
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
