import io
import json

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from fm_engine.field_docs import field_help
from fm_engine.inverse import DesignConfig, Target, element_presets
from tests.ceiling import CEILING_S
from tests.workbench.conftest import HOME
from workbench import state

DESIGN = "../pages/design.py"
FIXED = "fm_design_table_fixed"  # canonical content of the fixed-amounts editor (pages/design.py)


def design_page() -> AppTest:
    at = AppTest.from_file(str(HOME), default_timeout=CEILING_S)
    at.run()
    at.switch_page(DESIGN).run()
    assert not at.exception, at.exception
    return at


def fixed(**amounts: float) -> pd.DataFrame:
    return pd.DataFrame({"element": list(amounts), "fraction": list(amounts.values())})


def test_design_page_without_model_points_to_overview(workspace):
    at = design_page()
    assert at.title[0].value == "Inverse design"
    assert "Overview" in at.info[0].value


def test_design_page_renders_targets_per_task(workspace_with_model):
    at = design_page()
    assert at.title[0].value == "Inverse design"
    goals = {box.key: box.options for box in at.selectbox if box.key and box.key.startswith("design_goal_")}
    assert set(goals) == {"design_goal_bulk_modulus", "design_goal_hea_phase", "design_goal_yield_strength"}
    assert "range" in goals["design_goal_bulk_modulus"]
    assert "probability up" in goals["design_goal_hea_phase"]
    assert "curve points" in goals["design_goal_yield_strength"]
    at.selectbox(key="design_goal_bulk_modulus").select("value").run()
    assert "[GPa]" in at.number_input(key="design_value_bulk_modulus").label
    at.selectbox(key="design_goal_yield_strength").select("curve points").run()
    assert not at.exception
    # the element picker: a preset, the text box and a single toggle change the kept selection
    at.button(key="fm_design_allowed__preset_alloy_palette").click().run()
    assert at.session_state["fm_design_allowed"] == sorted(
        element_presets()["alloy_palette"], key=lambda s: list(element_presets()["all"]).index(s)
    )
    at.text_input(key="fm_design_allowed__text").input("fe ni Co Cr").run()
    assert at.session_state["fm_design_allowed"] == ["Cr", "Fe", "Co", "Ni"]
    at.button(key="fm_design_allowed__el_Ti").click().run()
    assert at.session_state["fm_design_allowed"] == ["Ti", "Cr", "Fe", "Co", "Ni"]
    at.text_input(key="fm_design_allowed__text").input("Fe Qq").run()
    assert any("Qq" in e.value for e in at.error)


@pytest.mark.parametrize(
    ("amounts", "max_elements", "message"),
    [({"Al": 0.6, "Ni": 0.5}, 5, "fixed_amounts sum to 1.100"), ({"Al": 0.1}, 1, "max_elements 1 leaves no room")],
)
def test_contradictory_settings_show_the_conflict(workspace_with_model, amounts, max_elements, message):
    at = AppTest.from_file(str(HOME), default_timeout=CEILING_S)
    at.session_state[FIXED] = fixed(**amounts)
    at.run()
    at.switch_page(DESIGN).run()
    at.number_input(key="design_max_elements").set_value(max_elements).run()
    at.button(key="run_design").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(message in e for e in errors), errors
    assert state.DESIGN_RESULT not in at.session_state


def design_alloys(at: AppTest, *, phase_goal: str, n: int, steps: int) -> None:
    """Fill the form (alloy palette, bulk modulus 250 GPa, hea_phase BCC/FCC ``phase_goal``, at most 4 elements,
    diversity 0.5, ``n`` seeds, ``steps``; Al fixed by the caller's session) and run the design."""
    at.button(key="fm_design_allowed__preset_alloy_palette").click().run()
    at.selectbox(key="design_goal_bulk_modulus").select("value").run()
    at.number_input(key="design_value_bulk_modulus").set_value(250.0)
    at.selectbox(key="design_goal_hea_phase").select(phase_goal)
    at.number_input(key="design_max_elements").set_value(4)
    at.slider(key="design_diversity").set_value(0.5)
    at.number_input(key="design_seed_n").set_value(n)
    at.number_input(key="design_steps").set_value(steps)
    at.run()
    at.button(key="run_design").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_valid_design_produces_checked_recipes_and_downloads(workspace_with_model):
    at = AppTest.from_file(str(HOME), default_timeout=CEILING_S)
    at.session_state[FIXED] = fixed(Al=0.1)
    at.run()
    at.switch_page(DESIGN).run()
    design_alloys(at, phase_goal="probability up", n=4, steps=40)

    table = next(frame.value for frame in at.dataframe if "constraints_ok" in frame.value.columns)
    assert len(table) >= 1 and table["constraints_ok"].all()
    assert {"formula", "bulk_modulus [GPa]", "bulk_modulus seed [GPa]", "distance_to_training"} <= set(table.columns)
    # the two downloads are offered (a missing key raises KeyError), under the labels users click
    assert [at.download_button(key=k).label for k in ("download_csv", "download_json")] == [
        "Download CSV",
        "Download JSON",
    ]
    # heatmap, seed -> designed for both targets, Pareto (two targets) and trajectory
    charts = at.get("plotly_chart")
    assert len(charts) >= 5, len(charts)

    result = at.session_state[state.DESIGN_RESULT]
    # per-target-task distances; a warning when a recipe is an extrapolation for a target task
    assert {"bulk_modulus_distance_to_training", "hea_phase_distance_to_training"} <= set(result.table.columns)
    n_far = int((result.table["extrapolated_for"] != "").sum())
    warnings = [w.value for w in at.warning if "extrapolated_for" in w.value]
    if n_far:
        assert len(warnings) == 1 and warnings[0].startswith(f"{n_far} recipe(s) lie as far")
    else:
        assert not warnings
    recipes = pd.read_csv(io.StringIO(result.to_csv()))
    assert len(recipes) == 4 and recipes["constraints_ok"].all()
    fractions = recipes[[c for c in recipes.columns if c.startswith("x_")]]
    allowed = set(element_presets()["alloy_palette"])
    assert {c[2:] for c in fractions.columns if (fractions[c] > 0).any()} <= allowed
    assert ((fractions > 0).sum(axis=1) <= 4).all()
    np.testing.assert_allclose(fractions["x_Al"], 0.1, atol=1e-5)
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, atol=1e-4)
    assert result.config.constraints.diversity_scale == 0.5
    assert at.session_state[state.DESIGN_CONFIG]["steps"] == 40


def shown_on_mount(widget) -> object:
    """What the browser shows, and sends back with the next click, when it mounts ``widget`` without being told
    a value (a fresh page, or a run interrupted by the user's next click): the widget's own default."""
    proto = widget.proto
    kind = type(proto).__name__
    if kind == "Slider":
        return proto.default[0]
    if kind in ("NumberInput", "TextArea"):
        return proto.default
    if kind in ("Selectbox", "Radio"):
        return proto.options[proto.default]
    return [proto.options[i] for i in proto.default]  # MultiSelect


def kept_widgets(at: AppTest) -> list:
    kinds = ("slider", "number_input", "selectbox", "radio", "multiselect", "text_area")
    return [w for kind in kinds for w in at.get(kind) if (w.key or "").startswith("design_")]


def test_every_design_widget_falls_back_to_its_current_value(workspace_with_model):
    """Issue 14 finding 7: with several sessions on one server, a slow run interrupted by the next click made the
    browser mount the sliders at their own default (their minimum, 0.00) and send that back: designs ran with
    diversity, seed blend and annealing at 0.00 that nobody chose. A widget's own default must be its value."""
    at = design_page()
    at.selectbox(key="design_goal_bulk_modulus").select("value").run()
    at.radio(key="design_seed_source").set_value("formulas").run()
    widgets = kept_widgets(at)
    kinds = {type(w.proto).__name__ for w in widgets}
    assert {"Slider", "NumberInput", "Selectbox", "Radio", "TextArea"} <= kinds, kinds
    mismatched = {w.key: (shown_on_mount(w), w.value) for w in widgets if shown_on_mount(w) != w.value}
    assert not mismatched, mismatched
    assert at.slider(key="design_diversity").value == 1.0 and at.slider(key="design_annealing").value == 0.5

    # after edits, and on the run that receives an edit, the fallback is the edited value
    at.slider(key="design_diversity").set_value(0.35)
    at.number_input(key="design_steps").set_value(77).run()
    for key, expected in (("design_diversity", 0.35), ("design_steps", 77)):
        widget = next(w for w in kept_widgets(at) if w.key == key)
        assert (widget.value, shown_on_mount(widget)) == (expected, expected)
    # and after leaving the page and coming back (widget state is dropped then)
    at.switch_page("../pages/predict.py").run()
    at.switch_page(DESIGN).run()
    assert not at.exception, at.exception
    for key, expected in (("design_diversity", 0.35), ("design_steps", 77), ("design_seed_source", "formulas")):
        widget = next(w for w in kept_widgets(at) if w.key == key)
        assert (widget.value, shown_on_mount(widget)) == (expected, expected)
    assert not at.warning, [w.value for w in at.warning]  # no "default value also set via Session State" warning


# Each setting widget of the Design form and the DesignConfig field it sets (section, name).
SETTINGS = {
    "design_max_elements": ("constraints", "max_elements"),
    "design_min_weight": ("constraints", "min_nonzero_weight"),
    "design_diversity": ("constraints", "diversity_scale"),
    "design_seed_blend": ("constraints", "seed_blend"),
    "design_annealing": ("constraints", "annealing_scale"),
    "design_seed_source": ("seeds", "source"),
    "design_seed_n": ("seeds", "n"),
    "design_seed_strategy": ("seeds", "strategy"),
    "design_seed_split": ("seeds", "split"),
    "design_method": (None, "method"),
    "design_ae_align": (None, "ae_align_scale"),
    "design_steps": (None, "steps"),
    "design_lr": (None, "lr"),
    "design_random_seed": (None, "random_seed"),
}


def test_form_defaults_and_help_are_the_design_configs(workspace_with_model):
    """Defaults are written once, in the dataclasses: every setting widget starts at its field's default (``None``
    shown as 0 = no cap) with its field's help text, and the untouched form builds the default DesignConfig."""
    defaults = DesignConfig(targets=[])
    at = design_page()
    shown = {w.key: (w.value, w.help) for w in kept_widgets(at)}
    at.radio(key="design_method").set_value("latent").run()  # shows the latent-only setting
    shown["design_ae_align"] = (
        at.number_input(key="design_ae_align").value,
        at.number_input(key="design_ae_align").help,
    )
    assert set(SETTINGS) <= set(shown), set(SETTINGS) - set(shown)
    for key, (section, name) in SETTINGS.items():
        owner = getattr(defaults, section) if section else defaults
        expected = getattr(owner, name)
        value, help_text = shown[key]
        assert value == (0 if expected is None else expected), (key, value, expected)
        assert help_text == field_help(type(owner), name), key
        assert field_help(type(owner), name), f"{type(owner).__name__}.{name} has no help text"

    at.radio(key="design_method").set_value("composition").run()
    at.button(key="run_design").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    built = at.session_state[state.DESIGN_CONFIG]
    target = DesignConfig(targets=[Target(task="bulk_modulus", direction="high")])  # the form's first goal
    assert built == target.to_dict()


def test_every_result_and_figure_says_how_to_read_it(workspace_with_model):
    """The results table and each figure tab carry one "How to read this" line."""
    at = design_page()
    design_alloys(at, phase_goal="probability up", n=3, steps=20)
    main_captions = [c.value for c in at.main.caption]
    assert any(c.startswith("How to read this: one row per recipe") for c in main_captions)
    tabs = {tab.label: [c.value for c in tab.caption] for tab in at.tabs}
    assert {"Element frequency", "Seed → designed", "Pareto", "Trajectory"} <= set(tabs)
    for label, captions in tabs.items():
        assert sum(c.startswith("How to read this:") for c in captions) == 1, (label, captions)


def test_the_last_design_settings_are_restored_after_a_reload(workspace_with_model):
    """Issue 18: a filled-in design form vanished on reload. The last run's settings are saved in the workspace
    and a fresh session (a reload, a closed tab) puts them back with one click."""
    at = AppTest.from_file(str(HOME), default_timeout=CEILING_S)
    at.session_state[FIXED] = fixed(Al=0.1)
    at.run()
    at.switch_page(DESIGN).run()
    assert at.button(key="design_restore_last").disabled  # nothing saved yet
    design_alloys(at, phase_goal="probability down", n=3, steps=20)
    submitted = at.session_state[state.DESIGN_CONFIG]
    saved = workspace_with_model.parents[1] / "design" / "last_config.json"
    assert json.loads(saved.read_text(encoding="utf-8")) == submitted

    fresh = design_page()  # a new session: the form is back at its defaults
    assert fresh.selectbox(key="design_goal_bulk_modulus").value == "high"
    fresh.button(key="design_restore_last").click().run()
    assert not fresh.exception, fresh.exception
    assert any("Restored the design settings" in s.value for s in fresh.success)
    assert fresh.selectbox(key="design_goal_bulk_modulus").value == "value"
    assert fresh.number_input(key="design_value_bulk_modulus").value == 250.0
    assert fresh.selectbox(key="design_goal_hea_phase").value == "probability down"
    assert fresh.slider(key="design_diversity").value == 0.5
    assert (fresh.number_input(key="design_max_elements").value, fresh.number_input(key="design_steps").value) == (
        4,
        20,
    )
    fresh.button(key="run_design").click().run()  # the restored form submits the same design
    assert not fresh.exception and not fresh.error, [e.value for e in fresh.error]
    assert fresh.session_state[state.DESIGN_CONFIG] == submitted


def test_fewer_distinct_recipes_than_asked_are_said_plainly(workspace_with_model):
    """Issue 18: 12 recipes asked, 5 distinct. Only distinct recipes are listed, and when the constraints allow
    fewer than asked the page says how many were found and what to widen."""
    at = AppTest.from_file(str(HOME), default_timeout=CEILING_S)
    at.session_state[FIXED] = fixed(Al=0.1)
    at.session_state["fm_design_allowed"] = ["Al", "Ti"]
    at.run()
    at.switch_page(DESIGN).run()
    at.number_input(key="design_seed_n").set_value(4)
    at.number_input(key="design_steps").set_value(20).run()
    at.button(key="run_design").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(frame.value for frame in at.dataframe if "constraints_ok" in frame.value.columns)
    assert list(table["formula"]) == ["Ti0.900Al0.100"]
    assert any(w.value.startswith("Found 1 distinct recipes of 4 asked") for w in at.warning)
    assert next(m for m in at.metric if m.label == "Distinct recipes").value == "1 of 4 asked"


def test_a_refused_design_says_the_results_below_are_the_previous_ones(workspace_with_model):
    """Issue 18: when a run is refused, the previous results stayed under the error with no marker."""
    at = design_page()
    at.number_input(key="design_seed_n").set_value(2)
    at.number_input(key="design_steps").set_value(10).run()
    at.button(key="run_design").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    previous = at.session_state[state.DESIGN_RESULT]
    at.session_state[FIXED] = fixed(Al=0.6, Ni=0.5)  # sums past 1: refused
    at.run()
    at.button(key="run_design").click().run()
    (error,) = [e.value for e in at.error if e.value.startswith("Cannot run this design")]
    assert "fixed_amounts sum to 1.100" in error
    assert "Nothing was run: the results below are from the previous design." in error
    assert at.session_state[state.DESIGN_RESULT] is previous  # kept, and marked as the earlier run's
