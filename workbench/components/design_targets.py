"""The Design form's targets: one row per task (goal kind, values in the task's unit, weight), in groups: the
user's own tasks, the stability heads a model has from the foundation (with one-click presets such as "formation
enthalpy below -0.2 eV/atom"), and the foundation's other DFT heads (collapsed). Which task goes where, and the
presets, are :mod:`workbench.design`'s."""

from __future__ import annotations

from typing import Any

import streamlit as st

from fm_engine.checkpoints import LoadedCheckpoint
from fm_engine.inverse import Target
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.tasks import TaskType
from workbench import design

kept = design.FORM.widget  # a widget whose value survives page switches


def target_inputs(checkpoint: LoadedCheckpoint, *, foundation: bool = False) -> list[Target]:
    """Every task's target row, by group (``foundation``: the checkpoint is the foundation itself); returns the
    chosen targets."""
    model = checkpoint.model
    groups = design.target_groups(checkpoint, foundation=foundation)
    targets = []
    for group in groups:
        if group.collapsed:
            box = st.expander(f"{group.title} ({len(group.tasks)})")
        else:
            box = st.container()
            if group.title:
                box.markdown(f"**{group.title}**")
            if group.title == design.STABILITY_GROUP:
                box.caption(
                    "DFT-computed stability, predicted by heads the model has from the foundation: add them to your "
                    "targets (a preset sets the goal in one click); values in each head's unit."
                )
        with box:
            for name in group.tasks:
                target = target_row(model, name, design.default_goal(model, groups, name))
                if target is not None:
                    targets.append(target)
    return targets


def target_row(model: FlexibleMultiTaskModel, name: str, default_goal: str) -> Target | None:
    """One task's row: goal, values in its unit, weight (and its stability preset button, if it has one)."""
    task = model.tasks[name]
    mean, std, _ = design.task_scale(model, name)
    unit = task.unit or ""
    shown_unit = f" [{unit}]" if unit else ""
    target = None
    with st.container(border=True):
        name_col, goal_col, value_col, weight_col = st.columns([2, 2, 4, 1])
        if task.type is TaskType.CLASSIFICATION:
            name_col.markdown(f"**{name}**  \nclasses: {', '.join(task.classes or [])}")
            goal = kept(goal_col.selectbox, "Goal", f"design_goal_{name}", "none", options=design.GOALS_CLASSIFICATION)
            if goal != "none":
                classes = kept(
                    value_col.multiselect, "Classes (probability of this set)", f"design_classes_{name}",
                    (task.classes or [])[:1], options=list(task.classes or []),
                )  # fmt: skip
                direction = "high" if goal == "probability up" else "low"
                target = Target(task=name, classes=list(classes), direction=direction)
        elif task.type is TaskType.KERNEL_REGRESSION:
            name_col.markdown(f"**{name}**  \n{unit or '-'} vs t ({task.t_unit or '-'})")
            goal = kept(goal_col.selectbox, "Goal", f"design_goal_{name}", "none", options=design.GOALS_CURVE)
            if goal != "none":
                with value_col:
                    target = Target(task=name, points=design.curve_points(model, name))
        else:
            name_col.markdown(f"**{name}**  \n{unit or 'no unit'}")
            preset = design.stability_preset(model, name)
            if preset is not None:
                name_col.button(
                    preset.label, key=f"design_preset_{name}", icon=":material/verified:",
                    on_click=design.apply_stability_preset, args=(name, preset),
                    help=f"{preset.meaning}: goal range [{preset.low:g}, {preset.high:g}] {preset.unit}",
                )  # fmt: skip
            goal = kept(goal_col.selectbox, "Goal", f"design_goal_{name}", default_goal,
                        options=design.GOALS_REGRESSION)  # fmt: skip
            target = regression_target(name, goal, value_col, shown_unit, mean + std, design.range_default(model, name))
        weight = kept(weight_col.number_input, "Weight", f"design_weight_{name}", Target.weight,
                      min_value=0.0, step=0.5, disabled=goal == "none")  # fmt: skip
    if target is not None:
        target.weight = float(weight)
    return target


def regression_target(
    name: str, goal: str, column: Any, shown_unit: str, value: float, bounds: tuple[float, float]
) -> Target | None:
    """The value / range / direction widgets of a regression row (starting at ``value`` and ``bounds``)."""
    if goal == "value":
        chosen = kept(column.number_input, f"Value{shown_unit}", f"design_value_{name}", round(value, 3),
                      format="%.4g")  # fmt: skip
        return Target(task=name, value=float(chosen))
    if goal == "range":
        low_col, high_col = column.columns(2)
        low = kept(low_col.number_input, f"From{shown_unit}", f"design_low_{name}", bounds[0], format="%.4g")
        high = kept(high_col.number_input, f"To{shown_unit}", f"design_high_{name}", bounds[1], format="%.4g")
        return Target(task=name, range=[float(low), float(high)])
    if goal in ("high", "low"):
        column.caption(f"as {goal} as possible{shown_unit}")
        return Target(task=name, direction=goal)
    return None
