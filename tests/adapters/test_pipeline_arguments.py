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
