# Two commands work on a fresh machine: `make serve` (the app) and `make test` (the whole suite).
# Each creates .venv when it is missing and (re)installs when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
HOST   ?= 127.0.0.1
PORT   ?= 8765

.PHONY: install install-sam3 install-test web-assets browser serve model-server test lint format bench bench-tiling bench-dask bench-sam3 bench-sam3-gpu sample clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-engine: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[engine]"
	@touch $@

# torch and torchvision first, as a matching pair: pip then keeps them for transformers.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

$(VENV)/.installed-sam3: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet -e ".[sam3]"
	@touch $@ $(VENV)/.installed-engine

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet -e ".[test,sam3]"
	@touch $@ $(VENV)/.installed-engine $(VENV)/.installed-sam3

# The web app's MapLibre GL and basemap, from the npm registry at the versions package-lock.json
# pins, copied into the package (src/geolibre_ml/web/vendor) so the page works offline.
WEB_VENDOR := src/geolibre_ml/web/vendor/.copied

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

$(WEB_VENDOR): node_modules/.package-lock.json scripts/vendor-web.mjs
	node scripts/vendor-web.mjs
	@touch $@

## web-assets: copy MapLibre GL and the offline basemap from node_modules into the package
web-assets: $(WEB_VENDOR)

# The browser tests drive Debian's Chromium (a test tool's own browser download cannot work
# offline) through Playwright for Python.
CHROMIUM ?= /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

## browser: Debian's Chromium, for the browser tests (tests/browser)
browser: $(CHROMIUM)

## install: the app (sidecar, model server, classic backend, web app) into .venv
install: $(VENV)/.installed-engine $(WEB_VENDOR)

## install-sam3: the app plus the SAM 3 backend (torch, torchvision, transformers)
install-sam3: $(VENV)/.installed-sam3

## install-test: the app, the SAM 3 backend and the test tools (Chromium included)
install-test: $(VENV)/.installed-test $(WEB_VENDOR) $(CHROMIUM)

## serve: the sidecar and the web app at http://$(HOST):$(PORT)/; the model server starts on first use
serve: install
	$(BIN)/geolibre-ml serve --host $(HOST) --port $(PORT)

## model-server: the samgeo-api compatible model server alone, at http://127.0.0.1:8000
model-server: install
	$(BIN)/geolibre-ml model-server

## test: lint (Python and the web app's JavaScript), format check, layering contracts, then
## the whole test suite (browser tests included)
test: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	npm run --silent lint
	$(BIN)/python -m pytest

## format: apply ruff's fixes and formatting
format: install-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: the benchmarks recorded in docs/benchmarks.md
bench: install-test
	$(BIN)/python bench/bench_classic.py
	$(BIN)/python bench/bench_proxy.py

## bench-tiling: classic automatic on 8192 and 20,000 px rasters over HTTP (issue 9; minutes;
## the rasters are generated once into /work/bench-data, see bench/bench_tiling.py --data-dir)
bench-tiling: install-test
	$(BIN)/python bench/bench_tiling.py
	$(BIN)/python bench/bench_tiling.py --size 20000

## bench-dask: classic automatic at 8192 px on a LocalCluster of 1 and 2 worker processes,
## the scheduler's overhead per task and the estimate at 10/100/1000 workers (issue 11; minutes)
bench-dask: install-test
	$(BIN)/python bench/bench_dask.py

## bench-sam3: full-size SAM 3 on the CPU against segment-geospatial (minutes; builds a 3.4 GB
## random checkpoint in SAM3_BENCH_CHECKPOINT once and reuses it)
SAM3_BENCH_CHECKPOINT ?= .bench/sam3-random
bench-sam3: install-test
	$(BIN)/python bench/bench_sam3.py --checkpoint $(SAM3_BENCH_CHECKPOINT) --samgeo-dir .bench/segment-geospatial

## bench-sam3-gpu: full-size SAM 3 on a CUDA GPU, one script, JSON (under 8 minutes)
bench-sam3-gpu: install-test
	$(BIN)/python bench/bench_sam3_gpu.py

## sample: regenerate examples/sample.tif from its script
sample: install
	$(BIN)/python examples/make_sample.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache build dist node_modules \
		src/geolibre_ml/web/vendor test-artifacts
