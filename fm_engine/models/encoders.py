"""Foundation encoders: descriptor x (B, D) -> latent h (B, latent_dim), before the model-level tanh."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from fm_engine.config import check_range


@dataclass
class EncoderConfig:
    """Encoder settings.

    MLP: ``hidden_dims`` (the last one is the latent size), ``norm`` (batch / layer / none),
    ``residual`` (skip connections between equal-width layers), ``dropout``.
    Transformer: each element feature is a token carrying its descriptor values (8 kernel values for
    KMD); ``d_model``, ``num_layers``, ``nhead``, ``dim_feedforward``, ``dropout``, ``pooling``
    (``cls`` token or ``mean``), then a layer norm and a linear map to ``latent_dim``.
    """

    type: Literal["mlp", "transformer"] = "mlp"
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128])
    norm: Literal["batch", "layer", "none"] = "batch"
    residual: bool = False
    dropout: float = 0.0
    d_model: int = 32
    num_layers: int = 2
    nhead: int = 4
    dim_feedforward: int = 64
    pooling: Literal["cls", "mean"] = "cls"
    latent_dim: int = 128

    def __post_init__(self) -> None:
        if self.type not in ("mlp", "transformer"):
            raise ValueError(f"unknown encoder type '{self.type}' (mlp or transformer)")
        if self.norm not in ("batch", "layer", "none"):
            raise ValueError(f"unknown norm '{self.norm}' (batch, layer or none)")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling '{self.pooling}' (cls or mean)")
        if self.type == "mlp" and not self.hidden_dims:
            raise ValueError("an MLP encoder needs at least one hidden dim")
        if self.type == "transformer" and self.nhead >= 1 and self.d_model % self.nhead:
            raise ValueError(
                f"model.encoder.d_model (token width, {self.d_model}) must be divisible by nhead "
                f"(attention heads, {self.nhead})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        self.hidden_dims = [int(d) for d in self.hidden_dims]
        for i, dim in enumerate(self.hidden_dims):
            check_range(f"model.encoder.hidden_dims[{i}]", dim, low=1)
        for key in ("d_model", "num_layers", "nhead", "dim_feedforward", "latent_dim"):
            check_range(f"model.encoder.{key}", getattr(self, key), low=1)

    @property
    def output_dim(self) -> int:
        return self.hidden_dims[-1] if self.type == "mlp" else self.latent_dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(dim)
    if kind == "layer":
        return nn.LayerNorm(dim)
    return nn.Identity()


class MLPEncoder(nn.Module):
    def __init__(self, input_dim: int, config: EncoderConfig) -> None:
        super().__init__()
        self.residual = config.residual
        dims = [input_dim, *config.hidden_dims]
        self.layers = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            last = i == len(dims) - 2
            block: list[nn.Module] = [nn.Linear(d_in, d_out)]
            if not last:  # the last layer feeds the model-level tanh directly
                block += [_norm(config.norm, d_out), nn.SiLU()]
                if config.dropout:
                    block.append(nn.Dropout(config.dropout))
            self.layers.append(nn.Sequential(*block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            out = layer(x)
            x = out + x if self.residual and out.shape == x.shape else out
        return x


class TransformerEncoder(nn.Module):
    """Tokens = element features; token i carries its ``token_dim`` descriptor values."""

    def __init__(self, input_dim: int, n_tokens: int, config: EncoderConfig) -> None:
        super().__init__()
        if input_dim % n_tokens:
            raise ValueError(f"descriptor dim {input_dim} is not a multiple of {n_tokens} tokens")
        self.n_tokens = n_tokens
        self.token_dim = input_dim // n_tokens
        self.embed = nn.Linear(self.token_dim, config.d_model)
        self.position = nn.Parameter(torch.randn(n_tokens, config.d_model) * 0.02)
        self.pooling = config.pooling
        self.cls = nn.Parameter(torch.zeros(1, 1, config.d_model)) if config.pooling == "cls" else None
        layer = nn.TransformerEncoderLayer(
            config.d_model,
            config.nhead,
            dim_feedforward=config.dim_feedforward,
            dropout=config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.out = nn.Linear(config.d_model, config.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.view(x.shape[0], self.n_tokens, self.token_dim)) + self.position
        if self.cls is not None:
            tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1)
        encoded = self.norm(self.blocks(tokens))
        pooled = encoded[:, 0] if self.cls is not None else encoded.mean(dim=1)
        return self.out(pooled)


def build_encoder(input_dim: int, n_tokens: int, config: EncoderConfig) -> nn.Module:
    if config.type == "mlp":
        return MLPEncoder(input_dim, config)
    return TransformerEncoder(input_dim, n_tokens, config)
