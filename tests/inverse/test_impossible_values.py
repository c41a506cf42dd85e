"""Design tables flag a target value below its physical minimum (a negative modulus), as predictions do."""

from __future__ import annotations

from fm_engine.checkpoints import load_checkpoint
from fm_engine.inverse import DesignConfig, Target, run_design
from fm_engine.predict import IMPOSSIBLE_COLUMN


def design(checkpoint):
    config = DesignConfig(targets=[Target(task="bulk_modulus", value=200.0), Target(task="hea_phase", classes=[0])],
                          seeds={"source": "formulas", "formulas": ["NbMoTaW", "CoCrFeNi"]}, steps=3)  # fmt: skip
    return run_design(checkpoint, config).table


def test_a_recipe_with_a_negative_modulus_is_flagged(tiny_run):
    checkpoint = load_checkpoint(tiny_run)
    scaler = checkpoint.model.config.scalers["bulk_modulus"]
    assert scaler.floor is None
    healthy = design(checkpoint)
    assert (healthy["bulk_modulus [GPa]"] > 0).all() and (healthy[IMPOSSIBLE_COLUMN] == "").all()
    scaler.mean = [scaler.mean[0] - 1e4]  # an unbounded head far below zero
    table = design(checkpoint)
    assert (table["bulk_modulus [GPa]"] < 0).all()
    assert (table[IMPOSSIBLE_COLUMN] == "bulk_modulus < 0 GPa").all()
