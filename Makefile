# The two commands of the README:
#   make demo   set up, then run the built-in demo (synthetic phantoms -> train -> scan -> reports)
#   make test   set up, then run the whole test suite
PYTHON ?= python3
export PYTHON

.PHONY: setup demo test test-fast bench mutation

setup:
	bash scripts/setup.sh

demo: setup
	$(PYTHON) -m auditor demo --out demo-out

test: setup
	$(PYTHON) -m pytest -q -p no:cacheprovider --timeout=900 tests

test-fast: setup
	$(PYTHON) -m pytest -q -m "not heavy" tests

bench: setup
	$(PYTHON) bench/attacks.py --quick

# mutation testing of the verdict modules (slow; not part of `make test`): see scripts/mutation.sh
mutation: setup
	$(PYTHON) -m pip install -q -e ".[mutation]"
	PYTHON=$(PYTHON) bash scripts/mutation.sh
