"""The metadata unpickler refuses everything but the allow-list, before anything runs; the Unischema
pickle we write loads with plain pickle and with the allow-list."""
import collections
import os
import pickle
import subprocess
import sys
import textwrap
from decimal import Decimal

import numpy as np
import pytest

from petastorm.codecs import CompressedImageCodec, CompressedNdarrayCodec, NdarrayCodec, ScalarCodec
from petastorm.errors import PetastormMetadataError
from petastorm.etl.rowgroup_indexers import FieldNotNullIndexer, SingleFieldIndexer
from petastorm.etl.safe_unpickle import dumps_unischema, safe_loads
from petastorm.spark_types import spark_type
from petastorm.unischema import Unischema, UnischemaField

SOURCE = "s3://bucket/evil_dataset/_common_metadata"
PROTOCOLS = [0, 1, 2, 3, 4, 5]


class _Reduces:
    """Pickles as a call of ``func(*args)``: how an attacker writes a malicious pickle."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _unicode(text):
    raw = text.encode("utf-8")
    return b"\x8c" + bytes([len(raw)]) + raw


def _stack_global_call(module, name, arg):
    """Hand-written protocol 4 pickle: ``module.name(arg)`` through STACK_GLOBAL and REDUCE."""
    return b"\x80\x04" + _unicode(module) + _unicode(name) + b"\x93" + _unicode(arg) + b"\x85R."


def _assert_refused(data, marker, *words):
    with pytest.raises(PetastormMetadataError) as e:
        safe_loads(data, SOURCE)
    message = str(e.value)
    assert SOURCE in message
    for word in words:
        assert word in message, message
    assert not os.path.exists(marker), "the refused pickle ran code"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_os_system_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Reduces(os.system, f"touch {marker}"), protocol=protocol)
    _assert_refused(data, marker, "system")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("func,arg_template,name", [
    (eval, "open({marker!r}, 'w').close()", "builtins.eval"),
    (exec, "open({marker!r}, 'w').close()", "builtins.exec"),
    (subprocess.call, ["touch", "{marker}"], "subprocess.call"),
    (subprocess.Popen, ["touch", "{marker}"], "subprocess.Popen"),
])
def test_code_running_globals_are_refused(tmp_path, protocol, func, arg_template, name):
    marker = str(tmp_path / "pwned")
    arg = arg_template.format(marker=marker) if isinstance(arg_template, str) else \
        [a.format(marker=marker) for a in arg_template]
    data = pickle.dumps(_Reduces(func, arg), protocol=protocol)
    _assert_refused(data, marker, name)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_posix_system_getattr_and_import_are_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    import posix

    for func, args, name in [(posix.system, (f"touch {marker}",), "posix.system"),
                             (getattr, (Unischema, "__init__"), "builtins.getattr"),
                             (__import__, ("os",), "builtins.__import__")]:
        _assert_refused(pickle.dumps(_Reduces(func, *args), protocol=protocol), marker, name)


@pytest.mark.parametrize("protocol", [4, 5])
def test_callable_reached_through_an_allowed_class_is_refused(tmp_path, protocol):
    # Protocol 4 looks up dotted names: Unischema.__init__ (then its __globals__...) must not resolve.
    marker = tmp_path / "pwned"
    _assert_refused(pickle.dumps(Unischema.__init__, protocol=protocol), marker, "Unischema.__init__")
    _assert_refused(pickle.dumps(Unischema.create_schema_view, protocol=protocol), marker, "create_schema_view")
    # A hand-written STACK_GLOBAL into a module attribute of an allowed module.
    data = _stack_global_call("petastorm.unischema", "warnings.warn", "boo")
    _assert_refused(data, marker, "petastorm.unischema.warnings.warn")


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_reconstructor_with_a_class_not_allowed_is_refused(tmp_path, protocol):
    import copyreg

    marker = tmp_path / "pwned"
    # An allowed global (numpy.dtype / OrderedDict) that is not a reconstructable metadata class.
    for cls in (np.dtype, collections.OrderedDict):
        data = pickle.dumps(_Reduces(copyreg._reconstructor, cls, object, None), protocol=protocol)
        _assert_refused(data, marker, "_reconstructor")
    # A base other than object/tuple.
    data = pickle.dumps(_Reduces(copyreg._reconstructor, NdarrayCodec, dict, {"a": 1}), protocol=protocol)
    _assert_refused(data, marker, "_reconstructor")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_reduce_on_allowed_classes_is_refused(tmp_path, protocol):
    """Allowed classes may be created without running their constructors, never called with arguments."""
    marker = tmp_path / "pwned"
    for func, args in [(Unischema, ("x", [])), (CompressedImageCodec, ("png",)), (ScalarCodec, (None,)),
                       (SingleFieldIndexer, ("a", "b")), (np.int64, (3,))]:
        data = pickle.dumps(_Reduces(func, *args), protocol=protocol)
        _assert_refused(data, marker, "REDUCE")


def test_defaultdict_with_a_callable_factory_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Reduces(collections.defaultdict, Unischema), protocol=2)
    _assert_refused(data, marker, "defaultdict")


def test_build_that_replaces_methods_or_dunders_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    codec = NdarrayCodec()
    codec.__dict__["decode"] = collections.OrderedDict  # an allowed global smuggled in as a "method"
    _assert_refused(pickle.dumps(codec, protocol=2), marker, "decode")
    codec = NdarrayCodec()
    codec.__dict__["__reduce__"] = 1
    _assert_refused(pickle.dumps(codec, protocol=4), marker, "__reduce__")


def test_build_on_objects_that_are_not_metadata_classes_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    # OrderedDict() then BUILD {'x': 1}: BUILD on a dict subclass would call setattr on it.
    data = b"\x80\x02ccollections\nOrderedDict\n)R}U\x01xK\x01sb."
    _assert_refused(data, marker, "BUILD")


@pytest.mark.parametrize("data,word", [
    (b"(S'x'\nios\nsystem\n.", "system"),                          # INST
    (b"(cpetastorm.codecs\nNdarrayCodec\no.", "OBJ"),               # OBJ on an allowed class
    (b"\x80\x02\x82\x01.", "EXT1"),                                 # extension registry
    (b"Pfoo\n.", "PERSID"),                                        # persistent id
    (b"\x80\x05\x97.", "NEXT_BUFFER"),                              # out-of-band buffer
])
def test_opcodes_that_call_or_import_are_refused(tmp_path, data, word):
    _assert_refused(data, tmp_path / "pwned", word)


def test_truncated_and_garbage_pickles_give_a_metadata_error():
    good = dumps_unischema(Unischema("S", [UnischemaField("a", np.int32, (), None, False)]))
    for data in (good[: len(good) // 2], b"garbage", b""):
        with pytest.raises(PetastormMetadataError, match="evil_dataset"):
            safe_loads(data, SOURCE)


# --- what must load ---------------------------------------------------------------------------------------

def _all_codecs_schema():
    return Unischema("AllCodecs", [
        UnischemaField("id", np.int64, (), ScalarCodec(spark_type("LongType")), False),
        UnischemaField("id16", np.int16, (), ScalarCodec(spark_type("ShortType")), False),
        UnischemaField("flag", np.bool_, (), ScalarCodec(spark_type("BooleanType")), False),
        UnischemaField("name", np.str_, (), ScalarCodec(spark_type("StringType")), False),
        UnischemaField("dec", Decimal, (), ScalarCodec(spark_type("DecimalType", 10, 9)), True),
        UnischemaField("png", np.uint8, (32, 48, 3), CompressedImageCodec("png"), False),
        UnischemaField("jpeg", np.uint8, (32, 48, 3), CompressedImageCodec("jpeg", 95), False),
        UnischemaField("matrix", np.float32, (None, 4), NdarrayCodec(), True),
        UnischemaField("znd", np.float64, (6, 6), CompressedNdarrayCodec(), False),
        UnischemaField("raw", np.bytes_, (None,), None, True),
        UnischemaField("ts", np.dtype("datetime64[ns]"), (), None, False),
    ])


def _describe(schema):
    out = []
    for f in schema.fields.values():
        codec = f.codec
        detail = None
        if isinstance(codec, ScalarCodec):
            st = codec.spark_dtype()
            detail = (type(st).__name__, getattr(st, "precision", None), getattr(st, "scale", None))
        elif isinstance(codec, CompressedImageCodec):
            detail = (codec.image_codec, codec._quality)
        out.append((f.name, f.numpy_dtype, f.shape, type(codec).__name__, detail, f.nullable))
    return out


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_schemas_pickled_by_plain_pickle_load_with_every_protocol(protocol):
    schema = _all_codecs_schema()
    loaded = safe_loads(pickle.dumps(schema, protocol=protocol), SOURCE)
    assert isinstance(loaded, Unischema)
    assert loaded == schema
    assert _describe(loaded) == _describe(schema)
    assert loaded.matrix.shape == (None, 4)


def test_dumps_unischema_round_trips_and_loads_with_plain_pickle():
    schema = _all_codecs_schema()
    data = dumps_unischema(schema)
    assert _describe(safe_loads(data, SOURCE)) == _describe(schema)
    assert _describe(pickle.loads(data)) == _describe(schema)
    assert b"pyspark.sql.types" in data and b"petastorm.spark_types" not in data


def test_indexers_with_numpy_keys_round_trip():
    single = SingleFieldIndexer("by_name", "name")
    single.build_index([{"name": np.str_("a")}, {"name": np.str_("b")}], 0)
    single.build_index([{"name": np.str_("a")}, {"name": None}], 1)
    numbers = SingleFieldIndexer("by_id", "id")
    numbers.build_index([{"id": np.int64(7)}, {"id": np.array([8, 9])}], 2)
    not_null = FieldNotNullIndexer("has_x", "x")
    not_null.build_index([{"x": None}, {"x": 1.5}], 3)
    indexes = {"by_name": single, "by_id": numbers, "has_x": not_null}
    for data in (dumps_unischema(indexes), pickle.dumps(indexes, protocol=2), pickle.dumps(indexes, protocol=0)):
        loaded = safe_loads(data, SOURCE)
        assert loaded["by_name"].get_row_group_indexes("a") == {0, 1}
        assert loaded["by_id"].get_row_group_indexes(9) == {2}
        assert loaded["has_x"].get_row_group_indexes() == {3}


_NO_PYSPARK = textwrap.dedent("""
    import sys
    sys.modules['pyspark'] = None  # import pyspark now fails, as when it is not installed
    import pickle
    import numpy as np
    from petastorm.codecs import ScalarCodec
    from petastorm.etl.safe_unpickle import dumps_unischema, safe_loads
    from petastorm.spark_types import spark_type, pyspark_available
    from petastorm.unischema import Unischema, UnischemaField
    assert not pyspark_available()
    data = dumps_unischema(Unischema('S', [
        UnischemaField('id', np.int64, (), ScalarCodec(spark_type('LongType')), False),
        UnischemaField('d', np.float64, (), ScalarCodec(spark_type('DecimalType', 12, 3)), False)]))
    loaded = safe_loads(data, 'x')
    assert type(loaded.id.codec.spark_dtype()).__module__ == 'petastorm.spark_types'
    sys.stdout.buffer.write(data)
""")


def test_schema_written_without_pyspark_names_pyspark_types_and_loads_with_pyspark():
    out = subprocess.run([sys.executable, "-c", _NO_PYSPARK], capture_output=True, check=True).stdout
    assert b"pyspark.sql.types" in out
    loaded = pickle.loads(out)  # this process has pyspark: the real classes come back
    import pyspark.sql.types as pst

    assert loaded.id.codec.spark_dtype() == pst.LongType()
    assert loaded.d.codec.spark_dtype() == pst.DecimalType(12, 3)
    assert safe_loads(out, SOURCE).d.codec.spark_dtype() == pst.DecimalType(12, 3)


# --- numpy values: plain dtypes and scalars only (issue 10, defect 1) -------------------------------------

def _binunicode(text):
    raw = text.encode("utf-8")
    return b"X" + len(raw).to_bytes(4, "little") + raw


def _dtype_call(description):
    """``numpy.dtype(description, False, True)``, as numpy pickles a dtype (protocol 2 opcodes)."""
    return b"cnumpy\ndtype\n" + _binunicode(description) + b"K\x00K\x01\x87R"


def crafted_void_schema_pickle(where):
    """Issue 10's crafted schema pickle, made only of allow-listed names.

    ``numpy.dtype('i8,i8')``, then a BUILD state that makes field ``f1`` an object field while its flags
    (0) say the dtype holds no objects, then ``numpy.core.multiarray.scalar`` over 16 bytes: a numpy.void
    whose object field is the pointer 0x4141414141414141. ``where='dtype'`` puts it in the field's dtype,
    ``where='values'`` as a sixth value of the field (refused, with the values in the message).
    """
    fields = (b"}(" + _binunicode("f0") + _dtype_call("i8") + b"K\x00\x86"
              + _binunicode("f1") + _dtype_call("O8") + b"K\x08\x86u")
    state = b"(K\x03" + _binunicode("|") + b"N" + _binunicode("f0") + _binunicode("f1") + b"\x86" + fields \
        + b"K\x10K\x01K\x00t"
    void = (b"cnumpy.core.multiarray\nscalar\n" + _dtype_call("i8,i8") + state + b"b"
            + b"C\x10" + (7).to_bytes(8, "little") + b"AAAAAAAA" + b"\x86R")
    if where == "dtype":
        values = b"h\x01" + void + b")N\x89"
    else:
        values = b"h\x01cnumpy\nint64\n)N\x89" + void
    field = b"cpetastorm.unischema\nUnischemaField\n(" + values + b"t\x81q\x02"
    return (b"\x80\x02cpetastorm.unischema\nUnischema\n)\x81}(" + _binunicode("_name") + _binunicode("S")
            + _binunicode("_fields") + b"ccollections\nOrderedDict\n)R" + _binunicode("x") + b"q\x01"
            + field + b"s" + b"h\x01h\x02u" + b"b.")


_LOAD_AND_USE = textwrap.dedent("""
    import sys
    from petastorm.errors import PetastormMetadataError
    from petastorm.etl.safe_unpickle import safe_loads
    try:
        schema = safe_loads(sys.stdin.buffer.read(), "evil/_common_metadata")
    except PetastormMetadataError as e:
        print("refused:", e)
        sys.exit(0)
    print("accepted", flush=True)
    print(repr(schema.fields["x"].numpy_dtype))  # what printing the schema or reading the field does
""")


@pytest.mark.parametrize("where", ["dtype", "values"])
def test_crafted_void_with_an_object_pointer_is_refused_without_crashing(where):
    done = subprocess.run([sys.executable, "-c", _LOAD_AND_USE], input=crafted_void_schema_pickle(where),
                          capture_output=True, timeout=120)
    assert done.returncode == 0, f"the load crashed or failed (rc {done.returncode}): {done.stderr[-2000:]!r}"
    out = done.stdout.decode()
    assert out.startswith("refused:") and "evil/_common_metadata" in out and "numpy.dtype" in out, out


@pytest.mark.parametrize("description", ["i8,i8", "O", "O8", "V8", "(2,)i8", "i8,O", "[('a', 'O')]",
                                         "{'names': ['a'], 'formats': ['O']}", "x" * 100])
def test_dtype_descriptions_other_than_plain_types_are_refused(description):
    with pytest.raises(PetastormMetadataError, match="numpy.dtype"):
        safe_loads(b"\x80\x02" + _dtype_call(description) + b".", SOURCE)


_I8 = (b"K\x03" + _binunicode("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00")


@pytest.mark.parametrize("state,word", [
    # names and fields declaring an object field on an i8 (flags 0: "no objects")
    (b"(K\x03" + _binunicode("|") + b"N" + _binunicode("a") + b"\x85}" + _binunicode("a") + _dtype_call("i8")
     + b"K\x00\x86sK\x08K\x01K\x00t", "fields"),
    (b"(K\x03" + _binunicode("|") + _dtype_call("i8") + b"K\x02\x85\x86NNK\x10K\x01K\x00t", "sub-array"),
    (b"(K\x03" + _binunicode("?") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t", "byte order"),
    (b"(K\x03" + _binunicode("<") + b"NNNK\x04J\xff\xff\xff\xffK\x00t", "item size"),
    (b"(K\x09" + _binunicode("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t", "version"),
    (b"(K\x04" + _binunicode("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00}t", "metadata"),
    (b"}", "state"),
])
def test_dtype_states_with_fields_objects_or_wrong_shapes_are_refused(state, word):
    with pytest.raises(PetastormMetadataError, match=f"dtype state.*{word}"):
        safe_loads(b"\x80\x02" + _dtype_call("i8") + state + b"b.", SOURCE)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("dtype", ["i8", ">i8", "<u2", "b1", "f2", "c16", "U11", ">U3", "S5", "M8[ns]",
                                   "m8[25s]", "M8", "<M8[D]", "S0", "U0"])
def test_plain_dtypes_and_their_scalars_round_trip_in_every_protocol(protocol, dtype):
    dtype = np.dtype(dtype)
    values = [np.zeros(1, dtype)[0], np.ones(1, dtype)[0]] if dtype.itemsize else [dtype.type()]
    loaded = safe_loads(pickle.dumps({"dtype": dtype, "values": values}, protocol=protocol), SOURCE)
    assert loaded["dtype"] == dtype and loaded["dtype"].str == dtype.str
    assert [(type(v), v.dtype, v) for v in loaded["values"]] == [(type(v), v.dtype, v) for v in values]


def test_build_on_a_memoized_dtype_updates_every_later_reference():
    big_endian = np.dtype(">i8")
    data = pickle.dumps([big_endian, big_endian], protocol=2)  # the second is a reference to the first
    first, again = safe_loads(data, SOURCE)
    assert first.str == again.str == ">i8"


@pytest.mark.parametrize("args,word", [
    (_dtype_call("i8") + b"C\x04abcd", "8 bytes"),         # too few bytes for the dtype
    (_dtype_call("i8") + b"K\x01", "8 bytes"),             # not bytes
    (b"cnumpy\nint64\n" + b"C\x08" + b"\x00" * 8, "plain dtype"),  # a type, not a dtype
])
def test_numpy_scalars_need_a_plain_dtype_and_its_exact_size(args, word):
    data = b"\x80\x02cnumpy.core.multiarray\nscalar\n" + args + b"\x86R."
    with pytest.raises(PetastormMetadataError, match=f"numpy scalar.*{word}"):
        safe_loads(data, SOURCE)


def test_refusal_messages_describe_values_without_their_repr():
    class _NoRepr:  # stands for an object whose repr crashes
        def __repr__(self):
            raise AssertionError("repr called")

    values = ("x", np.int64, (), None, False, 1, 2)  # 7 values: refused, the message says how many
    data = pickle.dumps(UnischemaField.__new__(UnischemaField, *values[:5]), protocol=2)
    data = data.replace(b"\x89t", b"\x89K\x01K\x02t")
    with pytest.raises(PetastormMetadataError, match="2 to 5 field values, got a tuple of 7 items"):
        safe_loads(data, SOURCE)
    from petastorm.etl.untrusted_values import describe_untrusted

    assert describe_untrusted(_NoRepr()) == f"a {__name__} object"  # the module; a <locals> name is not shown
