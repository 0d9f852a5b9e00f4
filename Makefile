# Every target creates .venv at the repo root when missing and installs the package into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,beam]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m yt8m.demo --output_dir=demo_output

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15 tests

bench: $(STAMP)
	$(PY) bench/input_pipeline.py

clean:
	rm -rf demo_output bench/output
