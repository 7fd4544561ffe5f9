# Accident severity scoring: every entry point of the project (`make help` lists them).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV)/bin)
API_PORT ?= 8000
APP_PORT ?= 8501
# uv installs everything from uv.lock. The pinned uv comes from PyPI into .tools/ unless UV names one.
UV_VERSION := 0.13.8
UV ?= .tools/bin/uv
UV_DEP := $(filter .tools/bin/uv,$(UV))
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
export PATH := $(BIN):$(PATH)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help setup setup-run lock lock-check run serve repro api app score test test-fast lint containers bench dvc-remote clean

help:  ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.tools/bin/uv:
	python3 -m pip install -q --disable-pip-version-check --target .tools uv==$(UV_VERSION)

# Two installs from the same lock: everything (dev: tests, linters) for `make setup`/`test`/`lint`,
# and only what running needs (the api, app and pipeline extras) for `make run`. The dev set
# holds the runtime one, so installing it marks both; the runtime install is `--inexact`, so it
# never removes dev packages that are already there.
RUNTIME_EXTRAS := --extra api --extra app --extra pipeline

# A stamp holds the digest of the pyproject.toml and uv.lock it was synced from. Git checkouts and
# merges make both files newer without changing them: then the stamp is only rewritten, as
# `uv sync` would rebuild the editable install (seconds) to change nothing.
LOCK_DIGEST = sha256sum pyproject.toml uv.lock
IN_SYNC = [ -f $@ ] && $(LOCK_DIGEST) | cmp -s - $@

$(VENV)/.installed: pyproject.toml uv.lock | $(UV_DEP)
	@$(IN_SYNC) || (set -x; $(UV) sync --locked --extra dev --python python3)
	@$(LOCK_DIGEST) > $@ && cp $@ $(VENV)/.installed-run

$(VENV)/.installed-run: pyproject.toml uv.lock | $(UV_DEP)
	@$(IN_SYNC) || (set -x; $(UV) sync --locked --inexact $(RUNTIME_EXTRAS) --python python3)
	@$(LOCK_DIGEST) > $@

setup: $(VENV)/.installed  ## create .venv and install everything, exactly as uv.lock pins it

setup-run: $(VENV)/.installed-run  ## create .venv with only what running needs (api, app, pipeline extras)

lock: | $(UV_DEP)  ## re-resolve uv.lock after a change of pyproject.toml (upgrade one: make lock ARGS='-P NAME')
	$(UV) lock $(ARGS)

repro: setup-run  ## rebuild whatever is out of date in the DVC pipeline (trains if needed)
	dvc repro

# Serving needs the registered champion, not the batch predictions: repro up to `register`. The
# servers start beside the pipeline, not after it: the API answers /health at once and serves the
# champion as soon as `register` names it (it follows the alias every RUN_POLL_SECONDS), and the
# empty MLflow store is built meanwhile (pipeline.tracking_store: whole or not at all, so the
# polling API never sees it half-made). Both run niced: on 2 cores the stages come first, and
# the servers' start-up takes what the single-threaded stages leave. A failed repro stops both
# servers; Ctrl-C stops everything.
RUN_POLL_SECONDS ?= 1
run: setup-run  ## install what running needs, then serve the API and the dashboard (until Ctrl-C) while the pipeline trains if needed
	@stop() { trap - INT TERM EXIT; kill $$serve $$store 2>/dev/null; wait $$serve $$store 2>/dev/null; }; \
	trap 'stop; exit 130' INT; trap 'stop; exit 143' TERM; trap stop EXIT; \
	nice -n 10 $(PY) -m pipeline.tracking_store & store=$$!; \
	API_MODEL_POLL_SECONDS=$(RUN_POLL_SECONDS) nice -n 5 $(MAKE) --no-print-directory serve & serve=$$!; \
	dvc repro register || exit $$?; \
	wait $$serve

# `python -m api` is uvicorn with the limits of api/settings.py (API_LIMIT_CONCURRENCY...).
# Ctrl-C (or TERM) stops both servers once and exits 130 (143 for TERM); if one server dies by
# itself, the other is stopped and its exit status is the recipe's.
serve:  ## serve the API and the dashboard (no install, no repro) until Ctrl-C
	@stop() { trap - INT TERM EXIT; kill $$api $$app 2>/dev/null; wait $$api $$app 2>/dev/null; }; \
	trap 'stop; exit 130' INT; trap 'stop; exit 143' TERM; trap stop EXIT; \
	API_HOST=127.0.0.1 API_PORT=$(API_PORT) $(PY) -m api & api=$$!; \
	API_URL=http://127.0.0.1:$(API_PORT) $(PY) -m streamlit run app/streamlit_app.py \
	  --server.port $(APP_PORT) --server.address 127.0.0.1 --server.headless true \
	  --browser.gatherUsageStats false & app=$$!; \
	echo "API:       http://127.0.0.1:$(API_PORT)/docs"; \
	echo "Dashboard: http://127.0.0.1:$(APP_PORT)"; \
	echo "Press Ctrl-C to stop both."; \
	wait -n $$api $$app

api: setup-run  ## serve the API only (python -m api: the server limits of api/settings.py)
	API_HOST=127.0.0.1 API_PORT=$(API_PORT) $(PY) -m api

app: setup-run  ## serve the dashboard only (expects the API at API_URL)
	$(PY) -m streamlit run app/streamlit_app.py --server.port $(APP_PORT) --server.headless true

score: repro  ## score the bundled 2021 files with the champion model
	$(PY) -m pipeline.score data/bundled/baac/2021 --output data/predictions/make-score-2021.parquet

test: setup  ## the whole test suite, with coverage of pipeline/, api/ and app/ (fails under 85 %)
	$(PY) -m pytest --cov --cov-report=term --cov-report=xml

# The inner loop runs on TEST_WORKERS processes (pytest-xdist), a test file per worker at a time,
# so that module fixtures are built once; TEST_WORKERS=0 runs it in pytest's own process. Only the
# slow schemathesis tests need the schemathesis and hypothesis plugins: not loading them saves
# each process 2-3 s of imports.
TEST_WORKERS ?= 2
FAST_PLUGINS_OFF := -p no:schemathesis -p no:hypothesispytest
test-fast: setup  ## the inner loop: no slow (servers, whole pipeline) nor browser tests
	$(PY) -m pytest -q -x -m "not slow and not browser" $(FAST_PLUGINS_OFF) -n $(TEST_WORKERS) --dist loadfile

lock-check: | $(UV_DEP)  ## fail if uv.lock is out of date with pyproject.toml
	$(UV) lock --check

lint: setup lock-check  ## uv.lock up to date, ruff, formatting, mypy, hadolint (Dockerfile), actionlint (workflows)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy pipeline api app benchmarks
	$(BIN)/hadolint Dockerfile
	$(BIN)/actionlint

containers: setup  ## build every image, run the compose stack end to end, check it, tear it down
	$(PY) -m tests.containers.e2e

bench: setup  ## speed benchmarks, printed as ratios against in-run baselines
	$(PY) -m benchmarks

dvc-remote: setup  ## switch the DVC remote to S3 / DagsHub from DVC_REMOTE_URL and credentials in .env
	$(PY) -m pipeline.remote

clean:  ## remove pipeline outputs and the local MLflow store (keeps the bundled data)
	rm -rf data/interim data/processed data/predictions data/reports models reports mlflow.db mlartifacts
