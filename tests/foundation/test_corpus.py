"""The corpus format: write / load round trip, the memory-mapped caches, task specs and clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fm_engine.compositions import canonical_key, to_weights
from fm_engine.data.tables import load_task_table
from fm_engine.descriptors import Descriptor, DescriptorSpec
from fm_engine.foundation import foundation_checkpoint_path
from fm_engine.foundation.corpus import (
    CorpusTask,
    TaskSource,
    default_corpus_dir,
    load_corpus,
    spec_key,
    write_corpus,
)

SOURCE = TaskSource(dataset="tiny", file="tiny.csv", package="none", version="0", license="none", citation="none")
TASKS = [
    CorpusTask(name="gap", type="regression", unit="eV", description="a gap", source=SOURCE),
    CorpusTask(
        name="metal", type="classification", unit="", description="metal?", source=SOURCE, classes=("no", "yes")
    ),
]
FORMULAS = ["Fe2O3", "NaCl", "Cu", "Al0.65Cu0.2Fe0.15", "MgO", "Fe0.999Ni0.001"]


def tiny_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "composition": [canonical_key(f) for f in FORMULAS],
            "formula": FORMULAS,
            "split": ["train", "train", "val", "test", "train", "train"],
            "gap": [2.0, 5.0, 0.0, math.nan, 4.5, math.nan],
            "metal": [0.0, 0.0, 1.0, 1.0, math.nan, 1.0],
        }
    )


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus", tiny_frame(), TASKS, manifest={"source": "test"}, rules=["rule one"])


def test_round_trip(corpus_dir: Path) -> None:
    corpus = load_corpus(corpus_dir)
    pd.testing.assert_frame_equal(corpus.frame, tiny_frame())
    assert corpus.tasks == TASKS and corpus.rules == ["rule one"]
    assert corpus.manifest["source"] == "test" and corpus.manifest["n_compositions"] == len(FORMULAS)
    assert corpus.manifest["format_version"] == 1 and corpus.manifest["created"]
    assert corpus.counts["tasks"]["gap"] == {"total": 4, "train": 3, "val": 1, "test": 0}
    assert corpus.counts["splits"] == {"train": 4, "val": 1, "test": 1}


def test_descriptor_cache_is_built_once_then_memory_mapped(corpus_dir: Path) -> None:
    spec = DescriptorSpec()
    first = load_corpus(corpus_dir).descriptor_matrix(spec)
    cache = corpus_dir / "descriptors" / f"{spec_key(spec)}.npy"
    built = cache.stat().st_mtime_ns
    again = load_corpus(corpus_dir).descriptor_matrix(spec)  # a new process would do the same
    assert cache.stat().st_mtime_ns == built
    assert isinstance(again, np.memmap) and again.dtype == np.float32
    expected = Descriptor(spec).transform(np.stack([to_weights(f) for f in FORMULAS]))
    np.testing.assert_allclose(again, expected, rtol=1e-6, atol=1e-6)  # rows aligned with the frame
    np.testing.assert_array_equal(first, again)


def test_each_spec_has_its_own_cache(corpus_dir: Path) -> None:
    corpus = load_corpus(corpus_dir)
    stats = DescriptorSpec(kind="stats")
    x = corpus.descriptor_matrix(stats)
    assert x.shape == (len(FORMULAS), Descriptor(stats).dim)
    names = {p.name for p in (corpus_dir / "descriptors").glob("*.npy")}
    assert f"{spec_key(stats)}.npy" in names and f"{spec_key(DescriptorSpec())}.npy" not in names


def test_weights_are_cached_at_write_time(corpus_dir: Path) -> None:
    cache = corpus_dir / "descriptors" / "weights.npy"
    written = cache.stat().st_mtime_ns
    weights = load_corpus(corpus_dir).weights_matrix()
    assert cache.stat().st_mtime_ns == written and isinstance(weights, np.memmap)
    np.testing.assert_allclose(weights, np.stack([to_weights(f) for f in FORMULAS]), atol=1e-7)
    assert weights[5, 27] == pytest.approx(0.001)  # Ni: a minor element is kept, not rounded away


def test_a_cache_of_other_rows_is_rebuilt(corpus_dir: Path, tmp_path: Path) -> None:
    load_corpus(corpus_dir).descriptor_matrix()
    meta = corpus_dir / "descriptors" / f"{spec_key(DescriptorSpec())}.json"
    data = json.loads(meta.read_text())
    meta.write_text(json.dumps({**data, "fingerprint": "0" * 64}))
    x = load_corpus(corpus_dir).descriptor_matrix()
    assert json.loads(meta.read_text())["fingerprint"] == data["fingerprint"]
    assert x.shape[0] == len(FORMULAS)


def test_task_specs_load_with_the_standard_task_reader(corpus_dir: Path) -> None:
    specs = load_corpus(corpus_dir).task_specs()
    assert [s.name for s in specs] == ["gap", "metal"]
    assert specs[0].unit == "eV" and specs[1].classes == ["no", "yes"]
    gap = load_task_table(specs[0])
    assert len(gap) == 4 and dict(zip(gap.keys, gap.split, strict=True))[canonical_key("Cu")] == "val"
    metal = load_task_table(specs[1])
    assert list(metal.values) == [0, 0, 1, 1, 1]


def test_rewriting_replaces_the_corpus_and_its_caches(corpus_dir: Path) -> None:
    load_corpus(corpus_dir).descriptor_matrix()
    smaller = tiny_frame().iloc[:3]
    write_corpus(corpus_dir, smaller, TASKS, manifest={})
    corpus = load_corpus(corpus_dir)
    assert len(corpus.frame) == 3 and corpus.descriptor_matrix().shape[0] == 3
    assert not [p for p in corpus_dir.parent.iterdir() if p.name.startswith(".fm-tmp")]


def test_default_dir_and_foundation_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FM_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.delenv("FM_FOUNDATION_DIR")  # the suite's "no foundation" setting (tests/conftest.py)
    assert default_corpus_dir() == tmp_path / "ws" / "corpus"
    assert foundation_checkpoint_path().name == "foundation_model"
    assert foundation_checkpoint_path().parent.name == "fm_engine"


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _edit_table(path: Path, change) -> None:
    frame = pd.read_parquet(path)
    frame = change(frame)
    frame.to_parquet(path, index=False)


BREAKS = {
    "no manifest": (lambda d: (d / "manifest.json").unlink(), "manifest.json: missing"),
    "old format": (
        lambda d: _edit_json(d / "manifest.json", lambda m: m.update(format_version=99)),
        "manifest.json: format_version 99",
    ),
    "unknown key": (
        lambda d: _edit_json(d / "tasks.json", lambda t: t["tasks"][1].update(colour="red")),
        r"tasks.json: tasks\[1\]: unknown key 'colour'",
    ),
    "missing unit": (
        lambda d: _edit_json(d / "tasks.json", lambda t: t["tasks"][0].pop("unit")),
        r"tasks.json: tasks\[0\]: missing key 'unit'",
    ),
    "bad type": (
        lambda d: _edit_json(d / "tasks.json", lambda t: t["tasks"][0].update(type="ranking")),
        r"tasks\[0\]: corpus task 'gap': type 'ranking'",
    ),
    "missing column": (
        lambda d: _edit_table(d / "corpus.parquet", lambda f: f.drop(columns="metal")),
        "corpus.parquet: column 'metal' is missing",
    ),
    "extra column": (
        lambda d: _edit_table(d / "corpus.parquet", lambda f: f.assign(extra=1.0)),
        "corpus.parquet: column 'extra' is not a corpus task",
    ),
    "duplicate key": (
        lambda d: _edit_table(d / "corpus.parquet", lambda f: f.assign(composition=["Cu1"] * len(f))),
        "corpus.parquet: composition 'Cu1' appears more than once",
    ),
    "bad split": (
        lambda d: _edit_table(d / "corpus.parquet", lambda f: f.assign(split=["tset"] * len(f))),
        "corpus.parquet: row 0: split 'tset'",
    ),
    "bad class": (
        lambda d: _edit_table(d / "corpus.parquet", lambda f: f.assign(metal=2.0)),
        "corpus.parquet: column 'metal' holds 2, expected class indices 0..1",
    ),
    "not parquet": (
        lambda d: (d / "corpus.parquet").write_text("composition,formula\n"),
        "corpus.parquet: not a readable parquet file",
    ),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_bad_corpus_folder_is_one_clear_error(corpus_dir: Path, name: str) -> None:
    damage, message = BREAKS[name]
    damage(corpus_dir)
    with pytest.raises(ValueError, match=message):
        load_corpus(corpus_dir)


def test_no_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no corpus folder there"):
        load_corpus(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(composition=["Fe2O3", *f["composition"][1:]]), "row 0: composition 'Fe2O3' is not a canon"),
        (lambda f: f.assign(gap=f["gap"].astype("float32")), "column 'gap' has dtype float32"),
        (lambda f: f.assign(gap=[math.inf, *f["gap"][1:]]), "column 'gap' holds infinite values"),
    ],
)
def test_write_checks_the_table(tmp_path: Path, change, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_corpus(tmp_path / "corpus", change(tiny_frame()), TASKS, manifest={})
    assert not (tmp_path / "corpus").exists()


def test_write_refuses_a_folder_that_is_not_a_corpus(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(ValueError, match="is not a corpus folder"):
        write_corpus(tmp_path / "mine", tiny_frame(), TASKS, manifest={})
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"


def test_a_changed_frame_never_overwrites_the_caches(corpus_dir: Path) -> None:
    corpus = load_corpus(corpus_dir)
    full = corpus.descriptor_matrix()
    built = (corpus_dir / "descriptors" / f"{spec_key(DescriptorSpec())}.npy").stat().st_mtime_ns
    corpus.frame = corpus.frame[corpus.frame["split"] == "train"]
    with pytest.raises(ValueError, match="corpus.frame was changed after loading"):
        corpus.descriptor_matrix()
    assert (corpus_dir / "descriptors" / f"{spec_key(DescriptorSpec())}.npy").stat().st_mtime_ns == built
    assert full.shape[0] == len(FORMULAS)
