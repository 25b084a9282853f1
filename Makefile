# Set-up and checks. `make demo` and `make test` install everything into $(VENV) first.
#   PYTHON=python3.11      interpreter for the venv (3.8-3.12)
#   VENV=.venv             where to install
#   WHEELHOUSE=DIR         folder of prebuilt mmcv wheels (default ~/.cache/mmeffnet/wheels)
#   USE_SYSTEM_TORCH=1     keep the torch (and mmcv) PYTHON already has
#   MAX_JOBS=N             parallel compile jobs when mmcv is built (default: the number of cores)
#   MMCV_BUILD_CMD=CMD     what builds the mmcv wheel (default: bash tools/build_mmcv.sh)
PYTHON ?= python3
VENV ?= .venv
WHEELHOUSE ?= $(HOME)/.cache/mmeffnet/wheels
USE_SYSTEM_TORCH ?= 0
export PYTHON VENV WHEELHOUSE USE_SYSTEM_TORCH

PY := $(VENV)/bin/python
STAMP := $(VENV)/.mmeffnet-installed
PYTEST_ARGS ?=

.PHONY: install demo test test-fast env clean

install: $(STAMP)

$(STAMP): tools/install.sh tools/build_mmcv.sh setup.py requirements/runtime.txt requirements/tests.txt requirements/constraints.txt
	bash tools/install.sh
	touch $@

demo: install
	$(PY) tools/demo/detection_demo.py

# Every test, the learning and multi-process ones included: what CI runs.
test: install
	$(PY) -m pytest $(PYTEST_ARGS) tests

# Without the long learning / multi-process tests, for quick local iterations.
test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS) tests

env: install
	$(PY) -m mmeffnet.env

clean:
	rm -rf $(VENV) work_dirs outputs .pytest_cache
