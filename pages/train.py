"""Train: pick tasks and an architecture, launch a run (a separate process), watch it live, browse past runs.

Besides a new training run, the page starts a head-only fine-tune of a finished model (``fm finetune``) and a
continual-learning rehearsal (``fm rehearsal``: tasks learned one after another with replay); both are
watched in the same live monitor. The form's starting values and run control live in :mod:`workbench.train`.
"""

from __future__ import annotations

import streamlit as st

from fm_engine.training.config import MAX_ENSEMBLE_MEMBERS
from fm_engine.workspace import workspace_dir
from workbench.components.train_form import (
    BATCH_SIZES,
    FORM_TRAINER,
    LEARNING_RATES,
    SCHEDULES,
    FormValues,
    TaskChoice,
    schedule_label,
    schedule_note,
    start_from_value,
)
from workbench.components.train_tabs import finetune_tab, finished_notes, past_runs_table, rehearsal_tab, scaling_tab
from workbench.live import live_run
from workbench.runs import list_runs
from workbench.train import (
    ENCODERS,
    FORM,
    PICK_KEY,
    SIZE_PRESETS,
    apply_preset,
    encoder_field,
    encoder_label,
    form_field,
    pick_run,
    preset_field,
    restore_controls,
    show_problems,
    start_options,
    submit_training,
    task_options,
    watched_run,
)


def task_checkbox(choice: TaskChoice, prefix: str) -> bool:
    rows = f", {choice.n_rows:,} rows" if choice.n_rows else ""
    help_text = (choice.description or choice.name) + f"\n\nTarget: {choice.unit_text}{rows}."
    return st.checkbox(choice.label, key=f"{prefix}{choice.name}", help=help_text)


st.title("Train")
st.caption(
    "Train a multi-task model that predicts several properties from composition at once. Training runs as a "
    "separate process on this machine: you can leave the page, close the tab and come back."
)
options = task_options()

tab_train, tab_finetune, tab_rehearsal, tab_scaling = st.tabs(
    [":material/model_training: New training run", ":material/tune: Fine-tune heads",
     ":material/low_priority: Continual rehearsal", ":material/show_chart: Scaling with data"]
)  # fmt: skip
with tab_train:
    top = st.columns([1, 1, 2])
    encoder = top[0].segmented_control(
        "Encoder", list(ENCODERS), required=True, **encoder_field(),
        help="The shared network that turns the composition descriptor into a latent vector used by every task. "
        "MLP: fast, a strong default. Transformer: treats each element feature as a token; slower, sometimes "
        "better on larger datasets.",
    )  # fmt: skip
    encoder = encoder or encoder_label(FORM.encoder)
    top[1].selectbox(
        "Size preset", SIZE_PRESETS, **preset_field(), on_change=apply_preset,
        help="Fills the size fields below; edit them freely afterwards. Small trains in seconds on a laptop CPU.",
    )  # fmt: skip

    restore_controls(top[2])
    with st.form("train_form", border=False, enter_to_submit=False):
        head = st.columns([2, 1, 1])
        form: dict = {"encoder": ENCODERS[encoder], "bundled": [], "uploaded": []}  # FormValues fields
        form["name"] = head[0].text_input(
            "Run name", max_chars=60, **form_field("name"),
            help="A short label; the run folder is <name>-<date>-<time> in the workspace.",
        )  # fmt: skip
        form["seed"] = head[1].number_input(
            "Random seed", min_value=0, max_value=2**31 - 1, step=1, **form_field("seed"),
            help="Fixes the train/validation/test split and the initial weights, so a run can be repeated exactly.",
        )  # fmt: skip
        form["ensemble_members"] = head[2].number_input(
            "Ensemble members", min_value=1, max_value=MAX_ENSEMBLE_MEMBERS, step=1, **form_field("ensemble_members"),
            help="1: a single model. N: N models that differ only in their seed, trained one "
            "after another (N times as long); predictions are their mean with a calibrated spread (± std).",
        )  # fmt: skip

        st.markdown("**Tasks to train** (one model learns all ticked properties together)")
        columns = st.columns(3)
        filled = [0, 0, 0]  # checkboxes per column: each dataset goes to the shortest column
        uploads = [("Your uploaded data (Data page)", options.uploads)] if options.uploads else []
        for title, choices in [*options.groups.items(), *uploads]:
            target = filled.index(min(filled))
            filled[target] += len(choices) + 1
            with columns[target]:
                st.caption(title)
                uploaded = bool(choices) and choices[0].uploaded
                prefix = "train_upload_" if uploaded else "train_task_"
                form["uploaded" if uploaded else "bundled"] += [c.name for c in choices if task_checkbox(c, prefix)]
        if not options.uploads:
            st.caption("Upload your own CSV on the Data page to train on your measurements too.")

        start_cols, (choices, start_runs, start_line) = st.columns([1, 2]), start_options()
        start_choice = start_cols[0].radio(
            "Start from", choices, key="train_start", horizontal=True,
            help="foundation: fine-tune the shipped pretrained encoder (its heads are kept, so the model also predicts "
            "its DFT properties); scratch: random initial weights; a checkpoint: one of your finished runs.",
        )  # fmt: skip
        start_run = start_cols[1].selectbox(
            "Start checkpoint (with 'a checkpoint')", list(start_runs), index=None, key="train_start_run",
            placeholder="Choose a finished run", help="Its encoder shape and descriptor replace the size fields below.",
        )  # fmt: skip
        form["start_from"] = start_from_value(start_choice, start_runs.get(start_run or ""))
        st.caption(start_line)

        model_col, train_col = st.columns(2)
        with model_col:
            st.markdown(f"**Model: {encoder} encoder**")
            if ENCODERS[encoder] == "mlp":
                form["hidden_dims"] = st.text_input(
                    "Hidden layer widths (neurons per layer)", **form_field("hidden_dims"),
                    help="Comma-separated layer widths, e.g. 256, 128; the last one is the size of the shared latent "
                    "vector. Presets: small 128, 64 / medium 256, 128 / large 512, 256.",
                )  # fmt: skip
            else:
                cols = st.columns(3)
                form["d_model"] = cols[0].number_input(
                    "Token width (features)", min_value=8, max_value=512, step=8, **form_field("d_model"),
                    help="Size of each element-feature token inside the transformer.",
                )  # fmt: skip
                form["num_layers"] = cols[1].number_input(
                    "Layers", min_value=1, max_value=12, step=1, **form_field("num_layers"),
                    help="Number of stacked attention layers.",
                )  # fmt: skip
                form["nhead"] = cols[2].number_input(
                    "Attention heads", min_value=1, max_value=16, step=1, **form_field("nhead"),
                    help="Must divide the token width.",
                )  # fmt: skip
            form["dropout"] = st.slider(
                "Dropout (fraction of neurons dropped)", 0.0, 0.5, step=0.05, **form_field("dropout"),
                help="Regularisation against over-fitting on small datasets; 0 is usually fine here.",
            )  # fmt: skip
            form["loss_balancer"] = st.toggle(
                "Uncertainty loss balancing", **form_field("loss_balancer"),
                help="Learns one weight per task so that tasks with very different noise levels or dataset sizes "
                "share the model fairly (Kendall et al. uncertainty weighting). Off: all tasks weigh the same.",
            )  # fmt: skip
            form["autoencoder"] = st.toggle(
                "Autoencoder", **form_field("autoencoder"),
                help="Also learns to reconstruct the composition descriptor from the latent vector. Needed for "
                "latent-space inverse design; costs little.",
            )  # fmt: skip
            form["balanced_classes"] = st.toggle(
                "Balance classes", **form_field("balanced_classes"),
                help="For classification tasks (e.g. glass-forming, HEA phase): weight rare classes up so the model "
                "does not just predict the most common phase.",
            )  # fmt: skip
            form["threshold_on_validation"] = st.toggle(
                "Decision threshold from validation data", **form_field("threshold_on_validation"),
                help="For two-class tasks (e.g. glass-forming): the probability above which a composition gets the "
                "second class is chosen on the validation compositions for the best balanced accuracy, so a rare "
                "class is not under-predicted. Off: the most probable class (threshold 0.5).",
            )  # fmt: skip
        with train_col:
            st.markdown("**Training**")
            form["schedule"] = st.radio(
                "Schedule", list(SCHEDULES), format_func=schedule_label, **form_field("schedule", list(SCHEDULES)),
                horizontal=True, help="Automatic: `fm train`'s recipe for the data size (few "
                "rows: many small steps, longer patience, larger validation share). By hand: the fields below.",
            )  # fmt: skip
            st.caption(schedule_note())
            cols = st.columns(2)
            form["max_epochs"] = cols[0].number_input(
                "Epochs, by hand (passes over the data)", min_value=1, max_value=2000, step=10,
                **form_field("max_epochs"), help="Upper limit; early stopping usually ends the run sooner.",
            )  # fmt: skip
            form["patience"] = cols[1].number_input(
                "Patience, by hand (epochs)", min_value=1, max_value=500, step=1, **form_field("patience"),
                help="Stop early when the validation loss has not improved for this many epochs; the best epoch's "
                "weights are kept.",
            )  # fmt: skip
            form["batch_size"] = st.select_slider(
                "Batch size, by hand (compositions per step)", BATCH_SIZES, **form_field("batch_size"),
                help="Smaller batches: more, noisier updates per epoch; larger: faster epochs.",
            )  # fmt: skip
            form["lr"] = st.select_slider(
                "Learning rate (AdamW, per step)", LEARNING_RATES, **form_field("lr"),
                format_func=lambda v: f"{v:g}",
                help="Step size of the optimiser; it decays along a cosine to 1 % by the last epoch.",
            )  # fmt: skip
            form["weight_averaging"] = st.toggle(
                "Average the weights (EMA)", **form_field("weight_averaging"),
                help="Validate, stop early and save a running average of the weights over the last steps "
                f"(decay {FORM_TRAINER.ema_decay} per step) instead of the last step's weights. Steadier and usually "
                "a little more accurate; the demo model uses it.",
            )  # fmt: skip
            with st.expander("Data split"):
                form["val_ratio"] = st.slider(
                    "Validation fraction, by hand (of compositions)", 0.05, 0.3, step=0.05, **form_field("val_ratio"),
                    help="Held out during training to pick the best epoch and to stop early.",
                )  # fmt: skip
                form["test_ratio"] = st.slider(
                    "Test fraction (of compositions)", 0.0, 0.3, step=0.05, **form_field("test_ratio"),
                    help="Never seen in training; its metrics go into the model card.",
                )  # fmt: skip
        submitted = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:")
    if submitted:
        show_problems("this run", submit_training(FormValues(**form), options))
with tab_finetune:
    finetune_tab()
with tab_rehearsal:
    rehearsal_tab(options)
with tab_scaling:
    scaling_tab(options)

st.subheader("Live monitor")
runs = list_runs()
current = watched_run()
if current is None:
    st.info("No run is training. Start one above, or pick a past run below to see its curves.")
else:
    live_run(current, key="train_monitor")
    finished_notes(current)

st.subheader("Past runs")
if not runs:
    st.caption("No runs in this workspace yet.")
else:
    names = [run.name for run in runs]
    st.session_state[PICK_KEY] = current.name if current is not None and current.name in names else None
    st.selectbox(
        "Show in the monitor", names, index=None, placeholder="Choose a run", key=PICK_KEY, on_change=pick_run,
        help="Finished runs with a checkpoint also appear in the sidebar's checkpoint picker.",
    )  # fmt: skip
    past_runs_table(live=any(run.state in ("queued", "running") for run in runs))
st.caption(f"Runs live in `{workspace_dir() / 'runs'}`.")
