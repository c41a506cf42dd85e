"""``fm ship-foundation``: a pretraining run becomes an installable foundation folder (checkpoint + compressed
training compositions + a replay sample of the corpus + the rebuild commands in its card), and a run with the
default ``start_from: auto`` fine-tunes from it, replaying the shipped sample when no corpus was built."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fm_engine.checkpoints import COMPOSITIONS_FILE, COMPRESSED_COMPOSITIONS_FILE, load_checkpoint
from fm_engine.cli import main
from fm_engine.foundation import FOUNDATION_ENV, REPLAY_FOLDER
from fm_engine.foundation.ship import ShipError, ship_foundation
from fm_engine.training import TrainConfig, train
from tests.foundation.synthetic import write_synthetic_corpus

SHIPPED_ROWS = 1024


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny corpus (300 compositions, 4 tasks) and a 3-epoch fm pretrain run on it."""
    folder = tmp_path_factory.mktemp("ship")
    corpus = folder / "corpus"
    write_synthetic_corpus(corpus, 300, seed=11)
    config = folder / "pretrain.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"encoder": {"type": "mlp", "hidden_dims": [32, 16]}, "autoencoder": {"hidden_dims": [16]}},
        "data": {"batch_size": 64}, "trainer": {"max_epochs": 3, "progress_bar": False},
    }))  # fmt: skip
    run = folder / "run"
    assert main(["pretrain", "--config", str(config), "--corpus", str(corpus), "--out", str(run), "--no-progress"]) == 0
    return corpus, run


@pytest.fixture(scope="module")
def shipped(pretrained: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus, run = pretrained
    out = tmp_path_factory.mktemp("installed") / "foundation_model"
    assert main(["ship-foundation", "--run", str(run), "--corpus", str(corpus), "--out", str(out)]) == 0
    return out


def test_the_shipped_folder_is_a_checkpoint_with_its_card_rebuild_commands_and_replay_sample(pretrained, shipped):
    corpus, run = pretrained
    original, installed = load_checkpoint(run), load_checkpoint(shipped)
    assert installed.checkpoint_id == original.checkpoint_id
    state = original.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in installed.model.state_dict().items())
    assert installed.card.rebuild[0] == "fm corpus" and "fm pretrain" in installed.card.rebuild[1]
    assert "## Rebuild" in (shipped / "card.md").read_text()
    # the training compositions, compressed, give the same table
    assert (shipped / COMPRESSED_COMPOSITIONS_FILE).is_file() and not (shipped / COMPOSITIONS_FILE).exists()
    pd.testing.assert_frame_equal(installed.compositions(), original.compositions())
    table = installed.predict(["Fe2O3", "NaCl"])
    task = next(iter(installed.model.tasks))
    assert table[f"{task}_distance_to_training"].notna().all()  # the distance flags read the compressed table
    # the replay sample: corpus rows in the corpus format, every task, no descriptor cache shipped
    sample = pd.read_parquet(shipped / REPLAY_FOLDER / "corpus.parquet")
    full = pd.read_parquet(corpus / "corpus.parquet").set_index("composition")
    assert {"composition", "formula", "split", *installed.model.tasks} <= set(sample.columns)
    assert not (shipped / REPLAY_FOLDER / "descriptors").exists()
    for task in installed.model.tasks:
        labelled = sample[sample[task].notna()]
        assert len(labelled) > 0 and labelled.groupby("split").size().max() <= SHIPPED_ROWS
        pd.testing.assert_series_equal(labelled.set_index("composition")[task], full.loc[labelled["composition"], task],
                                       check_names=False)  # fmt: skip


def test_a_folder_over_the_size_limit_is_not_installed(pretrained, tmp_path):
    corpus, run = pretrained
    out = tmp_path / "foundation_model"
    with pytest.raises(ShipError, match="over the limit"):
        ship_foundation(run, corpus=corpus, out=out, size_limit=1000)
    assert not out.exists()


def test_auto_fine_tunes_from_the_installed_foundation_replaying_the_shipped_sample(shipped, tmp_path, monkeypatch):
    monkeypatch.setenv(FOUNDATION_ENV, str(shipped))
    monkeypatch.setenv("FM_WORKSPACE", str(tmp_path / "workspace"))  # no corpus built there
    frame = pd.read_parquet(shipped / REPLAY_FOLDER / "corpus.parquet").head(120)
    user = tmp_path / "user.csv"
    pd.DataFrame({"formula": frame["formula"], "target": frame["split"].map({"train": 1.0}).fillna(2.0)}).to_csv(
        user, index=False
    )
    config = TrainConfig.from_dict({
        "name": "mine", "seed": 3,
        "tasks": [{"name": "mine", "data_files": [str(user)], "composition_column": "formula",
                   "data_column": "target", "unit": "GPa"}],
        "trainer": {"max_epochs": 2, "progress_bar": False},
    })  # fmt: skip
    result = train(config, tmp_path / "run")
    card = load_checkpoint(result.checkpoint).card
    foundation = load_checkpoint(shipped)
    assert card.start.kind == "foundation" and card.start.checkpoint_id == foundation.checkpoint_id
    assert Path(card.start.replay_corpus) == (shipped / REPLAY_FOLDER).resolve()
    assert set(card.start.kept_heads) == set(foundation.model.tasks) and not card.start.frozen_heads
    assert "mine" in load_checkpoint(result.checkpoint).model.tasks
