"""The live view of a training run, shared by the Overview (demo) and Train pages."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st
import yaml

from fm_engine.plots import loss_figure, metric_figure
from fm_engine.training.ensemble import member_folder
from fm_engine.training.run_files import FINAL_STATES, RunDirectory
from workbench.components.monitor import (
    ensemble_fraction,
    ensemble_headline,
    ensemble_members,
    eta_text,
    rehearsal_headline,
    rehearsal_step_lines,
    schedule_text,
    task_metrics,
)
from workbench.runs import cancel, resumable, resume, run_info, submitted_config

STATE_ICONS = {
    "queued": ":material/hourglass_empty:",
    "running": ":material/directions_run:",
    "done": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/stop_circle:",
}


def _charts(run_dir: Path, *, key: str) -> None:
    """Per-task loss and validation-metric curves of one run folder (nothing until its first epoch)."""
    run = RunDirectory(run_dir)
    records = run.read_metrics()
    if run.model_config_path.exists() and records:
        model_config = json.loads(run.model_config_path.read_text(encoding="utf-8"))
        tasks = task_metrics(model_config)
        loss_tasks = list(tasks) + (["autoencoder"] if model_config["autoencoder"]["enabled"] else [])
        st.plotly_chart(loss_figure(records, loss_tasks), key=f"{key}_loss")
        st.caption(
            "How to read this: each task's loss per epoch on its training rows (solid) and validation rows (dashed), "
            "in normalised units. Both falling: the model is learning; validation rising while training falls: it "
            "starts to memorise, and the run keeps the best validation epoch."
        )
        st.plotly_chart(metric_figure(records, tasks), key=f"{key}_metrics")
        st.caption(
            "How to read this: each task's validation metric per epoch, in the task's physical unit (MAE) or as a "
            "score (ROC-AUC, accuracy); the test metrics of the model card are measured once, at the end."
        )


def _schedule(run_dir: Path) -> None:
    """One line: the run's epochs, patience, batch size and validation share (resolved from the data size when
    they were left automatic), from its config.yaml."""
    try:
        config = yaml.safe_load(RunDirectory(run_dir).config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return
    text = schedule_text(config if isinstance(config, dict) else None, submitted_config(run_dir))
    if text:
        st.caption(text)


def _rehearsal(run_dir: Path, status: dict, state: str, *, key: str) -> None:
    """Step progress, the per-step list, and the current step's epoch progress and curves."""
    steps = status.get("steps") or []
    total = status.get("n_steps") or len(steps)
    finished = sum(1 for s in steps if s.get("state") == "done")
    if state in ("queued", "running"):
        st.progress(min(finished / total, 1.0) if total else 0.0, text=rehearsal_headline(status))
    else:
        st.caption(rehearsal_headline(status))
    lines = rehearsal_step_lines(status, STATE_ICONS)
    if lines:
        st.markdown("\n".join(lines))
    current = status.get("current_run")
    step_dir = run_dir / current if current else None
    if step_dir is not None and step_dir.is_dir():
        step_status = RunDirectory(step_dir).checked_status()
        st.markdown(f"**Current step** (`{current}`)")
        if state in ("queued", "running"):
            st.progress(_fraction(step_status or status), text=eta_text(step_status or status))
        _charts(step_dir, key=key)


def _scaling(run_dir: Path, status: dict, state: str, *, key: str) -> None:
    """A scaling study: which keep-ratio trains (its epoch progress) and the current ratio's run curves."""
    total, step = int(status.get("n_steps") or 0), int(status.get("step") or 0)
    current = status.get("current_run")
    step_dir = run_dir / current if current else None
    step_status = RunDirectory(step_dir).checked_status() if step_dir is not None and step_dir.is_dir() else {}
    if state in ("queued", "running"):
        done = (max(step - 1, 0) + _fraction(step_status)) / total if total else 0.0
        st.progress(min(done, 1.0), text=f"ratio {step} / {total or '?'}: {eta_text(step_status or status)}")
    if step_dir is not None and step_dir.is_dir():
        st.markdown(f"**Current run** (`{current}`)")
        _charts(step_dir, key=key)


def _ensemble_progress(run_dir: Path, status: dict) -> None:
    """The whole ensemble's progress, labelled ``member k of N: epoch e / E`` (the member in training)."""
    folder = member_folder(run_dir, int(status.get("member") or 0))
    member_status = RunDirectory(folder).checked_status() if folder.is_dir() else None
    text = ensemble_headline(status) + (f": {eta_text(member_status)}" if member_status else "")
    st.progress(ensemble_fraction(status, member_status), text=text)


def _fraction(status: dict) -> float:
    total = status.get("max_epochs") or 0
    return min((status.get("epoch") or 0) / total, 1.0) if total else 0.0


def _resume_button(run_dir: Path, *, key: str) -> None:
    """A cancelled or stopped run goes on from its last saved epoch in its own folder (a new process)."""
    help_text = "Continue from the last saved epoch, with the run's own settings, in the same run folder."
    if st.button("Resume run", key=f"{key}_resume", icon=":material/play_arrow:", help=help_text):
        try:
            resume(run_dir)
        except (OSError, ValueError) as error:
            st.error(f"Cannot resume: {error}")
            return
        st.toast(f"Resuming {run_dir.name}", icon=":material/play_arrow:")
        st.rerun()  # a full rerun: the monitor ticks again


def render_run(run_dir: Path, *, key: str, allow_cancel: bool = True) -> str:
    """Status, progress, ETA, growing loss and metric curves, and (``allow_cancel``) a cancel button while it runs
    or a resume button once it was cancelled or stopped with its training state saved; returns the state.

    A rehearsal (``kind: rehearsal`` in status.json) shows its steps and the current step's curves."""
    info = run_info(run_dir)
    status = info.status
    rehearsal, scaling = status.get("kind") == "rehearsal", status.get("kind") == "scaling"
    st.markdown(f"**{STATE_ICONS.get(info.state, '')} {info.name}: {info.state}**: {status.get('message', '')}")
    ensemble = not rehearsal and ensemble_members(status) > 1
    if info.state in ("queued", "running"):
        if ensemble:
            _ensemble_progress(run_dir, status)
        elif not rehearsal and not scaling:
            st.progress(_fraction(status), text=eta_text(status))
        label = "Cancel rehearsal" if rehearsal else "Cancel scaling study" if scaling else "Cancel run"
        if allow_cancel and st.button(label, key=f"{key}_cancel", type="secondary") and cancel(run_dir):
            st.toast("Cancelling: the run saves its state and stops.")
    elif info.state == "failed" and status.get("stopped_unexpectedly"):
        st.warning(f"The run {status.get('message')}")  # "stopped unexpectedly (...); resume with: ..."
    elif info.state == "failed":
        st.error(f"The run failed: {status.get('message') or 'see train.log in its folder'}")
    if allow_cancel and resumable(info):
        _resume_button(info.path, key=key)
    if rehearsal:
        _rehearsal(run_dir, status, info.state, key=key)
    elif scaling:
        _scaling(run_dir, status, info.state, key=key)
    elif ensemble:
        if info.state not in ("queued", "running"):
            st.caption(f"Ensemble of {ensemble_headline(status)}; the curves are the last trained member's.")
        _schedule(run_dir)
        _charts(member_folder(run_dir, int(status.get("member") or 0)), key=key)
    else:
        _schedule(run_dir)
        _charts(run_dir, key=key)
    return info.state


def live_run(run_dir: Path, *, key: str, allow_cancel: bool = True) -> None:
    """Render a run and refresh it every second while it is queued or running (stops once final)."""
    state = run_info(run_dir).state
    interval = None if state in FINAL_STATES else 1.0

    @st.fragment(run_every=interval)
    def _view() -> None:
        new_state = render_run(run_dir, key=key, allow_cancel=allow_cancel)
        if new_state in FINAL_STATES and state not in FINAL_STATES:
            st.rerun()  # full rerun: stop the ticks, refresh the checkpoint picker

    _view()
