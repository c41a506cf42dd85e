"""Training on PyTorch Lightning: config, run files, evaluation, the ``train`` entry point."""

from fm_engine.training.config import TrainConfig, demo_config, pretrain_config
from fm_engine.training.evaluate import StageEvaluation, evaluate
from fm_engine.training.run_files import RunDirectory
from fm_engine.training.trainer import TrainResult, train

__all__ = [
    "RunDirectory",
    "StageEvaluation",
    "TrainConfig",
    "TrainResult",
    "demo_config",
    "evaluate",
    "pretrain_config",
    "train",
]
