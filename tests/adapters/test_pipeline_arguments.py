"""BatchPipeline's argument checks (the shared core under every loader)."""
import pytest

from petastorm.adapters import BatchPipeline

from ._list_reader import ListReader, make_chunks


@pytest.mark.parametrize("name", ["transform_fn", "convert"])
def test_a_function_argument_that_is_not_callable_is_a_type_error_naming_it(name):
    # 0.12.1 raised TypeError ("'int' object is not callable") at the first batch; ours at once, and the error
    # is also the ValueError ours raised before (PetastormArgumentTypeError)
    with pytest.raises(TypeError, match=f"{name} must be callable or None, got 5") as info:
        BatchPipeline(ListReader(make_chunks([10])), batch_size=2, **{name: 5})
    assert isinstance(info.value, ValueError)


@pytest.mark.timeout(60)
def test_a_pass_continued_in_a_forked_child_names_the_fork():
    # a fork copies only the forking thread: the child has no prefetch thread (it said "the prefetch thread
    # ended unexpectedly", naming nothing the user did)
    import os

    pipeline = BatchPipeline(ListReader(make_chunks([10] * 20)), batch_size=2, prefetch=2)
    next(pipeline)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the error's text to the parent, then leave at once
        try:
            os.close(read)
            try:
                for _ in range(200):
                    next(pipeline)
                text = "no error"
            except Exception as e:  # noqa: BLE001 - the text is what is checked
                text = f"{type(e).__name__}: {e}"
            os.write(write, text.encode()[:4000])
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        text = f.read().decode()
    os.waitpid(pid, 0)
    assert text.startswith("PetastormReaderError") and "os.fork()" in text and "prefetch thread" in text, text
    pipeline.close()
