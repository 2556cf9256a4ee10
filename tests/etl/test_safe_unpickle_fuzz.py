"""Fuzzing the metadata unpickler: mutated schema pickles load as a valid Unischema or are refused with
PetastormMetadataError, and never crash, hang or raise anything else (issue 10, defect 1).

Seeds: the Unischema pickles of every legacy dataset (written by the original, protocols 0 and 4), the
row-group index pickles (numpy dtypes with BUILD states and numpy scalars), and our own schemas pickled
with every protocol 0..5. Mutations: at every opcode position, delete, duplicate, swap with the next,
replace the opcode, truncate, and set its argument bytes to extremes; plus schemas whose field dtype (or
an extra field value) is a numpy dtype built from hostile descriptions and hostile BUILD states, and numpy
scalars over hostile bytes. Every load runs in a child process (a crash must not take pytest with it), in
batches; a batch that dies by a signal is re-run one input at a time to name the input that crashed.
"""
import glob
import os
import pickle
import pickletools
import random
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import numpy as np
import pyarrow.parquet as pq
import pytest

from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.etl.dataset_metadata import ROWGROUPS_INDEX_KEY, UNISCHEMA_KEY
from petastorm.etl.safe_unpickle import dumps_unischema
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BATCH = 1500
BATCH_TIMEOUT_S = 240

# The child loads each input as get_schema_from_dataset_url does, then uses the schema as a user would
# (repr, str, numpy dtype of every field, the JSON description). One line per input, flushed at once.
_CHILD = textwrap.dedent("""
    import pickle, sys
    from decimal import Decimal
    import numpy as np
    from petastorm import codecs
    from petastorm.errors import PetastormMetadataError
    from petastorm.etl.dataset_metadata import UNISCHEMA_KEY, load_unischema
    from petastorm.etl.schema_json import unischema_to_json
    from petastorm.unischema import Unischema

    CODECS = (codecs.ScalarCodec, codecs.NdarrayCodec, codecs.CompressedNdarrayCodec, codecs.CompressedImageCodec)

    def problem(schema):
        if type(schema) is not Unischema:
            return f"returned a {type(schema).__name__}"
        for name, field in schema.fields.items():
            dtype = field.numpy_dtype
            if not (type(name) is str and field.name == name
                    and (dtype in (Decimal, str, bytes, int, float, bool)
                         or isinstance(dtype, np.dtype) and dtype.kind in "biufcmMSU" and dtype.fields is None
                         and dtype.subdtype is None and not dtype.hasobject
                         or isinstance(dtype, type) and issubclass(dtype, np.generic))
                    and type(field.shape) is tuple and all(d is None or type(d) is int and d >= 0 for d in field.shape)
                    and (field.codec is None or type(field.codec) in CODECS) and type(field.nullable) is bool):
                return f"malformed field {name!r}"
            if dtype is not Decimal:
                np.dtype(dtype)
        repr(schema), str(schema), unischema_to_json(schema)
        return None

    for data in pickle.load(sys.stdin.buffer):
        try:
            schema = load_unischema({UNISCHEMA_KEY: data}, "fuzz/_common_metadata")
            outcome = problem(schema) or "ok"
        except PetastormMetadataError as e:
            outcome = "refused" if "fuzz/_common_metadata" in str(e) else "refused without naming the file"
        except BaseException as e:  # noqa: BLE001 - any other exception type is what this test looks for
            outcome = f"{type(e).__name__}: {str(e)[:200]}"
        sys.stdout.write(outcome.replace("\\n", " ") + "\\n")
        sys.stdout.flush()
""")


# --- seeds ------------------------------------------------------------------------------------------------

def _our_schema():
    """One field of each kind the legacy pickles lack: an ArrayType, dtype instances (BUILD states)."""
    return Unischema("FuzzSchema", [
        UnischemaField("dec", Decimal, (), ScalarCodec(spark_type("DecimalType", 10, 3)), True),
        UnischemaField("arr", np.int32, (None,), ScalarCodec(spark_type("ArrayType", spark_type("IntegerType"))),
                       False),
        UnischemaField("img", np.uint8, (4, 6, 3), CompressedImageCodec("jpeg", 90), False),
        UnischemaField("z", np.float64, (2, 2), CompressedNdarrayCodec(), False),
        UnischemaField("ts", np.dtype("datetime64[ns]"), (None,), NdarrayCodec(), False),
        UnischemaField("be", np.dtype(">i4"), (), None, False),
    ])


# the legacy releases' pickles share their structure: the oldest (pyspark _restore) and the newest
# (copy_reg _reconstructor) of the protocol-0 ones, the original 0.12.1's (protocol 4), and the fixtures
_LEGACY_SEEDS = ("legacy/0.4.0:", "legacy/0.7.6:", "original-0.12.1/", "tools_compat/")
_MAX_OPS = {"rowgroups_index": 150}  # the index pickles repeat one pattern hundreds of times


def _legacy_pickles(testdata_dir):
    found = {}
    paths = glob.glob(os.path.join(testdata_dir, "**", "_common_metadata"), recursive=True) \
        + glob.glob(os.path.join(REPO, "tools_compat", "fixtures", "*", "_common_metadata"))
    for path in sorted(paths):
        metadata = pq.read_schema(path).metadata
        name = os.path.relpath(os.path.dirname(path), testdata_dir if path.startswith(testdata_dir) else REPO)
        for key in (UNISCHEMA_KEY, ROWGROUPS_INDEX_KEY):
            label = f"{name}:{key.decode()}"
            if key in metadata and label.startswith(_LEGACY_SEEDS):
                found[label] = bytes(metadata[key])
    return found


def _seeds(testdata_dir):
    seeds = _legacy_pickles(testdata_dir)
    assert {label.split(":")[0].split("/")[0] for label in seeds} == {"legacy", "original-0.12.1", "tools_compat"}
    unique = {}  # identical pickles (the two fixtures) add nothing
    for name, data in seeds.items():
        unique.setdefault(data, name)
    seeds = {name: data for data, name in unique.items()}
    schema = _our_schema()
    for protocol in range(6):
        seeds[f"ours:pickle-protocol-{protocol}"] = pickle.dumps(schema, protocol=protocol)
    for protocol in (2, 4):
        seeds[f"ours:dumps_unischema-{protocol}"] = dumps_unischema(schema, protocol)
    return seeds


# --- mutations ---------------------------------------------------------------------------------------------

_OPCODES = [op.code.encode("latin1") for op in pickletools.opcodes]


def _opcode_mutations(name, data, rng):
    """(label, bytes) for each opcode position: delete, duplicate, swap, replace, truncate, extreme args."""
    try:
        positions = [pos for _op, _arg, pos in pickletools.genops(data)]
    except Exception:  # noqa: BLE001 - seeds are valid pickles
        return
    ends = positions[1:] + [len(data)]
    cap = min([n for key, n in _MAX_OPS.items() if key in name] or [len(positions)])
    for i, (start, end) in enumerate(zip(positions[:cap], ends)):
        op = data[start:end]
        yield f"{name} op {i} deleted", data[:start] + data[end:]
        yield f"{name} op {i} doubled", data[:end] + op + data[end:]
        if i + 1 < len(positions):
            nxt = data[end:ends[i + 1]]
            yield f"{name} op {i} swapped", data[:start] + nxt + op + data[ends[i + 1]:]
        other = rng.choice(_OPCODES)
        yield f"{name} op {i} -> {other!r}", data[:start] + other + data[start + 1:]
        yield f"{name} truncated at op {i}", data[:start]
        if end - start > 1:
            for fill in (b"\xff", b"\x00"):
                yield f"{name} op {i} args {fill!r}", data[:start + 1] + fill * (end - start - 1) + data[end:]


def _unicode(text):
    raw = text.encode("utf-8")
    return b"X" + len(raw).to_bytes(4, "little") + raw


def _fragment(obj):
    """Protocol-2 opcodes that push ``obj`` (no memo, so they can be spliced anywhere)."""
    import io

    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=2)
    pickler.fast = True
    pickler.dump(obj)
    return buf.getvalue()[2:-1]


def _dtype_ops(description, state):
    ops = b"cnumpy\ndtype\n" + _unicode(description) + b"K\x00K\x01\x87R"
    return ops if state is None else ops + _fragment(state) + b"b"


def _schema_with(dtype_ops, extra_value_ops=None):
    """A Unischema pickle with one field ``x`` whose dtype (or sixth value) the given opcodes push."""
    values = b"h\x01" + dtype_ops + b")N\x89" if extra_value_ops is None else \
        b"h\x01cnumpy\nint64\n)N\x89" + extra_value_ops
    return (b"\x80\x02cpetastorm.unischema\nUnischema\n)\x81}(" + _unicode("_name") + _unicode("S")
            + _unicode("_fields") + b"ccollections\nOrderedDict\n)R" + _unicode("x") + b"q\x01"
            + b"cpetastorm.unischema\nUnischemaField\n(" + values + b"t\x81q\x02" + b"sh\x01h\x02ub.")


_DESCRIPTIONS = ["i8", "U11", "S0", "U0", "M8", "m8", "b1", "c16", "f2", "i8,i8", "O", "O8", "V16", "(2,)i8",
                 "M8[ns]", ">i8", "S5", "i8,O"]
_STATE_VALUES = [None, -1, 0, 1, 8, 16, 44, 2 ** 31, 2 ** 64, -(2 ** 63), "<", ">", "|", "=", "O", "",
                 (), ("f0",), ("f0", "f1"), {}, {"f0": (np.dtype("i8"), 0)}, {"f1": (np.dtype("O"), 8)},
                 (np.dtype("i8"), (2,)), (None, (b"ns", 1, 1, 1)), (None, (b"xx", 1, 1, 1)), ({}, None), b"ns",
                 1.5, True]


def _dtype_inputs(rng):
    """Schemas whose field dtype is built from hostile descriptions and states, and numpy scalars."""
    base_states = {d: np.dtype(d).__reduce__()[2] for d in ("i8", "U11", "M8[ns]", "S0")}
    for description in _DESCRIPTIONS:
        yield f"dtype({description!r}) without state", _schema_with(_dtype_ops(description, None))
        for state in base_states.values():
            yield f"dtype({description!r}) with state {state}", _schema_with(_dtype_ops(description, state))
    for description, state in list(base_states.items()) + [("i8,i8", base_states["i8"])]:
        for position in range(len(state)):
            for value in _STATE_VALUES:
                mutated = state[:position] + (value,) + state[position + 1:]
                yield (f"dtype({description!r}) state[{position}] = {value!r}",
                       _schema_with(_dtype_ops(description, mutated)))
        for size in (0, 1, 8, 16, 44):
            raw = bytes(rng.randrange(256) for _ in range(size))
            scalar = b"cnumpy.core.multiarray\nscalar\n" + _dtype_ops(description, None) + _fragment(raw) + b"\x86R"
            yield f"scalar(dtype({description!r}), {size} bytes) as dtype", _schema_with(scalar)
            yield f"scalar(dtype({description!r}), {size} bytes) as a value", _schema_with(b"", scalar)


def _all_inputs(testdata_dir):
    rng = random.Random(10)
    inputs = []
    for name, data in _seeds(testdata_dir).items():
        inputs.append((f"{name} unchanged", data))
        inputs.extend(_opcode_mutations(name, data, rng))
    inputs.extend(_dtype_inputs(rng))
    return inputs


# --- running in child processes ------------------------------------------------------------------------------

def _run_child(datas):
    """Outcome lines of the child for ``datas``, its return code, and the tail of its stderr."""
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD], input=pickle.dumps(datas), capture_output=True,
                              timeout=BATCH_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        lines = (e.stdout or b"").decode(errors="replace").splitlines()
        return lines, "timeout", ""
    return done.stdout.decode(errors="replace").splitlines(), done.returncode, done.stderr.decode()[-500:]


def _how(rc):
    return f"signal {-rc}" if isinstance(rc, int) and rc < 0 else str(rc)


def _run_batch(batch):
    """[(label, outcome)] for one batch. When the child dies by a signal or hangs, the input it was loading
    (the one after its last line) is run alone to confirm and name it, and the rest goes on as a batch."""
    results, rest = [], batch
    while rest:
        lines, rc, err = _run_child([data for _label, data in rest])
        results += [(label, line) for (label, _data), line in zip(rest, lines)]
        if rc == 0 and len(lines) == len(rest):
            break
        if isinstance(rc, int) and rc > 0:  # failed without crashing (an import error): nothing to narrow down
            results += [(label, f"child failed (rc {rc}): {err[-300:]}") for label, _data in rest[len(lines):]]
            break
        label, data = rest[len(lines)]
        alone, rc_alone, err_alone = _run_child([data])
        if rc_alone == 0 and len(alone) == 1:
            outcome = f"child died ({_how(rc)}) in a batch at this input, which alone gives {alone[0]!r}"
        else:
            outcome = f"child died ({_how(rc_alone)}) on {data[:160]!r}: {err_alone[-300:]}"
        results.append((label, outcome))
        rest = rest[len(lines) + 1:]
    return results


@pytest.mark.slow
def test_mutated_schema_pickles_load_or_are_refused_and_never_crash(testdata_dir):
    inputs = _all_inputs(testdata_dir)
    assert len(inputs) > 5000  # every seed was read and mutated
    batches = [inputs[i:i + BATCH] for i in range(0, len(inputs), BATCH)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [r for batch in pool.map(_run_batch, batches) for r in batch]
    assert len(results) == len(inputs)
    bad = [f"{label}: {outcome}" for label, outcome in results if outcome not in ("ok", "refused")]
    assert not bad, f"{len(bad)} of {len(inputs)} loads went wrong, e.g.:\n" + "\n".join(bad[:20])
    outcomes = {label: outcome for label, outcome in results}
    # the seeds themselves load, and the fuzzing reached both outcomes
    assert all(outcome == "ok" for label, outcome in outcomes.items()
               if label.endswith("unchanged") and "rowgroups_index" not in label), outcomes
    assert sum(o == "ok" for o in outcomes.values()) > 100 and sum(o == "refused" for o in outcomes.values()) > 1000
