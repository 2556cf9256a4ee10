"""TransformSpec: the transformed schema, row transforms (make_reader) and DataFrame transforms
(make_batch_reader) as the workers apply them."""
import pickle
import traceback
import warnings

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from petastorm.codecs import NdarrayCodec
from petastorm.errors import PetastormSchemaError
from petastorm.transform import (
    TransformSpec,
    apply_batch_transform,
    apply_row_transform,
    edit_field,
    transform_schema,
)
from petastorm.unischema import Unischema, UnischemaField

SCHEMA = Unischema("S", [
    UnischemaField("id", np.int64, (), None, False),
    UnischemaField("matrix", np.float32, (2, 3), NdarrayCodec(), False),
    UnischemaField("title", np.str_, (), None, True),
    UnischemaField("tags", np.int32, (None,), None, True),
])


def _columns(n=4):
    tags = np.empty(n, dtype=object)
    for i in range(n):
        tags[i] = np.arange(i, dtype=np.int32)
    return {
        "id": np.arange(n, dtype=np.int64),
        "matrix": np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3),
        "title": np.array([f"n{i}" for i in range(n)], dtype=object),
        "tags": tags,
    }


# --- transform_schema ---------------------------------------------------------------------------------------

def test_transform_schema_removes_edits_and_appends_fields():
    spec = TransformSpec(edit_fields=[("matrix", np.float64, (6,), False), edit_field("label", np.uint8, ())],
                         removed_fields=["title"])
    out = transform_schema(SCHEMA, spec)
    assert list(out.fields) == ["id", "tags", "matrix", "label"]
    assert out.fields["matrix"] == UnischemaField("matrix", np.float64, (6,), None, False)
    assert out.fields["label"].nullable is False and out.fields["label"].codec is None
    assert out.name == "S_transformed"


def test_edit_fields_accept_unischema_fields_and_keep_their_nullability():
    out = transform_schema(SCHEMA, TransformSpec(edit_fields=[UnischemaField("x", np.int8, (), None, True)]))
    assert out.fields["x"].nullable is True


def test_edited_field_wins_over_removed_field():
    out = transform_schema(SCHEMA, TransformSpec(edit_fields=[("id", np.float32, (), False)], removed_fields=["id"]))
    assert out.fields["id"].numpy_dtype is np.float32


def test_selected_fields_pick_and_order_the_result():
    out = transform_schema(SCHEMA, TransformSpec(selected_fields=["tags", "id"]))
    assert list(out.fields) == ["tags", "id"]


def test_unknown_removed_or_selected_names_warn_like_the_original():
    with pytest.warns(UserWarning, match='remove_fields specified some field names that are not part of the '
                                         'schema. These field names will be ignored "zz"'):
        out = transform_schema(SCHEMA, TransformSpec(removed_fields=["zz", "id"]))
    assert "id" not in out.fields
    with pytest.warns(UserWarning, match="selected_fields specified some field names that are not part of the "
                                         'schema. These field names will be ignored "qq"'):
        out = transform_schema(SCHEMA, TransformSpec(selected_fields=["qq", "title"]))
    assert list(out.fields) == ["title"]


def test_malformed_edit_field_is_refused_with_its_index():
    with pytest.raises(PetastormSchemaError, match=r"edit_fields\[1\]"):
        TransformSpec(edit_fields=[("a", np.int8, (), False), ("b", np.int8)])


# --- row transforms (make_reader) ---------------------------------------------------------------------------

def test_row_transform_edits_values_and_drops_removed_fields():
    def add_label(row):
        row["label"] = np.uint8(row["id"] % 2)
        row["matrix"] = row["matrix"].ravel().astype(np.float64)
        return row

    spec = TransformSpec(add_label, edit_fields=[("label", np.uint8, (), False), ("matrix", np.float64, (6,), False)],
                         removed_fields=["title"])
    out_schema = transform_schema(SCHEMA, spec)
    row = {k: v[3] for k, v in _columns().items()}
    out = apply_row_transform(spec, row, out_schema)
    assert list(out) == list(out_schema.fields)
    assert out["label"] == 1 and out["matrix"].shape == (6,) and "title" not in out
    assert row["matrix"].shape == (2, 3), "the input row must not be modified"


def test_row_transform_without_func_only_removes_and_selects():
    row = {k: v[0] for k, v in _columns().items()}
    assert list(apply_row_transform(TransformSpec(removed_fields=["matrix"]), row)) == ["id", "title", "tags"]
    assert list(apply_row_transform(TransformSpec(selected_fields=["title", "id"]), row)) == ["title", "id"]


def test_row_transform_returning_a_non_dict_names_the_transform():
    def bad_transform(row):
        return list(row.values())

    with pytest.raises(PetastormSchemaError, match="bad_transform.*must return a dict.*got list"):
        apply_row_transform(TransformSpec(bad_transform), {"id": 1})


def test_row_transform_missing_a_field_names_the_field():
    def drop_id(row):
        del row["id"]
        return row

    spec = TransformSpec(drop_id)
    with pytest.raises(PetastormSchemaError, match="drop_id.*without field 'id'"):
        apply_row_transform(spec, {k: v[0] for k, v in _columns().items()}, transform_schema(SCHEMA, spec))


def test_missing_nullable_field_becomes_none():
    spec = TransformSpec(lambda r: {"id": r["id"]})
    out = apply_row_transform(spec, {k: v[0] for k, v in _columns().items()},
                              transform_schema(SCHEMA, TransformSpec(removed_fields=["matrix"])))
    assert out["title"] is None and out["tags"] is None


def test_undeclared_new_field_is_refused():
    spec = TransformSpec(lambda r: dict(r, surprise=1))
    with pytest.raises(PetastormSchemaError, match="'surprise'.*edit_fields"):
        apply_row_transform(spec, {k: v[0] for k, v in _columns().items()}, transform_schema(SCHEMA, spec))


def test_exception_in_transform_keeps_its_type_and_names_the_function():
    def exploding_transform(row):
        raise KeyError("no such thing")

    with pytest.raises(KeyError) as info:
        apply_row_transform(TransformSpec(exploding_transform), {"id": 1})
    assert any("exploding_transform" in note for note in info.value.__notes__)
    assert "exploding_transform" in "".join(traceback.format_exception(info.value))
    # the note travels with the exception across processes
    assert pickle.loads(pickle.dumps(info.value)).__notes__ == info.value.__notes__


# --- batch transforms (make_batch_reader) -------------------------------------------------------------------

def test_batch_transform_gets_a_dataframe_with_array_cells_and_returns_numpy_columns():
    seen = {}

    def transform(df):
        seen["type"] = type(df)
        seen["matrix_cell"] = df["matrix"].iloc[1]
        df["matrix"] = df["matrix"].map(lambda m: m.sum(axis=0))
        df["double"] = df["id"] * 2.5
        return df

    spec = TransformSpec(transform, edit_fields=[("matrix", np.float32, (3,), False),
                                                 ("double", np.float64, (), False)])
    out_schema = transform_schema(SCHEMA, spec)
    out = apply_batch_transform(spec, _columns(), out_schema)
    assert seen["type"] is pd.DataFrame
    np.testing.assert_array_equal(seen["matrix_cell"], np.arange(6, 12, dtype=np.float32).reshape(2, 3))
    assert list(out) == list(out_schema.fields)
    assert out["matrix"].shape == (4, 3) and out["matrix"].dtype == np.float32
    np.testing.assert_array_equal(out["matrix"][0], [3, 5, 7])
    assert out["double"].dtype == np.float64 and out["double"].tolist() == [0, 2.5, 5, 7.5]
    assert out["id"].dtype == np.int64
    assert out["title"].tolist() == ["n0", "n1", "n2", "n3"]
    assert [t.tolist() for t in out["tags"]] == [[], [0], [0, 1], [0, 1, 2]]


def test_batch_transform_may_filter_rows():
    spec = TransformSpec(lambda df: df[df.id % 2 == 0])
    out = apply_batch_transform(spec, _columns(6), transform_schema(SCHEMA, spec))
    assert out["id"].tolist() == [0, 2, 4] and out["matrix"].shape == (3, 2, 3)
    assert len(out["tags"]) == 3


def test_batch_transform_removed_fields_are_dropped_even_if_returned():
    spec = TransformSpec(lambda df: df, removed_fields=["matrix", "tags"])
    out = apply_batch_transform(spec, _columns(), transform_schema(SCHEMA, spec))
    assert list(out) == ["id", "title"]


def test_batch_transform_without_func_selects_columns():
    out = apply_batch_transform(TransformSpec(selected_fields=["title", "id"]), _columns())
    assert list(out) == ["title", "id"]


def test_batch_transform_returning_a_non_dataframe_names_the_transform():
    def returns_dict(df):
        return {"id": df.id.values}

    spec = TransformSpec(returns_dict)
    with pytest.raises(PetastormSchemaError, match="returns_dict.*must return a pandas.DataFrame.*got dict"):
        apply_batch_transform(spec, _columns(), transform_schema(SCHEMA, spec))


def test_batch_transform_missing_a_column_names_transform_and_field():
    def forgets_name(df):
        return df[["id", "matrix", "tags"]]

    spec = TransformSpec(forgets_name)
    with pytest.raises(PetastormSchemaError, match="forgets_name.*without column 'title'"):
        apply_batch_transform(spec, _columns(), transform_schema(SCHEMA, spec))


def test_batch_transform_with_wrong_value_types_names_the_field():
    spec = TransformSpec(lambda df: df.assign(id=["x"] * len(df)))
    with pytest.raises(PetastormSchemaError, match="'id'"):
        apply_batch_transform(spec, _columns(), transform_schema(SCHEMA, spec))
    spec = TransformSpec(lambda df: df.assign(matrix=df.matrix.map(lambda m: m[0])))
    with pytest.raises(PetastormSchemaError, match=r"'matrix'.*expected shape \(2, 3\), got \(3,\)"):
        apply_batch_transform(spec, _columns(), transform_schema(SCHEMA, spec))


def test_batch_transform_nulls_in_an_integer_field():
    spec = TransformSpec(lambda df: df.assign(n=[1, None, 3, 4]), edit_fields=[("n", np.int32, (), True)])
    out = apply_batch_transform(spec, _columns(), transform_schema(SCHEMA, spec))
    assert out["n"].tolist() == [1, None, 3, 4]
    strict = TransformSpec(lambda df: df.assign(n=[1, None, 3, 4]), edit_fields=[("n", np.int32, (), False)])
    with pytest.raises(PetastormSchemaError, match="'n'.*not nullable|'n'.*missing"):
        apply_batch_transform(strict, _columns(), transform_schema(SCHEMA, strict))


def test_batch_transform_exception_names_the_function():
    def broken(df):
        return df["no such column"]

    with pytest.raises(KeyError) as info:
        apply_batch_transform(TransformSpec(broken), _columns())
    assert any("broken" in n for n in info.value.__notes__)


def test_spec_with_a_closure_survives_cloudpickle():
    factor = 3
    spec = TransformSpec(lambda df: df.assign(id=df.id * factor), removed_fields=["matrix"])
    clone = pickle.loads(cloudpickle.dumps(spec))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = apply_batch_transform(clone, _columns(), transform_schema(SCHEMA, clone))
    assert out["id"].tolist() == [0, 3, 6, 9]
