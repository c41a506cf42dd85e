"""The Train page's second and third tabs (head-only fine-tune, continual rehearsal) and the notes below the
live monitor. The forms start from :data:`workbench.train.REHEARSAL` and the fine-tune choices of
:mod:`workbench.components.train_form`."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from fm_engine.training.run_files import RunDirectory
from workbench import state
from workbench.components.cards import read_card
from workbench.components.monitor import finetune_comparison
from workbench.components.train_form import (
    BATCH_SIZES,
    FINETUNE_EPOCHS,
    LEARNING_RATES,
    MLP_PRESETS,
    RehearsalValues,
    ScalingValues,
    card_learning_rate,
    card_task_choices,
    runs_table,
    validate_finetune,
)
from workbench.paths import page
from workbench.runs import list_runs, run_info, start_finetune
from workbench.train import (
    ENCODERS,
    REHEARSAL,
    SCALING,
    TaskOptions,
    encoder_label,
    launch,
    show_problems,
    submit_rehearsal,
    submit_scaling,
)


def finetune_tab() -> None:
    st.markdown(
        "Retrain only the **output heads** of chosen tasks on top of a finished model: the shared encoder, the "
        "autoencoder and every other head stay frozen (bit-identical), on the original run's data and split. "
        "Quick, and it cannot make the other tasks worse."
    )
    sources = {run.name: run for run in list_runs() if run.state == "done" and run.has_checkpoint}
    if not sources:
        st.info("No finished model in this workspace yet: train one first (tab *New training run*).",
                icon=":material/info:")  # fmt: skip
        return
    source_name = st.selectbox(
        "Start from (a finished run)", list(sources), key="finetune_source",
        help="A finished run with a checkpoint. The fine-tuned model becomes a new run; the original is not changed.",
    )  # fmt: skip
    source = sources[source_name]
    card, _ = read_card(source.path)
    choices = card_task_choices(card)
    original_lr = card_learning_rate(card)
    if not choices:
        st.warning("This model card lists no tasks, so the model cannot be fine-tuned.", icon=":material/warning:")
        return
    with st.form("finetune_form", border=False, enter_to_submit=False):
        cols = st.columns([2, 1, 1])
        name = cols[0].text_input(
            "Name of the fine-tuned run", value=f"{source_name}-finetune"[:60], max_chars=60,
            key=f"finetune_name_{source_name}",
            help="A short label; the run folder is <name>-<date>-<time> in the workspace.",
        )  # fmt: skip
        max_epochs = cols[1].number_input(
            "Fine-tuning epochs (at most)", min_value=1, max_value=2000, value=FINETUNE_EPOCHS, step=5,
            key="finetune_epochs",
            help="Upper limit; early stopping (with the original run's patience) may end it sooner.",
        )  # fmt: skip
        lr = cols[2].selectbox(
            "Learning rate of the retrained heads", [None, *LEARNING_RATES], key="finetune_lr",
            format_func=lambda v: (f"as the original run ({original_lr:g})" if original_lr else "as the original run")
            if v is None else f"{v:g}",
            help="Step size of the optimiser for the retrained heads.",
        )  # fmt: skip
        tasks = st.multiselect(
            "Tasks whose heads are retrained", list(choices), format_func=lambda t: choices.get(t, t),
            key=f"finetune_tasks_{source_name}", placeholder="Choose one or more tasks",
            help="Only these tasks' output heads learn; all other weights stay frozen. The new model card lists "
            "every task's test metrics before and after.",
        )  # fmt: skip
        submitted = st.form_submit_button("Start fine-tuning", type="primary", icon=":material/play_arrow:")
    if submitted:
        problems = validate_finetune(name, source, tasks, int(max_epochs))
        if not problems:
            problems = launch(
                lambda: start_finetune(source.path, list(tasks), name.strip(), max_epochs=int(max_epochs), lr=lr),
                "fine-tuning",
            )
        show_problems("fine-tuning", problems)


def rehearsal_tab(options: TaskOptions) -> None:
    st.markdown(
        "**Continual learning with rehearsal**: the model learns tasks one after another, as when new "
        "measurements arrive over time. Step 1 trains on the first task; every later step adds the next task and "
        "replays a fraction of the earlier tasks' training compositions. After each step every learned task is "
        "tested, so you see how much it is *forgotten* (its test error grows). Results: page "
        "*Rehearsal & scaling*."
    )
    labels = options.labels
    with st.form("rehearsal_form", border=False, enter_to_submit=False):
        head = st.columns([2, 1])
        name = head[0].text_input(
            "Rehearsal name", value=REHEARSAL.name, max_chars=60, key="rehearsal_name",
            help="A short label; the folder is <name>-<date>-<time> in the workspace.",
        )  # fmt: skip
        seed = head[1].number_input(
            "Random seed (splits, replay, weights)", min_value=0, max_value=2**31 - 1, value=REHEARSAL.seed, step=1,
            key="rehearsal_seed",
            help="Fixes the splits, the replayed subsets and the initial weights, so the study can be repeated.",
        )  # fmt: skip
        tasks = st.multiselect(
            "Tasks, in learning order", list(labels), format_func=lambda t: labels.get(t, t), key="rehearsal_tasks",
            placeholder="Pick the first task, then the next ...",
            help="The order you pick the tasks in is the order they are learned: the first pick is step 1. "
            "To change the order, remove tasks (x) and pick them again. At least two tasks.",
        )  # fmt: skip
        replay = st.slider(
            "Replay ratio (fraction of each earlier task's training compositions)", 0.0, 1.0, REHEARSAL.replay_ratio,
            0.05, key="rehearsal_replay",
            help="At each later step, this fraction of every earlier task's training compositions is trained on "
            "again beside the new task. 0: no replay (plain sequential training, the most forgetting); 1: all "
            "earlier data (joint training).",
        )  # fmt: skip
        model_col, train_col = st.columns(2)
        with model_col:
            encoder = st.radio(
                "Encoder type", list(ENCODERS), horizontal=True, key="rehearsal_encoder",
                index=list(ENCODERS).index(encoder_label(REHEARSAL.encoder)),
                help="The shared network, as in a new training run. MLP: fast, a strong default.",
            )  # fmt: skip
            preset = st.selectbox(
                "Encoder size", list(MLP_PRESETS), index=list(MLP_PRESETS).index(REHEARSAL.preset),
                key="rehearsal_preset",
                help="Small trains in seconds per step on a laptop CPU. MLP widths: small 128, 64 / medium 256, 128 "
                "/ large 512, 256.",
            )  # fmt: skip
            autoencoder = st.toggle(
                "Autoencoder (reconstructs the descriptor)", value=REHEARSAL.autoencoder, key="rehearsal_autoencoder",
                help="Also learns to reconstruct the descriptor (needed for latent-space inverse design).",
            )  # fmt: skip
            balanced = st.toggle(
                "Balance classes (classification tasks)", value=REHEARSAL.balanced_classes, key="rehearsal_balanced",
                help="For classification tasks: weight rare classes up.",
            )  # fmt: skip
        with train_col:
            cols = st.columns(2)
            max_epochs = cols[0].number_input(
                "Epochs per step", min_value=1, max_value=2000, value=REHEARSAL.max_epochs, step=5,
                key="rehearsal_epochs",
                help="Upper limit of each step's training; early stopping usually ends a step sooner.",
            )  # fmt: skip
            patience = cols[1].number_input(
                "Patience per step (epochs)", min_value=1, max_value=500, value=REHEARSAL.patience, step=1,
                key="rehearsal_patience",
                help="Stop a step early when its validation loss has not improved for this many epochs.",
            )  # fmt: skip
            batch_size = st.select_slider(
                "Batch size (compositions per update)", BATCH_SIZES, value=REHEARSAL.batch_size, key="rehearsal_batch",
                help="Smaller batches: more, noisier updates per epoch; larger: faster epochs.",
            )  # fmt: skip
            lr = st.select_slider(
                "Learning rate (AdamW, every step)", LEARNING_RATES, value=REHEARSAL.lr, key="rehearsal_lr",
                format_func=lambda v: f"{v:g}", help="Step size of the optimiser at every step.",
            )  # fmt: skip
        submitted = st.form_submit_button("Start rehearsal", type="primary", icon=":material/play_arrow:")
    if submitted:
        values = RehearsalValues(
            name=name, tasks=list(tasks), replay_ratio=float(replay), encoder=ENCODERS[encoder], preset=preset,
            max_epochs=int(max_epochs), patience=int(patience), batch_size=int(batch_size), lr=float(lr),
            autoencoder=autoencoder, balanced_classes=balanced, seed=int(seed),
        )  # fmt: skip
        show_problems("this rehearsal", submit_rehearsal(values, options))


def scaling_tab(options: TaskOptions) -> None:
    st.markdown(
        "**Scaling with data**: the same model is trained several times, each time on a fraction (the *keep-ratio*) "
        "of one task's training compositions, so you see how its error falls with more data and whether measuring "
        "more is worth it. Other tasks you add keep all their data. Validation and test compositions never change. "
        "Results: page *Rehearsal & scaling*."
    )
    labels = options.labels
    with st.form("scaling_form", border=False, enter_to_submit=False):
        head = st.columns([2, 1])
        name = head[0].text_input("Study name", value=SCALING.name, max_chars=60, key="scaling_name",
                                  help="A short label; the folder is <name>-<date>-<time>.")  # fmt: skip
        seed = head[1].number_input("Random seed (split, weights)", min_value=0, max_value=2**31 - 1,
                                    value=SCALING.seed, step=1, key="scaling_seed")  # fmt: skip
        cols = st.columns([1, 1, 2])
        task = cols[0].selectbox(
            "Task whose data is thinned", list(labels), index=None, format_func=lambda t: labels.get(t, t),
            key="scaling_task", placeholder="Choose a task",
        )  # fmt: skip
        ratios = cols[1].text_input(
            "Keep-ratios (fractions of its training data)", value=SCALING.ratios, key="scaling_ratios",
            help="One run per ratio, e.g. 1, 0.5, 0.25: all, half and a quarter of the task's training compositions.",
        )  # fmt: skip
        others = cols[2].multiselect(
            "Other tasks, trained alongside with all their data (optional)", list(labels),
            format_func=lambda t: labels.get(t, t), key="scaling_others",
        )  # fmt: skip
        cols = st.columns(5)
        preset = cols[0].selectbox("Encoder size (MLP)", list(MLP_PRESETS), key="scaling_preset",
                                   index=list(MLP_PRESETS).index(SCALING.preset))  # fmt: skip
        max_epochs = cols[1].number_input("Epochs per run", min_value=1, max_value=2000, value=SCALING.max_epochs,
                                          step=5, key="scaling_epochs")  # fmt: skip
        patience = cols[2].number_input("Patience (epochs)", min_value=1, max_value=500, value=SCALING.patience,
                                        step=1, key="scaling_patience")  # fmt: skip
        batch_size = cols[3].select_slider("Batch size", BATCH_SIZES, value=SCALING.batch_size, key="scaling_batch")
        lr = cols[4].select_slider("Learning rate", LEARNING_RATES, value=SCALING.lr, key="scaling_lr",
                                   format_func=lambda v: f"{v:g}")  # fmt: skip
        submitted = st.form_submit_button("Start scaling study", type="primary", icon=":material/play_arrow:")
    if submitted:
        values = ScalingValues(
            name=name, task=task, others=list(others), ratios=ratios, preset=preset, max_epochs=int(max_epochs),
            patience=int(patience), batch_size=int(batch_size), lr=float(lr), seed=int(seed),
        )  # fmt: skip
        show_problems("this scaling study", submit_scaling(values, options))


def finished_notes(current: Path) -> None:
    """Below the monitor: what a finished run is good for, its before/after metrics, its configuration."""
    info = run_info(current)
    kind = info.status.get("kind")
    if info.state == "done" and info.has_checkpoint:
        what = "The final model of this rehearsal" if kind == "rehearsal" else f"**{info.name}**"
        how = f"pick **{info.name}** as the active checkpoint in the sidebar to predict or design with it"
        if state.active_checkpoint() == current:
            how = "it is now the active model (sidebar): Predict and Inverse design use it"
        st.success(f"{what} is ready: {how}.", icon=":material/check_circle:")
        links = st.columns([1, 1, 1, 1, 2])
        links[0].page_link(page("predict.py"), label="Predict", icon=":material/query_stats:")
        links[1].page_link(page("design.py"), label="Inverse design", icon=":material/tune:")
        links[2].page_link(page("checkpoints.py"), label="Model card", icon=":material/inventory_2:")
        if kind == "rehearsal":
            links[3].page_link(page("studies.py"), label="Forgetting plot", icon=":material/timeline:")
    if info.state == "done" and kind == "scaling":
        st.success(f"The scaling study **{info.name}** is done.", icon=":material/check_circle:")
        st.page_link(page("studies.py"), label="Its error-vs-data plot", icon=":material/timeline:")
    if info.state == "done":
        rows = finetune_comparison(read_card(current)[0])
        if rows:
            st.markdown("**Test metrics before and after fine-tuning** (physical units; the other heads are frozen)")
            st.dataframe(rows, hide_index=True, key="train_finetune_comparison",
                         column_config={"before": st.column_config.NumberColumn(format="%.4g"),
                                        "after": st.column_config.NumberColumn(format="%.4g")})  # fmt: skip
    config_file = RunDirectory(current).config_path
    rehearsal_file = current / "rehearsal.json"
    if kind == "rehearsal" and rehearsal_file.exists():
        with st.expander("Configuration of this rehearsal (rehearsal.json)"):
            st.code(rehearsal_file.read_text(encoding="utf-8"), language="json")
            st.caption(f"Folder: `{current}`. Each step is a run folder inside it (`step_<k>_<task>`).")
    elif config_file.exists():
        with st.expander("Configuration of this run (config.yaml)"):
            st.code(config_file.read_text(encoding="utf-8"), language="yaml")
            st.caption(f"Run folder: `{current}`. Repeat it with `fm train --config config.yaml --out NEW_FOLDER`.")


def past_runs_table(*, live: bool) -> None:
    """The table of the workspace's runs (state, epochs, best loss), read again every 2 s while ``live`` (a run is
    queued or running), so it agrees with the live monitor."""

    @st.fragment(run_every=2.0 if live else None)
    def _table() -> None:
        st.dataframe(
            runs_table(list_runs()),
            hide_index=True,
            width="stretch",
            key="train_past_runs",
            column_config={
                "best val loss (normalised)": st.column_config.NumberColumn(
                    format="%.4f", help="Lowest validation loss (sum over tasks, in normalised units; lower is better)."
                ),
                "started": st.column_config.TextColumn(help="Local time of this server."),
                "epochs": st.column_config.TextColumn(help="Epochs done / the run's upper limit."),
            },
        )

    _table()
