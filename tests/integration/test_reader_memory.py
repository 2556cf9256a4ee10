"""Memory is bounded by results_queue_size and workers_count, not by the dataset size."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from petastorm.codecs import NdarrayCodec, ScalarCodec
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

BigSchema = Unischema("BigSchema", [
    UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
    UnischemaField("blob", np.float32, (256, 512), NdarrayCodec(), False),  # 512 KiB decoded per row
])


def _big_row(i):
    return {"id": i, "blob": np.full((256, 512), i, dtype=np.float32)}


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["thread", "process"])
def test_peak_rss_growth_is_bounded_by_the_queue_not_the_dataset(tmp_path, pool):
    from _fixtures.datasets import write_synthetic_dataset

    # 800 rows x 512 KiB = 400 MiB decoded, in row groups of 10 rows (5 MiB each); zeros-like data keeps
    # the files small on disk (snappy), the decoded arrays are full size.
    url = write_synthetic_dataset(str(tmp_path / "big"), rows=800, rows_per_group=10, groups_per_file=10,
                                  schema=BigSchema, row_fn=_big_row)
    code = textwrap.dedent(f"""
        import resource, psutil
        from petastorm import make_reader
        n = 0
        with make_reader({url!r}, reader_pool_type={pool!r}, workers_count=2, results_queue_size=2) as r:
            for row in r:
                n += 1
                if n == 60:  # steady state: imports done, the pipeline full
                    base = peak = psutil.Process().memory_info().rss
                elif n > 60 and n % 10 == 0:
                    peak = max(peak, psutil.Process().memory_info().rss)
        print(n, (peak - base) / 2**20)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    n, growth_mib = out.stdout.split()
    assert int(n) == 800
    # after the pipeline is full, reading the remaining ~370 MiB of decoded data must not grow the
    # process: at most workers + queue = 4 row groups (~20 MiB) are in flight at any time
    assert float(growth_mib) < 64, f"RSS grew by {growth_mib} MiB while reading the rest of the dataset"
