"""``import petastorm`` stays light: no heavy framework is imported, and it is quick."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "tensorflow", "pyspark", "cv2", "jax")
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


_IMPORT_AND_REPORT = """
    import json, sys, time
    t0 = time.perf_counter()
    {imports}
    elapsed = time.perf_counter() - t0
    heavy = {heavy!r}
    print(json.dumps({{"elapsed": elapsed,
                       "loaded": sorted(m for m in sys.modules if m.split('.')[0] in heavy)}}))
"""


def _import_report(imports: str) -> dict:
    return _run(_IMPORT_AND_REPORT.format(imports=imports, heavy=HEAVY))


def test_import_petastorm_loads_no_heavy_framework():
    report = _import_report("import petastorm")
    assert report["loaded"] == []


def test_schema_model_and_codecs_load_no_heavy_framework():
    # Defining a schema and encoding/decoding arrays must not pull in Spark, OpenCV or a DL framework.
    report = _import_report(
        "import numpy as np\n"
        "    from petastorm.unischema import Unischema, UnischemaField\n"
        "    from petastorm.codecs import NdarrayCodec, CompressedNdarrayCodec, CompressedImageCodec\n"
        "    f = UnischemaField('m', np.float32, (2,), NdarrayCodec())\n"
        "    s = Unischema('S', [f, UnischemaField('z', np.uint8, (4, 4, 3), CompressedImageCodec('png'))])\n"
        "    assert (f.codec.decode(f, f.codec.encode(f, np.ones(2, np.float32))) == 1).all()\n"
        "    s.make_namedtuple(m=1, z=2)")
    assert report["loaded"] == []


def test_import_petastorm_takes_under_a_second():
    # Best of three, measured inside the child so interpreter start-up is not counted.
    times = [_import_report("import petastorm")["elapsed"] for _ in range(3)]
    assert min(times) < 1.0, f"import petastorm took {min(times):.3f} s (best of 3)"


def test_codecs_work_without_pyspark():
    report = _run("""
        import json, sys
        sys.modules['pyspark'] = None     # 'import pyspark' now raises ImportError
        import numpy as np
        from petastorm.codecs import NdarrayCodec
        from petastorm.unischema import UnischemaField
        t = NdarrayCodec().spark_dtype()
        f = UnischemaField('m', np.int8, (None,), NdarrayCodec())
        ok = bool((f.codec.decode(f, f.codec.encode(f, np.arange(3, dtype=np.int8))) == np.arange(3)).all())
        print(json.dumps({"type": type(t).__name__, "name": t.typeName(), "ok": ok}))
    """)
    assert report == {"type": "BinaryType", "name": "binary", "ok": True}


@pytest.mark.parametrize("attr", ["make_reader", "make_batch_reader", "TransformSpec", "write_dataset"])
def test_public_names_are_listed_even_before_they_load(attr):
    import petastorm

    assert attr in dir(petastorm)
    assert attr in petastorm.__all__


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_reading_a_dataset_with_pyspark_types_in_its_metadata_does_not_import_pyspark(pool, testdata_dir):
    # The legacy metadata pickles pyspark.sql.types classes; loading it gives stand-ins (pyspark is
    # installed here), so neither the reader nor its worker processes pay pyspark's import. The codec
    # still hands out a real pyspark type on request.
    url = "file://" + os.path.join(testdata_dir, "original-0.12.1", "all_codecs_0.12.1")
    report = _run(f"""
        import json, sys
        from petastorm import make_reader
        with make_reader({url!r}, reader_pool_type={pool!r}, workers_count=1) as reader:
            row = next(reader)
            scalar = [f for f in reader.schema.fields.values() if type(f.codec).__name__ == 'ScalarCodec'][0]
            stored = type(scalar.codec._spark_type).__module__
            loaded = 'pyspark' in sys.modules
            public = type(scalar.codec.spark_dtype()).__module__
        print(json.dumps({{"pyspark_loaded_while_reading": loaded, "stored": stored, "public": public}}))
    """)
    assert report == {"pyspark_loaded_while_reading": False, "stored": "petastorm.spark_types",
                      "public": "pyspark.sql.types"}
