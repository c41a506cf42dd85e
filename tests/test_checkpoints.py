import os
import pickle
import shutil

import numpy as np
import pytest
import torch

import fm_engine
from fm_engine.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from fm_engine.compositions import to_weights
from fm_engine.predict import predict_weights

MARKER_NAME = "pwned.txt"


class Payload:
    """Unpickling this runs a shell command: the test checks it never runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip_gives_identical_predictions(tiny_run, tmp_path):
    checkpoint = fm_engine.load_checkpoint(tiny_run)  # a run directory is accepted
    assert checkpoint.path == tiny_run / "checkpoint"
    assert len(checkpoint.checkpoint_id) == 32 and len(checkpoint.weights_sha256) == 64
    copy = save_checkpoint(checkpoint.model, tmp_path / "copy")
    reloaded = load_checkpoint(copy)
    w = np.stack([to_weights("Fe2O3"), to_weights("NbMoTaW")])
    grids = {"yield_strength": [300.0, 900.0]}
    a = predict_weights(checkpoint.model, w, t_grids=grids)
    b = predict_weights(reloaded.model, w, t_grids=grids)
    for task in a:
        np.testing.assert_array_equal(a[task], b[task])


def test_saving_over_an_existing_checkpoint_is_atomic(tiny_run, tmp_path):
    model = load_checkpoint(tiny_run).model
    target = tmp_path / "ckpt"
    first = load_checkpoint(save_checkpoint(model, target)).checkpoint_id
    second = load_checkpoint(save_checkpoint(model, target)).checkpoint_id
    assert first != second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp or old directories left


def test_malicious_pickle_in_place_of_weights_is_never_executed(tiny_run, tmp_path):
    marker = tmp_path / MARKER_NAME
    bad = tmp_path / "bad"
    shutil.copytree(tiny_run / "checkpoint", bad)
    (bad / "model.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        load_checkpoint(bad)
    assert not marker.exists()


def test_pickled_model_file_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / MARKER_NAME
    for name in ("model.pt", "model.ckpt", "model.pkl"):
        path = tmp_path / name
        torch.save({"state_dict": Payload(marker)}, path) if name != "model.pkl" else path.write_bytes(
            pickle.dumps(Payload(marker))
        )
        with pytest.raises(CheckpointError, match="pickled model files are never loaded"):
            load_checkpoint(path)
    assert not marker.exists()


def test_corrupt_truncated_and_foreign_checkpoints(tiny_run, tmp_path):
    truncated = tmp_path / "truncated"
    shutil.copytree(tiny_run / "checkpoint", truncated)
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated)

    broken_config = tmp_path / "broken"
    shutil.copytree(tiny_run / "checkpoint", broken_config)
    (broken_config / "config.json").write_text('{"format": "fm_engine-checkpoint", "model": ')
    with pytest.raises(CheckpointError, match="config.json is corrupt"):
        load_checkpoint(broken_config)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"architectures": ["BertModel"]}')
    with pytest.raises(CheckpointError, match="not an fm_engine checkpoint config"):
        load_checkpoint(foreign)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="not an fm_engine checkpoint"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing")

    missing_weights = tmp_path / "missing_weights"
    shutil.copytree(tiny_run / "checkpoint", missing_weights)
    (missing_weights / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_checkpoint(missing_weights)


def test_weights_that_do_not_match_the_config(tiny_run, tmp_path):
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(tiny_run / "checkpoint", other)
    state = load_file(str(other / "model.safetensors"))
    removed = next(key for key in state if key.endswith("weight"))
    state.pop(removed)
    save_file(state, str(other / "model.safetensors"))
    with pytest.raises(CheckpointError, match=rf"does not match model.safetensors: tensor '{removed}' .* is missing"):
        load_checkpoint(other)


def test_run_without_checkpoint(tmp_path):
    (tmp_path / "status.json").write_text('{"state": "running"}')
    with pytest.raises(CheckpointError, match="has no checkpoint yet"):
        load_checkpoint(tmp_path)


def test_an_ensemble_checkpoint_with_a_broken_member_is_refused(tiny_ensemble, tmp_path):
    import json

    from fm_engine.checkpoints import copy_checkpoint

    good = copy_checkpoint(tiny_ensemble / "checkpoint", tmp_path / "good")  # members/<k> are copied too
    assert load_checkpoint(good).is_ensemble
    config = json.loads((good / "config.json").read_text(encoding="utf-8"))
    for folders in (["../elsewhere"], [], "members/1"):
        broken = copy_checkpoint(good, tmp_path / "broken")
        changed = config | {"ensemble": {"members": 2, "folders": folders}}
        (broken / "config.json").write_text(json.dumps(changed), encoding="utf-8")
        with pytest.raises(CheckpointError, match=r"ensemble\.folders"):
            load_checkpoint(broken)
    missing = copy_checkpoint(good, tmp_path / "missing")
    (missing / "members" / "2" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"members/2: model\.safetensors is missing"):
        load_checkpoint(missing)
    foreign = copy_checkpoint(good, tmp_path / "foreign")
    member = json.loads((foreign / "members" / "1" / "config.json").read_text(encoding="utf-8"))
    member["model"]["tasks"][0]["unit"] = "eV"
    (foreign / "members" / "1" / "config.json").write_text(json.dumps(member), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"ensemble member members/1: predicts other tasks"):
        load_checkpoint(foreign)
