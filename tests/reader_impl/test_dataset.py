"""Opening a dataset (reader_impl.dataset) seen from the readers: partition values keep their stored type,
an empty dataset reads as no rows."""
from petastorm import make_batch_reader, make_reader


def test_string_partition_values_keep_the_stored_type(tmp_path):
    import numpy as np

    from petastorm import write_dataset
    from petastorm.codecs import ScalarCodec
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("S", [UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
                             UnischemaField("p", np.str_, (), ScalarCodec(spark_type("StringType")), False)])
    url = "file://" + str(tmp_path / "ds")
    write_dataset(url, schema, [{"id": i, "p": ["007", "1", "10"][i % 3]} for i in range(9)], partition_by=["p"],
                  progress=False, workers_count=1)
    with make_reader(url) as reader:
        assert {(int(r.id), r.p) for r in reader} == {(i, ["007", "1", "10"][i % 3]) for i in range(9)}


def test_an_empty_dataset_reads_as_no_rows(tmp_path):
    import numpy as np

    from petastorm import write_dataset
    from petastorm.codecs import ScalarCodec
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("S", [UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False)])
    url = "file://" + str(tmp_path / "empty")
    write_dataset(url, schema, [], progress=False, workers_count=1)
    with make_reader(url) as reader:
        assert list(reader) == []
    with make_batch_reader(url) as reader:
        assert list(reader) == []
