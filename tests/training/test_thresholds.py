"""Decision thresholds in real (tiny) training: on an imbalanced binary task the threshold is chosen on the
validation split, is stored in the checkpoint and the card, reloads, and every predicted class follows it
(``LoadedCheckpoint.predict``, the card's test metrics); ``decision_threshold: 0.5`` keeps the most probable class;
a fixed threshold for a task with more than two classes is refused before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fm_engine.checkpoints import load_checkpoint
from fm_engine.compositions import parse_many
from fm_engine.thresholds import balanced_accuracy, hard_labels
from fm_engine.training import TrainConfig, train
from fm_engine.training.evaluate import collect_outputs
from fm_engine.training.trainer import build_datamodule
from tests.conftest import binary_config, imbalanced_alloys


def test_the_threshold_is_chosen_on_validation_and_beats_half_there(binary_run):
    config, checkpoint_dir = binary_run
    stored = json.loads((checkpoint_dir / "config.json").read_text())["model"]["decision_thresholds"]
    checkpoint = load_checkpoint(checkpoint_dir)
    threshold = checkpoint.model.decision_threshold("forms")
    assert stored == {"forms": threshold}
    assert threshold is not None and threshold != 0.5  # moved: the minority class is under-predicted at 0.5
    # recomputed independently on the run's own validation rows with the reloaded model
    dm = build_datamodule(config)
    dm.setup()
    outputs = collect_outputs(checkpoint.model, dm, "val")
    proba = checkpoint.model.to_physical("forms", outputs.outputs["forms"]).numpy()
    y = outputs.targets["forms"].numpy()
    at_threshold = balanced_accuracy(y, hard_labels(proba, threshold))
    at_half = balanced_accuracy(y, proba.argmax(axis=1))
    assert at_threshold >= at_half
    card = checkpoint.card.task("forms")
    assert card.decision_threshold == threshold and card.decision_threshold_rule == "validation"
    assert card.decision_threshold_validation["n"] == len(y)
    assert card.decision_threshold_validation["balanced_accuracy"] == pytest.approx(at_threshold, abs=1e-6)
    assert card.decision_threshold_validation["balanced_accuracy_at_half"] == pytest.approx(at_half, abs=1e-6)
    assert card.val_metrics["balanced_accuracy"] == pytest.approx(at_threshold, abs=1e-6)
    assert f"exceeds {threshold:.4g}" in (checkpoint_dir / "card.md").read_text()


def test_predictions_and_card_test_metrics_use_the_threshold(binary_run):
    config, checkpoint_dir = binary_run
    checkpoint = load_checkpoint(checkpoint_dir)
    threshold = checkpoint.model.decision_threshold("forms")
    compositions = checkpoint.compositions()
    test = compositions[compositions["split"] == "test"]["composition"].tolist()
    table = checkpoint.predict(test, distances=False)
    p1 = table["forms_proba_1 [probability]"].to_numpy(float)
    assert (table["forms"] == np.where(p1 > threshold, "1", "0")).all()
    assert (table["forms"] != np.where(p1 > 0.5, "1", "0")).any()  # some test compositions change class
    # the card's test metrics are those of these predicted classes (one row of slack: the card's pass batches the
    # rows differently, which can move a probability right at the threshold by a float32 rounding)
    data = pd.read_csv(Path(config.task_specs()[0].data_files[0]))
    label_of = dict(zip(parse_many(data["formula"].tolist()).keys, data["label"], strict=True))
    y = np.array([label_of[key] for key in test])
    predicted = table["forms"].astype(int).to_numpy()
    metrics = checkpoint.card.task("forms").test_metrics
    slack = 1.01 / len(y)
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == y), abs=slack)
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy(y, predicted), abs=2 * slack)


def test_a_fixed_half_keeps_the_most_probable_class(tmp_path):
    result = train(binary_config(tmp_path, decision_threshold=0.5), tmp_path / "run", progress_bar=False)
    checkpoint = load_checkpoint(result.checkpoint)
    assert checkpoint.model.decision_threshold("forms") == 0.5
    assert checkpoint.card.task("forms").decision_threshold_rule == "fixed"
    table = checkpoint.predict(imbalanced_alloys(60, seed=9)["formula"].tolist(), distances=False)
    proba = table[["forms_proba_0 [probability]", "forms_proba_1 [probability]"]].to_numpy(float)
    assert (table["forms"] == np.array(["0", "1"])[proba.argmax(axis=1)]).all()


def test_a_fixed_threshold_for_three_classes_is_refused_before_training(tmp_path):
    path = tmp_path / "three.csv"
    frame = imbalanced_alloys(60, seed=1)
    frame["label"] = np.arange(len(frame)) % 3
    frame.to_csv(path, index=False)
    task = {"name": "phase", "type": "classification", "data_files": [str(path)], "composition_column": "formula",
            "data_column": "label", "decision_threshold": 0.3}  # fmt: skip
    config = TrainConfig.from_dict({"tasks": [task], "trainer": {"max_epochs": 1, "progress_bar": False}})
    with pytest.raises(ValueError, match="task 'phase': decision_threshold 0.3 needs two classes, the task has 3"):
        train(config, tmp_path / "run", progress_bar=False)
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_a_checkpoint_written_before_thresholds_predicts_the_most_probable_class(binary_run, tmp_path):
    """The same weights with config.json as written before thresholds existed (no ``decision_thresholds`` key, no
    ``decision_threshold`` task setting): it loads, its probabilities are the same and its classes are the argmax."""
    _, checkpoint_dir = binary_run
    old = tmp_path / "old"
    shutil.copytree(checkpoint_dir, old)
    config = json.loads((old / "config.json").read_text())
    del config["model"]["decision_thresholds"]
    for task in config["model"]["tasks"]:
        del task["decision_threshold"]
    (old / "config.json").write_text(json.dumps(config))
    formulas = imbalanced_alloys(80, seed=4)["formula"].tolist()
    before, now = load_checkpoint(old), load_checkpoint(checkpoint_dir)
    assert before.model.decision_threshold("forms") is None and now.model.decision_threshold("forms") is not None
    old_table, new_table = before.predict(formulas, distances=False), now.predict(formulas, distances=False)
    columns = ["forms_proba_0 [probability]", "forms_proba_1 [probability]"]
    np.testing.assert_array_equal(old_table[columns].to_numpy(float), new_table[columns].to_numpy(float))
    assert (old_table["forms"] == np.array(["0", "1"])[old_table[columns].to_numpy(float).argmax(axis=1)]).all()
