"""Real Lightning training on tiny real data: run files, checkpoints, cards, balancer, encoders."""

import json

import pytest
import torch
from safetensors.torch import load_file

from fm_engine.checkpoints import load_checkpoint
from fm_engine.training import RunDirectory, TrainConfig, train
from tests.conftest import tiny_config_dict


def test_tiny_run_writes_run_files_checkpoint_and_card(tiny_run):
    run = RunDirectory(tiny_run)
    status = run.read_status()
    assert status["state"] == "done" and status["epoch"] == 3
    assert {"pid", "started_at", "finished_at", "max_epochs", "test_metrics"} <= set(status)
    epochs = [r for r in run.read_metrics() if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [0, 1, 2]
    for key in ("train/loss", "val/loss", "val/bulk_modulus/mae", "val/hea_phase/accuracy",
                "val/yield_strength/rmse", "train/autoencoder"):  # fmt: skip
        assert key in epochs[-1], key
    card = json.loads((run.checkpoint_path / "card.json").read_text())
    by_task = {t["name"]: t for t in card["tasks"]}
    assert by_task["bulk_modulus"]["unit"] == "GPa"
    assert {"mae", "rmse", "r2"} <= set(by_task["bulk_modulus"]["test_metrics"])
    assert {"accuracy", "macro_f1", "roc_auc"} <= set(by_task["hea_phase"]["test_metrics"])
    assert "rmse" in by_task["yield_strength"]["test_metrics"]
    for task in by_task.values():  # every test metric has a 95 % bootstrap interval around it
        metrics, intervals = task["test_metrics"], task["test_metrics_ci95"]
        assert set(intervals) == set(metrics) - {"n"}
        for key, (low, high) in intervals.items():
            assert low <= high, (task["name"], key)
            if key in ("mae", "accuracy"):  # means: the estimate lies inside its percentile interval
                assert low <= metrics[key] <= high, (task["name"], key)
    mae_low, mae_high = by_task["bulk_modulus"]["test_metrics_ci95"]["mae"]
    assert mae_high - mae_low > 0
    assert f"[{mae_low:.4g}, {mae_high:.4g}]" in (run.checkpoint_path / "card.md").read_text()
    assert card["training"]["wall_time_s"] > 0 and card["versions"]["torch"].startswith("2.13")
    assert sum(card["split"].values()) > 0
    assert "| bulk_modulus | regression | GPa |" in (run.checkpoint_path / "card.md").read_text()
    # balanced class weights were resolved to numbers and stored
    loaded = load_checkpoint(tiny_run)
    assert isinstance(loaded.model.tasks["hea_phase"].class_weights, list)


def test_training_reduces_the_loss(tiny_data, tmp_path):
    config = TrainConfig.from_dict(tiny_config_dict(tiny_data, max_epochs=12, patience=50))
    train(config, tmp_path / "run")
    epochs = [r for r in RunDirectory(tmp_path / "run").read_metrics() if r["kind"] == "epoch"]
    assert epochs[-1]["train/loss"] < 0.8 * epochs[0]["train/loss"]
    assert min(r["val/loss"] for r in epochs) < epochs[0]["val/loss"]


def test_same_seed_gives_identical_weights(tiny_data, tmp_path):
    weights = []
    for name in ("a", "b"):
        config = TrainConfig.from_dict(tiny_config_dict(tiny_data, max_epochs=2))
        train(config, tmp_path / name)
        weights.append(load_file(str(tmp_path / name / "checkpoint" / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_split_seed_keeps_the_split_while_the_seed_changes_the_weights(tiny_data, tmp_path):
    runs = {}
    for seed in (1, 2):
        data = tiny_config_dict(tiny_data, max_epochs=2) | {"seed": seed}
        data["data"] = dict(data.get("data", {}), split_seed=7)
        train(TrainConfig.from_dict(data), tmp_path / str(seed))
        checkpoint = tmp_path / str(seed) / "checkpoint"
        card = json.loads((checkpoint / "card.json").read_text())
        assert (card["seed"], card["split_seed"]) == (seed, 7)
        runs[seed] = (load_file(str(checkpoint / "model.safetensors")), (checkpoint / "compositions.csv").read_text())
    (weights_1, split_1), (weights_2, split_2) = runs[1], runs[2]
    assert split_1 == split_2  # the same compositions in the same splits
    assert not all(torch.equal(weights_1[k], weights_2[k]) for k in weights_1)


@pytest.mark.parametrize(
    "model_section",
    [
        {
            "encoder": {"type": "transformer", "d_model": 16, "nhead": 2, "num_layers": 1, "latent_dim": 16},
            "loss_balancer": True,
        },
        {
            "encoder": {"type": "mlp", "hidden_dims": [32, 32], "residual": True, "norm": "layer"},
            "autoencoder": {"enabled": False},
        },
    ],  # fmt: skip
    ids=["transformer+balancer", "residual-mlp-no-ae"],
)
def test_encoder_and_balancer_variants_train_end_to_end(tiny_data, tmp_path, model_section):
    data = tiny_config_dict(tiny_data, max_epochs=2)
    data["model"] = model_section
    result = train(TrainConfig.from_dict(data), tmp_path / "run")
    model = load_checkpoint(tmp_path / "run").model
    assert result.state == "done"
    if model_section.get("loss_balancer"):
        assert any(float(p.detach()) != 0.0 for p in model.log_sigma.values())  # the balancer learned
    else:
        assert model.autoencoder is None


def test_existing_run_directory_is_not_overwritten(tiny_run, tiny_data):
    with pytest.raises(ValueError, match="already holds a run"):
        train(TrainConfig.from_dict(tiny_config_dict(tiny_data)), tiny_run)


def test_config_errors_name_the_key(tiny_data, tmp_path):
    data = tiny_config_dict(tiny_data)
    data["trainer"]["epochs"] = 3
    with pytest.raises(ValueError, match="unknown key 'trainer.epochs'"):
        TrainConfig.from_dict(data)
    data = tiny_config_dict(tiny_data)
    data["model"]["encoder"]["layers"] = 3
    with pytest.raises(ValueError, match="'model.encoder.layers'"):
        TrainConfig.from_dict(data)
    data = tiny_config_dict(tiny_data)
    data["tasks"][0]["colour"] = "red"
    with pytest.raises(ValueError, match="task 'bulk_modulus': unknown key 'colour'"):
        TrainConfig.from_dict(data)
    with pytest.raises(ValueError, match="task 'hea_phase': unknown key 'class_weight'"):
        TrainConfig.from_dict({"tasks": [{"bundled": "hea_phase", "class_weight": "balanced"}]})
    with pytest.raises(ValueError, match="unknown key 'learning_rate'"):
        TrainConfig.from_dict({"tasks": [{"bundled": "band_gap"}], "learning_rate": 1})


def test_minimal_task_for_a_users_own_csv(tmp_path):
    (tmp_path / "mine.csv").write_text(
        "formula,target\n" + "".join(f"Fe{i}Ni{60 - i},{i * 1.5}\n" for i in range(1, 60))
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        "tasks:\n  - name: hardness\n    type: regression\n    data_files: [mine.csv]\n"
        "    composition_column: formula\n    data_column: target\n"
    )
    config = TrainConfig.from_file(config_file)
    assert config.task_specs()[0].data_files == [str(tmp_path / "mine.csv")]  # relative to the config
