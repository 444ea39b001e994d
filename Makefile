# The two commands of the README: `make run` (the main job) and `make test` (the test suite).
# Each creates the virtual environment and installs what it needs on first use.
VENV ?= .venv
PYTHON ?= python3
# The CUDA kernels run under numba's simulator unless CUDASIM=0 (on a machine with a GPU).
CUDASIM ?= 1
# Test processes (pytest-xdist, one test file per process at a time): most of the suite's time is
# the first compilation of each kernel, which runs on one core. JOBS=0 runs in this process.
JOBS ?= auto

BIN = $(VENV)/bin
SOURCES = pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h) fastopt/backends/c/build.py \
          fastopt/_core/config.py

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install --quiet -e '.[cuda,oracle]'
	touch $@

$(VENV)/.test-installed: $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install --quiet -e '.[test,oracle]'
	touch $@

run: $(VENV)/.run-installed
	$(BIN)/fastopt $(ARGS)

test: $(VENV)/.test-installed
	NUMBA_ENABLE_CUDASIM=$(CUDASIM) $(BIN)/python -m pytest -n $(JOBS) --dist loadfile $(ARGS)

# Warm-up calls before each benchmark: a first call can start a thread pool, and pytest-benchmark
# would size its rounds on it (5 rounds of an 18 us median for a 9 us step, without them).
bench: $(VENV)/.test-installed
	$(BIN)/python -m pytest bench --benchmark-enable --benchmark-only --benchmark-warmup=on \
		--benchmark-warmup-iterations=100 $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info fastopt/backends/c/_fastopt_c*.so fastopt/backends/c/_fastopt_c.c \
		fastopt/backends/c/BUILD_FAILED.txt
