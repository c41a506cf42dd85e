import pytest
import torch

from fm_engine.descriptors import DescriptorSpec
from fm_engine.models import (
    AUTOENCODER,
    AutoencoderConfig,
    EncoderConfig,
    FlexibleMultiTaskModel,
    ModelConfig,
    TargetScaler,
    flatten_curves,
)
from fm_engine.tasks import TaskSpec

D = 58 * 8


def make_model(encoder: EncoderConfig | None = None, balancer: bool = False) -> FlexibleMultiTaskModel:
    torch.manual_seed(0)
    tasks = [
        TaskSpec(name="gap", unit="eV"),
        TaskSpec(name="vec"),
        TaskSpec(name="phase", type="classification", classes=["a", "b", "c"], class_weights=[1.0, 2.0, 0.5]),
        TaskSpec(name="cp", type="kernel_regression", t_column="T", n_kernels=5),
    ]
    scalers = {
        "gap": TargetScaler(mean=[2.0], std=[1.5]),
        "vec": TargetScaler(mean=[0.0, 1.0, 2.0], std=[1.0, 1.0, 2.0]),
        "phase": TargetScaler(),
        "cp": TargetScaler(mean=[30.0], std=[5.0], t_mean=600.0, t_std=300.0, t_min=100.0, t_max=1200.0),
    }
    config = ModelConfig(
        input_dim=D, n_tokens=58, tasks=tasks, scalers=scalers,
        encoder=encoder or EncoderConfig(hidden_dims=[64, 32]),
        autoencoder=AutoencoderConfig(hidden_dims=[32]), loss_balancer=balancer, descriptor=DescriptorSpec(),
    )  # fmt: skip
    return FlexibleMultiTaskModel(config)


def batch(n: int = 6):
    torch.manual_seed(1)
    x = torch.rand(n, D)
    t = [torch.linspace(100, 1000, k) for k in range(1, n + 1)]
    targets = {
        "gap": torch.rand(n) * 5,
        "vec": torch.rand(n, 3),
        "phase": torch.randint(0, 3, (n,)),
        "cp": [20 + torch.rand(len(v)) * 20 for v in t],
    }
    masks = {name: torch.tensor([True, False] * (n // 2)) for name in ("gap", "vec", "phase")}
    masks["cp"] = torch.ones(n, dtype=torch.bool)
    return x, targets, masks, {"cp": t}


ENCODERS = [
    EncoderConfig(hidden_dims=[64, 64, 32], residual=True, norm="layer"),
    EncoderConfig(type="transformer", d_model=16, nhead=4, num_layers=1, latent_dim=24, pooling="mean"),
    EncoderConfig(type="transformer", d_model=16, nhead=2, pooling="cls"),
]


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_head_shape_with_each_encoder(encoder):
    model = make_model(encoder)
    x, _, _, t = batch()
    flat_t, index, _ = flatten_curves(t["cp"])
    out = model(x, {"cp": (flat_t, index)})
    assert out["gap"].shape == (6,)
    assert out["vec"].shape == (6, 3)
    assert out["phase"].shape == (6, 3)
    assert out["cp"].shape == (21,)
    assert out[AUTOENCODER].shape == (6, D)
    h = model.encode(x)
    assert h.abs().max() <= 1.0  # the model-level tanh
    losses = model.task_losses(*batch())
    model.total_loss(losses).backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_regression_output_is_linear_and_in_physical_units():
    model = make_model()
    head = model.heads["gap"]
    assert isinstance(head.net[-1], torch.nn.Linear)  # no activation on the output
    y = torch.tensor([0.0, 1.0])
    assert torch.allclose(model.to_physical("gap", y), torch.tensor([2.0, 3.5]))
    assert torch.allclose(model.to_normalised("gap", model.to_physical("gap", y)), y)


def test_kernel_head_predicts_on_any_t_grid():
    model = make_model()
    x = torch.rand(2, D)
    h = model.encode(x)
    grid = torch.tensor([137.0, 612.5, 2000.0])  # never seen: arbitrary values, outside the range too
    out = model.heads_forward(h, {"cp": (grid.repeat(2), torch.repeat_interleave(torch.arange(2), 3))})
    assert out["cp"].shape == (6,) and torch.isfinite(out["cp"]).all()
    single = model.heads_forward(h[:1], {"cp": (grid[1:2], torch.zeros(1, dtype=torch.long))})
    assert torch.allclose(single["cp"], out["cp"][1:2], atol=1e-6)  # a point does not depend on the others


def test_masked_rows_do_not_affect_the_loss():
    model = make_model().eval()
    x, targets, masks, t = batch()
    before = model.task_losses(x, targets, masks, t)
    targets["gap"][~masks["gap"]] = 1e6
    targets["phase"][~masks["phase"]] = (targets["phase"][~masks["phase"]] + 1) % 3
    after = model.task_losses(x, targets, masks, t)
    assert torch.equal(before["gap"], after["gap"]) and torch.equal(before["phase"], after["phase"])
    masks["gap"][:] = False
    assert "gap" not in model.task_losses(x, targets, masks, t)


def test_class_weights_change_the_classification_loss():
    model = make_model().eval()
    x, targets, masks, t = batch()
    weighted = model.task_losses(x, targets, masks, t)["phase"]
    model.heads["phase"].class_weights.fill_(1.0)
    assert not torch.isclose(weighted, model.task_losses(x, targets, masks, t)["phase"])


def test_uncertainty_balancer_formula():
    model = make_model(balancer=True)
    assert set(model.log_sigma) == {"gap", "vec", "phase", "cp", AUTOENCODER}
    with torch.no_grad():
        model.log_sigma["gap"].fill_(0.3)
    losses = {"gap": torch.tensor(2.0)}
    model.tasks["gap"].loss_weight = 1.5
    expected = 0.5 * 1.5 * torch.exp(torch.tensor(-0.6)) * 2.0 + 0.3
    assert torch.isclose(model.total_loss(losses), expected)
    plain = make_model(balancer=False)
    plain.tasks["gap"].loss_weight = 1.5
    assert torch.isclose(plain.total_loss(losses), torch.tensor(3.0))


def test_add_and_remove_tasks_at_runtime():
    model = make_model(balancer=True)
    model.add_task(TaskSpec(name="hardness", unit="GPa"), TargetScaler(mean=[5.0], std=[2.0]))
    x = torch.rand(3, D)
    assert model(x)["hardness"].shape == (3,)
    assert "hardness" in model.log_sigma and [t.name for t in model.config.tasks][-1] == "hardness"
    with pytest.raises(ValueError, match="already exists"):
        model.add_task(TaskSpec(name="gap"))
    model.remove_tasks("gap", "hardness")
    assert "gap" not in model(x) and "gap" not in model.config.scalers and "gap" not in model.log_sigma
    with pytest.raises(ValueError, match="unknown task"):
        model.remove_tasks("nope")


def test_frozen_encoder_stays_bit_identical_while_heads_learn():
    model = make_model(EncoderConfig(hidden_dims=[64, 32], norm="batch"))
    model.freeze_encoder()
    model.train()
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    heads_before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model.total_loss(model.task_losses(*batch())).backward()
        optimizer.step()
    for key, value in model.encoder.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(value, encoder_before[key]), key
    assert any(not torch.equal(v, heads_before[k]) for k, v in model.heads.state_dict().items())
    model.freeze_encoder(False)
    assert all(p.requires_grad for p in model.encoder.parameters())


def test_frozen_norm_statistics_stay_while_the_encoder_weights_learn():
    model = make_model(EncoderConfig(hidden_dims=[64, 32], norm="batch"))
    model.freeze_norm_statistics()
    model.train()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model.total_loss(model.task_losses(*batch())).backward()
        optimizer.step()
    after = model.encoder.state_dict()
    statistics = [k for k in before if "running_" in k]
    assert statistics and all(torch.equal(after[k], before[k]) for k in statistics)
    assert any(not torch.equal(after[k], before[k]) for k in before if k.endswith("weight"))
    model.freeze_encoder(True)  # the warm-up freeze and its end keep the statistics fixed too
    model.freeze_encoder(False)
    assert not any(m.training for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm1d))
    model.freeze_norm_statistics(False)
    assert all(m.training for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm1d))


def test_config_round_trip():
    model = make_model()
    rebuilt = FlexibleMultiTaskModel(ModelConfig.from_dict(model.config.to_dict()))
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(2, D)
    model.eval(), rebuilt.eval()
    assert torch.equal(model(x)["gap"], rebuilt(x)["gap"])


def test_bad_encoder_settings():
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig(type="transformer", d_model=10, nhead=4)
    with pytest.raises(ValueError, match="unknown encoder type"):
        EncoderConfig(type="gnn")


@pytest.mark.parametrize(
    ("loss", "reference"),
    [
        ("l1", torch.nn.functional.l1_loss),
        ("huber", lambda p, t: torch.nn.functional.smooth_l1_loss(p, t, beta=0.5)),
        ("mse", torch.nn.functional.mse_loss),
    ],
)
def test_each_regression_loss_is_its_formula_on_normalised_values(loss, reference):
    model = make_model().eval()
    x, targets, masks, t = batch()
    model.tasks["gap"].loss = loss
    value = model.task_losses(x, targets, masks, t)["gap"]
    prediction = model(x)["gap"][masks["gap"]]
    target = model.to_normalised("gap", targets["gap"][masks["gap"]])
    assert torch.isclose(value, reference(prediction, target))


def test_an_unknown_regression_loss_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="loss must be one of l1, huber, mse, not 'l2'"):
        TaskSpec(name="a", loss="l2")


def test_decision_thresholds_belong_to_binary_tasks_round_trip_and_leave_with_their_task():
    import numpy as np

    model = make_model()
    model.add_task(TaskSpec(name="metal", type="classification", classes=["no", "yes"]))
    assert model.decision_threshold("metal") is None  # a new head: the most probable class
    proba = np.array([[0.7, 0.3], [0.45, 0.55], [0.9, 0.1]])
    assert model.predicted_classes("metal", proba).tolist() == [0, 1, 0]
    model.set_decision_threshold("metal", 0.2)
    assert model.predicted_classes("metal", proba).tolist() == [1, 1, 0]
    rebuilt = FlexibleMultiTaskModel(ModelConfig.from_dict(model.config.to_dict()))
    assert rebuilt.decision_threshold("metal") == 0.2 and rebuilt.predicted_classes("metal", proba).tolist() == [
        1,
        1,
        0,
    ]
    old = model.config.to_dict()
    del old["decision_thresholds"]  # a config written before thresholds existed
    assert FlexibleMultiTaskModel(ModelConfig.from_dict(old)).decision_threshold("metal") is None
    refused = [("phase", 0.3, "not a binary classification task"), ("gap", 0.3, "not a binary"),
               ("metal", 1.0, "expected a probability in \\(0, 1\\)"), ("nope", 0.3, "not a binary")]  # fmt: skip
    for name, value, why in refused:
        with pytest.raises(ValueError, match=f"decision threshold for '{name}': {why}"):
            model.set_decision_threshold(name, value)
    bad = model.config.to_dict() | {"decision_thresholds": {"phase": 0.4}}  # a three-class task
    with pytest.raises(ValueError, match="'phase': not a binary classification task"):
        FlexibleMultiTaskModel(ModelConfig.from_dict(bad))
    model.remove_tasks("metal")
    assert model.config.decision_thresholds == {}


def test_decision_threshold_setting_is_auto_or_a_probability_of_a_binary_task():
    assert TaskSpec(name="m", type="classification").decision_threshold == "auto"
    assert TaskSpec(name="m", type="classification", decision_threshold=0.3).decision_threshold == 0.3
    for value in (0.0, 1.0, 1.5, "high", True):
        with pytest.raises(ValueError, match="task 'm': decision_threshold: expected 'auto' or a probability"):
            TaskSpec(name="m", type="classification", decision_threshold=value)
    with pytest.raises(ValueError, match="task 'm': decision_threshold is only for \\(binary\\) classification"):
        TaskSpec(name="m", decision_threshold=0.3)
    with pytest.raises(ValueError, match="decision_threshold 0.3 needs two classes, the task has 3"):
        TaskSpec(name="m", type="classification", classes=["a", "b", "c"], decision_threshold=0.3)
    three = TaskSpec(name="m", type="classification", classes=["a", "b", "c"], decision_threshold=0.5)
    assert three.decision_threshold == 0.5  # 0.5, the most probable class, fits any number of classes
    with pytest.raises(ValueError, match="tasks\\[0\\].decision_threshold: expected"):
        TaskSpec.from_dict({"name": "m", "type": "classification", "decision_threshold": [0.3]}, path="tasks[0]")
