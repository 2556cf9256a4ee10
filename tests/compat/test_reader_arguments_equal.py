"""The reader's arguments where ours already did as 0.12.1: the behaviours of ``make_reader`` /
``make_batch_reader`` found equal to 0.12.1's, pinned so that they stay so. Every expected value was recorded by running the original
0.12.1 as a black box on the same data (public API only). The datasets are those of
``test_reader_arguments_fixed.py`` (the defects found, each with its fix): ``_indexed_dataset.py``, ``conftest.py``.
"""

import numpy as np
import pytest

from petastorm import make_batch_reader, make_reader
from petastorm.ngram import NGram
from petastorm.predicates import (
    in_intersection,
    in_lambda,
    in_negate,
    in_pseudorandom_split,
    in_reduce,
    in_set,
)
from petastorm.selectors import IntersectIndexSelector, SingleIndexSelector, UnionIndexSelector

from ._indexed_dataset import FACTORIES, IndexedSchema, read_ids

_PREDICATES = {  # name -> (dataset fixture, predicate, ids recorded from 0.12.1 in read order)
    "split_id": ("legacy", lambda: in_pseudorandom_split([0.3, 0.7], 0, "id"),
                 [0, 1, 3, 5, 6, 10, 13, 22, 25, 42, 44, 48, 49, 52, 53, 55, 56, 57, 59, 61, 65, 79, 80, 81, 91, 92,
                  93, 94, 96, 99]),
    "split_name": ("part", lambda: in_pseudorandom_split([0.5, 0.5], 1, "name"),
                   [8, 12, 20, 24, 28, 5, 13, 25, 33, 2, 10, 22, 26, 30, 3, 23, 27, 31, 35]),
    "split_partition": ("legacy", lambda: in_pseudorandom_split([0.5, 0.5], 0, "partition_key"),
                        list(range(10)) + list(range(20, 40)) + list(range(60, 70))),
    "split_codecs": ("codecs", lambda: in_pseudorandom_split([0.3, 0.7], 0, "id"),
                     [0, 44, 48, 52, 56, 1, 5, 13, 25, 49, 53, 57, 6, 10, 22, 42, 3, 55, 59]),
    "lambda_state": ("legacy", lambda: in_lambda(["id"], lambda x, s: x < s["lim"], {"lim": 6}), list(range(6))),
    "lambda_two_fields": ("codecs", lambda: in_lambda(["id", "partition"], lambda i, p: (i % 2 == 0) & (p in ("p_0", "p_2"))),
                          list(range(0, 60, 4)) + list(range(2, 60, 4))),
    "reduce_all": ("codecs", lambda: in_reduce([in_set(set(range(20)), "id"), in_lambda(["id"], lambda x: x % 2 == 1)],
                                               all), [1, 5, 9, 13, 17, 3, 7, 11, 15, 19]),
    "reduce_any": ("part", lambda: in_reduce([in_set({1}, "id"), in_set({"p3"}, "part")], any),
                   [1, 3, 7, 11, 15, 19, 23, 27, 31, 35, 39]),
    "negate_partition": ("legacy", lambda: in_negate(in_set({"p_1"}, "partition_key")),
                         list(range(10)) + list(range(20, 100))),
    "numpy_values": ("legacy", lambda: in_set({np.int64(3), np.int32(4)}, "id"), [3, 4]),
    "intersection": ("legacy", lambda: in_intersection(["test_sensor"], "sensor_name"), list(range(100))),
    "intersection_none": ("legacy", lambda: in_intersection(["nope"], "sensor_name"), []),
}


@pytest.mark.parametrize("name", sorted(_PREDICATES))
def test_predicates_select_the_originals_rows(request, name):
    dataset, make, expected = _PREDICATES[name]
    url = request.getfixturevalue(f"{dataset}_url")
    assert read_ids(make_reader, url, predicate=make()) == expected
    for pool in ("thread", "process"):
        assert sorted(read_ids(make_reader, url, predicate=make(), reader_pool_type=pool, workers_count=2)) == \
            sorted(expected), pool


_SELECTORS = {  # recorded from 0.12.1 (legacy/0.7.6 indexes: 'id' and 'partition_key')
    "single": (lambda: SingleIndexSelector("id", [1, 2, 55]), list(range(10)) + list(range(50, 60))),
    "union": (lambda: UnionIndexSelector([SingleIndexSelector("id", [1]), SingleIndexSelector("partition_key", ["p_3"])]),
              list(range(10)) + list(range(30, 40))),
    "intersect": (lambda: IntersectIndexSelector([SingleIndexSelector("id", [1, 2, 55]),
                                                  SingleIndexSelector("partition_key", ["p_0"])]), list(range(10))),
    "missing_value": (lambda: SingleIndexSelector("id", [12345]), []),
}


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("name", sorted(_SELECTORS))
def test_selectors_on_the_legacy_indexes_select_the_originals_rows(legacy_url, factory, name):
    make, expected = _SELECTORS[name]
    assert read_ids(factory, legacy_url, rowgroup_selector=make()) == expected


def test_selectors_on_an_index_built_by_build_rowgroup_index(part_url):
    # recorded from 0.12.1 over the same dataset and index (by_id, by_name)
    union = UnionIndexSelector([SingleIndexSelector("by_id", [1]), SingleIndexSelector("by_name", ["n33"])])
    assert read_ids(make_reader, part_url, rowgroup_selector=union) == [1, 5, 9, 13, 17, 21, 25, 29, 33, 37]
    intersect = IntersectIndexSelector([SingleIndexSelector("by_id", [1, 2, 35]),
                                        SingleIndexSelector("by_name", ["n1", "n2"])])
    assert read_ids(make_reader, part_url, rowgroup_selector=intersect) == [1, 5, 9, 13, 17, 2, 6, 10, 14, 18]


def test_shard_seed_deals_the_originals_row_groups(codecs_url):
    # recorded from 0.12.1 (a UserWarning says shard_seed is deprecated, as in the original)
    with pytest.warns(UserWarning, match="shard_seed was deprecated"):
        with make_reader(codecs_url, cur_shard=0, shard_count=3, shard_seed=5, workers_count=1,
                         shuffle_row_groups=False) as reader:
            ids = [int(row.id) for row in reader]
    assert ids == [48, 52, 56, 18, 22, 26, 33, 37, 41, 0, 4, 8, 12, 47, 51, 55, 59, 3, 7, 11]


@pytest.mark.parametrize("factory", FACTORIES)
def test_the_end_of_a_reader_and_reset_as_the_original(part_url, factory):
    # recorded from 0.12.1: StopIteration on every next() after the end; reset() reads it all again; reset() in
    # the middle of a pass is a NotImplementedError; reader attributes
    with factory(part_url, workers_count=1, num_epochs=2) as reader:
        assert reader.batched_output is (factory is make_batch_reader)
        assert reader.is_batched_reader is (factory is make_batch_reader)
        assert reader.ngram is None and reader.schema._name == "IndexedSchema"
        first = sum(1 for _ in reader)
        for _ in range(3):
            with pytest.raises(StopIteration):
                next(reader)
        assert reader.last_row_consumed is True
        reader.reset()
        assert sum(1 for _ in reader) == first == (80 if factory is make_reader else 16)
        reader.reset()
        next(reader)
        with pytest.raises(NotImplementedError, match="^Currently do not support resetting a reader while in the "
                                                      "middle of iteration"):
            reader.reset()


def test_ngram_windows_as_the_original(flat_url, part_url):
    schema = IndexedSchema
    fields = schema.fields
    no_overlap = NGram({i: [fields["id"]] for i in range(3)}, delta_threshold=1, timestamp_field=fields["id"],
                       timestamp_overlap=False)
    with make_reader(flat_url, schema_fields=no_overlap, workers_count=1, shuffle_row_groups=False) as reader:
        assert reader.ngram is no_overlap
        windows = [[int(w[i].id) for i in range(3)] for w in reader]
    assert windows == [[i, i + 1, i + 2] for i in range(0, 40, 5)]  # recorded from 0.12.1
    delta = NGram({0: [fields["id"]], 1: [fields["id"]]}, delta_threshold=5, timestamp_field=fields["id"])
    with make_reader(part_url, schema_fields=delta, workers_count=1, shuffle_row_groups=False) as reader:
        windows = [(int(w[0].id), int(w[1].id)) for w in reader]
    assert len(windows) == 32 and windows[:6] == [(0, 4), (4, 8), (8, 12), (12, 16), (20, 24), (24, 28)]
