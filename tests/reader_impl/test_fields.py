"""The fields stage: which fields of the schema a reader reads."""
import numpy as np
import pytest

from petastorm.errors import (
    NoMatchingFieldsError,
    PetastormArgumentError,
    PetastormArgumentTypeError,
    PetastormSchemaError,
)
from petastorm.predicates import in_set
from petastorm.reader_impl.fields import check_predicate_fields, resolve_fields
from petastorm.unischema import Unischema, UnischemaField

SCHEMA = Unischema("S", [UnischemaField(name, np.int32, (), None, False) for name in ("id", "id2", "label")])


def test_unischema_fields_first_in_their_order_then_regex_matches_in_schema_order():
    assert resolve_fields(SCHEMA, [SCHEMA.label, "id.*"]) == ["label", "id", "id2"]
    assert resolve_fields(SCHEMA, "id") == ["id"]  # regexes match whole names
    assert resolve_fields(SCHEMA, None) == ["id", "id2", "label"]


def test_bad_schema_fields_name_the_argument():
    with pytest.raises(NoMatchingFieldsError, match="Fields of the dataset"):
        resolve_fields(SCHEMA, ["nope.*"])
    with pytest.raises(PetastormArgumentError, match="schema_fields"):
        resolve_fields(SCHEMA, [3])
    other = UnischemaField("other", np.int32, (), None, False)
    with pytest.raises(PetastormSchemaError, match="other"):
        resolve_fields(SCHEMA, [other])


def test_a_predicate_on_unknown_fields_is_refused_naming_them():
    check_predicate_fields(None, SCHEMA)
    check_predicate_fields(in_set({1}, "id"), SCHEMA)
    with pytest.raises(PetastormSchemaError, match="nope") as e:
        check_predicate_fields(in_set({1}, "nope"), SCHEMA)
    assert isinstance(e.value, ValueError)


# --- one function for the readers and dataset_as_rdd: the original 0.12.1's behaviours ----------------------
# Recorded from 0.12.1 (black box: make_reader / make_batch_reader / dataset_as_rdd on one dataset).

def test_an_empty_schema_fields_selects_every_field_for_the_readers_and_none_for_the_rdd():
    # 0.12.1: make_reader(url, schema_fields=[]) and () read every field; dataset_as_rdd(..., schema_fields=[])
    # gives rows with no field
    assert resolve_fields(SCHEMA, []) == ["id", "id2", "label"]
    assert resolve_fields(SCHEMA, ()) == ["id", "id2", "label"]
    assert resolve_fields(SCHEMA, [], empty_selects_all=False) == []
    assert resolve_fields(SCHEMA, (), empty_selects_all=False) == []


def test_an_element_of_the_wrong_type_is_a_valueerror_and_a_typeerror_naming_the_argument():
    # 0.12.1: ValueError 'Elements of "fields" must be either a string (regular expressions) or an instance of
    # UnischemaField class.' from make_reader, make_batch_reader and dataset_as_rdd
    for empty_selects_all in (True, False):
        with pytest.raises(PetastormArgumentTypeError, match=r"schema_fields .*got int: 3") as info:
            resolve_fields(SCHEMA, [SCHEMA.id, 3], empty_selects_all=empty_selects_all)
        assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
        assert 'Elements of "fields" must be either a string' in str(info.value)


def test_a_schema_fields_that_is_not_a_collection_is_refused_naming_it():
    # 0.12.1: schema_fields=3 is a ValueError ('Fields must be either None, an iterable collection of Unischema
    # fields or an NGram object.') from the readers and a TypeError ("'int' object is not iterable") from
    # dataset_as_rdd: one error that is both
    for empty_selects_all in (True, False):
        with pytest.raises(PetastormArgumentTypeError, match="Fields must be either None.*schema_fields is int: 3") \
                as info:
            resolve_fields(SCHEMA, 3, empty_selects_all=empty_selects_all)
        assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_fields_given_twice_are_selected_once_in_the_order_given():
    # 0.12.1: [S.id, S.id] -> ('id',); [S.name, S.id] -> ('name', 'id'); [S.id, 'name'] -> ('id', 'name')
    assert resolve_fields(SCHEMA, [SCHEMA.id, SCHEMA.id]) == ["id"]
    assert resolve_fields(SCHEMA, [SCHEMA.label, SCHEMA.id], empty_selects_all=False) == ["label", "id"]
    assert resolve_fields(SCHEMA, [SCHEMA.id, "label"]) == ["id", "label"]


def test_a_field_of_another_schema_is_the_originals_valueerror_for_every_entry_point():
    other = UnischemaField("other", np.int32, (), None, False)
    for empty_selects_all in (True, False):
        # 0.12.1: ValueError "field {'other'} does not belong to the schema ..."
        with pytest.raises(ValueError, match=r"field \{'other'\} does not belong to the schema"):
            resolve_fields(SCHEMA, [other], empty_selects_all=empty_selects_all)


def test_any_collection_of_fields_is_taken():
    # 0.12.1: make_reader / make_batch_reader took schema.fields.values(), the fields' keys and a numpy array of
    # one name (recorded, black box); an empty numpy array selects every field (rows '<schema>_view')
    assert resolve_fields(SCHEMA, SCHEMA.fields.values()) == ["id", "id2", "label"]
    assert resolve_fields(SCHEMA, SCHEMA.fields.keys()) == ["id", "id2", "label"]
    assert resolve_fields(SCHEMA, np.array(["id"])) == ["id"]
    assert resolve_fields(SCHEMA, np.array([], dtype=object)) == ["id", "id2", "label"]
    assert resolve_fields(SCHEMA, {}.values(), empty_selects_all=False) == []
    # ours: a numpy array of several names (0.12.1: numpy's 'truth value of an array' ValueError) and iterators
    assert resolve_fields(SCHEMA, np.array(["label", "id"])) == ["id", "label"]
    assert resolve_fields(SCHEMA, (f for f in [SCHEMA.label])) == ["label"]
    with pytest.raises(PetastormArgumentTypeError, match="schema_fields is bytes"):
        resolve_fields(SCHEMA, b"id")
