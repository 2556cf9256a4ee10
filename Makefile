# Quick start on a fresh clone:  make demo  /  make test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-test
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: venv demo test test-fast test-spark4 test-compat compat-diff bench docs gpu-check lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) install -c constraints.txt -e '.[test,torch,tf,jax,docs]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/hello_world/demo.py

# Spark Connect tests need pyspark 4 and a process of their own: make test-spark4 runs them.
test: $(STAMP)
	$(PY) -m pytest -ra -p no:cacheprovider -m "not spark_connect" tests

test-fast: $(STAMP)
	$(PY) -m pytest -ra -m "not slow and not spark_connect" tests

# The Spark tests against pyspark 4.3 in a venv of their own, layered on .venv: it holds pyspark 4.3.0 and the
# Spark Connect client packages (constraints-spark4.txt) and reads everything else from .venv's site-packages,
# after its own (a .pth line), so the rest is the very install `make test` uses. Two pytest runs: the classic
# Spark tests, then the Spark Connect ones (a Connect client switches pyspark.sql.functions to Connect for its
# whole process). pytest's exit 5 (no test selected) fails the target like any failure.
SPARK4_VENV  := .venv-spark4
SPARK4_PY    := $(SPARK4_VENV)/bin/python
SPARK4_STAMP := $(SPARK4_VENV)/.installed-spark4
SPARK4_ENV   := PYSPARK_PYTHON=$(abspath $(SPARK4_PY)) PYSPARK_DRIVER_PYTHON=$(abspath $(SPARK4_PY))

$(SPARK4_STAMP): $(STAMP) constraints.txt constraints-spark4.txt
	rm -rf $(SPARK4_VENV)
	$(PYTHON) -m venv $(SPARK4_VENV)
	grep -v '^pyspark==' constraints.txt | cat - constraints-spark4.txt > $(SPARK4_VENV)/constraints.txt
	$(SPARK4_PY) -m pip install -q --no-deps -c $(SPARK4_VENV)/constraints.txt \
		pyspark py4j grpcio grpcio-status googleapis-common-protos zstandard
	echo "import site; site.addsitedir('$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")')" \
		> "$$($(SPARK4_PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz-petastorm-base-venv.pth"
	$(SPARK4_PY) -c "import pyspark, pyspark.sql.connect.session, petastorm, torch; assert pyspark.__version__ == '4.3.0', pyspark.__version__"
	touch $(SPARK4_STAMP)

test-spark4: $(SPARK4_STAMP)
	$(SPARK4_ENV) $(SPARK4_PY) -m pytest -ra -p no:cacheprovider -m "spark and not spark_connect" tests
	$(SPARK4_ENV) $(SPARK4_PY) -m pytest -ra -p no:cacheprovider -m spark_connect tests

# Each library reads the other's datasets: the original 0.12.1 in its own venv, as a black box.
test-compat: $(STAMP)
	bash tools_compat/make_original_venv.sh
	$(PY) tools_compat/cross_read.py

# The same public-API calls against the original 0.12.1 and ours: prints every behaviour that still differs.
compat-diff: $(STAMP)
	bash tools_compat/make_original_venv.sh
	$(PY) tools_compat/behaviour_diff.py

# Peers (Hugging Face datasets) live in a venv of their own (bench-out/venv-peers), never in .venv.
bench: $(STAMP)
	bash benchmarks/peers/make_venv.sh
	$(PY) benchmarks/run_all.py

# The docs site (Sphinx + myst-parser: the 'docs' extra, installed with the others, pinned in constraints.txt;
# tests/package/test_docs_site.py builds it too) into build/docs: the user guide, the architecture and settings pages,
# the API reference from the docstrings (autodoc imports torch, tf and jax) and the chart of the last
# `make bench` (bench-out/benchmarks.svg). Warnings are errors.
docs: $(STAMP)
	rm -rf build/docs
	$(PY) -m sphinx -W --keep-going -q -b html docs build/docs
	@echo "docs site: $(abspath build/docs/index.html)"

# The device paths (torch on CUDA with pin_memory and prefetch, exact resume, JAX on a GPU) on a machine with a
# GPU: exits non-zero if a check fails (the test suite runs its --cpu smoke test).
gpu-check: $(STAMP)
	PYTHONPATH=. $(PY) checks/gpu_check.py

lint: $(STAMP)
	$(PY) -m ruff check petastorm tests benchmarks examples checks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
