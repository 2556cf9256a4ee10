"""`make demo`: write the hello-world dataset without Spark, print its schema and row count, read it back.

Run from the repository root: ``.venv/bin/python examples/hello_world/demo.py [output_dir]``.
"""
from __future__ import annotations

import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from generate_petastorm_dataset import HelloWorldSchema, generate_petastorm_dataset  # noqa: E402


def main(output_dir: str = "demo-out/hello_world_dataset") -> None:
    from petastorm import make_reader
    from petastorm.etl.dataset_metadata import get_schema_from_dataset_url

    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)
    url = "file://" + output_dir
    start = time.perf_counter()
    generate_petastorm_dataset(url, rows_count=50)
    print(f"wrote {url} in {time.perf_counter() - start:.2f} s")

    schema = get_schema_from_dataset_url(url)
    print(f"schema: {schema}")
    assert schema == HelloWorldSchema, "stored schema differs from the one written"

    with make_reader(url, num_epochs=1, shuffle_row_groups=False, workers_count=2) as reader:
        rows = list(reader)
    print(f"read back {len(rows)} rows")
    for row in rows[:3]:
        print(f"  id={row.id} image1={row.image1.shape} {row.image1.dtype} array_4d={row.array_4d.shape}")
    assert [int(r.id) for r in rows] == list(range(len(rows))), "rows should come in file order"


if __name__ == "__main__":
    main(*sys.argv[1:])
