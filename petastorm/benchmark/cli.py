"""``petastorm-throughput`` (alias ``petastorm-throughput.py``): measure the throughput of a reader.

Prints one line, as the original::

    Average sample read rate: 847.95 samples/sec; RAM 252.51 MB (rss); CPU 84.40%
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from petastorm.benchmark.throughput import ReadMethod, WorkerPoolType, reader_throughput
from petastorm.cli_support import non_negative_int, positive_int, run_cli

__all__ = ["main"]

_PROG = "petastorm-throughput"
logger = logging.getLogger(__name__)


def _parse_args(args: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parse the command line (the original's private helper, kept: returns the namespace)."""
    return _parser().parse_args(args)


def _parser() -> argparse.ArgumentParser:
    """The command line (the original's arguments and defaults)."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="This command line utility instantiates an instance of a Reader and measures its throughput. ",
        formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("dataset_path", type=str, help="Path to a petastorm dataset")
    parser.add_argument("--field-regex", type=str, nargs="+",
                        help="A list of regular expressions. Only fields that match one of the regex patterns "
                             "will be used during the benchmark.")
    parser.add_argument("-w", "--workers-count", type=positive_int, default=3,
                        help="Number of workers used by the reader")
    parser.add_argument("-p", "--pool-type", type=WorkerPoolType, default=WorkerPoolType.THREAD,
                        choices=list(WorkerPoolType), metavar="{thread,process,dummy}",
                        help="Type of a worker pool used by the reader")
    parser.add_argument("-m", "--warmup-cycles", type=non_negative_int, default=200,
                        help="Number of warmup read cycles. Warmup read cycles run before measurement cycles and "
                             "the throughput during these cycles is not accounted for in the reported results.")
    parser.add_argument("-n", "--measure-cycles", type=positive_int, default=1000,
                        help="Number cycles used for benchmark measurements. Measurements cycles are run after "
                             "warmup cycles.")
    parser.add_argument("--profile-threads", dest="profile_threads", action="store_true",
                        help="Enables profiling threads. Will print result when thread pool is shut down.")
    parser.add_argument("-d", "--read-method", type=ReadMethod, choices=list(ReadMethod),
                        default=ReadMethod.PYTHON, metavar="{tf,python}",
                        help="Which read mode to use: 'python': using python implementation. 'tf': constructing a "
                             "small TF graph streaming data from pure python implementation.")
    parser.add_argument("-q", "--shuffling-queue-size", type=non_negative_int, default=500,
                        help="Size of the shuffling queue used to decorrelate row-group chunks. ")
    parser.add_argument("--min-after-dequeue", type=non_negative_int, default=None,
                        help="Minimum number of elements in a shuffling queue before entries can be read from it. "
                             "Default value is set to 80.0%% of the --shuffling-queue-size parameter")
    parser.add_argument("-vv", action="store_true", default=False, help="Sets logging level to DEBUG.")
    parser.add_argument("-v", action="store_true", default=False, help="Sets logging level to INFO.")
    parser.add_argument("--no-progress", action="store_true",
                        help="Do not show the progress bar of the read cycles on stderr")
    return parser


def _main(args: Optional[Sequence[str]]) -> int:
    """Run ``petastorm-throughput`` with ``args`` (without the program name); return the exit status."""
    def body(ns: argparse.Namespace) -> None:
        if ns.vv:
            logging.basicConfig(level=logging.DEBUG)
        elif ns.v:
            logging.basicConfig(level=logging.INFO)
        min_after_dequeue = ns.min_after_dequeue
        if min_after_dequeue is None:
            min_after_dequeue = int(ns.shuffling_queue_size * 0.8)
        result = reader_throughput(ns.dataset_path, ns.field_regex, warmup_cycles_count=ns.warmup_cycles,
                                   measure_cycles_count=ns.measure_cycles, pool_type=ns.pool_type,
                                   loaders_count=ns.workers_count, profile_threads=ns.profile_threads,
                                   read_method=ns.read_method, shuffling_queue_size=ns.shuffling_queue_size,
                                   min_after_dequeue=min_after_dequeue, progress=not ns.no_progress)
        logger.info("Done")
        print(f"Average sample read rate: {result.samples_per_second:1.2f} samples/sec; "
              f"RAM {result.memory_info.rss / 2 ** 20:1.2f} MB (rss); CPU {result.cpu:1.2f}%")

    return run_cli(_PROG, _parser(), args, body)


def main() -> None:
    """Console script entry point: ``sys.exit(_main(sys.argv[1:]))``."""
    sys.exit(_main(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    main()
