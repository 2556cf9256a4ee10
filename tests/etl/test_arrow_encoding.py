"""petastorm.etl.arrow_encoding: rows -> Arrow columns for the embedded writer (dates given as numpy values)."""
import datetime

import numpy as np
import pytest

from petastorm.codecs import ScalarCodec
from petastorm.errors import PetastormSchemaError
from petastorm.etl.arrow_encoding import dataset_arrow_schema, encode_rows_to_batch
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

_SCHEMA = Unischema("Dates", [UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
                              UnischemaField("d", np.datetime64, (), ScalarCodec(spark_type("DateType")), True)])


def _batch(values):
    return encode_rows_to_batch(_SCHEMA, dataset_arrow_schema(_SCHEMA), [{"id": i, "d": v} for i, v in enumerate(values)], 0)


def test_a_date_field_takes_numpy_datetimes_of_whole_days_and_nulls():
    # before: np.datetime64('2020-01-01') was refused ("int() argument must be ... not 'datetime.date'")
    batch = _batch([np.datetime64("2020-01-01"), datetime.date(2021, 2, 3), None, np.datetime64("2022-03-04T00:00")])
    assert batch.column("d").to_pylist() == [datetime.date(2020, 1, 1), datetime.date(2021, 2, 3), None,
                                             datetime.date(2022, 3, 4)]


def test_a_time_of_day_in_a_date_field_is_refused_naming_the_row_and_field():
    with pytest.raises(PetastormSchemaError, match=r"row 1 of the input: field 'd'.*time of day does not fit a date"):
        _batch([np.datetime64("2020-01-01"), np.datetime64("2020-01-01T05:00")])
