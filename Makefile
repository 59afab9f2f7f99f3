# The two commands a fresh clone needs: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Demo data and the lake live under .mlops/ (runtime state, never committed).
DATA ?= .mlops
SOURCE ?= $(DATA)/landing
# A held-out batch `make run` scores with the champion: unlabeled, one feature drifted mildly.
SCORING ?= $(DATA)/scoring
LAKE ?= $(DATA)/lake
SPEC ?= datasets/demo.yaml
ROWS ?= 200000
FILES ?= 8
SEED ?= 7
# Where each stage's Dask cluster runs: local, kubernetes, tcp://host:port or a block name.
CLUSTER ?= local
# Keep this checkout's Prefect state (ephemeral API database) inside the checkout.
export PREFECT_HOME ?= $(CURDIR)/.prefect

# `make test`: pytest-xdist workers, each given whole test modules (a module's fixtures are
# built once; --dist loadgroup does not group with pytest 9 and xdist 3.8 here), longest
# first in the order tests/conftest.py sets (xdist's own reorder would put the modules of
# many quick tests first and leave one worker alone with the long ones at the end). Two
# workers on two cores: three measured slower (990 s against 887 s).
TEST_WORKERS ?= 2

# `make bench`: data sizes and repetitions (medians are reported).
BENCH_SIZES ?= 1M,4M
BENCH_REPEATS ?= 1

.PHONY: run test lint typecheck demo-data bench clean help

help:
	@echo "make run   - generate demo data (once), run the whole pipeline, score a new batch"
	@echo "make test  - run the test suite"
	@echo "make lint  - ruff, mypy and the import contracts (import-linter)"
	@echo "make bench - the pipeline vs a plain script at $(BENCH_SIZES) rows (long: see README)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the package metadata changes.
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@ $(VENV)/.run-installed

$(SOURCE):
	$(BIN)/mlops demo-data --out $(SOURCE) --rows $(ROWS) --files $(FILES) --seed $(SEED)

$(SCORING):
	$(BIN)/mlops demo-data --out $(SCORING) --rows 20000 --files 2 --seed 8 \
		--drift monthly_charges --drift-scale 1.2 --unlabeled

demo-data: $(VENV)/.run-installed $(SOURCE) $(SCORING)

# The pipeline, then the champion scoring the held-out batch (predictions and drift).
run: $(VENV)/.run-installed $(SOURCE) $(SCORING)
	$(BIN)/mlops run --spec $(SPEC) --source $(SOURCE) --lake $(LAKE) --cluster $(CLUSTER)
	$(BIN)/mlops score --spec $(SPEC) --source $(SCORING) --lake $(LAKE) --cluster $(CLUSTER)

test: $(VENV)/.dev-installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

bench: $(VENV)/.run-installed
	$(BIN)/python -m benchmarks.run --sizes $(BENCH_SIZES) --repeats $(BENCH_REPEATS) \
		--work $(DATA)/bench --out $(DATA)/bench/results.json

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(DATA) .prefect .pytest_cache .mypy_cache .ruff_cache
