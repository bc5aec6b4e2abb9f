# The two commands of README.md: `make demo` and `make test`.
# Both create .venv and install what they need on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# constraints.txt pins torch to the CPU build (an unpinned torch pulls a CUDA build of GBs).
INSTALL := $(PIP) install --disable-pip-version-check -q -c constraints.txt

.PHONY: demo test test-all lint typecheck bench install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(INSTALL) -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml constraints.txt
	$(INSTALL) -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(BIN)/selfdistill demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 -q

test-all: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 -q -m "slow or not slow"

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_training.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
