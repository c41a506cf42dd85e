"""Uncertainty-aware design on a real (tiny) trained ensemble: the members' mean, ``uncertainty_scale``, and
``constraints.max_distance``; a single model refuses a scale > 0."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fm_engine.checkpoints import load_checkpoint
from fm_engine.columns import curve_column
from fm_engine.inverse import DesignConfig, DesignConstraints, SeedConfig, Target, replay, run_design
from fm_engine.inverse.composition import project_onto_constraints
from fm_engine.inverse.design import objective_of
from fm_engine.inverse.report import design_figures
from fm_engine.predict import predict_checkpoint
from tests.regression.make_fixtures import fm_environment

DESIGN = Path(__file__).parents[1] / "regression" / "fixtures" / "design_composition.yaml"
PALETTE = ["Ti", "V", "Cr", "Zr", "Nb", "Mo", "Hf", "Ta", "W", "Al", "Co", "Ni", "Fe"]


@pytest.fixture(scope="module")
def ensemble(tiny_ensemble):
    return load_checkpoint(tiny_ensemble)


def regression_fixture_design() -> DesignConfig:
    return DesignConfig.from_dict(yaml.safe_load(DESIGN.read_text(encoding="utf-8")))


def test_design_on_an_ensemble_reports_the_members_mean_and_calibrated_std(ensemble, tiny_run):
    config = regression_fixture_design()
    result = run_design(ensemble, config)
    table = result.table
    assert result.all_constraints_satisfied
    grid = [t for t, _ in config.targets[2].points]
    means, stds = predict_checkpoint(ensemble, result.recipes, t_grids={"yield_strength": grid})
    np.testing.assert_allclose(table["bulk_modulus [GPa]"], means["bulk_modulus"], rtol=1e-6)
    np.testing.assert_allclose(table["bulk_modulus_std [GPa]"], stds["bulk_modulus"], rtol=1e-6)
    for j, t in enumerate(grid):
        name = curve_column("yield_strength", t, "K")
        np.testing.assert_allclose(table[f"{name} [MPa]"], means["yield_strength"][:, j], rtol=1e-6)
        np.testing.assert_allclose(table[f"{name}_std [MPa]"], stds["yield_strength"][:, j], rtol=1e-6)
    bcc = ensemble.model.tasks["hea_phase"].classes.index("BCC")
    np.testing.assert_allclose(table["P(hea_phase=BCC)_std [probability]"], stds["hea_phase"][:, bcc], rtol=1e-6)
    assert (table["bulk_modulus_std [GPa]"] > 0).all()
    np.testing.assert_allclose(table["objective"], objective_of(ensemble, config.targets, result.recipes), rtol=1e-5)
    # not member 0's design: the ensemble's mean is optimised
    single = run_design(load_checkpoint(tiny_run), config)
    assert not [c for c in single.table.columns if "_std [" in c]  # a single model: no spread columns at all
    assert not np.allclose(single.table["bulk_modulus [GPa]"], table["bulk_modulus [GPa]"])
    assert "bulk_modulus_std [GPa]" in result.to_csv().splitlines()[0]


def high_bulk(scale: float, **constraints: object) -> DesignConfig:
    return DesignConfig(
        targets=[Target(task="bulk_modulus", direction="high")],
        constraints=DesignConstraints(allowed_elements=PALETTE, max_elements=4, **constraints),
        seeds=SeedConfig(source="random", n=8),
        steps=60,
        random_seed=5,
        uncertainty_scale=scale,
    )


def test_uncertainty_scale_lowers_the_spread_of_designed_recipes(ensemble):
    plain = run_design(ensemble, high_bulk(0.0)).table
    careful = run_design(ensemble, high_bulk(3.0)).table
    assert careful["bulk_modulus_std [GPa]"].mean() < plain["bulk_modulus_std [GPa]"].mean()
    # the price: a lower mean; the objective reported is the lower confidence bound being optimised
    assert careful["objective"].mean() > plain["objective"].mean()


def test_max_distance_holds_on_every_recipe(ensemble):
    limit = 0.15
    free = run_design(ensemble, high_bulk(0.0)).table
    assert (free["distance_to_training"] > limit).any()  # without the constraint the recipes wander further
    bounded = run_design(ensemble, high_bulk(0.0, max_distance=limit))
    assert (bounded.table["distance_to_training"] <= limit + 1e-9).all()
    assert bounded.all_constraints_satisfied
    assert bounded.to_json_dict()["config"]["constraints"]["max_distance"] == limit
    again = replay(bounded.to_json(), ensemble)
    np.testing.assert_allclose(again.recipes, bounded.recipes)


def test_a_recipe_beyond_max_distance_is_flagged():
    constraints = DesignConstraints(max_distance=0.1)
    recipe = np.zeros(94)
    recipe[:2] = 0.5
    assert constraints.check_recipe(recipe, distance_to_training=0.1) == []
    (problem,) = constraints.check_recipe(recipe, distance_to_training=0.25)
    assert "max_distance 0.1" in problem and "0.2500" in problem


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1])
def test_a_bad_max_distance_is_refused_naming_the_key(bad):
    with pytest.raises(ValueError, match="max_distance"):
        DesignConfig(targets=[Target(task="bulk_modulus", value=1.0)], constraints={"max_distance": bad})


def test_a_scale_on_a_single_model_is_refused_naming_the_key(tiny_run):
    with pytest.raises(ValueError, match="uncertainty_scale: 1 needs an ensemble"):
        run_design(load_checkpoint(tiny_run), high_bulk(1.0))
    with pytest.raises(ValueError, match="uncertainty_scale"):
        dataclasses.replace(high_bulk(0.0), uncertainty_scale=-1.0)


def test_old_configs_write_the_results_they_wrote_before(ensemble):
    config = regression_fixture_design()
    assert config.uncertainty_scale == 0 and config.constraints.max_distance is None
    written = run_design(ensemble, dataclasses.replace(config, steps=4)).to_json_dict()["config"]
    assert "uncertainty_scale" not in written and "max_distance" not in written["constraints"]
    assert DesignConfig.from_dict(written) == dataclasses.replace(config, steps=4)


def test_fm_design_refuses_a_scale_on_a_single_model_in_one_line(tiny_run, tmp_path):
    data = yaml.safe_load(DESIGN.read_text(encoding="utf-8")) | {"uncertainty_scale": 0.5}
    (tmp_path / "design.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    command = [sys.executable, "-m", "fm_engine.cli", "design", "--checkpoint", str(tiny_run), "--config",
               str(tmp_path / "design.yaml"), "--out", str(tmp_path / "out"), "--no-progress"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=fm_environment(), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: uncertainty_scale: 0.5 needs an ensemble")


def test_the_summary_names_the_ensemble_and_the_new_settings(ensemble):
    from fm_engine.inverse.report import summary_markdown

    config = high_bulk(1.0, max_distance=0.3)
    text = summary_markdown(run_design(ensemble, dataclasses.replace(config, steps=6)), ensemble)
    assert "max distance to the training compositions: 0.3" in text
    assert "Uncertainty scale 1:" in text and "mean of the ensemble's 3 members" in text


def seed_rows(result) -> np.ndarray:
    """Each table row's seed composition projected onto the constraints, as the seed columns score it (the table is
    ranked; its ``seed`` column names the seed)."""
    assert len(set(result.seed_labels)) == len(result.seed_labels)
    seeds = result.seeds[[result.seed_labels.index(label) for label in result.table["seed"]]]
    return project_onto_constraints(seeds, result.config.constraints)


def test_seed_values_carry_their_calibrated_std_on_an_ensemble_only(ensemble, tiny_run):
    config = dataclasses.replace(regression_fixture_design(), restarts=0)  # every row from one of the first seeds
    result = run_design(ensemble, config)
    table = result.table
    grid = [t for t, _ in config.targets[2].points]
    means, stds = predict_checkpoint(ensemble, seed_rows(result), t_grids={"yield_strength": grid})
    np.testing.assert_allclose(table["bulk_modulus seed [GPa]"], means["bulk_modulus"], rtol=1e-6)
    np.testing.assert_allclose(table["bulk_modulus seed_std [GPa]"], stds["bulk_modulus"], rtol=1e-6)
    for j, t in enumerate(grid):
        name = curve_column("yield_strength", t, "K")
        np.testing.assert_allclose(table[f"{name} seed_std [MPa]"], stds["yield_strength"][:, j], rtol=1e-6)
    bcc = ensemble.model.tasks["hea_phase"].classes.index("BCC")
    np.testing.assert_allclose(table["P(hea_phase=BCC) seed_std [probability]"], stds["hea_phase"][:, bcc], rtol=1e-6)
    assert (table["bulk_modulus seed_std [GPa]"] > 0).all()
    assert "bulk_modulus seed_std [GPa]" in result.to_csv().splitlines()[0]
    assert all("bulk_modulus seed_std [GPa]" in row for row in result.to_json_dict()["recipes"])
    # the seed -> designed figure the Inverse design page shows: bars on both axes, one per recipe
    figure = design_figures(result, ensemble)["seed_vs_designed_bulk_modulus"]
    recipes = figure.data[1]
    np.testing.assert_allclose(recipes.error_x.array, table["bulk_modulus seed_std [GPa]"])
    np.testing.assert_allclose(recipes.error_y.array, table["bulk_modulus_std [GPa]"])
    single = run_design(load_checkpoint(tiny_run), config)
    assert "bulk_modulus seed [GPa]" in single.table.columns
    assert not [c for c in single.table.columns if "seed_std" in c]  # absent, not zero
    plain = design_figures(single, load_checkpoint(tiny_run))["seed_vs_designed_bulk_modulus"].data[1]
    assert plain.error_x.array is None and plain.error_y.array is None


def test_the_uncertainty_term_is_the_reported_calibrated_spread_floor_included(ensemble):
    """The optimiser's spread term is the table's ``_std`` (sqrt((a std)^2 + b^2), b included) in units of the
    task's training spread, so the objective a user reads is the one optimised."""
    floored = dataclasses.replace(ensemble, std_floors={"bulk_modulus": 7.5})  # b in GPa, as a fitted floor would be
    recipes = run_design(ensemble, high_bulk(0.0)).recipes
    targets = high_bulk(0.0).targets
    extra = objective_of(floored, targets, recipes, uncertainty_scale=1.0) - objective_of(floored, targets, recipes)
    _, stds = predict_checkpoint(floored, recipes)
    sigma = float(np.mean(ensemble.model.config.scalers["bulk_modulus"].std))
    np.testing.assert_allclose(extra, stds["bulk_modulus"] / sigma, rtol=1e-4)
    assert (stds["bulk_modulus"] >= 7.5 - 1e-9).all()


def test_a_latent_design_on_an_ensemble_is_rescored_by_the_whole_ensemble(ensemble):
    config = DesignConfig.from_dict(yaml.safe_load(DESIGN.with_name("design_latent.yaml").read_text(encoding="utf-8")))
    result = run_design(ensemble, config)
    means, stds = predict_checkpoint(ensemble, result.recipes)
    np.testing.assert_allclose(result.table["bulk_modulus [GPa]"], means["bulk_modulus"], rtol=1e-6)
    np.testing.assert_allclose(result.table["bulk_modulus_std [GPa]"], stds["bulk_modulus"], rtol=1e-6)


def test_the_trajectory_shows_the_uncertainty_and_distance_terms_and_ends_at_the_table(ensemble):
    """Issue 18: every term of the objective is shown, in the table's units, ending at the table's objective."""
    from fm_engine.inverse.composition import DISTANCE_TERM, UNCERTAINTY_TERM

    result = run_design(ensemble, dataclasses.replace(high_bulk(1.0, max_distance=0.3), steps=20))
    first, last = result.trajectory[0], result.trajectory[-1]
    assert {"bulk_modulus", UNCERTAINTY_TERM, DISTANCE_TERM} <= set(first)
    np.testing.assert_allclose(last["objective"], result.table["objective"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        last["objective"],
        np.sum([last[k] for k in ("bulk_modulus", UNCERTAINTY_TERM, DISTANCE_TERM)], axis=0),
        rtol=1e-6,
    )
    assert (np.array(last[UNCERTAINTY_TERM]) > 0).all()  # 1 x the members' spread, in the objective's units
