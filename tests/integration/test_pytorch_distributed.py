"""Distributed training over balanced shards: 2 real processes with torch.distributed (gloo, CPU), each with
``make_batch_reader(..., cur_shard=rank, shard_count=2, shard_mode='balanced')`` over row groups the original
assignment cannot split evenly. Both ranks get the same number of batches every epoch (an all_reduce per step
would hang otherwise), and together they see every row exactly once per epoch."""
import datetime
import json
import os

import pytest
from _fixtures.distributed import free_port, run_ranks, write_id_store

ROW_GROUPS = [100, 50, 70, 30, 12]  # original assignment (row group i -> shard i % 2): 182 vs 80 rows
TOTAL = sum(ROW_GROUPS)
BATCH = 16
EPOCHS = 2
TIMEOUT_S = 120


def _worker(rank, world, port, url, out_dir):
    import torch.distributed as dist

    from petastorm import make_batch_reader
    from petastorm.pytorch import BatchedDataLoader

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        reader = make_batch_reader(url, cur_shard=rank, shard_count=world, shard_mode="balanced", seed=5,
                                   workers_count=2)
        result = {"batches": [], "ids": [], "global_rows": []}
        with BatchedDataLoader(reader, batch_size=BATCH, shuffling_queue_capacity=40) as loader:
            for _ in range(EPOCHS):
                ids, steps = [], 0
                for batch in loader:
                    total = batch["id"].sum().reshape(1)
                    dist.all_reduce(total)  # a rank with fewer batches would leave the other waiting here
                    steps += 1
                    ids.extend(batch["id"].tolist())
                    if steps == 3:
                        state = loader.state_dict()
                        result["global_rows"].append(state["body"]["global_row"])
                result["batches"].append(steps)
                result["ids"].append(ids)
        dist.barrier()
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def uneven_store(tmp_path_factory):
    return write_id_store(tmp_path_factory.mktemp("dist") / "store", ROW_GROUPS, float_copy=True)


@pytest.mark.slow
def test_two_ranks_get_equal_batches_every_epoch_and_every_row_once(uneven_store, tmp_path):
    world = 2
    run_ranks(_worker, (world, free_port(), uneven_store, str(tmp_path)), world, TIMEOUT_S, "distributed training")
    results = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(world)]
    per_rank = TOTAL // world
    expected_batches = -(-per_rank // BATCH)
    for r in results:
        assert r["batches"] == [expected_batches] * EPOCHS
        assert [len(ids) for ids in r["ids"]] == [per_rank] * EPOCHS
    for epoch in range(EPOCHS):
        seen = results[0]["ids"][epoch] + results[1]["ids"][epoch]
        assert sorted(seen) == list(range(TOTAL))
    # the loader state carries the reader's position in the epoch's global row sequence (balanced mode)
    for rank, r in enumerate(results):
        for g in r["global_rows"]:
            assert rank * per_rank <= g <= (rank + 1) * per_rank
