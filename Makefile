# The two commands of the README: `make run` (the main job) and `make test` (the test suite).
# Each creates the virtual environment and installs what it needs on first use.
VENV ?= .venv
PYTHON ?= python3
# The CUDA kernels run under numba's simulator unless CUDASIM=0 (on a machine with a GPU).
CUDASIM ?= 1
# Test processes (pytest-xdist, one test file per process at a time): most of the suite's time is
# the first compilation of each kernel, which runs on one core. The files go out in collection
# order, longest first (tests/conftest.py), not reordered by test count. JOBS=0 runs in this process.
JOBS ?= auto

BIN = $(VENV)/bin
SOURCES = pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h) fastopt/backends/c/build.py \
          fastopt/_core/config.py

.PHONY: run test test-sanitize bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install --quiet -e '.[cuda,oracle,plot]'
	touch $@

$(VENV)/.test-installed: $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install --quiet -e '.[test,oracle]'
	touch $@

run: $(VENV)/.run-installed
	$(BIN)/fastopt $(ARGS)

test: $(VENV)/.test-installed
	NUMBA_ENABLE_CUDASIM=$(CUDASIM) $(BIN)/python -m pytest -n $(JOBS) --dist loadfile --no-loadscope-reorder $(ARGS)

# The C backend built with AddressSanitizer and UndefinedBehaviorSanitizer in a copy of the package
# (build/sanitize), and the tests of the numpy and c backends run on it. ASan's runtime has to be
# loaded first: it is preloaded into the Python that runs them.
SANITIZE_TESTS = test_c_launchers.py test_fuzz.py test_adversarial.py test_nonfinite.py \
                 test_norm_in_pass.py test_backends.py
test-sanitize: $(VENV)/.test-installed
	rm -rf build/sanitize && mkdir -p build/sanitize
	tar --exclude=__pycache__ --exclude='*.so' -cf - fastopt csrc | tar -xf - -C build/sanitize
	cd build/sanitize && FASTOPT_SANITIZE=1 ../../$(BIN)/python fastopt/backends/c/build.py \
		> build.log 2>&1 || (tail -30 build.log; false)
	cd build/sanitize && LD_PRELOAD="$$($${CC:-cc} -print-file-name=libasan.so)" \
		ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		FASTOPT_TEST_BACKENDS=numpy,c NUMBA_ENABLE_CUDASIM=$(CUDASIM) PYTHONPATH=. \
		../../$(BIN)/python -m pytest -p no:cacheprovider -q -n $(JOBS) --dist loadfile \
		--rootdir=../.. -c ../../pyproject.toml $(addprefix ../../tests/,$(SANITIZE_TESTS)) $(ARGS)

# Warm-up calls before each benchmark: a first call can start a thread pool, and pytest-benchmark
# would size its rounds on it (5 rounds of an 18 us median for a 9 us step, without them).
bench: $(VENV)/.test-installed
	$(BIN)/python -m pytest bench --benchmark-enable --benchmark-only --benchmark-warmup=on \
		--benchmark-warmup-iterations=100 $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info fastopt/backends/c/_fastopt_c*.so fastopt/backends/c/_fastopt_c.c \
		fastopt/lib fastopt/include \
		fastopt/backends/c/BUILD_FAILED.txt
