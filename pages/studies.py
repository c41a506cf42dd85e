"""Rehearsal & scaling: results of continual-rehearsal runs (forgetting) and of data-scaling studies."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from fm_engine.plots import forgetting_figure, scaling_figure
from fm_engine.workspace import runs_dir
from workbench import state
from workbench.components.studies import (
    Study,
    find_studies,
    forgetting_display,
    metrics_display,
    read_rehearsal,
    read_scaling,
    replay_text,
    resolve_folder,
    scaling_display,
    steps_display,
    task_order,
)
from workbench.live import STATE_ICONS
from workbench.paths import page

PICK_KEY = "studies_pick"
PATH_KEY = "studies_path"
NUMBER = st.column_config.NumberColumn(format="%.4g")


def _numbers(frame, skip: int = 1) -> dict:
    """4 significant digits for every value column (the first ``skip`` columns are labels)."""
    return {column: NUMBER for column in list(frame.columns)[skip:]}


def _download(path: Path, label: str, key: str, help_text: str) -> None:
    if path.is_file():
        st.download_button(label, data=path.read_bytes(), file_name=path.name, mime="text/csv", key=key,
                           on_click="ignore", icon=":material/download:", help=help_text)  # fmt: skip


def _show_rehearsal(study: Study) -> None:
    data = read_rehearsal(study.path)
    config, status = data["config"], data["status"]
    order = task_order(config)
    st.subheader(f"Continual rehearsal: {config.get('name') or study.name}")
    st.markdown(
        f"Tasks learned in this order: **{' -> '.join(order) or '?'}**. At each later step the model also "
        f"replays {replay_text(config)}; each step trains for at most "
        f"{(config.get('trainer') or {}).get('max_epochs', '?')} epochs."
    )
    forgetting, metrics = data["forgetting"], data["metrics"]
    icon = STATE_ICONS.get(study.state, "")
    if study.state in ("queued", "running"):
        st.info(f"{icon} This rehearsal is still running ({status.get('message', '')}). The plot and tables show "
                "the steps finished so far (they appear when the first step ends).",
                icon=":material/hourglass_empty:")  # fmt: skip
        if st.button("Watch it live on the Train page", icon=":material/monitoring:", key="studies_watch"):
            state.put(state.WATCHED_RUN, str(study.path))
            st.switch_page(page("train.py"))
    if forgetting is None or metrics is None:
        if study.state not in ("queued", "running"):
            st.warning(f"{icon} This rehearsal ended without results ({study.state}: {status.get('message', '')}). "
                       f"Continue it with `fm rehearsal --out {study.path} --resume`.",
                       icon=":material/warning:")  # fmt: skip
        steps = steps_display(status)
        if not steps.empty:
            st.dataframe(steps, hide_index=True, width="stretch")
        return

    st.plotly_chart(forgetting_figure(forgetting), key="studies_forgetting")
    st.caption(
        "Each panel is one task's error on its test compositions (never trained on at any step) after every "
        "step, in the task's physical unit; the first point is the step that added the task. A rising line "
        "means the task is being forgotten while later tasks are learned; more replay usually flattens it."
    )
    st.markdown("**Forgetting table** (test split; lower is better; each column is in the unit of its header)")
    table = forgetting_display(forgetting, order)
    st.dataframe(table, hide_index=True, width="stretch", key="studies_forgetting_table",
                 column_config=_numbers(table))  # fmt: skip
    st.caption("forgetting = final error - error right after the task was learned: positive means it got worse. "
               "An empty cell (None): the task was not learned yet after that step.")  # fmt: skip

    st.markdown("**Metrics after every step** (every learned task, physical units)")
    split = st.segmented_control(
        "Split", ["test", "val"], default="test", key="studies_split", required=True,
        format_func=lambda s: {"test": "test compositions", "val": "validation compositions"}[s],
        help="Test compositions are never trained on; validation compositions pick each step's best epoch.",
    )  # fmt: skip
    wide = metrics_display(metrics, split or "test")
    st.dataframe(wide, hide_index=True, width="stretch", key="studies_metrics_table", column_config=_numbers(wide))

    steps = steps_display(status)
    if not steps.empty:
        with st.expander("Steps (training rows, epochs, run folders)"):
            st.dataframe(steps, hide_index=True, width="stretch", key="studies_steps_table")
            st.caption(f"Each step is a run folder inside `{study.path}` with its own checkpoint and predictions "
                       "(`predictions/<task>.parquet`).")  # fmt: skip
    if data["summary"]:
        with st.expander("SUMMARY.md"):
            st.markdown(data["summary"])
    cols = st.columns(3)
    with cols[0]:
        _download(
            study.path / "forgetting.csv",
            "forgetting.csv",
            "studies_dl_forgetting",
            "One row per task: test error after every step, best, final, forgetting (units in column unit).",
        )
    with cols[1]:
        _download(study.path / "metrics.csv", "metrics.csv", "studies_dl_metrics",
                  "Long table: step, task added, task, split, metric, value, unit.")  # fmt: skip
    if (study.path / "checkpoint" / "config.json").exists():
        st.caption(f"The final model (all tasks) is the checkpoint **{study.name}** in the sidebar's picker: "
                   "predict or design with it like any trained model.")  # fmt: skip
    if (study.path / "design").is_dir():
        st.caption(f"An inverse design on the final model is in `{study.path / 'design'}`.")


def _show_scaling(study: Study) -> None:
    about, table = read_scaling(study.path)
    task = str(about.get("task") or "")
    st.subheader(f"Scaling study: {about.get('name') or study.name}")
    if table is None or table.empty or not task:
        st.warning("This scaling study has no readable `scaling.csv` yet.", icon=":material/warning:")
        return
    ratios = ", ".join(f"{float(r):g}" for r in about.get("ratios") or sorted(table["ratio"].unique(), reverse=True))
    st.markdown(
        f"One model per kept fraction of **{task}**'s training compositions ({ratios}); every other task keeps "
        "all its data. Errors are in physical units (classification: error rate = 1 - accuracy)."
    )
    st.plotly_chart(scaling_figure(table, task=task), key="studies_scaling")
    st.caption(
        "Log-log axes: a straight line means the error falls as a power of the amount of data; its slope "
        "(annotated) says how much more data would help. A flat line: more data of this kind helps little."
    )
    wide = scaling_display(table, task)
    st.dataframe(wide, hide_index=True, width="stretch", key="studies_scaling_table", column_config=_numbers(wide, 0))
    _download(study.path / "scaling.csv", "scaling.csv", "studies_dl_scaling",
              "Long table: ratio, task, unit, metric, training compositions, validation and test error.")  # fmt: skip
    st.caption(f"Each ratio's model is a run folder `ratio_<r>/` inside `{study.path}`.")


def _empty_state() -> None:
    st.info(
        "No rehearsal or scaling results in this workspace yet.\n\n"
        "- **Continual rehearsal** (learn tasks one after another with a replay of earlier ones): start one on "
        "the Train page (tab *Continual rehearsal*), or run `fm rehearsal --config REHEARSAL.yaml --out FOLDER` "
        f"with `FOLDER` under `{runs_dir()}`.\n"
        "- **Scaling with data** (error vs amount of training data for one task): run `fm scaling --config "
        "CONFIG.yaml --task bulk_modulus --ratios 1,0.5,0.2 --out FOLDER`.\n\n"
        "Results written elsewhere can be opened by typing their folder below.",
        icon=":material/info:",
    )
    st.page_link(page("train.py"), label="Train page", icon=":material/model_training:")


# ---------------------------------------------------------------------------------------------------- page
st.title("Rehearsal & scaling")
st.caption(
    "How a model forgets earlier tasks when it learns new ones (continual rehearsal), and how its error falls "
    "with more training data (scaling)."
)

studies = find_studies(runs_dir())
by_name = {study.name: study for study in studies}
typed = st.text_input(
    "Open a folder (optional)", key=PATH_KEY, placeholder="/path/to/the/--out/folder",
    help="The output folder of `fm rehearsal` (it holds rehearsal.json) or of `fm scaling` (scaling.json), "
    "anywhere on this machine. Leave empty to pick one of the workspace's studies below.",
)  # fmt: skip
chosen: Study | None = None
if typed.strip():
    chosen, problem = resolve_folder(typed)
    if problem:
        st.error(problem, icon=":material/folder_off:")
elif studies:
    pick = st.selectbox(
        "Study", list(by_name), key=PICK_KEY, format_func=lambda n: by_name[n].label,
        help=f"Rehearsal and scaling output folders in `{runs_dir()}`, newest first.",
    )  # fmt: skip
    chosen = by_name.get(pick)
else:
    _empty_state()

if chosen is not None:
    if chosen.kind == "rehearsal":
        _show_rehearsal(chosen)
    else:
        _show_scaling(chosen)
