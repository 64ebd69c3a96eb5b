# Two commands do all set-up on a fresh machine:
#   make demo   - create the virtual environment, install matlake, run `matlake demo` (embedded DuckDB)
#   make test   - the same environment, then the whole test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.matlake-installed

.PHONY: demo test docs bench-env clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/matlake demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=25

# regenerate docs/schema.md from the SQLModel tables (a test fails while it is out of date)
docs: $(STAMP)
	$(BIN)/python -m matlake.docs

# benchmarks that compare with peers' packages (aviary-models) run in their own environment: never matlake's deps
bench-env:
	test -x bench-venv/bin/python || $(PYTHON) -m venv bench-venv
	bench-venv/bin/pip install -q torch==2.13.0
	bench-venv/bin/pip install -q -e ".[test]" aviary-models

clean:
	rm -rf $(VENV) matlake-data
