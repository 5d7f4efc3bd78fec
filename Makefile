# make demo  - set up a virtual environment and run the main job on a built-in sample
# make test  - set up the environment with the test extras and run the whole test suite
# make bench - time the filters against OpenCV, SciPy, scikit-image and PyTorch

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
PYTEST_WORKERS ?= 2
DEMO_OUT ?= demo.png

.PHONY: demo bytecode lint test warm-cache test-core test-cudasim test-gui test-slow bench bench-quick bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.demo-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[batch]" matplotlib
	@touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[test,gui-test]"
	@touch $@

# The package's bytecode, as a regular (not editable) install writes it: where Python is told
# not to write it (PYTHONDONTWRITEBYTECODE), every process would compile the sources again
# (30-40 ms of an import and of a first call).
bytecode: | $(BIN)/python
	@$(BIN)/python -m compileall -q src/napari_sepconv

demo: $(VENV)/.demo-deps bytecode
	$(BIN)/python examples/demo.py --out $(DEMO_OUT)
	$(BIN)/python examples/batch_demo.py

# Style: ruff's checks and its formatting (as `ruff format` would write every file).
lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.test-deps
	$(MAKE) --no-print-directory test-core test-cudasim test-gui

# Every CPU kernel family compiled into the on-disk cache first, in parallel processes, so the
# test workers load kernels instead of each compiling them (minutes on the first run, seconds
# once the cache of this version is warm).
warm-cache: $(VENV)/.test-deps bytecode
	$(BIN)/python -m napari_sepconv.warmup --jobs $(PYTEST_WORKERS)

# Library, dask and batch tests (CPU), the PTX compile check, the doctests.
test-core: $(VENV)/.test-deps warm-cache
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) tests --ignore-glob='tests/test_napari*.py' \
		--doctest-modules src/napari_sepconv --ignore=src/napari_sepconv/_widgets.py \
		--ignore=src/napari_sepconv/_widget_smooth.py

# CUDA kernels on Numba's simulator (no GPU needed); a separate process, since the
# simulator must be switched on before numba.cuda is first imported.
test-cudasim: $(VENV)/.test-deps warm-cache
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS) tests/test_cuda.py tests/test_smoothing.py -m cudasim

# napari widgets under a virtual X server (pytest-xvfb starts Xvfb). Without one (and no
# display) the tests skip, saying so; CI sets SEPCONV_REQUIRE_GUI=1, so that it fails instead.
test-gui: $(VENV)/.test-deps warm-cache
	@$(BIN)/python -m pytest tests/test_napari.py tests/test_napari_interactive.py; rc=$$?; \
	if [ $$rc -eq 5 ] && [ -z "$$SEPCONV_REQUIRE_GUI" ]; then \
		echo "GUI tests skipped: no X display (install Xvfb: .ci/install-gui.sh, see the README)"; \
	else exit $$rc; fi

BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.bench-deps: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e ".[bench]"
	@touch $@

bench: $(BENCH_VENV)/.bench-deps
	@$(BENCH_VENV)/bin/python -m compileall -q src/napari_sepconv
	$(BENCH_VENV)/bin/python benchmarks/bench.py

bench-quick: $(BENCH_VENV)/.bench-deps
	@$(BENCH_VENV)/bin/python -m compileall -q src/napari_sepconv
	$(BENCH_VENV)/bin/python benchmarks/bench.py --quick

# On a machine with an NVIDIA GPU: our CUDA kernels against cupyx.scipy.ndimage (and cuCIM).
bench-gpu: | $(BIN)/python
	$(PIP) install -q -e ".[bench-gpu]"
	$(BIN)/python benchmarks/bench_gpu.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) build dist src/*.egg-info $(DEMO_OUT)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The 768 MB stack memory test of the batch command (minutes; not part of make test).
test-slow: $(VENV)/.test-deps
	$(BIN)/python -m pytest -m slow tests/test_cli.py
