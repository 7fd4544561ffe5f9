# Accident severity scoring: every entry point of the project.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV)/bin)
API_PORT ?= 8000
APP_PORT ?= 8501
export PATH := $(BIN):$(PATH)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run repro api app score test lint bench dvc-remote clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed  ## create the virtualenv and install everything

repro: setup  ## rebuild whatever is out of date in the DVC pipeline (trains if needed)
	dvc repro

run: repro  ## train if needed, then serve the API and the dashboard until Ctrl-C
	@trap 'kill 0' INT TERM EXIT; \
	$(PY) -m uvicorn api.main:app --host 127.0.0.1 --port $(API_PORT) --log-level warning & \
	API_URL=http://127.0.0.1:$(API_PORT) $(PY) -m streamlit run app/streamlit_app.py \
	  --server.port $(APP_PORT) --server.address 127.0.0.1 --server.headless true \
	  --browser.gatherUsageStats false & \
	echo "API:       http://127.0.0.1:$(API_PORT)/docs"; \
	echo "Dashboard: http://127.0.0.1:$(APP_PORT)"; \
	echo "Press Ctrl-C to stop both."; \
	wait

api: setup  ## serve the API only
	$(PY) -m uvicorn api.main:app --host 127.0.0.1 --port $(API_PORT)

app: setup  ## serve the dashboard only (expects the API at API_URL)
	$(PY) -m streamlit run app/streamlit_app.py --server.port $(APP_PORT) --server.headless true

score: repro  ## score the bundled 2021 files with the champion model
	$(PY) -m pipeline.score data/bundled/baac/2021 --output data/predictions/make-score-2021.parquet

test: setup  ## the test suite, with coverage of pipeline/, api/ and app/
	$(PY) -m pytest --cov --cov-report=term --cov-report=xml

lint: setup  ## ruff, formatting, mypy, hadolint (Dockerfile) and actionlint (workflows)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy pipeline api app benchmarks
	$(BIN)/hadolint Dockerfile
	$(BIN)/actionlint

bench: setup  ## speed benchmarks, printed as ratios against in-run baselines
	$(PY) -m benchmarks

dvc-remote: setup  ## switch the DVC remote to S3 / DagsHub from DVC_REMOTE_URL and credentials in .env
	$(PY) -m pipeline.remote

clean:  ## remove pipeline outputs and the local MLflow store (keeps the bundled data)
	rm -rf data/interim data/processed data/predictions data/reports models reports mlflow.db mlartifacts
