"""``petastorm-explain URL [options]``: print what a reader with these options would read, reading no data.

The reader is built with the options given (a 'dummy' pool: no thread or process is started) and
``reader.explain()`` is printed: the files and row groups kept and pruned by each selection stage, rows and
estimated bytes per shard and per epoch, the order and its shuffle quality, the pool asked for, and where
the metadata came from. ``--json`` prints the structured result instead.

Examples::

    petastorm-explain file:///data/train --shard 0 --shard-count 8 --shard-mode balanced
    petastorm-explain s3://bucket/ds --filters '[["year", "=", 2024]]' --buffer 10000 --batch-size 256 --json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Optional, Sequence

from petastorm.cli_support import non_negative_int, positive_int, run_cli
from petastorm.errors import PetastormArgumentError

__all__ = ["args_parser", "explain", "main"]

_PROG = "petastorm-explain"


def args_parser() -> argparse.ArgumentParser:
    """The command line of ``petastorm-explain``."""
    p = argparse.ArgumentParser(prog=_PROG, description="Show what a petastorm reader would read (files and row "
                                "groups kept and pruned, rows and bytes per shard and epoch, order, shuffle "
                                "quality, pool), reading no data.")
    p.add_argument("dataset_url", help="dataset URL (file://, s3://, hdfs://, gs://..., or a plain path)")
    p.add_argument("--rows", action="store_true",
                   help="explain make_reader (decoded rows of a Petastorm dataset) instead of make_batch_reader")
    p.add_argument("--fields", nargs="+", metavar="REGEX", help="schema_fields: regexes of the fields to read")
    p.add_argument("--filters", metavar="JSON",
                   help='pyarrow DNF filters as JSON, for example \'[["year", "=", 2024]]\'')
    p.add_argument("--seed", type=int, help="seed of the shuffles (default: random, shown in the output)")
    p.add_argument("--no-shuffle-row-groups", dest="shuffle_row_groups", action="store_false",
                   help="read row groups in dataset order")
    p.add_argument("--shuffle-rows", action="store_true", help="shuffle the rows inside each work item")
    p.add_argument("--drop-partitions", type=positive_int, default=1, metavar="N",
                   help="shuffle_row_drop_partitions: split each row group into N slices (default 1)")
    p.add_argument("--shard", type=non_negative_int, metavar="R", help="cur_shard (with --shard-count)")
    p.add_argument("--shard-count", type=positive_int, metavar="W", help="shard_count (with --shard)")
    p.add_argument("--shard-mode", choices=("original", "balanced"), default="original")
    p.add_argument("--num-epochs", type=non_negative_int, default=1, metavar="N",
                   help="num_epochs (0: unlimited; default 1)")
    p.add_argument("--epoch", type=non_negative_int, metavar="E", help="epoch to explain (default 0)")
    p.add_argument("--pool", choices=("thread", "process", "dummy"), default="thread",
                   help="reader_pool_type to report (no worker is started)")
    p.add_argument("--workers", type=positive_int, default=10, metavar="N", help="workers_count (default 10)")
    p.add_argument("--results-queue-size", type=positive_int, default=50, metavar="N")
    p.add_argument("--row-counts", action="store_true",
                   help="read every file's footer for exact row counts (otherwise rows may be estimated)")
    p.add_argument("--buffer", type=non_negative_int, default=0, metavar="ROWS",
                   help="also measure the order after a loader's shuffling buffer of ROWS rows")
    p.add_argument("--batch-size", type=positive_int, default=1, metavar="N", help="loader batch size (with --buffer)")
    p.add_argument("--json", action="store_true", help="print the structured result as JSON")
    return p


def _filters(text: Optional[str]) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise PetastormArgumentError(f"--filters must be JSON (a list of [column, op, value] lists): {e}") from None

    def tuples(x: Any) -> Any:
        if isinstance(x, list) and x and not isinstance(x[0], list):
            return tuple(x)
        return [tuples(v) for v in x] if isinstance(x, list) else x

    return tuples(value)


def explain(args: argparse.Namespace) -> Any:
    """The :class:`~petastorm.reader_impl.explain.ReadPlan` for parsed command-line ``args``."""
    from petastorm import make_batch_reader, make_reader

    if (args.shard is None) != (args.shard_count is None):
        raise PetastormArgumentError("--shard and --shard-count go together: pass both or neither")
    if args.epoch is not None and args.num_epochs and args.epoch >= args.num_epochs:
        raise PetastormArgumentError(f"--epoch {args.epoch} is past the last epoch the reader reads: with --num-epochs "
                                     f"{args.num_epochs} the epochs are 0..{args.num_epochs - 1} (--num-epochs 0: "
                                     f"unlimited)")
    factory = make_reader if args.rows else make_batch_reader
    reader = factory(args.dataset_url, schema_fields=args.fields, reader_pool_type="dummy", seed=args.seed,
                     shuffle_row_groups=args.shuffle_row_groups, shuffle_rows=args.shuffle_rows,
                     shuffle_row_drop_partitions=args.drop_partitions, cur_shard=args.shard,
                     shard_count=args.shard_count, shard_mode=args.shard_mode,
                     num_epochs=args.num_epochs or None, filters=_filters(args.filters))
    try:
        plan = reader.explain(args.epoch, row_counts=args.row_counts, shuffling_queue_capacity=args.buffer,
                              batch_size=args.batch_size)
    finally:
        reader.stop()
        reader.join()
    pool = {"type": args.pool, "workers_count": 1 if args.pool == "dummy" else args.workers,
            "results_queue_size": args.results_queue_size}
    return dataclasses.replace(plan, pool=pool)


def _main(argv: Optional[Sequence[str]]) -> int:
    """Run ``petastorm-explain`` with ``argv`` (without the program name); return the exit status."""
    def body(args: argparse.Namespace) -> None:
        plan = explain(args)
        print(json.dumps(plan.to_dict(), indent=2) if args.json else plan)

    return run_cli(_PROG, args_parser(), argv, body)


def main() -> None:
    """Console script entry point: ``sys.exit(_main(sys.argv[1:]))``."""
    sys.exit(_main(sys.argv[1:]))


if __name__ == "__main__":  # pragma: no cover
    main()
