"""petastorm.spark.cache_dir: removing a converter's cache directory that is gone already, or that something
else removes at the same time (another process cleaning the same temporary tree, as pytest does with old
``tmp_path`` directories), is a silent no-op, at ``converter.delete()`` and at interpreter exit; a real failure
is still reported."""
import os
import shutil
import subprocess
import sys
import textwrap
import threading

from petastorm.spark.cache_dir import delete_dir


def _fill(path, dirs=8, files=100):
    for d in range(dirs):
        os.makedirs(os.path.join(path, f"part-{d}"))
        for f in range(files):
            open(os.path.join(path, f"part-{d}", f"f{f}.parquet"), "w").close()


def test_a_cache_dir_removed_by_someone_else_at_the_same_time_is_deleted_without_error(tmp_path):
    for i in range(10):  # before the fix nearly every round raised FileNotFoundError ("Cannot get information")
        cache = str(tmp_path / f"cache-{i}")
        _fill(cache, dirs=4, files=50)
        other = threading.Thread(target=shutil.rmtree, args=(cache,), kwargs={"ignore_errors": True})
        other.start()
        try:
            delete_dir("file://" + cache)
        finally:
            other.join(timeout=60)
        assert not os.path.exists(cache)


def _exit_stderr(tmp_path, body):
    """stderr of a child interpreter that remembers ``cache`` for removal at exit, then runs ``body``."""
    cache = tmp_path / "cache"
    _fill(str(cache), dirs=2, files=3)
    code = textwrap.dedent(f"""
        import os, shutil
        from petastorm.spark.cache_dir import remember_for_exit, register_delete_dir_handler
        cache = {str(cache)!r}
        remember_for_exit("file://" + cache)
    """) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr, cache


def test_a_cache_dir_already_gone_at_exit_is_not_reported(tmp_path):
    # a handler that removes the directory itself (shutil.rmtree raises FileNotFoundError on a missing one)
    stderr, cache = _exit_stderr(tmp_path, """
        register_delete_dir_handler(lambda url: shutil.rmtree(url[len("file://"):]))
        shutil.rmtree(cache)  # gone before exit (a test's tmp_path removed, a manual clean-up)
    """)
    assert "Delete cache data" not in stderr and "FileNotFoundError" not in stderr, stderr
    assert not cache.exists()


def test_a_real_failure_at_exit_is_still_reported(tmp_path):
    stderr, cache = _exit_stderr(tmp_path, """
        def refuse(url):
            raise PermissionError(13, "Permission denied", url[len("file://"):])
        register_delete_dir_handler(refuse)
    """)
    assert f"Delete cache data file://{cache} failed due to PermissionError" in stderr, stderr
    assert cache.exists()


def test_a_handler_failing_with_file_not_found_while_the_directory_exists_is_reported(tmp_path):
    stderr, cache = _exit_stderr(tmp_path, """
        register_delete_dir_handler(lambda url: open("/nonexistent-credentials-file"))
    """)
    assert f"Delete cache data file://{cache} failed due to FileNotFoundError" in stderr, stderr
    assert cache.exists()


def test_a_forked_child_exiting_normally_leaves_the_parents_cache_dirs(tmp_path):
    """The parent made the directories and still reads them: a child made by os.fork() that exits through
    sys.exit (atexit runs) removed them all (the parent's converters then read deleted files)."""
    cache = tmp_path / "cache"
    _fill(str(cache), dirs=1, files=2)
    code = textwrap.dedent(f"""
        import os, sys
        from petastorm.spark.cache_dir import remember_for_exit
        cache = {str(cache)!r}
        remember_for_exit("file://" + cache)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)
        os.waitpid(pid, 0)
        assert os.path.isdir(cache), "removed by the child's exit"
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not cache.exists()  # removed at the parent's exit
