"""Each library reads the other's datasets: ours -> the original 0.12.1, and the original's -> ours.

Run with our venv (``make test-compat`` builds ``.venv-original`` first)::

    .venv/bin/python tools_compat/cross_read.py

1. Writes a dataset with ``petastorm.write_dataset`` (scalars, Decimal, a nullable field, PNG image, ndarray,
   Hive partitions) and has the original read it, as a black box, in its own venv (``make_reader`` and
   ``make_batch_reader``), comparing every value with what was written.
2. Reads the datasets the original wrote (``tools_compat/fixtures``) with ours.
Exit 0 when both directions agree.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from decimal import Decimal

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ORIGINAL = os.path.join(ROOT, ".venv-original", "bin", "python")

ORIGINAL_SIDE = r'''
import json, sys
import numpy as np
from decimal import Decimal
from petastorm import make_reader, make_batch_reader
import petastorm
assert petastorm.__version__.startswith("0.12"), petastorm.__file__
url, expected_path = sys.argv[1], sys.argv[2]
expected = {int(k): v for k, v in json.load(open(expected_path)).items()}
with make_reader(url, reader_pool_type="dummy") as reader:
    rows = {int(r.id): r for r in reader}
assert sorted(rows) == sorted(expected), (sorted(rows), sorted(expected))
for i, e in expected.items():
    r = rows[i]
    assert r.name == e["name"], (r.name, e)
    assert r.part == e["part"], (r.part, e)
    assert abs(float(r.value) - e["value"]) < 1e-12
    assert r.dec == Decimal(e["dec"]), (r.dec, e["dec"])
    assert (r.maybe is None) == (e["maybe"] is None)
    assert r.matrix.shape == tuple(e["matrix_shape"]) and float(r.matrix.sum()) == e["matrix_sum"]
    assert r.image.shape == (8, 6, 3) and int(r.image.sum()) == e["image_sum"]
with make_batch_reader(url, schema_fields=["id", "value"], reader_pool_type="dummy") as reader:
    ids = sorted(int(x) for b in reader for x in b.id)
assert ids == sorted(expected), ids
print("ORIGINAL_READ_OK", len(rows))
'''


def write_ours(path: str) -> dict:
    from petastorm import write_dataset
    from petastorm.codecs import CompressedImageCodec, NdarrayCodec, ScalarCodec
    from petastorm.spark_types import spark_type
    from petastorm.unischema import Unischema, UnischemaField

    schema = Unischema("CrossSchema", [
        UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
        UnischemaField("name", np.str_, (), ScalarCodec(spark_type("StringType")), False),
        UnischemaField("part", np.str_, (), ScalarCodec(spark_type("StringType")), False),
        UnischemaField("value", np.float64, (), ScalarCodec(spark_type("DoubleType")), False),
        UnischemaField("dec", Decimal, (), ScalarCodec(spark_type("DecimalType", 10, 3)), False),
        UnischemaField("maybe", np.int32, (), ScalarCodec(spark_type("IntegerType")), True),
        UnischemaField("matrix", np.float32, (None, 3), NdarrayCodec(), False),
        UnischemaField("image", np.uint8, (8, 6, 3), CompressedImageCodec("png"), False),
    ])
    rng = np.random.default_rng(0)
    rows, expected = [], {}
    for i in range(40):
        row = {"id": i, "name": f"row_{i}", "part": f"p{i % 3}", "value": i / 7, "dec": Decimal(i) / Decimal(1000),
               "maybe": None if i % 4 == 0 else i, "matrix": np.full((i % 5 + 1, 3), i, np.float32),
               "image": rng.integers(0, 255, (8, 6, 3), dtype=np.uint8)}
        rows.append(row)
        expected[i] = {"name": row["name"], "part": row["part"], "value": row["value"], "dec": str(row["dec"]),
                       "maybe": row["maybe"], "matrix_shape": list(row["matrix"].shape),
                       "matrix_sum": float(row["matrix"].sum()), "image_sum": int(row["image"].sum())}
    write_dataset("file://" + path, schema, rows, partition_by=["part"], progress=False, workers_count=1)
    return expected


def read_originals() -> int:
    from petastorm import make_batch_reader, make_reader

    n = 0
    fixtures = os.path.join(HERE, "fixtures")
    for name in sorted(os.listdir(fixtures)):
        path = os.path.join(fixtures, name)
        if not os.path.isdir(path):
            continue
        with make_reader("file://" + path, workers_count=1) as reader:
            ids = sorted(int(r.id) for r in reader)
        with make_batch_reader("file://" + path, workers_count=1) as reader:
            ids_b = sorted(int(x) for b in reader for x in b.id)
        assert ids == ids_b and ids, (name, ids, ids_b)
        n += 1
    return n


def main() -> int:
    if not os.path.exists(ORIGINAL):
        print(f"{ORIGINAL} is missing: run tools_compat/make_original_venv.sh (make test-compat does)")
        return 2
    work = tempfile.mkdtemp(prefix="cross_read_")
    path = os.path.join(work, "ours")
    expected = write_ours(path)
    expected_path = os.path.join(work, "expected.json")
    with open(expected_path, "w") as f:
        json.dump(expected, f)
    script = os.path.join(work, "original_side.py")
    with open(script, "w") as f:
        f.write(ORIGINAL_SIDE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = subprocess.run([ORIGINAL, "-P", script, "file://" + path, expected_path], capture_output=True,
                         text=True, cwd=work, env=env, timeout=600)
    ok_a = "ORIGINAL_READ_OK" in out.stdout
    print(f"ours -> original 0.12.1: {'OK' if ok_a else 'FAILED'}")
    if not ok_a:
        print(out.stdout[-2000:], out.stderr[-4000:])
    n = read_originals()
    print(f"original 0.12.1 -> ours: OK ({n} datasets)")
    return 0 if ok_a else 1


if __name__ == "__main__":
    sys.exit(main())
