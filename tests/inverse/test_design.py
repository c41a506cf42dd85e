"""Design on a real (tiny) trained checkpoint: targets improve, numbers are re-scored, runs replay."""

import dataclasses
import io
import json
import re
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import yaml

from fm_engine.applicability import nearest, training_domain
from fm_engine.checkpoints import load_checkpoint
from fm_engine.cli import main
from fm_engine.compositions import format_formula, to_weights, weights_to_fractions
from fm_engine.elements import element_index
from fm_engine.field_docs import field_help
from fm_engine.inverse import (
    DesignConfig,
    DesignConstraints,
    SeedConfig,
    Target,
    optimize_composition,
    replay,
    run_design,
)
from fm_engine.inverse.design import DISTINCT_DISTANCE, objective_of
from fm_engine.inverse.report import design_figures, summary_markdown
from fm_engine.predict import predict_weights

SEEDS = ["NbMoTaW", "CoCrFeNi", "Al0.5CoCrCuFeNi", "HfNbTaTiZr", "TiZrV", "FeNi"]


@pytest.fixture(scope="module")
def checkpoint(tiny_run):
    return load_checkpoint(tiny_run)


def seed_weights() -> np.ndarray:
    return np.stack([to_weights(f) for f in SEEDS])


@pytest.mark.parametrize(
    "target",
    [
        Target(task="bulk_modulus", value=250.0),
        Target(task="bulk_modulus", direction="high"),
        Target(task="bulk_modulus", direction="low"),
        Target(task="bulk_modulus", range=[20.0, 40.0]),
        Target(task="hea_phase", classes=["FCC"], direction="high"),
        Target(task="hea_phase", classes=["BCC"], direction="low"),
        Target(task="yield_strength", points=[[300.0, 1800.0], [1000.0, 1200.0]]),
    ],
    ids=["value", "high", "low", "range", "class-up", "class-down", "curve"],
)
def test_objective_improves_for_every_target_kind(checkpoint, target):
    seeds = seed_weights()
    config = DesignConfig(targets=[target], steps=150, lr=0.05, constraints=DesignConstraints(seed_blend=0.9))
    run = optimize_composition(checkpoint.model, config, seeds=seeds)
    before = objective_of(checkpoint, [target], seeds)
    after = objective_of(checkpoint, [target], run.weights)
    assert after.mean() < before.mean()
    assert (after <= before + 1e-6).mean() >= 0.8  # nearly every row improves


def test_reported_numbers_come_from_the_reported_recipes(checkpoint):
    for method in ("composition", "latent"):
        config = DesignConfig(
            targets=[Target(task="bulk_modulus", value=200.0), Target(task="hea_phase", classes=["BCC"])],
            method=method, seeds={"source": "formulas", "formulas": SEEDS}, steps=60,
            constraints=DesignConstraints(allowed_elements="alloy_palette", max_elements=4, min_nonzero_weight=0.05),
        )  # fmt: skip
        result = run_design(checkpoint, config)
        table = result.table
        assert result.all_constraints_satisfied, table["constraint_check"].tolist()
        predictions = predict_weights(checkpoint.model, result.recipes)
        np.testing.assert_allclose(table["bulk_modulus [GPa]"], predictions["bulk_modulus"], rtol=1e-5)
        np.testing.assert_allclose(table["objective"], objective_of(checkpoint, config.targets, result.recipes),
                                   rtol=1e-5)  # fmt: skip
        x_columns = [c for c in table.columns if c.startswith("x_")]
        np.testing.assert_allclose(table[x_columns].sum(axis=1), 1.0, atol=1e-9)
        assert (table["n_elements"] <= 4).all()
        assert list(table["objective"]) == sorted(table["objective"])  # ranked by the recipe's score
        if method == "latent":
            assert "objective_latent" in table.columns
        # per target task: the distance to that task's training compositions and the extrapolation flag
        for task in ("bulk_modulus", "hea_phase"):
            domain = training_domain(checkpoint, task)
            distance = nearest(result.recipes[table.index.to_numpy()], domain.weights)[1]
            np.testing.assert_allclose(table[f"{task}_distance_to_training"], distance, atol=1e-6)
            flagged = table["extrapolated_for"].str.split(", ").map(lambda names, task=task: task in names)
            np.testing.assert_array_equal(flagged, distance > domain.tested_up_to + 1e-6)


def test_the_csv_recipe_sums_to_one_as_printed_and_is_the_recipe_scored(checkpoint):
    """recipes.csv's fractions (and the formula's digits) add up to exactly 1 as written, and the values and
    constraint checks beside them are those of the recipe read back from the CSV."""
    config = DesignConfig(
        targets=[Target(task="bulk_modulus", value=200.0)], seeds={"source": "random", "n": 8}, steps=40,
        constraints=DesignConstraints(allowed_elements="alloy_palette", max_elements=5, fixed_amounts={"Al": 0.1},
                                      min_nonzero_weight=0.03),
    )  # fmt: skip
    result = run_design(checkpoint, config)
    written = pd.read_csv(io.StringIO(result.to_csv()), dtype=str)
    x_columns = [c for c in written.columns if c.startswith("x_")]
    for _, row in written.iterrows():
        assert sum(Decimal(row[c]) for c in x_columns) == 1, row[x_columns].tolist()
        digits = re.findall(r"[A-Z][a-z]?([0-9.]+)", row["formula"])
        assert sum(Decimal(d) for d in digits) == 1, row["formula"]
    as_written = np.zeros_like(result.recipes)
    for c in x_columns:
        as_written[:, element_index()[c[2:]]] = written[c].astype(float)
    np.testing.assert_allclose(predict_weights(checkpoint.model, as_written)["bulk_modulus"],
                               result.table["bulk_modulus [GPa]"], rtol=1e-6)  # fmt: skip
    for recipe in as_written:
        assert config.constraints.check_recipe(recipe) == []


def test_recipes_outside_a_tasks_tested_range_are_flagged(checkpoint):
    """Light-metal recipes share no element with the HEAs the yield-strength curves were trained on."""
    config = DesignConfig(
        targets=[Target(task="yield_strength", points=[[300.0, 500.0]]), Target(task="bulk_modulus", value=50.0)],
        seeds={"source": "random", "n": 4}, steps=20,
        constraints=DesignConstraints(allowed_elements=["Li", "Mg", "Ca"]),
    )  # fmt: skip
    result = run_design(checkpoint, config)
    table = result.table
    np.testing.assert_allclose(table["yield_strength_distance_to_training"], 1.0, atol=1e-6)
    assert table["extrapolated_for"].str.contains("yield_strength").all()
    assert "**Extrapolation: 4/4 recipes lie as far from" in summary_markdown(result, checkpoint)


def test_json_replay_gives_identical_recipes(checkpoint):
    config = DesignConfig(
        targets=[Target(task="bulk_modulus", direction="high")],
        seeds={"source": "data", "n": 5}, steps=40,
        constraints=DesignConstraints(allowed_elements="alloy_palette", max_elements=3, fixed_amounts={"Ni": 0.2}),
    )  # fmt: skip
    first = run_design(checkpoint, config)
    data = json.loads(first.to_json())
    assert data["checkpoint"]["weights_sha256"] == checkpoint.weights_sha256
    assert data["config"]["constraints"]["fixed_amounts"] == {"Ni": 0.2} and data["random_seed"] == 0
    assert data["versions"]["torch"].startswith("2.13")
    again = replay(first.to_json(), checkpoint)
    np.testing.assert_array_equal(again.recipes, first.recipes)
    assert list(again.table["formula"]) == list(first.table["formula"])


def test_element_step_scale_really_slows_an_element(checkpoint):
    target = [Target(task="bulk_modulus", direction="high")]
    seeds = np.stack([to_weights("Fe0.5Ni0.5")] * 3 + [to_weights("Fe0.3Co0.3Ni0.4")] * 3)

    def fe_change(scale: float) -> float:
        constraints = DesignConstraints(
            allowed_elements=["Fe", "Ni", "Co", "Cr", "W"], element_step_scale={"Fe": scale}, seed_blend=0.9
        )
        config = DesignConfig(targets=target, constraints=constraints, steps=60, lr=0.05)
        run = optimize_composition(checkpoint.model, config, seeds=seeds)
        return float(np.abs(run.weights[:, 25] - seeds[:, 25]).mean())  # Fe

    assert fe_change(0.1) < 0.5 * fe_change(1.0)


def test_seed_blend_lets_new_elements_enter_and_diversity_scale_sparsifies(checkpoint):
    target = [Target(task="bulk_modulus", direction="high")]
    seeds = seed_weights()

    def designed(**constraints: float) -> np.ndarray:
        config = DesignConfig(targets=target, steps=100, lr=0.05, constraints=DesignConstraints(**constraints))
        return optimize_composition(checkpoint.model, config, seeds=seeds).weights

    strict = designed(seed_blend=1.0)
    assert ((strict > 0) <= (seeds > 0)).all()  # no element outside each seed
    blended = designed(seed_blend=0.8)
    assert ((blended > 0) & (seeds == 0)).any()  # new elements entered
    sparse = designed(seed_blend=0.8, diversity_scale=0.0)
    assert (sparse > 0).sum(axis=1).mean() < (blended > 0).sum(axis=1).mean()


def test_fm_design_cli_writes_every_output_and_replays(tiny_run, tmp_path, capsys):
    config = tmp_path / "design.yaml"
    config.write_text(
        "targets:\n  - {task: bulk_modulus, value: 220}\n  - {task: hea_phase, classes: [BCC]}\n"
        "  - {task: yield_strength, points: [[300, 1500]]}\n"
        "constraints: {allowed_elements: alloy_palette, max_elements: 4, fixed_amounts: {Al: 0.1}, "
        "diversity_scale: 0.5}\nseeds: {source: data, n: 6}\nsteps: 60\n"
    )
    assert main(["design", "--checkpoint", str(tiny_run), "--config", str(config), "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 0  # fmt: skip
    out = tmp_path / "a"
    assert {"recipes.csv", "results.json", "SUMMARY.md"} <= {p.name for p in out.iterdir()}
    figures = {p.stem for p in (out / "figures").glob("*.html")}
    assert {"element_heatmap", "trajectory", "pareto", "seed_vs_designed_bulk_modulus"} <= figures
    recipes = pd.read_csv(out / "recipes.csv")
    assert recipes["constraints_ok"].all() and (recipes["x_Al"] == 0.1).all()
    assert "Hard constraints verified on the final recipes: 6/6" in (out / "SUMMARY.md").read_text()
    assert main(["design", "--checkpoint", str(tiny_run), "--replay", str(out / "results.json"), "--out",
                 str(tmp_path / "b"), "--no-progress"]) == 0  # fmt: skip
    assert (tmp_path / "b" / "recipes.csv").read_text() == (out / "recipes.csv").read_text()
    config.write_text("targets: [{task: bulk_modulus, value: 1}]\nconstraints: {max_elemnts: 3}\n")
    assert main(["design", "--checkpoint", str(tiny_run), "--config", str(config), "--out", str(tmp_path / "c")]) == 2
    assert "unknown key 'constraints.max_elemnts'" in capsys.readouterr().err
    config.write_text("targets: [{task: bulk_modulus, value: 1}]\nconstraints: {fixed_amounts: {Fe: 0.7, Ni: 0.4}}\n")
    assert main(["design", "--checkpoint", str(tiny_run), "--config", str(config), "--out", str(tmp_path / "c")]) == 2
    assert "fixed_amounts sum to 1.100" in capsys.readouterr().err


def test_design_help_documents_every_key_with_the_dataclass_default(capsys):
    """``fm design --help`` lists the config keys as YAML whose values are the defaults: they must be the
    dataclasses' own (a literal written in the help would differ), and every setting is explained."""
    with pytest.raises(SystemExit):
        main(["design", "--help"])
    text = capsys.readouterr().out
    reference = yaml.safe_load(text[text.index("\ntargets:") :])
    examples = reference.pop("targets")
    assert {"value", "direction", "range", "classes", "points"} <= {key for target in examples for key in target}
    defaults = DesignConfig(targets=[]).to_dict()
    defaults.pop("targets")
    assert reference == defaults
    flat = " ".join(text.replace("#", " ").split())  # the help texts are wrapped over comment lines
    for owner in (DesignConfig, DesignConstraints, SeedConfig):
        for field in dataclasses.fields(owner):
            if field.name not in ("constraints", "seeds"):  # sections, documented by their fields
                assert field_help(owner, field.name), f"{owner.__name__}.{field.name} has no help text"
                assert field.name == "targets" or " ".join(field_help(owner, field.name).split()) in flat


def test_latent_needs_the_autoencoder(checkpoint):
    model = checkpoint.model
    autoencoder = model.autoencoder
    model.autoencoder = None
    try:
        with pytest.raises(ValueError, match="needs a checkpoint trained with the autoencoder"):
            run_design(checkpoint, DesignConfig(targets=[Target(task="bulk_modulus", value=1.0)], method="latent",
                                                seeds={"source": "random", "n": 2}))  # fmt: skip
    finally:
        model.autoencoder = autoencoder


# ---------------------------------------------------------------------- issue 18: designs that explain themselves
def converging_design(**settings: object) -> DesignConfig:
    """High bulk modulus with 10 at.% Al fixed and at most 4 elements: many data seeds end at the same X0.9Al0.1."""
    constraints = DesignConstraints(allowed_elements="alloy_palette", max_elements=4, fixed_amounts={"Al": 0.1},
                                    diversity_scale=0.5)  # fmt: skip
    return DesignConfig(targets=[Target(task="bulk_modulus", direction="high")], constraints=constraints,
                        seeds=SeedConfig(n=8), steps=60, **settings)  # fmt: skip


def pairwise_distances(recipes: np.ndarray) -> np.ndarray:
    """The fraction of atoms that differ between each pair of recipes (upper triangle)."""
    i, j = np.triu_indices(len(recipes), k=1)
    return 0.5 * np.abs(recipes[i] - recipes[j]).sum(axis=1)


def test_asking_for_n_recipes_gives_n_distinct_ones(checkpoint):
    result = run_design(checkpoint, converging_design())
    table = result.table
    assert len(table) == 8 and result.shortfall == ""
    assert pairwise_distances(result.recipes).min() > DISTINCT_DISTANCE  # no two are the same recipe (2 % of atoms)
    assert table["formula"].is_unique and (table["duplicate_of_rank"] == 0).all()
    assert result.all_constraints_satisfied
    assert json.loads(result.to_json())["distinct"] == {"asked": 8, "found": 8, "starts": result.n_starts}
    one_round = run_design(checkpoint, converging_design(restarts=0))  # the same starts, no restarts: fewer
    assert len(one_round.table) < 8 and pairwise_distances(one_round.recipes).min() > DISTINCT_DISTANCE


def test_fewer_distinct_recipes_than_asked_are_reported_plainly(checkpoint, tmp_path, capsys):
    constraints = DesignConstraints(allowed_elements=["Ti", "Al"], fixed_amounts={"Al": 0.1})
    config = DesignConfig(targets=[Target(task="bulk_modulus", direction="high")], seeds=SeedConfig(n=4), steps=20,
                          constraints=constraints)  # fmt: skip
    result = run_design(checkpoint, config)
    assert list(result.table["formula"]) == ["Ti0.900Al0.100"]  # the only recipe these constraints allow
    assert result.shortfall.startswith("Found 1 distinct recipes of 4 asked")
    assert "widen the constraints" in result.shortfall
    path = tmp_path / "design.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()), encoding="utf-8")
    assert main(["design", "--checkpoint", str(checkpoint.path), "--config", str(path), "--out",
                 str(tmp_path / "out"), "--no-progress"]) == 0  # fmt: skip
    assert "Found 1 distinct recipes of 4 asked" in capsys.readouterr().out
    assert "Found 1 distinct recipes of 4 asked" in (tmp_path / "out" / "SUMMARY.md").read_text(encoding="utf-8")


def test_seed_columns_score_each_seed_projected_onto_the_constraints(checkpoint):
    from fm_engine.inverse.composition import project_onto_constraints  # new in issue 18

    constraints = DesignConstraints(allowed_elements="alloy_palette", max_elements=3, fixed_amounts={"Al": 0.1})
    config = DesignConfig(targets=[Target(task="bulk_modulus", direction="high")], constraints=constraints,
                          seeds={"source": "formulas", "formulas": ["NbMoTaW", "CoCrFeNi", "FeNi"]}, steps=20,
                          restarts=0)  # fmt: skip
    result = run_design(checkpoint, config)
    table = result.table
    seeds = seed_weights()[[SEEDS.index(label) for label in table["seed"]]]
    projected = project_onto_constraints(seeds, constraints)
    for row in projected:  # a seed as shown obeys every hard constraint: fixed Al, allowed, at most 3, the floor
        assert constraints.check_recipe(row) == []
    np.testing.assert_allclose(projected[:, element_index()["Al"]], 0.1)
    predicted = predict_weights(checkpoint.model, projected)["bulk_modulus"]
    np.testing.assert_allclose(table["bulk_modulus seed [GPa]"], predicted, rtol=1e-5)
    np.testing.assert_allclose(table["bulk_modulus change [GPa]"],
                               table["bulk_modulus [GPa]"] - table["bulk_modulus seed [GPa]"], rtol=1e-6)  # fmt: skip
    assert list(table["seed_projected"]) == [format_formula(weights_to_fractions(w)) for w in projected]
    # FeNi keeps its proportions, scaled to the 90 at.% the fixed Al leaves
    assert format_formula(weights_to_fractions(project_onto_constraints(to_weights("FeNi")[None], constraints)[0])) \
        == "Fe0.450Ni0.450Al0.100"  # fmt: skip


@pytest.mark.parametrize("method", ["composition", "latent"])
def test_the_trajectory_shows_every_term_and_ends_at_the_tables_objective(checkpoint, method):
    config = converging_design(method=method)
    result = run_design(checkpoint, config)
    trajectory, table = result.trajectory, result.table
    hidden = "diversity (x mixing entropy)" if method == "composition" else "autoencoder alignment"
    for point in trajectory[:-1]:
        assert hidden in point and "bulk_modulus" in point
    for point in trajectory:  # the objective is the sum of the terms shown, at every step
        terms = [values for key, values in point.items() if key not in ("step", "objective")]
        np.testing.assert_allclose(point["objective"], np.sum(terms, axis=0), rtol=1e-5, atol=1e-6)
    assert trajectory[-1]["step"] == [float(config.steps)]  # the last point: the reported recipes themselves
    np.testing.assert_allclose(trajectory[-1]["objective"], table["objective"], rtol=1e-6, atol=1e-9)
    assert len(trajectory[0]["objective"]) == len(table)  # one line per reported recipe
    assert "trajectory" in design_figures(result, checkpoint)  # the figure draws every term (latent: a jump)
    if method == "composition":  # the descent's last step is the reported recipe (the polish keeps constraints)
        np.testing.assert_allclose(trajectory[-2]["objective"], table["objective"], atol=0.05)


def test_the_default_floor_leaves_no_trace_amounts(checkpoint):
    floor = DesignConstraints().min_nonzero_weight
    assert 0.01 <= floor <= 0.02  # 1-2 at.%: the smallest amount a recipe is weighed out to
    config = DesignConfig(targets=[Target(task="bulk_modulus", value=200.0), Target(task="hea_phase", classes=["BCC"])],
                          seeds={"source": "random", "n": 6}, steps=60)  # fmt: skip
    result = run_design(checkpoint, config)
    x = result.table[[c for c in result.table.columns if c.startswith("x_")]].to_numpy()
    assert (x[x > 0] >= floor - 1e-9).all() and result.all_constraints_satisfied
    np.testing.assert_allclose(result.table["objective"], objective_of(checkpoint, config.targets, result.recipes),
                               rtol=1e-5)  # re-scored on the floored recipes  # fmt: skip
