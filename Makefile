# `make test` and `make reproduce` install everything they need into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: install test reproduce reproduce-long quick bench gpu-check clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first, so the project's range pulls no CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,compare]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(JOBS) tests

reproduce: $(STAMP)
	$(VENV)/bin/gammalimit reproduce

# the long modes (studies with LONG = True), outside `make reproduce`'s 20-minute budget
reproduce-long: $(STAMP)
	$(VENV)/bin/gammalimit reproduce $$($(PY) -c "from gammalimit.reproduce import long_studies; print(*long_studies())")

quick: $(STAMP)
	$(VENV)/bin/gammalimit reproduce --quick --out build/quick

bench: $(STAMP)
	$(PY) studies/bench_loss.py

# needs a CUDA device and a CUDA build of torch (`make` installs the CPU build; on a GPU machine
# install torch's CUDA build into .venv first, as pytorch.org describes)
gpu-check: $(STAMP)
	$(PY) studies/gpu_check.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
