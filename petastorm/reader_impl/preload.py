"""Which modules the fork server should import before forking pool workers, read from the worker factory.

The fork server (multiprocessing's 'forkserver' start method) is started once per interpreter, by the
first process pool, and imports its preload list before it forks the first worker: each module in the
list delays the first reader's first row, each module missing from it is imported again by every worker
of every pool. :func:`modules_for_factory` names what unpickling the factory imports (read from the
pickle's global references, without unpickling it) plus what its worker imports lazily on its first item
(:data:`LAZY_WORKER_IMPORTS`), so that a reader of ``(64, 64)`` arrays does not wait for OpenCV.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

__all__ = ["modules_for_factory", "LAZY_WORKER_IMPORTS", "PRELOAD_PACKAGES"]

#: Modules a worker imports lazily, at its first item, when the factory's pickle names the key: the first pool
#: adds them to the fork server's preload (decoding an image imports ``cv2``: 0.03-0.25 s in every worker).
LAZY_WORKER_IMPORTS = {"CompressedImageCodec": ["cv2", "petastorm.image_io"]}
_SCAN_LIMIT = 1 << 20
#: Only modules of these packages are preloaded: the fork server imports its list before it forks, and a
#: user module that starts a thread on import would make every fork unsafe (or, raising anything but
#: ImportError, stop the fork server). Other modules are imported by each worker, as before.
PRELOAD_PACKAGES = frozenset({"numpy", "pyarrow", "petastorm", "pyspark", "cv2", "cloudpickle", "pandas",
                              "decimal", "datetime", "collections"})


def modules_for_factory(factory_bytes: bytes) -> List[str]:
    """Modules that unpickling ``factory_bytes`` (a pickle) imports, plus those its worker imports lazily.

    Only modules already imported here and in :data:`PRELOAD_PACKAGES` are named; ``__main__``, user
    modules and what is pickled by value are left out. The scan reads the pickle's global references (no
    unpickling) and gives up on pickles over 1 MiB (a large closure: nothing preloaded beyond the default).
    """
    if len(factory_bytes) > _SCAN_LIMIT:
        return []
    import pickletools

    globals_of: List[str] = []  # modules named by GLOBAL / STACK_GLOBAL
    literals: set = set()  # every string in the pickle (class names among them)
    strings: List[Optional[str]] = []  # the value each pushing opcode left on the stack, None if not a str
    memo: Dict[int, Any] = {}
    try:
        for op, arg, _pos in pickletools.genops(factory_bytes):
            name = op.name
            if name == "MEMOIZE":
                memo[len(memo)] = strings[-1] if strings else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = strings[-1] if strings else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                strings.append(memo.get(arg))
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                strings.append(arg)
                literals.add(arg)
            else:
                if name == "STACK_GLOBAL" and len(strings) >= 2 and isinstance(strings[-2], str):
                    globals_of.append(strings[-2])
                elif name == "GLOBAL":
                    globals_of.append(str(arg).split(" ")[0])
                strings.append(None)
    except Exception:  # noqa: BLE001 - not a pickle we can read: preload the defaults only
        return []
    modules = [m for m in globals_of if m in sys.modules and m.split(".")[0] in PRELOAD_PACKAGES]
    for key, mods in LAZY_WORKER_IMPORTS.items():
        if key in literals:
            modules += [m for m in mods if m in sys.modules or _importable(m)]
    return list(dict.fromkeys(modules))


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
