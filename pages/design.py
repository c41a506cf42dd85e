"""Inverse design: targets and constraints -> a run with progress -> ranked recipes, figures and export."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from fm_engine.elements import element_symbols
from fm_engine.inverse import DesignConfig, DesignConstraints, SeedConfig, Target, element_presets, run_design
from fm_engine.inverse.report import design_figures, seed_elements
from fm_engine.inverse.seeds import formula_seeds
from fm_engine.inverse.targets import validate_targets
from fm_engine.tasks import TaskType
from workbench import state
from workbench.components.element_picker import element_picker
from workbench.resources import CheckpointError, active_checkpoint_or_explain, get_checkpoint

# Session-state keys no widget owns (they survive page switches).
FORM = "fm_design_form"  # last value of every form widget, restored when the page is shown again
ALLOWED = "fm_design_allowed"  # the element picker's selection
TABLE = "fm_design_table_{}"  # canonical content of an editable table (fixed, step_scale, curve_<task>)
TABLE_VERSION = "fm_design_table_{}_version"
RUN_ERROR = "fm_design_error"  # the last validation / run error message
VIEW = "fm_design_view"  # figures and download bytes of the stored result

GOALS_REGRESSION = ["none", "value", "high", "low", "range"]
GOALS_CLASSIFICATION = ["none", "probability up", "probability down"]
GOALS_CURVE = ["none", "curve points"]


# ---------------------------------------------------------------------- widget state that is kept
# The argument that holds a widget's own default, by widget kind (``value`` for the others).
DEFAULT_ARGUMENT = {"selectbox": "index", "radio": "index", "multiselect": "default"}


def kept(factory: Callable[..., Any], label: str, key: str, default: Any, *, options: Any = None, **kwargs: Any) -> Any:
    """A widget whose value survives page switches: its last value is kept in ``FORM`` and restored.

    The current value (else the kept one, else ``default``) is given as the widget's *own default*
    (``value=`` / ``index=`` / ``default=``) on every run, never written to ``st.session_state[key]`` before
    the widget. The browser shows a widget's own default whenever it mounts the widget without being told a
    value (e.g. after a slow run was interrupted by the user's next click, as happens when several sessions
    share the server), and sends that value back with the next click: with the minimum as own default, the
    sliders silently ran designs at 0.00. Now what the browser falls back to is always the current value."""
    store = st.session_state.setdefault(FORM, {})
    value = st.session_state[key] if key in st.session_state else store.get(key, default)  # current value first
    if options is not None:  # a remembered value must still be an option (another checkpoint)
        if isinstance(value, list):
            value = [v for v in value if v in options]
        elif value not in options:
            value = default
        kwargs["options"] = options
    argument = DEFAULT_ARGUMENT.get(getattr(factory, "__name__", ""), "value")
    kwargs[argument] = list(options).index(value) if argument == "index" else value
    value = factory(label, key=key, **kwargs)
    store[key] = value
    return value


def apply_edits(frame: pd.DataFrame, edits: dict[str, Any]) -> pd.DataFrame:
    """A data editor's state (edited / added / deleted rows, by position) applied to ``frame``."""
    frame = frame.reset_index(drop=True).copy()
    for position, changes in (edits.get("edited_rows") or {}).items():
        for column, value in changes.items():
            if column in frame.columns:
                frame.loc[int(position), column] = value
    deleted = {int(p) for p in edits.get("deleted_rows") or []}
    frame = frame.drop(index=[p for p in deleted if p < len(frame)]).reset_index(drop=True)
    added = [{c: v for c, v in row.items() if c in frame.columns} for row in edits.get("added_rows") or []]
    if added:
        frame = pd.concat([frame, pd.DataFrame(added, columns=frame.columns)], ignore_index=True)
    return frame


def kept_table(name: str, default: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """An ``st.data_editor`` whose content is kept in ``TABLE`` (a key no widget owns).

    Each edit is folded into the canonical table and the editor gets a fresh key, so nothing is lost when
    the page is left (widget state is dropped then) and the edits are never applied twice."""
    base_key, version_key = TABLE.format(name), TABLE_VERSION.format(name)
    if base_key not in st.session_state:
        st.session_state[base_key] = default
    version = st.session_state.get(version_key, 0)
    editor_key = f"design_editor_{name}_{version}"

    def commit() -> None:
        st.session_state[base_key] = apply_edits(st.session_state[base_key], st.session_state[editor_key])
        st.session_state[version_key] = version + 1

    return st.data_editor(
        st.session_state[base_key], key=editor_key, on_change=commit, num_rows="dynamic", hide_index=True, **kwargs
    )


def _fixed_from_text() -> None:
    """``Al=0.1, Ti 0.05`` -> the fixed-amounts table (a bad entry is reported, the table kept)."""
    text = st.session_state.get("design_fixed_text", "")
    rows = []
    st.session_state["design_fixed_text_error"] = ""
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        pieces = part.replace("=", " ").replace(":", " ").split()
        try:
            symbol, fraction = pieces[0], float(pieces[1])
        except (IndexError, ValueError):
            st.session_state["design_fixed_text_error"] = f"Cannot read '{part}': write it like Al=0.1"
            return
        if symbol not in element_symbols():
            st.session_state["design_fixed_text_error"] = f"Unknown element symbol '{symbol}' in '{part}'"
            return
        rows.append({"element": symbol, "fraction": fraction})
    frame = pd.DataFrame(rows, columns=["element", "fraction"]).astype({"element": object, "fraction": float})
    st.session_state[TABLE.format("fixed")] = frame
    st.session_state[TABLE_VERSION.format("fixed")] = st.session_state.get(TABLE_VERSION.format("fixed"), 0) + 1


def _symbol_amounts(frame: pd.DataFrame, what: str) -> dict[str, float]:
    """``{symbol: number}`` from a two-column (element, number) table; ``ValueError`` names a bad row."""
    amounts: dict[str, float] = {}
    for row in frame.itertuples(index=False):
        symbol, value = row[0], row[1]
        if symbol is None or (isinstance(symbol, float) and math.isnan(symbol)) or not str(symbol).strip():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue  # an empty row
            raise ValueError(f"{what}: a row has a value ({value}) but no element")
        symbol = str(symbol).strip()
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise ValueError(f"{what}: {symbol} has no value")
        if symbol in amounts:
            raise ValueError(f"{what}: {symbol} is listed twice")
        amounts[symbol] = float(value)
    return amounts


# ---------------------------------------------------------------------- the form
def target_inputs(model: Any) -> list[Target]:
    """One row per task: goal kind, values in the task's unit, weight. Returns the chosen targets."""
    targets = []
    for i, task in enumerate(model.tasks.values()):
        scaler = model.config.scalers.get(task.name)
        mean = float(scaler.mean[0]) if scaler is not None else 0.0
        std = float(scaler.std[0]) if scaler is not None else 1.0
        unit = task.unit or ""
        shown_unit = f" [{unit}]" if unit else ""
        with st.container(border=True):
            name_col, goal_col, value_col, weight_col = st.columns([2, 2, 4, 1])
            if task.type is TaskType.CLASSIFICATION:
                name_col.markdown(f"**{task.name}**  \nclasses: {', '.join(task.classes or [])}")
                goal = kept(
                    goal_col.selectbox, "Goal", f"design_goal_{task.name}", "none", options=GOALS_CLASSIFICATION
                )
                target = None
                if goal != "none":
                    classes = kept(
                        value_col.multiselect, "Classes (probability of this set)", f"design_classes_{task.name}",
                        (task.classes or [])[:1], options=list(task.classes or []),
                    )  # fmt: skip
                    direction = "high" if goal == "probability up" else "low"
                    target = Target(task=task.name, classes=list(classes), direction=direction)
            elif task.type is TaskType.KERNEL_REGRESSION:
                t_unit = task.t_unit or ""
                name_col.markdown(f"**{task.name}**  \n{unit or '-'} vs t ({t_unit or '-'})")
                goal = kept(goal_col.selectbox, "Goal", f"design_goal_{task.name}", "none", options=GOALS_CURVE)
                target = None
                if goal != "none":
                    t_label, y_label = f"t [{t_unit}]" if t_unit else "t", f"{task.name}{shown_unit}"
                    t_mean = float(scaler.t_mean) if scaler is not None else 0.0
                    default = pd.DataFrame({t_label: [round(t_mean, 3)], y_label: [round(mean, 3)]})
                    with value_col:
                        st.caption(f"Curve points the property should pass through ({y_label} at {t_label})")
                        points = kept_table(f"curve_{task.name}", default)
                    rows = points.dropna().to_numpy(dtype=float).tolist()
                    target = Target(task=task.name, points=[[t, y] for t, y in rows])
            else:
                name_col.markdown(f"**{task.name}**  \n{unit or 'no unit'}")
                goal = kept(
                    goal_col.selectbox, "Goal", f"design_goal_{task.name}", "high" if i == 0 else "none",
                    options=GOALS_REGRESSION,
                )  # fmt: skip
                target = None
                if goal == "value":
                    value = kept(value_col.number_input, f"Value{shown_unit}", f"design_value_{task.name}",
                                 round(mean + std, 3), format="%.4g")  # fmt: skip
                    target = Target(task=task.name, value=float(value))
                elif goal == "range":
                    low_col, high_col = value_col.columns(2)
                    low = kept(low_col.number_input, f"From{shown_unit}", f"design_low_{task.name}", round(mean, 3),
                               format="%.4g")  # fmt: skip
                    high = kept(high_col.number_input, f"To{shown_unit}", f"design_high_{task.name}",
                                round(mean + std, 3), format="%.4g")  # fmt: skip
                    target = Target(task=task.name, range=[float(low), float(high)])
                elif goal in ("high", "low"):
                    value_col.caption(f"as {goal} as possible{shown_unit}")
                    target = Target(task=task.name, direction=goal)
            weight = kept(weight_col.number_input, "Weight", f"design_weight_{task.name}", 1.0, min_value=0.0,
                          step=0.5, disabled=goal == "none")  # fmt: skip
            if target is not None:
                target.weight = float(weight)
                targets.append(target)
    return targets


def constraint_inputs() -> dict[str, Any]:
    """Constraint widgets; returns the raw values (validated later)."""
    presets = element_presets()
    with st.expander(
        f"Allowed elements ({len(st.session_state.get(ALLOWED, presets['all']))} selected)", expanded=True
    ):
        allowed = element_picker(ALLOWED, presets=presets, default=presets["all"])
    left, middle, right = st.columns(3)
    with left:
        max_elements = kept(st.number_input, "Max elements per recipe (0 = no cap)", "design_max_elements", 5,
                            min_value=0, max_value=len(element_symbols()), step=1)  # fmt: skip
        min_weight = kept(st.number_input, "Min fraction of a present element", "design_min_weight", 0.0,
                          min_value=0.0, max_value=0.99, step=0.01, format="%.3f")  # fmt: skip
    with middle:
        diversity = kept(st.slider, "Diversity scale (low: few elements)", "design_diversity", 1.0,
                         min_value=0.0, max_value=1.0, step=0.05)  # fmt: skip
        seed_blend = kept(st.slider, "Seed blend (1: stay within each seed's elements)", "design_seed_blend", 0.95,
                          min_value=0.0, max_value=1.0, step=0.05)  # fmt: skip
        annealing = kept(st.slider, "Annealing scale (top-K start temperature 25^s)", "design_annealing", 0.5,
                         min_value=0.0, max_value=1.0, step=0.05)  # fmt: skip
    element_options = list(element_symbols())
    with right:
        st.caption("Fixed amounts (atomic fraction, exact in every recipe)")
        st.text_input(
            "Fixed amounts as text", key="design_fixed_text", placeholder="Al=0.1, Ti=0.05",
            on_change=_fixed_from_text, help="Replaces the table below; leave empty to edit the table directly.",
        )  # fmt: skip
        if st.session_state.get("design_fixed_text_error"):
            st.error(st.session_state["design_fixed_text_error"])
        fixed = kept_table(
            "fixed",
            pd.DataFrame({"element": pd.Series([], dtype=object), "fraction": pd.Series([], dtype=float)}),
            column_config={
                "element": st.column_config.SelectboxColumn("element", options=element_options, required=True),
                "fraction": st.column_config.NumberColumn("fraction", min_value=0.0, max_value=1.0, step=0.01),
            },
        )
    with st.expander("Per-element step scale (optional: 0 locks an element at its seed amount, <1 slows it)"):
        step_scale = kept_table(
            "step_scale",
            pd.DataFrame({"element": pd.Series([], dtype=object), "scale": pd.Series([], dtype=float)}),
            column_config={
                "element": st.column_config.SelectboxColumn("element", options=element_options, required=True),
                "scale": st.column_config.NumberColumn("scale", min_value=0.0, max_value=1.0, step=0.05),
            },
        )
    return {
        "allowed": allowed, "max_elements": int(max_elements), "min_weight": float(min_weight),
        "diversity": float(diversity), "seed_blend": float(seed_blend), "annealing": float(annealing),
        "fixed": fixed, "step_scale": step_scale,
    }  # fmt: skip


def seed_and_run_inputs(model: Any) -> dict[str, Any]:
    left, middle, right = st.columns(3)
    with left:
        source = kept(st.radio, "Seeds", "design_seed_source", "data", options=["data", "formulas", "random"],
                      horizontal=True, help="data: training compositions; formulas: yours; random: random")  # fmt: skip
        n = kept(st.number_input, "Number of seeds / starts", "design_seed_n", 16, min_value=1, max_value=512, step=1)
        strategy, split, formulas = "best", "all", ""
        if source == "data":
            strategy = kept(st.selectbox, "Pick from the data", "design_seed_strategy", "best",
                            options=["best", "random"], help="best: lowest objective, one per system")  # fmt: skip
            split = kept(st.selectbox, "Split", "design_seed_split", "all", options=["all", "train", "val", "test"])
        elif source == "formulas":
            formulas = kept(st.text_area, "Seed formulas (one per line)", "design_seed_formulas", "",
                            placeholder="Fe0.7Ni0.2Cr0.1\nTiZrNbHf")  # fmt: skip
    methods = ["composition", "latent"] if model.autoencoder is not None else ["composition"]
    with middle:
        method = kept(st.radio, "Method", "design_method", "composition", options=methods, horizontal=True,
                      help="composition: descend on the fractions; latent: descend on the model's latent, "
                      "then recover a recipe (needs the autoencoder head)")  # fmt: skip
        ae_align = 0.5
        if method == "latent":
            ae_align = kept(st.number_input, "Autoencoder alignment scale", "design_ae_align", 0.5, min_value=0.0,
                            step=0.1)  # fmt: skip
    with right:
        steps = kept(st.number_input, "Steps", "design_steps", 300, min_value=2, max_value=20000, step=50)
        lr = kept(st.number_input, "Learning rate", "design_lr", 0.2, min_value=1e-4, step=0.05, format="%.4g")
        random_seed = kept(st.number_input, "Random seed", "design_random_seed", 0, min_value=0, step=1)
    return {
        "source": source, "n": int(n), "strategy": strategy, "split": split, "formulas": formulas,
        "method": method, "ae_align": float(ae_align), "steps": int(steps), "lr": float(lr),
        "random_seed": int(random_seed),
    }  # fmt: skip


def build_config(model: Any, targets: list[Target], constraints: dict[str, Any], run: dict[str, Any]) -> DesignConfig:
    """The DesignConfig of the form, validated: a ``ValueError`` names the first conflict."""
    if not constraints["allowed"]:
        raise ValueError("allowed_elements is empty: pick elements in the periodic table or a preset")
    presets = element_presets()
    allowed: list[str] | str = next(
        (name for name, symbols in presets.items() if sorted(symbols) == sorted(constraints["allowed"])),
        constraints["allowed"],
    )
    steps = _symbol_amounts(constraints["step_scale"], "element step scale")
    design_constraints = DesignConstraints(
        allowed_elements=allowed,
        max_elements=constraints["max_elements"] or None,
        annealing_scale=constraints["annealing"],
        fixed_amounts=_symbol_amounts(constraints["fixed"], "fixed amounts"),
        min_nonzero_weight=constraints["min_weight"],
        element_step_scale=steps if steps else 1.0,
        seed_blend=constraints["seed_blend"],
        diversity_scale=constraints["diversity"],
    )
    formulas = [line.strip() for line in run["formulas"].replace(";", "\n").splitlines() if line.strip()]
    seeds = SeedConfig(
        source=run["source"], n=len(formulas) if run["source"] == "formulas" and formulas else run["n"],
        strategy=run["strategy"], split=run["split"], formulas=formulas,
    )  # fmt: skip
    design_constraints.validate(has_seeds=seeds.source != "random")
    if not targets:
        raise ValueError("no target: choose a goal for at least one task")
    validate_targets(model, targets)
    if seeds.source == "formulas":
        formula_seeds(formulas)  # a formula that does not parse is named here
    return DesignConfig(
        targets=targets, method=run["method"], constraints=design_constraints, seeds=seeds, steps=run["steps"],
        lr=run["lr"], random_seed=run["random_seed"], ae_align_scale=run["ae_align"],
    )  # fmt: skip


# ---------------------------------------------------------------------- the run
def start_run(checkpoint: Any, config: DesignConfig) -> None:
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


# ---------------------------------------------------------------------- results
def result_view(result: Any, checkpoint: Any) -> dict[str, Any]:
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


def show_results(result: Any, checkpoint: Any) -> None:
    table = result.table
    st.header("Results")
    n_ok = int(table["constraints_ok"].sum())
    n_distinct = int((table["duplicate_of_rank"] == 0).sum())
    a, b, c, d = st.columns(4)
    a.metric("Recipes", len(table))
    b.metric("Distinct", n_distinct)
    c.metric("Satisfy every hard constraint", f"{n_ok}/{len(table)}")
    d.metric("Run time", f"{result.seconds:.1f} s")
    if checkpoint is not None:
        st.caption("Targets: " + "; ".join(f"{t.describe(checkpoint.model)} (weight {t.weight:g})"
                                          for t in result.config.targets))  # fmt: skip
    if n_ok < len(table):
        st.warning(f"{len(table) - n_ok} recipe(s) violate a hard constraint: see the constraint_check column.")
    n_far = int((table["extrapolated_for"] != "").sum()) if "extrapolated_for" in table.columns else 0
    if n_far:
        st.warning(
            f"{n_far} recipe(s) lie further from a target task's training compositions than any of its test "
            "compositions (column extrapolated_for): the model card's test errors do not cover their values."
        )

    hide = st.checkbox("Hide near-duplicates (within 1 at.% of a better recipe)", value=True, key="design_hide_dups")
    shown = table[table["duplicate_of_rank"] == 0] if hide else table
    value_columns = {f"{n} [{u}]" for n, u in result.units.items()}
    config: dict[str, Any] = {
        "constraints_ok": st.column_config.CheckboxColumn("constraints_ok"),
        "distance_to_training": st.column_config.NumberColumn(
            "distance_to_training", format="%.3f", help="fraction of atoms differing from the nearest training recipe"
        ),
        "objective": st.column_config.NumberColumn("objective", format="%.4g", help="lower is better"),
        "extrapolated_for": st.column_config.TextColumn(
            "extrapolated_for",
            help="target tasks for which this recipe is further from the training data than "
            "any test composition of the task",
        ),
    }
    for column in table.columns:
        if column.startswith("x_") or column.endswith("_distance_to_training"):
            config[column] = st.column_config.NumberColumn(column, format="%.3f")
        elif column in value_columns or " seed [" in column or " change [" in column:
            config[column] = st.column_config.NumberColumn(column, format="%.4g")
    st.dataframe(shown, hide_index=True, column_config=config, key="design_results_table")
    st.caption(
        "Predicted values are the model's opinion, re-scored on each reported recipe in physical units; check "
        "distance_to_training (novelty) and the model card's test errors before making anything. "
        "charge_balance is advisory."
    )

    view = result_view(result, checkpoint)
    left, right, _ = st.columns([1, 1, 4])
    left.download_button("Download CSV", view["csv"], file_name="recipes.csv", mime="text/csv",
                         key="download_csv", on_click="ignore", width="stretch")  # fmt: skip
    right.download_button("Download JSON", view["json"], file_name="results.json", mime="application/json",
                          key="download_json", on_click="ignore", width="stretch")  # fmt: skip

    figures = view["figures"]
    if not figures:
        st.info("Figures need the checkpoint these results were made with, which could not be loaded.")
        return
    names = ["Element frequency"]
    seed_figures = {k: f for k, f in figures.items() if k.startswith("seed_vs_designed_")}
    if seed_figures:
        names.append("Seed → designed")
    if "pareto" in figures:
        names.append("Pareto")
    if "trajectory" in figures:
        names.append("Trajectory")
    tabs = dict(zip(names, st.tabs(names), strict=True))
    with tabs["Element frequency"]:
        new = sorted(
            {c[2:] for c in table.columns if c.startswith("x_") and (table[c] > 0).any()} - set(seed_elements(result))
        )
        if result.seeds is not None:
            st.caption("Elements framed in red are absent from every seed: " + (", ".join(new) if new else "none"))
        st.plotly_chart(figures["element_heatmap"], key="design_fig_heatmap")
    if seed_figures:
        with tabs["Seed → designed"]:
            columns = st.columns(min(2, len(seed_figures)))
            for i, (stem, figure) in enumerate(seed_figures.items()):
                with columns[i % len(columns)]:
                    st.plotly_chart(figure, key=f"design_fig_{stem}")
    if "pareto" in figures:
        with tabs["Pareto"]:
            st.plotly_chart(figures["pareto"], key="design_fig_pareto")
    if "trajectory" in figures:
        with tabs["Trajectory"]:
            st.plotly_chart(figures["trajectory"], key="design_fig_trajectory")


# ---------------------------------------------------------------------- the page
def main() -> None:
    st.title("Inverse design")
    st.caption("Compositions from the elements you allow that hit your property targets (gradient-based).")
    active = active_checkpoint_or_explain()
    if active is None:
        return
    checkpoint = active[1]
    model = checkpoint.model

    st.subheader("Targets")
    st.caption("Values are in each task's physical unit; terms are compared in units of the training spread.")
    targets = target_inputs(model)
    st.subheader("Constraints")
    constraints = constraint_inputs()
    st.subheader("Seeds and optimisation")
    run = seed_and_run_inputs(model)

    button_col, message_col = st.columns([1, 5], vertical_alignment="center")
    clicked = button_col.button("Run design", key="run_design", type="primary", width="stretch")
    if clicked:
        st.session_state[RUN_ERROR] = ""
        try:
            config = build_config(model, targets, constraints, run)
        except ValueError as error:
            st.session_state[RUN_ERROR] = str(error)
        else:
            with message_col:
                start_run(checkpoint, config)
    if st.session_state.get(RUN_ERROR):
        message_col.error(f"Cannot run this design: {st.session_state[RUN_ERROR]}")

    result = state.get(state.DESIGN_RESULT)
    if result is None:
        return
    result_checkpoint = checkpoint
    if result.checkpoint_path != str(checkpoint.path):
        st.warning(f"These results were made with another checkpoint ({result.checkpoint_path}).")
        try:
            result_checkpoint = get_checkpoint(result.checkpoint_path)
        except (CheckpointError, OSError):
            result_checkpoint = None
    show_results(result, result_checkpoint)


main()
