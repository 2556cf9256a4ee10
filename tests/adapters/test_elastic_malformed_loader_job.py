"""petastorm.adapters.elastic: a loader job state (``merge_state_dicts`` of loader states) changed after the merge
is refused by the loader's ``load_state_dict`` with a PetastormStateError naming the field, not a bare
KeyError / ValueError / AttributeError from inside the resume."""
import copy

import pytest

from petastorm import merge_state_dicts
from petastorm.adapters.elastic import check_loader_job
from petastorm.errors import PetastormStateError
from petastorm.pytorch import BatchedDataLoader, DataLoader
from tests.reader_impl._elastic_sim import open_reader, write_ids_dataset


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    url, _ = write_ids_dataset(str(tmp_path_factory.mktemp("loader-job") / "d"), 4, 2, 25)
    out = {}
    for cls in (BatchedDataLoader, DataLoader):
        states = []
        for rank in range(2):
            reader = open_reader(url, rank, 2, True, num_epochs=1)
            with cls(reader, batch_size=5, shuffling_queue_capacity=20) as loader:
                batches = iter(loader)
                for _ in range(3):
                    next(batches)
                states.append(loader.state_dict())
        out[cls] = merge_state_dicts(states)
    return url, out


CHANGES = [
    ("held a string", lambda j: j.update(held="x"), r"'held' must hold the rows the loaders held .* got str"),
    ("held an int", lambda j: j.update(held=-1), r"'held' must hold the rows .* got int"),
    ("no reader", lambda j: j.pop("reader"), r"'reader' must be the merged state of the readers"),
    ("passes_done a string", lambda j: j.update(passes_done="x"),
     r"'passes_done' must be an integer >= 0 or None, got 'x'"),
    ("passes_done negative", lambda j: j.update(passes_done=-1),
     r"'passes_done' must be an integer >= 0 or None, got -1"),
]


@pytest.mark.parametrize("cls", [BatchedDataLoader, DataLoader])
@pytest.mark.parametrize("what,change,pattern", CHANGES)
def test_a_changed_loader_job_is_refused_naming_the_field(jobs, cls, what, change, pattern):
    url, merged = jobs
    job = copy.deepcopy(merged[cls])
    change(job)
    with cls(open_reader(url, 0, 3, True, num_epochs=1), batch_size=5, shuffling_queue_capacity=20) as loader:
        with pytest.raises(PetastormStateError, match=pattern):
            loader.load_state_dict(job)
            for _ in loader:
                pass


@pytest.mark.parametrize("what,change,pattern", [getattr(c, "values", c) for c in CHANGES])
def test_check_loader_job_names_the_field(jobs, what, change, pattern):
    _, merged = jobs
    check_loader_job(merged[BatchedDataLoader])  # the job as merged passes
    job = copy.deepcopy(merged[BatchedDataLoader])
    change(job)
    with pytest.raises(PetastormStateError, match=pattern):
        check_loader_job(job)
