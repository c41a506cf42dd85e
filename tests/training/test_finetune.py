"""`fm finetune`: retrain chosen heads on a frozen encoder; everything else stays bit-identical."""

import json

import pytest
import torch

from fm_engine.checkpoints import load_checkpoint
from fm_engine.cli import main
from fm_engine.training import TrainConfig, train
from tests.conftest import tiny_config_dict


def test_finetune_retrains_only_the_named_head(tiny_run, tmp_path, capsys):
    out = tmp_path / "tuned"
    assert main(["finetune", "--checkpoint", str(tiny_run), "--tasks", "hea_phase", "--out", str(out),
                 "--max-epochs", "3", "--lr", "0.01", "--no-progress"]) == 0  # fmt: skip
    before = load_checkpoint(tiny_run).model.state_dict()
    after = load_checkpoint(out).model.state_dict()
    assert before.keys() == after.keys()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.startswith("heads.hea_phase.") for key in changed)
    frozen = [key for key in before if not key.startswith("heads.hea_phase.")]
    assert any(key.startswith("encoder.") and "running_mean" in key for key in frozen)  # BatchNorm stats too
    card = json.loads((out / "checkpoint" / "card.json").read_text())
    tuned = card["finetune"]
    assert tuned["trained_heads"] == ["hea_phase"]
    assert tuned["test_metrics_before"]["bulk_modulus"] == tuned["test_metrics_after"]["bulk_modulus"]
    assert "accuracy" in tuned["test_metrics_after"]["hea_phase"]
    assert "## Fine-tuning" in capsys.readouterr().out


def test_finetune_of_a_weight_averaged_run_keeps_frozen_parameters_bit_identical(tiny_data, tmp_path):
    source = tmp_path / "averaged"
    train(TrainConfig.from_dict(tiny_config_dict(tiny_data, ema_decay=0.9)), source)
    out = tmp_path / "tuned"
    assert main(["finetune", "--checkpoint", str(source), "--tasks", "bulk_modulus", "--out", str(out),
                 "--max-epochs", "3", "--lr", "0.01", "--no-progress"]) == 0  # fmt: skip
    assert load_checkpoint(out).card.config["trainer"]["ema_decay"] == 0.9  # the fine-tune averages too
    before = load_checkpoint(source).model.state_dict()
    after = load_checkpoint(out).model.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.startswith("heads.bulk_modulus.") for key in changed)


def test_finetune_names_unknown_tasks(tiny_run, tmp_path, capsys):
    code = main(["finetune", "--checkpoint", str(tiny_run), "--tasks", "hardness", "--out", str(tmp_path / "x"),
                 "--no-progress"])  # fmt: skip
    assert code == 2
    assert "unknown task(s) to fine-tune: hardness" in capsys.readouterr().err


@pytest.mark.parametrize("tasks", [""])
def test_finetune_needs_a_task(tiny_run, tmp_path, tasks, capsys):
    assert main(["finetune", "--checkpoint", str(tiny_run), "--tasks", tasks, "--out", str(tmp_path / "y")]) == 2
    assert "(none given)" in capsys.readouterr().err


def test_finetune_of_an_ensemble_retrains_every_members_head_and_recalibrates(tiny_ensemble, tmp_path, capsys):
    out = tmp_path / "tuned"
    assert main(["finetune", "--checkpoint", str(tiny_ensemble), "--tasks", "bulk_modulus", "--out", str(out),
                 "--max-epochs", "3", "--lr", "0.01", "--no-progress"]) == 0  # fmt: skip
    source, tuned = load_checkpoint(tiny_ensemble), load_checkpoint(out)
    assert tuned.is_ensemble and len(tuned.members) == len(source.members) == 3
    for old, new in zip(source.members, tuned.members, strict=True):  # each member from its own start
        before, after = old.state_dict(), new.state_dict()
        changed = {key for key in before if not torch.equal(before[key], after[key])}
        assert changed and all(key.startswith("heads.bulk_modulus.") for key in changed)
    seeds = [load_checkpoint(out / "members" / f"member_{k}").card.seed for k in range(3)]
    assert seeds == source.card.ensemble.seeds  # the members' own seeds
    assert tuned.card.ensemble.calibration["bulk_modulus"] is not None  # fitted again on the validation split
    record = tuned.card.finetune
    assert record.source_checkpoint_id == source.checkpoint_id and record.trained_heads == ["bulk_modulus"]
    ensemble_before = {task.name: task.test_metrics for task in source.card.tasks}
    assert record.test_metrics_before == ensemble_before  # the source ensemble's own figures
    assert record.test_metrics_after == {task.name: task.test_metrics for task in tuned.card.tasks}
    assert record.test_metrics_after["hea_phase"] == ensemble_before["hea_phase"]  # an untouched head scores the same
    assert "## Fine-tuning" in capsys.readouterr().out
    frame = tuned.predict(["Al0.3CoCrFeNi"], distances=False)
    assert frame["bulk_modulus_std [GPa]"].iloc[0] > 0
