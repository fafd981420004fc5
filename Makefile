# Everything a new machine needs comes from these rules: a virtual environment with every version
# pinned (pyproject.toml for direct dependencies, requirements.lock for the whole resolved set).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit bitstream clean
.DEFAULT_GOAL := demo

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $@

setup: $(STAMP)

## The main job: a generated order flow replayed through the reference model, with a summary.
demo: $(STAMP)
	$(BIN)/ocee demo

## The whole test suite: linter, type checker, then every test and, beside them (one core for
## 15 to 20 minutes with the WebAssembly tools), the ULX3S appliance's bitstream at its clock.
test: lint typecheck
	$(MAKE) --no-print-directory -j2 --output-sync=target unit bitstream

lint: $(STAMP)
	$(BIN)/ruff check hw host sim tests

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2 -q

## The appliance's bitstream for the ULX3S 85F at the board's defaults (30 MHz, 3 Mbaud:
## docs/bringup.md); fails if a tool fails or the design misses its clock constraint.
bitstream: $(STAMP)
	$(BIN)/ocee hw build --board ulx3s-85f --out build/ci/ulx3s-85f-appliance

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
