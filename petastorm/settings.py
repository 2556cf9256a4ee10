"""Every ``PETASTORM_*`` environment variable, parsed in one place into one frozen :class:`Settings`.

Why one module: the variables used to be read by seven modules, each at its own moment and with its own
rules (one accepted ``off``, another did not; a bad number fell back to the default without a word, a bad
start method raised). Here every variable has one entry in :data:`SETTINGS_TABLE` (name, field, type,
default, meaning), one parser per type, and the same rules for all:

- unset, empty or only spaces: the default;
- surrounding spaces are ignored and words are case-insensitive;
- a switch (bool) is on with ``1``/``true``/``yes``/``on`` and off with ``0``/``false``/``no``/``off``;
- a size is a number of megabytes >= 0 (a fraction is fine; ``0`` is the smallest);
- a choice is one of the words its entry lists;
- anything else raises :class:`~petastorm.errors.PetastormArgumentError` naming the variable and the
  value (``PETASTORM_SHM_CACHE_MB='lots' is not ...``): never a silent default.

How the rest of petastorm gets them: :func:`settings` returns the :class:`Settings` of the current
environment. It is parsed once per distinct set of values (a cache keyed by the raw strings of the
variables, looked up in ``os.environ`` at each call: cheap, but call it once per reader or pool, not per
row): a program (or a test) that sets a variable before it creates
a reader is honoured, as it always was, and the parsing is not repeated. Tests build one from a mapping
with :meth:`Settings.from_environ`, or change a field with ``dataclasses.replace``.

Variables of other programs that petastorm honours (Horovod's ranks, the AWS region, the BLAS thread
counts) are not settings: their meaning and format are those programs', and they are read where they are
used, through :func:`other_program_variable`, which only reads the names :data:`OTHER_PROGRAMS_VARIABLES`
lists. So this module is the one place that reads petastorm's environment (modules that build a child
process's environment copy ``os.environ`` there), and ``docs/settings.md`` lists every variable:
it holds :func:`settings_table_markdown` (``tests/test_settings.py`` checks that it is current).
"""
from __future__ import annotations

import functools
import math
import multiprocessing as mp
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple

from petastorm.errors import PetastormArgumentError, PetastormKeyError

__all__ = ["Settings", "Variable", "SETTINGS_TABLE", "settings", "settings_table_markdown",
           "parse_bool", "parse_size_mb", "parse_choice", "TRUE_WORDS", "FALSE_WORDS",
           "OTHER_PROGRAMS_VARIABLES", "other_program_variable"]

#: Words that turn a switch on / off (compared stripped and lower-cased).
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

#: Transports of process-pool results (see :mod:`petastorm.reader_impl.process.transport`).
_TRANSPORTS = ("shm", "pipe")
#: Arrow memory pools of the row-group reads (see :mod:`petastorm.reader_impl.parquet_io`).
_ARROW_POOLS = ("default", "jemalloc", "mimalloc", "system")


def _bad(name: str, raw: str, expected: str) -> PetastormArgumentError:
    return PetastormArgumentError(f"{name}={raw!r} is not {expected}: unset it for the default "
                                  f"(see docs/settings.md)")


def parse_bool(name: str, raw: str) -> bool:
    """``raw`` (the value of variable ``name``) as a switch: :data:`TRUE_WORDS` or :data:`FALSE_WORDS`."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _bad(name, raw, f"a switch: use one of {TRUE_WORDS} (on) or {FALSE_WORDS} (off)")


def parse_size_mb(name: str, raw: str) -> float:
    """``raw`` as a finite number of megabytes >= 0 (``'0.5'`` is half a MiB)."""
    try:
        mb = float(raw.strip())
    except ValueError:
        raise _bad(name, raw, "a size in megabytes (a number >= 0, e.g. 256)") from None
    if not math.isfinite(mb) or mb < 0:
        raise _bad(name, raw, "a size in megabytes (a number >= 0, e.g. 256)")
    return mb


#: The most bytes a size setting gives (2**63 - 1: "no limit" in practice, and still an int64).
_MAX_BYTES = (1 << 63) - 1


def _mb_to_bytes(mb: float) -> int:
    """Megabytes as bytes, at most :data:`_MAX_BYTES`: a huge finite size (``1e308``, meaning "no limit")
    overflowed to ``inf`` in bytes, and ``int(inf)`` raised a bare ``OverflowError`` from inside the pool's
    ``imap`` (``PETASTORM_RESULTS_BUDGET_MB``) or the segment cache's finalizer (``PETASTORM_SHM_CACHE_MB``)."""
    return int(min(mb * (1 << 20), _MAX_BYTES))


def parse_choice(name: str, raw: str, choices: Tuple[str, ...]) -> str:
    """``raw`` (stripped, lower-cased) if it is one of ``choices``."""
    word = raw.strip().lower()
    if word not in choices:
        raise _bad(name, raw, f"one of {list(choices)}")
    return word


def _start_methods() -> Tuple[str, ...]:
    return tuple(mp.get_all_start_methods())


@dataclass(frozen=True)
class Variable:
    """One row of :data:`SETTINGS_TABLE`: environment variable ``name`` sets :class:`Settings` ``field``.

    ``parse(name, raw)`` turns a set, non-blank value into the field's value or raises
    :class:`PetastormArgumentError`; ``kind`` and ``default_text`` are what the table shows.
    """

    name: str
    field: str
    parse: Callable[[str, str], Any]
    kind: str
    default_text: str
    doc: str


@dataclass(frozen=True)
class Settings:
    """Petastorm's settings (one field per row of :data:`SETTINGS_TABLE`; the defaults are the defaults).

    Attributes
    ----------
    mp_start : str or None
        Start method of process-pool workers; None: ``'forkserver'`` where the platform has it, else
        ``'spawn'``.
    startup_lane : bool
        Whether a starting process pool may run its first items in the reader's own process.
    pool_transport : str or None
        ``'shm'`` or ``'pipe'`` for process-pool results; None: ``'shm'`` where supported (Linux).
    shm_cache_mb : float
        Megabytes of shared memory a stopped process pool leaves for the next one (0: none).
    results_budget_mb : float
        Megabytes of finished results a pool lets wait for the consumer.
    direct_read : bool
        Whether fixed-shape ``NdarrayCodec`` columns are read straight from their Parquet pages.
    mmap_read : bool
        Whether large row groups of local files are read from a memory map of the file.
    arrow_pool : str or None
        Arrow memory pool of row-group reads (``'default'``, ``'jemalloc'``, ``'mimalloc'``,
        ``'system'``); None: chosen per reader (see :func:`petastorm.reader_impl.parquet_io.read_memory_pool`).
    """

    mp_start: Optional[str] = None
    startup_lane: bool = True
    pool_transport: Optional[str] = None
    shm_cache_mb: float = 256.0
    results_budget_mb: float = 64.0
    direct_read: bool = True
    mmap_read: bool = True
    arrow_pool: Optional[str] = None

    @property
    def shm_cache_bytes(self) -> int:
        """:attr:`shm_cache_mb` in bytes (1 MB = 2**20 bytes; see :func:`_mb_to_bytes`)."""
        return _mb_to_bytes(self.shm_cache_mb)

    @property
    def results_budget_bytes(self) -> int:
        """:attr:`results_budget_mb` in bytes (1 MB = 2**20 bytes; see :func:`_mb_to_bytes`)."""
        return _mb_to_bytes(self.results_budget_mb)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Settings":
        """The settings that ``environ`` (a mapping like ``os.environ``) gives.

        Raises
        ------
        PetastormArgumentError
            A variable of :data:`SETTINGS_TABLE` has a value its parser refuses (the message names the
            variable and the value). Names that are not in the table are ignored.
        """
        values = {}
        for var in SETTINGS_TABLE:
            raw = environ.get(var.name)
            if raw is not None and raw.strip():
                values[var.field] = var.parse(var.name, raw)
        return cls(**values)


SETTINGS_TABLE: Tuple[Variable, ...] = (
    Variable("PETASTORM_MP_START", "mp_start",
             lambda name, raw: parse_choice(name, raw, _start_methods()),
             "choice: `fork`, `forkserver`, `spawn` (those of the platform)",
             "`forkserver` where available, else `spawn`",
             "Start method of process-pool workers."),
    Variable("PETASTORM_STARTUP_LANE", "startup_lane", parse_bool, "switch", "on",
             "While a process pool starts, one thread of the reader's process runs its first items "
             "(never with `fork`, nor for readers that run user code or decode images)."),
    Variable("PETASTORM_POOL_TRANSPORT", "pool_transport",
             lambda name, raw: parse_choice(name, raw, _TRANSPORTS),
             "choice: `shm`, `pipe`", "`shm` where supported (Linux), else `pipe`",
             "How process-pool workers send results: shared-memory segments or the pipe "
             "(`shm` where unsupported falls back to `pipe`)."),
    Variable("PETASTORM_SHM_CACHE_MB", "shm_cache_mb", parse_size_mb, "size in MB (>= 0)", "256",
             "Shared memory a stopped process pool leaves for the next one; `0`: none "
             "(`petastorm.reader_impl.process.clear_segment_cache()` frees it)."),
    Variable("PETASTORM_RESULTS_BUDGET_MB", "results_budget_mb", parse_size_mb, "size in MB (>= 0)", "64",
             "Finished results a pool lets wait for the consumer (never fewer than one per worker plus "
             "one)."),
    Variable("PETASTORM_DIRECT_READ", "direct_read", parse_bool, "switch", "on",
             "Fixed-shape `NdarrayCodec` fields of local datasets are read straight from their Parquet "
             "pages; off: through pyarrow."),
    Variable("PETASTORM_MMAP_READ", "mmap_read", parse_bool, "switch", "on",
             "Row groups of local files whose columns read take >= 2 MiB are read from a memory map of the "
             "file (no copy of the pages into Arrow's buffers); off: through pyarrow's file reads. A file "
             "truncated in place during such a read kills the process (SIGBUS) instead of raising an error: "
             "turn it off where datasets are rewritten in place while they are read."),
    Variable("PETASTORM_ARROW_POOL", "arrow_pool",
             lambda name, raw: parse_choice(name, raw, _ARROW_POOLS),
             "choice: `default`, `jemalloc`, `mimalloc`, `system`",
             "`jemalloc` for readers of compressed images/arrays (uncompressed files), else pyarrow's default",
             "Arrow memory pool of petastorm's row-group reads (`default`: pyarrow's process-wide pool; a "
             "pool this pyarrow lacks: the default)."),
)

_NAMES: Tuple[str, ...] = tuple(var.name for var in SETTINGS_TABLE)


@functools.lru_cache(maxsize=16)
def _parsed(raw: Tuple[Optional[str], ...]) -> Settings:
    return Settings.from_environ({name: value for name, value in zip(_NAMES, raw) if value is not None})


def settings() -> Settings:
    """The :class:`Settings` of the current environment (``os.environ``), parsed once per distinct values.

    Raises
    ------
    PetastormArgumentError
        A ``PETASTORM_*`` variable has a bad value (each call raises again until it is fixed).
    """
    environ = os.environ
    return _parsed(tuple(environ.get(name) for name in _NAMES))


#: Variables of other programs that petastorm honours: name -> what petastorm does with it.
OTHER_PROGRAMS_VARIABLES: Mapping[str, str] = {
    "HOROVOD_RANK": "with `HOROVOD_SIZE` (or the `OMPI_COMM_WORLD_*` or `PMI_*` pair): the Spark dataset "
                    "converter warns when a reader's `cur_shard`/`shard_count` differ from them",
    "HOROVOD_SIZE": "see `HOROVOD_RANK`",
    "OMPI_COMM_WORLD_RANK": "see `HOROVOD_RANK`",
    "OMPI_COMM_WORLD_SIZE": "see `HOROVOD_RANK`",
    "PMI_RANK": "see `HOROVOD_RANK`",
    "PMI_SIZE": "see `HOROVOD_RANK`",
    "AWS_REGION": "when neither it nor `AWS_DEFAULT_REGION` is set (nor a `region` in `storage_options`), "
                  "the region of an `s3://` URL's bucket is looked up before the filesystem is made",
    "AWS_DEFAULT_REGION": "see `AWS_REGION`",
    "OPENBLAS_NUM_THREADS": "unless it, `GOTO_NUM_THREADS` or `OMP_NUM_THREADS` is set, process-pool workers "
                            "run OpenBLAS on one thread (set by the fork server for its own numpy import)",
    "GOTO_NUM_THREADS": "see `OPENBLAS_NUM_THREADS`",
    "OMP_NUM_THREADS": "see `OPENBLAS_NUM_THREADS`",
}


def other_program_variable(name: str) -> Optional[str]:
    """``os.environ.get(name)`` for a variable of :data:`OTHER_PROGRAMS_VARIABLES` (raw: its format is
    its program's).

    Raises
    ------
    PetastormKeyError
        ``name`` is not listed there (list it, with what petastorm does with it, to read it).
    """
    if name not in OTHER_PROGRAMS_VARIABLES:
        raise PetastormKeyError(f"{name} is not in petastorm.settings.OTHER_PROGRAMS_VARIABLES: list it there "
                                f"(and so in docs/settings.md) before reading it")
    return os.environ.get(name)


def settings_table_markdown() -> str:
    """:data:`SETTINGS_TABLE` and :data:`OTHER_PROGRAMS_VARIABLES` as Markdown tables (what
    ``docs/settings.md`` shows)."""
    lines = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for var in SETTINGS_TABLE:
        lines.append(f"| `{var.name}` | {var.kind} | {var.default_text} | {var.doc} |")
    lines += ["", "Variables of other programs that petastorm honours (their format is those programs'):", "",
              "| Variable | What petastorm does with it |", "|---|---|"]
    for name, doc in OTHER_PROGRAMS_VARIABLES.items():
        lines.append(f"| `{name}` | {doc} |")
    return "\n".join(lines) + "\n"
