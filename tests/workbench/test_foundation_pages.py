"""The workbench with a foundation installed (the tiny one of tests/foundation/tiny_foundation.py, through
$FM_FOUNDATION_DIR): it is in every checkpoint picker with its card, read-only; the Train form starts from it;
the first visit still offers the demo (which fine-tunes from it); the Design form groups the stability heads a
model has from the foundation, with one-click presets, and the results show them re-scored in their units."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fm_engine.checkpoints import load_checkpoint
from fm_engine.foundation import FOUNDATION_ENV
from fm_engine.training import TrainConfig, demo_config, train
from fm_engine.training.start import resolve_start
from tests.ceiling import CEILING_S
from tests.workbench.conftest import HOME, open_page
from workbench import design, state
from workbench.components.train_form import FormValues, build_config
from workbench.runs import FOUNDATION_DEMO, delete_run

LABEL = "Foundation (shipped): 3 DFT properties"  # the tiny foundation's three heads


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory: pytest.TempPathFactory, tiny_foundation: Path, tiny_data: Path) -> Path:
    """A run fine-tuned from the (tiny) foundation on a task of the user's (bulk_modulus, GPa): start_from auto."""
    config = TrainConfig.from_dict({
        "name": "tuned", "seed": 5,
        "tasks": [{"name": "bulk_modulus", "data_files": [str(tiny_data / "bulk.csv")], "composition_column": "formula",
                   "data_column": "target", "unit": "GPa"}],
        "data": {"batch_size": 64}, "trainer": {"max_epochs": 3, "patience": 3, "progress_bar": False},
    })  # fmt: skip
    run = tmp_path_factory.mktemp("tuned") / "tuned"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FOUNDATION_ENV, str(tiny_foundation))
        result = train(config, run)
    assert result.state == "done"
    return run


@pytest.fixture
def workspace_with_tuned(workspace: Path, with_foundation: Path, tuned_run: Path) -> Path:
    target = workspace / "runs" / "tuned"
    shutil.copytree(tuned_run, target)
    return target


def design_page(**session: object) -> AppTest:
    at = AppTest.from_file(str(HOME), default_timeout=CEILING_S)
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    at.switch_page("../pages/design.py").run()
    assert not at.exception, at.exception
    return at


def test_the_foundation_is_in_the_picker_and_predicts_on_an_empty_workspace(workspace, with_foundation):
    at = open_page("predict")
    picker = at.sidebar.selectbox(key="fm_sidebar_checkpoint")
    assert picker.options == [LABEL] and picker.value == LABEL
    assert Path(at.session_state[state.ACTIVE_CHECKPOINT]) == with_foundation
    assert any("shipped with fm_engine (read-only)" in c.value for c in at.sidebar.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["oqmd_formation_energy (eV/atom)"].endswith(" eV/atom")
    assert metrics["mp_band_gap (eV)"].endswith(" eV")
    assert not at.error


def test_the_first_visit_still_offers_the_demo_which_fine_tunes_from_the_foundation(workspace, with_foundation):
    at = open_page("overview")
    assert any(s.value == "Start here: train the demo model" for s in at.subheader)
    assert any(c.value == FOUNDATION_DEMO for c in at.caption)
    assert at.button(key="start_demo")


def test_the_demo_fine_tunes_from_the_installed_foundation(with_foundation):
    start = resolve_start(demo_config())  # fm demo (the Overview's button) trains demo_config(): start_from auto
    assert start.kind == "foundation" and start.checkpoint.path == with_foundation


def test_the_checkpoints_page_shows_the_foundation_card_read_only(workspace_with_model, with_foundation):
    at = open_page("checkpoints")
    overview = next(f.value for f in at.dataframe if "problem" in f.value.columns)
    assert list(overview["checkpoint"]) == ["tiny", LABEL]
    assert set(overview.loc[overview["checkpoint"] == LABEL, "tasks"].iloc[0].split(", ")) == {
        "oqmd_formation_energy", "mp_energy_above_hull", "mp_band_gap"
    }  # fmt: skip
    at.selectbox(key="card_choice").select(LABEL).run()
    assert not at.exception and not at.error
    assert any("read-only" in c.value for c in at.caption)
    tasks = next(f.value for f in at.dataframe if {"task", "unit", "t unit"} <= set(f.value.columns)).set_index("task")
    assert tasks.loc["oqmd_formation_energy", "unit"] == "eV/atom"
    assert at.selectbox(key="delete_choice").options == ["tiny"]  # the foundation cannot be deleted
    with pytest.raises(ValueError, match="not a run folder of this workspace"):
        delete_run(with_foundation)
    assert (with_foundation / "model.safetensors").exists()


def test_the_train_form_starts_from_the_foundation_and_says_what_that_means(workspace, with_foundation):
    at = open_page("train")
    radio = at.radio(key="train_start")
    assert radio.options == ["foundation", "scratch", "a checkpoint"] and radio.value == "foundation"
    line = next(c.value for c in at.caption if c.value.startswith("foundation ("))
    assert LABEL in line and "kept" in line and "replay of 512 corpus compositions" in line
    config = TrainConfig.from_dict(build_config(FormValues(name="x", bundled=["band_gap"], start_from=radio.value)))
    start = resolve_start(config)
    assert start.kind == "foundation" and start.checkpoint.path == with_foundation


def test_without_a_foundation_the_form_says_how_to_get_one(workspace):
    at = open_page("train")
    assert at.radio(key="train_start").options == ["scratch", "a checkpoint"]
    assert any("make foundation" in c.value for c in at.caption)


def test_target_groups_of_a_model_fine_tuned_from_the_foundation(tuned_run, tiny_foundation):
    tuned = load_checkpoint(tuned_run)
    groups = design.target_groups(tuned)
    assert [(g.title, g.tasks, g.collapsed) for g in groups] == [
        (design.OWN_GROUP, ["bulk_modulus"], False),
        (design.STABILITY_GROUP, ["oqmd_formation_energy", "mp_energy_above_hull"], False),
        (design.FOUNDATION_GROUP, ["mp_band_gap"], True),
    ]
    model = tuned.model
    assert [design.default_goal(model, groups, n) for n in model.tasks] == ["none", "none", "none", "high"]
    assert design.range_default(model, "mp_energy_above_hull") == (0.0, 0.05)
    # the foundation itself: no task of the user's; the first stability head starts at its preset
    foundation = load_checkpoint(tiny_foundation)
    groups = design.target_groups(foundation, foundation=True)
    assert [g.title for g in groups] == [design.STABILITY_GROUP, design.FOUNDATION_GROUP]
    assert design.default_goal(foundation.model, groups, "oqmd_formation_energy") == "range"
    # a head of that name in another unit gets no preset; a model without foundation heads: one untitled group
    model.tasks["mp_energy_above_hull"].unit = "meV/atom"
    assert design.stability_preset(model, "mp_energy_above_hull") is None
    model.tasks["mp_energy_above_hull"].unit = "eV/atom"


def test_a_scratch_model_keeps_its_single_untitled_group(tiny_run):
    groups = design.target_groups(load_checkpoint(tiny_run))
    assert [(g.title, g.tasks) for g in groups] == [("", ["bulk_modulus", "hea_phase", "yield_strength"])]


def test_stability_targets_from_a_preset_are_designed_and_re_scored_in_their_units(workspace_with_tuned):
    at = design_page(**{state.ACTIVE_CHECKPOINT: str(workspace_with_tuned)})
    texts = [m.value for m in at.markdown]
    assert "**Your tasks**" in texts and f"**{design.STABILITY_GROUP}**" in texts
    assert [e.label for e in at.expander if design.FOUNDATION_GROUP in e.label] == [f"{design.FOUNDATION_GROUP} (1)"]
    assert at.selectbox(key="design_goal_mp_band_gap")  # in the expander, a target like any other
    at.button(key="design_preset_mp_energy_above_hull").click().run()
    at.button(key="design_preset_oqmd_formation_energy").click().run()
    assert at.selectbox(key="design_goal_mp_energy_above_hull").value == "range"
    assert (at.number_input(key="design_low_mp_energy_above_hull").value,
            at.number_input(key="design_high_mp_energy_above_hull").value) == (0.0, 0.05)  # fmt: skip
    assert "[eV/atom]" in at.number_input(key="design_high_oqmd_formation_energy").label
    at.selectbox(key="design_goal_bulk_modulus").select("none")
    at.number_input(key="design_seed_n").set_value(3)
    at.number_input(key="design_steps").set_value(30)
    at.run()
    at.button(key="run_design").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]

    result = at.session_state[state.DESIGN_RESULT]
    assert [t.to_dict() for t in result.config.targets] == [
        {"task": "oqmd_formation_energy", "range": [-5.0, -0.2], "weight": 1.0},
        {"task": "mp_energy_above_hull", "range": [0.0, 0.05], "weight": 1.0},
    ]
    table = next(frame.value for frame in at.dataframe if "constraints_ok" in frame.value.columns)
    assert {"oqmd_formation_energy [eV/atom]", "mp_energy_above_hull [eV/atom]"} <= set(table.columns)
    assert table["constraints_ok"].all()
    # re-scored: each recipe's values are the fine-tuned model's own predictions for that recipe
    elements = [c for c in result.table.columns if c.startswith("x_")]  # the recipes' exact atomic fractions
    recipes = ["".join(f"{c[2:]}{x:.12g}" for c, x in zip(elements, row, strict=True) if x > 0)
               for row in result.table[elements].to_numpy()]  # fmt: skip
    predicted = load_checkpoint(workspace_with_tuned).predict(recipes, distances=False)
    for task in ("oqmd_formation_energy", "mp_energy_above_hull"):
        column = f"{task} [eV/atom]"  # the same header in designs and predictions
        assert result.table[column].to_numpy() == pytest.approx(predicted[column].to_numpy(), abs=1e-4)
    note = next(c.value for c in at.caption if c.value.startswith("Stability targets"))
    assert "mp_energy_above_hull [eV/atom]: test MAE" in note
