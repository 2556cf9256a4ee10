"""write_dataset on bad rows: a PetastormSchemaError naming the row and the field, and no dataset published."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from _fixtures.rows import DROP, changed

from petastorm.codecs import CompressedImageCodec, NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormSchemaError
from petastorm.etl.writer import write_dataset
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

SCHEMA = Unischema("Bad", [
    UnischemaField("id", np.int32, (), ScalarCodec(spark_type("IntegerType")), False),
    UnischemaField("small", np.int8, (), None, False),
    UnischemaField("matrix", np.float32, (4, 5), NdarrayCodec(), False),
    UnischemaField("image", np.uint8, (32, 32, 3), CompressedImageCodec("png"), False),
    UnischemaField("any_image", np.uint8, (32, 32, None), CompressedImageCodec("png"), False),
    UnischemaField("label", np.str_, (), None, True),
])

BAD_ROW = 9


def _good_row(i: int) -> dict:
    return {"id": i, "small": i % 100, "matrix": np.full((4, 5), i, np.float32),
            "image": np.full((32, 32, 3), i, np.uint8), "any_image": np.full((32, 32, 1), i, np.uint8),
            "label": None if i % 2 else f"label {i}"}


def _rows_with(bad: dict, total: int = 20):
    for i in range(total):
        if i == BAD_ROW:
            yield bad
        else:
            yield _good_row(i)


def _changed(**changes) -> dict:
    return changed(_good_row(BAD_ROW), **changes)


CASES = {
    "wrong_dtype": (_changed(matrix=np.full((4, 5), 1, np.float64)), "matrix", r"float32.*got float64"),
    "wrong_shape": (_changed(matrix=np.zeros((5, 4), np.float32)), "matrix", r"\(4, 5\).*\(5, 4\)"),
    "missing_non_nullable": (_changed(matrix=DROP), "matrix", "missing and is not nullable"),
    "unknown_field": (_changed(colour="red"), "colour", "not in the schema"),
    "none_in_non_nullable": (_changed(image=None), "image", "not nullable"),
    "image_wrong_channel_count": (_changed(image=np.zeros((32, 32, 4), np.uint8)), "image", r"\(32, 32, 4\)"),
    "image_channels_a_codec_cannot_write": (_changed(any_image=np.zeros((32, 32, 2), np.uint8)), "any_image",
                                            r"\(H, W, 1\|3\|4\)"),
    "image_wrong_dtype": (_changed(image=np.zeros((32, 32, 3), np.float32)), "image", "uint8.*float32"),
    "scalar_out_of_range": (_changed(small=300), "small", "does not fit"),
    "array_for_a_scalar": (_changed(id=np.arange(3)), "id", "scalar"),
    "string_for_an_integer": (_changed(id="seven"), "id", "integer"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_row_names_row_and_field_and_publishes_nothing(tmp_path, case):
    bad, field, detail = CASES[case]
    with pytest.raises(PetastormSchemaError) as info:
        write_dataset(str(tmp_path / "ds"), SCHEMA, _rows_with(bad), workers_count=1, progress=False, chunk_rows=4)
    message = str(info.value)
    assert f"row {BAD_ROW} of the input" in message, message
    assert repr(field) in message or f"[{field!r}]" in message, message
    assert re.search(detail, message), message
    assert os.listdir(tmp_path) == []  # neither the dataset nor the temporary directory


@pytest.mark.parametrize("case", ["unknown_field", "image_wrong_channel_count"])
def test_bad_row_found_in_a_worker_process_is_reported_the_same_way(tmp_path, case):
    bad, field, detail = CASES[case]
    with pytest.raises(PetastormSchemaError, match=f"row {BAD_ROW} of the input") as info:
        write_dataset(str(tmp_path / "ds"), SCHEMA, _rows_with(bad), workers_count=2, progress=False, chunk_rows=4)
    assert field in str(info.value)
    assert os.listdir(tmp_path) == []


def test_the_first_bad_row_in_input_order_is_reported(tmp_path):
    rows = [_good_row(i) for i in range(12)]
    rows[10] = _changed(image=None)
    rows[5] = _changed(matrix=np.zeros((1, 1), np.float32))
    with pytest.raises(PetastormSchemaError, match="row 5 of the input: .*field 'matrix'"):
        write_dataset(str(tmp_path / "ds"), SCHEMA, rows, workers_count=2, progress=False, chunk_rows=2)
    assert os.listdir(tmp_path) == []


def test_a_row_that_is_not_a_dict_is_named(tmp_path):
    rows = [_good_row(0), ("not", "a", "dict")]
    with pytest.raises(PetastormSchemaError, match="row 1 of the input: expected a dict"):
        write_dataset(str(tmp_path / "ds"), SCHEMA, rows, workers_count=1, progress=False)
    assert os.listdir(tmp_path) == []
