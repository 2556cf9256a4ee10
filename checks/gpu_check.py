#!/usr/bin/env python3
"""GPU checks of petastorm's device paths (issue 11, CUDA review): torch's BatchedDataLoader on a CUDA device
with pin_memory and the background prefetch, exact resume, and make_jax_iterator on the GPU.

Run from the repository root (petastorm is imported from there), on a machine with a CUDA build of torch and
JAX (the device machines' ``python3`` has both)::

    PYTHONPATH=. python3 checks/gpu_check.py        # on a GPU: every check (``make gpu-check``)
    PYTHONPATH=. python3 checks/gpu_check.py --cpu  # smoke test without a GPU (GPU-only checks say n/a)

It writes its own dataset with petastorm under a temporary folder in /tmp (removed at the end), prints one
line per check (PASS / FAIL / n/a, with what it checked) and exits 0 when every check passed, 1 when one
failed, 2 when the set-up failed and 3 when it ran past ``--timeout`` seconds (default 170).

Checks that reach into private attributes say so (``_converter._stream``: to slow the loader's copy stream
down on purpose). Checks marked [F1]..[F4] are the findings of the review of the GPU paths made on the CPU (commit 1337d48):
they failed before it. The test suite runs the ``--cpu`` smoke test (tests/integration/test_gpu_check.py), so
the script keeps working where no GPU is lent; on a GPU it is the check to run after changing a device path.
"""
from __future__ import annotations

import argparse
import gc
import io
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
import traceback
import warnings

ROWS = 4096
_results: list = []


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="no GPU: torch on 'cpu', JAX on 2 forced CPU devices")
    p.add_argument("--timeout", type=float, default=170.0, help="seconds before the whole check gives up (exit 3)")
    p.add_argument("--only", default="", help="comma-separated substrings: run only the checks whose name has one")
    return p.parse_args()


ARGS = _parse()
if ARGS.cpu:
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch and JAX share the GPU in this process


def _watchdog(seconds: float) -> None:
    def fire() -> None:
        print(f"TIMEOUT: the checks ran past {seconds:.0f} s (stacks below)", flush=True)
        import faulthandler
        faulthandler.dump_traceback(all_threads=True)
        os._exit(3)

    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()


class NotApplicable(Exception):
    """The check does not apply here (e.g. needs a GPU, or 2 GPUs)."""


def check(name: str):
    def deco(fn):
        if ARGS.only and not any(s and s in name for s in ARGS.only.split(",")):
            return fn
        start = time.perf_counter()
        try:
            detail = fn()
            status = "PASS"
        except NotApplicable as e:
            status, detail = "n/a ", str(e)
        except AssertionError as e:
            status, detail = "FAIL", str(e) or traceback.format_exc(limit=-2)
        except Exception as e:  # noqa: BLE001
            status, detail = "FAIL", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"
        _results.append((status, name))
        print(f"{status} {name} ({time.perf_counter() - start:.1f} s){': ' + str(detail) if detail else ''}",
              flush=True)
        return fn
    return deco


# --- set-up ----------------------------------------------------------------------------------------------------
T0 = time.perf_counter()
_watchdog(ARGS.timeout)
try:
    import numpy as np
    import torch

    from petastorm import make_batch_reader
    from petastorm.codecs import NdarrayCodec, ScalarCodec
    from petastorm.errors import PetastormArgumentError
    from petastorm.etl.writer import write_dataset
    from petastorm.pytorch import BatchedDataLoader
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField

    CUDA = not ARGS.cpu
    if CUDA and not torch.cuda.is_available():
        print("SETUP FAILED: torch.cuda.is_available() is False (use --cpu for the smoke test)")
        sys.exit(2)
    DEV = torch.device("cuda") if CUDA else torch.device("cpu")
    TMP = tempfile.mkdtemp(prefix="petastorm-gpu-check-", dir="/tmp")
    URL = "file://" + os.path.join(TMP, "ds")
    Schema = Unischema("GpuCheck", [
        UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
        UnischemaField("x", np.float32, (), ScalarCodec(spark_type("FloatType")), False),
        UnischemaField("image", np.uint8, (16, 16), NdarrayCodec(), False),
    ])
    rows = ({"id": i, "x": np.float32(i * 0.5), "image": np.full((16, 16), i % 251, np.uint8)} for i in range(ROWS))
    write_dataset(URL, Schema, rows, row_group_size_mb=0.25, workers_count=1, progress=False)
    print(f"set-up: torch {torch.__version__} (CUDA {torch.version.cuda}, "
          f"{torch.cuda.get_device_name() if CUDA else 'no GPU'}); dataset {URL} of {ROWS} rows written "
          f"({time.perf_counter() - T0:.1f} s)", flush=True)
except SystemExit:
    raise
except Exception:  # noqa: BLE001
    traceback.print_exc()
    print("SETUP FAILED")
    sys.exit(2)


def reader(**kw):
    kw.setdefault("num_epochs", 1)
    kw.setdefault("workers_count", 2)
    kw.setdefault("shuffle_row_groups", False)
    return make_batch_reader(URL, **kw)


def torch_rows_ok(batch, where: str) -> None:
    """The batch's rows are consistent (x = id / 2, every pixel = id % 251), computed on its device."""
    ids = batch["id"]
    assert ids.device.type == DEV.type, f"{where}: id on {ids.device}, expected {DEV.type}"
    bad_x = int((batch["x"] != ids.float() * 0.5).sum())
    bad_img = int((batch["image"].reshape(len(ids), -1).long() != (ids % 251)[:, None]).any(dim=1).sum())
    assert bad_x == 0 and bad_img == 0, f"{where}: {bad_x} wrong x and {bad_img} wrong images in {len(ids)} rows"


def torch_ids(batches) -> list:
    return [i for b in batches for i in b["id"].cpu().tolist()]


_CYCLES_PER_S: list = []


def gpu_sleep_cycles(seconds: float) -> int:
    """``torch.cuda._sleep`` cycles that keep the GPU busy about ``seconds`` (measured once)."""
    if not _CYCLES_PER_S:
        torch.cuda._sleep(1000)
        torch.cuda.synchronize()
        t = time.perf_counter()
        torch.cuda._sleep(int(1e8))
        torch.cuda.synchronize()
        _CYCLES_PER_S.append(1e8 / (time.perf_counter() - t))
    return int(_CYCLES_PER_S[0] * seconds)


# --- torch -----------------------------------------------------------------------------------------------------

@check("torch: BatchedDataLoader(device, pin_memory=True, prefetch=2, shuffled) serves every row once, on the "
       "device, right values")
def _():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pin_memory without CUDA warns (--cpu)
        with BatchedDataLoader(reader(seed=1), batch_size=128, shuffling_queue_capacity=1000, device=DEV,
                               pin_memory=True, prefetch=2, seed=7) as loader:
            batches = list(loader)
    for i, b in enumerate(batches):
        torch_rows_ok(b, f"batch {i}")
    ids = torch_ids(batches)
    assert sorted(ids) == list(range(ROWS)), f"{len(ids)} ids, {len(set(ids))} distinct"
    assert ids != list(range(ROWS)), "not shuffled"
    return f"{len(batches)} batches on {batches[0]['id'].device}"


@check("torch [F1]: device='cuda' is the current CUDA device when the loader is made (the prefetch thread's "
       "current device is its own)")
def _():
    if not CUDA:
        raise NotApplicable("needs CUDA")
    with BatchedDataLoader(reader(), batch_size=256, device="cuda", pin_memory=True) as loader:
        b = next(iter(loader))
    current = torch.device("cuda", torch.cuda.current_device())
    assert loader.device == current, f"loader.device is {loader.device!r}, expected {current!r}"
    assert b["id"].device == current, f"batch on {b['id'].device}, expected {current}"
    if torch.cuda.device_count() < 2:
        return "1 GPU: the index is checked; set_device(1) needs 2 GPUs"
    torch.cuda.set_device(1)
    try:
        with BatchedDataLoader(reader(), batch_size=256, device="cuda", pin_memory=True) as loader:
            got = {b["id"].device for b in loader}
    finally:
        torch.cuda.set_device(0)
    assert got == {torch.device("cuda", 1)}, f"after torch.cuda.set_device(1), device='cuda' gave {got}"
    return "also after torch.cuda.set_device(1): batches on cuda:1"


@check("torch: a slow copy stream - the consumer's stream waits for each copy (wait_event), and pinned/pageable "
       "host buffers are not reused while their asynchronous copy is pending (private: loader._converter._stream)")
def _():
    if not CUDA:
        raise NotApplicable("needs CUDA")
    cycles = gpu_sleep_cycles(0.05)
    user = torch.cuda.Stream()
    report = []
    for pin in (True, False):
        with BatchedDataLoader(reader(), batch_size=256, device=DEV, pin_memory=pin, prefetch=0) as loader:
            it = iter(loader)
            first = next(it)
            side = loader._converter._stream
            assert side is not None, "no side stream: the CUDA path changed (update this check)"
            held, diffs = [first], []
            for i in range(8):
                with torch.cuda.stream(side):
                    torch.cuda._sleep(cycles)  # every copy issued now waits behind this on the side stream
                ctx = torch.cuda.stream(user) if i % 2 else torch.cuda.stream(torch.cuda.current_stream())
                with ctx:  # half of the batches taken and used on a stream of the user's
                    b = next(it)
                    # queued on the consumer's stream at once, before the copy has run: wrong if it does not wait
                    diffs.append((b["x"] - b["id"].float() * 0.5).abs().sum() + (b["image"][:, 0, 0].long()
                                                                                 - b["id"] % 251).abs().sum())
                held.append(b)
            torch.cuda.synchronize()
        bad = [i for i, d in enumerate(diffs) if float(d) != 0]
        assert not bad, f"pin_memory={pin}: batches {bad} were read before their copy ended"
        for i, b in enumerate(held):
            torch_rows_ok(b, f"pin_memory={pin}, batch {i} (checked after all copies)")
        ids = torch_ids(held)
        assert ids == list(range(len(ids))), f"pin_memory={pin}: ids out of order or overwritten"
        report.append(f"pin_memory={pin}: 9 batches right")
    return "; ".join(report)


@check("torch: next() does not wait for the GPU (work queued on the consumer's stream)")
def _():
    if not CUDA:
        raise NotApplicable("needs CUDA")
    cycles = gpu_sleep_cycles(1.0)
    with BatchedDataLoader(reader(), batch_size=256, device=DEV, pin_memory=True, prefetch=2) as loader:
        it = iter(loader)
        for _ in range(3):
            next(it)
        worst = 0.0
        for _ in range(3):
            time.sleep(0.3)  # the prefetch thread refills
            torch.cuda._sleep(cycles)
            t = time.perf_counter()
            b = next(it)
            worst = max(worst, time.perf_counter() - t)
            torch.cuda.synchronize()
            torch_rows_ok(b, "after the GPU was busy")
    assert worst < 0.3, f"next() took {worst:.3f} s while the GPU was busy for ~1 s: it waits for the GPU"
    return f"slowest next() {worst * 1e3:.1f} ms while the GPU was busy"


@check("torch: device memory held by the loader stays within prefetch + 4 batches (queue, copy in progress, "
       "the one held, one freed on the consumer's stream not yet reusable, and rounding)")
def _():
    if not CUDA:
        raise NotApplicable("needs CUDA")
    gc.collect()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    prefetch = 2
    with BatchedDataLoader(reader(), batch_size=1024, device=DEV, pin_memory=True, prefetch=prefetch) as loader:
        it = iter(loader)
        b = next(it)
        per_batch = sum(-(-t.nbytes // 512) * 512 for t in b.values())
        peak = 0
        for _ in range(3):
            time.sleep(0.3)
            torch.cuda.synchronize()
            peak = max(peak, torch.cuda.memory_allocated() - base)
            b = next(it)
        del b, it
    ratio = peak / per_batch
    assert ratio <= prefetch + 4, f"{peak} bytes on the device = {ratio:.1f} batches (prefetch={prefetch})"
    return f"at most {ratio:.1f} batches of {per_batch} bytes on the device with prefetch={prefetch}"


@check("torch: exact resume of a shuffled pass from a state taken with prefetched batches on the device "
       "(torch.save / torch.load weights_only)")
def _():
    def make():
        return BatchedDataLoader(reader(seed=3), batch_size=100, shuffling_queue_capacity=700, device=DEV,
                                 pin_memory=CUDA, prefetch=3, seed=5)

    with make() as loader:
        reference = [b["id"].cpu().tolist() for b in loader]
    with make() as loader:
        it = iter(loader)
        head = [next(it)["id"].cpu().tolist() for _ in range(7)]
        time.sleep(0.3)  # the prefetch queue is full: its batches are on the device, not yet yielded
        buf = io.BytesIO()
        torch.save(loader.state_dict(), buf)
    buf.seek(0)
    with make() as loader:
        loader.load_state_dict(torch.load(buf, weights_only=True))
        tail = list(loader)
    for i, b in enumerate(tail):
        torch_rows_ok(b, f"resumed batch {i}")
    got = head + [b["id"].cpu().tolist() for b in tail]
    assert got == reference, (f"resumed pass differs: {sum(len(x) for x in got)} rows vs "
                              f"{sum(len(x) for x in reference)}; first difference at batch "
                              f"{next(i for i, (a, r) in enumerate(zip(got, reference)) if a != r)}")
    return f"7 + {len(tail)} batches = the uninterrupted pass"


@check("torch [F4]: devices that cannot work are clear errors naming `device` when the loader is made")
def _():
    bad = []
    cases = ["meta"]
    if not torch.backends.mps.is_available():
        cases.append("mps")
    cases.append(f"cuda:{torch.cuda.device_count()}" if CUDA else "cuda")
    for dev in cases:
        r = reader()
        try:
            BatchedDataLoader(r, batch_size=8, device=dev)
            bad.append(f"{dev!r} accepted")
        except PetastormArgumentError as e:
            if "device" not in str(e):
                bad.append(f"{dev!r}: message does not name device: {e}")
        except Exception as e:  # noqa: BLE001
            bad.append(f"{dev!r}: {type(e).__name__} (not PetastormArgumentError): {e}")
        finally:
            r.stop()
            r.join()
    assert not bad, "; ".join(bad)
    return f"refused: {cases}"


@check("torch: pin_memory=True with device=None gives pinned CPU tensors (without CUDA: a warning naming "
       "pin_memory)")
def _():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with BatchedDataLoader(reader(), batch_size=64, pin_memory=True) as loader:
            b = next(iter(loader))
    warned = any("pin_memory" in str(w.message) for w in caught)
    assert b["id"].device.type == "cpu" and b["id"].tolist() == list(range(64))
    if CUDA:
        assert all(t.is_pinned() for t in b.values()), "not pinned"
        assert not warned, "warned with CUDA available"
        return "pinned"
    assert warned, "no warning without CUDA"
    return "warned, not pinned"


# --- JAX -------------------------------------------------------------------------------------------------------
try:
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from petastorm.jax import make_jax_iterator

    JDEV = jax.devices()[0]
    print(f"set-up: jax {jax.__version__}, devices {jax.devices()}", flush=True)
    if CUDA and JDEV.platform != "gpu":
        print(f"SETUP FAILED: JAX's default device is {JDEV} (a CUDA build of jax is needed; --cpu otherwise)")
        sys.exit(2)
except SystemExit:
    raise
except Exception:  # noqa: BLE001
    traceback.print_exc()
    print("SETUP FAILED (jax)")
    sys.exit(2)


def jax_rows_ok(batch, where: str) -> None:
    ids = np.asarray(batch["id"])
    assert np.array_equal(np.asarray(batch["x"]), (ids * 0.5).astype(np.float32)), f"{where}: wrong x"
    img = np.asarray(batch["image"]).reshape(len(ids), -1)
    assert (img == (ids % 251)[:, None]).all(), f"{where}: wrong images"


def jax_iter(capacity: int, **kw):
    kw.setdefault("batch_size", 128)
    return make_jax_iterator(reader(seed=3), shuffling_queue_capacity=capacity, seed=5, **kw)


@check("jax: make_jax_iterator on the default device, reader order (block path) and shuffled: every row once, "
       "right values, on the device")
def _():
    out = []
    for capacity in (0, 1000):
        with jax_iter(capacity) as it:
            batches = list(it)
        devices = {d for b in batches for a in b.values() for d in a.devices()}
        assert devices == {JDEV}, f"capacity={capacity}: batches on {devices}, expected {JDEV}"
        for i, b in enumerate(batches):
            jax_rows_ok(b, f"capacity={capacity}, batch {i}")
        ids = np.concatenate([np.asarray(b["id"]) for b in batches]).tolist()
        assert sorted(ids) == list(range(ROWS)), f"capacity={capacity}: {len(ids)} ids, {len(set(ids))} distinct"
        out.append(f"capacity={capacity}: {len(batches)} batches")
    return "; ".join(out) + f" on {JDEV}"


@check("jax: exact resume (state taken with prefetched batches on the device, pickled), reader order and shuffled")
def _():
    out = []
    for capacity in (0, 1000):
        with jax_iter(capacity, prefetch=3) as it:
            reference = [np.asarray(b["id"]).tolist() for b in it]
        with jax_iter(capacity, prefetch=3) as it:
            head = [np.asarray(next(it)["id"]).tolist() for _ in range(7)]
            time.sleep(0.3)
            state = pickle.loads(pickle.dumps(it.state_dict()))
        with jax_iter(capacity, prefetch=3) as it:
            it.load_state_dict(state)
            tail = list(it)
        for i, b in enumerate(tail):
            jax_rows_ok(b, f"capacity={capacity}, resumed batch {i}")
        got = head + [np.asarray(b["id"]).tolist() for b in tail]
        assert got == reference, f"capacity={capacity}: the resumed pass differs from the uninterrupted one"
        out.append(f"capacity={capacity}: 7 + {len(tail)} batches")
    return "; ".join(out)


@check("jax: a 1-D data-parallel sharding over every device; a batch_size the mesh cannot split is refused "
       "naming the mesh axis")
def _():
    devices = jax.devices()
    n = len(devices)
    sharding = NamedSharding(Mesh(np.array(devices), ("data",)), PartitionSpec("data"))
    with jax_iter(1000, batch_size=64 * n, sharding=sharding) as it:
        batches = list(it)
    for i, b in enumerate(batches):
        assert b["id"].sharding == sharding, f"batch {i}: sharding {b['id'].sharding}"
        rows = sorted(len(s.data) for s in b["id"].addressable_shards)
        assert rows == [len(b["id"]) // n] * n, f"batch {i}: shard rows {rows}"
        jax_rows_ok(b, f"batch {i}")
    ids = np.concatenate([np.asarray(b["id"]) for b in batches]).tolist()
    assert sorted(ids) == list(range(ROWS))
    if n == 1:
        return f"{len(batches)} batches on a mesh of 1 device (the indivisible batch_size needs 2)"
    try:
        jax_iter(0, batch_size=64 * n + 1, sharding=sharding).close()
        raise AssertionError(f"batch_size {64 * n + 1} accepted on {n} devices")
    except PetastormArgumentError as e:
        assert "'data'" in str(e) and "batch_size" in str(e), f"message: {e}"
    return f"{len(batches)} batches split over {n} devices; batch_size {64 * n + 1} refused"


@check("jax [F3]: under `with jax.default_device(other):` the batches go to `other` on every path (the prefetch "
       "thread does not inherit the context)")
def _():
    other = jax.devices()[1] if ARGS.cpu else jax.devices("cpu")[0]
    got = {}
    with jax.default_device(other):
        for capacity in (0, 1000):
            with jax_iter(capacity) as it:
                got[capacity] = {d for b in it for a in b.values() for d in a.devices()}
    bad = {c: d for c, d in got.items() if d != {other}}
    assert not bad, f"expected every batch on {other}; got {got}"
    return f"both paths on {other}"


@check("jax [F3]: under `with jax.enable_x64(True):` int64 fields stay int64 on every path")
def _():
    ctx = getattr(jax, "enable_x64", None)
    if ctx is None:
        from jax.experimental import enable_x64 as ctx
    got = {}
    with ctx(True):
        for capacity in (0, 1000):
            with jax_iter(capacity) as it:
                got[capacity] = {str(b["id"].dtype) for b in it}
    assert got == {0: {"int64"}, 1000: {"int64"}}, f"id dtypes per path: {got}"
    return "int64 on both paths"


@check("jax [F2]: next() does not wait for work already dispatched to the device (placement ahead of use, on the "
       "prefetch thread)")
def _():
    if not CUDA:
        raise NotApplicable("needs a GPU (XLA's CPU client runs independent computations side by side)")
    a = jnp.ones((2048, 2048), jnp.float32) / 2048

    def work(n):
        return jax.jit(lambda a: jax.lax.fori_loop(0, n, lambda i, a: jnp.tanh(a @ a), a))

    n = 50
    f = work(n)
    jax.block_until_ready(f(a))
    t = time.perf_counter()
    jax.block_until_ready(f(a))
    one = time.perf_counter() - t
    n = max(1, int(n * 0.8 / max(one, 1e-4)))  # ~0.8 s of device work per call
    f = work(n)
    jax.block_until_ready(f(a))
    # batch 256 of 656-row reader batches: the block path hands over 2 batches at a time
    with jax_iter(0, batch_size=256, prefetch=2) as it:
        for _ in range(4):
            next(it)
        times = []
        for _ in range(6):
            time.sleep(0.3)  # the prefetch thread refills
            y = f(a)         # dispatched, ~0.8 s on the device
            t = time.perf_counter()
            b = next(it)
            times.append(time.perf_counter() - t)
            jax.block_until_ready(y)
            jax_rows_ok(b, "after the device was busy")
    worst = max(times)
    assert worst < 0.3, (f"next() took up to {worst:.2f} s (times {[round(x, 3) for x in times]}) while ~0.8 s of "
                         f"work was queued on the device: it waits for the device queue")
    return f"slowest next() {worst * 1e3:.1f} ms with ~0.8 s of device work queued"


@check("jax [F2]: device memory bound: right after a next(), the iterator holds at most prefetch + 2 batches "
       "on the device")
def _():
    if not CUDA:
        raise NotApplicable("on a CPU device the block path places a reader batch's batches together by design")
    prefetch = 2
    gc.collect()
    alive = jax.live_arrays()  # kept alive, so that no new array takes one of their ids
    before = {id(a) for a in alive}
    with jax_iter(0, batch_size=64, prefetch=prefetch) as it:
        b = next(it)
        time.sleep(0.5)
        live = [a for a in jax.live_arrays() if id(a) not in before]
        held = len(live) / len(b)
        del b, live
    assert held <= prefetch + 2, f"{held:.0f} batches on the device after one next() with prefetch={prefetch}"
    return f"{held:.0f} batches on the device with prefetch={prefetch}"


# --- summary ---------------------------------------------------------------------------------------------------
shutil.rmtree(TMP, ignore_errors=True)
failed = [n for s, n in _results if s == "FAIL"]
na = [n for s, n in _results if s.strip() == "n/a"]
print(f"\n{len(_results)} checks: {len(_results) - len(failed) - len(na)} passed, {len(failed)} failed, {len(na)} n/a "
      f"({'CPU smoke test' if ARGS.cpu else 'GPU'}), {time.perf_counter() - T0:.1f} s")
for n in failed:
    print(f"  FAILED: {n}")
sys.stdout.flush()
os._exit(1 if failed else 0)
