"""The typed model card: old cards read and render unchanged, broken ones name the key, new ones round-trip."""

import json
import shutil
from pathlib import Path

import pytest

from fm_engine.cards import CheckpointError, FinetuneRecord, ModelCard, format_value, read_card
from fm_engine.checkpoints import load_checkpoint

CARD_V1 = Path(__file__).parent / "fixtures" / "card_v1"  # card.json and card.md written by fm_engine 0.1.0


def card_v1() -> dict:
    return json.loads((CARD_V1 / "card.json").read_text(encoding="utf-8"))


def test_a_card_written_before_the_typed_card_reads_writes_and_renders_as_it_was():
    old = card_v1()
    card = ModelCard.from_mapping(old)
    assert card.to_mapping() == old and list(card.to_mapping()) == list(old)
    assert card.render_markdown() == (CARD_V1 / "card.md").read_text(encoding="utf-8")
    bulk = card.task("bulk_modulus")
    assert bulk.unit == "GPa" and bulk.test_metrics["mae"] == old["tasks"][0]["test_metrics"]["mae"]
    assert card.task("hea_phase").unit_or_classes == "BCC, FCC, HCP, multiphase"
    assert card.training.epochs_run == old["training"]["epochs_run"] and card.finetune is None


def test_a_checkpoint_with_an_old_card_loads_with_its_card_typed(tiny_run, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_run / "checkpoint", checkpoint)
    shutil.copy(CARD_V1 / "card.json", checkpoint / "card.json")
    loaded = load_checkpoint(checkpoint)
    assert loaded.card == ModelCard.from_mapping(card_v1()) and loaded.card_problem == ""
    assert loaded.card.task_names == ["bulk_modulus", "hea_phase", "yield_strength"]


def test_the_card_a_training_writes_round_trips(tiny_run):
    written = json.loads((tiny_run / "checkpoint" / "card.json").read_text(encoding="utf-8"))
    card = read_card(tiny_run / "checkpoint")
    assert card.to_mapping() == written
    assert card.render_markdown() == (tiny_run / "checkpoint" / "card.md").read_text(encoding="utf-8")
    assert card.checkpoint_id == load_checkpoint(tiny_run).checkpoint_id


def test_missing_optional_keys_take_their_defaults():
    card = ModelCard.from_mapping({"tasks": [{"name": "gap", "type": "regression"}]})
    assert card.task("gap").unit == "" and card.split == {} and card.training.epochs_run is None
    assert "| gap | regression |" in card.render_markdown()
    assert ModelCard.from_mapping(card_v1() | {"added_by_a_later_version": 1}).name == "tiny"  # unknown: ignored


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tasks": 5}, "key tasks: expected a list, got 5"),
        ({"tasks": None}, "key tasks is missing"),
        ({"tasks": [{"type": "regression"}]}, "key tasks[0].name is missing"),
        ({"tasks": [{"name": "gap", "type": "regression", "test_metrics": {"mae": "low"}}]},
         "key tasks[0].test_metrics.mae: expected numbers"),
        ({"n_parameters": "many"}, "key n_parameters: expected an integer, got 'many'"),
        ({"training": {"best_val_loss": [1]}}, "key training.best_val_loss: expected a number"),
    ],
)  # fmt: skip
def test_a_broken_card_names_the_key(change, message):
    with pytest.raises(CheckpointError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ModelCard.from_mapping(card_v1() | change)
    with pytest.raises(CheckpointError, match="not a JSON object"):
        ModelCard.from_mapping([1, 2])


def test_a_broken_card_leaves_the_model_loadable(tiny_run, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_run / "checkpoint", checkpoint)
    (checkpoint / "card.json").write_text(json.dumps(card_v1() | {"tasks": 5}), encoding="utf-8")
    loaded = load_checkpoint(checkpoint)
    assert loaded.card is None and "key tasks: expected a list" in loaded.card_problem
    assert len(loaded.predict(["Fe2O3"])) == 1


def test_a_fine_tuned_card_renders_before_and_after():
    card = ModelCard.from_mapping(card_v1())
    card.finetune = FinetuneRecord(source_checkpoint_id="0123456789abcdef", trained_heads=["hea_phase"],
                                   frozen="encoder", test_metrics_before={"hea_phase": {"accuracy": 0.5, "n": 16.0}},
                                   test_metrics_after={"hea_phase": {"accuracy": 0.75, "n": 16.0}})  # fmt: skip
    text = card.render_markdown()
    assert "Retrained heads: hea_phase; frozen: encoder (from checkpoint 0123456789ab)." in text
    assert "| hea_phase | accuracy | 0.5 | 0.75 |" in text
    assert ModelCard.from_mapping(card.to_mapping()) == card


@pytest.mark.parametrize(
    ("value", "shown"),
    [(16920.0, "16920"), (16920, "16920"), (0.08537123, "0.08537"), (1.5e-6, "1.5e-06"), (None, "n/a"),
     (float("nan"), "n/a"), (2.0, "2")],
)  # fmt: skip
def test_card_values_show_counts_whole_and_other_floats_to_four_digits(value, shown):
    assert format_value(value) == shown
