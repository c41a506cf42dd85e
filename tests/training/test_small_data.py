"""Small data and minor elements: the default ``fm train`` learns a property that depends only on a minor
element's fraction (0.001-0.02) from a few hundred alloys; the recipe adapts to the data size and is recorded
resolved; the input standardisation is stored in the checkpoint and differentiable in the composition weights;
a checkpoint without it loads and predicts as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fm_engine.checkpoints import load_checkpoint, save_checkpoint
from fm_engine.compositions import parse_many
from fm_engine.data.recipe import auto_recipe
from fm_engine.descriptors import Descriptor, DescriptorSpec
from fm_engine.elements import element_symbols
from fm_engine.models import EncoderConfig, FlexibleMultiTaskModel, ModelConfig, TargetScaler
from fm_engine.models.model import INPUT_STD_FLOOR
from fm_engine.tasks import TaskSpec
from fm_engine.training import TrainConfig, train

N_ALLOYS = 300


def minor_element_alloys(n: int, seed: int) -> pd.DataFrame:
    """Fe-Cr-Ni alloys (Fe 0.70 +- 0.04, Cr 0.18 +- 0.03) with x_Nb uniform in [0.001, 0.02];
    the property is ``1000 * x_Nb`` (1-20 units), so only the minor element matters."""
    rng = np.random.default_rng(seed)
    nb = rng.uniform(0.001, 0.02, n)
    fe, cr = 0.70 + rng.normal(0, 0.04, n), 0.18 + rng.normal(0, 0.03, n)
    ni, rest = 1 - fe - cr, 1 - nb
    formulas = [
        f"Fe{a * r:.5f}Cr{b * r:.5f}Ni{c * r:.5f}Nb{d:.5f}" for a, b, c, d, r in zip(fe, cr, ni, nb, rest, strict=True)
    ]
    return pd.DataFrame({"formula": formulas, "y": 1000 * nb}).drop_duplicates("formula")


def alloy_config(tmp_path: Path, **sections: dict) -> TrainConfig:
    path = tmp_path / "alloys.csv"
    minor_element_alloys(N_ALLOYS, seed=0).to_csv(path, index=False)
    task = {"name": "p", "type": "regression", "data_files": [str(path)], "composition_column": "formula",
            "data_column": "y", "unit": "MPa"}  # fmt: skip
    return TrainConfig.from_dict({"tasks": [task], "trainer": {"progress_bar": False}, **sections})


def test_default_fm_train_learns_a_minor_element_property_from_a_few_hundred_alloys(tmp_path: Path):
    result = train(alloy_config(tmp_path), tmp_path / "run", progress_bar=False)
    assert result.test is not None and result.test.metrics["p"]["r2"] > 0.9
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())  # the resolved recipe
    recipe = auto_recipe(N_ALLOYS, test_ratio=0.1)
    assert recorded["trainer"]["max_epochs"] == recipe.max_epochs > 100
    assert recorded["data"]["batch_size"] == recipe.batch_size < 256
    assert recorded["data"]["val_ratio"] == recipe.val_ratio
    card = load_checkpoint(result.checkpoint).card
    assert card is not None and card.config["trainer"]["patience"] == recipe.patience
    assert card.config["model"]["standardise_inputs"] is True


def test_the_old_fixed_recipe_without_standardisation_does_not_learn_it(tmp_path: Path):
    """The contrast: batch 256, 100 epochs, patience 10, no weight averaging, raw descriptor (what ``fm train``
    did before)."""
    old = alloy_config(
        tmp_path, model={"standardise_inputs": False}, data={"val_ratio": 0.1, "batch_size": 256},
        trainer={"max_epochs": 100, "patience": 10, "ema_decay": None, "progress_bar": False},
    )  # fmt: skip
    result = train(old, tmp_path / "run", progress_bar=False)
    assert result.test is not None and result.test.metrics["p"]["r2"] < 0.5


def test_recipe_grows_batches_and_shrinks_epochs_with_the_data():
    small, large = auto_recipe(300, test_ratio=0.1), auto_recipe(20_000, test_ratio=0.1)
    assert small.batch_size < large.batch_size == 256
    assert small.max_epochs > large.max_epochs == 100 and small.patience > large.patience
    assert small.val_ratio > large.val_ratio == 0.1
    kept = auto_recipe(300, test_ratio=0.1, val_ratio=0.05, batch_size=64)  # the user's settings stay
    assert (kept.val_ratio, kept.batch_size) == (0.05, 64)


def tiny_model(standardise: bool) -> FlexibleMultiTaskModel:
    spec = DescriptorSpec()
    descriptor = Descriptor(spec)
    config = ModelConfig(
        input_dim=descriptor.dim, n_tokens=descriptor.n_tokens, tasks=[TaskSpec(name="p")],
        scalers={"p": TargetScaler(mean=[10.0], std=[5.0])}, encoder=EncoderConfig(hidden_dims=[32, 16]),
        descriptor=spec, standardise_inputs=standardise,
    )  # fmt: skip
    torch.manual_seed(0)
    return FlexibleMultiTaskModel(config)


def test_standardisation_is_fitted_stored_and_differentiable_in_the_weights(tmp_path: Path):
    alloys = minor_element_alloys(200, seed=1)
    weights = parse_many(list(alloys["formula"])).weights
    x = Descriptor(DescriptorSpec()).transform(weights)
    model = tiny_model(standardise=True)
    model.fit_input_scaling(x)
    expected = np.maximum(x.std(axis=0), INPUT_STD_FLOOR)  # per-feature scale, at least the floor
    np.testing.assert_allclose(model.input_std.numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(model.input_mean.numpy(), x.mean(axis=0), rtol=1e-4, atol=1e-7)
    z = model.standardise(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(z, (x - x.mean(axis=0)) / expected, rtol=1e-3, atol=1e-4)
    model.fit_input_scaling(x.astype(np.float32), block=7)  # block by block (memory-mapped corpora) gives the same
    np.testing.assert_allclose(model.input_std.numpy(), expected, rtol=1e-4)
    model.eval()
    w = torch.as_tensor(weights[:4], dtype=torch.float32).requires_grad_(True)
    y = model.to_physical("p", model(Descriptor(DescriptorSpec()).transform_torch(w))["p"]).sum()
    (grad,) = torch.autograd.grad(y, w)
    nb = element_symbols().index("Nb")
    assert torch.isfinite(grad).all() and float(grad[:, nb].abs().min()) > 0
    saved = load_checkpoint(save_checkpoint(model, tmp_path / "ckpt")).model
    assert torch.equal(saved.input_std, model.input_std) and torch.equal(saved.input_mean, model.input_mean)
    assert torch.equal(saved(torch.as_tensor(x[:5], dtype=torch.float32))["p"],
                       model(torch.as_tensor(x[:5], dtype=torch.float32))["p"])  # fmt: skip


def test_a_model_without_standardisation_feeds_the_descriptor_unchanged(tmp_path: Path):
    """Checkpoints written before standardisation existed have no ``standardise_inputs`` key and no buffers."""
    model = tiny_model(standardise=False)
    assert "input_mean" not in model.state_dict()
    x = torch.rand(3, model.config.input_dim)
    assert model.standardise(x) is x
    with pytest.raises(ValueError, match="without input standardisation"):
        model.fit_input_scaling(x.numpy())
    data = model.config.to_dict()
    del data["standardise_inputs"]
    assert ModelConfig.from_dict(data).standardise_inputs is False


def test_the_committed_old_checkpoint_loads_without_standardisation():
    """The regression fixture predates standardisation: it loads with none (its predictions are pinned by
    tests/regression/test_outputs_unchanged.py)."""
    model = load_checkpoint(Path(__file__).parents[1] / "regression" / "fixtures" / "checkpoint").model
    assert model.config.standardise_inputs is False and "input_std" not in model.state_dict()
