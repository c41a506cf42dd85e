"""The Predict page's one-formula prediction of an ensemble is the ensemble's mean (as ``fm predict``)."""

from __future__ import annotations

import numpy as np
import pytest

from fm_engine import load_checkpoint
from workbench.components.predictions import predict_formula


def test_one_formula_on_an_ensemble_is_the_members_mean(tiny_ensemble):
    checkpoint = load_checkpoint(tiny_ensemble)
    table = checkpoint.predict(["Al0.3CoCrFeNi"], distances=False)
    shown = {p.task.name: p for p in predict_formula(checkpoint, "Al0.3CoCrFeNi").tasks}
    assert shown["bulk_modulus"].value == pytest.approx(
        float(table["bulk_modulus"].iloc[0]), rel=1e-5
    )  # float32 blocks of another shape
    for label, probability in shown["hea_phase"].probabilities.items():
        assert probability == pytest.approx(
            float(table[f"hea_phase_proba_{label}"].iloc[0]), rel=1e-5
        )  # float32 blocks of another shape
    assert shown["hea_phase"].label == table["hea_phase"].iloc[0]
    member = load_checkpoint(tiny_ensemble / "checkpoint" / "members" / "1").predict(["Al0.3CoCrFeNi"], distances=False)
    assert not np.isclose(shown["bulk_modulus"].value, float(member["bulk_modulus"].iloc[0]))
