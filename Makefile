# Every target creates .venv when it is missing; nothing needs to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test bench schema lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(BIN)/python -m pip install --quiet -e ".[test,dev]" $(foreach p,$(wildcard plugins/*/pyproject.toml),-e $(dir $(p)))
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/jingtan migrate
	$(BIN)/jingtan seed-demo --if-empty
	$(BIN)/jingtan serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Ratios against baselines measured in the same run (see bench/README.md), e.g.
#   make bench BENCH_ARGS="account --db postgresql"
# With --profile, py-spy (a sampling profiler) is installed into .venv first.
bench: $(STAMP)
	$(if $(findstring --profile,$(BENCH_ARGS)),$(BIN)/python -m pip install --quiet py-spy)
	$(BIN)/python -m bench $(BENCH_ARGS)

schema: $(STAMP)
	$(BIN)/jingtan schema export
	$(BIN)/jingtan config example

# mypy: strict on the plugin API/host, the plugins and examples/byo_cup ([tool.mypy] in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check jingtan_api plugins examples tests bench
	$(BIN)/mypy
	$(BIN)/jingtan schema check
	$(BIN)/jingtan config check

clean:
	rm -rf $(VENV) var .pytest_cache
