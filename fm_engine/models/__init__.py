"""The multi-task network: encoders, heads, FlexibleMultiTaskModel."""

from fm_engine.models.encoders import EncoderConfig
from fm_engine.models.model import (
    AUTOENCODER,
    AutoencoderConfig,
    FlexibleMultiTaskModel,
    ModelConfig,
    TargetScaler,
    flatten_curves,
)

__all__ = [
    "AUTOENCODER",
    "AutoencoderConfig",
    "EncoderConfig",
    "FlexibleMultiTaskModel",
    "ModelConfig",
    "TargetScaler",
    "flatten_curves",
]
