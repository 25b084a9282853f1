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

.PHONY: install demo test test-fast lint format env clean

install: $(STAMP)

$(STAMP): tools/install.sh tools/build_mmcv.sh setup.py requirements/runtime.txt requirements/tests.txt requirements/lint.txt \
          requirements/constraints.txt
	bash tools/install.sh
	touch $@

demo: install
	$(PY) tools/demo/detection_demo.py

# Lint, then every test, the learning and multi-process ones included: what CI runs.
test: install lint
	$(PY) -m pytest $(PYTEST_ARGS) tests

# Without the long learning / multi-process tests, for quick local iterations.
test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS) tests

# OpenMMLab's three checkers with the settings in setup.cfg. It changes nothing; all three run, then
# it fails if one found something. The fix: `make format`, then what flake8 still names, by hand.
LINT_PATHS := mmeffnet tools tests configs
YAPF_EXCLUDE := --exclude 'mmeffnet/.mim/*'
lint: install
	@rc=0; \
	echo '[lint] flake8'; $(VENV)/bin/flake8 $(LINT_PATHS) || rc=1; \
	echo '[lint] isort'; $(VENV)/bin/isort --check-only --diff $(LINT_PATHS) || rc=1; \
	echo '[lint] yapf'; $(VENV)/bin/yapf --diff --recursive --parallel $(YAPF_EXCLUDE) $(LINT_PATHS) || rc=1; \
	if [ $$rc != 0 ]; then echo '[lint] FAILED: see above (make format fixes import order and layout)'; fi; \
	exit $$rc

# Rewrites the tree in place: import order (isort), then layout (yapf).
format: install
	$(VENV)/bin/isort $(LINT_PATHS)
	$(VENV)/bin/yapf --in-place --recursive --parallel $(YAPF_EXCLUDE) $(LINT_PATHS)

env: install
	$(PY) -m mmeffnet.env

clean:
	rm -rf $(VENV) work_dirs outputs .pytest_cache
