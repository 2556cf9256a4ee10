"""Fixtures shared by the JAX tests."""
import pytest

from tests.jax_impl._parity_inputs import write_big_endian_dataset


@pytest.fixture(scope="session")
def big_endian_dataset(tmp_path_factory):
    """A dataset whose float field is stored big-endian (``>f4``, as FITS arrays are); read-only."""
    return write_big_endian_dataset(str(tmp_path_factory.mktemp("big_endian") / "d"))
