"""Catalogue (issue 14, numbers): non-finite and overflowing values in formulas, training data and
checkpoints are refused with the row / key named; writers are atomic; uploaded tasks never share a file.

Each case asserts the message and that nothing was lost (inputs unchanged, good rows kept, no partial or
temporary files left).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from fm_engine.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from fm_engine.cli import main
from fm_engine.compositions import canonical_key, parse_many, to_weights
from fm_engine.data.tables import MAX_MAGNITUDE, load_task_table
from fm_engine.elements import element_index
from fm_engine.inverse import DesignConfig, Target, run_design
from fm_engine.inverse.report import write_design
from fm_engine.plots.files import write_figure_html
from fm_engine.predict import predict_frame
from fm_engine.safe_io import TEMP_PREFIX
from fm_engine.tasks import TaskSpec
from workbench.components.uploads import read_csv_bytes, write_uploaded_tasks

# ---------------------------------------------------------------------------------------------- formulas


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("Fe1e308O1e308", "the amounts are too large (their sum exceeds 1.8e+308)"),
        ({"Fe": 1e308, "O": 1e308}, "the amounts are too large"),
        ("Fe1e308Fe1e308", "the amounts of Fe are too large (their sum overflows)"),
        ("Fe1e400Ni", "amount 1e400 of Fe is too large"),
        ("Fe1e-400Ni", "amount 1e-400 of Fe is too small (it underflows to 0)"),
        ("Fe0,5Ni0,5", "decimal comma in '0,5': write 0.5"),
        ("Al 0,25 Co1", "decimal comma in '0,25': write 0.25"),
        ("(Fe1e-3Ni)O", "scientific notation is only read in formulas without brackets"),
        ({"Fe": float("inf"), "Ni": 1.0}, "amount of Fe is not finite"),
        ({"Fe": float("nan"), "Ni": 1.0}, "amount of Fe is not finite"),
    ],
    ids=[
        "sum-overflow",
        "dict-overflow",
        "repeat-overflow",
        "inf-amount",
        "underflow",
        "decimal-comma",
        "decimal-comma-spaced",
        "exponent-in-brackets",
        "dict-inf",
        "dict-nan",
    ],  # fmt: skip
)
def test_formulas_with_unusable_amounts_are_refused_with_the_reason(formula, message):
    with pytest.raises(ValueError) as error:
        to_weights(formula)
    assert message in str(error.value)
    # In a batch the formula is a bad row with the same reason; the good row beside it is kept unchanged.
    batch = parse_many(["Fe2O3", formula])
    assert batch.n_bad == 1 and message in batch.bad["reason"].iloc[0] and batch.bad["row"].iloc[0] == 1
    assert batch.keys == ["Fe0.4O0.6"]
    np.testing.assert_allclose(batch.weights, [to_weights("Fe2O3")])


@pytest.mark.parametrize(
    ("formula", "fractions"),
    [
        ("Fe1e-9O3", {"Fe": 1e-9 / 3.000000001, "O": 3 / 3.000000001}),
        ("Al2.5E1Ni", {"Al": 25 / 26, "Ni": 1 / 26}),
        ("Fe1e308O1", {"Fe": 1.0, "O": 1e-308}),
        ("Al0.25 Co1e0 Fe1", {"Al": 0.25 / 2.25, "Co": 1 / 2.25, "Fe": 1 / 2.25}),
    ],
    ids=["tiny-exponent", "capital-E", "huge-but-finite", "spaced"],
)
def test_scientific_notation_is_read_exactly(formula, fractions):
    weights = to_weights(formula)
    index = element_index()
    assert np.isfinite(weights).all() and weights.sum() == pytest.approx(1.0)
    for symbol, fraction in fractions.items():
        assert weights[index[symbol]] == pytest.approx(fraction, rel=1e-12)
    assert canonical_key(formula)  # never the empty key of an all-zero vector


def test_hostile_formulas_never_reach_the_model(tiny_run):
    """`fm predict`'s table: unusable amounts are error rows without predictions; good rows are predicted."""
    checkpoint = load_checkpoint(tiny_run)
    frame = pd.DataFrame({"composition": ["Fe2O3", "Fe1e308O1e308", "Fe0,5Ni0,5", "Fe1e-9O3"], "note": list("abcd")})
    original = frame.copy()
    result = predict_frame(checkpoint, frame)
    pd.testing.assert_frame_equal(frame, original)
    assert result["note"].tolist() == list("abcd")
    assert "too large" in result["error"].iloc[1] and "decimal comma" in result["error"].iloc[2]
    assert result["bulk_modulus [GPa]"].iloc[[1, 2]].isna().all()
    assert np.isfinite(result["bulk_modulus [GPa]"].iloc[[0, 3]].to_numpy(dtype=float)).all()


# ---------------------------------------------------------------------------------------------- CSV cells

GOOD = [("Fe2O3", "1.5"), ("NiO", "2.5"), ("CoCrFeNi", "3.5"), ("NbMoTaW", "4.5"), ("TiZr", "5.5")]


def _write_task_csv(folder: Path, bad_row: str, header: str = "formula,y,split") -> Path:
    lines = [header] + [f"{f},{y},train" for f, y in GOOD[:2]] + [bad_row] + [f"{f},{y},test" for f, y in GOOD[2:]]
    path = folder / "data.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ("Al,inf,train", "target is not a finite number: inf"),
        ("Al,-inf,train", "target is not a finite number: -inf"),
        ("Al,nan,train", "target is not a finite number: nan"),
        ("Al,NaN,train", "target is not a finite number: NaN"),
        ("Al,1e300,train", f"target 1e+300 is beyond the supported magnitude {MAX_MAGNITUDE:g}"),
        ("Al,-2e19,train", f"is beyond the supported magnitude {MAX_MAGNITUDE:g}"),
        ('Al,"[1.0, 2.0]",train', "target has 2 values, expected 1 like most rows of the column"),
        ("Al,fast,train", "target is not a number: 'fast'"),
        ("Al,7,tset", "unknown split label 'tset' in column 'split' (expected train, val or test"),
        ("Al,7,holdout", "unknown split label 'holdout'"),
        ("Fe1e308O1e308,7,train", "the amounts are too large"),
        ("Fe0,5Ni0,5,7,train", None),  # a decimal comma splits the CSV row itself: a malformed-CSV error
    ],
    ids=[
        "inf",
        "-inf",
        "nan",
        "NaN",
        "1e300",
        "-2e19",
        "list-in-scalar-column",
        "text",
        "tset",
        "holdout",
        "overflowing-formula",
        "decimal-comma-row",
    ],  # fmt: skip
)
def test_bad_target_cells_are_bad_rows_with_file_and_line(tmp_path, bad_row, reason):
    path = _write_task_csv(tmp_path, bad_row)
    before = path.read_bytes()
    task = TaskSpec.from_dict({"name": "y", "data_files": [path.name], "composition_column": "formula",
                               "data_column": "y"})  # fmt: skip
    if reason is None:
        with pytest.raises(ValueError, match="data.csv: malformed CSV"):
            load_task_table(task, base_dir=tmp_path)
        return
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        table = load_task_table(task, base_dir=tmp_path)
    assert table.bad_rows[["file", "row"]].values.tolist() == [["data.csv", 4]]  # header = line 1
    assert reason in table.bad_rows["reason"].iloc[0]
    assert table.keys == [canonical_key(f) for f, _ in GOOD]  # every good row kept, in order
    np.testing.assert_allclose(table.values, [float(y) for _, y in GOOD])
    assert table.split == ["train", "train", "test", "test", "test"]
    assert path.read_bytes() == before


@pytest.mark.parametrize("marker", ["", "NA", "N/A", "null"])
def test_missing_markers_leave_the_row_out_without_a_bad_row(tmp_path, marker):
    path = _write_task_csv(tmp_path, f"Al,{marker},train")
    task = TaskSpec.from_dict({"name": "y", "data_files": [str(path)], "composition_column": "formula",
                               "data_column": "y"})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "skipped bad rows" warning
        table = load_task_table(task)
    assert table.bad_rows.empty and len(table) == len(GOOD) and canonical_key("Al") not in table.keys


@pytest.mark.parametrize(
    ("t_cell", "reason"),
    [
        ("inf", "t is not a finite number: inf"),
        ("nan", "t is not a finite number: nan"),
        ("1e300", "t 1e+300 is beyond the supported magnitude"),
    ],  # fmt: skip
    ids=["t-inf", "t-nan", "t-1e300"],
)
def test_non_finite_t_values_are_bad_rows(tmp_path, t_cell, reason):
    rows = ["composition,temperature,strength", "NbMoTaW,300,1000", "NbMoTaW,600,900", f"NbMoTaW,{t_cell},800",
            "TiZr,300,500", "TiZr,700,400"]  # fmt: skip
    path = tmp_path / "curves.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    task = TaskSpec.from_dict({"name": "s", "type": "kernel_regression", "data_files": [str(path)],
                               "t_column": "temperature", "data_column": "strength"})  # fmt: skip
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        table = load_task_table(task)
    assert table.bad_rows[["file", "row"]].values.tolist() == [["curves.csv", 4]]
    assert reason in table.bad_rows["reason"].iloc[0]
    curves = dict(zip(table.keys, zip(table.t, table.values, strict=True), strict=True))
    np.testing.assert_array_equal(curves[canonical_key("NbMoTaW")][0], [300, 600])  # the rest of the curve kept
    np.testing.assert_array_equal(curves[canonical_key("TiZr")][1], [500, 400])


def test_a_1e300_target_is_a_bad_row_and_training_predicts_finite_values(tmp_path, tiny_data):
    """The reported case: one target of 1e300 made every prediction inf with "0 bad rows"."""
    from fm_engine.training import TrainConfig, train

    frame = pd.read_csv(tiny_data / "bulk.csv").head(80)
    frame.loc[5, "target"] = 1e300
    frame.to_csv(tmp_path / "bulk.csv", index=False)
    config = {"name": "huge", "seed": 1,
              "tasks": [{"name": "bulk_modulus", "data_files": [str(tmp_path / "bulk.csv")],
                         "composition_column": "formula", "data_column": "target", "unit": "GPa"}],
              "model": {"encoder": {"type": "mlp", "hidden_dims": [16]}, "autoencoder": {"enabled": False}},
              "data": {"batch_size": 32}, "trainer": {"max_epochs": 1, "progress_bar": False}}  # fmt: skip
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        result = train(TrainConfig.from_dict(config), tmp_path / "run")
    assert result.state == "done"
    card = json.loads((result.checkpoint / "card.json").read_text())
    assert card["tasks"][0]["bad_rows_skipped"] == 1
    predictions = predict_frame(load_checkpoint(result.checkpoint), frame[["formula"]])
    assert np.isfinite(predictions["bulk_modulus [GPa]"].to_numpy(dtype=float)).all()


# ---------------------------------------------------------------------------------------------- checkpoints


def _craft(tiny_run: Path, folder: Path, *, config=None, weights=None) -> Path:
    """A copy of the tiny checkpoint with its config.json model section and/or its tensors edited."""
    target = folder / "crafted"
    shutil.copytree(tiny_run / "checkpoint", target)
    if config is not None:
        data = json.loads((target / "config.json").read_text())
        config(data["model"])
        (target / "config.json").write_text(json.dumps(data))  # json writes NaN / Infinity literally
    if weights is not None:
        state = load_file(str(target / "model.safetensors"))
        weights(state)
        save_file(state, str(target / "model.safetensors"))
    return target


def _poison(name: str, value: float):
    def edit(state):
        state[name].view(-1)[0] = value

    return edit


def _set(*path, value):
    def edit(model):
        node = model
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def _extra_tensor(state):
    state["heads.ghost.weight"] = torch.zeros(3, 2)


@pytest.mark.parametrize(
    ("config", "weights", "message"),
    [
        (None, _poison("autoencoder.net.0.bias", float("nan")),
         "model.safetensors: tensor 'autoencoder.net.0.bias' holds 1 NaN/inf value(s)"),
        (None, _poison("heads.bulk_modulus.net.0.weight", float("inf")),
         "tensor 'heads.bulk_modulus.net.0.weight' holds 1 NaN/inf value(s)"),
        (_set("scalers", "bulk_modulus", "std", value=[float("nan")]), None,
         "config.json key model.scalers.bulk_modulus.std[0] is nan (expected a finite number)"),
        (_set("scalers", "bulk_modulus", "mean", value=[float("inf")]), None,
         "config.json key model.scalers.bulk_modulus.mean[0] is inf"),
        (_set("scalers", "bulk_modulus", "std", value=[0.0]), None,
         "config.json key model.scalers.bulk_modulus.std[0] is 0.0 (a scale must be > 0)"),
        (_set("scalers", "yield_strength", "t_std", value=-3.0), None,
         "config.json key model.scalers.yield_strength.t_std is -3.0 (a scale must be > 0)"),
        (_set("scalers", "yield_strength", "t_max", value=float("nan")), None,
         "config.json key model.scalers.yield_strength.t_max is nan"),
        (_set("input_dim", value=400), None,  # the input standardisation's buffer is the first tensor checked
         "config.json does not match model.safetensors: tensor 'input_mean' has shape (464) "
         "in the weights but (400) from the config"),
        (_set("encoder", "hidden_dims", value=[64, 16]), None,
         "tensor 'encoder.layers.1.0.weight' has shape (32, 64) in the weights but (16, 64) from the config"),
        (_set("tasks", 2, "n_kernels", value=9), None,
         "tensor 'heads.yield_strength.centres' has shape (4) in the weights but (9) from the config"),
        (_set("scalers", "bulk_modulus", "mean", value=[1.0, 2.0]), None,
         "tensor 'heads.bulk_modulus.net.2.weight' has shape (1, 64) in the weights but (2, 64) from the config"),
        (_set("descriptor", "n_grids", value=4), None,
         "config.json key model.input_dim is 464 but its descriptor gives 232 features"),
        (None, _extra_tensor, "tensor 'heads.ghost.weight' (3, 2) in the weights has no place in the config"),
    ],
    ids=["nan-weight", "inf-weight", "nan-std", "inf-mean", "zero-std", "negative-t-std", "nan-t-max",
         "input-dim-lie", "hidden-dims-lie", "n-kernels-lie", "output-dim-lie", "descriptor-lie", "extra-tensor"],
)  # fmt: skip
def test_crafted_checkpoints_are_refused_naming_the_tensor_or_key(tiny_run, tmp_path, config, weights, message):
    crafted = _craft(tiny_run, tmp_path, config=config, weights=weights)
    before = {p.name: p.read_bytes() for p in crafted.iterdir()}
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(crafted)
    assert message in str(error.value) and str(crafted) in str(error.value)
    assert {p.name: p.read_bytes() for p in crafted.iterdir()} == before
    # the CLI shows the same one line, exit code 2, no traceback
    (tmp_path / "in.csv").write_text("composition\nFe2O3\n")
    assert main(["predict", "--checkpoint", str(crafted), "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "out.csv")]) == 2  # fmt: skip
    assert not (tmp_path / "out.csv").exists()


def test_a_checkpoint_without_compositions_predicts_without_distances_and_one_warning(tiny_run, tmp_path, capsys):
    crafted = _craft(tiny_run, tmp_path)
    (crafted / "compositions.csv").unlink()
    frame = pd.DataFrame({"composition": ["Fe2O3", "NbMoTaW", "CoCrFeNi"]})
    full = predict_frame(load_checkpoint(tiny_run), frame)
    checkpoint = load_checkpoint(crafted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict_frame(checkpoint, frame)
        predict_frame(checkpoint, frame)  # a second batch (e.g. the next chunk) does not repeat it
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "has no compositions.csv" in messages[0] and "no distance" in messages[0]
    assert not [c for c in result.columns if "distance" in c or c == "extrapolated_for"]
    kept = [c for c in full.columns if c in result.columns]
    assert len(kept) == len(result.columns)
    pd.testing.assert_frame_equal(result, full[kept])

    (tmp_path / "in.csv").write_text("composition\nFe2O3\nNbMoTaW\n")
    assert main(["predict", "--checkpoint", str(crafted), "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "out.csv")]) == 0  # fmt: skip
    assert len(pd.read_csv(tmp_path / "out.csv")) == 2


def test_a_compositions_file_without_split_column_warns_instead_of_crashing(tiny_run, tmp_path):
    crafted = _craft(tiny_run, tmp_path)
    table = pd.read_csv(crafted / "compositions.csv")
    table.drop(columns=["split"]).to_csv(crafted / "compositions.csv", index=False)
    with pytest.warns(UserWarning, match="compositions.csv without the column"):
        result = predict_frame(load_checkpoint(crafted), pd.DataFrame({"composition": ["Fe2O3"]}))
    assert np.isfinite(result["bulk_modulus [GPa]"]).all()


def test_design_on_a_checkpoint_without_compositions(tiny_run, tmp_path):
    crafted = _craft(tiny_run, tmp_path)
    (crafted / "compositions.csv").unlink()
    config = DesignConfig(targets=[Target(task="bulk_modulus", value=200.0)], steps=10,
                          seeds={"source": "formulas", "formulas": ["NbMoTaW", "CoCrFeNi"]})  # fmt: skip
    with pytest.warns(UserWarning, match="has no compositions.csv"):
        result = run_design(load_checkpoint(crafted), config)
    assert len(result.table) == 2 and result.table["distance_to_training"].isna().all()
    assert np.isfinite(result.table["bulk_modulus [GPa]"]).all()


def test_saving_non_finite_weights_is_refused_and_the_old_checkpoint_kept(tiny_run, tmp_path):
    model = load_checkpoint(tiny_run).model
    target = save_checkpoint(model, tmp_path / "ckpt")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    with torch.no_grad():
        model.heads["bulk_modulus"].net[0].bias[0] = float("nan")
    with pytest.raises(CheckpointError, match="not saving .*ckpt: tensor 'heads.bulk_modulus.net.0.bias' holds 1"):
        save_checkpoint(model, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_failing_checkpoint_write_keeps_the_old_one(tiny_run, tmp_path, monkeypatch):
    """A full disk while writing config.json: the previous checkpoint stays whole, no temp folder is left."""
    import fm_engine.checkpoints as checkpoints

    model = load_checkpoint(tiny_run).model
    target = save_checkpoint(model, tmp_path / "ckpt")
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "atomic_write_json", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(model, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_the_next_save_repairs_a_swap_killed_midway(tiny_run, tmp_path):
    """Killed between "move the old checkpoint aside" and "rename the new one in": the next save puts the
    old one back before replacing it, and leaves no temporary or old folders."""
    model = load_checkpoint(tiny_run).model
    target = save_checkpoint(model, tmp_path / "ckpt")
    old_id = load_checkpoint(target).checkpoint_id
    target.rename(tmp_path / ".ckpt.old-deadbeef")
    (tmp_path / ".ckpt.tmp-half").mkdir()
    (tmp_path / ".ckpt.tmp-half" / "model.safetensors").write_bytes(b"half")
    new = load_checkpoint(save_checkpoint(model, target))
    assert new.checkpoint_id != old_id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


# ---------------------------------------------------------------------------------------------- atomic writers


def test_design_outputs_are_written_whole_and_leave_no_temp_files(tiny_run, tmp_path):
    checkpoint = load_checkpoint(tiny_run)
    config = DesignConfig(targets=[Target(task="bulk_modulus", value=200.0)], steps=10,
                          seeds={"source": "formulas", "formulas": ["NbMoTaW", "CoCrFeNi", "TiZr"]})  # fmt: skip
    result = run_design(checkpoint, config)
    out = tmp_path / "design"
    for _ in range(2):  # the second write replaces every file
        write_design(result, checkpoint, out)
    recipes = pd.read_csv(out / "recipes.csv")
    assert recipes["formula"].tolist() == result.table["formula"].tolist()
    assert json.loads((out / "results.json").read_text())["recipes"]
    assert (out / "SUMMARY.md").read_text().startswith("# Design summary")
    assert (out / "figures" / "plotly.min.js").stat().st_size > 1_000_000
    assert not [p for p in out.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_a_failing_figure_keeps_the_previous_file(tmp_path):
    import plotly.graph_objects as go

    path = tmp_path / "figure.html"
    write_figure_html(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), path)
    before = path.read_bytes()

    class Broken(go.Figure):
        def to_html(self, *args, **kwargs):
            raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        write_figure_html(Broken(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.html", "plotly.min.js"]


# ---------------------------------------------------------------------------------------------- uploads


def _frame(value: float) -> pd.DataFrame:
    return pd.DataFrame({"composition": ["Fe2O3", "NiO"], "y": [value, value + 1]})


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("band gap", "band_gap"),
        ("band gap", "band-gap"),
        ("a-b", "a_b"),
        ("a b", "a/b"),
        ("Hardness", "hardness"),
        ("x.", "x"),
    ],  # fmt: skip
)
def test_uploaded_tasks_whose_names_differ_in_punctuation_get_their_own_files(tmp_path, first, second):
    uploaded = {first: {"spec": {"data_column": "y"}, "frame": _frame(1.0)},
                second: {"spec": {"data_column": "y"}, "frame": _frame(5.0)}}  # fmt: skip
    files = write_uploaded_tasks(tmp_path / "uploads", [first, second], uploaded)
    assert files[first][1] != files[second][1]
    assert {p.name.lower() for p in (tmp_path / "uploads").iterdir()} == {
        Path(files[first][1]).name.lower(),
        Path(files[second][1]).name.lower(),
    }  # distinct even on a case-insensitive disk
    for name in (first, second):
        spec, path = files[name]
        assert spec["name"] == name
        pd.testing.assert_frame_equal(pd.read_csv(path), uploaded[name]["frame"])


def test_a_new_table_under_an_old_task_name_never_overwrites_the_file_a_run_uses(tmp_path):
    folder = tmp_path / "uploads"
    old = write_uploaded_tasks(folder, ["gap"], {"gap": {"spec": {}, "frame": _frame(1.0)}})["gap"][1]
    old_bytes = Path(old).read_bytes()
    again = write_uploaded_tasks(folder, ["gap"], {"gap": {"spec": {}, "frame": _frame(1.0)}})["gap"][1]
    assert again == old  # the same table: the same file
    new = write_uploaded_tasks(folder, ["gap"], {"gap": {"spec": {}, "frame": _frame(9.0)}})["gap"][1]
    assert new != old and Path(old).read_bytes() == old_bytes
    assert not [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_an_uploaded_nan_target_is_a_bad_row_not_a_missing_value(tmp_path):
    frame, message = read_csv_bytes(b"composition,y\nFe2O3,1\nNiO,nan\nCoO,NA\nAl,2\n")
    assert message == ""
    task = TaskSpec.from_dict({"name": "y", "data_column": "y"})
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        table = load_task_table(task, frame=frame)
    assert table.bad_rows[["row", "reason"]].values.tolist() == [[3, "target is not a finite number: nan"]]
    assert table.keys == [canonical_key("Fe2O3"), canonical_key("Al")]


@pytest.mark.parametrize(
    "row", [np.zeros(94), np.full(94, np.nan), np.where(np.eye(94)[0] > 0, np.inf, 0.0), np.eye(94)[0] - np.eye(94)[1]],
    ids=["all-zero", "nan", "inf", "negative"],
)  # fmt: skip
def test_a_weight_row_that_is_not_a_composition_never_reaches_a_model(tiny_run, row):
    from fm_engine.predict import predict_weights

    model = load_checkpoint(tiny_run).model
    rows = np.stack([to_weights("Fe2O3"), row])
    before = rows.copy()
    with pytest.raises(ValueError, match="weight row 1 is not a composition"):
        predict_weights(model, rows)
    np.testing.assert_array_equal(rows, before)
