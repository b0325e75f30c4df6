# Every target sets up what it needs itself: `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LINKS  := $(VENV)/.linked
# The supported Prefect range is pyproject's (>=3.8.8,<3.10): the suite runs on its newest release, a smoke
# (tests marked `smoke`) on its oldest, installed from the built wheel into a venv of its own.
NEWEST_PREFECT := 3.9.1
OLDEST_PREFECT := 3.8.8
OLDEST := .venv-oldest
# A strict editable install links each module of the package one by one (so that mypy sees the mapped
# flows/ and blocks/): adding or removing a module, which changes these folders, links them again.
PACKAGE_DIRS := src/prefect_stablestudio src/prefect_stablestudio/client src/prefect_stablestudio/simulator flows blocks
# The conformance suite's stand-in on @agentcash/router (tests/conformance): node deps from its lock file.
STANDIN := tests/conformance/router-standin

.PHONY: standin setup test lint typecheck pytest smoke-oldest demo simulator bench bench-quick bench-scaleout soak screenshots deploy worker serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]" "prefect==$(NEWEST_PREFECT)" --config-settings editable_mode=strict
	touch $(STAMP) $(LINKS)

$(LINKS): $(STAMP) $(PACKAGE_DIRS)
	$(BIN)/python -m pip install -q --no-deps -e . --config-settings editable_mode=strict
	touch $(LINKS)

setup: $(LINKS)

lint: $(LINKS)
	$(BIN)/ruff check .

## mypy --strict over every module of the installed package (it fails when it checked fewer files than the
## package has), then over bench/, deployments/ and scripts/.
typecheck: $(LINKS)
	$(BIN)/python scripts/typecheck.py

## npm ci (never npm install): the exact versions of the lock file; .npmrc there sets legacy-peer-deps.
$(STANDIN)/node_modules/.package-lock.json: $(STANDIN)/package-lock.json $(STANDIN)/package.json
	cd $(STANDIN) && npm ci --no-audit --no-fund

standin: $(STANDIN)/node_modules/.package-lock.json

pytest: $(LINKS) standin
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(OLDEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --upgrade pip
	$(OLDEST)/bin/python -m pip install -q ".[dev]" "prefect==$(OLDEST_PREFECT)"
	touch $@

## The oldest supported Prefect: the package as a wheel (reinstalled from this tree), the tests marked smoke.
smoke-oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/python -m pip install -q --no-deps --force-reinstall .
	$(OLDEST)/bin/python -m pytest -m smoke -p no:cacheprovider $(PYTEST_ARGS)

## The test command (README, CI): lint, strict typing, the whole suite (newest Prefect), the smoke (oldest).
test: lint typecheck pytest smoke-oldest

## The main job: the demo on embedded defaults (local Prefect + the simulator).
demo: $(LINKS)
	$(BIN)/prefect-stablestudio demo

simulator: $(LINKS)
	$(BIN)/prefect-stablestudio simulator

bench: $(LINKS)
	$(BIN)/python -m bench

bench-quick: $(LINKS)
	$(BIN)/python -m bench --quick

## One sharded job of 1000 images over 1, 2 and 4 Prefect workers (SCALEOUT_ARGS="--quick" for a minute).
bench-scaleout: $(LINKS)
	$(BIN)/python -m bench.scaleout $(SCALEOUT_ARGS)

## The fault soak (outside CI): 100 edits, 20 % faults on every route; SOAK_ARGS="--count 300 --latency 1".
soak: $(LINKS)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(OLDEST) build .mypy_cache .ruff_cache .pytest_cache $(STANDIN)/node_modules

## The README's pictures: headless Chromium over a local Prefect UI (needs Debian's chromium; the script
## runs `apt-get install -y chromium` when /usr/bin/chromium is missing). Not part of CI.
screenshots: $(LINKS)
	$(BIN)/python scripts/screenshots.py

## Register deployments/prefect.yaml on the Prefect server of PREFECT_API_URL (see the comments in that file),
## then the spend automation (deployments/automations.py): a wallet's day cap past 80 % pauses scheduled-edits
## and notifies through the notification block NOTIFY_BLOCK (block-type-slug/name; empty: pause only).
NOTIFY_BLOCK ?= custom-webhook/stablestudio-spend-alerts
deploy: $(LINKS)
	$(BIN)/prefect work-pool create stablestudio --type process --overwrite
	$(BIN)/prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml
	$(BIN)/python deployments/automations.py --notify "$(NOTIFY_BLOCK)"

worker: $(LINKS)
	$(BIN)/prefect worker start --pool stablestudio

## Serve the same deployments from one process instead of a work pool + worker.
serve: $(LINKS)
	$(BIN)/python deployments/serve.py
