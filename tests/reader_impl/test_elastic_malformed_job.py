"""petastorm.reader_impl.elastic (load_job_state): a merged job state changed after ``merge_state_dicts()``
(hand-edited, cut, from another version) is refused at the resume with a PetastormStateError naming the field,
not a bare KeyError / TypeError from inside the resume."""
import copy

import pytest

from petastorm.errors import PetastormStateError

from ._elastic_sim import checkpoint_readers, open_reader, read_steps, write_ids_dataset


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    url, _ = write_ids_dataset(str(tmp_path_factory.mktemp("malformed-job") / "d"), 4, 2, 25)
    return url, checkpoint_readers(url, 2, True, [3, 3], num_epochs=2)[1]


def _epoch(job):
    return next(iter(job["epochs"].values()))


CHANGES = [
    ("no next_epoch", lambda j: j.pop("next_epoch"), r"malformed job state: no 'next_epoch'"),
    ("next_epoch None", lambda j: j.update(next_epoch=None), r"\['next_epoch'\] must be an integer >= 0, got None"),
    ("held a string", lambda j: j.update(held="x"), r"\['held'\] must be an integer >= 0, got 'x'"),
    ("epoch_limit a list", lambda j: j.update(epoch_limit=[]), r"\['epoch_limit'\] must be an integer >= 0"),
    ("epochs None", lambda j: j.update(epochs=None), r"job state\['epochs'\] must be a dict, got NoneType"),
    ("no span", lambda j: _epoch(j).pop("span"), r"job state\['epochs'\]\['0'\] must be an epoch number's record"),
    ("span a string", lambda j: _epoch(j).update(span="x"), r"\['span'\] must be an integer >= 0, got 'x'"),
    ("consumed an int", lambda j: _epoch(j).update(consumed=-1), r"\['consumed'\] must be a list of \[start, stop\]"),
]


@pytest.mark.parametrize("change,pattern", [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_a_changed_job_state_is_refused_at_the_resume_naming_the_field(job, change, pattern):
    url, saved = job
    reader = open_reader(url, 0, 3, True, num_epochs=2, resume_from=saved)  # the job as merged resumes
    assert read_steps(reader, 1)
    reader.stop()
    reader.join()
    changed = copy.deepcopy(saved)
    change(changed)
    with pytest.raises(PetastormStateError, match=pattern):
        open_reader(url, 0, 3, True, num_epochs=2, resume_from=changed)
