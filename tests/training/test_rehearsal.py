"""`fm rehearsal`: tasks learned one after another with a replay of earlier tasks' labels."""

import json
from pathlib import Path

import pandas as pd
import pytest

from fm_engine.cards import format_value, read_card
from fm_engine.checkpoints import load_checkpoint
from fm_engine.cli import main
from fm_engine.training.rehearsal import RehearsalConfig, run_rehearsal
from tests.conftest import tiny_config_dict

STEPS = ["step_1_bulk_modulus", "step_2_hea_phase", "step_3_yield_strength"]


def rehearsal_dict(tiny_data: Path, replay_ratio: float, epochs: int = 20) -> dict:
    return tiny_config_dict(tiny_data, max_epochs=epochs, patience=100) | {"replay_ratio": replay_ratio}


@pytest.fixture(scope="module")
def rehearsals(tiny_data, tmp_path_factory):
    """The same 3-task sequence with half of each earlier task replayed, and with no replay."""
    root = tmp_path_factory.mktemp("rehearsal")
    return {
        ratio: run_rehearsal(RehearsalConfig.from_dict(rehearsal_dict(tiny_data, ratio)), root / f"replay_{ratio}")
        for ratio in (0.5, 0.0)
    }


def test_every_step_leaves_a_loadable_checkpoint_and_predictions(rehearsals):
    result = rehearsals[0.5]
    assert result.state == "done"
    for k, step in enumerate(STEPS, start=1):
        checkpoint = load_checkpoint(result.out / step)
        assert len(checkpoint.model.tasks) == k  # one head added per step
        for task in checkpoint.model.tasks:
            predictions = pd.read_parquet(result.out / step / "predictions" / f"{task}.parquet")
            assert set(predictions["split"]) == {"val", "test"} and len(predictions) > 0
    assert list(load_checkpoint(result.out).model.tasks) == ["bulk_modulus", "hea_phase", "yield_strength"]
    status = json.loads((result.out / "status.json").read_text())
    assert status["kind"] == "rehearsal" and status["state"] == "done"
    assert [s["state"] for s in status["steps"]] == ["done"] * 3


def test_the_final_cards_training_time_is_every_steps_together(rehearsals):
    out = rehearsals[0.5].out
    steps = [read_card(out / step / "checkpoint").training.wall_time_s for step in STEPS]
    card = read_card(out / "checkpoint")
    assert card.training.wall_time_s == pytest.approx(sum(steps), abs=0.02)
    assert card.training.wall_time_s > steps[-1]
    assert f"- wall time s: {format_value(card.training.wall_time_s)}" in (out / "checkpoint" / "card.md").read_text()
    assert load_checkpoint(out).model  # the rewritten card still loads


def test_one_split_for_every_step(rehearsals):
    """An early task's test compositions are never trained on at a later step."""
    out = rehearsals[0.5].out
    first = pd.read_csv(out / STEPS[0] / "checkpoint" / "compositions.csv")
    last = pd.read_csv(out / STEPS[2] / "checkpoint" / "compositions.csv").set_index("composition")
    assert (last.loc[first["composition"], "split"].to_numpy() == first["split"].to_numpy()).all()


def test_replay_keeps_the_first_task_better_than_no_replay(rehearsals):
    with_replay = rehearsals[0.5].forgetting.set_index("task")
    without = rehearsals[0.0].forgetting.set_index("task")
    # Step 1 is identical (same seed, nothing to replay yet) ...
    assert with_replay.loc["bulk_modulus", "step_1"] == pytest.approx(without.loc["bulk_modulus", "step_1"])
    # ... afterwards, the replayed task is remembered better than the forgotten one.
    assert with_replay.loc["bulk_modulus", "final"] < without.loc["bulk_modulus", "final"]
    assert with_replay.loc["bulk_modulus", "forgetting"] < without.loc["bulk_modulus", "forgetting"]
    assert with_replay.loc["bulk_modulus", "unit"] == "GPa"


def test_replay_sizes_follow_the_ratios(rehearsals):
    metrics = pd.read_csv(rehearsals[0.5].out / "metrics.csv")
    assert set(metrics["step"]) == {1, 2, 3}
    card = json.loads((rehearsals[0.5].out / STEPS[1] / "checkpoint" / "card.json").read_text())
    kept = {t["name"]: t["compositions"] for t in card["tasks"]}
    assert kept["bulk_modulus"]["train_kept"] == round(kept["bulk_modulus"]["train"] * 0.5)
    assert kept["hea_phase"]["train_kept"] == kept["hea_phase"]["train"]
    no_replay = json.loads((rehearsals[0.0].out / STEPS[2] / "checkpoint" / "card.json").read_text())
    assert {t["name"]: t["compositions"]["train_kept"] for t in no_replay["tasks"]}["bulk_modulus"] == 0


def write_toml(path: Path, tiny_data: Path, *, extra: str = "") -> Path:
    path.write_text(
        f"""
name = "toml-rehearsal"
seed = 7
replay_ratio = 0.2
notes_for_other_tool = "ignored"
{extra}
[[tasks]]
name = "bulk_modulus"
data_files = ["{tiny_data / "bulk.csv"}"]
composition_column = "formula"
data_column = "target"
unit = "GPa"

[[tasks]]
name = "hea_phase"
type = "classification"
data_files = ["{tiny_data / "phase.csv"}"]

[replay_ratios]
bulk_modulus = 0.5

[model.encoder]
type = "mlp"
hidden_dims = [32]

[trainer]
max_epochs = 2
progress_bar = false
gpu_hours = 3

[design]
targets = [{{task = "bulk_modulus", value = 200}}]
steps = 20
seeds = {{source = "random", n = 4}}
""",
        encoding="utf-8",
    )
    return path


def test_cli_rehearsal_from_toml_warns_unknown_keys_and_designs(tiny_data, tmp_path, capsys):
    config = write_toml(tmp_path / "run.toml", tiny_data)
    out = tmp_path / "out"
    assert main(["rehearsal", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "unknown key 'notes_for_other_tool'" in captured.err
    assert "unknown key 'trainer.gpu_hours'" in captured.err
    assert "Forgetting" in captured.out
    recipes = pd.read_csv(out / "design" / "recipes.csv")
    assert len(recipes) == 4 and "bulk_modulus [GPa]" in recipes.columns
    assert "design/" in (out / "SUMMARY.md").read_text()
    # The same folder again: refused without --resume; --resume keeps finished steps.
    assert main(["rehearsal", "--config", str(config), "--out", str(out), "--no-progress"]) == 2
    assert "already holds a rehearsal" in capsys.readouterr().err
    weights = out / STEPS[0] / "checkpoint" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    (out / "step_2_hea_phase" / "checkpoint" / "card.json").unlink()  # as if step 2 was interrupted
    assert main(["rehearsal", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert weights.stat().st_mtime_ns == before
    assert load_checkpoint(out / "step_2_hea_phase").card.name.endswith("+hea_phase")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"replay_ratios": {"nope": 0.5}}, "replay_ratios names unknown task(s): nope"),
        ({"replay_ratio": 1.5}, "replay ratio must be in [0, 1]"),
        ({"design": {"targets": [{"task": "band_gap", "value": 1}]}}, "not in the rehearsal: band_gap"),
    ],
)
def test_bad_rehearsal_configs_are_named(tiny_data, change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        RehearsalConfig.from_dict(rehearsal_dict(tiny_data, 0.1) | change)


def test_a_rehearsal_needs_two_tasks(tiny_data):
    config = rehearsal_dict(tiny_data, 0.1)
    config["tasks"] = config["tasks"][:1]
    with pytest.raises(ValueError, match="at least two tasks"):
        RehearsalConfig.from_dict(config)


def test_the_sample_config_is_valid_without_warnings(recwarn):
    config = RehearsalConfig.from_file(Path(__file__).parents[2] / "samples" / "rehearsal.toml")
    assert config.task_names == ["bulk_modulus", "band_gap", "hea_phase"]
    assert config.replay_for("bulk_modulus") == 0.2 and config.replay_for("band_gap") == 0.1
    assert not [w for w in recwarn if "unknown key" in str(w.message)]


def test_a_rehearsal_runs_in_one_process(tiny_data, tmp_path):
    config = RehearsalConfig.from_dict(rehearsal_dict(tiny_data, 0.1))
    config.train.trainer.devices = 2
    with pytest.raises(ValueError, match="one process"):
        run_rehearsal(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()
