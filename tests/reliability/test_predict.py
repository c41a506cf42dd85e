"""Reliability catalogue, batch prediction: output columns never overwrite input columns, the output is
never the input, bad output paths and t grids are refused before any work, non-finite predictions are
error rows, and streaming in chunks gives exactly the same file as one chunk (CSV and parquet)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from fm_engine.applicability import ReferenceIndex, _nearest_dense, beyond_tested, nearest
from fm_engine.checkpoints import WEIGHTS_FILE, load_checkpoint
from fm_engine.cli import main
from fm_engine.predict import OUTPUT_COLUMNS_ATTR, predict_frame
from fm_engine.safe_io import TEMP_PREFIX

FORMULAS = ["NbMoTaW", "not a formula!", "Al0.5CoCrFeNi", "", "Xx2", "Fe2O3", "CoCrFeNi", "Cu50Zr50"]


def run(checkpoint: Path | str, source: Path, output: Path, *extra: str) -> int:
    return main(["predict", "--checkpoint", str(checkpoint), "--input", str(source), "--output", str(output),
                 "--no-progress", *extra])  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` with its bytes (to show nothing changed and no temp file is left)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def table(tmp_path: Path) -> Path:
    source = tmp_path / "in.csv"
    pd.DataFrame({"sample": [f"s{i}" for i in range(len(FORMULAS))], "formula": FORMULAS}).to_csv(source, index=False)
    return source


# ------------------------------------------------------------------ collisions: nothing overwritten
@pytest.mark.parametrize(
    ("existing", "renamed"),
    [
        (["error"], {"error": "pred_error"}),
        (["bulk_modulus [GPa]"], {"bulk_modulus [GPa]": "pred_bulk_modulus [GPa]"}),
        (["hea_phase_proba_BCC [probability]"],
         {"hea_phase_proba_BCC [probability]": "pred_hea_phase_proba_BCC [probability]"}),
        (["below_physical_minimum"], {"below_physical_minimum": "pred_below_physical_minimum"}),
        (["hea_phase_distance_to_training"], {"hea_phase_distance_to_training": "pred_hea_phase_distance_to_training"}),
        (["extrapolated_for"], {"extrapolated_for": "pred_extrapolated_for"}),
        (["error", "pred_error"], {"error": "pred_pred_error"}),
    ],
)  # fmt: skip
def test_outputs_colliding_with_input_columns_get_a_prefix(tiny_run, tmp_path, capsys, existing, renamed):
    frame = pd.DataFrame({"formula": ["NbMoTaW", "Xx2"], **{c: [f"mine-{c}", "keep me"] for c in existing}})
    source, output = tmp_path / "in.csv", tmp_path / "out.csv"
    frame.to_csv(source, index=False)
    assert run(tiny_run, source, output) == 0
    out = pd.read_csv(output, keep_default_na=False, dtype=str)
    for column in existing:  # the user's columns, untouched
        assert out[column].tolist() == frame[column].tolist()
    assert set(renamed.values()) <= set(out.columns)
    printed = capsys.readouterr().out
    assert f"note: the input already has column(s) {', '.join(renamed)}" in printed
    error_column = renamed.get("error", "error")
    assert f"see the '{error_column}' column" in printed
    assert "unknown element 'Xx'" in out.loc[1, error_column]


def test_python_api_prefixes_colliding_outputs_and_maps_them(tiny_run):
    checkpoint = load_checkpoint(tiny_run)
    bulk = "bulk_modulus [GPa]"  # e.g. an earlier prediction's output, predicted again
    frame = pd.DataFrame({"composition": ["NaCl", "NbMoTaW"], "error": ["a", "b"], bulk: [1.0, 2.0]})
    result = predict_frame(checkpoint, frame)
    assert result["error"].tolist() == ["a", "b"] and result[bulk].tolist() == [1.0, 2.0]
    names = result.attrs[OUTPUT_COLUMNS_ATTR]
    assert names["error"] == "pred_error" and names[bulk] == f"pred_{bulk}"
    assert result["pred_error"].tolist() == ["", ""] and np.isfinite(result[f"pred_{bulk}"]).all()
    assert list(result.columns[:3]) == ["composition", "error", bulk]
    assert beyond_tested(checkpoint, result)  # found through the mapping; NaCl is far from the alloys


# ------------------------------------------------------------------ output path refused before any work
def _same_path(tmp_path: Path, source: Path) -> Path:
    return source


def _dot_path(tmp_path: Path, source: Path) -> Path:
    return tmp_path / "." / "sub" / ".." / source.name


def _symlink(tmp_path: Path, source: Path) -> Path:
    link = tmp_path / "link.csv"
    link.symlink_to(source)
    return link


def _hard_link(tmp_path: Path, source: Path) -> Path:
    link = tmp_path / "hard.csv"
    os.link(source, link)
    return link


@pytest.mark.parametrize("output_of", [_same_path, _dot_path, _symlink, _hard_link])
def test_output_equal_to_input_is_refused_before_any_work(tmp_path, table, capsys, output_of):
    (tmp_path / "sub").mkdir()
    output = output_of(tmp_path, table)
    before = snapshot(tmp_path)
    # a checkpoint that does not exist: the paths are checked first, before anything is loaded
    assert run(tmp_path / "no-such-checkpoint", table, output) == 2
    assert f"is the input file {table}" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_input_given_through_a_symlink_to_the_output_is_refused(tmp_path, table, capsys):
    link = tmp_path / "link.csv"
    link.symlink_to(table)
    assert run(tmp_path / "no-such-checkpoint", link, table) == 2
    assert "is the input file" in capsys.readouterr().err


def test_output_that_is_a_folder_is_refused_before_any_work(tmp_path, table, capsys):
    (tmp_path / "folder").mkdir()
    before = snapshot(tmp_path)
    assert run(tmp_path / "no-such-checkpoint", table, tmp_path / "folder") == 2
    assert f"--output {tmp_path / 'folder'} is a folder" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_output_below_a_file_is_refused_before_any_work(tmp_path, table, capsys):
    (tmp_path / "plain").write_text("x")
    assert run(tmp_path / "no-such-checkpoint", table, tmp_path / "plain" / "out.csv") == 2
    assert f"{tmp_path / 'plain'} is a file; expected a folder" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_output_in_a_read_only_folder_is_refused_before_any_work(tmp_path, table, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert run(tmp_path / "no-such-checkpoint", table, locked / "out.csv") == 2
        assert f"cannot write in {locked}" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    ("name", "message"),
    [("in.pkl", "pickled files are never read"), ("in.xlsx", "unsupported file type"), ("gone.csv", "file not found")],
)  # fmt: skip
def test_unsupported_or_missing_inputs_are_refused(tmp_path, capsys, name, message):
    source = tmp_path / name
    if name != "gone.csv":
        source.write_bytes(b"\x80\x04K\x01.")  # a pickle: must never be loaded
    assert run(tmp_path / "no-such-checkpoint", source, tmp_path / "out.csv") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


# ------------------------------------------------------------------ t grids
@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("yield_strength=300,nan", "t grid of task 'yield_strength': nan is not a finite number"),
        ("yield_strength=inf", "t grid of task 'yield_strength': inf is not a finite number"),
        ("-inf", "t grid of task 'yield_strength': -inf is not a finite number"),
        ("yield_strength=-1e9", "'yield_strength': -1e+09 K is outside the physical range [0, 100000] K"),
        ("yield_strength=-5,300", "t grid of task 'yield_strength': -5 K is outside the physical range"),
        ("yield_strength=300,1e7", "t grid of task 'yield_strength': 1e+07 K is outside the physical range"),
        ("yield_strength=300,300.0000001", "t grid of task 'yield_strength': 300 given twice"),
        ("yield_strength=abc", "expected numbers like 300,600,900"),
    ],
)  # fmt: skip
def test_bad_t_grids_are_refused_before_any_work(tiny_run, tmp_path, table, capsys, grid, message):
    output = tmp_path / "out.csv"
    assert run(tiny_run, table, output, f"--t-grid={grid}") == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_t_grid_checks_apply_to_the_python_api(tiny_run):
    checkpoint = load_checkpoint(tiny_run)
    with pytest.raises(ValueError, match="t grid of task 'yield_strength': nan is not a finite number"):
        predict_frame(checkpoint, pd.DataFrame({"composition": ["Fe"]}), t_grids={"yield_strength": [float("nan")]})


# ------------------------------------------------------------------ non-finite predictions are error rows
def _overflowing_checkpoint(tiny_run: Path, folder: Path, task: str) -> Path:
    """A copy of the tiny checkpoint whose ``task`` head has finite but huge weights (near float32's max):
    hidden units of 3e38 times last-layer weights of 3e38 overflow to inf (regression) / NaN
    probabilities (classification: softmax of inf logits) for every composition."""
    copy = folder / f"overflow-{task}"
    shutil.copytree(tiny_run / "checkpoint", copy)
    state = load_file(str(copy / WEIGHTS_FILE))
    layers = sorted({k.rsplit(".", 1)[0] for k in state if k.startswith(f"heads.{task}.net.")})
    first, last = layers[0], layers[-1]
    state[f"{first}.weight"] = torch.zeros_like(state[f"{first}.weight"])
    state[f"{first}.bias"] = torch.full_like(state[f"{first}.bias"], 3e38)
    state[f"{last}.weight"] = torch.full_like(state[f"{last}.weight"], 3e38)
    save_file(state, str(copy / WEIGHTS_FILE), metadata={"format": "fm_engine-checkpoint"})
    return copy


@pytest.mark.parametrize("task", ["bulk_modulus", "hea_phase"])
def test_non_finite_predictions_are_error_rows(tiny_run, tmp_path, table, capsys, task):
    checkpoint = _overflowing_checkpoint(tiny_run, tmp_path, task)
    output = tmp_path / "out.csv"
    assert run(checkpoint, table, output) == 0
    out = pd.read_csv(output, keep_default_na=False, dtype=str)
    parsed = [0, 2, 5, 6, 7]  # the rows whose formula is fine
    for row in parsed:
        assert f"prediction is not a finite number for {task} (model overflow)" in out.loc[row, "error"]
        columns = {"bulk_modulus": "bulk_modulus [GPa]", "hea_phase": "hea_phase"}  # a value, a class label
        assert out.loc[row, columns[task]] == ""  # never a silent inf / NaN / class label
        assert out.loc[row, columns["hea_phase" if task == "bulk_modulus" else "bulk_modulus"]] == ""  # an error row
    assert "inf" not in output.read_text().lower().replace("info", "")
    assert f"0 rows predicted, {len(FORMULAS)} bad rows" in capsys.readouterr().out


# ------------------------------------------------------------------ streaming: same result in any chunking
def _mixed_table(path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    formulas = rng.choice(FORMULAS + ["Ti0.5V0.5", "Mo", "Ca3(PO4)2", "Fe0O3"], size=37).tolist()
    frame = pd.DataFrame({
        "id": [f"{i:03d}" for i in range(37)],  # leading zeros: text stays text
        "composition": formulas,
        "measured": [f"{v:.12g}" for v in rng.random(37) * 1000],
        "note": ['a, "quoted" cell' if i % 5 == 0 else "" for i in range(37)],
    })  # fmt: skip
    frame.to_csv(path, index=False)
    return frame


@pytest.mark.parametrize("chunk_size", [1, 4, 7])
def test_chunked_streaming_writes_exactly_what_one_chunk_writes(tiny_run, tmp_path, chunk_size):
    source = tmp_path / "in.csv"
    frame = _mixed_table(source)
    assert run(tiny_run, source, tmp_path / "whole.csv", "--chunk-size", "1000") == 0
    assert run(tiny_run, source, tmp_path / "chunked.csv", "--chunk-size", str(chunk_size)) == 0
    assert (tmp_path / "chunked.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    out = pd.read_csv(tmp_path / "chunked.csv", keep_default_na=False, dtype=str)
    assert out[["id", "composition", "measured", "note"]].equals(frame.astype(str))  # input cells as written
    bad = out["composition"].isin(["not a formula!", "", "Xx2", "Fe0O3"])
    assert (out.loc[bad, "error"] != "").all() and (out.loc[~bad, "error"] == "").all()
    assert (out.loc[bad, "bulk_modulus [GPa]"] == "").all() and (out.loc[~bad, "bulk_modulus [GPa]"] != "").all()
    assert out.loc[out["composition"] == "", "error"].str.contains("missing composition").all()


def test_streaming_matches_the_python_api(tiny_run, tmp_path):
    source = tmp_path / "in.csv"
    frame = _mixed_table(source)
    assert run(tiny_run, source, tmp_path / "out.csv", "--chunk-size", "5") == 0
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    direct = predict_frame(load_checkpoint(tiny_run), frame.replace({"composition": {"": None}}))
    for column in ("bulk_modulus [GPa]", "hea_phase_proba_BCC [probability]", "yield_strength_distance_to_training"):
        expected = direct[column].to_numpy(dtype=float)
        got = pd.to_numeric(out[column], errors="coerce").to_numpy(dtype=float)
        np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)
    assert out["error"].tolist() == direct["error"].tolist()


def test_parquet_input_streams_by_row_groups(tiny_run, tmp_path):
    frame = pd.DataFrame({"composition": ["NbMoTaW", "Xx2", "CoCrFeNi", "Fe2O3"] * 3,
                          "value": [0.1234567890123, np.nan, 1e-300, 2.5] * 3})  # fmt: skip
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=5)
    frame.to_csv(tmp_path / "in.csv", index=False)
    assert run(tiny_run, tmp_path / "in.parquet", tmp_path / "p.csv", "--chunk-size", "5") == 0
    assert run(tiny_run, tmp_path / "in.csv", tmp_path / "c.csv") == 0
    from_parquet = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    from_csv = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    assert from_parquet["bulk_modulus [GPa]"].tolist() == from_csv["bulk_modulus [GPa]"].tolist()
    assert from_parquet["error"].tolist() == from_csv["error"].tolist()
    values = pd.read_csv(tmp_path / "p.csv")["value"]
    np.testing.assert_array_equal(values.to_numpy(), frame["value"].to_numpy())  # exact, not %.6g


def test_a_failure_midway_leaves_the_previous_output_and_no_temp_file(tiny_run, tmp_path, capsys):
    source, output = tmp_path / "in.csv", tmp_path / "out.csv"
    lines = ["composition,sample"] + [f"Fe{i + 1}Ni,s{i}" for i in range(30)] + ['"NbMoTaW,broken']
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output.write_text("previous results\n", encoding="utf-8")
    assert run(tiny_run, source, output, "--chunk-size", "4") == 2
    assert "in.csv: malformed CSV" in capsys.readouterr().err
    assert output.read_text(encoding="utf-8") == "previous results\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_progress_bar_on_stderr_unless_no_progress(tiny_run, tmp_path, table, capsys):
    args = ["predict", "--checkpoint", str(tiny_run), "--input", str(table), "--output", str(tmp_path / "o.csv")]
    assert main(args) == 0
    assert "predict: 100%" in capsys.readouterr().err
    assert main([*args, "--no-progress"]) == 0
    assert "predict:" not in capsys.readouterr().err


@pytest.mark.parametrize("chunk_size", ["0", "-3"])
def test_chunk_size_must_be_positive(tiny_run, tmp_path, table, capsys, chunk_size):
    assert run(tiny_run, table, tmp_path / "out.csv", f"--chunk-size={chunk_size}") == 2
    assert f"--chunk-size {chunk_size}: expected a positive number of rows" in capsys.readouterr().err


# ------------------------------------------------------------------ the fast nearest-neighbour search is exact
def test_element_pair_search_equals_the_full_search():
    rng = np.random.default_rng(5)
    reference = np.zeros((400, 94))
    for row in reference:
        elements = rng.choice(25, size=rng.integers(1, 7), replace=False)
        row[elements] = rng.integers(1, 20, size=len(elements))
    reference /= reference.sum(axis=1, keepdims=True)
    queries = np.zeros((600, 94))
    for row in queries:
        elements = rng.choice(30, size=rng.integers(1, 9), replace=False)
        row[elements] = rng.integers(1, 20, size=len(elements))
    queries /= queries.sum(axis=1, keepdims=True)
    queries[:20] = reference[:20]
    index, distance = nearest(queries, reference, chunk_size=64)
    full_index, full = _nearest_dense(queries, ReferenceIndex(reference))
    np.testing.assert_array_equal(distance, np.clip(np.round(full, 6), 0, 1))
    brute = 0.5 * np.abs(queries[:, None, :] - reference[None, :, :]).sum(axis=2)
    np.testing.assert_allclose(brute[np.arange(len(queries)), index], brute.min(axis=1), atol=1e-12)
    assert np.all(distance[:20] == 0)
