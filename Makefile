# cat_nb: one-command set-up, tests and reproduction (see README.md).
#   make reproduce            set up, then run the report suite (PRESET=quick|standard|paper, BACKBONE=all|oasis|piti)
#   make test                 set up, then the CI gate: export/clean in sync, nbdev_test, pytest
#   make test-slow            the gate plus `#| slow` notebook cells and pytest's slow tests
#   make lab                  JupyterLab on nbs/ and reports/ with the project's environment
#   make test-cluster         the SLURM executor against a real one-node SLURM started here (installs slurm-wlm + munge if absent)
SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PRESET ?= quick
BACKBONE ?= all
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cat_nb-installed
NBTEST_FLAGS ?=
CUDA   = $(shell $(BIN)/python -c "import torch; print('cuda' if torch.cuda.is_available() else '')" 2>/dev/null)

.PHONY: setup provision test test-slow test-cluster gate reproduce lab

# Create .venv when absent and install the package editable with its dev dependencies.
$(STAMP): settings.ini setup.py pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "== installing cat_nb and its dependencies into $(VENV) (first time: a few minutes)"
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	@touch $@

# What the offline machine needs beyond pip: git hooks for clean notebooks and
# the pretrained weights in the files the standard libraries load (cat-nb weights). Idempotent.
provision: $(STAMP)
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  $(BIN)/nbdev_install_hooks >/dev/null 2>&1 || true; \
	  m=$$(git rev-parse --git-path hooks)/post-merge; \
	  [ -f $$m ] && sed -i 's#^nbdev_trust#$(abspath $(BIN))/nbdev_trust#' $$m; \
	  h=$$(git rev-parse --git-path hooks)/pre-commit; \
	  [ -e $$h ] || { printf '#!/usr/bin/env bash\n# installed by make setup: refuse commits whose cat_nb/ or notebooks are out of sync\nexec bash .ci/check_sync.sh $(abspath $(BIN))\n' > $$h; chmod +x $$h; }; \
	fi
	$(BIN)/cat-nb weights --provision

setup: $(STAMP) provision

# The CI gate: the library is what the notebooks export, notebooks are clean, notebook tests and pytest pass.
# Two notebooks run at once, one torch thread each: oversubscribed OpenMP threads run several times slower.
# The tests' scratch folders go to one TMPDIR that is removed afterwards, passed or failed.
gate:
	@bash .ci/check_sync.sh $(BIN)
	@tmp=$$(mktemp -d -t cat_nb-test.XXXXXX) && trap 'rm -rf "$$tmp"' EXIT && export TMPDIR=$$tmp && \
	echo "== nbdev_test (notebooks in nbs/) $(NBTEST_FLAGS)" && \
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing $(if $(NBTEST_FLAGS),--flags "$(NBTEST_FLAGS)",) && \
	echo "== pytest tests/" && \
	$(BIN)/python -m pytest tests/ -q $(PYTEST_ARGS)

test: setup
	@$(MAKE) --no-print-directory gate

test-slow: setup
	@$(MAKE) --no-print-directory gate NBTEST_FLAGS="slow $(CUDA)" PYTEST_ARGS="-m ''"

# `cat-nb reproduce --executor slurm` against a real SLURM: the slow tests of tests/test_executors.py install Debian's slurm-wlm and
# munge when absent (root), start munged + slurmctld + slurmd on localhost from a temporary slurm.conf, and stop them by PID.
test-cluster: setup
	@tmp=$$(mktemp -d -t cat_nb-cluster.XXXXXX) && trap 'rm -rf "$$tmp"' EXIT && export TMPDIR=$$tmp && \
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/test_executors.py -q -s -m slow $(PYTEST_ARGS)

reproduce: setup
	$(BIN)/cat-nb reproduce --preset $(PRESET) --backbone $(BACKBONE)

lab: setup
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root,)
