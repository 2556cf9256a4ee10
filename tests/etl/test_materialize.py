"""materialize_dataset around a real Spark write, and petastorm-generate-metadata with and without Spark."""
import json
import os
import pickle
import shutil
import subprocess
import sys

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from petastorm.errors import PetastormMetadataError
from petastorm.etl import dataset_metadata as dm
from petastorm.etl.petastorm_generate_metadata import generate_petastorm_metadata, main
from petastorm.unischema import dict_to_spark_row

from .test_dataset_metadata import SCHEMA, _row

LOCAL = pafs.LocalFileSystem()
MIB = 1024 * 1024


def _footer_counts(path):
    return {rel: pq.ParquetFile(os.path.join(path, rel)).metadata.num_row_groups
            for rel in dm.list_data_files(LOCAL, path)}


def _write_with_spark(spark, url, rows=12, partitions=2):
    # rows are encoded here: executors cannot import this test module
    encoded = [dict_to_spark_row(SCHEMA, _row(i)) for i in range(rows)]
    frame = spark.createDataFrame(encoded, SCHEMA.as_spark_schema()).coalesce(partitions)
    frame.write.mode("overwrite").parquet(url)


@pytest.mark.spark
@pytest.mark.slow
def test_materialize_dataset_writes_metadata_and_restores_the_hadoop_conf(spark_session, tmp_path):
    path = str(tmp_path / "spark_ds")
    url = "file://" + path
    conf = spark_session.sparkContext._jsc.hadoopConfiguration()
    before = conf.get("parquet.block.size")
    conf.set("parquet.block.size", "12345")
    try:
        with dm.materialize_dataset(spark_session, url, SCHEMA, row_group_size_mb=3):
            assert conf.get("parquet.block.size") == str(3 * MIB)
            _write_with_spark(spark_session, url)
        assert conf.get("parquet.block.size") == "12345"
    finally:  # the session is shared by the whole run: leave its conf as it was
        if before is None:
            conf.unset("parquet.block.size")
        else:
            conf.set("parquet.block.size", before)
    metadata = dm.read_dataset_metadata(LOCAL, path)
    assert dm.load_unischema(metadata, path) == SCHEMA
    assert pickle.loads(metadata[dm.UNISCHEMA_KEY]) == SCHEMA
    counts = dm.load_num_row_groups_per_file(metadata, path)
    assert counts == _footer_counts(path) and len(counts) == 2
    assert all(not os.path.isabs(rel) for rel in counts)
    assert b"org.apache.spark.sql.parquet.row.metadata" in metadata  # Spark's own key is kept
    assert dm.get_schema_from_dataset_url(url) == SCHEMA
    rows = pq.ParquetDataset(path).read().num_rows
    assert rows == 12


@pytest.mark.spark
def test_materialize_dataset_with_a_failing_block_writes_no_metadata(spark_session, tmp_path):
    path = str(tmp_path / "failed")
    conf = spark_session.sparkContext._jsc.hadoopConfiguration()
    before = conf.get("parquet.block.size")
    with pytest.raises(RuntimeError, match="boom"):
        with dm.materialize_dataset(spark_session, "file://" + path, SCHEMA, row_group_size_mb=1):
            raise RuntimeError("boom")
    assert conf.get("parquet.block.size") == before
    assert not os.path.exists(os.path.join(path, "_common_metadata"))


@pytest.mark.spark
def test_materialize_dataset_with_summary_metadata(spark_session, tmp_path):
    path = str(tmp_path / "summary")
    url = "file://" + path
    conf = spark_session.sparkContext._jsc.hadoopConfiguration()
    conf.unset("parquet.summary.metadata.level")
    with dm.materialize_dataset(spark_session, url, SCHEMA, use_summary_metadata=True):
        assert conf.get("parquet.summary.metadata.level") == "ALL"
        _write_with_spark(spark_session, url, rows=6, partitions=2)
    assert conf.get("parquet.summary.metadata.level") is None
    counts = dm.load_num_row_groups_per_file(dm.read_dataset_metadata(LOCAL, path), path)
    summary = pq.read_metadata(os.path.join(path, "_metadata"))
    assert summary.num_row_groups == sum(counts.values()) and summary.num_rows == 6
    assert dm.get_schema_from_dataset_url(url) == SCHEMA


@pytest.mark.spark
def test_materialize_dataset_with_a_filesystem_factory(spark_session, tmp_path):
    path = str(tmp_path / "factory")
    url = "file://" + path
    with dm.materialize_dataset(spark_session, url, SCHEMA, filesystem_factory=pafs.LocalFileSystem):
        _write_with_spark(spark_session, url, rows=4, partitions=1)
    assert dm.get_schema_from_dataset_url(url) == SCHEMA


# --- petastorm-generate-metadata -------------------------------------------------------------------------------

@pytest.fixture
def legacy_without_metadata(testdata_dir, tmp_path):
    path = str(tmp_path / "legacy_no_meta")
    shutil.copytree(os.path.join(testdata_dir, "legacy", "0.7.6"), path)
    os.remove(os.path.join(path, "_common_metadata"))
    return path


@pytest.fixture
def schema_module(testdata_dir, tmp_path, monkeypatch):
    """An importable module holding the legacy dataset's schema (what --unischema_class points at)."""
    module_dir = tmp_path / "schema_pkg"
    module_dir.mkdir()
    (module_dir / "legacy_schema_mod.py").write_text(
        "from petastorm.etl.dataset_metadata import get_schema_from_dataset_url\n"
        f"LegacySchema = get_schema_from_dataset_url({'file://' + os.path.join(testdata_dir, 'legacy', '0.7.6')!r})\n")
    monkeypatch.syspath_prepend(str(module_dir))
    return "legacy_schema_mod.LegacySchema", str(module_dir)


def _assert_metadata_like_legacy(path, testdata_dir):
    original = os.path.join(testdata_dir, "legacy", "0.7.6")
    original_md = dm.read_dataset_metadata(LOCAL, original)
    metadata = dm.read_dataset_metadata(LOCAL, path)
    assert dm.load_unischema(metadata, path) == dm.load_unischema(original_md, original)
    assert dm.load_num_row_groups_per_file(metadata, path) == dm.load_num_row_groups_per_file(original_md, original)


def test_generate_metadata_without_spark(legacy_without_metadata, schema_module, testdata_dir):
    with pytest.raises(PetastormMetadataError, match="Could not find _common_metadata file"):
        generate_petastorm_metadata(None, "file://" + legacy_without_metadata)
    generate_petastorm_metadata(None, "file://" + legacy_without_metadata, schema_module[0])
    _assert_metadata_like_legacy(legacy_without_metadata, testdata_dir)
    # Run again without --unischema_class: the stored schema is reused, other keys are kept.
    md_path = os.path.join(legacy_without_metadata, "_common_metadata")
    schema = pq.read_schema(md_path)
    pq.write_metadata(schema.with_metadata({**schema.metadata, b"keep.me": b"1"}), md_path)
    generate_petastorm_metadata(None, legacy_without_metadata, use_summary_metadata=True)
    _assert_metadata_like_legacy(legacy_without_metadata, testdata_dir)
    assert pq.read_schema(md_path).metadata[b"keep.me"] == b"1"
    summary = pq.read_metadata(os.path.join(legacy_without_metadata, "_metadata"))
    assert summary.num_row_groups == 10 and summary.num_rows == 100


def test_generate_metadata_rejects_what_is_not_a_unischema(legacy_without_metadata):
    with pytest.raises(ValueError, match="is not an instance of a petastorm.Unischema object"):
        generate_petastorm_metadata(None, legacy_without_metadata, "os.path.join")
    with pytest.raises(ValueError, match="not.a.module.Schema"):
        generate_petastorm_metadata(None, legacy_without_metadata, "not.a.module.Schema")


@pytest.mark.spark
def test_generate_metadata_with_spark(legacy_without_metadata, schema_module, testdata_dir, spark_session):
    generate_petastorm_metadata(spark_session, "file://" + legacy_without_metadata, schema_module[0])
    _assert_metadata_like_legacy(legacy_without_metadata, testdata_dir)


def test_generate_metadata_command_line(legacy_without_metadata, schema_module, testdata_dir, capsys):
    assert main(["--dataset_url", "file://" + legacy_without_metadata, "--unischema_class", schema_module[0]]) == 0
    _assert_metadata_like_legacy(legacy_without_metadata, testdata_dir)
    assert "_common_metadata" in capsys.readouterr().out


def test_generate_metadata_console_script(legacy_without_metadata, schema_module, testdata_dir):
    script = os.path.join(os.path.dirname(sys.executable), "petastorm-generate-metadata")
    env = dict(os.environ, PYTHONPATH=schema_module[1])
    result = subprocess.run([script, "--dataset_url", legacy_without_metadata, "--unischema_class", schema_module[0]],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    _assert_metadata_like_legacy(legacy_without_metadata, testdata_dir)
    counts = json.loads(dm.read_dataset_metadata(LOCAL, legacy_without_metadata)[dm.ROW_GROUPS_PER_FILE_KEY])
    assert sum(counts.values()) == 10
