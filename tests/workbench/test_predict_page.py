"""The Predict page: one formula (AppTest) and CSV batches (through workbench.components.predictions)."""

import pandas as pd
import pytest

from tests.workbench.conftest import open_page
from workbench.components import predictions as page


@pytest.fixture
def checkpoint(workspace_with_model):
    from fm_engine.checkpoints import load_checkpoint

    return load_checkpoint(workspace_with_model)


def test_without_a_model_points_to_the_demo_training(workspace):
    at = open_page("predict")
    assert "Overview" in at.info[0].value
    assert not at.error


def test_one_formula_gives_every_task_in_units(workspace_with_model):
    at = open_page("predict")
    metrics = {m.label: m.value for m in at.metric}
    assert "bulk_modulus (GPa)" in metrics
    assert metrics["bulk_modulus (GPa)"].endswith(" GPa")
    float(metrics["bulk_modulus (GPa)"].split()[0])
    assert metrics["hea_phase (predicted class)"] in {"BCC", "FCC", "HCP", "multiphase"}
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("temperature (K)" in spec and "yield_strength (MPa)" in spec for spec in charts)
    assert any("class probabilities" in spec for spec in charts)
    assert not at.error

    at.text_input(key="predict_formula").set_value("Xx2O3").run()
    assert not at.exception
    assert "unknown element 'Xx'" in at.error[0].value
    assert not at.metric

    at.text_input(key="predict_formula").set_value("Fe2O3").run()
    assert not at.exception and not at.error
    assert any("O0.600Fe0.400" in c.value for c in at.caption)
    # an oxide is far from every HEA the yield-strength curves were trained on: flagged, with the distances
    assert "Extrapolation" in at.warning[0].value and "- **yield_strength**: distance" in at.warning[0].value


def test_single_formula_reports_its_distance_to_each_tasks_training_data(checkpoint):
    from fm_engine.applicability import training_domain

    trained = training_domain(checkpoint, "yield_strength").keys[0]
    inside = {p.task.name: p for p in page.predict_formula(checkpoint, trained).tasks}
    assert inside["yield_strength"].distance_to_training == pytest.approx(0.0, abs=1e-6)
    assert not inside["yield_strength"].extrapolated
    outside = {p.task.name: p for p in page.predict_formula(checkpoint, "NaCl").tasks}
    assert outside["yield_strength"].distance_to_training == pytest.approx(1.0)
    assert outside["yield_strength"].extrapolated
    assert outside["yield_strength"].tested_up_to == training_domain(checkpoint, "yield_strength").tested_up_to


def test_single_formula_function(checkpoint):
    result = page.predict_formula(checkpoint, "Al0.3CoCrFeNi")
    by_name = {p.task.name: p for p in result.tasks}
    assert abs(sum(by_name["hea_phase"].probabilities.values()) - 1) < 1e-5
    curve = by_name["yield_strength"]
    assert len(curve.t) == page.CURVE_POINTS == len(curve.curve)
    figure = page.curve_figure(curve)
    assert figure.layout.xaxis.title.text == "temperature (K)"
    assert figure.layout.yaxis.title.text == "yield_strength (MPa)"
    with pytest.raises(ValueError, match="unknown element"):
        page.predict_formula(checkpoint, "Xx2O3")


def test_metric_caption_quotes_the_card_with_its_interval(checkpoint):
    entry = checkpoint.card.task("bulk_modulus")
    low, high = entry.test_metrics_ci95["mae"]
    caption = page.metric_caption(checkpoint, "bulk_modulus")
    assert caption == (
        f"test MAE {entry.test_metrics['mae']:.3g} GPa (95 % CI {low:.3g} to {high:.3g}, "
        f"n = {int(entry.test_metrics['n'])})"
    )
    assert page.metric_caption(checkpoint, "hea_phase").startswith("test accuracy ")
    assert page.metric_caption(checkpoint, "no_such_task") == ""


def test_csv_batch_lists_bad_rows_and_predicts_the_rest(checkpoint):
    data = b"id,formula\n1,Fe2O3\n2,Xx2O3\n3,\n4,Al0.3CoCrFeNi\n"
    result = page.predict_csv(checkpoint, data, "formula")
    assert result.message == ""
    assert list(result.bad_rows["row"]) == [3, 4]  # lines in the file (header = line 1)
    assert "unknown element 'Xx'" in result.bad_rows["reason"].iloc[0]
    assert "empty" in result.bad_rows["reason"].iloc[1]
    assert list(result.predicted["id"]) == [1, 4]
    assert result.predicted["bulk_modulus [GPa]"].notna().all()
    assert set(result.predicted["hea_phase"]) <= {"BCC", "FCC", "HCP", "multiphase"}
    assert any(c.startswith("yield_strength@") for c in result.predictions.columns)
    assert result.predicted["yield_strength_distance_to_training"].between(0, 1).all()
    downloaded = pd.read_csv(__import__("io").BytesIO(result.csv_bytes()), keep_default_na=False)
    assert len(downloaded) == 4 and "error" in downloaded.columns
    # the composition column is guessed when not given; a custom t grid is used
    guessed = page.predict_csv(checkpoint, data, t_grids={"yield_strength": page.parse_t_grid("300, 900")})
    assert {"yield_strength@300K [MPa]", "yield_strength@900K [MPa]"} <= set(guessed.predictions.columns)


def test_an_input_column_named_error_is_kept_and_bad_rows_come_from_pred_error(checkpoint):
    data = b"formula,error\nFe2O3,measured 5 %\nXx2O3,\n"
    result = page.predict_csv(checkpoint, data, "formula")
    assert result.predictions["error"].iloc[0] == "measured 5 %"  # the user's column, untouched
    assert list(result.bad_rows["row"]) == [3] and "unknown element 'Xx'" in result.bad_rows["reason"].iloc[0]
    assert list(result.predicted["formula"]) == ["Fe2O3"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"formula\n", "no rows"),
        (b'formula,x\n"Fe2O3,1\n', "Malformed CSV"),
        (b"a,b\n1,2\n3,4,5,6\n", "Malformed CSV"),
    ],
)
def test_empty_or_malformed_csv_gives_a_message(checkpoint, data, expected):
    result = page.predict_csv(checkpoint, data)
    assert expected in result.message
    assert result.predictions.empty


def test_missing_column_or_all_bad_rows_give_a_message(checkpoint):
    assert "not found" in page.predict_csv(checkpoint, b"formula\nFe2O3\n", "nope").message
    result = page.predict_csv(checkpoint, b"formula\nXx\nQq2\n", "formula")
    assert "No row could be predicted" in result.message
    assert len(result.bad_rows) == 2


def test_t_grid_parsing():
    assert page.parse_t_grid("300; 500,800") == [300.0, 500.0, 800.0]
    with pytest.raises(ValueError, match="'abc' is not a number"):
        page.parse_t_grid("300, abc")
    with pytest.raises(ValueError):
        page.parse_t_grid(" , ")


def test_a_binary_tasks_predicted_class_and_caption_follow_its_decision_threshold(binary_run):
    from fm_engine.checkpoints import load_checkpoint
    from tests.conftest import imbalanced_alloys

    checkpoint = load_checkpoint(binary_run[1])
    threshold = checkpoint.model.decision_threshold("forms")
    assert threshold is not None and threshold != 0.5
    moved = 0
    for formula in imbalanced_alloys(40, seed=8)["formula"]:
        prediction = page.predict_formula(checkpoint, formula).tasks[0]
        p1 = prediction.probabilities["1"]
        assert prediction.label == ("1" if p1 > threshold else "0")
        moved += prediction.label != ("1" if p1 > 0.5 else "0")
    assert moved > 0  # some of these alloys change class with the threshold
    caption = page.metric_caption(checkpoint, "forms")
    assert caption.startswith("test accuracy ") and "balanced accuracy " in caption
    assert caption.endswith(f"predicted '1' when its probability > {threshold:.3g} (chosen on validation data)")


@pytest.fixture
def negative_bulk_modulus(workspace_with_model):
    """The workspace's run with its bulk-modulus output shifted 10,000 GPa down (config.json's target scaling):
    every bulk modulus it predicts is negative, physically impossible."""
    import json

    path = workspace_with_model / "checkpoint" / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["model"]["scalers"]["bulk_modulus"]["mean"][0] -= 1e4
    path.write_text(json.dumps(config), encoding="utf-8")
    return workspace_with_model


def test_a_physically_impossible_value_is_marked_and_explained(negative_bulk_modulus):
    at = open_page("predict")
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["bulk_modulus (GPa)"].split()[0]) < 0 and metrics["bulk_modulus (GPa)"].endswith("GPa ⚠")
    (warning,) = [w.value for w in at.warning if "Physically impossible" in w.value]
    assert "- **bulk_modulus**: below 0 GPa" in warning and "never negative" in warning


def test_a_tables_impossible_values_are_counted_and_shown_first(negative_bulk_modulus):
    from fm_engine.checkpoints import load_checkpoint

    checkpoint = load_checkpoint(negative_bulk_modulus)
    result = page.predict_csv(checkpoint, b"id,formula\n1,Fe2O3\n2,Xx2O3\n3,NbMoTaW\n", "formula")
    warning = page.batch_impossible_warning(result.predicted)
    assert "- **bulk_modulus < 0 GPa**: 2 rows" in warning and "`below_physical_minimum`" in warning
    assert page.table_columns(result.predicted, "formula")[:2] == ["formula", "below_physical_minimum"]


def test_each_prediction_says_how_to_read_it(workspace_with_model):
    at = open_page("predict")
    captions = " ".join(c.value for c in at.caption)
    for key in ("values", "probabilities", "curve"):
        assert page.HOW_TO_READ[key] in captions, key
