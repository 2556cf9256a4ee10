"""The fingerprints that a resume state keeps of the options deciding the sequence of rows."""
import subprocess
import sys

from petastorm.predicates import in_lambda, in_set
from petastorm.reader_impl.fingerprint import (
    canonical,
    ids_fingerprint,
    options_fingerprint,
    spec_fingerprint,
)


def test_options_fingerprint_keeps_json_values_and_reprs_the_rest():
    fp, plain = options_fingerprint(fields=["a", "b"], seed=3, filters=None, other=("x", 1))
    assert plain == {"fields": ["a", "b"], "seed": 3, "filters": None, "other": "('x', 1)"}
    assert fp == options_fingerprint(other=("x", 1), filters=None, seed=3, fields=["a", "b"])[0]  # order-free
    assert fp != options_fingerprint(fields=["a"], seed=3, filters=None, other=("x", 1))[0]


def test_spec_fingerprint_follows_the_values_of_a_predicate():
    assert spec_fingerprint(None) is None
    assert spec_fingerprint(in_set({1, 2}, "id")) == spec_fingerprint(in_set({2, 1}, "id"))  # sets sorted
    assert spec_fingerprint(in_set({1, 2}, "id")) != spec_fingerprint(in_set({1, 3}, "id"))


def test_functions_are_described_by_their_code_and_closure():
    def make(k):
        return lambda v: v > k

    assert spec_fingerprint(in_lambda(["id"], make(1))) == spec_fingerprint(in_lambda(["id"], make(1)))
    assert spec_fingerprint(in_lambda(["id"], make(1))) != spec_fingerprint(in_lambda(["id"], make(2)))
    assert canonical(make(1))[0] == "function"


def test_spec_fingerprint_is_the_same_in_another_process():
    code = ("from petastorm.predicates import in_set;"
            "from petastorm.reader_impl.fingerprint import spec_fingerprint;"
            "print(spec_fingerprint(in_set({'a', 'b', 'c'}, 'id')))")
    out = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout.strip() for seed in (1, 2)]
    assert out[0] == out[1] == spec_fingerprint(in_set({"a", "b", "c"}, "id"))


def test_ids_fingerprint_depends_on_order_and_values():
    assert ids_fingerprint([0, 1, 2]) == ids_fingerprint((0, 1, 2))
    assert ids_fingerprint([0, 1, 2]) != ids_fingerprint([0, 2, 1])
