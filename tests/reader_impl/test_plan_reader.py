"""The plan (reader_impl.plan) seen through make_batch_reader: balanced shards get equal rows."""
from petastorm import make_batch_reader


def test_batch_reader_batches_of_a_sharded_balanced_reader(synthetic_dataset):
    totals = []
    for shard in range(4):
        with make_batch_reader(synthetic_dataset, cur_shard=shard, shard_count=4, shard_mode="balanced") as reader:
            totals.append(sum(len(b.id) for b in reader))
    assert totals == [25, 25, 25, 25]
