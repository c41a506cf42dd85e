"""A design run end to end: config -> seeds -> optimisation -> re-scoring -> checks -> results.

Every number reported comes from a plain forward pass on the *final reported recipe*, in physical
units; every hard constraint is re-checked on that recipe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from fm_engine.applicability import distance_columns, has_training_record, nearest, training_domain
from fm_engine.cards import package_versions
from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.columns import change_column, curve_column, probability_column, seed_column, std_column, with_unit
from fm_engine.compositions import format_formula, format_percent, weights_to_fractions
from fm_engine.config import check_range, check_seed, from_mapping
from fm_engine.elements import element_index, element_symbols
from fm_engine.field_docs import documented, with_field_docs
from fm_engine.inverse.charge import charge_balance
from fm_engine.inverse.composition import design_objective, optimize_composition, project_onto_constraints
from fm_engine.inverse.constraints import DesignConstraints
from fm_engine.inverse.descent import evaluating, trajectory_point
from fm_engine.inverse.latent import optimize_latent
from fm_engine.inverse.rounding import round_fractions, round_recipes
from fm_engine.inverse.seeds import SeedConfig, data_seeds, formula_seeds, random_seeds
from fm_engine.inverse.targets import Target
from fm_engine.inverse.uncertainty import single_model_error
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.predict import IMPOSSIBLE_COLUMN, impossible_flags, predict_checkpoint, predict_weights
from fm_engine.tasks import TaskType
from fm_engine.threads import configure_threads

RESULTS_FORMAT = "fm_engine-design"
MAX_DESIGN_STEPS = 100_000  # optimisation steps of one design run
OPTIONAL_KEYS = (("", "uncertainty_scale"), ("constraints", "max_distance"), ("", "restarts"))
"""(section, key) of settings written to a config mapping only when not at their default (``""``: top level)."""
DISTINCT_DISTANCE = 0.05
"""Two recipes are the same recipe when at most 5 % of their atoms differ (``0.5 * sum |w_a - w_b| <= 0.05``:
e.g. Re0.606B0.294Al0.1 and Re0.585B0.287Al0.1W0.027). At 2 % (the default floor ``min_nonzero_weight``) a demo
design filled its slots with such near-copies."""
SAME_RECIPE = f"two recipes are the same when at most {100 * DISTINCT_DISTANCE:g} % of their atoms differ"
MAX_RESTARTS = 20  # further rounds of starts of one design run


@with_field_docs
@dataclass
class DesignConfig:
    """Everything a design run needs besides the checkpoint: the ``fm design`` YAML, the Design page's form and
    the rehearsal's ``[design]`` table all build this, and it checks itself (a ``ValueError`` names the key)."""

    targets: list[Target] = documented(help="The goals, at most one per task (see the target kinds above).")
    method: Literal["composition", "latent"] = documented(
        default="composition",
        help="composition = descend on the element fractions; latent = descend in the model's latent space, "
        "then recover a recipe (needs a checkpoint with the autoencoder head and a kmd descriptor).",
    )
    constraints: DesignConstraints = field(default_factory=DesignConstraints)
    seeds: SeedConfig = field(default_factory=SeedConfig)
    steps: int = documented(default=300, help=f"Optimisation steps, 2 to {MAX_DESIGN_STEPS:,}.")
    lr: float = documented(
        default=0.2, help="Adam learning rate (> 0) on the design variables (the logits of the fractions, or the "
        "latent); composition: decays along a half cosine to a tenth.",
    )  # fmt: skip
    random_seed: int = documented(
        default=0, help="Seed of the random starts and random data seeds: the same seed gives the same recipes."
    )
    ae_align_scale: float = documented(
        default=0.5,
        help="Latent method only, in [0, 1]: weight of the pull toward the autoencoder's manifold (the mean "
        "squared change of the latent when decoded and encoded again), added to the objective. 0 = no pull (the "
        "latent may drift where no composition decodes well); 1 = the strongest pull.",
    )
    polish_fraction: float = documented(
        default=0.2,
        help="Composition method, in [0, 1): share of the steps spent polishing each recipe on its chosen "
        "elements, where every hard constraint holds exactly; 0 = no polish phase.",
    )
    uncertainty_scale: float = documented(
        default=0.0,
        help="Ensemble checkpoints, >= 0: adds uncertainty_scale x each target's calibrated spread over the "
        "members (in the target's units of spread) to its term, so 'high' optimises a lower confidence bound "
        "(mean - scale x std), 'low' an upper one and value / range targets prefer recipes the members agree on. "
        "0 = the members' mean only; 1 = one standard deviation. A single model has no spread: > 0 is refused.",
    )
    restarts: int = documented(
        default=3,
        help=f"Up to this many further rounds of starts, 0 to {MAX_RESTARTS}, while the recipes found are fewer "
        f"distinct ones than asked (seeds.n, or one per formula); {SAME_RECIPE}. Each round starts as many random "
        "seeds as asked, each of its own random element system (random_seed + the round). "
        "0 = one round (fewer distinct recipes may be returned). When the constraints allow fewer, the results say "
        "how many were found.",
    )
    record_trajectory: bool = documented(
        default=True, help="Keep each step's objective per start (results.json, the trajectory figure)."
    )

    def __post_init__(self) -> None:
        self.targets = [
            t if isinstance(t, Target) else Target.from_dict(t, path=f"targets[{i}]")
            for i, t in enumerate(self.targets)
        ]
        if isinstance(self.seeds, dict):
            self.seeds = from_mapping(SeedConfig, self.seeds, path="seeds")
        if isinstance(self.constraints, dict):
            self.constraints = from_mapping(DesignConstraints, self.constraints, path="constraints")
        if self.method not in ("composition", "latent"):
            raise ValueError(f"method: expected 'composition' or 'latent', got {self.method!r}")
        check_range("steps", self.steps, low=2, high=MAX_DESIGN_STEPS)
        check_range("lr", self.lr, low=0, low_open=True)
        check_seed("random_seed", self.random_seed)
        check_range("ae_align_scale", self.ae_align_scale, low=0, high=1)
        check_range("polish_fraction", self.polish_fraction, low=0, high=1, high_open=True)
        check_range("uncertainty_scale", self.uncertainty_scale, low=0)
        check_range("restarts", self.restarts, low=0, high=MAX_RESTARTS)
        if self.uncertainty_scale > 0 and self.method == "latent":
            raise ValueError("uncertainty_scale: applies to the composition method only (method: latent)")
        # settings that contradict each other fail now, not after the seeds
        self.constraints.validate(has_seeds=self.seeds.source != "random")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DesignConfig:
        if not isinstance(data, dict):
            raise ValueError(f"the design config: expected a mapping of settings, got {data!r}")
        values = dict(data)
        if "targets" not in values:
            raise ValueError("targets: missing; the design config needs a list of targets")
        if not isinstance(values["targets"], list):
            raise ValueError(f"targets: expected a list of targets, got {values['targets']!r}")
        values["targets"] = [Target.from_dict(t, path=f"targets[{i}]") for i, t in enumerate(values["targets"])]
        return from_mapping(cls, values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = [t.to_dict() for t in self.targets]
        return data

    def to_results_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` for results.json: keys added after the first results format (:data:`OPTIONAL_KEYS`)
        are left out at their defaults, so a design that does not use them writes the results.json it wrote
        before (``from_dict`` reads either)."""
        data = self.to_dict()
        for section, key in OPTIONAL_KEYS:
            values = data[section] if section else data
            if values[key] == _field_default(type(self.constraints) if section else type(self), key):
                del values[key]
        return data


def _field_default(cls: type, key: str) -> Any:
    return next(f.default for f in fields(cls) if f.name == key)


@dataclass
class DesignResult:
    config: DesignConfig
    table: pd.DataFrame  # one row per recipe, ranked
    recipes: np.ndarray  # (B, 94) in table order
    seeds: np.ndarray | None
    seed_labels: list[str]
    checkpoint_id: str
    weights_sha256: str
    checkpoint_path: str
    seconds: float
    trajectory: list[dict[str, list[float]]] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    n_asked: int = 0  # distinct recipes asked for (seeds.n, or one per formula)
    n_starts: int = 0  # starts optimised, restarts included

    @property
    def all_constraints_satisfied(self) -> bool:
        return bool(self.table["constraints_ok"].all())

    @property
    def shortfall(self) -> str:
        """'' when the table holds the distinct recipes asked for, else a plain sentence saying how many were found
        and what to widen."""
        found = len(self.table)
        if found >= self.n_asked:
            return ""
        restarts = self.config.restarts
        return (
            f"Found {found} distinct recipes of {self.n_asked} asked, from {self.n_starts} starts "
            f"({restarts} restart round{'s' if restarts != 1 else ''} allowed): the targets and constraints lead "
            f"the starts to the same few recipes ({SAME_RECIPE}). "
            "For more, widen the constraints (more allowed elements, a higher max_elements, fewer fixed amounts, a "
            "larger max_distance), raise diversity_scale toward 1, or allow more restarts."
        )

    def to_json_dict(self) -> dict[str, Any]:
        symbols = element_symbols()
        return {
            "format": RESULTS_FORMAT,
            "format_version": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": package_versions(),
            "checkpoint": {
                "path": self.checkpoint_path,
                "checkpoint_id": self.checkpoint_id,
                "weights_sha256": self.weights_sha256,
            },  # fmt: skip
            "config": self.config.to_results_dict(),
            "random_seed": self.config.random_seed,
            "seeds": None
            if self.seeds is None
            else [
                {"label": label, "fractions": {symbols[i]: float(v) for i, v in enumerate(row) if v > 0}}
                for label, row in zip(self.seed_labels, self.seeds, strict=True)
            ],  # fmt: skip
            "units": self.units,
            "seconds": round(self.seconds, 3),
            "distinct": {"asked": self.n_asked, "found": len(self.table), "starts": self.n_starts},
            "recipes": json.loads(self.table.to_json(orient="records")),
            "trajectory": self.trajectory,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), indent=2)

    def to_csv(self) -> str:
        return self.table.to_csv(index=False, float_format="%.6g")


# ---------------------------------------------------------------------- helpers
def nearest_training(checkpoint: LoadedCheckpoint, recipes: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Closest training composition to each recipe and the distance ``0.5 * sum |w - w_train|``
    (the fraction of atoms that differ: 0 = identical, 1 = nothing in common)."""
    domain = training_domain(checkpoint)
    index, distance = nearest(recipes, domain.weights)
    names = [format_formula(weights_to_fractions(domain.weights[i])) if i >= 0 else "" for i in index]
    return names, distance


def target_columns(model: FlexibleMultiTaskModel, target: Target) -> list[str]:
    """The names of ``target``'s value columns in a design table (before the `` [unit]`` suffix): the task,
    ``P(<task>=<classes>)`` (classification) or ``<task>@<t><t_unit>`` per curve point (:mod:`fm_engine.columns`)."""
    task = model.tasks[target.task]
    if task.type is TaskType.CLASSIFICATION:
        names = task.classes or []
        chosen = [names[c] if isinstance(c, int) else str(c) for c in target.classes or []]
        return [probability_column(target.task, chosen)]
    if task.type is TaskType.KERNEL_REGRESSION:
        return [curve_column(target.task, t, task.t_unit) for t, _ in target.points or []]
    return [target.task]


def _target_columns(
    checkpoint: LoadedCheckpoint, targets: list[Target], weights: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, str], dict[str, np.ndarray]]:
    """Per-target values in physical units for weight rows (an ensemble: the members' mean); returns (columns,
    units by column, calibrated standard deviations by column: empty for a single model)."""
    model = checkpoint.model
    grids = {t.task: [p[0] for p in t.points] for t in targets if t.points is not None}
    predictions, spreads = predict_checkpoint(checkpoint, weights, t_grids=grids)
    columns: dict[str, np.ndarray] = {}
    units: dict[str, str] = {}
    stds: dict[str, np.ndarray] = {}
    for target in targets:
        task = model.tasks[target.task]
        values = predictions[target.task]
        spread = spreads[target.task] if spreads is not None else None
        names = target_columns(model, target)
        if task.type is TaskType.CLASSIFICATION:
            classes = task.classes or []
            chosen = [c if isinstance(c, int) else classes.index(str(c)) for c in target.classes or []]
            columns[names[0]], units[names[0]] = values[:, chosen].sum(axis=1), "probability"
            if spread is not None:  # the spread of the summed probability, from the members themselves
                members = [predict_weights(m, weights)[target.task][:, chosen].sum(axis=1) for m in checkpoint.models]
                stds[names[0]] = np.std(np.stack(members), axis=0)
        elif task.type is TaskType.KERNEL_REGRESSION:
            for j, name in enumerate(names):
                columns[name], units[name] = values[:, j], task.unit
                if spread is not None:
                    stds[name] = spread[:, j]
        else:
            columns[names[0]] = values if values.ndim == 1 else values.mean(axis=1)
            units[names[0]] = task.unit
            if spread is not None:
                stds[names[0]] = spread if spread.ndim == 1 else spread.mean(axis=1)
    return columns, units, stds


def objective_of(
    checkpoint: LoadedCheckpoint, targets: list[Target], weights: np.ndarray, *, uncertainty_scale: float = 0.0
) -> np.ndarray:
    """The targets' objective of weight rows (an ensemble: on the members' mean, plus ``uncertainty_scale`` times
    the weighted calibrated spread), without a run's diversity and distance terms (:func:`objective_terms`)."""
    config = DesignConfig(targets=list(targets), uncertainty_scale=uncertainty_scale)
    return sum(objective_terms(checkpoint, config, weights).values())  # type: ignore[return-value]


def objective_terms(checkpoint: LoadedCheckpoint, config: DesignConfig, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The terms of the objective a design with ``config`` minimises, on weight rows (float64 (B,) each, by name:
    one per target, then uncertainty, diversity and distance where they apply); the objective is their sum.
    The same objective the optimiser descends on, so a run's trajectory ends at the table's objective."""
    training = training_domain(checkpoint).weights if config.constraints.max_distance is not None else None
    objective = design_objective(checkpoint.model, config, members=checkpoint.members,
                                 spread_scales=checkpoint.spread_scales, training_weights=training)  # fmt: skip
    with torch.no_grad(), ExitStack() as stack:
        for member in objective.models:
            stack.enter_context(evaluating(member))
        _, terms = objective(torch.as_tensor(weights, dtype=torch.float32))
    return {name: term.double().numpy() for name, term in terms.items()}


def same_recipe(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two recipes (atomic-fraction rows) are the same recipe: at most :data:`DISTINCT_DISTANCE` of
    their atoms differ."""
    return bool(0.5 * np.abs(a - b).sum() <= DISTINCT_DISTANCE)


def distinct_order(recipes: np.ndarray, objective: np.ndarray, kept: Sequence[int] = ()) -> list[int]:
    """Row indices of distinct recipes: ``kept`` (rows already chosen), then the other rows, best (lowest)
    objective first, each unless it is the same recipe (:data:`DISTINCT_DISTANCE`) as one chosen before it."""
    chosen = list(kept)
    for i in np.argsort(objective, kind="stable"):
        if i not in chosen and not any(same_recipe(recipes[i], recipes[j]) for j in chosen):
            chosen.append(int(i))
    return chosen


def resolve_seeds(checkpoint: LoadedCheckpoint, config: DesignConfig) -> tuple[np.ndarray | None, list[str]]:
    seeds = config.seeds
    if seeds.source == "random":
        return None, [f"random start {i + 1}" for i in range(seeds.n)]
    if seeds.source == "formulas":
        return formula_seeds(seeds.formulas), list(seeds.formulas)
    weights = data_seeds(checkpoint, seeds, config.targets, config.constraints, random_seed=config.random_seed)
    return weights, [format_formula(weights_to_fractions(w)) for w in weights]


# ---------------------------------------------------------------------- the run
@dataclass
class _Starts:
    """The starts of a design run so far and what each became (rows in start order)."""

    recipes: np.ndarray  # (B, 94) final recipes
    seeds: np.ndarray | None  # (B, 94) seed rows, NaN for a random start; None: no start had a seed
    labels: list[str]
    locked: list[dict[str, float]]
    trajectory: list[dict[str, list[float]]]
    latent_objective: np.ndarray | None

    def __add__(self, other: _Starts) -> _Starts:
        def seed_rows(starts: _Starts) -> np.ndarray:
            return starts.seeds if starts.seeds is not None else np.full(starts.recipes.shape, np.nan)

        seeds = None if self.seeds is None and other.seeds is None else np.vstack([seed_rows(self), seed_rows(other)])
        steps = [{key: mine[key] if key == "step" else mine[key] + theirs[key] for key in mine}
                 for mine, theirs in zip(self.trajectory, other.trajectory, strict=True)]  # fmt: skip
        latent = None if self.latent_objective is None else np.concatenate([self.latent_objective,
                                                                             other.latent_objective])  # fmt: skip
        return _Starts(np.vstack([self.recipes, other.recipes]), seeds, self.labels + other.labels,
                       self.locked + other.locked, steps, latent)  # fmt: skip

    def take(self, rows: list[int]) -> _Starts:
        """The starts ``rows``, in that order (the trajectory's rows too)."""
        trajectory = [{key: values if key == "step" else [values[i] for i in rows] for key, values in point.items()}
                      for point in self.trajectory]  # fmt: skip
        return _Starts(self.recipes[rows], None if self.seeds is None else self.seeds[rows],
                       [self.labels[i] for i in rows], [self.locked[i] for i in rows], trajectory,
                       None if self.latent_objective is None else self.latent_objective[rows])  # fmt: skip


def _optimise(
    checkpoint: LoadedCheckpoint, config: DesignConfig, seeds: np.ndarray | None, labels: list[str], progress: Any
) -> _Starts:
    """One round of starts (``seeds``, else ``config.seeds.n`` random starts), optimised."""
    if config.method == "latent":
        latent = optimize_latent(checkpoint.model, config, seeds=seeds, progress=progress)
        return _Starts(round_recipes(latent.weights), latent.seeds, labels, [{} for _ in latent.weights],
                       latent.trajectory, latent.latent_objective)  # fmt: skip
    training_weights = training_domain(checkpoint).weights if config.constraints.max_distance else None
    run = optimize_composition(checkpoint.model, config, seeds=seeds, progress=progress, members=checkpoint.members,
                               spread_scales=checkpoint.spread_scales, training_weights=training_weights)  # fmt: skip
    # reported, re-scored and checked as written: each recipe sums to 1 at 1e-6 (fm_engine.inverse.rounding)
    return _Starts(round_recipes(run.weights), run.seeds, labels, run.locked, run.trajectory, None)


def _restart(checkpoint: LoadedCheckpoint, config: DesignConfig, n: int, round_: int, progress: Any) -> _Starts | None:
    """A further round of ``n`` starts from random seeds, each of its own random element system (random seed
    ``random_seed + round_``): they reach systems the first seeds do not. ``None`` when elements are locked at
    their seed amount (``element_step_scale`` 0): a random seed has no amount of theirs to keep."""
    if config.constraints.locked_elements():
        return None
    seeds = random_seeds(config.constraints, n, random_seed=config.random_seed + round_)
    return _optimise(checkpoint, config, seeds, [f"random seed {round_}.{i + 1}" for i in range(n)], progress)


def run_design(
    checkpoint: LoadedCheckpoint,
    config: DesignConfig,
    *,
    seeds: np.ndarray | None = None,
    seed_labels: list[str] | None = None,
    progress: Any = None,
) -> DesignResult:
    """Run a design: the asked number of *distinct* recipes (``seeds.n``, or one per seed), ranked, with further
    rounds of starts (``restarts``) while the starts give fewer. ``seeds``/``seed_labels`` override the config's
    seed selection (used by replay)."""
    start = time.perf_counter()
    configure_threads()  # torch threads and OpenMP waits (fm_engine.threads)
    if config.uncertainty_scale > 0 and not checkpoint.is_ensemble:
        raise single_model_error(config.uncertainty_scale)
    if config.constraints.max_distance is not None and not has_training_record(checkpoint):
        raise ValueError(
            "constraints.max_distance: this checkpoint records no training compositions (compositions.csv) to "
            "measure the distance to; remove max_distance"
        )
    if seeds is None:
        seeds, seed_labels = resolve_seeds(checkpoint, config)
    asked = len(seeds) if seeds is not None and config.seeds.source == "formulas" else config.seeds.n
    labels = seed_labels or [f"start {i + 1}" for i in range(len(seeds) if seeds is not None else asked)]

    def round_progress(round_: int) -> Any:
        if progress is None:
            return None
        return lambda done, total: progress(round_ * config.steps + done, (round_ + 1) * config.steps)

    starts = _optimise(checkpoint, config, seeds, labels, round_progress(0))
    terms = objective_terms(checkpoint, config, starts.recipes)
    chosen = distinct_order(starts.recipes, sum(terms.values()))
    for round_ in range(1, config.restarts + 1):
        if len(chosen) >= asked:
            break
        n = max(asked, 2 * (asked - len(chosen)))
        more = _restart(checkpoint, config, n, round_, round_progress(round_))
        if more is None:
            break
        starts = starts + more  # the recipes of earlier rounds stay; the new ones fill in what is missing
        added = objective_terms(checkpoint, config, more.recipes)  # earlier rows keep their scores
        terms = {name: np.concatenate([values, added[name]]) for name, values in terms.items()}
        chosen = distinct_order(starts.recipes, sum(terms.values()), kept=chosen[:asked])
    n_starts = len(starts.recipes)
    starts = starts.take(chosen[:asked])
    terms = {name: values[chosen[:asked]] for name, values in terms.items()}
    if config.record_trajectory:  # the last point: the reported recipes themselves, as the table scores them
        starts.trajectory.append(trajectory_point(config.steps, terms))
    table, units = build_table(checkpoint, config, starts.recipes, starts.seeds, starts.labels, starts.locked,
                               starts.latent_objective, terms=terms)  # fmt: skip
    order = table.index.to_numpy()
    return DesignResult(
        config=config,
        table=table.reset_index(drop=True),
        recipes=starts.recipes[order],
        seeds=seeds,
        seed_labels=labels,
        checkpoint_id=checkpoint.checkpoint_id,
        weights_sha256=checkpoint.weights_sha256,
        checkpoint_path=str(checkpoint.path),
        seconds=time.perf_counter() - start,
        trajectory=starts.take(list(order)).trajectory if config.record_trajectory else [],
        units=units,
        n_asked=asked,
        n_starts=n_starts,
    )


def _seed_columns(
    checkpoint: LoadedCheckpoint, targets: list[Target], seeds: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`_target_columns` (values and spreads) of seed rows, NaN for rows of NaN (a random start)."""
    rows = np.flatnonzero(np.isfinite(seeds).all(axis=1))
    if len(rows) == 0:
        return {}, {}
    values, _, stds = _target_columns(checkpoint, targets, seeds[rows])

    def spread(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        full = {name: np.full(len(seeds), np.nan) for name in columns}
        for name, column in columns.items():
            full[name][rows] = column
        return full

    return spread(values), spread(stds)


def build_table(
    checkpoint: LoadedCheckpoint,
    config: DesignConfig,
    recipes: np.ndarray,
    seeds: np.ndarray | None,
    labels: list[str],
    locked: list[dict[str, float]],
    latent_objective: np.ndarray | None = None,
    *,
    terms: dict[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The ranked results table (index = original row order), re-scored from the recipes themselves: ``objective``
    is the sum of the objective's ``terms`` on each recipe (computed when not given). The seed columns score each
    seed *projected onto the constraints* (:func:`~fm_engine.inverse.composition.project_onto_constraints`), so
    seed -> designed compares recipes that both satisfy them."""
    symbols = element_symbols()
    if terms is None:
        terms = objective_terms(checkpoint, config, recipes)
    objective = sum(terms.values())
    values, units, stds = _target_columns(checkpoint, config.targets, recipes)
    projected = project_onto_constraints(seeds, config.constraints) if seeds is not None else None
    seed_values, seed_stds = _seed_columns(checkpoint, config.targets, projected) if projected is not None else ({}, {})
    by_task = {t.task: target_columns(checkpoint.model, t) for t in config.targets}
    impossible = impossible_flags(checkpoint.model, by_task, values)  # values below a physical minimum
    nearest_names, distance = nearest_training(checkpoint, recipes)
    task_columns = distance_columns(
        checkpoint, recipes, rows=np.arange(len(recipes)), n_rows=len(recipes),
        tasks=dict.fromkeys(t.task for t in config.targets),
    )  # fmt: skip
    rows = []
    for r, w in enumerate(recipes):
        fractions = weights_to_fractions(w)
        violations = config.constraints.check_recipe(w, locked_amounts=locked[r],
                                                     distance_to_training=float(distance[r]))  # fmt: skip
        row: dict[str, Any] = {
            "formula": format_formula(round_fractions(fractions)),  # its digits sum to 1 too
            "atomic_percent": format_percent(fractions),
            "n_elements": len(fractions),
            "objective": float(objective[r]),
        }
        if latent_objective is not None:
            row["objective_latent"] = float(latent_objective[r])
        for name, column in values.items():
            header = with_unit(name, units[name])
            row[header] = float(column[r])
            if name in stds:
                row[std_column(header)] = float(stds[name][r])
            if name in seed_values:
                row[seed_column(header)] = float(seed_values[name][r])
                if name in seed_stds:  # an ensemble: the seed's calibrated spread too
                    row[std_column(seed_column(header))] = float(seed_stds[name][r])
                row[change_column(header)] = float(column[r] - seed_values[name][r])
        row[IMPOSSIBLE_COLUMN] = impossible[r]
        row["constraints_ok"] = not violations
        row["constraint_check"] = "; ".join(violations) if violations else "all hard constraints hold"
        row["seed"] = labels[r] if r < len(labels) else ""
        if projected is not None:  # the seed as scored in the seed columns: moved onto the constraints
            finite = bool(np.isfinite(projected[r]).all())
            row["seed_projected"] = format_formula(weights_to_fractions(projected[r])) if finite else ""
        row["nearest_training"] = nearest_names[r]
        row["distance_to_training"] = float(distance[r])
        for column, values_r in task_columns.items():
            row[column] = values_r[r]
        row["charge_balance"] = charge_balance(fractions)
        for i in np.flatnonzero(w > 0):
            row[f"x_{symbols[i]}"] = float(w[i])
        rows.append(row)
    table = pd.DataFrame(rows)
    element_columns = sorted((c for c in table.columns if c.startswith("x_")), key=lambda c: element_index()[c[2:]])
    table[element_columns] = table[element_columns].fillna(0.0)
    table = table[[c for c in table.columns if not c.startswith("x_")] + element_columns]
    table = table.sort_values("objective", kind="stable")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    # Recipes that are the same recipe as a better-ranked one (DISTINCT_DISTANCE) repeat it (none after run_design).
    ranked = recipes[table.index.to_numpy()]
    duplicates = []
    for i, recipe in enumerate(ranked):
        earlier = [j for j in range(i) if duplicates[j] == 0 and same_recipe(ranked[j], recipe)]
        duplicates.append(int(table["rank"].iloc[earlier[0]]) if earlier else 0)
    table.insert(table.columns.get_loc("n_elements") + 1, "duplicate_of_rank", duplicates)
    return table, units


def load_results(text: str | dict[str, Any]) -> dict[str, Any]:
    """A design ``results.json`` (text or parsed), with the keys a replay needs checked."""
    try:
        data = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error})") from None
    except RecursionError:
        raise ValueError("nested too deeply to be a design results file") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise ValueError(f'not an fm_engine design results file (expected "format": "{RESULTS_FORMAT}")')
    for key, kind in (("checkpoint", dict), ("config", dict)):
        if not isinstance(data.get(key), kind):
            raise ValueError(f"'{key}': missing or not a mapping (expected the {key} section of a design run)")
    if not isinstance(data["checkpoint"].get("weights_sha256"), str):
        raise ValueError("'checkpoint.weights_sha256': missing (expected the checkpoint's weights hash)")
    if not isinstance(data.get("seeds"), list | None):
        raise ValueError(f"'seeds': expected a list of seeds or null, got {data.get('seeds')!r:.60}")
    try:
        DesignConfig.from_dict(data["config"])
    except ValueError as error:
        raise ValueError(f"config: {error}") from None
    if data["seeds"] is not None:
        _replay_seeds(data["seeds"])
    return data


def _replay_seeds(entries: list[Any]) -> tuple[np.ndarray, list[str]]:
    """The seed rows of a results file (each ``{"label", "fractions": {symbol: amount}}``), checked."""
    index = element_index()
    seeds = np.zeros((len(entries), len(index)))
    labels = []
    for row, seed in enumerate(entries):
        where = f"seeds[{row}]"
        if not isinstance(seed, dict) or not isinstance(seed.get("fractions"), dict):
            expected = "a mapping with 'label' and 'fractions' {symbol: amount}"
            raise ValueError(f"{where}: expected {expected}, got {seed!r:.60}")
        for symbol, value in seed["fractions"].items():
            if symbol not in index:
                raise ValueError(f"{where}.fractions: unknown element symbol {symbol!r}")
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{where}.fractions.{symbol}: expected an amount in [0, 1], got {value!r}")
            seeds[row, index[symbol]] = value
        if not seeds[row].sum() > 0:
            raise ValueError(f"{where}.fractions: expected at least one element with an amount > 0")
        labels.append(str(seed.get("label", f"seed {row + 1}")))
    return seeds, labels


def replay(results_json: str | dict[str, Any], checkpoint: LoadedCheckpoint) -> DesignResult:
    """Run a design again from its ``results.json`` (text or parsed: same config, seeds, random seed)."""
    data = load_results(results_json)
    if data["checkpoint"]["weights_sha256"] != checkpoint.weights_sha256:
        raise ValueError("these results were made with a different checkpoint (weights hash differs)")
    config = DesignConfig.from_dict(data["config"])  # checked by load_results
    seeds = labels = None
    if data["seeds"] is not None:
        seeds, labels = _replay_seeds(data["seeds"])
    return run_design(checkpoint, config, seeds=seeds, seed_labels=labels)
