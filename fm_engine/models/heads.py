"""Task heads on the shared latent ``h_task`` (B, latent_dim), all in normalised target space."""

from __future__ import annotations

import torch
from torch import nn


def mlp(input_dim: int, hidden_dims: list[int], output_dim: int) -> nn.Sequential:
    """Linear layers with SiLU between them and a plain linear output (no activation)."""
    dims = [input_dim, *hidden_dims]
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.Linear(d_in, d_out), nn.SiLU()]
    layers.append(nn.Linear(dims[-1], output_dim))
    return nn.Sequential(*layers)


class RegressionHead(nn.Module):
    """Scalar (output_dim = 1, returns (B,)) or vector (returns (B, d)) regression."""

    def __init__(self, latent_dim: int, hidden_dims: list[int], output_dim: int = 1) -> None:
        super().__init__()
        self.output_dim = output_dim
        self.net = mlp(latent_dim, hidden_dims, output_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.net(h)
        return out.squeeze(-1) if self.output_dim == 1 else out


class ClassificationHead(nn.Module):
    """Class logits (B, n_classes); ``class_weights`` (a buffer) weight the cross-entropy."""

    def __init__(self, latent_dim: int, hidden_dims: list[int], n_classes: int) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden_dims, n_classes)
        self.register_buffer("class_weights", torch.ones(n_classes))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class KernelRegressionHead(nn.Module):
    """A property at any ``t``: ``y(h, t) = sum_k a_k(h) phi_k(t) + b0(h) + b1(h) t``.

    ``phi_k(t) = exp(-(t - mu_k)^2 / (2 s_k^2))`` with learnable centres ``mu_k`` and widths ``s_k``
    (``t`` normalised per task). Points are given flat: ``t`` (P,) with ``index`` (P,) naming each
    point's sample, so every sample may have its own, arbitrary t grid.
    """

    def __init__(self, latent_dim: int, hidden_dims: list[int], n_kernels: int) -> None:
        super().__init__()
        self.amplitudes = mlp(latent_dim, hidden_dims, n_kernels)
        self.baseline = nn.Linear(latent_dim, 2)
        self.centres = nn.Parameter(torch.linspace(-2.0, 2.0, n_kernels))
        width = 4.0 / max(n_kernels - 1, 1)
        self.log_widths = nn.Parameter(torch.full((n_kernels,), float(torch.log(torch.tensor(width)))))

    def forward(self, h: torch.Tensor, t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        amplitudes = self.amplitudes(h)[index]  # (P, K)
        baseline = self.baseline(h)[index]  # (P, 2)
        widths = self.log_widths.exp()
        basis = torch.exp(-0.5 * ((t[:, None] - self.centres) / widths) ** 2)
        return (amplitudes * basis).sum(-1) + baseline[:, 0] + baseline[:, 1] * t


class AutoencoderHead(nn.Module):
    """Reconstructs the descriptor x from ``h_task`` (needed by latent-space inverse design)."""

    def __init__(self, latent_dim: int, hidden_dims: list[int], input_dim: int) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden_dims, input_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)
