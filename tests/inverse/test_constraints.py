"""Hard constraints hold on every final recipe (property-based), and every conflict is named."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fm_engine.compositions import to_weights
from fm_engine.descriptors import DescriptorSpec
from fm_engine.field_docs import field_help
from fm_engine.inverse import DesignConfig, DesignConstraints, SeedConfig, Target, optimize_composition
from fm_engine.inverse.constraints import ALLOY_PALETTE
from fm_engine.models import EncoderConfig, FlexibleMultiTaskModel, ModelConfig, TargetScaler
from fm_engine.tasks import TaskSpec


@pytest.fixture(scope="module")
def model() -> FlexibleMultiTaskModel:
    torch.manual_seed(0)
    tasks = [TaskSpec(name="y", unit="GPa"), TaskSpec(name="phase", type="classification", classes=["a", "b"])]
    config = ModelConfig(
        input_dim=464, n_tokens=58, tasks=tasks, scalers={"y": TargetScaler([100.0], [50.0]), "phase": TargetScaler()},
        encoder=EncoderConfig(hidden_dims=[32, 16]), descriptor=DescriptorSpec(),
    )  # fmt: skip
    return FlexibleMultiTaskModel(config).eval()


TARGETS = [Target(task="y", direction="high"), Target(task="phase", classes=["b"])]


@st.composite
def constraint_sets(draw):
    allowed = draw(st.lists(st.sampled_from(ALLOY_PALETTE), min_size=2, max_size=14, unique=True))
    n_fixed = draw(st.integers(0, min(2, len(allowed) - 1)))
    fixed_symbols = allowed[:n_fixed]
    amounts = draw(st.lists(st.floats(0.05, 0.4), min_size=n_fixed, max_size=n_fixed))
    fixed = {s: round(a, 3) for s, a in zip(fixed_symbols, amounts, strict=True)}
    k = draw(st.one_of(st.none(), st.integers(n_fixed + 1, len(allowed))))
    floor_cap = min([1.0 / k if k else 0.5, *fixed.values(), 1 - sum(fixed.values())])
    floor = draw(st.one_of(st.just(0.0), st.floats(0.0, max(floor_cap, 0.0))))
    return DesignConstraints(
        allowed_elements=allowed, max_elements=k, fixed_amounts=fixed, min_nonzero_weight=round(floor, 4),
        diversity_scale=draw(st.floats(0, 1)), seed_blend=draw(st.floats(0.5, 1.0)),
        annealing_scale=draw(st.floats(0, 1)),
    )  # fmt: skip


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(constraints=constraint_sets(), use_seeds=st.booleans(), seed=st.integers(0, 1000))
def test_every_hard_constraint_holds_on_every_final_recipe(model, constraints, use_seeds, seed):
    try:
        constraints.validate()
    except ValueError:
        assume(False)
    seeds = np.stack([to_weights(f) for f in ("Fe2Ni", "AlTiV", "NbMoTaW")]) if use_seeds else None
    config = DesignConfig(targets=TARGETS, constraints=constraints, seeds=SeedConfig(n=3), steps=12, random_seed=seed)
    run = optimize_composition(model, config, seeds=seeds)
    for row, recipe in enumerate(run.weights):
        assert constraints.check_recipe(recipe, locked_amounts=run.locked[row]) == []
        assert recipe.sum() == pytest.approx(1.0, abs=1e-9)


def test_locked_elements_keep_their_seed_amount(model):
    constraints = DesignConstraints(allowed_elements=ALLOY_PALETTE, element_step_scale={"Fe": 0.0}, max_elements=4)
    seeds = np.stack([to_weights("Fe3Ni"), to_weights("FeCoCrNi")])
    run = optimize_composition(model, DesignConfig(targets=TARGETS, constraints=constraints, steps=30), seeds=seeds)
    assert run.weights[0, 25] == pytest.approx(0.75) and run.weights[1, 25] == pytest.approx(0.25)
    for recipe, locked in zip(run.weights, run.locked, strict=True):
        assert constraints.check_recipe(recipe, locked_amounts=locked) == []


CONFLICTS = [
    ({"fixed_amounts": {"Fe": 0.6, "Ni": 0.4}}, "fixed_amounts sum to 1.000"),
    ({"fixed_amounts": {"Fe": 0.7, "Ni": 0.5}}, "fixed_amounts sum to 1.200"),
    ({"allowed_elements": ["Ni", "Co"], "fixed_amounts": {"Fe": 0.2}}, "Fe not in allowed_elements"),
    ({"fixed_amounts": {"Fe": 0.2, "Ni": 0.2}, "max_elements": 2}, "max_elements 2 leaves no room: 2 element"),
    ({"allowed_elements": ["Fe", "Ni"], "max_elements": 3}, "max_elements 3 is larger than the 2 allowed"),
    ({"max_elements": 4, "min_nonzero_weight": 0.3}, "above 1/max_elements"),
    ({"fixed_amounts": {"Fe": 0.05}, "min_nonzero_weight": 0.1}, "above fixed amount"),
    ({"fixed_amounts": {"Fe": 0.95}, "min_nonzero_weight": 0.08}, "above fixed amount|less than min_nonzero_weight"),
    ({"allowed_elements": ["Fe", "Qq"]}, "unknown element symbol\\(s\\) Qq"),
    ({"fixed_amounts": {"Xx": 0.1}}, "fixed_amounts: unknown element symbol"),
    ({"allowed_elements": "steels"}, "unknown element preset 'steels'"),
    ({"element_step_scale": {"Fe": 1.5}}, "element_step_scale must be in \\[0, 1\\]"),
    ({"element_step_scale": {"Fe": 0.0}, "fixed_amounts": {"Fe": 0.1}}, "both in fixed_amounts and locked"),
    ({"diversity_scale": 2.0}, "diversity_scale must be in"),
    ({"allowed_elements": ["Fe"], "fixed_amounts": {"Fe": 0.5}}, "no element left to design"),
]


@pytest.mark.parametrize(("settings_", "message"), CONFLICTS)
def test_conflicts_raise_a_named_error(settings_, message):
    with pytest.raises(ValueError, match=message):
        DesignConstraints(**settings_).validate()


def test_lock_without_seeds_is_a_conflict(model):
    locked = DesignConstraints(element_step_scale={"Fe": 0.0})
    with pytest.raises(ValueError, match="locks Fe at its seed amount: give seeds"):
        optimize_composition(model, DesignConfig(targets=TARGETS, constraints=locked))  # data seeds, none given
    with pytest.raises(ValueError, match="locks Fe at its seed amount: give seeds"):
        DesignConfig(targets=TARGETS, constraints=locked, seeds=SeedConfig(source="random"))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (Target(task="nope", value=1.0), "unknown task 'nope'"),
        (Target(task="phase", classes=[5]), "class index 5 out of range"),
        (Target(task="phase", classes=["c"]), "unknown class 'c'"),
        (Target(task="phase", classes=["a", "b"]), "strict subset"),
        (Target(task="y", points=[[300, 1.0]]), "points/classes do not apply"),
        (Target(task="y", value=1.0, direction="high"), "exactly one of value, direction or range"),
        (Target(task="y", range=[5.0, 1.0]), "low < high"),
        (Target(task="y", value=1.0, weight=0), "weight must be > 0"),
        (Target(task="phase", value=1.0), "takes 'classes'"),
    ],
)
def test_target_conflicts(model, target, message):
    with pytest.raises(ValueError, match=message):
        optimize_composition(model, DesignConfig(targets=[target], steps=2))


def test_check_recipe_reports_each_violation():
    constraints = DesignConstraints(allowed_elements=["Fe", "Ni", "Co"], max_elements=2,
                                    fixed_amounts={"Fe": 0.5}, min_nonzero_weight=0.1)  # fmt: skip
    problems = constraints.check_recipe(to_weights("Fe0.4Ni0.3Co0.25Cu0.05"))
    text = "; ".join(problems)
    assert "not allowed: Cu" in text and "4 elements > max_elements 2" in text
    assert "Fe is 0.400000, fixed at 0.500000" in text and "below min_nonzero_weight 0.1: Cu" in text
    assert constraints.check_recipe(to_weights("Fe0.5Ni0.5")) == []


GASES_HALOGENS_NON_METALS = {"H", "C", "N", "O", "F", "P", "S", "Cl", "Se", "Br", "I", "He", "Ne", "Ar", "Kr", "Xe"}


def test_every_preset_says_what_it_is_for():
    from fm_engine.inverse.constraints import PRESET_DESCRIPTIONS, element_presets

    assert set(PRESET_DESCRIPTIONS) == set(element_presets())
    assert all(len(meaning) > 20 for meaning in PRESET_DESCRIPTIONS.values())
    help_text = " ".join(field_help(DesignConstraints, "allowed_elements").split())
    for name, meaning in PRESET_DESCRIPTIONS.items():
        assert f"{name} = {' '.join(meaning.split())}" in help_text


@pytest.mark.parametrize("name", ["alloy_palette", "no_toxic_no_radioactive", "no_critical"])
def test_metal_presets_hold_no_gases_halogens_or_other_non_metals(name):
    """no_critical allowed H, C, N, O, F, Cl, Br, I; a preset for alloys holds metals (and B, Si, Ge)."""
    from fm_engine.inverse.constraints import CRITICAL, PRESET_DESCRIPTIONS, RADIOACTIVE, TOXIC, element_presets

    elements = set(element_presets()[name])
    assert not elements & GASES_HALOGENS_NON_METALS
    assert "no gases, halogens or other non-metals" in PRESET_DESCRIPTIONS[name]
    if name != "alloy_palette":
        assert not elements & set(TOXIC + RADIOACTIVE)
    if name == "no_critical":
        assert not elements & set(CRITICAL) and {"Fe", "Cr", "Mo", "Zr", "Sn"} <= elements
