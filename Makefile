# DT-RAG: `make run` serves the embedded default, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= ../shared/data

.PHONY: install run test bench bench-scifact bench-korquad lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-installs only when the lock file or project metadata change.
$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/dtrag serve --init

# Two workers: most tests wait on servers, so two cores run the suite in two thirds of the time.
test: install
	$(BIN)/python -m pytest -q -n 2

bench: bench-scifact bench-korquad

bench-scifact: install
	$(BIN)/dtrag bench retrieval --dataset $(DATA)/scifact --split test

bench-korquad: install
	$(BIN)/dtrag bench retrieval --dataset $(DATA)/korquad-ko --split test

# Regenerate the pinned lock file from pyproject.toml after changing dependencies.
lock: | $(BIN)/python
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 --no-header --quiet -o requirements.txt

clean:
	rm -rf $(VENV) dt_rag.db dt_rag.db-* .pytest_cache
