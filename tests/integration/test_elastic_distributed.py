"""Elastic resume with real processes: a job of 2 ranks (torch.distributed, gloo, CPU) checkpoints, resumes
on 3 ranks, checkpoints again and finishes on 1 rank. Each checkpoint gathers every rank's loader state to
rank 0, which merges them with ``petastorm.merge_state_dicts`` and saves one file with ``torch.save``.
Over the job every row of the epoch is trained on exactly once."""
import datetime
import json
import os

import pytest
from _fixtures.distributed import free_port, run_ranks, write_id_store

ROW_GROUPS = [100, 50, 70, 30, 12]
TOTAL = sum(ROW_GROUPS)
BATCH = 8
TIMEOUT_S = 120


def _worker(rank, world, port, url, out_dir, phase, steps):
    import torch
    import torch.distributed as dist

    from petastorm import make_batch_reader, merge_state_dicts
    from petastorm.pytorch import BatchedDataLoader

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
    try:
        reader = make_batch_reader(url, cur_shard=rank, shard_count=world, shard_mode="balanced", seed=5,
                                   shard_seed=3, num_epochs=1, workers_count=2)
        ids = []
        with BatchedDataLoader(reader, batch_size=BATCH, shuffling_queue_capacity=30, seed=1) as loader:
            checkpoint = os.path.join(out_dir, f"job-{phase - 1}.pt")
            if phase > 0:
                loader.load_state_dict(torch.load(checkpoint, weights_only=True))
            it = iter(loader)
            for step in range(steps if steps is not None else 10 ** 9):
                try:
                    batch = next(it)
                except StopIteration:
                    break
                total = batch["id"].sum().reshape(1)
                dist.all_reduce(total)  # as a training step would
                ids.extend(batch["id"].tolist())
            if steps is not None:
                states = [None] * world
                dist.all_gather_object(states, loader.state_dict())
                if rank == 0:
                    torch.save(merge_state_dicts(states), os.path.join(out_dir, f"job-{phase}.pt"))
            it.close()
        dist.barrier()
        with open(os.path.join(out_dir, f"phase{phase}-rank{rank}.json"), "w") as f:
            json.dump(ids, f)
    finally:
        dist.destroy_process_group()


def _run_phase(world, url, out_dir, phase, steps):
    run_ranks(_worker, (world, free_port(), url, out_dir, phase, steps), world, TIMEOUT_S,
              f"phase {phase} ({world} ranks)")
    return [json.load(open(os.path.join(out_dir, f"phase{phase}-rank{r}.json"))) for r in range(world)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_id_store(tmp_path_factory.mktemp("elastic-dist") / "store", ROW_GROUPS)


@pytest.mark.slow
def test_two_then_three_then_one_ranks_train_on_every_row_once(store, tmp_path):
    first = _run_phase(2, store, str(tmp_path), 0, steps=3)
    second = _run_phase(3, store, str(tmp_path), 1, steps=4)
    last = _run_phase(1, store, str(tmp_path), 2, steps=None)
    assert [len(ids) for ids in first] == [3 * BATCH] * 2
    assert [len(ids) for ids in second] == [4 * BATCH] * 3
    seen = sum(first, []) + sum(second, []) + sum(last, [])
    assert sorted(seen) == list(range(TOTAL))  # none lost, none twice (the interrupted epoch has no 'drop' tail)
