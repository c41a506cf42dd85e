"""``start_from``: a run's encoder starts from a checkpoint (a tiny foundation made here on a tiny corpus in the
corpus contract's format), gets heads for its own tasks, keeps the start's heads on a replay of the corpus (or drops
them), and a run from scratch is what it always was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from fm_engine.checkpoints import load_checkpoint
from fm_engine.cli import main
from fm_engine.columns import with_unit
from fm_engine.compositions import parse_many
from fm_engine.training import TrainConfig, train
from fm_engine.training.start import REPLAY_FILE, StartError, config_for_start, plan_start, resolve_start
from tests.ceiling import CEILING_S

ELEMENTS = ["Fe", "Ni", "Co", "Cr", "Al", "Cu", "Ti", "Mn", "V", "Mo"]
ENTHALPY = dict(zip(ELEMENTS, np.linspace(-0.8, 0.4, len(ELEMENTS)), strict=True))  # eV/atom per element
HARDNESS = dict(zip(ELEMENTS, np.linspace(2.0, 9.0, len(ELEMENTS))[::-1], strict=True))  # GPa per element
KEPT_TOLERANCE = 1.5  # a kept head's test MAE after fine-tuning with replay: at most this times its MAE before


def random_formulas(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    formulas = []
    for _ in range(n):
        chosen = rng.choice(ELEMENTS, size=int(rng.integers(2, 4)), replace=False)
        fractions = rng.dirichlet(np.ones(len(chosen)))
        formulas.append("".join(f"{el}{f:.3f}" for el, f in zip(chosen, fractions, strict=True)))
    return formulas


def property_of(formula_keys: list[str], per_element: dict[str, float]) -> np.ndarray:
    parsed = parse_many(formula_keys)
    index = {el: i for i, el in enumerate(ELEMENTS)}
    values = []
    for key in parsed.keys:
        total = 0.0
        for part in pd.Series([key]).str.findall(r"([A-Z][a-z]?)([0-9.]+)")[0]:
            total += per_element[part[0]] * float(part[1]) if part[0] in index else 0.0
        values.append(total)
    return np.asarray(values)


def write_tiny_corpus(folder: Path, n: int = 700) -> Path:
    """A corpus folder in the contract's format: corpus.parquet, tasks.json, manifest.json."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(parse_many(random_formulas(n, seed=1)).keys))
    rng = np.random.default_rng(2)
    enthalpy = property_of(keys, ENTHALPY)
    metal = property_of(keys, {el: float(el in ("Fe", "Ni", "Co", "Cu", "Al")) for el in ELEMENTS}) > 0.5
    frame = pd.DataFrame({
        "composition": keys, "formula": keys, "split": rng.choice(["train", "val", "test"], len(keys), p=[.8, .1, .1]),
        "formation_enthalpy": np.where(rng.random(len(keys)) < 0.9, enthalpy, np.nan),
        "is_metal": metal.astype(np.float64),
    })  # fmt: skip
    frame.to_parquet(folder / "corpus.parquet", index=False)
    source = {"dataset": "tiny synthetic corpus", "file": "", "package": "", "version": "", "license": "CC0",
              "citation": ""}  # fmt: skip
    tasks = [
        {"name": "formation_enthalpy", "type": "regression", "unit": "eV/atom", "description": "synthetic",
         "classes": None, "source": source},
        {"name": "is_metal", "type": "classification", "unit": "", "description": "synthetic",
         "classes": ["no", "yes"], "source": source},
    ]  # fmt: skip
    (folder / "tasks.json").write_text(json.dumps({"tasks": tasks, "rules": [], "counts": {}}))
    (folder / "manifest.json").write_text(json.dumps({"n_compositions": len(keys), "builder": "test"}))
    return folder


def corpus_task(corpus: Path, name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "data_files": [str(corpus / "corpus.parquet")], "composition_column": "composition",
            "data_column": name, "split_column": "split", **extra}  # fmt: skip


@pytest.fixture(scope="module")
def foundation(tmp_path_factory) -> Path:
    """A tiny foundation: an ordinary checkpoint trained on the tiny corpus's two tasks."""
    folder = tmp_path_factory.mktemp("foundation")
    corpus = write_tiny_corpus(folder / "corpus")
    config = TrainConfig.from_dict({
        "name": "tiny-foundation", "seed": 3, "start_from": "scratch",
        "tasks": [corpus_task(corpus, "formation_enthalpy", unit="eV/atom"),
                  corpus_task(corpus, "is_metal", type="classification", classes=["no", "yes"])],
        "model": {"encoder": {"hidden_dims": [64, 32]}, "autoencoder": {"hidden_dims": [32]}},
        "data": {"batch_size": 64}, "optimizer": {"lr": 0.005},
        "trainer": {"max_epochs": 40, "patience": 40, "progress_bar": False},
    })  # fmt: skip
    train(config, folder / "run")
    return folder / "run"


@pytest.fixture(scope="module")
def user_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("user") / "hardness.csv"
    formulas = random_formulas(220, seed=9)
    pd.DataFrame({"formula": formulas, "target": property_of(formulas, HARDNESS)}).to_csv(path, index=False)
    return path


def user_config(user_csv: Path, **top: Any) -> dict[str, Any]:
    finetune = top.pop("finetune", {})
    return {
        "name": "tuned", "seed": 5,
        "tasks": [{"name": "hardness", "data_files": [str(user_csv)], "composition_column": "formula",
                   "data_column": "target", "unit": "GPa"}],
        "data": {"batch_size": 64},
        "trainer": {"max_epochs": 15, "patience": 15, "progress_bar": False},
        "finetune": finetune, **top,
    }  # fmt: skip


def encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}


def test_the_model_starts_from_the_start_checkpoints_encoder_with_new_heads(foundation, user_csv, tmp_path):
    config = TrainConfig.from_dict(user_config(user_csv, start_from=str(foundation)))
    start = resolve_start(config)
    resolved, notes = config_for_start(config, start)
    plan = plan_start(resolved, start, tmp_path, notes)
    expected = encoder_state(load_checkpoint(foundation).model)
    actual = encoder_state(plan.model)
    assert actual.keys() == expected.keys() and all(torch.equal(actual[k], expected[k]) for k in expected)
    assert list(plan.model.tasks) == ["formation_enthalpy", "is_metal", "hardness"]
    assert plan.model.tasks["hardness"].unit == "GPa" and plan.monitor_tasks == ["hardness"]
    assert resolved.model.encoder.hidden_dims == [64, 32]  # the start's shape, not the default [256, 128]
    assert any(note.startswith("model.encoder:") for note in notes)
    replay = pd.read_parquet(tmp_path / REPLAY_FILE)
    own = set(parse_many(pd.read_csv(user_csv)["formula"].tolist()).keys)
    assert not own & set(replay["composition"])  # the run's own compositions are never replayed
    assert 0 < replay["formation_enthalpy"].notna().sum() <= 3 * 512
    # hardness is a straight line of the formation enthalpy (both fraction-weighted sums of linear per-element
    # values): its new head starts from the kept enthalpy head (finetune.related_head_start, the default)
    started = [note for note in plan.record.notes if note.startswith("hardness: head started from")]
    assert started and started[0].startswith("hardness: head started from formation_enthalpy (correlation -0.9")
    off = TrainConfig.from_dict(user_config(user_csv, start_from=str(foundation),
                                            finetune={"related_head_start": False}))  # fmt: skip
    (tmp_path / "fresh").mkdir()
    start_off = resolve_start(off)
    fresh = plan_start(config_for_start(off, start_off)[0], start_off, tmp_path / "fresh", [])
    assert not any("head started" in note for note in fresh.record.notes)


def test_fine_tuning_keeps_the_start_heads_within_tolerance_and_records_the_start(foundation, user_csv, tmp_path):
    result = train(TrainConfig.from_dict(user_config(user_csv, start_from=str(foundation))), tmp_path / "run")
    checkpoint = load_checkpoint(result.checkpoint)
    card = checkpoint.card
    start = load_checkpoint(foundation)
    assert card.start.kind == "checkpoint" and card.start.checkpoint_id == start.checkpoint_id
    assert card.start.kept_heads == ["formation_enthalpy", "is_metal"] and not card.start.frozen_heads
    assert card.start.replay_rows["formation_enthalpy"] > 0
    before = card.start.test_metrics_before["formation_enthalpy"]["mae"]
    after = card.task("formation_enthalpy").test_metrics["mae"]
    assert after <= KEPT_TOLERANCE * before, (before, after)
    assert card.task("hardness").unit == "GPa" and card.task("hardness").test_metrics["r2"] > 0.5
    recorded = yaml_config(tmp_path / "run")
    assert recorded["start_from"] == str(foundation.resolve() / "checkpoint")
    assert recorded["start_checkpoint_id"] == start.checkpoint_id
    assert card.config["start_checkpoint_id"] == start.checkpoint_id
    markdown = (result.checkpoint / "card.md").read_text()
    assert "## Start" in markdown and start.checkpoint_id[:12] in markdown
    assert "batch-norm statistics kept; kept heads' learning rate x0.1" in markdown  # the default recipe


def yaml_config(run: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())


def test_a_frozen_encoder_stays_the_start_encoder_bit_for_bit(foundation, user_csv, tmp_path):
    config = user_config(user_csv, start_from=str(foundation), finetune={"freeze_encoder_epochs": 15,
                                                                         "keep_start_heads": False})  # fmt: skip
    result = train(TrainConfig.from_dict(config), tmp_path / "run")
    model = load_checkpoint(result.checkpoint).model
    expected = encoder_state(load_checkpoint(foundation).model)
    assert all(torch.equal(encoder_state(model)[k], expected[k]) for k in expected)
    assert list(model.tasks) == ["hardness"]  # keep_start_heads: false drops them
    assert load_checkpoint(result.checkpoint).card.start.dropped_heads == ["formation_enthalpy", "is_metal"]


@pytest.mark.parametrize("scale", [1.0, 1e-6])
def test_the_kept_heads_learn_at_their_own_rate(foundation, user_csv, tmp_path, scale):
    finetune = {"kept_heads_lr_scale": scale, "freeze_norm_statistics": True}
    config = TrainConfig.from_dict(user_config(user_csv, start_from=str(foundation), finetune=finetune))
    config.trainer.max_epochs, config.trainer.ema_decay = 3, None
    tuned = load_checkpoint(train(config, tmp_path / "run").checkpoint).model.state_dict()
    start = load_checkpoint(foundation).model.state_dict()
    moved = max(float((tuned[k] - v).abs().max()) for k, v in start.items() if k.startswith("heads.is_metal."))
    assert (moved > 1e-3) if scale == 1.0 else (moved < 1e-5), moved  # AdamW steps are about lr x scale
    norms = [k for k in start if k.startswith("encoder.") and "running_" in k]
    assert norms and all(torch.equal(tuned[k], start[k]) for k in norms)  # the start's batch-norm statistics
    assert any(not torch.equal(tuned[k], start[k]) for k in start if k.startswith("encoder.") and "weight" in k)


def test_without_replay_the_kept_heads_stay_frozen_and_the_card_says_so(foundation, user_csv, tmp_path):
    config = user_config(user_csv, start_from=str(foundation), finetune={"replay_rows": 0})
    result = train(TrainConfig.from_dict(config), tmp_path / "run")
    card = load_checkpoint(result.checkpoint).card
    assert card.start.frozen_heads == ["formation_enthalpy", "is_metal"]
    tuned, start = load_checkpoint(result.checkpoint).model, load_checkpoint(foundation).model
    head = "heads.formation_enthalpy."
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in tuned.state_dict().items() if k.startswith(head))
    markdown = (result.checkpoint / "card.md").read_text()
    assert "Kept heads frozen" in markdown and "finetune.replay_rows is 0" in markdown
    assert card.task("formation_enthalpy").unit == "eV/atom" and not card.task("formation_enthalpy").test_metrics
    retrain = ["finetune", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "heads"), "--max-epochs",
               "1", "--no-progress", "--tasks"]  # fmt: skip
    assert main([*retrain, "formation_enthalpy"]) == 2  # a frozen kept head has no data to retrain on
    assert main([*retrain, "hardness"]) == 0  # fm finetune reads the run's data without the frozen heads'


def test_a_named_replay_corpus_that_is_not_one_is_an_error(foundation, user_csv, tmp_path):
    config = user_config(user_csv, start_from=str(foundation), finetune={"replay_corpus": str(tmp_path)})
    with pytest.raises(StartError, match=r"finetune.replay_corpus: .*no corpus.parquet"):
        train(TrainConfig.from_dict(config), tmp_path / "run")


def test_scratch_is_todays_run_and_auto_is_scratch_without_a_shipped_foundation(user_csv, tmp_path):
    from fm_engine.training.start import foundation_installed

    assert not foundation_installed()  # none shipped yet: the default (auto) must be scratch
    auto = train(TrainConfig.from_dict(user_config(user_csv)), tmp_path / "auto")
    scratch = train(TrainConfig.from_dict(user_config(user_csv, start_from="scratch")), tmp_path / "scratch")
    a, b = load_checkpoint(auto.checkpoint), load_checkpoint(scratch.checkpoint)
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert a.card.start.kind == "scratch" and yaml_config(tmp_path / "auto")["start_from"] == "scratch"


def test_a_bad_start_is_one_named_error_before_any_data_loads(tmp_path):
    missing_data = {"name": "x", "data_files": [str(tmp_path / "no_such.csv")]}
    config = TrainConfig.from_dict({"tasks": [missing_data], "start_from": str(tmp_path / "nowhere")})
    with pytest.raises(StartError, match=r"start_from: .*nowhere.*no such checkpoint"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(StartError, match="start_from: 'foundation': no foundation checkpoint is installed"):
        train(TrainConfig.from_dict({"tasks": [missing_data], "start_from": "foundation"}), tmp_path / "run")


def test_a_recorded_start_checkpoint_id_must_match(foundation, user_csv, tmp_path):
    config = TrainConfig.from_dict(user_config(user_csv, start_from=str(foundation), start_checkpoint_id="abc"))
    with pytest.raises(StartError, match="start_checkpoint_id abc"):
        train(config, tmp_path / "run")


def test_the_cli_flag_starts_from_a_checkpoint(foundation, user_csv, tmp_path):
    import yaml

    config_path = tmp_path / "c.yaml"
    config = user_config(user_csv, finetune={"keep_start_heads": False})
    config["trainer"]["max_epochs"] = 2
    config_path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "fm_engine.cli", "train", "--config", str(config_path), "--out", str(tmp_path / "r"),
         "--start-from", str(foundation), "--no-progress"],
        capture_output=True, text=True, timeout=CEILING_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "## Start" in done.stdout and "Dropped heads: formation_enthalpy, is_metal" in done.stdout
    assert "eval mode" not in done.stderr  # the start's batch-norm statistics are kept on purpose: no warning


def test_the_cli_names_a_bad_start_and_refuses_it_with_resume(user_csv, tmp_path, capsys):
    import yaml

    config_path = tmp_path / "c.yaml"
    config_path.write_text(yaml.safe_dump(user_config(user_csv)))
    assert main(["train", "--config", str(config_path), "--out", str(tmp_path / "b"), "--start-from",
                 str(tmp_path / "nowhere"), "--no-progress"]) == 2  # fmt: skip
    assert capsys.readouterr().err.startswith("error: start_from:")
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--start-from", "scratch"]) == 2
    assert "--start-from cannot be combined with --resume" in capsys.readouterr().err


@pytest.mark.parametrize("replay_rows", [64, 0])
def test_a_run_from_a_checkpoint_resumes_with_its_start(foundation, user_csv, tmp_path, replay_rows):
    import shutil

    finetune = {"replay_rows": replay_rows, "freeze_encoder_epochs": 1}
    config = TrainConfig.from_dict(user_config(user_csv, start_from=str(foundation), finetune=finetune))
    config.trainer.max_epochs = 3
    first = train(config, tmp_path / "run")
    record = load_checkpoint(first.checkpoint).card.start
    compositions = load_checkpoint(first.checkpoint).card.task("formation_enthalpy").compositions
    if replay_rows:  # trained on the replay rows only, never on the whole corpus
        assert record.replay_rows["formation_enthalpy"] == compositions["train"] == replay_rows
    shutil.rmtree(first.checkpoint)  # as if stopped after the last resume state was saved
    resumed = train(config, tmp_path / "run", resume=True)
    card = load_checkpoint(resumed.checkpoint).card
    assert card.start == record and card.task("hardness").test_metrics
    assert card.task("formation_enthalpy").compositions == compositions  # the same replay rows, not the corpus
    assert bool(card.start.frozen_heads) == (replay_rows == 0)


def test_cards_without_a_start_still_read_and_a_start_round_trips(foundation):
    from fm_engine.cards import ModelCard

    old = load_checkpoint(Path(__file__).parents[1] / "regression" / "fixtures" / "checkpoint").card
    assert old is not None and old.start is None
    card = load_checkpoint(foundation).card
    assert card.start.kind == "scratch"
    assert ModelCard.from_mapping(json.loads(json.dumps(card.to_mapping()))) == card


def test_a_rehearsal_refuses_a_checkpoint_start(foundation, user_csv):
    from fm_engine.training.rehearsal import RehearsalConfig

    config = user_config(user_csv, start_from=str(foundation))
    config["tasks"] = [{"bundled": "band_gap"}, {"bundled": "bulk_modulus"}]
    del config["finetune"]
    with pytest.warns(UserWarning, match="ignoring unknown key 'start_from'"):  # not a rehearsal setting
        assert RehearsalConfig.from_dict(config).train.start_from == "auto"
    with pytest.raises(ValueError, match="start_from: a rehearsal's first step starts from scratch"):
        RehearsalConfig(train=TrainConfig.from_dict(config))


def test_a_design_on_the_fine_tuned_model_can_also_target_a_kept_head(foundation, user_csv, tmp_path):
    from fm_engine.inverse import DesignConfig, run_design

    checkpoint = load_checkpoint(train(TrainConfig.from_dict(user_config(user_csv, start_from=str(foundation))),
                                       tmp_path / "run").checkpoint)  # fmt: skip
    enthalpy = []
    for stable in (False, True):
        targets = [{"task": "hardness", "value": 6.0}]
        targets += [{"task": "formation_enthalpy", "range": [-0.8, -0.5]}] if stable else []
        design = DesignConfig.from_dict({
            "targets": targets, "method": "composition", "steps": 60, "random_seed": 1,
            "constraints": {"allowed_elements": ELEMENTS, "max_elements": 3},
            "seeds": {"source": "data", "n": 6, "strategy": "random"},
        })  # fmt: skip
        best = run_design(checkpoint, design).table["formula"].iloc[0]
        column = with_unit("formation_enthalpy", checkpoint.model.tasks["formation_enthalpy"].unit)
        enthalpy.append(float(checkpoint.predict([best])[column].iloc[0]))
    assert enthalpy[1] < enthalpy[0] - 0.05, enthalpy  # the stability target moved the design


def test_heads_the_corpus_has_no_column_for_stay_frozen_the_others_are_replayed(foundation, user_csv, tmp_path):
    corpus = foundation.parent / "corpus"
    partial = tmp_path / "partial"
    partial.mkdir()
    pd.read_parquet(corpus / "corpus.parquet").drop(columns=["is_metal"]).to_parquet(partial / "corpus.parquet")
    config = user_config(user_csv, start_from=str(foundation), finetune={"replay_corpus": str(partial)})
    config["trainer"]["max_epochs"] = 2
    card = load_checkpoint(train(TrainConfig.from_dict(config), tmp_path / "run").checkpoint).card
    assert card.start.frozen_heads == ["is_metal"] and list(card.start.replay_rows) == ["formation_enthalpy"]
    assert card.start.replay_corpus == str(partial.resolve()) and card.task("formation_enthalpy").test_metrics
    assert (
        main(
            [
                "finetune",
                "--checkpoint",
                str(tmp_path / "run"),
                "--out",
                str(tmp_path / "heads"),
                "--tasks",
                "formation_enthalpy",
                "--max-epochs",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )  # its replay rows are re-read
    tuned = load_checkpoint(tmp_path / "heads").card.task("formation_enthalpy")
    assert tuned.compositions == card.task("formation_enthalpy").compositions


def test_a_relative_start_in_a_config_file_is_relative_to_its_folder(foundation, user_csv, tmp_path):
    import os

    import yaml

    config_path = tmp_path / "configs" / "c.yaml"
    config_path.parent.mkdir()
    config_path.write_text(
        yaml.safe_dump(user_config(user_csv, start_from=os.path.relpath(foundation, config_path.parent)))
    )
    start = resolve_start(TrainConfig.from_file(config_path))
    assert start.kind == "checkpoint" and start.checkpoint.path == foundation.resolve() / "checkpoint"


def few_rows_config(tmp_path: Path, n: int, **finetune: Any) -> dict[str, Any]:
    """A fine-tune of ``n`` rows of the user's own (a few dozen: far fewer than the replay), the schedule and
    batch size left to the data size."""
    path = tmp_path / "few.csv"
    formulas = random_formulas(n, seed=11)
    pd.DataFrame({"formula": formulas, "target": property_of(formulas, HARDNESS)}).to_csv(path, index=False)
    config = user_config(path, finetune=finetune)
    config["data"], config["trainer"] = {}, {"progress_bar": False}
    return config


def epoch_rows(dm, epoch: int) -> np.ndarray:
    """The rows (of the joined table) an epoch's sampler draws, in order (the loader batches them, dropping an
    incomplete last batch as every training run does)."""
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning does before every epoch
    return loader.dataset.indices[list(loader.sampler)]


def test_a_few_dozen_rows_beside_the_replay_get_every_epoch_and_the_schedule(foundation, tmp_path):
    """An epoch of a fine-tune is every training row of the run's own and ``replay_per_row`` replayed rows per
    own row, drawn afresh at every epoch; the batch size and schedule follow those rows (before, every replayed
    row at every epoch swamped a few dozen rows of the user's own: batches of 128 held 3 of them)."""
    from fm_engine.data.recipe import auto_recipe

    config = TrainConfig.from_dict(few_rows_config(tmp_path, 40, replay_per_row=2.0), base_dir=tmp_path)
    config.start_from = str(foundation)
    start = resolve_start(config)
    resolved, notes = config_for_start(config, start)
    dm = plan_start(resolved, start, tmp_path, notes).datamodule
    rows = dm.stage_indices("train")
    own, replayed = rows[dm.masks["hardness"][rows]], rows[~dm.masks["hardness"][rows]]
    assert len(replayed) > 8 * len(own) > 0  # the case at hand: the replay dwarfs the user's rows
    drawn = [set(epoch_rows(dm, epoch)) - set(own) for epoch in (0, 1)]
    for epoch in (0, 1):
        rows = epoch_rows(dm, epoch)
        assert len(rows) == len(set(rows)) and set(own) <= set(rows)  # every own row, each once
    assert all(len(d) == 2 * len(own) and d <= set(replayed) for d in drawn) and drawn[0] != drawn[1]
    assert set(epoch_rows(dm, 1)) - set(own) == drawn[1]  # the same epoch draws the same rows (resume)
    expected = auto_recipe(1, test_ratio=dm.test_ratio, val_ratio=dm.val_ratio, n_train=3 * len(own))
    assert (dm.batch_size, dm.recipe.max_epochs, dm.recipe.patience) == (
        expected.batch_size,
        expected.max_epochs,
        expected.patience,
    )
    assert dm.batch_size < 128 and dm.recipe.max_epochs > 100  # sized by ~100 rows an epoch, not ~600


def test_enough_rows_of_ones_own_replay_every_row_at_every_epoch(foundation, user_csv, tmp_path):
    """220 rows x 4 replayed per row exceed the tiny replay: every training row at every epoch, as before."""
    config = TrainConfig.from_dict(user_config(user_csv, start_from=str(foundation)))
    start = resolve_start(config)
    resolved, notes = config_for_start(config, start)
    dm = plan_start(resolved, start, tmp_path, notes).datamodule
    loader = dm.train_dataloader()
    assert len(loader.dataset) == len(dm.stage_indices("train"))
    assert not hasattr(loader.sampler, "set_epoch")  # torch's plain shuffled sampler


def epoch_steps(run: Path) -> list[int]:
    """The optimizer steps done by the end of each epoch (a run folder's metrics.jsonl epoch records)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [record["step"] for record in records if record.get("kind") == "epoch"]


def test_a_fine_tune_of_a_few_dozen_rows_trains_and_resumes_with_its_mix(foundation, tmp_path):
    import shutil

    config = TrainConfig.from_dict(few_rows_config(tmp_path, 40, replay_per_row=2.0))
    config.start_from, config.trainer.max_epochs = str(foundation), 3
    first = train(config, tmp_path / "run")
    start = resolve_start(config)
    resolved, notes = config_for_start(config, start)
    (tmp_path / "plan").mkdir()
    dm = plan_start(resolved, start, tmp_path / "plan", notes).datamodule
    own = int(dm.train_keep["hardness"].sum())
    expected = (3 * own) // dm.batch_size  # own rows + 2 replayed per own row, full batches
    assert epoch_steps(tmp_path / "run") == [expected * (epoch + 1) for epoch in range(3)]
    shutil.rmtree(first.checkpoint)  # as if stopped after the last resume state was saved
    resumed = train(config, tmp_path / "run", resume=True)
    assert epoch_steps(tmp_path / "run")[-1] == 3 * expected  # the resumed run kept its mix
    assert load_checkpoint(resumed.checkpoint).card.task("hardness").test_metrics
