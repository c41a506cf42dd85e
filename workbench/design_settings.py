"""The Design form restorable after a reload or a closed tab: the last submitted design config is saved in the
workspace (:func:`workbench.design.save_last_config`), and a saved config or a design's ``results.json`` can be put back
into the form's widgets (their kept values, :class:`~workbench.components.kept.KeptForm`)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from fm_engine.inverse import DesignConfig, element_presets
from fm_engine.inverse.design import RESULTS_FORMAT, load_results
from fm_engine.models import FlexibleMultiTaskModel
from fm_engine.tasks import TaskType
from workbench import design
from workbench.components.element_picker import ordered

MESSAGE = "fm_design_restore_message"  # (kind, text) of the last restore, shown once under the controls
UPLOAD = "design_settings_upload"  # the "load settings from a design JSON" uploader


def config_from_json(text: str | bytes, *, name: str = "the file") -> DesignConfig:
    """A design config from a saved config or a design's ``results.json``; ``ValueError`` names the file."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{name}: not valid JSON ({error})") from None
    try:
        if isinstance(data, dict) and data.get("format") == RESULTS_FORMAT:
            data = load_results(data)["config"]
        return DesignConfig.from_dict(data)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def form_values(config: DesignConfig, model: FlexibleMultiTaskModel) -> tuple[dict[str, Any], dict[str, Any], list]:
    """(widget values by key, table contents by table name, targets on tasks this model lacks) of ``config``
    as the Design form shows it (0 = no cap / no limit; every task of the model without a target: goal none)."""
    c, seeds = config.constraints, config.seeds
    values: dict[str, Any] = {
        "design_max_elements": c.max_elements or 0, "design_min_weight": c.min_nonzero_weight,
        "design_max_distance": c.max_distance or 0.0, "design_diversity": c.diversity_scale,
        "design_seed_blend": c.seed_blend, "design_annealing": c.annealing_scale,
        "design_seed_source": seeds.source, "design_seed_n": seeds.n, "design_seed_strategy": seeds.strategy,
        "design_seed_split": seeds.split, "design_seed_formulas": "\n".join(seeds.formulas),
        "design_method": config.method, "design_ae_align": config.ae_align_scale, "design_steps": config.steps,
        "design_lr": config.lr, "design_random_seed": config.random_seed,
        "design_uncertainty_scale": config.uncertainty_scale, "design_restarts": config.restarts,
        design.FIXED_TEXT: "",
    }  # fmt: skip
    scales = c.element_step_scale if isinstance(c.element_step_scale, dict) else {}
    if not isinstance(c.element_step_scale, dict) and float(c.element_step_scale) != 1.0:
        scales = dict.fromkeys(c.allowed(), float(c.element_step_scale))
    tables = {
        "fixed": pd.DataFrame({"element": list(c.fixed_amounts), "fraction": list(c.fixed_amounts.values())}),
        "step_scale": pd.DataFrame({"element": list(scales), "scale": [float(v) for v in scales.values()]}),
    }
    targets = {t.task: t for t in config.targets}
    for name, task in model.tasks.items():
        target = targets.get(name)
        values[f"design_goal_{name}"] = "none"
        if target is None:
            continue
        values[f"design_weight_{name}"] = float(target.weight)
        if task.type is TaskType.CLASSIFICATION:
            values[f"design_goal_{name}"] = "probability down" if target.direction == "low" else "probability up"
            names = task.classes or []
            values[f"design_classes_{name}"] = [
                names[k] if isinstance(k, int) else str(k) for k in target.classes or []
            ]
        elif task.type is TaskType.KERNEL_REGRESSION:
            values[f"design_goal_{name}"] = "curve points"
            t_label = f"t [{task.t_unit}]" if task.t_unit else "t"
            y_label = f"{name} [{task.unit}]" if task.unit else name
            points = target.points or []
            tables[f"curve_{name}"] = pd.DataFrame({t_label: [p[0] for p in points], y_label: [p[1] for p in points]})
        elif target.range is not None:
            values[f"design_goal_{name}"] = "range"
            values[f"design_low_{name}"], values[f"design_high_{name}"] = map(float, target.range)
        elif target.direction is not None:
            values[f"design_goal_{name}"] = target.direction
        else:
            values[f"design_goal_{name}"] = "value"
            values[f"design_value_{name}"] = float(
                target.value if not isinstance(target.value, list) else target.value[0]
            )
    missing = [name for name in targets if name not in model.tasks]
    return values, tables, missing


def apply_config(config: DesignConfig, model: FlexibleMultiTaskModel, *, source: str) -> None:
    """Put ``config`` into the Design form (from a callback, before the widgets are drawn); the message says what
    was restored from ``source`` and which targets this model cannot take."""
    values, tables, missing = form_values(config, model)
    for key, value in values.items():
        design.FORM.assign(key, value)
    for name, frame in tables.items():
        design.FORM.replace_table(name, frame)
    allowed = config.constraints.allowed_elements
    st.session_state[design.ALLOWED] = ordered(element_presets()[allowed] if isinstance(allowed, str) else allowed)
    text = f"Restored the design settings from {source}."
    if missing:
        text += f" Not restored: target(s) on {', '.join(missing)}, which this model does not predict."
    st.session_state[MESSAGE] = ("warning" if missing else "success", text)


def restore_last(model: FlexibleMultiTaskModel) -> None:
    """The "Restore the last design settings" button's callback."""
    path = design.last_config_path()
    try:
        config = config_from_json(path.read_bytes(), name=str(path))
    except (OSError, ValueError) as error:
        st.session_state[MESSAGE] = ("error", f"Cannot restore the last design settings: {error}")
        return
    apply_config(config, model, source="the last design run in this workspace")


def load_uploaded(model: FlexibleMultiTaskModel) -> None:
    """The "Load settings from a design JSON" uploader's callback."""
    upload = st.session_state.get(UPLOAD)
    if upload is None:
        return
    try:
        config = config_from_json(upload.getvalue(), name=upload.name)
    except ValueError as error:
        st.session_state[MESSAGE] = ("error", f"Cannot load these design settings: {error}")
        return
    apply_config(config, model, source=upload.name)


def restore_controls(model: FlexibleMultiTaskModel) -> None:
    """The restore controls (the button is disabled until a design has run in this workspace) and the last
    restore's message."""
    saved = design.last_config_path().exists()
    with st.expander("Restore design settings (last run, or a design JSON)", expanded=False):
        st.button(
            "Restore the last design settings", key="design_restore_last", on_click=restore_last, args=(model,),
            disabled=not saved, help="The settings of the last design run from this page in this workspace (saved "
            "when it ran, so they survive a reload or a closed tab).",
        )  # fmt: skip
        st.file_uploader(
            "Load settings from a design JSON", type=["json"], key=UPLOAD, on_change=load_uploaded, args=(model,),
            help="A design's results.json (the Download JSON button, or fm design's output) or a saved "
            "last_config.json: its targets, constraints, seeds and optimisation settings fill the form.",
        )  # fmt: skip
    message = st.session_state.pop(MESSAGE, None)
    if message is not None:
        getattr(st, message[0])(message[1])
