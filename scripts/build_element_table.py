"""Build the shipped element table ``fm_engine/element_data/element_features.csv``.

Source: the ``xenonpy`` representation shipped by the PyPI package ``elementembeddings``
(``elementembeddings/data/element_representations/xenonpy_element_features.csv``): 94 elements
(H..Pu) x 58 physical features, the XenonPy ``elements_completed`` table (missing values already
imputed by XenonPy), the same 58 features the reference KMD descriptor uses.

Run (``make data`` does it in a throw-away venv)::

    pip install elementembeddings==0.8.0 pymatgen
    python scripts/build_element_table.py
"""

from __future__ import annotations

import argparse
import hashlib
from importlib import metadata, resources
from pathlib import Path

import pandas as pd
from pymatgen.core import Element

SYMBOLS_H_TO_PU = [Element.from_Z(z).symbol for z in range(1, 95)]

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "fm_engine" / "element_data"


def read_source() -> pd.DataFrame:
    """Read the XenonPy element features from the installed ``elementembeddings`` package."""
    source = resources.files("elementembeddings") / "data/element_representations/xenonpy_element_features.csv"
    with resources.as_file(source) as path:
        frame = pd.read_csv(path)
    frame = frame.rename(columns={frame.columns[0]: "symbol"}).set_index("symbol")
    return frame


def build(out_dir: Path) -> Path:
    frame = read_source()
    if list(frame.index) != SYMBOLS_H_TO_PU:
        raise SystemExit("source table is not the 94 elements H..Pu in atomic-number order")
    if frame.shape[1] != 58:
        raise SystemExit(f"expected 58 features, found {frame.shape[1]}")
    if frame.isna().any().any():
        raise SystemExit("source table has missing values")
    frame = frame.astype(float)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "element_features.csv"
    frame.to_csv(out, float_format="%.10g", lineterminator="\n")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    version = metadata.version("elementembeddings")
    print(f"wrote {out} ({frame.shape[0]} elements x {frame.shape[1]} features, sha256 {digest[:16]})")
    print(f"source: elementembeddings {version}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    build(parser.parse_args().out)


if __name__ == "__main__":
    main()
