"""petastorm.etl.publish: writers that publish to one path at the same instant (``overwrite=True``) all end
cleanly: each either publishes (one after the other: the last one's dataset stays) or gets a
PetastormWriteError naming the path, and no ``<path>.__petastorm_old_*`` directory is left behind."""
import os
import threading

import pyarrow.fs as pafs

from petastorm.errors import PetastormWriteError
from petastorm.etl.publish import publish

FILES = ("part-0.parquet", "_common_metadata")


def _dataset(path, tag):
    os.makedirs(path)
    for name in FILES:
        with open(os.path.join(path, name), "w") as f:
            f.write(tag)


def _race(root, writers, overwrite):
    """One round: ``writers`` threads publish their own finished directory to ``root/ds`` together.

    Returns ``{tag: None or the exception}``."""
    target = os.path.join(root, "ds")
    url = "file://" + target
    fs = pafs.LocalFileSystem()
    tmps = {str(k): f"{target}.__petastorm_tmp_{k}" for k in range(writers)}
    for tag, tmp in tmps.items():
        _dataset(tmp, tag)
    barrier = threading.Barrier(writers)
    outcome = {}

    def write(tag):
        barrier.wait(timeout=30)
        try:
            publish(fs, tmps[tag], target, url, overwrite, ["part-0.parquet"])
            outcome[tag] = None
        except BaseException as e:  # noqa: B036 - recorded for the assertions
            outcome[tag] = e

    threads = [threading.Thread(target=write, args=(tag,)) for tag in tmps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a publish hung"
    for tag, error in outcome.items():
        if error is None:
            assert not os.path.exists(tmps[tag])  # published: renamed into place
        else:
            assert isinstance(error, PetastormWriteError), repr(error)  # not a raw OSError
            assert url in str(error)
            assert os.path.isdir(tmps[tag])  # not published: the writer deletes its temporary directory
            _remove(tmps[tag])
    left = sorted(name for name in os.listdir(root) if name != "ds")
    assert left == [], f"left behind: {left}"
    contents = {open(os.path.join(target, name)).read() for name in FILES}
    assert len(contents) == 1 and contents.pop() in outcome  # one whole dataset, of one writer
    return outcome


def _remove(path):
    for name in os.listdir(path):
        os.remove(os.path.join(path, name))
    os.rmdir(path)


def test_writers_overwriting_one_path_at_once_leave_nothing_behind(tmp_path):
    _dataset(str(tmp_path / "ds"), "old")
    published = 0
    for _ in range(60):  # the race is hit in most rounds (before the fix: raw OSErrors, __petastorm_old_ leftovers)
        outcome = _race(str(tmp_path), 4, overwrite=True)
        published += sum(e is None for e in outcome.values())
    assert published >= 60  # every round published one dataset at least


def test_writers_racing_to_a_new_path_without_overwrite_publish_once(tmp_path):
    # before the fix a writer could take another's freshly published dataset for an empty directory and delete
    # it: both "succeeded", one dataset was lost
    for round_ in range(20):
        root = tmp_path / str(round_)
        root.mkdir()
        outcome = _race(str(root), 4, overwrite=False)
        assert sum(e is None for e in outcome.values()) == 1
        for error in outcome.values():
            assert error is None or "filled by someone else" in str(error)
