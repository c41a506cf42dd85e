"""Checkpoints: the workspace's trained models and the installed foundation with their model cards; compare two;
delete one of the workspace's (the foundation is read-only)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from fm_engine.workspace import runs_dir
from workbench import state
from workbench.components.cards import (
    HOW_TO_READ,
    calibration_plot,
    calibration_table,
    calibration_text,
    compare_cards,
    compare_summary,
    compare_verdict,
    metrics_table,
    overview_table,
    read_card,
    read_card_md,
    sources_table,
    tasks_table,
    training_table,
    versions_table,
)
from workbench.paths import page
from workbench.resources import (
    CheckpointError,
    available_checkpoints,
    get_checkpoint,
    is_foundation,
    workspace_checkpoints,
)
from workbench.runs import delete_run

PENDING_DELETE = "fm_checkpoints_pending_delete"  # str path of the run awaiting confirmation
DELETED_MESSAGE = "fm_checkpoints_deleted"  # message shown after the rerun that follows a deletion


def _card_view(name: str, path: Path) -> None:
    try:
        checkpoint = get_checkpoint(path)
    except CheckpointError as error:
        st.error(f"Checkpoint '{name}' cannot be loaded: {error}")
        st.caption("Delete it below, or train it again on the Train page.")
        return
    card = checkpoint.card
    if card is None:
        st.warning("This checkpoint loads, but it has no model card.")
        return
    st.markdown(f"#### Model card: {card.name or name}")
    if is_foundation(path):
        st.caption(f"{name}: the pretrained model shipped with fm_engine (`{path}`), read-only. Predict and Inverse "
                   "design use it directly; Train fine-tunes from it (Start from: foundation).")  # fmt: skip
    cols = st.columns(4)
    cols[0].metric("Tasks", len(card.tasks))
    cols[1].metric("Compositions", f"{sum(int(v) for v in card.split.values()):,}" if card.split else "-")
    cols[2].metric("Training time", f"{card.training.wall_time_s or 0:.1f} s")
    cols[3].metric("Parameters", f"{card.n_parameters or 0:,}")
    seed = card.training_seed if card.training_seed is not None else "?"
    st.caption(
        f"Created {card.created or '?'}; split seed {card.split_seed if card.split_seed is not None else '?'}; "
        f"training seed {seed}; checkpoint id `{checkpoint.checkpoint_id}`; weights SHA-256 "
        f"`{checkpoint.weights_sha256[:16]}...`"
    )
    st.markdown(
        "**Test metrics** (MAE / RMSE in the task's unit; sequence tasks pool curve points; "
        "[low, high]: 95 % bootstrap interval over the test compositions)"
    )
    st.dataframe(metrics_table(card), hide_index=True, key=f"card_metrics_{name}")
    st.caption(HOW_TO_READ["metrics"])
    st.markdown("**Tasks, units and data**")
    st.dataframe(tasks_table(card), hide_index=True, key=f"card_tasks_{name}")
    st.caption(HOW_TO_READ["tasks"])
    sources = sources_table(card)
    if len(sources):
        st.markdown("**Data sources**")
        st.dataframe(sources, hide_index=True, key=f"card_sources_{name}")
    left, right = st.columns(2)
    with left:
        st.markdown("**Training**")
        st.dataframe(training_table(card), hide_index=True, key=f"card_training_{name}")
    with right:
        st.markdown("**Versions**")
        st.dataframe(versions_table(card), hide_index=True, key=f"card_versions_{name}")
    if text := calibration_text(card):
        st.markdown(text)
        if card.ensemble is not None and card.ensemble.calibration:
            st.dataframe(calibration_table(card), hide_index=True, key=f"card_calibration_{name}")
            st.caption(HOW_TO_READ["calibration_table"])
        if (figure := calibration_plot(card)) is not None:
            st.plotly_chart(figure, width="stretch", key=f"card_calibration_plot_{name}")
            st.caption(HOW_TO_READ["calibration_plot"])
    markdown = read_card_md(path)
    if markdown:
        with st.expander("card.md (as written next to the weights)"):
            st.markdown(markdown)
        st.download_button(
            "Download card.md",
            data=markdown.encode("utf-8"),
            file_name=f"{name}_card.md",
            mime="text/markdown",
            key=f"download_card_{name}",
            on_click="ignore",
        )


def _compare(checkpoints: dict[str, Path]) -> None:
    st.subheader("Compare two checkpoints")
    names = list(checkpoints)
    if len(names) < 2:
        st.caption("Train a second model to compare checkpoints side by side.")
        return
    left, right = st.columns(2)
    name_a = left.selectbox("Checkpoint A", names, index=0, key="compare_a")
    name_b = right.selectbox("Checkpoint B", names, index=1, key="compare_b")
    card_a, problem_a = read_card(checkpoints[name_a])
    card_b, problem_b = read_card(checkpoints[name_b])
    for name, problem in ((name_a, problem_a), (name_b, problem_b)):
        if problem:
            st.error(f"{name}: {problem}")
    if card_a is None or card_b is None:
        return
    compared = compare_cards(card_a, card_b, name_a, name_b)
    st.markdown(compare_verdict(compared, name_a, name_b))
    st.markdown(
        "**Test metrics per task** (better: lower MAE / RMSE, higher R2, accuracy, macro-F1, ROC-AUC; "
        "similar: each value lies inside the other's 95 % interval)"
    )
    st.dataframe(compared, hide_index=True, key="compare_metrics")
    st.caption(HOW_TO_READ["compare"])
    st.markdown("**Set-up**")
    st.dataframe(compare_summary(card_a, card_b, name_a, name_b), hide_index=True, key="compare_setup")


def _delete(checkpoints: dict[str, Path]) -> None:
    st.subheader("Delete a checkpoint")
    if not checkpoints:
        st.caption("No run of this workspace to delete (the shipped foundation is read-only).")
        return
    name = st.selectbox("Run to delete", list(checkpoints), key="delete_choice")
    path = checkpoints[name]
    if state.get(PENDING_DELETE) != str(path):
        if st.button(f"Delete '{name}' ...", key="delete_start"):
            state.put(PENDING_DELETE, str(path))
            st.rerun()
        return
    st.warning(f"Delete the run folder `{path}` (weights, model card, metrics, logs)? This cannot be undone.")
    yes, no, _ = st.columns([1, 1, 3])
    if yes.button(f"Yes, delete '{name}'", type="primary", key="delete_confirm"):
        state.put(PENDING_DELETE, None)
        try:
            delete_run(path)
        except (ValueError, OSError) as error:
            st.error(f"Cannot delete '{name}': {error}")
            return
        if state.active_checkpoint() == path:
            state.put(state.ACTIVE_CHECKPOINT, None)
        state.put(DELETED_MESSAGE, f"Deleted '{name}'.")
        st.rerun()
    if no.button("Cancel", key="delete_cancel"):
        state.put(PENDING_DELETE, None)
        st.rerun()


st.title("Checkpoints")
if message := state.get(DELETED_MESSAGE):
    st.success(message)
    state.put(DELETED_MESSAGE, None)
checkpoints = available_checkpoints()
if not checkpoints:
    st.info("No checkpoint in this workspace yet. Train the demo model on the Overview page, or your own on Train.")
    st.page_link(page("overview.py"), label="Overview: train the demo model", icon=":material/home:")
else:
    own = workspace_checkpoints()
    shipped = "; then the shipped foundation (read-only, not in the workspace)" if len(own) < len(checkpoints) else ""
    st.caption(f"{len(own)} checkpoint(s) in `{runs_dir()}`, newest first{shipped}.")
    st.dataframe(overview_table(checkpoints), hide_index=True, key="checkpoint_overview")
    names = list(checkpoints)
    active = next((i for i, n in enumerate(names) if checkpoints[n] == state.active_checkpoint()), 0)
    shown = st.selectbox("Model card of", names, index=active, key="card_choice")
    _card_view(shown, checkpoints[shown])
    st.divider()
    _compare(checkpoints)
    st.divider()
    _delete(own)
