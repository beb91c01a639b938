# The course's commands. Each target creates .venv on first use and reinstalls only when
# pyproject.toml changed.  make lab → JupyterLab on the course · make test → the whole test suite.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test exercises bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

lab: $(STAMP)
	$(BIN)/python -m course_lib lab

test: $(STAMP)
	$(BIN)/python -m pytest

exercises: $(STAMP)
	$(BIN)/python -m course_lib exercises

bench: $(STAMP)
	$(BIN)/python -m bench
