"""Unpickle Petastorm metadata with an exact allow-list (:mod:`petastorm.etl.pickle_allowlist`).

``dumps_unischema`` (writing a pickle the original loads) lives in :mod:`petastorm.etl.compat_pickle`
and is re-exported here.

Datasets carry pickles (the Unischema, the row-group indexes). ``pickle.loads`` on a file from a shared
bucket runs whatever callable the file names, so we never call it. :func:`safe_loads` runs a pure-Python
unpickler in which:

- ``find_class`` resolves only the exact ``(module, name)`` pairs of :data:`ALLOWED_GLOBALS` (after mapping
  Python 2 and numpy 1 names), so ``os.system``, ``builtins.eval``/``getattr``/``__import__``,
  ``subprocess.*``, dotted attribute paths and unknown classes are refused when they are named;
- the opcodes that *call* something are re-implemented: ``REDUCE`` calls only a fixed table of pure
  factories (``OrderedDict``, ``set``, ``Decimal``, ``numpy.dtype``...), ``NEWOBJ`` creates only the
  schema/codec/Spark-type/indexer classes (with ``object.__new__``, no constructor runs), and
  ``copyreg._reconstructor`` / ``pyspark.serializers._restore`` are replaced by checked versions;
- ``BUILD`` sets only plain data attributes (never a name that shadows a method or a descriptor of the
  class, never a dunder), and ``APPEND``/``SETITEM``/``ADDITEMS`` act only on real lists, dicts and sets;
- ``INST``, ``OBJ``, the extension registry, persistent ids and out-of-band buffers are refused;
- numpy values are rebuilt by :mod:`petastorm.etl.untrusted_values`: a ``numpy.dtype`` only from a text
  description of a plain dtype (no fields, no objects), its BUILD state never reaches numpy (only the byte
  order, item size and datetime unit are read from it), and a numpy scalar only of a plain dtype;
- nothing from the pickle is ``repr``'d in an error message (an object from a pickle may crash on
  ``repr``): messages describe it by its type (:func:`~petastorm.etl.untrusted_values.describe_untrusted`).

Every refusal raises :class:`~petastorm.errors.PetastormMetadataError` naming the source (the dataset
path) and the refused global or opcode, before the refused thing runs.
"""
from __future__ import annotations

import collections
import decimal
import importlib
import io
import pickle
from typing import Any, Callable

import numpy as np

from petastorm.errors import PetastormMetadataError
from petastorm.etl.compat_pickle import dumps_unischema
from petastorm.etl.pickle_allowlist import (
    ALLOWED_GLOBALS,
    CODEC_NAMES,
    INDEXER_NAMES,
    SPARK_TYPE_NAMES,
    canonical_global,
    global_text,
    refusal,
    static_check,
)
from petastorm.etl.untrusted_values import (
    UntrustedValueError,
    describe_untrusted,
    dtype_from_state,
    plain_dtype,
    plain_scalar,
)

__all__ = ["safe_loads", "dumps_unischema", "ALLOWED_GLOBALS"]


# --- checked replacements of the callables that pickles use --------------------------------------------------

def _classes() -> dict[str, Any]:
    """The classes that NEWOBJ/_reconstructor may create (imported lazily to avoid import cycles)."""
    from petastorm import codecs, unischema
    from petastorm.etl import rowgroup_indexers
    from petastorm.spark_types import STANDIN_TYPES

    found = {"Unischema": unischema.Unischema, "UnischemaField": unischema.UnischemaField}
    found.update({n: getattr(codecs, n) for n in CODEC_NAMES})
    found.update({n: getattr(rowgroup_indexers, n) for n in INDEXER_NAMES})
    # stand-ins even when pyspark is installed: loading a schema must not import pyspark (codecs convert
    # on demand, see petastorm.spark_types.to_pyspark)
    found.update({n: STANDIN_TYPES[n] for n in SPARK_TYPE_NAMES})
    return found


def _make_unischema_field(values: Any, source: str) -> Any:
    from petastorm.unischema import UnischemaField

    if not isinstance(values, (tuple, list)) or not 2 <= len(values) <= 5:
        raise refusal(source, "a UnischemaField", f"expected 2 to 5 field values, got {describe_untrusted(values)}")
    return UnischemaField(*values)


class _Factories:
    """Pure factories that REDUCE may call, each checking its arguments."""

    def __init__(self, source: str) -> None:
        self.source = source

    def reconstructor(self, cls: Any, base: Any, state: Any) -> Any:
        """Checked ``copyreg._reconstructor``: ``object`` or ``tuple`` bases of allowed classes only."""
        classes = _classes()
        if not isinstance(cls, type) or classes.get(cls.__name__) is not cls:
            raise refusal(self.source, f"copyreg._reconstructor({describe_untrusted(cls)})",
                          "the class is not an allowed metadata class")
        if base is object and state is None:
            return object.__new__(cls)
        if base is tuple and cls is classes["UnischemaField"]:
            return _make_unischema_field(state, self.source)
        raise refusal(self.source, f"copyreg._reconstructor({cls.__name__}, {describe_untrusted(base)})",
                      "only the bases object (no state) and tuple (UnischemaField) are allowed")

    def restore(self, name: Any, fields: Any, values: Any) -> Any:
        """Checked ``pyspark.serializers._restore``: it rebuilds only ``UnischemaField`` namedtuples."""
        from petastorm.unischema import UnischemaField

        if name != "UnischemaField" or not isinstance(fields, tuple) \
                or tuple(fields) != UnischemaField._fields[:len(fields)]:
            raise refusal(self.source, f"pyspark.serializers._restore({describe_untrusted(name)}, "
                          f"{describe_untrusted(fields)})",
                          "only UnischemaField namedtuples may be restored")
        return _make_unischema_field(values, self.source)

    def ordered_dict(self, *args: Any) -> Any:
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict))):
            raise refusal(self.source, "collections.OrderedDict(...)", "unexpected arguments")
        return collections.OrderedDict(*args)

    def defaultdict(self, *args: Any) -> Any:
        if len(args) > 1 or (args and args[0] not in (None, set, frozenset, list, dict, int)):
            raise refusal(self.source, f"collections.defaultdict({describe_untrusted(args[0])})",
                          "the default factory must be set, frozenset, list, dict, int or None")
        return collections.defaultdict(*args)

    def set_(self, *args: Any) -> Any:
        return self._collection(set, args)

    def frozenset_(self, *args: Any) -> Any:
        return self._collection(frozenset, args)

    def _collection(self, kind: type, args: tuple) -> Any:
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, set, frozenset))):
            raise refusal(self.source, f"builtins.{kind.__name__}(...)", "unexpected arguments")
        return kind(*args)

    def decimal_(self, *args: Any) -> Any:
        if len(args) != 1 or not isinstance(args[0], (str, int, tuple)):
            raise refusal(self.source, "decimal.Decimal(...)", "unexpected arguments")
        return decimal.Decimal(args[0])

    def dtype(self, *args: Any) -> Any:
        """Checked ``numpy.dtype(description[, align[, copy]])``: a plain dtype, always a new object."""
        if not 1 <= len(args) <= 3:
            raise refusal(self.source, "numpy.dtype(...)", f"expected 1 to 3 arguments, got {len(args)}")
        try:
            return plain_dtype(*args)
        except UntrustedValueError as e:
            raise refusal(self.source, "numpy.dtype(...)", str(e)) from None

    def scalar(self, *args: Any) -> Any:
        """Checked ``numpy.core.multiarray.scalar(dtype, raw bytes)``: plain dtypes only."""
        if len(args) != 2:
            raise refusal(self.source, "a numpy scalar", f"expected (dtype, raw bytes), got {len(args)} arguments")
        try:
            return plain_scalar(*args)
        except UntrustedValueError as e:
            raise refusal(self.source, "a numpy scalar", str(e)) from None

    def bytes_(self, *args: Any) -> Any:
        if args:  # protocols 0-2 write b'' as bytes(), other bytes as _codecs.encode(str, 'latin1')
            raise refusal(self.source, "builtins.bytes(...)", "only bytes() without arguments is allowed")
        return b""

    def codecs_encode(self, *args: Any) -> Any:
        if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
            raise refusal(self.source, "_codecs.encode(...)", "only (str, 'latin1') is allowed")
        return args[0].encode("latin1")


# --- the unpickler --------------------------------------------------------------------------------------------

_SAFE_ATTR_VALUE_TYPES = (str, bytes, int, float, bool, type(None), tuple, list, dict, set, frozenset)


class _Memo(dict):
    """The unpickler's memo, which remembers where each dtype is stored: a BUILD on a dtype replaces the
    dtype by a rebuilt one (numpy's own ``__setstate__`` is never called), here as on the stack."""

    def __init__(self) -> None:
        super().__init__()
        self.dtype_keys: dict[int, list] = {}

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        if isinstance(value, np.dtype):
            self.dtype_keys.setdefault(id(value), []).append(key)

    def replace_dtype(self, old: np.dtype, new: np.dtype) -> None:
        for key in self.dtype_keys.pop(id(old), ()):
            if self.get(key) is old:
                self[key] = new


class _SafeUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Pure-Python unpickler with an exact allow-list and checked calling opcodes (see module doc)."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, data: bytes, source: str) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1", errors="strict")
        self.source = source
        self.memo = _Memo()
        self._factories = _Factories(source)
        self._classes = _classes()
        self._newobj_classes = {id(c): c for c in self._classes.values()}
        self._reduce_table: dict[int, tuple[str, Callable]] = {}
        f = self._factories
        for key, factory in [
            (("collections", "OrderedDict"), f.ordered_dict), (("collections", "defaultdict"), f.defaultdict),
            (("builtins", "set"), f.set_), (("builtins", "frozenset"), f.frozenset_),
            (("decimal", "Decimal"), f.decimal_), (("numpy", "dtype"), f.dtype),
            (("numpy._core.multiarray", "scalar"), f.scalar), (("_codecs", "encode"), f.codecs_encode),
            (("builtins", "bytes"), f.bytes_),
        ]:
            self._reduce_table[id(self._resolve(*key))] = (".".join(key), factory)
        # Bound methods are new objects at each attribute access: keep one of each, and key on it.
        self._reconstructor = f.reconstructor
        self._restore = f.restore
        for factory in (self._reconstructor, self._restore):
            self._reduce_table[id(factory)] = (factory.__name__, factory)

    # -- globals --

    def _resolve(self, module: str, name: str) -> Any:
        if module == "petastorm.unischema" or module == "petastorm.codecs" \
                or module == "petastorm.etl.rowgroup_indexers" or module == "pyspark.sql.types":
            return self._classes[name]
        if module == "numpy":
            return getattr(np, name)
        if module == "_codecs":
            import _codecs

            return _codecs.encode
        return getattr(importlib.import_module(module), name)

    def find_class(self, module: str, name: str) -> Any:
        canonical = canonical_global(module, name, self.proto)
        if canonical not in ALLOWED_GLOBALS:
            raise refusal(self.source, global_text(module, name, canonical), "it is not on the allow-list")
        module, name = canonical
        if (module, name) == ("copyreg", "_reconstructor"):
            return self._reconstructor
        if (module, name) == ("pyspark.serializers", "_restore"):
            return self._restore
        try:
            return self._resolve(module, name)
        except (AttributeError, ImportError, KeyError) as e:
            raise refusal(self.source, f"the global {module}.{name}", f"it cannot be resolved here ({e})") from None

    # -- calling opcodes --

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        entry = self._reduce_table.get(id(func))
        if entry is None or not isinstance(args, tuple):
            raise refusal(self.source, f"a call of {_describe(func)}", "REDUCE may call only pure factories "
                          "(OrderedDict, defaultdict, set, Decimal, numpy.dtype, numpy scalar, checked "
                          "copyreg._reconstructor)")
        stack[-1] = entry[1](*args)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def _new(self, cls: Any, args: Any, kwargs: Any = None) -> Any:
        if not isinstance(cls, type) or self._newobj_classes.get(id(cls)) is not cls:
            raise refusal(self.source, f"creating {_describe(cls)} (NEWOBJ)", "it is not an allowed metadata class")
        if kwargs:
            raise refusal(self.source, f"creating {cls.__name__} with keyword arguments", "not allowed")
        if cls is self._classes["UnischemaField"]:
            return _make_unischema_field(args, self.source)
        if args:
            raise refusal(self.source, f"creating {cls.__name__} with arguments {describe_untrusted(args)}",
                          "only UnischemaField takes constructor arguments")
        return object.__new__(cls)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def load_build(self) -> None:
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        if isinstance(inst, np.dtype):
            try:
                rebuilt = dtype_from_state(inst, state)
            except UntrustedValueError as e:
                raise refusal(self.source, "a numpy.dtype state (BUILD)", str(e)) from None
            stack[-1] = rebuilt
            self.memo.replace_dtype(inst, rebuilt)
            return
        cls = type(inst)
        if self._newobj_classes.get(id(cls)) is not cls or cls is self._classes["UnischemaField"]:
            raise refusal(self.source, f"setting the state of {_describe(inst)} (BUILD)",
                          "only schema, codec, Spark type and indexer objects take a state")
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if state is None:
            return
        if not isinstance(state, dict):
            raise refusal(self.source, f"the state of {cls.__name__}", f"expected a dict, got {type(state).__name__}")
        for key in state:
            if not isinstance(key, str) or key.startswith("__"):
                raise refusal(self.source, f"the attribute {describe_untrusted(key)} of {cls.__name__}",
                              "not a plain attribute name")
            if cls is not self._classes["Unischema"] and _shadows_class_attribute(cls, key):
                raise refusal(self.source, f"the attribute {key!r} of {cls.__name__}",
                              "it would replace a method or property of the class")
        if cls is self._classes["Unischema"]:
            _check_unischema_state(state, self.source)
            inst.__setstate__(state)  # petastorm.unischema's own, pure
        else:
            inst.__dict__.update(state)

    dispatch[pickle.BUILD[0]] = load_build

    # -- containers: only real lists, dicts and sets --

    def _container(self, kinds: tuple, opname: str) -> Any:
        target = self.stack[-1]
        if type(target) not in kinds:
            raise refusal(self.source, f"{opname} on {_describe(target)}", "only plain containers take items")
        return target

    def load_append(self) -> None:
        value = self.stack.pop()
        self._container((list,), "APPEND").append(value)

    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._container((list,), "APPENDS").extend(items)

    dispatch[pickle.APPENDS[0]] = load_appends

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._container((dict, collections.OrderedDict, collections.defaultdict), "SETITEM")[key] = value

    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._container((dict, collections.OrderedDict, collections.defaultdict), "SETITEMS")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._container((set,), "ADDITEMS").update(items)

    dispatch[pickle.ADDITEMS[0]] = load_additems

    # -- refused outright --

    def _refused_opcode(self, name: str) -> None:
        raise refusal(self.source, f"the opcode {name}", "it can call arbitrary code or needs external objects")

    for _op in ("INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID", "NEXT_BUFFER", "READONLY_BUFFER"):
        if hasattr(pickle, _op):
            dispatch[getattr(pickle, _op)[0]] = (lambda self, _n=_op: self._refused_opcode(_n))
    del _op


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    if callable(obj):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
    return describe_untrusted(obj)


def _shadows_class_attribute(cls: type, key: str) -> bool:
    for klass in cls.__mro__:
        if key in vars(klass):
            attr = vars(klass)[key]
            return callable(attr) or hasattr(attr, "__get__") and not isinstance(attr, _SAFE_ATTR_VALUE_TYPES)
    return False


def _check_unischema_state(state: dict, source: str) -> None:
    from petastorm.unischema import UnischemaField

    fields = state.get("_fields")
    if fields is not None and not isinstance(fields, dict):
        raise refusal(source, "a Unischema state", f"_fields must be a dict, got {type(fields).__name__}")
    values = fields.values() if fields is not None else [v for v in state.values() if isinstance(v, UnischemaField)]
    for value in values:
        if not isinstance(value, UnischemaField):
            raise refusal(source, "a Unischema state", f"a field is a {type(value).__name__}, not a UnischemaField")
    if not isinstance(state.get("_name", ""), str):
        raise refusal(source, "a Unischema state", "_name must be a string")


def safe_loads(data: bytes, source: str) -> Any:
    """Unpickle metadata ``data`` with the allow-list; ``source`` (the dataset path) names it in errors.

    Raises
    ------
    PetastormMetadataError
        For a refused global or opcode (naming ``source`` and what was refused), or a corrupt pickle.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PetastormMetadataError(f"{source}: expected pickled bytes, got {type(data).__name__}")
    data = bytes(data)
    static_check(data, source)
    try:
        return _SafeUnpickler(data, source).load()
    except PetastormMetadataError:
        raise
    except RecursionError:
        raise PetastormMetadataError(f"{source}: the pickled metadata nests too deeply") from None
    except Exception as e:  # noqa: BLE001 - malformed data inside allowed operations
        # only plain values can exist at this point: the message of an error about them is safe to print
        raise PetastormMetadataError(
            f"{source}: the pickled metadata cannot be read ({type(e).__name__}: {str(e)[:200]})") from None
