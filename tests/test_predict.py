import numpy as np
import pandas as pd
import pytest

from fm_engine.checkpoints import load_checkpoint
from fm_engine.cli import main
from fm_engine.predict import default_t_grid, predict_frame, predict_weights


def test_fm_predict_round_trips_a_csv_with_a_bad_row(tiny_run, tmp_path, capsys):
    source = pd.DataFrame(
        {"sample": ["s1", "s2", "s3", "s4"], "formula": ["NbMoTaW", "not a formula!", "Al0.5CoCrFeNi", "Xx2"]}
    )
    source.to_csv(tmp_path / "in.csv", index=False)
    code = main(["predict", "--checkpoint", str(tiny_run), "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "out.csv"), "--composition-column", "formula"])  # fmt: skip
    assert code == 0
    assert "2 rows predicted, 2 bad rows" in capsys.readouterr().out
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(out["sample"]) == ["s1", "s2", "s3", "s4"]  # input columns kept, order kept
    assert out.loc[0, "error"] == "" and "not a chemical formula" in out.loc[1, "error"]
    assert "unknown element 'Xx'" in out.loc[3, "error"]
    assert float(out.loc[0, "bulk_modulus [GPa]"]) > 0 and out.loc[1, "bulk_modulus [GPa]"] == ""
    assert out.loc[2, "hea_phase"] in {"BCC", "FCC", "HCP", "multiphase"}
    probabilities = out.loc[[0, 2], [c for c in out.columns if c.startswith("hea_phase_proba_")]].astype(float)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    curve_columns = [c for c in out.columns if c.startswith("yield_strength@")]
    assert len(curve_columns) == 8  # default grid: the training range


def test_checkpoint_predict_gives_the_table_fm_predict_writes(tiny_run, tmp_path):
    formulas = ["NbMoTaW", "not a formula!", "Al0.5CoCrFeNi", "NaCl"]
    pd.DataFrame({"composition": formulas}).to_csv(tmp_path / "in.csv", index=False)
    assert main(["predict", "--checkpoint", str(tiny_run), "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "out.csv"), "--t-grid", "300,900", "--no-progress"]) == 0  # fmt: skip
    written = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    table = load_checkpoint(tiny_run).predict(formulas, t_grid=[300, 900])
    assert list(table.columns) == list(written.columns)
    assert list(table["error"]) == list(written["error"]) and list(table["hea_phase"].fillna("")) == list(
        written["hea_phase"]
    )
    text = ("composition", "error", "hea_phase", "extrapolated_for", "below_physical_minimum")
    numbers = [c for c in table.columns if c not in text]
    expected = written[numbers].replace("", np.nan).astype(float).to_numpy()
    np.testing.assert_allclose(table[numbers].to_numpy(dtype=float), expected, rtol=1e-6)  # CSV: float32 text
    assert {"yield_strength@300K [MPa]", "yield_strength@900K [MPa]"} <= set(table.columns)


def test_checkpoint_predict_takes_a_table_and_per_task_grids(tiny_run):
    checkpoint = load_checkpoint(tiny_run)
    table = checkpoint.predict(pd.DataFrame({"id": [7], "Alloy": ["CoCrFeNi"]}), t_grid={"yield_strength": [500]})
    assert list(table["id"]) == [7] and "yield_strength@500K [MPa]" in table.columns and table.loc[0, "error"] == ""
    with pytest.raises(ValueError, match=r"column 'formula' not found \(columns: id, Alloy\)$"):
        checkpoint.predict(pd.DataFrame({"id": [7], "Alloy": ["Fe"]}), composition_column="formula")
    with pytest.raises(ValueError, match="t grid of task 'yield_strength'"):
        checkpoint.predict(["Fe"], t_grid=[-5])  # negative kelvin


def test_custom_t_grid_and_errors(tiny_run, tmp_path, capsys):
    pd.DataFrame({"composition": ["NbMoTaW"]}).to_csv(tmp_path / "in.csv", index=False)
    args = ["predict", "--checkpoint", str(tiny_run), "--input", str(tmp_path / "in.csv"), "--output",
            str(tmp_path / "out.csv")]  # fmt: skip
    assert main([*args, "--t-grid", "yield_strength=298,773,1273"]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert [c for c in out.columns if "@" in c] == [
        "yield_strength@298K [MPa]",
        "yield_strength@773K [MPa]",
        "yield_strength@1273K [MPa]",
    ]
    assert main([*args, "--t-grid", "bulk_modulus=1,2"]) == 2
    capsys.readouterr()
    assert main([*args, "--composition-column", "formula"]) == 2
    assert "column 'formula' not found (columns: composition); name it with --composition-column" in (
        capsys.readouterr().err
    )
    assert main(["predict", "--checkpoint", str(tmp_path), "--input", str(tmp_path / "in.csv"), "--output", "x"]) == 2


def test_python_api_matches_the_csv_path(tiny_run):
    checkpoint = load_checkpoint(tiny_run)
    frame = predict_frame(checkpoint, pd.DataFrame({"composition": ["NbMoTaW", "CoCrFeNi"]}))
    grid = default_t_grid(checkpoint.model, "yield_strength")
    assert grid[0] == pytest.approx(checkpoint.model.config.scalers["yield_strength"].t_min)
    from fm_engine.compositions import to_weights

    direct = predict_weights(checkpoint.model, np.stack([to_weights("NbMoTaW"), to_weights("CoCrFeNi")]))
    np.testing.assert_allclose(frame["bulk_modulus [GPa]"].to_numpy(dtype=float), direct["bulk_modulus"], rtol=1e-6)
    assert direct["yield_strength"].shape == (2, 8)


def test_fm_demo_trains_every_bundled_task_type(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--max-epochs", "2", "--no-progress"]) == 0
    checkpoint = load_checkpoint(out)
    tasks = checkpoint.card.tasks
    assert {t.type for t in tasks} == {"regression", "classification", "kernel_regression"}
    assert all(t.test_metrics for t in tasks)
    assert checkpoint.model.autoencoder is not None
    assert main(["demo", "--out", str(out)]) == 0
    assert "already trained" in capsys.readouterr().out


def negative_bulk_modulus(checkpoint):
    """The checkpoint with its bulk-modulus output shifted 10,000 GPa down (no lower bound): every prediction is a
    physically impossible negative modulus, as an unbounded head (e.g. the foundation's) can give."""
    scaler = checkpoint.model.config.scalers["bulk_modulus"]
    assert scaler.floor is None  # a modulus has no pile-up at its minimum: lower_bound auto finds none
    scaler.mean = [scaler.mean[0] - 1e4]
    return checkpoint


def test_a_value_below_its_physical_minimum_is_flagged_in_the_table(tiny_run, tmp_path):
    checkpoint = negative_bulk_modulus(load_checkpoint(tiny_run))
    formulas = ["NbMoTaW", "not a formula!", "CoCrFeNi"]
    table = predict_frame(checkpoint, pd.DataFrame({"composition": formulas}), distances=False)
    assert (table.loc[[0, 2], "bulk_modulus [GPa]"] < 0).all()
    flags = table["below_physical_minimum"].str.split("; ")
    assert ["bulk_modulus < 0 GPa" in f for f in flags] == [True, False, True] and flags[1] == [""]
    # a curve is flagged when any of its points is negative (the tiny model's yield strength can be)
    curves = table[[c for c in table.columns if c.startswith("yield_strength@")]]
    assert ["yield_strength < 0 MPa" in f for f in flags] == (curves < 0).any(axis=1).tolist()
    healthy = predict_frame(load_checkpoint(tiny_run), pd.DataFrame({"composition": formulas}), distances=False)
    assert (healthy.loc[[0, 2], "bulk_modulus [GPa]"] > 0).all()
    assert not healthy["below_physical_minimum"].str.contains("bulk_modulus").any()
    # the file path counts them
    from fm_engine.batch_predict import predict_file

    pd.DataFrame({"composition": formulas}).to_csv(tmp_path / "in.csv", index=False)
    result = predict_file(checkpoint, tmp_path / "in.csv", tmp_path / "out.csv", progress=False)
    assert result.n_impossible == 2
    written = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert written["below_physical_minimum"].tolist() == table["below_physical_minimum"].tolist()


def test_every_value_column_of_fm_predict_names_its_unit(tiny_run, tmp_path):
    from fm_engine.columns import split_unit

    pd.DataFrame({"composition": ["NbMoTaW"]}).to_csv(tmp_path / "in.csv", index=False)
    assert main(["predict", "--checkpoint", str(tiny_run), "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "out.csv"), "--t-grid", "1073", "--no-progress"]) == 0  # fmt: skip
    columns = pd.read_csv(tmp_path / "out.csv").columns
    units = {column: split_unit(column)[1] for column in columns}
    assert units["bulk_modulus [GPa]"] == "GPa" and units["yield_strength@1073K [MPa]"] == "MPa"
    assert {c for c, u in units.items() if c.startswith("hea_phase_proba_")} == {
        f"hea_phase_proba_{c} [probability]" for c in ("BCC", "FCC", "HCP", "multiphase")
    }
    # without a unit: the input, the predicted class, distances (fractions of atoms) and the text columns
    assert {c for c, u in units.items() if not u} == {
        "composition", "hea_phase", "bulk_modulus_distance_to_training", "hea_phase_distance_to_training",
        "yield_strength_distance_to_training", "extrapolated_for", "below_physical_minimum", "error",
    }  # fmt: skip
