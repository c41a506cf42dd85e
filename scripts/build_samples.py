"""Build ``samples/expt_gap.csv``: a real ``formula,target`` file in the shape of a user's own data.

Source: matbench_expt_gap as shipped by ``crabnet==2.0.8`` (``crabnet/data/matbench/expt_gap.csv``):
experimental band gaps (eV) of 4,604 inorganic compounds (Zhuo, Mansouri Tehrani & Brgoch,
J. Phys. Chem. Lett. 9, 1668 (2018), doi:10.1021/acs.jpclett.8b00124). Copied verbatim.
Run by ``make data`` (scripts/build_data.sh).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    source = resources.files("crabnet") / "data/matbench/expt_gap.csv"
    out = REPO / "samples" / "expt_gap.csv"
    out.parent.mkdir(exist_ok=True)
    text = source.read_text(encoding="utf-8")
    if not text.startswith("formula,target\n"):
        raise SystemExit("unexpected header in expt_gap.csv")
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({text.count(chr(10)) - 1} rows)")


if __name__ == "__main__":
    main()
