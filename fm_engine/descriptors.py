"""Differentiable composition descriptors ``x = f(w)`` of an element weight vector ``w`` (B, 94).

Two kinds, each with a numpy path and a torch path that give the same numbers (float64):

* ``kmd``: the 1-d kernel mean descriptor. Each element feature is min-max scaled to [0, 1]; for each
  feature ``n_grids`` equally spaced grid points ``g_j`` carry a Gaussian kernel of width
  ``sigma = spacing / sqrt(2)`` (``sigma="auto"``) so ``K[e, f*n + j] = exp(-(x_ef - g_j)^2 / (2 sigma^2))``
  and ``x = w @ K``. 58 features x 8 grids = 464 dims. Linear in ``w``.
* ``stats``: weighted mean, weighted variance, smooth max and smooth min of the (min-max scaled)
  element features over the elements present, laid out feature by feature. The smooth max is a
  ``w``-weighted soft-argmax average
  ``sum_e w_e exp(b f_e) f_e / sum_e w_e exp(b f_e)`` with sharpness ``b`` (``smooth_beta``); it tends to
  the max over present elements as ``b`` grows and is differentiable in ``w``.

A :class:`DescriptorSpec` (kind, parameters, element-table hash) is JSON-serialisable and rebuilds the
same descriptor; building from a spec whose table hash differs from the shipped table is an error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from fm_engine.compositions import CompositionLike, parse_many
from fm_engine.config import check_keys, check_range
from fm_engine.elements import element_table, element_table_hash, feature_matrix

DescriptorKind = Literal["kmd", "stats"]
_STATS = ("mean", "var", "max", "min")


def check_weight_rows(weights: np.ndarray) -> None:
    """Raise ``ValueError`` naming the first row of ``weights`` (B, 94) that is not a composition (NaN / inf,
    negative, or summing to 0): such a row never reaches a model."""
    w = np.atleast_2d(np.asarray(weights))
    bad = ~(np.isfinite(w).all(axis=1) & (w >= 0).all(axis=1) & (w.sum(axis=1) > 0))
    if bad.any():
        raise ValueError(
            f"weight row {int(np.flatnonzero(bad)[0])} is not a composition "
            "(atomic fractions must be finite, non-negative and sum to more than 0)"
        )


@dataclass(frozen=True)
class DescriptorSpec:
    """Everything needed to rebuild a descriptor exactly (stored in every checkpoint)."""

    kind: DescriptorKind = "kmd"
    n_grids: int = 8
    sigma: float | Literal["auto"] = "auto"
    stats: tuple[str, ...] = _STATS
    smooth_beta: float = 20.0
    element_table_hash: str = field(default_factory=element_table_hash)

    def __post_init__(self) -> None:
        if self.kind not in ("kmd", "stats"):
            raise ValueError(f"unknown descriptor kind '{self.kind}' (expected 'kmd' or 'stats')")
        if self.kind == "kmd" and self.n_grids < 2:
            raise ValueError(f"n_grids must be >= 2, got {self.n_grids}")
        if self.sigma != "auto" and not (isinstance(self.sigma, int | float) and self.sigma > 0):
            raise ValueError(f"sigma must be 'auto' or a positive number, got {self.sigma!r}")
        check_range("descriptor.smooth_beta", self.smooth_beta, low=0, low_open=True)
        unknown = [s for s in self.stats if s not in _STATS]
        if unknown:
            raise ValueError(f"unknown statistics {unknown} (choose from {list(_STATS)})")
        object.__setattr__(self, "stats", tuple(self.stats))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stats"] = list(self.stats)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DescriptorSpec:
        values, _ = check_keys(data, cls.__dataclass_fields__, path="descriptor")
        if "stats" in values:
            values["stats"] = tuple(values["stats"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> DescriptorSpec:
        return cls.from_dict(json.loads(text))


def _scaled_features() -> np.ndarray:
    """Element features min-max scaled per feature to [0, 1] (constant features -> 0)."""
    features = feature_matrix()
    low, high = features.min(axis=0), features.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return (features - low) / span


def _numpy_column_max(x: np.ndarray) -> np.ndarray:
    return x.max(axis=0, keepdims=True)


def _torch_column_max(x: torch.Tensor) -> torch.Tensor:
    return x.max(dim=0, keepdim=True).values


def _smooth_weights(f: Any, signed_beta: dict[str, float], exp: Any, column_max: Any) -> dict[str, Any]:
    """Per stat (``max`` / ``min``): the per-element weights ``exp(b f - max_e(b f))`` of the smooth max
    (``b = +smooth_beta``) or min (``b = -smooth_beta``) over the element features ``f`` (E, F); numpy or
    torch alike (``exp`` and ``column_max`` of the library), shifted by the column max against overflow."""
    weights = {}
    for stat, b in signed_beta.items():
        logits = b * f
        weights[stat] = exp(logits - column_max(logits))
    return weights


def _pooled_stats(p: Any, f: Any, smooth: dict[str, Any], stats: Sequence[str]) -> list[Any]:
    """Each of ``stats`` of the element features ``f`` (E, F) over the elements, weighted by the fractions
    ``p`` (B, E): one (B, F) array or tensor per stat (numpy and torch alike; ``smooth``: see
    :func:`_smooth_weights`)."""
    mean = p @ f
    parts = []
    for stat in stats:
        if stat == "mean":
            parts.append(mean)
        elif stat == "var":
            parts.append(p @ (f**2) - mean**2)
        else:
            e = smooth[stat]
            parts.append((p @ (e * f)) / (p @ e))
    return parts


class Descriptor:
    """A descriptor built from a :class:`DescriptorSpec`; maps weights (B, 94) to features (B, dim)."""

    def __init__(self, spec: DescriptorSpec | None = None) -> None:
        spec = spec or DescriptorSpec()
        if spec.element_table_hash != element_table_hash():
            raise ValueError(
                "descriptor was built on a different element table "
                f"(hash {spec.element_table_hash[:12]}..., shipped table {element_table_hash()[:12]}...)"
            )
        self.spec = spec
        self._features = _scaled_features()  # (E, F)
        self._kernel = self._build_kernel() if spec.kind == "kmd" else None
        self._smooth = _smooth_weights(self._features, self._smooth_signs(), np.exp, _numpy_column_max)
        self._torch_cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}

    # ----------------------------------------------------------------- description
    @property
    def dim(self) -> int:
        n_features = self._features.shape[1]
        if self.spec.kind == "kmd":
            return n_features * self.spec.n_grids
        return n_features * len(self.spec.stats)

    @property
    def feature_names(self) -> list[str]:
        names = list(element_table().columns)
        if self.spec.kind == "kmd":
            return [f"{name}_k{j}" for name in names for j in range(self.spec.n_grids)]
        return [f"{stat}_{name}" for name in names for stat in self.spec.stats]

    @property
    def n_tokens(self) -> int:
        """Number of element features; the descriptor is feature-major: (n_tokens, dim // n_tokens)."""
        return self._features.shape[1]

    def _build_kernel(self) -> np.ndarray:
        n = self.spec.n_grids
        grid = np.linspace(0.0, 1.0, n)
        spacing = 1.0 / (n - 1)
        sigma = spacing / math.sqrt(2.0) if self.spec.sigma == "auto" else float(self.spec.sigma)
        diff = self._features[:, :, None] - grid[None, None, :]  # (E, F, n)
        return np.exp(-(diff**2) / (2.0 * sigma**2)).reshape(self._features.shape[0], -1)

    @property
    def kernel(self) -> np.ndarray:
        """The KMD kernel matrix K (94, F * n_grids); only for ``kind='kmd'``."""
        if self._kernel is None:
            raise AttributeError("only the 'kmd' descriptor has a kernel matrix")
        return self._kernel.copy()

    # ----------------------------------------------------------------- numpy path
    def transform(self, weights: np.ndarray) -> np.ndarray:
        """Descriptor of weight rows (B, 94) or (94,), numpy float64.

        A row that is not a composition (NaN / inf, negative, or summing to 0) raises ``ValueError`` naming
        it: such a row never reaches a model."""
        w = np.asarray(weights, dtype=np.float64)
        squeeze = w.ndim == 1
        w = np.atleast_2d(w)
        check_weight_rows(w)
        out = w @ self._kernel if self._kernel is not None else self._stats_numpy(w)
        return out[0] if squeeze else out

    def _stats_numpy(self, w: np.ndarray) -> np.ndarray:
        p = w / w.sum(axis=1, keepdims=True)
        parts = _pooled_stats(p, self._features, self._smooth, self.spec.stats)
        return np.stack(parts, axis=2).reshape(len(w), -1)  # feature-major

    def _smooth_signs(self) -> dict[str, float]:
        """The sign of the exponent of each smooth max (+) / min (-) in ``spec.stats``, times ``smooth_beta``."""
        if self.spec.kind == "kmd":
            return {}
        beta = self.spec.smooth_beta
        return {stat: (beta if stat == "max" else -beta) for stat in self.spec.stats if stat in ("max", "min")}

    # ----------------------------------------------------------------- torch path
    def _torch_constants(
        self, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the kernel, {}) for KMD, else (the element features, their smooth max/min weights), in dtype."""
        key = (device, dtype)
        if key not in self._torch_cache:
            if self._kernel is not None:
                self._torch_cache[key] = (torch.as_tensor(self._kernel, device=device, dtype=dtype), {})
            else:
                f = torch.as_tensor(self._features, device=device, dtype=dtype)
                self._torch_cache[key] = (f, _smooth_weights(f, self._smooth_signs(), torch.exp, _torch_column_max))
        return self._torch_cache[key]

    def transform_torch(self, weights: torch.Tensor) -> torch.Tensor:
        """Differentiable descriptor of weight rows (B, 94) -> (B, dim), same dtype/device as ``weights``."""
        const, smooth = self._torch_constants(weights.device, weights.dtype)
        if self._kernel is not None:
            return weights @ const
        p = weights / weights.sum(dim=-1, keepdim=True)
        parts = _pooled_stats(p, const, smooth, self.spec.stats)
        return torch.stack(parts, dim=-1).flatten(-2)  # feature-major

    # ----------------------------------------------------------------- compositions
    def from_compositions(self, compositions: Sequence[CompositionLike]) -> np.ndarray:
        """Descriptor rows for compositions; raises ``ValueError`` naming the first bad row."""
        batch = parse_many(compositions)
        if batch.n_bad:
            first = batch.bad.iloc[0]
            raise ValueError(f"row {first['row']}: {first['reason']}")
        return self.transform(batch.weights)


def transform_in_blocks(
    descriptor: Descriptor,
    weights: np.ndarray,
    *,
    out: np.ndarray | None = None,
    block: int = 8192,
    progress: Callable[[int], object] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Float32 descriptor rows of ``weights`` (N, 94), computed block by block in float64, and which rows are
    finite.

    Peak memory is the float32 table plus one float64 block, not several float64 copies of the whole table (at
    1M compositions, 464-dim KMD: 1.9 GB instead of ~8 GB). ``out`` (N, dim) float32 receives the rows (e.g. a
    memory-mapped file); default a new array. ``progress(n_rows)`` is called after each block.
    """
    if out is None:
        out = np.empty((len(weights), descriptor.dim), dtype=np.float32)
    if out.shape != (len(weights), descriptor.dim):
        raise ValueError(f"descriptor output has shape {out.shape}, expected {(len(weights), descriptor.dim)}")
    finite = np.ones(len(weights), dtype=bool)
    for start in range(0, len(weights), block):
        rows = descriptor.transform(np.asarray(weights[start : start + block], dtype=np.float64))
        finite[start : start + block] = np.all(np.isfinite(rows), axis=1)
        out[start : start + block] = rows
        if progress is not None:
            progress(len(rows))
    return out, finite


class DescriptorCache:
    """Descriptor rows cached per canonical composition key (computed once per unique composition)."""

    def __init__(self, descriptor: Descriptor) -> None:
        self.descriptor = descriptor
        self._rows: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def get(self, keys: Sequence[str], weights: np.ndarray) -> np.ndarray:
        """Descriptor rows (len(keys), dim) for canonical ``keys`` with matching ``weights`` rows."""
        missing = [i for i, key in enumerate(keys) if key not in self._rows]
        if missing:
            computed = self.descriptor.transform(weights[missing])
            for i, row in zip(missing, computed, strict=True):
                self._rows[keys[i]] = row
        if not keys:
            return np.zeros((0, self.descriptor.dim))
        return np.stack([self._rows[key] for key in keys])
