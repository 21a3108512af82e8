# Every target creates the virtualenv and installs the project first if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The shared datasets live beside the repo; override with SAMEXP_DATA=/your/datasets
export SAMEXP_DATA ?= $(abspath ../shared/datasets)
# Runs go under $SAMEXP_HOME, else this checkout (samexp/paths.py): where `make ui` looks too
RUNS   := $(or $(SAMEXP_HOME),$(CURDIR))/mlruns
ARGS ?= adapter=lora dataset=rings
SWEEP_ARGS ?=
SERVER_ARGS ?=

.PHONY: install test test-fast smoke run sweep bench bench-data ui dashboard server server-stop server-status postgresql lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)  ## the whole suite, slow end-to-end tests included (what CI runs)
	$(BIN)/pytest -q --durations=10

test-fast: $(STAMP)  ## what to run while you work (~1 min): skips the tests marked slow
	$(BIN)/pytest -q -m "not slow"

smoke: $(STAMP)  ## offline run on the tiny random SAM, about a minute on CPU
	$(BIN)/python -m samexp experiment=smoke

run: $(STAMP)  ## the real thing: vit_b, downloads the official checkpoint once (ARGS=... to change)
	$(BIN)/python -m samexp $(ARGS)

sweep: $(STAMP)  ## the default Optuna study over LoRA rank x lr; resumable (SWEEP_ARGS="experiment=smoke" offline)
	$(BIN)/python -m samexp -m hparams_search=lora_rank_lr $(SWEEP_ARGS)

bench: $(STAMP)  ## naive loop vs ours: s/epoch, s/step, peak RSS (tiny and vit_b with random weights; minutes on CPU)
	$(BIN)/python experiments/bench_speed.py

bench-data: $(STAMP)  ## data loading: s/epoch and images/s, decoding every epoch (naive) vs the sample cache (ours)
	$(BIN)/python experiments/bench_data.py

dashboard: $(STAMP)  ## optuna-dashboard over the studies in $(RUNS)/optuna.db, http://127.0.0.1:8080
	$(BIN)/optuna-dashboard sqlite:///$(RUNS)/optuna.db --host 127.0.0.1 --port 8080

ui: $(STAMP)  ## browse and compare runs at http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(RUNS)/mlflow.db --host 127.0.0.1 --port 5000

server: $(STAMP) postgresql  ## PostgreSQL (127.0.0.1:5433) + MLflow server (127.0.0.1:5000) for sweeps across machines (SERVER_ARGS="--data DIR --pg-port N --mlflow-port N")
	$(BIN)/python -m samexp.server start $(SERVER_ARGS)

server-stop: $(STAMP)  ## stop both (SERVER_ARGS="--data DIR" when started with one)
	$(BIN)/python -m samexp.server stop $(SERVER_ARGS)

server-status: $(STAMP)  ## running or not, and the two overrides every sweep worker adds
	$(BIN)/python -m samexp.server status $(SERVER_ARGS)

# Debian's PostgreSQL server when initdb/pg_ctl are missing, as root only (CI, containers);
# otherwise a note: `make server` and the tests marked `server` then say what is missing.
postgresql:
	@if command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing PostgreSQL (Debian's postgresql package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends postgresql >/dev/null; \
	else \
		echo "PostgreSQL is not installed and this is not root with apt-get: install it" \
			"(apt-get install postgresql, brew install postgresql, ...) for make server" \
			"and the tests marked server"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check samexp tests experiments hydra_plugins
	$(BIN)/ruff format --check samexp tests experiments hydra_plugins

format: $(STAMP)
	$(BIN)/ruff format samexp tests experiments hydra_plugins
	$(BIN)/ruff check --fix samexp tests experiments hydra_plugins

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
