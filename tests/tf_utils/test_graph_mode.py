"""TF1-style code (``tf.compat.v1`` with ``tf.disable_v2_behavior()``): tf_tensors and make_one_shot_iterator.

``disable_v2_behavior`` is process-global, so the checks run in one child process (one TensorFlow import),
each in a fresh ``tf.Graph``; the child reports a JSON result per check. Expected values marked "recorded"
were recorded from the original petastorm 0.12.1 (TensorFlow 2.16.2) on the same datasets.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from .test_make_petastorm_dataset import write_tf_datasets

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

CHILD = textwrap.dedent('''
    import json, os, sys, threading, traceback
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    from petastorm import make_reader, make_batch_reader
    from petastorm.ngram import NGram
    from petastorm.tf_utils import make_petastorm_dataset, tf_tensors

    URLS = json.loads(sys.argv[1])
    results = {}

    def check(fn):
        with tf.Graph().as_default():
            try:
                results[fn.__name__] = {"ok": fn()}
            except BaseException as e:
                results[fn.__name__] = {"error": type(e).__name__, "message": str(e)[:2000],
                                        "traceback": traceback.format_exc()[-3000:]}
        return fn

    def layout(t):
        if isinstance(t, dict):
            return {str(k): layout(v) for k, v in t.items()}
        return [type(t).__name__] + [[n, v.dtype.name, v.shape.as_list() if v.shape.dims is not None else None]
                                     for n, v in zip(t._fields, t)]

    def plain(v):
        return v.decode() if isinstance(v, bytes) else v.tolist() if hasattr(v, "tolist") else v

    @check
    def readme_snippet_tf_tensors():
        # the original README's snippet, as written
        with make_reader(URLS["all"]) as reader:
            tensor = tf_tensors(reader)
            with tf.Session() as sess:
                sample = sess.run(tensor)
        return {"layout": layout(tensor), "type": type(sample).__name__,
                "sample": {k: plain(v) for k, v in sample._asdict().items() if k != "img"}}

    @check
    def readme_snippet_one_shot_iterator():
        # the original README's snippet, as written
        with make_reader(URLS["all"]) as reader:
            dataset = make_petastorm_dataset(reader)
            iterator = dataset.make_one_shot_iterator()
            tensor = iterator.get_next()
            with tf.Session() as sess:
                sample = sess.run(tensor)
        return {"layout": layout(tensor), "type": type(sample).__name__, "id": int(sample.id),
                "dataset_type": type(dataset).__name__}

    @check
    def one_shot_iterator_to_the_end():
        with make_reader(URLS["all"], shuffle_row_groups=False, schema_fields=["id", "s"]) as reader:
            tensor = make_petastorm_dataset(reader).make_one_shot_iterator().get_next()
            ids = []
            with tf.Session() as sess:
                try:
                    while True:
                        ids.append(int(sess.run(tensor).id))
                except tf.errors.OutOfRangeError:
                    return ids

    @check
    def one_shot_iterator_batch_and_ngram_readers():
        with make_batch_reader(URLS["syn"], shuffle_row_groups=False, schema_fields=["id", "matrix"]) as reader:
            batch = make_petastorm_dataset(reader).make_one_shot_iterator().get_next()
            with tf.Session() as sess:
                ids = sess.run(batch).id.tolist()
        ngram = NGram({0: ["id", "timestamp"], 1: ["id", "name"]}, delta_threshold=10, timestamp_field="timestamp")
        with make_reader(URLS["syn"], shuffle_row_groups=False, schema_fields=ngram) as reader:
            window = make_petastorm_dataset(reader).make_one_shot_iterator().get_next()
            with tf.Session() as sess:
                w = sess.run(window)
        return {"batch_layout": layout(batch), "batch_ids": ids, "ngram_layout": layout(window),
                "ngram": [int(w[0].id), int(w[1].id), w[1].name.decode()]}

    @check
    def tf_tensors_to_the_end():
        with make_reader(URLS["all"], shuffle_row_groups=False, schema_fields=["id", "ts", "dt", "u32"]) as reader:
            t = tf_tensors(reader)
            rows = []
            with tf.Session() as sess:
                try:
                    for _ in range(20):
                        s = sess.run(t)
                        rows.append([int(s.id), int(s.ts), int(s.dt), int(s.u32)])
                except tf.errors.OutOfRangeError:
                    return rows

    @check
    def tf_tensors_shuffling_endless_reader():
        with make_reader(URLS["syn"], shuffle_row_groups=False, schema_fields=["id", "matrix"],
                         num_epochs=None) as reader:
            t = tf_tensors(reader, shuffling_queue_capacity=10, min_after_dequeue=5)
            with tf.Session() as sess:
                coord = tf.train.Coordinator()
                threads = tf.train.start_queue_runners(sess=sess, coord=coord)
                ids = [int(sess.run(t).id) for _ in range(15)]
                coord.request_stop()
                coord.join(threads, stop_grace_period_secs=10)
        return {"layout": layout(t), "ids": ids}

    @check
    def tf_tensors_shuffling_finite_reader():
        with make_reader(URLS["all"], shuffle_row_groups=False, schema_fields=["id", "f32"]) as reader:
            t = tf_tensors(reader, shuffling_queue_capacity=4, min_after_dequeue=2)
            ids = []
            with tf.Session() as sess:
                coord = tf.train.Coordinator()
                threads = tf.train.start_queue_runners(sess=sess, coord=coord)
                try:
                    for _ in range(20):
                        ids.append(int(sess.run(t).id))
                except tf.errors.OutOfRangeError:
                    pass
                coord.request_stop()
                coord.join(threads, stop_grace_period_secs=10)
        return ids

    @check
    def tf_tensors_batch_reader():
        with make_batch_reader(URLS["syn"], shuffle_row_groups=False, schema_fields=["id", "value", "name"]) as reader:
            t = tf_tensors(reader)
            with tf.Session() as sess:
                s = sess.run(t)
        return {"layout": layout(t), "id": s.id.tolist(), "name": [n.decode() for n in s.name[:2]]}

    @check
    def tf_tensors_batch_reader_with_shuffling():
        with make_batch_reader(URLS["syn"], schema_fields=["id", "value"]) as reader:
            tf_tensors(reader, shuffling_queue_capacity=10)

    @check
    def tf_tensors_ngram():
        ngram = NGram({-1: ["id", "timestamp"], 0: ["id", "matrix"]}, delta_threshold=10, timestamp_field="timestamp")
        with make_reader(URLS["syn"], shuffle_row_groups=False, schema_fields=ngram) as reader:
            t = tf_tensors(reader)
            with tf.Session() as sess:
                s = sess.run(t)
        return {"layout": layout(t), "ids": {str(k): int(v.id) for k, v in s.items()}}

    @check
    def tf_tensors_ngram_with_shuffling():
        ngram = NGram({-1: ["id", "timestamp"], 0: ["id", "matrix"]}, delta_threshold=10, timestamp_field="timestamp")
        with make_reader(URLS["syn"], shuffle_row_groups=False, schema_fields=ngram, num_epochs=None) as reader:
            t = tf_tensors(reader, shuffling_queue_capacity=10, min_after_dequeue=3)
            with tf.Session() as sess:
                coord = tf.train.Coordinator()
                threads = tf.train.start_queue_runners(sess=sess, coord=coord)
                pairs = [[int(s[-1].id), int(s[0].id)] for s in (sess.run(t) for _ in range(8))]
                coord.request_stop()
                coord.join(threads, stop_grace_period_secs=10)
        return pairs

    @check
    def tf_tensors_none_value():
        with make_reader(URLS["nul"], shuffle_row_groups=False) as reader:
            t = tf_tensors(reader)
            with tf.Session() as sess:
                sess.run(t)

    @check
    def tf_tensors_min_after_dequeue_too_large():
        with make_reader(URLS["syn"], schema_fields=["id", "value"]) as reader:
            tf_tensors(reader, shuffling_queue_capacity=5, min_after_dequeue=5)

    @check
    def threads_left():
        import time
        deadline = time.time() + 10
        while threading.active_count() > 1 and time.time() < deadline:
            time.sleep(0.1)
        return sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())

    print("RESULTS " + json.dumps(results, default=lambda o: o.decode() if isinstance(o, bytes) else repr(o)))
''')


@pytest.fixture(scope="module")
def graph_results(tmp_path_factory):
    urls = write_tf_datasets(str(tmp_path_factory.mktemp("tf_graph_datasets")))
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(urls)], capture_output=True, text=True,
                          timeout=240, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(lines[-1][len("RESULTS "):])


def _ok(results, name):
    result = results[name]
    assert "ok" in result, result.get("traceback") or result
    return result["ok"]


# recorded from 0.12.1: tf_tensors over make_reader(all), shapes with '?' for variable dimensions
RECORDED_GRAPH_LAYOUT = [
    ["id", "int64", []], ["b", "bool", []], ["i8", "int8", []], ["i16", "int16", []], ["i32", "int32", []],
    ["u8", "uint8", []], ["u16", "int32", []], ["u32", "int64", []], ["f32", "float32", []],
    ["f64", "float64", []], ["s", "string", []], ["by", "string", []], ["dec", "string", []],
    ["ts", "int64", []], ["dt", "int64", []], ["a_u16", "int32", [3]], ["a_f32", "float32", [2, 3]],
    ["a_b", "bool", [2]], ["a_i8", "int8", [2]], ["var", "int32", [None]], ["var2", "float64", [None, 2]],
    ["img", "uint8", [4, 5, 3]], ["a_str", "string", [2]],
]


@pytest.mark.slow
def test_readme_tf_tensors_snippet_runs_as_written(graph_results):
    out = _ok(graph_results, "readme_snippet_tf_tensors")
    assert out["layout"] == ["AllTypes_view"] + RECORDED_GRAPH_LAYOUT
    assert out["type"] == "AllTypes_view"
    sample = out["sample"]
    # the default reader shuffles row groups: the sample is row 0 or row 5 (first row of a row group)
    i = sample["id"]
    assert i in (0, 5)
    assert sample["u16"] == 60000 + i and sample["u32"] == 4000000000 + i and sample["s"] == f"s{i}"
    assert sample["dec"] == ("0" if i == 0 else "0.005")
    assert sample["a_u16"] == [60000, i, 1] and sample["a_str"] == ["x", str(i)]
    # the original's tf_tensors failed on datetime and scalar uint32 fields ('Unsupported numpy type:
    # NPY_DATETIME', '... is uint32, but expects int64'); we give the make_petastorm_dataset values
    assert sample["ts"] == 1577836800000001 + i * 1000000 and sample["dt"] == 18262 + i


@pytest.mark.slow
def test_readme_one_shot_iterator_snippet_runs_as_written(graph_results):
    out = _ok(graph_results, "readme_snippet_one_shot_iterator")
    assert out["layout"] == ["AllTypes_view"] + RECORDED_GRAPH_LAYOUT  # recorded
    assert out["type"] == "AllTypes_view" and out["id"] in (0, 5)
    assert out["dataset_type"] == "DatasetV1Adapter"  # recorded


@pytest.mark.slow
def test_one_shot_iterator_ends_with_out_of_range_after_every_row(graph_results):
    assert _ok(graph_results, "one_shot_iterator_to_the_end") == list(range(10))  # recorded


@pytest.mark.slow
def test_one_shot_iterator_over_batch_and_ngram_readers(graph_results):
    out = _ok(graph_results, "one_shot_iterator_batch_and_ngram_readers")
    # recorded: batch elements with a leading unknown dimension, ngram elements a dict of namedtuples
    assert out["batch_layout"] == ["SyntheticSchema_view_view", ["id", "int64", [None]], ["matrix", "float32", [None, 4, 3]]]
    assert out["batch_ids"] == list(range(10))
    assert out["ngram_layout"] == {"0": ["SyntheticSchema_view_view_view", ["id", "int64", []], ["timestamp", "int64", []]],
                                   "1": ["SyntheticSchema_view_view_view", ["id", "int64", []], ["name", "string", []]]}
    assert out["ngram"] == [0, 1, "row_1"]


@pytest.mark.slow
def test_tf_tensors_reads_every_row_then_raises_out_of_range(graph_results):
    rows = _ok(graph_results, "tf_tensors_to_the_end")
    # recorded: OutOfRangeError after the 10 rows
    assert [r[0] for r in rows] == list(range(10))
    assert rows[1] == [1, 1577836801000001, 18263, 4000000001]


@pytest.mark.slow
def test_tf_tensors_shuffling_queue_mixes_rows(graph_results):
    out = _ok(graph_results, "tf_tensors_shuffling_endless_reader")
    assert out["layout"] == ["SyntheticSchema_view_view", ["id", "int64", []], ["matrix", "float32", [4, 3]]]  # recorded
    ids = out["ids"]
    # an endless reader (20 rows an epoch): the queue may already hold rows of the second epoch
    assert len(ids) == 15 and ids != sorted(ids) and len(set(ids)) >= 10
    assert all(0 <= i < 20 for i in ids)


@pytest.mark.slow
def test_tf_tensors_shuffling_queue_drains_a_finite_reader(graph_results):
    assert sorted(_ok(graph_results, "tf_tensors_shuffling_finite_reader")) == list(range(10))


@pytest.mark.slow
def test_tf_tensors_over_a_batch_reader(graph_results):
    out = _ok(graph_results, "tf_tensors_batch_reader")
    # recorded: batch tensors with a leading unknown dimension
    assert out["layout"] == ["SyntheticSchema_view_view", ["id", "int64", [None]], ["value", "float64", [None]],
                             ["name", "string", [None]]]
    assert out["id"] == list(range(10)) and out["name"] == ["row_0", "row_1"]


@pytest.mark.slow
def test_tf_tensors_refuses_shuffling_a_batch_reader_with_the_originals_error(graph_results):
    result = graph_results["tf_tensors_batch_reader_with_shuffling"]
    assert result.get("error") == "PetastormArgumentError"  # a ValueError, as the original's
    assert result["message"].startswith("shuffling_queue_capacity can not be used with a reader that produces "
                                        "batched_output")  # recorded


@pytest.mark.slow
def test_tf_tensors_ngram_gives_a_dict_of_namedtuples(graph_results):
    out = _ok(graph_results, "tf_tensors_ngram")
    assert out["layout"] == {"-1": ["SyntheticSchema_view_view_view", ["id", "int64", []], ["timestamp", "int64", []]],
                             "0": ["SyntheticSchema_view_view_view", ["id", "int64", []], ["matrix", "float32", [4, 3]]]}
    assert out["ids"] == {"-1": 0, "0": 1}  # recorded
    pairs = _ok(graph_results, "tf_tensors_ngram_with_shuffling")
    assert len(pairs) == 8 and all(b == a + 1 for a, b in pairs)  # windows stay whole when shuffled


@pytest.mark.slow
def test_tf_tensors_none_value_raises_naming_the_field(graph_results):
    result = graph_results["tf_tensors_none_value"]
    assert "error" in result  # recorded: the original raised too (UnknownError)
    assert 'Encountered "maybe"=None' in result["message"]


@pytest.mark.slow
def test_tf_tensors_checks_min_after_dequeue(graph_results):
    result = graph_results["tf_tensors_min_after_dequeue_too_large"]
    # a PetastormArgumentError that is also a TypeError: the original raised a TypeError here (recorded)
    assert result.get("error") == "PetastormArgumentTypeError"
    assert "min_after_dequeue (5) must be smaller than shuffling_queue_capacity (5)" in result["message"]


@pytest.mark.slow
def test_no_reader_thread_is_left_after_the_graph_mode_checks(graph_results):
    left = _ok(graph_results, "threads_left")
    assert not [name for name in left if "petastorm" in name.lower() or "worker" in name.lower()], left
