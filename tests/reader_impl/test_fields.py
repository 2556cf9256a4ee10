"""The fields stage: which fields of the schema a reader reads."""
import numpy as np
import pytest

from petastorm.errors import NoMatchingFieldsError, PetastormArgumentError, PetastormSchemaError
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
