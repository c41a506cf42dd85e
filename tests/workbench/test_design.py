"""The Design form's values -> a DesignConfig (workbench/design.py), without a browser."""

import pandas as pd
import pytest

from fm_engine.inverse import DesignConfig, Target, element_presets
from workbench.design import choices, design_config, parse_amounts, symbol_amounts

TARGETS = [Target(task="bulk_modulus", direction="high")]


def table(column: str, **amounts: float) -> pd.DataFrame:
    return pd.DataFrame({"element": list(amounts), column: list(amounts.values())})


def form(**constraints: object) -> dict[str, object]:
    return {"allowed_elements": element_presets()["alloy_palette"], "max_elements": 0,
            "fixed_amounts": table("fraction"), "element_step_scale": table("scale"), **constraints}  # fmt: skip


def test_the_forms_own_spellings_become_the_configs():
    constraints = form(
        max_elements=4, fixed_amounts=table("fraction", Al=0.1), element_step_scale=table("scale", Fe=0.5)
    )
    seeds = {"source": "formulas", "n": 16, "formulas": "Fe2Ni\n  ; CoCrFeNi\n"}
    config = design_config(TARGETS, constraints, seeds, {"steps": 40})
    assert config.constraints.allowed_elements == "alloy_palette"  # a preset's exact list is saved by its name
    assert config.constraints.max_elements == 4 and config.constraints.fixed_amounts == {"Al": 0.1}
    assert config.constraints.element_step_scale == {"Fe": 0.5}
    assert config.seeds.formulas == ["Fe2Ni", "CoCrFeNi"] and config.seeds.n == 2  # one start per formula
    untouched = design_config(TARGETS, form(), {"source": "data"}, {})
    assert untouched.constraints.max_elements is None  # 0 = no cap
    assert untouched.constraints.max_distance is None and untouched.uncertainty_scale == 0  # 0 = no limit
    bounded = design_config(TARGETS, form(max_distance=0.2), {"source": "data"}, {"uncertainty_scale": 1.5})
    assert bounded.constraints.max_distance == 0.2 and bounded.uncertainty_scale == 1.5
    assert (
        untouched.to_dict()
        == DesignConfig(targets=TARGETS, constraints={"allowed_elements": "alloy_palette"}).to_dict()
    )


@pytest.mark.parametrize(
    ("constraints", "targets", "message"),
    [
        ({"allowed_elements": []}, TARGETS, "allowed_elements is empty: pick elements"),
        ({"fixed_amounts": table("fraction", Al=0.6, Ni=0.5)}, TARGETS, "fixed_amounts sum to 1.100"),
        ({"element_step_scale": table("scale", Fe=None)}, TARGETS, "element step scale: Fe has no value"),
        ({}, [], "no target: choose a goal"),
    ],
)
def test_a_conflict_is_named(constraints, targets, message):
    with pytest.raises(ValueError, match=message):
        design_config(targets, form(**constraints), {"source": "data"}, {})


def test_fixed_amounts_text():
    assert parse_amounts("Al=0.1, Ti 0.05; Ni:0.2").to_dict("list") == {
        "element": ["Al", "Ti", "Ni"], "fraction": [0.1, 0.05, 0.2]
    }  # fmt: skip
    with pytest.raises(ValueError, match="Cannot read 'Al'"):
        parse_amounts("Al")
    with pytest.raises(ValueError, match="Unknown element symbol 'Qq'"):
        parse_amounts("Qq=0.1")
    with pytest.raises(ValueError, match="Fe is listed twice"):
        symbol_amounts(table("fraction", Fe=0.1).pipe(lambda t: pd.concat([t, t])), "fixed amounts")


def test_choices_are_the_configs_allowed_values():
    assert choices("method") == ["composition", "latent"]
    assert choices("seeds.source") == ["data", "formulas", "random"]
    assert choices("seeds.split")[0] == DesignConfig(targets=[]).seeds.split
