"""The Spark converter feeding the torch / tf loaders, as a 0.12.1 user's script calls it.

Expected values marked "recorded" were observed on petastorm 0.12.1 (pyspark 3.5.9, TensorFlow 2.16, black-box
runs from outside the repository).
"""
import pytest

from petastorm.spark import SparkDatasetConverter, make_spark_converter

CONF = SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF


@pytest.fixture()
def odd_parent(spark_session, tmp_path):
    """A parent cache dir whose path holds a space and a literal ``%20`` (restores the conf afterwards)."""
    previous = spark_session.conf.get(CONF, None)
    parent = tmp_path / "my cache %20 dir"
    parent.mkdir()
    spark_session.conf.set(CONF, "file://" + str(parent))
    yield str(parent)
    if previous is None:
        spark_session.conf.unset(CONF)
    else:
        spark_session.conf.set(CONF, previous)


@pytest.mark.slow  # two Spark writes and the first TensorFlow import: ~13 s
def test_cache_dir_with_space_and_percent_is_read_by_the_loaders(spark_session, odd_parent):
    # Spark's inputFiles() gives percent-encoded URIs ('my%20cache%20%2520%20dir'): the loaders looked for that
    # literal path ('Passed non-file path: .../my%20cache%20%2520%20dir/part-...'). 0.12.1 failed alike
    # (recorded: FileNotFoundError on '/tmp/<dir>%20space/part-...'); a path with a space is ordinary on macOS/Windows.
    df = spark_session.range(7).selectExpr("id", "cast(id as double) / 2 as x").coalesce(1)
    converter = make_spark_converter(df)
    assert all(url.startswith("file://" + odd_parent + "/") for url in converter.file_urls)
    with converter.make_torch_dataloader(batch_size=7, num_epochs=1) as loader:
        batch = next(iter(loader))
    assert sorted(batch["id"].tolist()) == list(range(7))
    with converter.make_tf_dataset(batch_size=7, num_epochs=1) as dataset:
        element = next(iter(dataset))
    assert sorted(element.id.numpy().tolist()) == list(range(7))
    assert make_spark_converter(df).cache_dir_url == converter.cache_dir_url  # the cache is found again
    converter.delete()


def test_loaders_after_delete_say_the_files_were_deleted(spark_session, odd_parent):
    # Two converters of one DataFrame share the files; after delete() on either, both loaders failed with
    # 'Passed non-file path: <a part file>' (0.12.1, recorded: RuntimeError 'Timeout while waiting for all
    # parquet-store files to appear at urls ...' after a wait). Now the error says why and what to do.
    from petastorm.errors import DatasetNotFoundError

    df = spark_session.range(5).selectExpr("id * 3 as z")
    first, second = make_spark_converter(df), make_spark_converter(df)
    assert first.cache_dir_url == second.cache_dir_url
    first.delete()
    for converter in (first, second):
        with pytest.raises(DatasetNotFoundError, match=r"delete\(\) was called .*make_spark_converter\(df\)"):
            with converter.make_torch_dataloader(batch_size=2, num_epochs=1):
                pass
        with pytest.raises(DatasetNotFoundError, match=r"cached files are gone"):
            with converter.make_tf_dataset(batch_size=2, num_epochs=1):
                pass
    fresh = make_spark_converter(df)  # written again, readable
    assert fresh.cache_dir_url != first.cache_dir_url
    with fresh.make_torch_dataloader(batch_size=5, num_epochs=1) as loader:
        assert sorted(next(iter(loader))["z"].tolist()) == [0, 3, 6, 9, 12]
    fresh.delete()


def test_tf_dataset_prefetch_autotune(spark_session, odd_parent):
    # make_tf_dataset(prefetch=tf.data.AUTOTUNE) (== -1) is how TF code spells "autotune"; 0.12.1 accepted it
    # (recorded: batches [4, 4, 2] of 10 rows); it was refused ('prefetch must be None or an integer >= 0').
    import tensorflow as tf

    converter = make_spark_converter(spark_session.range(10).coalesce(1))
    with converter.make_tf_dataset(batch_size=4, num_epochs=1, prefetch=tf.data.AUTOTUNE) as dataset:
        assert [len(element.id) for element in dataset] == [4, 4, 2]
    with pytest.raises(ValueError, match=r"prefetch must be None or an integer >= 0, got -2 \(or tf.data.AUTOTUNE"):
        converter.make_tf_dataset(prefetch=-2)
    converter.delete()
