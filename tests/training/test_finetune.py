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


def test_finetune_refuses_an_ensemble_in_one_line(tiny_ensemble, tmp_path, capsys):
    out = tmp_path / "tuned"
    code = main(["finetune", "--checkpoint", str(tiny_ensemble), "--tasks", "bulk_modulus", "--out", str(out),
                 "--no-progress"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "an ensemble checkpoint (3 members)" in err and "fm train --ensemble N" in err
    assert not (out / "checkpoint").exists()
    # one member's own run folder is an ordinary run: it fine-tunes
    member = tiny_ensemble / "members" / "member_1"
    assert main(["finetune", "--checkpoint", str(member), "--tasks", "bulk_modulus", "--out", str(out),
                 "--max-epochs", "2", "--no-progress"]) == 0  # fmt: skip
    assert not load_checkpoint(out).is_ensemble
