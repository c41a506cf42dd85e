"""Train: pick tasks and an architecture, launch a run (a separate process), watch it live, browse past runs.

Besides a new training run, the page starts a head-only fine-tune of a finished model (``fm finetune``) and a
continual-learning rehearsal (``fm rehearsal``: tasks learned one after another with replay); both are
watched in the same live monitor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from fm_engine.datasets import bundled_datasets
from fm_engine.training import TrainConfig
from fm_engine.training.config import DEFAULT_EMA_DECAY
from fm_engine.training.rehearsal import RehearsalConfig
from fm_engine.training.run_files import RunDirectory
from fm_engine.workspace import workspace_dir
from workbench import state
from workbench.components.cards import read_card
from workbench.components.monitor import finetune_comparison
from workbench.components.train_form import (
    MLP_PRESETS,
    TRANSFORMER_PRESETS,
    FormValues,
    RehearsalValues,
    TaskChoice,
    build_config,
    build_rehearsal_config,
    bundled_choices,
    card_learning_rate,
    card_task_choices,
    runs_table,
    uploaded_choices,
    validate,
    validate_finetune,
    validate_rehearsal,
)
from workbench.components.uploads import write_uploaded_tasks
from workbench.live import live_run
from workbench.paths import page
from workbench.runs import list_runs, run_info, start_finetune, start_rehearsal, start_training

ENCODER_KEY = "train_encoder"
PRESET_KEY = "train_size_preset"
PICK_KEY = "train_monitor_pick"
DEFAULTS = {
    ENCODER_KEY: "MLP",
    PRESET_KEY: "medium",
    "train_hidden_dims": "256, 128",
    "train_d_model": 64,
    "train_num_layers": 3,
    "train_nhead": 4,
}
LEARNING_RATES = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2]
BATCH_SIZES = [16, 32, 64, 128, 256, 512]

for _key, _value in DEFAULTS.items():
    st.session_state.setdefault(_key, _value)


def _apply_preset() -> None:
    """Fill the size fields from the chosen preset (runs before the widgets are drawn)."""
    preset = st.session_state.get(PRESET_KEY)
    if preset in MLP_PRESETS:
        st.session_state["train_hidden_dims"] = ", ".join(str(d) for d in MLP_PRESETS[preset])
    if preset in TRANSFORMER_PRESETS:
        sizes = TRANSFORMER_PRESETS[preset]
        st.session_state["train_d_model"] = sizes["d_model"]
        st.session_state["train_num_layers"] = sizes["num_layers"]
        st.session_state["train_nhead"] = sizes["nhead"]


def _task_checkbox(choice: TaskChoice, prefix: str) -> bool:
    rows = f", {choice.n_rows:,} rows" if choice.n_rows else ""
    help_text = (choice.description or choice.name) + f"\n\nTarget: {choice.unit_text}{rows}."
    return st.checkbox(choice.label, key=f"{prefix}{choice.name}", help=help_text)


def _submit(values: FormValues, uploaded: dict, classification: list[str]) -> list[str]:
    """Validate, build and check the config, start the run; returns the problems (empty on success)."""
    errors = validate(values)
    if errors:
        return errors
    try:
        files = write_uploaded_tasks(workspace_dir() / "uploads", values.uploaded, uploaded)
        config = build_config(values, files, classification)
        TrainConfig.from_dict(config)
    except (ValueError, TypeError, KeyError, OSError) as error:
        return [f"The configuration is not valid: {error}"]
    return _launch(lambda: start_training(config, values.name.strip()), "training")


def _launch(start: Callable[[], Path], what: str) -> list[str]:
    """Start a run's process and watch it in the live monitor; returns the problems (empty on success)."""
    try:
        run_dir = start()
    except (OSError, ValueError) as error:
        return [f"Could not start the {what} process: {error}"]
    state.put(state.WATCHED_RUN, str(run_dir))
    st.toast(f"{what.capitalize()} started: {run_dir.name}", icon=":material/model_training:")
    return []


def _submit_rehearsal(values: RehearsalValues, classification: list[str]) -> list[str]:
    errors = validate_rehearsal(values)
    if errors:
        return errors
    try:
        config = build_rehearsal_config(values, classification)
        RehearsalConfig.from_dict(config)  # the engine's own validation
    except (ValueError, TypeError, KeyError) as error:
        return [f"The configuration is not valid: {error}"]
    return _launch(lambda: start_rehearsal(config, values.name.strip()), "rehearsal")


def _finetune_tab() -> None:
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
            "Fine-tuning epochs (at most)", min_value=1, max_value=2000, value=20, step=5, key="finetune_epochs",
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
            problems = _launch(
                lambda: start_finetune(source.path, list(tasks), name.strip(), max_epochs=int(max_epochs), lr=lr),
                "fine-tuning",
            )
        if problems:
            st.error("Cannot start fine-tuning:\n\n" + "\n".join(f"- {p}" for p in problems), icon=":material/error:")


def _rehearsal_tab(classification: list[str]) -> None:
    st.markdown(
        "**Continual learning with rehearsal**: the model learns tasks one after another, as when new "
        "measurements arrive over time. Step 1 trains on the first task; every later step adds the next task and "
        "replays a fraction of the earlier tasks' training compositions. After each step every learned task is "
        "tested, so you see how much it is *forgotten* (its test error grows). Results: page "
        "*Rehearsal & scaling*."
    )
    labels = {c.name: c.label for group in groups.values() for c in group}
    with st.form("rehearsal_form", border=False, enter_to_submit=False):
        head = st.columns([2, 1])
        name = head[0].text_input(
            "Rehearsal name", value="rehearsal", max_chars=60, key="rehearsal_name",
            help="A short label; the folder is <name>-<date>-<time> in the workspace.",
        )  # fmt: skip
        seed = head[1].number_input(
            "Random seed (splits, replay, weights)", min_value=0, max_value=2**31 - 1, value=42, step=1,
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
            "Replay ratio (fraction of each earlier task's training compositions)", 0.0, 1.0, 0.1, 0.05,
            key="rehearsal_replay",
            help="At each later step, this fraction of every earlier task's training compositions is trained on "
            "again beside the new task. 0: no replay (plain sequential training, the most forgetting); 1: all "
            "earlier data (joint training).",
        )  # fmt: skip
        model_col, train_col = st.columns(2)
        with model_col:
            encoder = st.radio(
                "Encoder type", ["MLP", "Transformer"], horizontal=True, key="rehearsal_encoder",
                help="The shared network, as in a new training run. MLP: fast, a strong default.",
            )  # fmt: skip
            preset = st.selectbox(
                "Encoder size", list(MLP_PRESETS), key="rehearsal_preset",
                help="Small trains in seconds per step on a laptop CPU. MLP widths: small 128, 64 / medium 256, 128 "
                "/ large 512, 256.",
            )  # fmt: skip
            autoencoder = st.toggle(
                "Autoencoder (reconstructs the descriptor)", value=True, key="rehearsal_autoencoder",
                help="Also learns to reconstruct the descriptor (needed for latent-space inverse design).",
            )  # fmt: skip
            balanced = st.toggle(
                "Balance classes (classification tasks)", value=True, key="rehearsal_balanced",
                help="For classification tasks: weight rare classes up.",
            )  # fmt: skip
        with train_col:
            cols = st.columns(2)
            max_epochs = cols[0].number_input(
                "Epochs per step", min_value=1, max_value=2000, value=30, step=5, key="rehearsal_epochs",
                help="Upper limit of each step's training; early stopping usually ends a step sooner.",
            )  # fmt: skip
            patience = cols[1].number_input(
                "Patience per step (epochs)", min_value=1, max_value=500, value=10, step=1, key="rehearsal_patience",
                help="Stop a step early when its validation loss has not improved for this many epochs.",
            )  # fmt: skip
            batch_size = st.select_slider(
                "Batch size (compositions per update)", BATCH_SIZES, value=128, key="rehearsal_batch",
                help="Smaller batches: more, noisier updates per epoch; larger: faster epochs.",
            )  # fmt: skip
            lr = st.select_slider(
                "Learning rate (AdamW, every step)", LEARNING_RATES, value=2e-3, key="rehearsal_lr",
                format_func=lambda v: f"{v:g}", help="Step size of the optimiser at every step.",
            )  # fmt: skip
        submitted = st.form_submit_button("Start rehearsal", type="primary", icon=":material/play_arrow:")
    if submitted:
        values = RehearsalValues(
            name=name, tasks=list(tasks), replay_ratio=float(replay), encoder=encoder.lower(), preset=preset,
            max_epochs=int(max_epochs), patience=int(patience), batch_size=int(batch_size), lr=float(lr),
            autoencoder=autoencoder, balanced_classes=balanced, seed=int(seed),
        )  # fmt: skip
        problems = _submit_rehearsal(values, classification)
        if problems:
            st.error("Cannot start this rehearsal:\n\n" + "\n".join(f"- {p}" for p in problems),
                     icon=":material/error:")  # fmt: skip


def _finished_notes(current: Path) -> None:
    """Below the monitor: what a finished run is good for, its before/after metrics, its configuration."""
    info = run_info(current)
    kind = info.status.get("kind")
    if info.state == "done" and info.has_checkpoint:
        what = "The final model of this rehearsal" if kind == "rehearsal" else f"**{info.name}**"
        st.success(
            f"{what} is ready: pick **{info.name}** as the active checkpoint in the sidebar to predict or design "
            "with it.",
            icon=":material/check_circle:",
        )
        links = st.columns([1, 1, 1, 1, 2])
        links[0].page_link(page("predict.py"), label="Predict", icon=":material/query_stats:")
        links[1].page_link(page("design.py"), label="Inverse design", icon=":material/tune:")
        links[2].page_link(page("checkpoints.py"), label="Model card", icon=":material/inventory_2:")
        if kind == "rehearsal":
            links[3].page_link(page("studies.py"), label="Forgetting plot", icon=":material/timeline:")
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


def _watched_run() -> Path | None:
    """The run this session watches; otherwise the newest queued or running run of the workspace."""
    watched = state.get(state.WATCHED_RUN)
    if watched and (Path(watched) / "status.json").exists():
        return Path(watched)
    active = [run for run in list_runs() if run.state in ("queued", "running")]
    return active[0].path if active else None


def _pick_run() -> None:
    name = st.session_state.get(PICK_KEY)
    runs = {run.name: run.path for run in list_runs()}
    if name in runs:
        state.put(state.WATCHED_RUN, str(runs[name]))


# ---------------------------------------------------------------------------------------------------- page
st.title("Train")
st.caption(
    "Train a multi-task model that predicts several properties from composition at once. Training runs as a "
    "separate process on this machine: you can leave the page, close the tab and come back."
)

uploaded_tasks: dict = state.get(state.UPLOADED_TASKS) or {}
groups = bundled_choices(bundled_datasets())
uploads = uploaded_choices(uploaded_tasks)
classification_tasks = [c.name for group in groups.values() for c in group if c.type == "classification"]
classification_tasks += [c.name for c in uploads if c.type == "classification"]

tab_train, tab_finetune, tab_rehearsal = st.tabs(
    [":material/model_training: New training run", ":material/tune: Fine-tune heads",
     ":material/low_priority: Continual rehearsal"]
)  # fmt: skip
with tab_train:
    top = st.columns([1, 1, 2])
    encoder = top[0].segmented_control(
        "Encoder",
        ["MLP", "Transformer"],
        key=ENCODER_KEY,
        required=True,
        help="The shared network that turns the composition descriptor into a latent vector used by every task. "
        "MLP: fast, a strong default. Transformer: treats each element feature as a token; slower, sometimes "
        "better on larger datasets.",
    )
    encoder = encoder or "MLP"
    top[1].selectbox(
        "Size preset",
        ["small", "medium", "large", "custom"],
        key=PRESET_KEY,
        on_change=_apply_preset,
        help="Fills the size fields below; edit them freely afterwards. Small trains in seconds on a laptop CPU.",
    )

    with st.form("train_form", border=False, enter_to_submit=False):
        head = st.columns([2, 1])
        name = head[0].text_input(
            "Run name", value="my-model", max_chars=60, key="train_name",
            help="A short label; the run folder is <name>-<date>-<time> in the workspace.",
        )  # fmt: skip
        seed = head[1].number_input(
            "Random seed", min_value=0, max_value=2**31 - 1, value=42, step=1, key="train_seed",
            help="Fixes the train/validation/test split and the initial weights, so a run can be repeated exactly.",
        )  # fmt: skip

        st.markdown("**Tasks to train** (one model learns all ticked properties together)")
        chosen_bundled: list[str] = []
        chosen_uploaded: list[str] = []
        columns = st.columns(3)
        filled = [0, 0, 0]  # checkboxes per column: each dataset goes to the shortest column
        for title, choices in [*groups.items(), *([("Your uploaded data (Data page)", uploads)] if uploads else [])]:
            target = filled.index(min(filled))
            filled[target] += len(choices) + 1
            with columns[target]:
                st.caption(title)
                if choices and choices[0].uploaded:
                    chosen_uploaded += [c.name for c in choices if _task_checkbox(c, "train_upload_")]
                else:
                    chosen_bundled += [c.name for c in choices if _task_checkbox(c, "train_task_")]
        if not uploads:
            st.caption("Upload your own CSV on the Data page to train on your measurements too.")

        model_col, train_col = st.columns(2)
        with model_col:
            st.markdown(f"**Model: {encoder} encoder**")
            values_model: dict = {}
            if encoder == "MLP":
                values_model["hidden_dims"] = st.text_input(
                    "Hidden layer widths (neurons per layer)", key="train_hidden_dims",
                    help="Comma-separated layer widths, e.g. 256, 128; the last one is the size of the shared latent "
                    "vector. Presets: small 128, 64 / medium 256, 128 / large 512, 256.",
                )  # fmt: skip
            else:
                cols = st.columns(3)
                values_model["d_model"] = cols[0].number_input(
                    "Token width (features)", min_value=8, max_value=512, step=8, key="train_d_model",
                    help="Size of each element-feature token inside the transformer.",
                )  # fmt: skip
                values_model["num_layers"] = cols[1].number_input(
                    "Layers", min_value=1, max_value=12, step=1, key="train_num_layers",
                    help="Number of stacked attention layers.",
                )  # fmt: skip
                values_model["nhead"] = cols[2].number_input(
                    "Attention heads", min_value=1, max_value=16, step=1, key="train_nhead",
                    help="Must divide the token width.",
                )  # fmt: skip
            dropout = st.slider(
                "Dropout (fraction of neurons dropped)", 0.0, 0.5, 0.0, 0.05, key="train_dropout",
                help="Regularisation against over-fitting on small datasets; 0 is usually fine here.",
            )  # fmt: skip
            loss_balancer = st.toggle(
                "Uncertainty loss balancing", value=False, key="train_balancer",
                help="Learns one weight per task so that tasks with very different noise levels or dataset sizes "
                "share the model fairly (Kendall et al. uncertainty weighting). Off: all tasks weigh the same.",
            )  # fmt: skip
            autoencoder = st.toggle(
                "Autoencoder", value=True, key="train_autoencoder",
                help="Also learns to reconstruct the composition descriptor from the latent vector. Needed for "
                "latent-space inverse design; costs little.",
            )  # fmt: skip
            balanced = st.toggle(
                "Balance classes", value=True, key="train_balanced",
                help="For classification tasks (e.g. glass-forming, HEA phase): weight rare classes up so the model "
                "does not just predict the most common phase.",
            )  # fmt: skip
        with train_col:
            st.markdown("**Training**")
            cols = st.columns(2)
            max_epochs = cols[0].number_input(
                "Epochs (passes over the data)", min_value=1, max_value=2000, value=60, step=10,
                key="train_epochs", help="Upper limit; early stopping usually ends the run sooner.",
            )  # fmt: skip
            patience = cols[1].number_input(
                "Patience (epochs)", min_value=1, max_value=500, value=15, step=1, key="train_patience",
                help="Stop early when the validation loss has not improved for this many epochs; the best epoch's "
                "weights are kept.",
            )  # fmt: skip
            batch_size = st.select_slider(
                "Batch size (compositions per step)", BATCH_SIZES, value=128, key="train_batch",
                help="Smaller batches: more, noisier updates per epoch; larger: faster epochs.",
            )  # fmt: skip
            lr = st.select_slider(
                "Learning rate (AdamW, per step)", LEARNING_RATES, value=2e-3, key="train_lr",
                format_func=lambda v: f"{v:g}",
                help="Step size of the optimiser; it decays along a cosine to 1 % by the last epoch.",
            )  # fmt: skip
            weight_averaging = st.toggle(
                "Average the weights (EMA)", value=True, key="train_ema",
                help="Validate, stop early and save a running average of the weights over the last steps "
                f"(decay {DEFAULT_EMA_DECAY} per step) instead of the last step's weights. Steadier and usually "
                "a little more accurate; the demo model uses it.",
            )  # fmt: skip
            with st.expander("Data split"):
                val_ratio = st.slider(
                    "Validation fraction (of compositions)", 0.05, 0.3, 0.1, 0.05, key="train_val",
                    help="Held out during training to pick the best epoch and to stop early.",
                )  # fmt: skip
                test_ratio = st.slider(
                    "Test fraction (of compositions)", 0.0, 0.3, 0.1, 0.05, key="train_test",
                    help="Never seen in training; its metrics go into the model card.",
                )  # fmt: skip
        submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:")

    if submitted:
        values = FormValues(
            name=name,
            bundled=chosen_bundled,
            uploaded=chosen_uploaded,
            encoder="mlp" if encoder == "MLP" else "transformer",
            hidden_dims=values_model.get("hidden_dims", "256, 128"),
            d_model=int(values_model.get("d_model", 32)),
            num_layers=int(values_model.get("num_layers", 2)),
            nhead=int(values_model.get("nhead", 4)),
            dropout=float(dropout),
            loss_balancer=loss_balancer,
            autoencoder=autoencoder,
            balanced_classes=balanced,
            max_epochs=int(max_epochs),
            patience=int(patience),
            batch_size=int(batch_size),
            lr=float(lr),
            weight_averaging=bool(weight_averaging),
            val_ratio=float(val_ratio),
            test_ratio=float(test_ratio),
            seed=int(seed),
        )
        problems = _submit(values, uploaded_tasks, classification_tasks)
        if problems:
            st.error("Cannot start this run:\n\n" + "\n".join(f"- {p}" for p in problems), icon=":material/error:")
with tab_finetune:
    _finetune_tab()
with tab_rehearsal:
    _rehearsal_tab(classification_tasks)

# ---------------------------------------------------------------------------------------------------- monitor
st.subheader("Live monitor")
runs = list_runs()
current = _watched_run()
if current is None:
    st.info("No run is training. Start one above, or pick a past run below to see its curves.")
else:
    live_run(current, key="train_monitor")
    _finished_notes(current)

# ---------------------------------------------------------------------------------------------------- past runs
st.subheader("Past runs")
if not runs:
    st.caption("No runs in this workspace yet.")
else:
    names = [run.name for run in runs]
    st.session_state[PICK_KEY] = current.name if current is not None and current.name in names else None
    st.selectbox(
        "Show in the monitor",
        names,
        index=None,
        placeholder="Choose a run",
        key=PICK_KEY,
        on_change=_pick_run,
        help="Finished runs with a checkpoint also appear in the sidebar's checkpoint picker.",
    )
    st.dataframe(
        runs_table(runs),
        hide_index=True,
        width="stretch",
        column_config={
            "best val loss (normalised)": st.column_config.NumberColumn(
                format="%.4f", help="Lowest validation loss (sum over tasks, in normalised units; lower is better)."
            ),
            "started": st.column_config.TextColumn(help="Local time of this server."),
            "epochs": st.column_config.TextColumn(help="Epochs done / the run's upper limit."),
        },
    )
st.caption(f"Runs live in `{workspace_dir() / 'runs'}`.")
