"""The Predict page on an ensemble: the ensemble's mean (as ``fm predict``) with its calibrated spread as error bars
and bands, and how to read them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from fm_engine import load_checkpoint
from tests.workbench.conftest import open_page
from workbench.components.predictions import (
    curve_figure,
    error_bar_figures,
    predict_formula,
    predict_table,
    uncertainty_caption,
)


def test_one_formula_on_an_ensemble_is_the_members_mean(tiny_ensemble):
    checkpoint = load_checkpoint(tiny_ensemble)
    table = checkpoint.predict(["Al0.3CoCrFeNi"], distances=False)
    shown = {p.task.name: p for p in predict_formula(checkpoint, "Al0.3CoCrFeNi").tasks}
    assert shown["bulk_modulus"].value == pytest.approx(
        float(table["bulk_modulus [GPa]"].iloc[0]), rel=1e-5
    )  # float32 blocks of another shape
    for label, probability in shown["hea_phase"].probabilities.items():
        assert probability == pytest.approx(
            float(table[f"hea_phase_proba_{label} [probability]"].iloc[0]), rel=1e-5
        )  # float32 blocks of another shape
    assert shown["hea_phase"].label == table["hea_phase"].iloc[0]
    member = load_checkpoint(tiny_ensemble / "checkpoint" / "members" / "1").predict(["Al0.3CoCrFeNi"], distances=False)
    assert not np.isclose(shown["bulk_modulus"].value, float(member["bulk_modulus [GPa]"].iloc[0]))


def test_one_formula_on_an_ensemble_shows_its_calibrated_spread(tiny_ensemble, tiny_run):
    checkpoint = load_checkpoint(tiny_ensemble)
    table = checkpoint.predict(["Al0.3CoCrFeNi"], distances=False)
    shown = {p.task.name: p for p in predict_formula(checkpoint, "Al0.3CoCrFeNi").tasks}
    bulk = shown["bulk_modulus"]
    exported = float(table["bulk_modulus_std [GPa]"].iloc[0])
    assert bulk.std == pytest.approx(exported, rel=1e-4)  # calibrated, as exported
    assert f"{bulk.value:.4g} ± {bulk.std:.2g} GPa" == bulk.value_text
    curve = shown["yield_strength"]
    assert curve.std is not None and curve.std.shape == curve.curve.shape and (curve.std > 0).all()
    band, line = curve_figure(curve).data
    upper = np.asarray(band.y[: len(curve.t)])
    np.testing.assert_allclose(upper, curve.curve + curve.std)  # the band is mean +/- the calibrated std
    np.testing.assert_allclose(line.y, curve.curve)
    single = {p.task.name: p for p in predict_formula(load_checkpoint(tiny_run), "Al0.3CoCrFeNi").tasks}
    assert single["bulk_modulus"].std is None and "±" not in single["bulk_modulus"].value_text
    assert len(curve_figure(single["yield_strength"]).data) == 1  # a single model: no band


def test_a_table_on_an_ensemble_gets_error_bars_and_how_to_read_them(tiny_ensemble, tiny_run):
    checkpoint = load_checkpoint(tiny_ensemble)
    frame = pd.DataFrame({"formula": ["Al0.3CoCrFeNi", "NbMoTaW", "Xx2", "CoCrFeMnNi"]})
    result = predict_table(checkpoint, frame, "formula")
    (figure,) = error_bar_figures(checkpoint, result.predicted, "formula")  # bulk_modulus, the one scalar task
    (points,) = figure.data
    assert list(points.x) == ["Al0.3CoCrFeNi", "NbMoTaW", "CoCrFeMnNi"]  # the bad row is left out
    np.testing.assert_allclose(points.error_y.array, result.predicted["bulk_modulus_std [GPa]"])
    np.testing.assert_allclose(points.y, result.predicted["bulk_modulus [GPa]"])
    caption = uncertainty_caption(checkpoint)
    assert f"{len(checkpoint.members)} members" in caption and "calibrated" in caption
    assert "± 2 std as a 95 % interval" in caption  # the level the calibration is fitted for (README)
    record = checkpoint.card.ensemble.calibration["bulk_modulus"]
    assert f"bulk_modulus {100 * record.coverage_1_after:.0f} %" in caption
    single = load_checkpoint(tiny_run)
    assert error_bar_figures(single, predict_table(single, frame, "formula").predicted, "formula") == []
    assert uncertainty_caption(single) == ""


def test_the_predict_page_shows_an_ensembles_error_bars(workspace, tiny_ensemble):
    shutil.copytree(tiny_ensemble, workspace / "runs" / "ensemble")
    at = open_page("predict")
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert "±" in metrics["bulk_modulus (GPa)"] and metrics["bulk_modulus (GPa)"].endswith(" GPa")
    assert any("How to read the error bars" in c.value for c in at.caption)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (curve,) = [c for c in charts if "yield_strength" in c["layout"]["yaxis"]["title"]["text"]]
    assert [trace.get("fill") for trace in curve["data"]] == ["toself", None]  # the band, then the mean
