import numpy as np
import pandas as pd
import pytest
import torch

from fm_engine.data import CompositionDataModule
from fm_engine.descriptors import Descriptor
from fm_engine.tasks import TaskSpec

GAP = pd.DataFrame(
    {
        "composition": ["Fe2O3", "NaCl", "TiO2", "ZnO", "MgO", "Al2O3"],
        "gap": [2.1, 8.5, 3.0, 3.4, 7.8, 8.8],
        "split": ["train", "test", None, None, None, "val"],
    }
)
CP = pd.DataFrame(
    {
        "formula": ["NaCl", "NaCl", "Cu", "Fe4O6", "Fe4O6", "Fe4O6"],
        "T": [300, 400, 300, 300, 500, 400],
        "cp": [50, 52, 24, 100, 120, 110],
    }
)
PHASE = pd.DataFrame(
    {
        "composition": ["TiO2", "NaCl", "Cu", "Ni"],
        "phase": ["a", "b", "a", "b"],
        "split": [None, "val", None, None],
    }
)


def tasks(**overrides):
    return [
        TaskSpec(name="gap", unit="eV", **overrides.get("gap", {})),
        TaskSpec(name="cp", type="kernel_regression", composition_column="formula", data_column="cp", t_column="T"),
        TaskSpec(name="phase", type="classification", classes=["a", "b"]),
    ]


def module(**kwargs):
    dm = CompositionDataModule(
        kwargs.pop("tasks", tasks()), frames={"gap": GAP, "cp": CP, "phase": PHASE}, batch_size=4, **kwargs
    )
    with pytest.warns(UserWarning, match="conflicting split labels"):
        dm.setup()
    return dm


def test_tables_join_on_composition_and_missing_targets_are_masked():
    dm = module()
    assert len(dm.keys) == 8  # union of the three tables (Fe2O3 == Fe4O6)
    assert dm.x.shape == (8, 464) and dm.x.dtype == np.float32
    row = {key: i for i, key in enumerate(dm.keys)}
    nacl, fe2o3, ni = row["Cl0.5Na0.5"], row["Fe0.4O0.6"], row["Ni1"]
    assert dm.masks["gap"][nacl] and dm.masks["cp"][nacl] and dm.masks["phase"][nacl]
    assert dm.masks["cp"][fe2o3] and not dm.masks["phase"][fe2o3]
    assert not dm.masks["gap"][ni] and dm.masks["phase"][ni]
    np.testing.assert_array_equal(dm.curves["cp"][fe2o3][0], [300, 400, 500])
    assert dm.values["gap"][nacl] == pytest.approx(8.5)


def test_split_overlay_uses_file_labels_with_precedence():
    dm = module()
    split = dict(zip(dm.keys, dm.split, strict=True))
    assert split["Fe0.4O0.6"] == "train"
    assert split["Al0.4O0.6"] == "val"
    assert split["Cl0.5Na0.5"] == "test"  # test in gap.csv beats val in phase.csv


def test_batches_carry_targets_masks_and_variable_length_t():
    dm = module(test_ratio=0.0, val_ratio=0.0)
    batch = dm.dataset("train").__getitems__(list(range(len(dm.dataset("train")))))
    n = len(batch.x)
    assert batch.x.shape == (n, 464)
    assert batch.targets["gap"].dtype == torch.float32 and batch.targets["phase"].dtype == torch.int64
    assert len(batch.targets["cp"]) == n and len(batch.t["cp"]) == n
    for mask, y, t in zip(batch.masks["cp"], batch.targets["cp"], batch.t["cp"], strict=True):
        assert len(y) == len(t)
        assert (len(y) > 0) == bool(mask)
    # Masked regression targets are zero-filled, never imputed from other rows.
    assert (batch.targets["gap"][~batch.masks["gap"]] == 0).all()
    loader_batches = list(dm.train_dataloader())
    assert sum(len(b.x) for b in loader_batches) <= len(dm.dataset("train"))


def test_same_seed_same_split_and_different_seed_differs():
    big = pd.DataFrame({"composition": [f"Fe{i}Ni{100 - i}" for i in range(1, 100)], "y": np.arange(99.0)})
    split = []
    for seed in (1, 1, 2):
        dm = CompositionDataModule([TaskSpec(name="y")], frames={"y": big}, seed=seed)
        dm.setup()
        split.append(dm.split.copy())
    assert (split[0] == split[1]).all()
    assert not (split[0] == split[2]).all()
    # 99 compositions: the default recipe's validation share for small data (0.2), the default test share (0.1)
    assert (split[0] == "test").sum() == 10 and (split[0] == "val").sum() == round(99 * dm.val_ratio) == 20


def test_split_seed_keeps_the_split_while_the_seed_changes_the_batch_order():
    big = pd.DataFrame({"composition": [f"Fe{i}Ni{100 - i}" for i in range(1, 100)], "y": np.arange(99.0)})
    modules = []
    for seed in (1, 2):
        dm = CompositionDataModule([TaskSpec(name="y", task_masking_ratio=0.5)], frames={"y": big}, seed=seed,
                                   split_seed=7, batch_size=8)  # fmt: skip
        dm.setup()
        modules.append(dm)
    a, b = modules
    assert (a.split == b.split).all() and (a.train_keep["y"] == b.train_keep["y"]).all()
    first_a, first_b = next(iter(a.train_dataloader())), next(iter(b.train_dataloader()))
    assert not torch.equal(first_a.x, first_b.x)  # different shuffling
    unseeded = CompositionDataModule([TaskSpec(name="y")], frames={"y": big}, seed=7)
    unseeded.setup()
    assert (unseeded.split == a.split).all() and unseeded.split_seed == 7


def test_task_masking_ratio_applies_to_training_rows_only():
    big = pd.DataFrame({"composition": [f"Fe{i}Ni{100 - i}" for i in range(1, 100)], "y": np.arange(99.0)})
    dm = CompositionDataModule([TaskSpec(name="y", task_masking_ratio=0.25)], frames={"y": big}, val_ratio=0.1)
    dm.setup()
    summary = dm.summary().iloc[0]
    assert summary["train"] == 79 and summary["train_kept"] == round(79 * 0.25)
    train_batch = dm.dataset("train").__getitems__(list(range(79)))
    assert int(train_batch.masks["y"].sum()) == round(79 * 0.25)
    val_batch = dm.dataset("val").__getitems__(list(range(10)))
    assert bool(val_batch.masks["y"].all())


def test_predict_idx_selects_compositions():
    dm = module(tasks=tasks(gap={"predict_idx": ["CuO", "Fe2O3"]}))
    predicted = dm.predict_compositions
    assert "Cu0.5O0.5" in predicted and "Fe0.4O0.6" in predicted  # CuO has no label anywhere
    assert dm.split[dm.keys.index("Cu0.5O0.5")] == "unlabelled"
    dm_all = module(tasks=tasks(gap={"predict_idx": "all"}))
    assert set(dm_all.predict_compositions) >= {dm_all.keys[i] for i in np.flatnonzero(dm_all.masks["gap"])}


class NaNForCopper(Descriptor):
    def transform(self, weights):
        out = super().transform(weights)
        out[np.asarray(weights)[:, 28] > 0.5] = np.nan  # Cu
        return out


def test_compositions_without_valid_descriptor_are_dropped_with_one_warning():
    dm = CompositionDataModule(tasks(), descriptor=NaNForCopper(), frames={"gap": GAP, "cp": CP, "phase": PHASE})
    with pytest.warns(UserWarning, match="dropped 1 composition\\(s\\) without a valid descriptor"):
        dm.setup()
    assert "Cu1" not in dm.keys


def test_inferred_classes_are_recorded_on_the_task():
    task = TaskSpec(name="phase", type="classification")
    dm = CompositionDataModule([task], frames={"phase": PHASE.drop(columns="split")})
    dm.setup()
    assert task.classes == ["a", "b"]


def test_restrict_training_keeps_only_rows_with_a_kept_label(tiny_data):
    bulk = TaskSpec(name="bulk", data_files=[str(tiny_data / "bulk.csv")], composition_column="formula",
                    data_column="target")  # fmt: skip
    phase = TaskSpec(name="hea_phase", type="classification", data_files=[str(tiny_data / "phase.csv")])
    dm = CompositionDataModule([bulk, phase], batch_size=32)
    dm.setup()
    replay = dm.train_keep["bulk"] & (np.cumsum(dm.train_keep["bulk"]) <= 10)  # the first 10 training rows
    dm.restrict_training({"bulk": replay, "hea_phase": dm.train_keep["hea_phase"]})
    rows = dm.dataset("train").indices
    assert dm.train_keep["bulk"].sum() == 10
    assert set(rows) == set(np.flatnonzero(replay | dm.train_keep["hea_phase"]))
    dm.restrict_training({"hea_phase": dm.train_keep["hea_phase"]})  # a task not named gets no rows
    assert dm.train_keep["bulk"].sum() == 0 and len(dm.dataset("train")) == dm.train_keep["hea_phase"].sum()
    with pytest.raises(ValueError, match="unknown task"):
        dm.restrict_training({"nope": replay})


def test_the_validation_share_is_sized_by_the_compositions_without_a_file_split():
    """A fine-tune's replayed corpus rows come with their split: 300 rows of the user's own next to 5,000 such
    rows get the small-data validation share (0.2), while batch size and epochs follow all 5,300 rows."""
    from fm_engine.data.recipe import auto_recipe
    from tests.foundation.synthetic import synthetic_compositions

    keys, _ = synthetic_compositions(5300, seed=4)
    rng = np.random.default_rng(0)
    replay = pd.DataFrame({"composition": keys[:5000], "value": rng.normal(size=5000),
                           "split": rng.choice(["train", "val", "test"], 5000, p=[0.8, 0.1, 0.1])})  # fmt: skip
    own = pd.DataFrame({"composition": keys[5000:], "target": rng.normal(size=300)})
    specs = [
        TaskSpec(name="replayed", data_column="value", split_column="split", composition_column="composition"),
        TaskSpec(name="own", data_column="target", composition_column="composition"),
    ]
    dm = CompositionDataModule(specs, frames={"replayed": replay, "own": own}, descriptor=Descriptor())
    dm.setup()
    assert dm.val_ratio == auto_recipe(300, test_ratio=0.1).val_ratio == 0.2
    assert dm.recipe == auto_recipe(5300, test_ratio=0.1, val_ratio=0.2)
    own_rows = dm.masks["own"]
    assert abs((dm.split[own_rows] == "val").mean() - 0.2) < 0.05
