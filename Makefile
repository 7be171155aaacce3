# tap-ashby: `make test` and `make demo` set themselves up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false
export MELTANO_HUB_URL := http://127.0.0.1:9

.PHONY: check test test-fast test-quick demo bench lint docs install clean

$(STAMP): pyproject.toml emulator/pyproject.toml meltano.yml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]' -e ./emulator
	$(BIN)/meltano install --plugin-type extractors
	$(BIN)/meltano install --plugin-type loaders
	$(BIN)/meltano install --plugin-type utilities
	mkdir -p output
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP) check  ## quality gates, then the whole suite (end-to-end and reliability tests included)
	$(BIN)/python -m pytest -q

check: $(STAMP)  ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check tap_ashby emulator tests scripts bench
	$(BIN)/ruff format --check tap_ashby emulator tests scripts bench
	$(BIN)/mypy

test-fast: $(STAMP)  ## unit tests, docs and SDK-contract checks: no server, under a minute
	$(BIN)/python -m pytest -q tests/test_units.py tests/test_core.py tests/test_ledger_units.py tests/test_docs.py tests/test_sdk_contract.py

test-quick: $(STAMP)  ## everything but the slow end-to-end and reliability tests
	$(BIN)/python -m pytest -q -m "not slow"

demo: $(STAMP)  ## emulator -> meltano run (full) -> changes -> meltano run (incremental) -> dbt marts
	$(BIN)/python scripts/demo.py

bench: $(STAMP)  ## benchmarks; report in bench/results/
	$(BIN)/python bench/run.py

docs: $(STAMP)  ## regenerate the README tables from the code
	$(BIN)/python scripts/generate_docs.py --write

lint: $(STAMP)  ## fix what ruff can fix, and format
	$(BIN)/ruff check --fix tap_ashby emulator tests scripts bench
	$(BIN)/ruff format tap_ashby emulator tests scripts bench

clean:
	rm -rf $(VENV) .meltano output
