"""Lower bounds of regression targets (fm_engine.floors): the automatic rule, the settings a task accepts, and the
model's physical output (floored forward, raw gradient)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fm_engine.floors import FLOOR_SHARE, fit_lower_bound, physical_minimum
from fm_engine.models import FlexibleMultiTaskModel, ModelConfig, TargetScaler
from fm_engine.tasks import TaskSpec


def test_auto_finds_a_floor_where_targets_pile_up_at_their_minimum():
    rng = np.random.default_rng(0)
    gaps = np.concatenate([np.zeros(40), rng.uniform(0.1, 5.0, 60)])  # 40 % metals at 0 eV
    assert fit_lower_bound("auto", gaps) == (0.0, 0.4)
    moduli = rng.uniform(20.0, 300.0, 100)  # no two equal: no floor
    assert fit_lower_bound("auto", moduli) == (None, None)
    just_below = np.concatenate([np.full(int(FLOOR_SHARE * 100) - 1, 1.5), rng.uniform(2.0, 3.0, 100)])
    assert fit_lower_bound("auto", just_below) == (None, None)
    assert fit_lower_bound("auto", np.array([np.nan, np.nan])) == (None, None)


def test_a_fixed_bound_or_none_ignores_the_data():
    values = np.zeros(10)
    assert fit_lower_bound(0.5, values) == (0.5, None)
    assert fit_lower_bound("none", values) == (None, None)


@pytest.mark.parametrize("value", ["sometimes", True, float("nan"), [0]])
def test_a_bad_setting_names_the_task(value):
    with pytest.raises(ValueError, match="task 'gap': lower_bound"):
        TaskSpec(name="gap", lower_bound=value)


def test_classification_tasks_take_no_bound():
    TaskSpec(name="metal", type="classification")  # auto: fine
    with pytest.raises(ValueError, match="only for regression"):
        TaskSpec(name="metal", type="classification", lower_bound=0)
    assert TaskSpec(name="gap", lower_bound="None ").lower_bound == "none"
    assert TaskSpec(name="gap", lower_bound=0).lower_bound == 0.0


def test_physical_outputs_are_floored_and_gradients_stay_those_of_the_raw_output():
    task = TaskSpec(name="gap", unit="eV")
    config = ModelConfig(input_dim=4, n_tokens=1, tasks=[task],
                         scalers={"gap": TargetScaler(mean=[1.0], std=[2.0], floor=0.0, floor_share=0.4)})  # fmt: skip
    model = FlexibleMultiTaskModel(config)
    raw = torch.tensor([-2.0, -0.25, 0.0, 1.5], requires_grad=True)  # physical: -3, 0.5, 1, 4
    physical = model.to_physical("gap", raw)
    assert physical.tolist() == [0.0, 0.5, 1.0, 4.0]
    physical.sum().backward()
    assert raw.grad.tolist() == [2.0, 2.0, 2.0, 2.0]  # the scale std, also below the floor
    # a model without a bound (every checkpoint written before bounds existed) reports the raw value
    config.scalers["gap"] = TargetScaler(mean=[1.0], std=[2.0])
    assert model.to_physical("gap", torch.tensor([-2.0])).tolist() == [-3.0]
    # the bound survives the config's round trip (checkpoints)
    config.scalers["gap"] = TargetScaler(mean=[1.0], std=[2.0], floor=0.0, floor_share=0.4)
    again = ModelConfig.from_dict(config.to_dict())
    assert again.scalers["gap"].floor == 0.0 and again.scalers["gap"].floor_share == 0.4


@pytest.mark.parametrize(
    ("name", "unit", "bound", "expected"),
    [
        ("bulk_modulus", "GPa", None, 0.0),  # a modulus is never negative
        ("yield_strength", "MPa", None, 0.0),
        ("oqmd_band_gap", "eV", None, 0.0),  # eV can be negative, a band gap cannot
        ("mp_energy_above_hull", "eV/atom", None, 0.0),
        ("band_gap", "eV", 0.1, 0.1),  # the task's own lower bound wins
        ("formation_energy", "eV/atom", None, None),  # negative is physical
        ("mp_log10_bulk_modulus", "log10(GPa)", None, None),  # a logarithm is negative below 1 GPa
        ("thermal_expansion", "1/K", None, None),  # negative thermal expansion exists
    ],
)
def test_the_physical_minimum_comes_from_the_bound_the_unit_or_the_name(name, unit, bound, expected):
    assert physical_minimum(name=name, unit=unit, bound=bound) == expected
