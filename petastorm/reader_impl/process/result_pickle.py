"""How a worker pickles a result: protocol 5, large buffers out of band, strided arrays as their base plus the view.

:func:`dumps_result` pickles with :class:`ResultPickler`, whose ``reducer_override`` sends a non-contiguous
array whose elements are at least half of its contiguous base as that base (out of band: with no copy when
it lives in shared memory) plus offset, shape and strides; the parent rebuilds the view over it. What plain
pickle cannot name (a class of the user's ``__main__``) goes through cloudpickle. numpy is imported only
when an array is met (the package is imported by the fork server before numpy).
"""
from __future__ import annotations

import io
import pickle
from typing import Any, List

import cloudpickle

__all__ = ["ResultPickler", "dumps_result", "strided_reduce"]


def _rebuild_view(base: Any, offset: int, shape: tuple, strides: tuple, dtype: Any) -> Any:
    """The strided array a worker sent as its contiguous ``base`` (see :func:`strided_reduce`)."""
    import numpy as np

    return np.ndarray(shape, dtype=dtype, buffer=base, offset=offset, strides=strides)


def strided_reduce(a: Any) -> Any:
    """``(_rebuild_view, (base, offset, shape, strides, dtype))`` for a non-contiguous array whose elements
    make up at least half of a contiguous base array (the base then travels out of band, with no copy when
    it lives in shared memory, and the view is rebuilt over it), or None (numpy then pickles the array as an
    in-band copy)."""
    import numpy as np

    if a.flags.c_contiguous or a.flags.f_contiguous or a.dtype.hasobject or min(a.strides, default=0) < 0 \
            or a.size == 0:
        return None
    base = a.base
    while isinstance(base, np.ndarray) and not base.flags.c_contiguous:
        base = base.base
    if not isinstance(base, np.ndarray):
        return None
    start = a.__array_interface__["data"][0]
    origin = base.__array_interface__["data"][0]
    extent = sum((n - 1) * s for n, s in zip(a.shape, a.strides)) + a.itemsize
    if start < origin or start + extent > origin + base.nbytes or base.nbytes > 2 * a.nbytes:
        return None
    return _rebuild_view, (base.reshape(-1).view(np.uint8), start - origin, a.shape, a.strides, a.dtype)


class ResultPickler(pickle.Pickler):
    """Protocol-5 pickler that sends strided arrays as their base plus the view (see :func:`strided_reduce`)."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj).__name__ == "ndarray" and type(obj).__module__ == "numpy":
            reduced = strided_reduce(obj)
            if reduced is not None:
                return reduced
        return NotImplemented


def dumps_result(obj: Any, buffer_callback: Any, bufs: "List[memoryview] | None" = None) -> bytes:
    """Protocol-5 pickle (strided arrays as base + view when buffers travel out of band); falls back to
    cloudpickle for what plain pickle cannot name (for example an instance of a class defined in the user's
    ``__main__``, which worker processes do not import)."""
    try:
        if buffer_callback is None:
            return pickle.dumps(obj, protocol=5)
        sink = io.BytesIO()
        ResultPickler(sink, protocol=5, buffer_callback=buffer_callback).dump(obj)
        return sink.getvalue()
    except (pickle.PicklingError, AttributeError, TypeError):
        if bufs:
            bufs.clear()
        return cloudpickle.dumps(obj, protocol=5, buffer_callback=buffer_callback)
