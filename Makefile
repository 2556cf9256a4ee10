# Quick start on a fresh clone:  make demo  /  make test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-test
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: venv demo test test-fast test-spark4 bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(PIP) install -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/hello_world/demo.py

test: $(STAMP)
	$(PY) -m pytest -ra -p no:cacheprovider tests

test-fast: $(STAMP)
	$(PY) -m pytest -ra -m "not slow" tests

test-spark4: $(STAMP)
	$(PIP) install -c constraints.txt 'pyspark==4.3.0' --constraint /dev/null || true
	$(PY) -m pytest -ra -m spark tests

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(PY) -m ruff check petastorm tests benchmarks examples

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
