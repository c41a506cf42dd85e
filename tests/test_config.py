"""Config files: strict dataclass loading and YAML numbers."""

import yaml

from fm_engine.config import load_yaml


def test_yaml_exponent_numbers_are_floats():
    data = load_yaml("lr: 1e-3\nweight_decay: 2E+5\nsteps: 300\nname: x1e3\nratio: .5")
    assert data == {"lr": 0.001, "weight_decay": 200000.0, "steps": 300, "name": "x1e3", "ratio": 0.5}
    assert yaml.safe_load("lr: 1e-3") == {"lr": "1e-3"}  # PyYAML's own loader is left as it is
