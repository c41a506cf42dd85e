"""The live view of a training run, shared by the Overview (demo) and Train pages."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from fm_engine.training.run_files import FINAL_STATES, RunDirectory
from workbench.components.monitor import eta_text, loss_figure, metric_figure, task_metrics
from workbench.runs import cancel, run_info

STATE_ICONS = {
    "queued": ":material/hourglass_empty:",
    "running": ":material/directions_run:",
    "done": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/stop_circle:",
}


def render_run(run_dir: Path, *, key: str, allow_cancel: bool = True) -> str:
    """Status, progress, ETA, growing loss and metric curves, and a cancel button; returns the state."""
    info = run_info(run_dir)
    status = info.status
    st.markdown(f"**{STATE_ICONS.get(info.state, '')} {info.name}: {info.state}**: {status.get('message', '')}")
    total = status.get("max_epochs") or 0
    epoch = status.get("epoch", 0)
    if info.state in ("queued", "running"):
        st.progress(min(epoch / total, 1.0) if total else 0.0, text=eta_text(status))
        if allow_cancel and st.button("Cancel run", key=f"{key}_cancel", type="secondary") and cancel(run_dir):
            st.toast("Cancelling: the run saves its state and stops.")
    elif info.state == "failed":
        st.error(f"The run failed: {status.get('message', 'see train.log')}")
    run = RunDirectory(run_dir)
    records = run.read_metrics()
    if run.model_config_path.exists() and records:
        model_config = json.loads(run.model_config_path.read_text(encoding="utf-8"))
        tasks = task_metrics(model_config)
        loss_tasks = list(tasks) + (["autoencoder"] if model_config["autoencoder"]["enabled"] else [])
        st.plotly_chart(loss_figure(records, loss_tasks), key=f"{key}_loss")
        st.plotly_chart(metric_figure(records, tasks), key=f"{key}_metrics")
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
