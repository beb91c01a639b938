# The course's commands. Each target creates .venv on first use and reinstalls when the lock file or
# pyproject.toml changed.  make lab → JupyterLab on the course · make test → ruff, then the whole test suite.
# Installs take exactly the versions in requirements-lock.txt (hashes checked), then the course package
# itself without resolving again.  make lock → regenerate the lock from pyproject.toml (the one edited list).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements-lock.txt

.PHONY: lab test exercises bench lock

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

lab: $(STAMP)
	$(BIN)/python -m course_lib lab

test: $(STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m pytest

exercises: $(STAMP)
	$(BIN)/python -m course_lib exercises

bench: $(STAMP)
	$(BIN)/python -m bench

# Linux, macOS and Windows on x86_64 and arm64, Python 3.11 and newer, one file (uv's universal resolution).
lock: $(STAMP)
	$(BIN)/python -m uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--generate-hashes --custom-compile-command "make lock" --quiet -o $(LOCK)
