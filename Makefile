# Quick start on a fresh clone:  make demo  /  make test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-test
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: venv demo test test-fast test-spark4 test-compat compat-diff bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) install -c constraints.txt -e '.[test,torch,tf,jax]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/hello_world/demo.py

test: $(STAMP)
	$(PY) -m pytest -ra -p no:cacheprovider tests

test-fast: $(STAMP)
	$(PY) -m pytest -ra -m "not slow" tests

# The Spark tests against pyspark 4 in a venv of their own (the pin set with pyspark 4.3.0 swapped in).
SPARK4_VENV := .venv-spark4
test-spark4:
	$(PYTHON) -m venv $(SPARK4_VENV)
	$(SPARK4_VENV)/bin/python -m pip install -q --upgrade pip
	sed 's/^pyspark==.*/pyspark==4.3.0/' constraints.txt > $(SPARK4_VENV)/constraints.txt
	$(SPARK4_VENV)/bin/python -m pip install -c $(SPARK4_VENV)/constraints.txt -e '.[test,torch,tf,jax]'
	PYSPARK_PYTHON=$(abspath $(SPARK4_VENV))/bin/python PYSPARK_DRIVER_PYTHON=$(abspath $(SPARK4_VENV))/bin/python \
		$(SPARK4_VENV)/bin/python -m pytest -ra -p no:cacheprovider -m spark tests

# Each library reads the other's datasets: the original 0.12.1 in its own venv, as a black box.
test-compat: $(STAMP)
	bash tools_compat/make_original_venv.sh
	$(PY) tools_compat/cross_read.py

# The same public-API calls against the original 0.12.1 and ours: prints every behaviour that still differs.
compat-diff: $(STAMP)
	bash tools_compat/make_original_venv.sh
	$(PY) tools_compat/behaviour_diff.py

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(PY) -m ruff check petastorm tests benchmarks examples

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
