"""The Design form's settings from a saved config or a design's results.json (workbench/design_settings.py)."""

import json

import pytest

from fm_engine.checkpoints import load_checkpoint
from fm_engine.inverse import DesignConfig, DesignConstraints, Target, run_design
from workbench.design_settings import config_from_json, form_values


@pytest.fixture(scope="module")
def checkpoint(tiny_run):
    return load_checkpoint(tiny_run)


def test_a_design_json_gives_back_its_settings_as_the_form_shows_them(checkpoint):
    config = DesignConfig(
        targets=[Target(task="bulk_modulus", range=[150.0, 200.0], weight=2.0),
                 Target(task="hea_phase", classes=["BCC"], direction="low"),
                 Target(task="yield_strength", points=[[300.0, 900.0]])],
        constraints=DesignConstraints(allowed_elements=["Ti", "Nb", "Al"], fixed_amounts={"Al": 0.1}),
        seeds={"source": "formulas", "formulas": ["TiNb", "NbAl"]}, steps=4, restarts=0,
    )  # fmt: skip
    results = run_design(checkpoint, config).to_json()
    restored = config_from_json(results, name="results.json")
    assert restored.to_dict() == config.to_dict()
    assert config_from_json(json.dumps(config.to_dict())).to_dict() == config.to_dict()  # a saved last_config.json
    values, tables, missing = form_values(restored, checkpoint.model)
    assert (values["design_goal_bulk_modulus"], values["design_low_bulk_modulus"]) == ("range", 150.0)
    assert values["design_weight_bulk_modulus"] == 2.0 and values["design_restarts"] == 0
    assert (values["design_goal_hea_phase"], values["design_classes_hea_phase"]) == ("probability down", ["BCC"])
    assert values["design_goal_yield_strength"] == "curve points"
    assert tables["curve_yield_strength"].to_numpy().tolist() == [[300.0, 900.0]]
    assert tables["fixed"].to_dict("list") == {"element": ["Al"], "fraction": [0.1]}
    assert values["design_seed_formulas"] == "TiNb\nNbAl" and values["design_max_elements"] == 0 and not missing


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "mine.json: not valid JSON"), ('{"targets": [{"task": "x", "value": 1}], "steps": 1}', "steps")],
)
def test_a_bad_settings_file_is_named(text, message):
    with pytest.raises(ValueError, match=message):
        config_from_json(text, name="mine.json")
