# Everything a new machine needs comes from these rules: a virtual environment with every version
# pinned (pyproject.toml for direct dependencies, requirements.lock for the whole resolved set).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit clean
.DEFAULT_GOAL := demo

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

setup: $(STAMP)

## The main job: a generated order flow replayed through the reference model, with a summary.
demo: $(STAMP)
	$(BIN)/ocee demo

## The whole test suite: linter, type checker, then every test.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check hw host sim tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2 -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
