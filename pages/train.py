"""Train: pick tasks and an architecture, launch a run (a separate process), watch it live, browse past runs."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from fm_engine.datasets import bundled_datasets
from fm_engine.training import TrainConfig
from fm_engine.training.run_files import RunDirectory
from fm_engine.workspace import workspace_dir
from workbench import state
from workbench.components.train_form import (
    MLP_PRESETS,
    TRANSFORMER_PRESETS,
    FormValues,
    TaskChoice,
    build_config,
    bundled_choices,
    runs_table,
    upload_path,
    uploaded_choices,
    validate,
)
from workbench.live import live_run
from workbench.paths import page
from workbench.runs import list_runs, run_info, start_training

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


def _write_uploads(names: list[str], uploaded: dict) -> dict[str, tuple[dict, str]]:
    """Write each chosen uploaded task's table to <workspace>/uploads/<name>.csv; name -> (spec, path)."""
    folder = workspace_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in names:
        entry = uploaded[name]
        path = upload_path(folder, name).resolve()
        entry["frame"].to_csv(path, index=False)
        spec = dict(entry["spec"])
        spec.setdefault("name", name)
        files[name] = (spec, str(path))
    return files


def _submit(values: FormValues, uploaded: dict, classification: list[str]) -> list[str]:
    """Validate, build and check the config, start the run; returns the problems (empty on success)."""
    errors = validate(values)
    if errors:
        return errors
    try:
        files = _write_uploads(values.uploaded, uploaded)
        config = build_config(values, files, classification)
        TrainConfig.from_dict(config)
    except (ValueError, TypeError, KeyError, OSError) as error:
        return [f"The configuration is not valid: {error}"]
    try:
        run_dir = start_training(config, values.name.strip())
    except OSError as error:
        return [f"Could not start the training process: {error}"]
    state.put(state.WATCHED_RUN, str(run_dir))
    st.toast(f"Training started: {run_dir.name}", icon=":material/model_training:")
    return []


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

with st.container(border=True):
    st.subheader("New training run")
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
            val_ratio=float(val_ratio),
            test_ratio=float(test_ratio),
            seed=int(seed),
        )
        problems = _submit(values, uploaded_tasks, classification_tasks)
        if problems:
            st.error("Cannot start this run:\n\n" + "\n".join(f"- {p}" for p in problems), icon=":material/error:")

# ---------------------------------------------------------------------------------------------------- monitor
st.subheader("Live monitor")
runs = list_runs()
current = _watched_run()
if current is None:
    st.info("No run is training. Start one above, or pick a past run below to see its curves.")
else:
    live_run(current, key="train_monitor")
    info = run_info(current)
    if info.state == "done" and info.has_checkpoint:
        st.success(
            f"**{info.name}** is ready: pick it as the active checkpoint in the sidebar to predict or design with it.",
            icon=":material/check_circle:",
        )
        links = st.columns([1, 1, 1, 3])
        links[0].page_link(page("predict.py"), label="Predict", icon=":material/query_stats:")
        links[1].page_link(page("design.py"), label="Inverse design", icon=":material/tune:")
        links[2].page_link(page("checkpoints.py"), label="Model card", icon=":material/inventory_2:")
    config_file = RunDirectory(current).config_path
    if config_file.exists():
        with st.expander("Configuration of this run (config.yaml)"):
            st.code(config_file.read_text(encoding="utf-8"), language="yaml")
            st.caption(f"Run folder: `{current}`. Repeat it with `fm train --config config.yaml --out NEW_FOLDER`.")

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
