"""The Design page's logic: its settings' defaults and help texts (read from :class:`DesignConfig`), the form's
values -> a checked ``DesignConfig``, a run with a progress bar, and what the results view shows."""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.columns import VARIANT_SUFFIXES, split_unit, with_unit
from fm_engine.elements import element_symbols
from fm_engine.field_docs import field_help
from fm_engine.inverse import DesignConfig, DesignResult, SeedConfig, Target, element_presets, run_design
from fm_engine.inverse.report import design_figures, seed_elements
from fm_engine.inverse.seeds import SPLITS
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.predict import IMPOSSIBLE_COLUMN, IMPOSSIBLE_MEANING
from fm_engine.safe_io import atomic_write_json
from fm_engine.tasks import TaskType
from fm_engine.training.config import START_FOUNDATION
from fm_engine.workspace import workspace_dir
from workbench import state
from workbench.components.kept import KeptForm
from workbench.components.predictions import metric_caption
from workbench.resources import CheckpointError, get_checkpoint

# Session-state keys no widget owns (they survive page switches).
FORM = KeptForm(store="fm_design", editors="design_editor")  # every form widget's last value, editable tables
ALLOWED = "fm_design_allowed"  # the element picker's selection
RUN_ERROR = "fm_design_error"  # the last validation / run error message
VIEW = "fm_design_view"  # figures and download bytes of the stored result
FIXED_TEXT, FIXED_TEXT_ERROR = "design_fixed_text", "design_fixed_text_error"
LAST_CONFIG = Path("design") / "last_config.json"  # in the workspace: the last design config run from the page

OBJECTIVE_HELP = (
    "What each recipe minimises, lower is better: the sum of each target's weighted term (in units of the target's "
    "training spread) plus the uncertainty, diversity (mixing entropy) and distance-to-training terms the settings "
    "add; the Trajectory tab shows each term, ending at this value."
)
SEED_PROJECTED_HELP = (
    "The seed moved onto the constraints (fixed amounts set, disallowed elements removed, at most max_elements "
    "kept, none below the floor): the seed columns score this recipe, so seed -> designed compares like with like."
)
GOALS_REGRESSION = ["none", "value", "high", "low", "range"]
GOALS_CLASSIFICATION = ["none", "probability up", "probability down"]
GOALS_CURVE = ["none", "curve points"]
ELEMENT_TABLES = {"fixed": "fraction", "step_scale": "scale"}  # editable {element: number} tables, value column


# ---------------------------------------------------------------------- settings read from DesignConfig
def setting(path: str) -> tuple[Any, str]:
    """``"constraints.seed_blend"`` -> (its default, its help text), both read from :class:`DesignConfig`."""
    owner: Any = DesignConfig(targets=[])
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    return getattr(owner, name), field_help(type(owner), name)


def choices(path: str) -> list[Any]:
    """The values the DesignConfig setting at ``path`` may take, in order (its ``Literal`` type; seed splits)."""
    if path == "seeds.split":
        return list(SPLITS)
    owner: Any = DesignConfig
    *parents, name = path.split(".")
    for part in parents:
        owner = typing.get_type_hints(owner)[part]
    return list(typing.get_args(typing.get_type_hints(owner)[name]))


def methods(model: FlexibleMultiTaskModel) -> list[str]:
    """The design methods a model supports (the latent one needs its autoencoder head)."""
    return [m for m in choices("method") if m != "latent" or model.autoencoder is not None]


def kept_setting(
    factory: Callable[..., Any], label: str, key: str, path: str, *, none_as: Any = None, **kwargs: Any
) -> Any:
    """A kept widget for the DesignConfig setting at ``path``: its default and help text come from there
    (a ``None`` default is shown as ``none_as``, e.g. 0 = no cap)."""
    default, help_text = setting(path)
    shown = none_as if default is None else default
    return FORM.widget(factory, label, key, shown, help=help_text, **kwargs)


def task_scale(model: FlexibleMultiTaskModel, task: str) -> tuple[float, float, float]:
    """(mean, standard deviation, mean t) of a task's training values, for the form's starting values."""
    scaler = model.config.scalers.get(task)
    if scaler is None:
        return 0.0, 1.0, 0.0
    return float(scaler.mean[0]), float(scaler.std[0]), float(scaler.t_mean)


def curve_points(model: FlexibleMultiTaskModel, task: str) -> list[list[float]]:
    """A kept table of the (t, y) points a curve target should pass through, starting at the training means."""
    spec = model.tasks[task]
    mean, _, t_mean = task_scale(model, task)
    t_label = f"t [{spec.t_unit}]" if spec.t_unit else "t"
    y_label = f"{task} [{spec.unit}]" if spec.unit else task
    st.caption(f"Curve points the property should pass through ({y_label} at {t_label})")
    points = FORM.table(f"curve_{task}", pd.DataFrame({t_label: [round(t_mean, 3)], y_label: [round(mean, 3)]}))
    return points.dropna().to_numpy(dtype=float).tolist()


# ---------------------------------------------------------------------- target groups, stability presets
@dataclass(frozen=True)
class StabilityPreset:
    """A one-click stability target on a foundation head: ``range`` [low, high] in ``unit`` (the low end a
    physical floor, so "below -0.2 eV/atom" is the range [-5, -0.2]); applied only where the head has this unit."""

    label: str  # the button, e.g. "below -0.2 eV/atom"
    low: float
    high: float
    unit: str = "eV/atom"
    meaning: str = ""  # what the threshold means, shown as the button's help


FLOOR = -5.0  # eV/atom: the corpus's own bound on formation and decomposition energies (the most negative ~ -4.6)
STABILITY_PRESETS: dict[str, StabilityPreset] = {
    "oqmd_formation_energy": StabilityPreset(
        "below -0.2 eV/atom", FLOOR, -0.2, meaning="formation enthalpy (OQMD): clearly exothermic from the elements"
    ),
    "mp_formation_energy": StabilityPreset(
        "below -0.2 eV/atom", FLOOR, -0.2, meaning="formation energy (Materials Project): clearly exothermic"
    ),
    "mp_energy_above_hull": StabilityPreset(
        "below 0.05 eV/atom", 0.0, 0.05, meaning="energy above the convex hull: on or near the hull (likely "
        "synthesisable; metastable phases are often within 0.05-0.1 eV/atom)",
    ),
    "mp_decomposition_energy": StabilityPreset(
        "below 0 eV/atom", FLOOR, 0.0, meaning="decomposition enthalpy: stable against the competing phases (< 0)"
    ),
}  # fmt: skip
STABILITY_GROUP = "Stability (DFT, from the foundation)"
FOUNDATION_GROUP = "Other DFT properties (from the foundation)"
OWN_GROUP = "Your tasks"


@dataclass(frozen=True)
class TargetGroup:
    """Tasks shown together on the Design form (``title`` empty: the only group, shown without a heading)."""

    title: str
    tasks: list[str]
    collapsed: bool = False  # shown in a closed expander (the foundation's other heads)


def stability_preset(model: FlexibleMultiTaskModel, task: str) -> StabilityPreset | None:
    """The stability preset of a regression head in the preset's unit; None for any other task."""
    preset = STABILITY_PRESETS.get(task)
    spec = model.tasks.get(task)
    if preset is None or spec is None or spec.type is not TaskType.REGRESSION or (spec.unit or "") != preset.unit:
        return None
    return preset


def foundation_heads(checkpoint: LoadedCheckpoint, *, foundation: bool) -> list[str]:
    """The checkpoint's heads that come from the foundation: every head of the foundation itself
    (``foundation``), else the heads a run fine-tuned from the foundation kept (its card's start record)."""
    if foundation:
        return list(checkpoint.model.tasks)
    start = checkpoint.card.start if checkpoint.card is not None else None
    if start is None or start.kind != START_FOUNDATION:
        return []
    return [name for name in start.kept_heads if name in checkpoint.model.tasks]


def target_groups(checkpoint: LoadedCheckpoint, *, foundation: bool = False) -> list[TargetGroup]:
    """The Design form's target groups, in order: the user's own tasks, the stability heads (with presets),
    then the foundation's other heads (collapsed). One group of all tasks, untitled, when there is neither a
    stability head nor a foundation head."""
    model = checkpoint.model
    stability = [name for name in model.tasks if stability_preset(model, name) is not None]
    inherited = set(foundation_heads(checkpoint, foundation=foundation))
    own = [name for name in model.tasks if name not in inherited and name not in stability]
    if not stability and not inherited:
        return [TargetGroup("", own)]
    groups = [TargetGroup(OWN_GROUP, own), TargetGroup(STABILITY_GROUP, stability)]
    groups.append(TargetGroup(FOUNDATION_GROUP, [n for n in model.tasks if n in inherited and n not in stability],
                              collapsed=True))  # fmt: skip
    return [group for group in groups if group.tasks]


def default_goal(model: FlexibleMultiTaskModel, groups: list[TargetGroup], task: str) -> str:
    """A task's goal before the user picks one: "high" for the first regression task of the user's own (the
    form's first) group, "range" (its preset) for the first stability head when there is no task of the user's
    (the foundation itself), "none" for every other."""
    first = groups[0]
    if first.title == STABILITY_GROUP:
        return "range" if task == first.tasks[0] else "none"
    regression = [n for n in first.tasks if model.tasks[n].type is TaskType.REGRESSION]
    return "high" if regression and task == regression[0] else "none"


def range_default(model: FlexibleMultiTaskModel, task: str) -> tuple[float, float]:
    """A range goal's starting bounds in the task's unit: the stability preset's, else [mean, mean + std]."""
    preset = stability_preset(model, task)
    if preset is not None:
        return preset.low, preset.high
    mean, std, _ = task_scale(model, task)
    return round(mean, 3), round(mean + std, 3)


def apply_stability_preset(task: str, preset: StabilityPreset) -> None:
    """The preset button's callback: the task's goal becomes the preset's range (widgets' session values)."""
    FORM.assign(f"design_goal_{task}", "range")
    FORM.assign(f"design_low_{task}", preset.low)
    FORM.assign(f"design_high_{task}", preset.high)


def stability_note(result: DesignResult, checkpoint: LoadedCheckpoint | None) -> str:
    """A line under the results naming the stability targets' columns and their heads' test errors (model card),
    to compare with the thresholds; '' when the design has no stability target."""
    if checkpoint is None:
        return ""
    parts = []
    for target in result.config.targets:
        if stability_preset(checkpoint.model, target.task) is not None:
            caption = metric_caption(checkpoint, target.task)
            column = with_unit(target.task, result.units.get(target.task, ""))
            parts.append(column + (f": {caption}" if caption else ""))
    if not parts:
        return ""
    return (
        "Stability targets (DFT heads from the foundation), re-scored on every recipe: " + "; ".join(parts) + ". "
        "Where a threshold is closer than the test error, read them as a screen, not a guarantee."
    )


# ---------------------------------------------------------------------- element tables
def element_table(name: str, *, step: float) -> pd.DataFrame:
    """A kept editable table of elements and a number in [0, 1] (``fixed`` fractions, ``step_scale`` scales)."""
    value = ELEMENT_TABLES[name]
    empty = pd.DataFrame({"element": pd.Series([], dtype=object), value: pd.Series([], dtype=float)})
    return FORM.table(name, empty, column_config={
        "element": st.column_config.SelectboxColumn("element", options=list(element_symbols()), required=True),
        value: st.column_config.NumberColumn(value, min_value=0.0, max_value=1.0, step=step),
    })  # fmt: skip


def parse_amounts(text: str) -> pd.DataFrame:
    """``Al=0.1, Ti 0.05`` -> a fixed-amounts table; ``ValueError`` names an entry that cannot be read."""
    rows = []
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        pieces = part.replace("=", " ").replace(":", " ").split()
        try:
            symbol, fraction = pieces[0], float(pieces[1])
        except (IndexError, ValueError):
            raise ValueError(f"Cannot read '{part}': write it like Al=0.1") from None
        if symbol not in element_symbols():
            raise ValueError(f"Unknown element symbol '{symbol}' in '{part}'")
        rows.append({"element": symbol, "fraction": fraction})
    return pd.DataFrame(rows, columns=["element", "fraction"]).astype({"element": object, "fraction": float})


def fixed_from_text() -> None:
    """The text box's amounts replace the fixed-amounts table (a bad entry is reported, the table kept)."""
    try:
        frame = parse_amounts(st.session_state.get(FIXED_TEXT, ""))
    except ValueError as error:
        st.session_state[FIXED_TEXT_ERROR] = str(error)
        return
    st.session_state[FIXED_TEXT_ERROR] = ""
    FORM.replace_table("fixed", frame)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def symbol_amounts(frame: pd.DataFrame, what: str) -> dict[str, float]:
    """``{symbol: number}`` from a two-column (element, number) table; ``ValueError`` names a bad row."""
    amounts: dict[str, float] = {}
    for symbol, value in frame.itertuples(index=False):
        if _missing(symbol) or not str(symbol).strip():
            if _missing(value):
                continue  # an empty row
            raise ValueError(f"{what}: a row has a value ({value}) but no element")
        symbol = str(symbol).strip()
        if _missing(value):
            raise ValueError(f"{what}: {symbol} has no value")
        if symbol in amounts:
            raise ValueError(f"{what}: {symbol} is listed twice")
        amounts[symbol] = float(value)
    return amounts


# ---------------------------------------------------------------------- the form's values -> DesignConfig
def design_config(
    targets: list[Target], constraints: dict[str, Any], seeds: dict[str, Any], settings: dict[str, Any]
) -> DesignConfig:
    """The form's values -> the ``DesignConfig`` it describes, checked by the config (a ``ValueError`` names the
    first conflict). The dicts use the config's own key names; form-only forms of a value are converted here:
    ``allowed_elements`` a list (a preset's exact list becomes its name), ``max_elements`` 0 = no cap,
    ``max_distance`` 0 = no limit,
    ``fixed_amounts`` / ``element_step_scale`` tables, ``formulas`` one per line."""
    if not constraints["allowed_elements"]:
        raise ValueError("allowed_elements is empty: pick elements in the periodic table or a preset")
    allowed = sorted(constraints["allowed_elements"])
    preset = next((name for name, symbols in element_presets().items() if sorted(symbols) == allowed), None)
    step_scales = symbol_amounts(constraints["element_step_scale"], "element step scale")
    default_step_scale = setting("constraints.element_step_scale")[0]
    constraints = {
        **constraints, "allowed_elements": preset or constraints["allowed_elements"],
        "max_elements": constraints["max_elements"] or None,
        "max_distance": constraints.get("max_distance") or None,
        "fixed_amounts": symbol_amounts(constraints["fixed_amounts"], "fixed amounts"),
        "element_step_scale": step_scales or default_step_scale,
    }  # fmt: skip
    formulas = [line.strip() for line in seeds.get("formulas", "").replace(";", "\n").splitlines() if line.strip()]
    if seeds["source"] == "formulas" and formulas:
        seeds = {**seeds, "n": len(formulas)}
    seed_config = SeedConfig(**{**seeds, "formulas": formulas})  # settings the form does not show: defaults
    config = DesignConfig(targets=targets, constraints=constraints, seeds=seed_config, **settings)  # type: ignore[arg-type]
    if not targets:
        raise ValueError("no target: choose a goal for at least one task")
    return config


def start_run(checkpoint: LoadedCheckpoint, config: DesignConfig) -> None:
    """Run the design with a progress bar; the result (or the error's message) is kept in the session."""
    bar = st.progress(0.0, text="Designing ...")
    shown = {"percent": -1}

    def progress(done: int, total: int) -> None:
        percent = int(100 * done / max(total, 1))
        if percent != shown["percent"]:
            shown["percent"] = percent
            bar.progress(min(percent, 100) / 100, text=f"Designing ... step {done}/{total}")

    try:
        result = run_design(checkpoint, config, progress=progress)
    except ValueError as error:
        st.session_state[RUN_ERROR] = str(error)
        return
    except Exception as error:  # noqa: BLE001 - shown to the user instead of a traceback
        st.session_state[RUN_ERROR] = f"the design run failed: {type(error).__name__}: {error}"
        return
    finally:
        bar.empty()
    state.put(state.DESIGN_RESULT, result)
    state.put(state.DESIGN_CONFIG, config.to_dict())
    st.session_state.pop(VIEW, None)
    save_last_config(config)


def last_config_path() -> Path:
    return workspace_dir() / LAST_CONFIG


def save_last_config(config: DesignConfig) -> Path:
    """Write ``config`` as the workspace's last design settings (JSON, atomically): the form can be restored from
    it after a reload or a closed tab (:mod:`workbench.design_settings`)."""
    path = last_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_json(path, config.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------- the results
def result_checkpoint(result: DesignResult, active: LoadedCheckpoint) -> tuple[LoadedCheckpoint | None, str]:
    """The checkpoint ``result`` was made with (``None`` if it cannot be loaded) and a warning if that is not the
    active one."""
    if result.checkpoint_path == str(active.path):
        return active, ""
    warning = f"These results were made with another checkpoint ({result.checkpoint_path})."
    try:
        return get_checkpoint(result.checkpoint_path), warning
    except (CheckpointError, OSError):
        return None, warning


def result_view(result: DesignResult, checkpoint: LoadedCheckpoint | None) -> dict[str, Any]:
    """Figures and download bytes of ``result``, computed once per result."""
    view = st.session_state.get(VIEW)
    if view is None or view["result"] is not result:
        figures = design_figures(result, checkpoint) if checkpoint is not None else {}
        view = {
            "result": result, "figures": figures, "csv": result.to_csv().encode("utf-8"),
            "json": result.to_json().encode("utf-8"),
        }  # fmt: skip
        st.session_state[VIEW] = view
    return view


def result_counts(result: DesignResult) -> dict[str, int]:
    """Recipes, distinct recipes, distinct recipes asked for, recipes satisfying every hard constraint and
    extrapolated recipes."""
    table = result.table
    far = int((table["extrapolated_for"] != "").sum()) if "extrapolated_for" in table.columns else 0
    return {"recipes": len(table), "distinct": int((table["duplicate_of_rank"] == 0).sum()),
            "asked": result.n_asked or len(table), "ok": int(table["constraints_ok"].sum()), "far": far}  # fmt: skip


def result_columns(result: DesignResult) -> dict[str, Any]:
    """The results table's column formats and help texts."""
    value_columns = {with_unit(n, u) for n, u in result.units.items()}
    config: dict[str, Any] = {
        "constraints_ok": st.column_config.CheckboxColumn("constraints_ok"),
        "distance_to_training": st.column_config.NumberColumn(
            "distance_to_training", format="%.3f", help="fraction of atoms differing from the nearest training recipe"
        ),
        "objective": st.column_config.NumberColumn("objective", format="%.4g", help=OBJECTIVE_HELP),
        "seed_projected": st.column_config.TextColumn("seed_projected", help=SEED_PROJECTED_HELP),
        IMPOSSIBLE_COLUMN: st.column_config.TextColumn(
            IMPOSSIBLE_COLUMN, help=f"target tasks predicted below their physical minimum: {IMPOSSIBLE_MEANING}"
        ),
        "extrapolated_for": st.column_config.TextColumn(
            "extrapolated_for",
            help="target tasks for which this recipe is as far from the training data as the task's furthest "
            "test composition, or further",
        ),
    }
    for column in result.table.columns:
        if column.startswith("x_") or column.endswith("_distance_to_training"):
            config[column] = st.column_config.NumberColumn(column, format="%.3f")
        elif column in value_columns or any(split_unit(column)[0].endswith(suffix) for suffix in VARIANT_SUFFIXES):
            config[column] = st.column_config.NumberColumn(column, format="%.4g")
    return config


def new_elements(result: DesignResult) -> list[str]:
    """Elements in some recipe but in no seed."""
    table = result.table
    present = {c[2:] for c in table.columns if c.startswith("x_") and (table[c] > 0).any()}
    return sorted(present - set(seed_elements(result)))


def figure_tabs(figures: dict[str, go.Figure]) -> dict[str, dict[str, go.Figure]]:
    """The results' figures by tab (tabs without a figure left out), each by its file stem."""
    tabs = {
        "Element frequency": {k: f for k, f in figures.items() if k == "element_heatmap"},
        "Seed → designed": {k: f for k, f in figures.items() if k.startswith("seed_vs_designed_")},
        "Pareto": {k: f for k, f in figures.items() if k == "pareto"},
        "Trajectory": {k: f for k, f in figures.items() if k == "trajectory"},
    }
    return {name: shown for name, shown in tabs.items() if shown}
