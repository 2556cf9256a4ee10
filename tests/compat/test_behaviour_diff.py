"""tools_compat/behaviour_diff.py: every case runs under our library, and the diff shows what differs.

``make test`` has no original venv (``make compat-diff`` makes it), so these tests run our side of every
case for real and check the comparison and the table on two recorded observation sets.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools_compat"
sys.path.insert(0, str(TOOLS))

import behaviour_cases  # noqa: E402
import behaviour_diff  # noqa: E402


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("behaviour_diff")
    behaviour_cases.build_datasets(work / "datasets")
    names = list(behaviour_cases.CASES)
    return behaviour_diff.run_library(Path(sys.executable), work / "datasets", names, work)


def test_every_behaviour_case_yields_an_observation_under_our_library(ours):
    assert set(ours) == set(behaviour_cases.CASES)
    for name, obs in ours.items():
        assert obs["outcome"] in ("ok", "raised"), (name, obs)
        assert isinstance(obs["warnings"], list) and isinstance(obs["log"], list), name
        if obs["outcome"] == "raised":
            # an error in the case's own code is a defect of the tool, not an observation of the library
            assert not obs["exception"]["in_case_code"], (name, obs)
            assert obs["exception"]["class"] and obs["exception"]["stage"], (name, obs)


def test_value_cases_describe_every_field_of_the_first_row_and_batch(ours):
    fields = set(behaviour_cases.codec_schema().fields)
    row = ours["values/make_reader/codecs"]["value"]["row0"]["fields"]
    batch = ours["values/make_batch_reader/codecs"]["value"]["fields"]
    assert set(row) == set(batch) == fields
    assert row["maybe"] == row["maybe_text"] == "None"  # row 0 holds None in the nullable fields
    assert row["nd"] == "ndarray[float32](2, 3)"
    assert batch["id"] == f"ndarray[int64]({behaviour_cases.N_CODEC_ROWS},)"


def test_a_case_past_its_timeout_is_recorded_and_the_next_case_still_runs(tmp_path):
    behaviour_cases.build_datasets(tmp_path / "datasets")
    names = ["values/make_reader/codecs", "ngram/equality"]
    results = behaviour_diff.run_library(Path(sys.executable), tmp_path / "datasets", names, tmp_path,
                                         timeout_s=0.05)
    assert set(results) == set(names)
    assert results[names[0]]["outcome"] == "timeout"
    assert results[names[1]]["outcome"] in ("ok", "timeout")


ORIGINAL = {
    "same": {"outcome": "ok", "value": {"fields": {"id": "int64"}}, "warnings": [], "log": []},
    "value type": {"outcome": "ok", "value": {"namedtuple_name": "S_view", "fields": {"text": "str_"}},
                   "warnings": [], "log": []},
    "same lead": {"outcome": "raised", "warnings": [], "log": [],
                  "exception": {"class": "ValueError", "builtins": ["ValueError"], "stage": "call",
                                "message": "Unexpected dimensions of img feature, expected (8, 6, 3)"}},
    "other lead": {"outcome": "raised", "warnings": [], "log": [],
                   "exception": {"class": "ValueError", "builtins": ["ValueError"], "stage": "call",
                                 "message": "('The shape field of unischema_field '%s' must be an empty"}},
    "warning": {"outcome": "ok", "value": 0, "log": [],
                "warnings": ["UserWarning: No matching data is available for loading after rowgroup sel"]},
    "other warning": {"outcome": "ok", "value": 0, "log": [],
                      "warnings": ["UserWarning: Currently make_reader supports reading only "
                                   "Petastorm datase"]},
    "only original": {"outcome": "ok", "value": 1, "warnings": [], "log": []},
}
OURS = {
    "same": ORIGINAL["same"],
    "value type": {"outcome": "ok", "value": {"namedtuple_name": "S", "fields": {"text": "str"}},
                   "warnings": [], "log": []},
    "same lead": {"outcome": "raised", "warnings": [], "log": [],
                  "exception": {"class": "PetastormSchemaError", "builtins": ["ValueError", "TypeError"],
                                "stage": "encode",
                                "message": "Unexpected dimensions of img feature: field 'img' expects "}},
    "other lead": {"outcome": "raised", "warnings": [], "log": [],
                   "exception": {"class": "PetastormSchemaError", "builtins": ["TypeError"],
                                 "stage": "call", "message": "field 'x' is a scalar: its shape must be ()"}},
    "warning": {"outcome": "ok", "value": 0, "log": [],
                "warnings": ["UserWarning: No matching data is available for loading after rowgroup "
                             "selection: the"]},
    "other warning": {"outcome": "ok", "value": 0, "log": [], "warnings": []},
}


def test_diff_lists_the_keys_that_differ_and_ignores_class_extra_bases_and_detail_after_the_lead_phrase():
    differ = behaviour_diff.diff(ORIGINAL, OURS)
    assert set(differ) == {"value type", "other lead", "other warning", "only original"}
    keys = {k: (a, b) for k, a, b in differ["value type"]}
    assert keys["value.fields.text"] == ("str_", "str")
    assert keys["value.namedtuple_name"] == ("S_view", "S")  # shown beside a difference, never one itself
    other = {k for k, _, _ in differ["other lead"]}
    assert {"exception.builtins", "exception.message", "exception.class"} <= other
    assert ("outcome", "ok", "not run") in differ["only original"]


def test_render_prints_each_differing_case_and_the_count():
    text = behaviour_diff.render(ORIGINAL, OURS, notes={"value type": "on purpose"})
    assert text.splitlines()[-1] == "7 cases, 4 differ"
    assert "== value type   [on purpose]" in text
    assert "== same\n" not in text and "== same lead" not in text
    assert "      original: str_" in text and "      ours:     str" in text


def test_lead_phrase_is_the_words_before_the_first_variable_part():
    assert behaviour_diff.lead_phrase("('The shape field of unischema_field '%s' must") == \
        "The shape field of unischema_field"
    assert behaviour_diff.lead_phrase("Was not able to map type <class 'numpy.complex64'>") == \
        "Was not able to map type"
    assert behaviour_diff.lead_phrase("dataset url list must be non-empty.") == \
        "dataset url list must be non-empty"
