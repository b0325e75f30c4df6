# Every target sets up what it needs itself: `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test lint typecheck pytest demo simulator bench bench-quick bench-scaleout soak screenshots deploy worker serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The test command (README, CI): lint, strict typing, then the whole suite.
test: lint typecheck pytest

## The main job: the demo on embedded defaults (local Prefect + the simulator).
demo: $(STAMP)
	$(BIN)/prefect-stablestudio demo

simulator: $(STAMP)
	$(BIN)/prefect-stablestudio simulator

bench: $(STAMP)
	$(BIN)/python -m bench

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

## One sharded job of 1000 images over 1, 2 and 4 Prefect workers (SCALEOUT_ARGS="--quick" for a minute).
bench-scaleout: $(STAMP)
	$(BIN)/python -m bench.scaleout $(SCALEOUT_ARGS)

## The fault soak (outside CI): 100 edits, 20 % faults on every route; SOAK_ARGS="--count 300 --latency 1".
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

## The README's pictures: headless Chromium over a local Prefect UI (needs Debian's chromium; the script
## runs `apt-get install -y chromium` when /usr/bin/chromium is missing). Not part of CI.
screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py

## Register deployments/prefect.yaml on the Prefect server of PREFECT_API_URL (see the comments in that file).
deploy: $(STAMP)
	$(BIN)/prefect work-pool create stablestudio --type process --overwrite
	$(BIN)/prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml

worker: $(STAMP)
	$(BIN)/prefect worker start --pool stablestudio

## Serve the same deployments from one process instead of a work pool + worker.
serve: $(STAMP)
	$(BIN)/python deployments/serve.py
