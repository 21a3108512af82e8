# Every target creates the virtualenv and installs the project first if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The shared datasets live beside the repo; override with SAMEXP_DATA=/your/datasets
export SAMEXP_DATA ?= $(abspath ../shared/datasets)
# Runs go under $SAMEXP_HOME, else this checkout (samexp/config/paths.py): where `make ui` looks too
RUNS   := $(or $(SAMEXP_HOME),$(CURDIR))/mlruns
ARGS ?= adapter=lora dataset=rings
APP_ARGS ?=
# pytest-xdist workers: the tests wait on servers and subprocesses a lot, so two use 2 cores well
TEST_WORKERS ?= 2
SWEEP_ARGS ?=
NAME ?=
REPORT_ARGS ?=
SERVER_ARGS ?=

.PHONY: install test test-fast smoke run sweep report bench bench-onnx bench-gpu bench-data bench-demo ui dashboard app docs docs-serve screenshots server server-stop server-status postgresql chromium lint format clean

# TORCH=cpu takes torch and torchvision from PyTorch's CPU-only index (about 0.2 GB; their
# +cpu builds win over PyPI's, within pyproject's pins) instead of PyPI's default Linux build,
# whose CUDA libraries are ~6.9 GB of nvidia-* wheels a machine without an NVIDIA GPU never
# uses; any other index of download.pytorch.org/whl works the same way (TORCH=cu126)
TORCH ?=

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	@# SAM2_BUILD_CUDA=0: sam2 is a source distribution; never compile its optional CUDA extension
	SAM2_BUILD_CUDA=0 $(BIN)/pip install --quiet -e '.[dev]' $(if $(TORCH),--extra-index-url https://download.pytorch.org/whl/$(TORCH))
	touch $(STAMP)

install: $(STAMP)  ## .venv with samexp and its tools (TORCH=cpu: CPU-only PyTorch, no 6.9 GB of CUDA wheels)

test: $(STAMP)  ## the whole suite, slow end-to-end tests included (what CI runs); TEST_WORKERS=1 for one process
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=10

test-fast: $(STAMP)  ## what to run while you work (under a minute): the unit tests, none marked slow
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

smoke: $(STAMP)  ## offline run on the tiny random SAM, about a minute on CPU
	$(BIN)/python -m samexp experiment=smoke

run: $(STAMP)  ## the real thing: vit_b, downloads the official checkpoint once (ARGS=... to change)
	$(BIN)/python -m samexp $(ARGS)

sweep: $(STAMP)  ## the default Optuna study over LoRA rank x lr; resumable (SWEEP_ARGS="experiment=smoke trainer.epochs=5" offline)
	$(BIN)/python -m samexp -m hparams_search=lora_rank_lr $(SWEEP_ARGS)

report: $(STAMP)  ## which adaptation works best: a study's report (NAME=<study name, parent run id or experiment>) into reports/NAME and its parent run
	$(BIN)/python -m samexp.report $(NAME) $(REPORT_ARGS)

bench: $(STAMP)  ## naive loop vs ours (s/epoch, s/step, peak RSS; tiny, vit_b, vit_t, SAM 2.1 hiera_t/_s), then PyTorch vs onnxruntime predict (tiny, vit_b); random weights; ~20 min on 2 CPU cores
	$(BIN)/python experiments/bench_speed.py
	$(BIN)/python experiments/bench_onnx.py

bench-onnx: $(STAMP)  ## predict on PyTorch vs onnxruntime: s/image, decoder ms/prompt, peak RSS, export s and MB (tiny, vit_b; ~4 min on 2 CPU cores)
	$(BIN)/python experiments/bench_onnx.py

bench-gpu: $(STAMP)  ## every model benchmark on one CUDA GPU (SDPA, bf16), each time-limited, all under 8 min; tables into bench-gpu/
	$(BIN)/python experiments/bench_gpu.py

bench-data: $(STAMP)  ## data loading: s/epoch and images/s, decoding every epoch (naive) vs the sample cache (ours)
	$(BIN)/python experiments/bench_data.py

bench-demo: $(STAMP)  ## the demo's first answer on an image (encoder + decoder) against the next ones (decoder only)
	$(BIN)/python experiments/bench_demo.py

dashboard: $(STAMP)  ## optuna-dashboard over the studies in $(RUNS)/optuna.db, http://127.0.0.1:8080
	$(BIN)/optuna-dashboard sqlite:///$(RUNS)/optuna.db --host 127.0.0.1 --port 8080

ui: $(STAMP)  ## browse and compare runs at http://127.0.0.1:5000 (says when it is ready, about 30 s)
	$(BIN)/python -m samexp.ui --backend-store-uri sqlite:///$(RUNS)/mlflow.db --port 5000

app: $(STAMP)  ## the demo: pick a run, draw a box, zero-shot vs fine-tuned, http://127.0.0.1:7860 (APP_ARGS=...)
	$(BIN)/python -m samexp.app $(APP_ARGS)

docs: $(STAMP)  ## the documentation site into site/ (strict: a broken link or reference fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict  # no end-of-life banner on every build

docs-serve: $(STAMP)  ## the site at http://127.0.0.1:8000, rebuilt on every change
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8000

screenshots: $(STAMP) chromium  ## docs/images/*.png from the real programs in headless chromium (a few minutes)
	$(BIN)/python docs/screenshots.py

server: $(STAMP) postgresql  ## PostgreSQL (127.0.0.1:5433) + MLflow server (127.0.0.1:5000) for sweeps across machines (SERVER_ARGS="--data DIR --pg-port N --mlflow-port N")
	$(BIN)/python -m samexp.server start $(SERVER_ARGS)

server-stop: $(STAMP)  ## stop both (SERVER_ARGS="--data DIR" when started with one)
	$(BIN)/python -m samexp.server stop $(SERVER_ARGS)

server-status: $(STAMP)  ## running or not, and the two overrides every sweep worker adds
	$(BIN)/python -m samexp.server status $(SERVER_ARGS)

# $(call debian,<check>,<package>,<what then says it is missing>): Debian's <package> when
# <check> fails, installed as root only (CI, containers); otherwise a note, and <what> says so.
debian = @if $(1); then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's $(2) package"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $(2) >/dev/null; \
	else \
		echo "$(2) is not installed and this is not root with apt-get: install it" \
			"(apt-get install $(2), brew install $(2), ...) for $(3)"; \
	fi

# the tests marked `server` start a real PostgreSQL, as `make server` does
postgresql:
	$(call debian,command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1,postgresql,make server and the tests marked server)

# the browser test and the screenshots drive Chromium; Playwright never downloads one
chromium:
	$(call debian,command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1,chromium,make screenshots and the tests marked browser)

lint: $(STAMP)
	$(BIN)/ruff check samexp tests experiments hydra_plugins docs
	$(BIN)/ruff format --check samexp tests experiments hydra_plugins docs

format: $(STAMP)
	$(BIN)/ruff format samexp tests experiments hydra_plugins docs
	$(BIN)/ruff check --fix samexp tests experiments hydra_plugins docs

clean:
	rm -rf outputs multirun site .pytest_cache .ruff_cache
