# Two commands set everything up on a fresh machine with only python3 and pip:
#   make demo   -> virtualenv, install, generate demo data, materialize every asset, print a summary
#   make test   -> virtualenv, install, run the test suite
#   make test-fast -> the unit lane (tests/unit without the slow marker: the domain without Dagster, under a minute)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export CRM_PLATFORM_HOME ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CRM_PLATFORM_HOME)/dagster_home
CUSTOMERS ?= 10000
SEED ?= 42

.PHONY: venv demo test test-fast ui clean

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/crm-platform demo --customers $(CUSTOMERS) --seed $(SEED)

# two workers (the machines have two cores); the runs like production are made once for both
test: venv
	$(BIN)/dg check defs
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

test-fast: venv
	$(BIN)/python -m pytest -q -n 2 -m "not slow" tests/unit

ui: venv
	$(BIN)/python -c "from pathlib import Path; from crm_platform.cli import prepare_dagster_home; prepare_dagster_home(Path('$(DAGSTER_HOME)'))"
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf "$(CRM_PLATFORM_HOME)"/landing "$(CRM_PLATFORM_HOME)"/quarantine "$(CRM_PLATFORM_HOME)"/truth "$(CRM_PLATFORM_HOME)"/warehouse.duckdb*
