# The two commands of the README:
#   make demo   set up, then run the built-in demo (synthetic phantoms -> train -> scan -> reports)
#   make test   set up, then run the whole test suite
# Setup (scripts/setup.sh) builds a virtual environment in the checkout ($(VENV)) from $(PYTHON) and
# installs xray-audit there at the versions of constraints.txt; $(PYTHON) itself is never modified.
PYTHON ?= python3
VENV ?= .venv
export PYTHON VENV
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast bench mutation

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m auditor demo --out demo-out

# ruff lints and checks the format first (seconds), then mypy type-checks auditor/ ([tool.mypy] in
# pyproject.toml; about a minute cold, seconds with its .mypy_cache); tests/test_lint.py and
# tests/test_typecheck.py run the same checks inside the suite
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest -q -p no:cacheprovider --timeout=900 tests

test-fast: setup
	$(PY) -m pytest -q -m "not heavy" tests

bench: setup
	$(PY) bench/attacks.py --quick

# mutation testing of the verdict modules (slow; not part of `make test`): see scripts/mutation.sh
mutation: setup
	$(PY) -m pip install -q -e ".[mutation]"
	PYTHON=$(PY) bash scripts/mutation.sh
