"""Design targets in physical units and the differentiable objective built from them.

Each target names a task and one goal, with a ``weight``:

* regression: ``value`` (hit a value), ``direction`` ``high`` / ``low``, or ``range`` ``[lo, hi]``;
* classification: ``classes`` (names or indices) with ``direction`` ``high`` (raise the probability of
  that set of classes) or ``low`` (lower it);
* kernel regression (curves): ``points`` ``[[t, y], ...]`` to pass through.

Internally every regression/curve goal is converted to the task's normalised units, so a target's
term is in units of the training spread (1 = one standard deviation). Per-row objective terms:
value ``(y - v)^2``; high ``-y``; low ``+y``; range ``relu(lo - y)^2 + relu(y - hi)^2``;
class high ``-log P(C)``; class low ``-log(1 - P(C))``; curve ``mean_k (y(t_k) - y_k)^2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from fm_engine.config import from_mapping
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.tasks import TaskType

Direction = Literal["high", "low"]


@dataclass
class Target:
    task: str
    value: float | list[float] | None = None
    direction: Direction | None = None
    range: list[float] | None = None
    classes: list[str | int] | None = None
    points: list[list[float]] | None = None
    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str = "") -> Target:
        """Build from a target mapping; keys and value types are checked (errors name ``path``.key)."""
        if isinstance(data, Mapping) and not path:
            path = f"targets[{data.get('task', '?')}]"
        return from_mapping(cls, data, path=path or "target")

    def describe(self, model: FlexibleMultiTaskModel) -> str:
        """Human-readable goal in physical units, e.g. ``bulk_modulus = 250 GPa``."""
        task = model.tasks[self.task]
        unit = f" {task.unit}" if task.unit else ""
        if self.points is not None:
            shown = ", ".join(f"({t:g} {task.t_unit}, {y:g}{unit})".replace(" ,", ",") for t, y in self.points)
            return f"{self.task} through {shown}"
        if self.classes is not None:
            names = [task.classes[c] if isinstance(c, int) else c for c in self.classes]  # type: ignore[index]
            return f"P({self.task} in {'/'.join(map(str, names))}) {'up' if self.direction != 'low' else 'down'}"
        if self.range is not None:
            return f"{self.task} in [{self.range[0]:g}, {self.range[1]:g}]{unit}"
        if self.direction is not None:
            return f"{self.task} {self.direction}"
        return f"{self.task} = {self.value}{unit}"


@dataclass
class _PreparedTarget:
    target: Target
    kind: str  # value / high / low / range / class_high / class_low / curve
    tensor: torch.Tensor | None = None  # value, range bounds (normalised), class indices, curve t
    curve_y: torch.Tensor | None = None  # normalised curve y


def validate_targets(model: FlexibleMultiTaskModel, targets: Sequence[Target]) -> list[_PreparedTarget]:
    """Check targets against the model's tasks; a ``ValueError`` names each conflict."""
    if not targets:
        raise ValueError("at least one target is needed")
    prepared = []
    seen: set[str] = set()
    for target in targets:
        if target.task not in model.tasks:
            raise ValueError(f"target on unknown task '{target.task}' (tasks: {', '.join(model.tasks)})")
        if target.task in seen:
            raise ValueError(f"task '{target.task}' has more than one target")
        seen.add(target.task)
        if not target.weight > 0:
            raise ValueError(f"target '{target.task}': weight must be > 0")
        task = model.tasks[target.task]
        goals = [name for name in ("value", "range", "classes", "points") if getattr(target, name) is not None]
        if target.direction is not None and target.direction not in ("high", "low"):
            raise ValueError(f"target '{target.task}': direction must be 'high' or 'low'")
        if task.type is TaskType.KERNEL_REGRESSION:
            if goals != ["points"] or target.direction is not None:
                raise ValueError(f"target '{target.task}': a sequence task takes only 'points' [[t, y], ...]")
            points = torch.tensor(target.points, dtype=torch.float32)
            if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
                raise ValueError(f"target '{target.task}': points must be a list of [t, y] pairs")
            prepared.append(
                _PreparedTarget(target, "curve", points[:, 0], model.to_normalised(target.task, points[:, 1]))
            )
        elif task.type is TaskType.CLASSIFICATION:
            if goals != ["classes"]:
                raise ValueError(
                    f"target '{target.task}': a classification task takes 'classes' (and direction high/low)"
                )
            names = task.classes or []
            indices = []
            for c in target.classes or []:
                if isinstance(c, int) and not isinstance(c, bool):
                    if not 0 <= c < len(names):
                        raise ValueError(f"target '{target.task}': class index {c} out of range 0..{len(names) - 1}")
                    indices.append(c)
                elif str(c) in names:
                    indices.append(names.index(str(c)))
                else:
                    raise ValueError(f"target '{target.task}': unknown class {c!r} (classes: {', '.join(names)})")
            if not indices or len(set(indices)) == len(names):
                raise ValueError(f"target '{target.task}': classes must be a non-empty strict subset of {names}")
            kind = "class_low" if target.direction == "low" else "class_high"
            prepared.append(_PreparedTarget(target, kind, torch.tensor(sorted(set(indices)))))
        else:
            if target.points is not None or target.classes is not None:
                raise ValueError(f"target '{target.task}': points/classes do not apply to a regression task")
            chosen = [g for g in ("value", "range") if getattr(target, g) is not None]
            if len(chosen) + (target.direction is not None) != 1:
                raise ValueError(f"target '{target.task}': give exactly one of value, direction or range")
            if target.value is not None:
                value = torch.tensor(target.value, dtype=torch.float32).reshape(-1)
                dim = model.config.scalers[target.task].output_dim
                if len(value) not in (1, dim):
                    raise ValueError(f"target '{target.task}': value has {len(value)} entries, the task has {dim}")
                normalised = model.to_normalised(target.task, value if dim > 1 else value[:1].reshape(()))
                prepared.append(_PreparedTarget(target, "value", normalised))
            elif target.range is not None:
                if len(target.range) != 2 or not target.range[0] < target.range[1]:
                    raise ValueError(f"target '{target.task}': range must be [low, high] with low < high")
                bounds = torch.tensor(target.range, dtype=torch.float32)
                prepared.append(_PreparedTarget(target, "range", model.to_normalised(target.task, bounds)))
            else:
                prepared.append(_PreparedTarget(target, target.direction or "high"))
    return prepared


def curve_points(prepared: Sequence[_PreparedTarget], n_rows: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The (t, index) points each sequence target needs, for ``n_rows`` rows."""
    points = {}
    for p in prepared:
        if p.kind == "curve":
            t = p.tensor.repeat(n_rows)  # type: ignore[union-attr]
            index = torch.repeat_interleave(torch.arange(n_rows), len(p.tensor))  # type: ignore[arg-type]
            points[p.target.task] = (t, index)
    return points


def target_terms(prepared: Sequence[_PreparedTarget], outputs: Mapping[str, torch.Tensor], n_rows: int) -> torch.Tensor:
    """Per-row, per-target objective terms (n_rows, n_targets), already multiplied by the weights."""
    terms = []
    for p in prepared:
        y = outputs[p.target.task]
        if p.kind == "curve":
            diff = y.reshape(n_rows, -1) - p.curve_y
            term = (diff**2).mean(dim=1)
        elif p.kind in ("class_high", "class_low"):
            log_p = F.log_softmax(y, dim=-1)
            log_in = torch.logsumexp(log_p[:, p.tensor], dim=-1)
            term = -log_in if p.kind == "class_high" else -torch.log1p(-log_in.exp().clamp(max=1 - 1e-6))
        else:
            y = y if y.ndim == 1 else y.mean(dim=-1) if p.kind in ("high", "low") else y
            if p.kind == "value":
                term = ((y - p.tensor) ** 2).reshape(n_rows, -1).mean(dim=1)
            elif p.kind == "high":
                term = -y
            elif p.kind == "low":
                term = y
            else:
                lo, hi = p.tensor[0], p.tensor[1]  # type: ignore[index]
                term = torch.relu(lo - y) ** 2 + torch.relu(y - hi) ** 2
        terms.append(p.target.weight * term)
    return torch.stack(terms, dim=1)
