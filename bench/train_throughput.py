"""Benchmark: training throughput of our loop vs a bare PyTorch loop of the same network on the same data.

What it measures
    Samples per second over epochs 2-5 (epoch 1 is warm-up), median of 3 runs per loop, the runs of the two
    loops interleaved in one process so machine noise hits both alike.

    * ours: ``fm_engine.training.train(config, run_dir, progress_bar=False)`` exactly as a user runs it
      (Lightning Trainer + MultiTaskModule + the run's callbacks, run files, last.ckpt every epoch). Two figures,
      both read from the run's metrics.jsonl: training only (EpochTimer's ``epoch_seconds``, which excludes
      validation) and the whole epoch (time between consecutive epoch records: training + validation in
      physical units + run files + last.ckpt).
    * bare: the same ``FlexibleMultiTaskModel`` (same config, built by the same ``build_model``), the same
      AdamW, the same training rows as pre-built tensors, randperm batches, ``model.task_losses`` +
      ``model.total_loss``, backward, step. Nothing else.

Setup (ANCHORS.md, the reference project's same-size model)
    KMD descriptor (464 dims), MLP encoder [256, 128] with BatchNorm, autoencoder, 7 AFLOW regression
    heads with head_hidden_dims [64]; the real bundled AFLOW data (4,896 compositions, its file split; the
    training split is about 3,900 compositions), batch 256, drop_last.

Goal
    ours / bare >= 0.85 (training-only figure); ours >= 3x the reference project's 8,970 samples/s
    (measured on the anchor machine: compare ratios; this script also measures this machine's fp32 GEMM
    peak to put the figures in proportion).

Run
    ``.venv/bin/python bench/train_throughput.py`` (about 1 minute on 2 cores)
    ``.venv/bin/python bench/train_throughput.py --profile`` also profiles one run of our loop (cProfile,
    20 epochs) and prints the top costs.
Writes bench/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from _common import AFLOW_TASKS, OtherLoad, environment, gemm_gflops, print_environment, write_result
from torch import nn

from fm_engine.data import CompositionDataModule
from fm_engine.models import EncoderConfig, FlexibleMultiTaskModel
from fm_engine.training import RunDirectory, TrainConfig, train
from fm_engine.training.config import DataSection, ModelSection, TrainerSection
from fm_engine.training.trainer import build_datamodule, build_model

REFERENCE_SAMPLES_PER_S = 8970.0
REFERENCE_PARAMETERS = 364_631
REFERENCE_GEMM_GFLOPS = 367.0  # anchor machine, fp32 2048^3 on 2 threads
GOAL_VS_BARE = 0.85
GOAL_VS_REFERENCE = 3.0
MEASURED_EPOCHS = slice(1, 5)  # epochs 2-5
N_EPOCHS = 5
N_RUNS = 3
BATCH_SIZE = 256


def bench_config(max_epochs: int = N_EPOCHS) -> TrainConfig:
    return TrainConfig(
        name="bench-throughput",
        tasks=[{"bundled": name, "head_hidden_dims": [64]} for name in AFLOW_TASKS],
        model=ModelSection(encoder=EncoderConfig(type="mlp", hidden_dims=[256, 128], norm="batch")),
        data=DataSection(batch_size=BATCH_SIZE),
        trainer=TrainerSection(max_epochs=max_epochs, patience=max_epochs + 1, progress_bar=False),
    )


@dataclass
class RunFigures:
    samples_per_s: float  # training steps only
    samples_per_s_with_validation: float | None  # whole epoch (ours only)
    epoch_seconds: list[float]
    total_seconds: float
    other_load: float = float("nan")  # CPU share used by other processes meanwhile


def run_ours(config: TrainConfig, samples_per_epoch: int, scratch: Path, index: int) -> RunFigures:
    run_dir = scratch / f"ours-{index}"
    start = time.perf_counter()
    result = train(config, run_dir, progress_bar=False)
    total = time.perf_counter() - start
    if result.state != "done":
        raise RuntimeError(f"training run {run_dir} ended {result.state}")
    epochs = [r for r in RunDirectory(run_dir).read_metrics() if r.get("kind") == "epoch"]
    if len(epochs) < N_EPOCHS:
        raise RuntimeError(f"expected {N_EPOCHS} epoch records in metrics.jsonl, found {len(epochs)}")
    seconds = [float(r["epoch_seconds"]) for r in epochs]
    card = json.loads((run_dir / "checkpoint" / "card.json").read_text(encoding="utf-8"))
    seen = card["training"]["samples_per_s"] * sum(seconds) / len(seconds)  # EpochTimer's own count
    if abs(seen - samples_per_epoch) > 0.01 * samples_per_epoch:
        raise RuntimeError(f"our loop saw {seen:.0f} samples per epoch, expected {samples_per_epoch}")
    measured = seconds[MEASURED_EPOCHS]
    # Epoch records are written after validation: consecutive records bracket one whole epoch.
    stamps = [float(r["time"]) for r in epochs]
    whole = stamps[MEASURED_EPOCHS.stop - 1] - stamps[MEASURED_EPOCHS.start - 1]
    n = len(measured)
    return RunFigures(n * samples_per_epoch / sum(measured), n * samples_per_epoch / whole, seconds, total)


def training_tensors(
    dm: CompositionDataModule,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The training rows exactly as the datamodule serves them (targets 0 where masked)."""
    rows = dm.stage_indices("train")
    x = torch.from_numpy(dm.x[rows])
    targets, masks = {}, {}
    for task in dm.tasks:
        keep = dm.train_keep[task.name][rows]
        values = dm.values[task.name][rows]
        targets[task.name] = torch.from_numpy(np.where(keep, values, 0).astype(values.dtype))
        masks[task.name] = torch.from_numpy(keep)
    return x, targets, masks


def run_bare(config: TrainConfig, dm: CompositionDataModule) -> tuple[RunFigures, FlexibleMultiTaskModel]:
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    model = build_model(config, dm)
    model.train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.optimizer.lr,
        weight_decay=config.optimizer.weight_decay,
    )
    x, targets, masks = training_tensors(dm)
    n = len(x)
    batch = config.data.batch_size
    n_batches = n // batch if n > batch else 1  # drop_last, as our loader
    seconds = []
    for _ in range(N_EPOCHS):
        epoch_start = time.perf_counter()
        order = torch.randperm(n)
        for step in range(n_batches):
            idx = order[step * batch : (step + 1) * batch]
            losses = model.task_losses(
                x[idx], {k: v[idx] for k, v in targets.items()}, {k: m[idx] for k, m in masks.items()}, {}
            )
            total = model.total_loss(losses)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - epoch_start)
    measured = seconds[MEASURED_EPOCHS]
    rate = len(measured) * n_batches * batch / sum(measured)
    return RunFigures(rate, None, seconds, time.perf_counter() - start), model


def training_flop_per_sample(model: FlexibleMultiTaskModel) -> int:
    """Linear layers only: forward 2*MAC, weight grads 2*MAC, input grads 2*MAC (not for the descriptor)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    first = next(m for m in model.encoder.modules() if isinstance(m, nn.Linear))
    macs = sum(m.in_features * m.out_features for m in linears)
    return 6 * macs - 2 * first.in_features * first.out_features


# (file suffix, function) whose cumulative time is a component of the fit loop; see profile_ours.
PROFILE_PARTS: dict[str, list[tuple[str, str]]] = {
    "fit": [("lightning/pytorch/trainer/trainer.py", "fit")],
    "training steps (all epochs)": [("lightning/pytorch/loops/training_epoch_loop.py", "run")],
    "  forward + losses (training_step)": [("fm_engine/training/lightning.py", "training_step")],
    "  backward": [("torch/_tensor.py", "backward")],
    "  AdamW update": [("torch/optim/adam.py", "adam")],
    "  zero_grad": [("torch/optim/optimizer.py", "zero_grad")],
    "  data loader (batch fetch)": [("lightning/pytorch/loops/fetchers.py", "__next__")],
    "  callbacks' on_train_batch_end (the largest)": [("fm_engine/training/callbacks.py", "on_train_batch_end")],
    "epoch end (callbacks' on_train_epoch_end)": [("lightning/pytorch/loops/fit_loop.py", "on_advance_end")],
    "  validation (evaluate)": [("fm_engine/training/evaluate.py", "evaluate")],
    "  last.ckpt (ResumeState.save)": [("fm_engine/training/callbacks.py", "save")],
}
PROFILE_EPOCHS = 20


def _cumulative(stats: pstats.Stats, targets: list[tuple[str, str]]) -> float:
    """Largest cumulative time among matching entries (the outermost call of a wrapped chain)."""
    best = 0.0
    for (filename, _, func), (_, _, _, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        if any(filename.endswith(suffix) and func == name for suffix, name in targets):
            best = max(best, cumtime)
    return best


def profile_ours(scratch: Path, steps_per_epoch: int, top: int = 12) -> dict[str, Any]:
    """cProfile ``Trainer.fit`` inside one ``train()`` run of PROFILE_EPOCHS epochs: where the time goes.

    Only this process's ``lightning.Trainer.fit`` is wrapped (to leave data loading, the final test
    evaluation and the checkpoint out); ``train`` itself runs unchanged. cProfile inflates Python-heavy
    parts (Lightning's loop, hooks) relative to torch kernels, so read the shares as upper bounds.
    """
    profiler = cProfile.Profile()
    original_fit = L.Trainer.fit

    def profiled_fit(self: L.Trainer, *args: Any, **kwargs: Any) -> Any:
        profiler.enable()
        try:
            return original_fit(self, *args, **kwargs)
        finally:
            profiler.disable()

    L.Trainer.fit = profiled_fit  # type: ignore[method-assign]
    try:
        with OtherLoad() as load:
            train(bench_config(PROFILE_EPOCHS), scratch / "profiled", progress_bar=False)
    finally:
        L.Trainer.fit = original_fit  # type: ignore[method-assign]
    stats = pstats.Stats(profiler)
    parts = {name: _cumulative(stats, targets) for name, targets in PROFILE_PARTS.items()}
    names = list(PROFILE_PARTS)
    steps, epoch_end = "training steps (all epochs)", "epoch end (callbacks' on_train_epoch_end)"
    inside = names[names.index(steps) + 1 : names.index(epoch_end)]
    rest_of_steps = parts[steps] - sum(parts[k] for k in inside)
    names.insert(names.index(epoch_end), "  Lightning loop machinery (rest of the steps)")
    parts["  Lightning loop machinery (rest of the steps)"] = rest_of_steps
    names.append("rest of fit (setup, teardown)")
    parts["rest of fit (setup, teardown)"] = parts["fit"] - parts[steps] - parts[epoch_end]
    print(
        f"\ncProfile of Trainer.fit in train() ({PROFILE_EPOCHS} epochs x {steps_per_epoch} steps; other "
        f"processes' CPU use {load.share:.0%}): cumulative seconds, share of fit"
    )
    for name in names:
        print(f"  {name:<48} {parts[name]:7.3f} s {100 * parts[name] / parts['fit']:5.1f} %")
    rows = []
    for (filename, line, func), (_, calls, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(filename).name}:{line}({func})", "calls": calls, "own_s": tottime})
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    print(f"  top {top} functions by own time:")
    for row in rows[:top]:
        print(f"    {row['own_s']:7.3f} s {row['calls']:8d} calls  {row['function']}")
    return {"epochs": PROFILE_EPOCHS, "other_load": load.share, "parts_s": parts, "top_own_time": rows[:top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", action="store_true", help="also cProfile one run of our loop")
    args = parser.parse_args()

    env = environment()
    print_environment(env)
    config = bench_config()
    dm = build_datamodule(config)
    dm.setup()
    n_train = len(dm.stage_indices("train"))
    samples_per_epoch = (n_train // BATCH_SIZE) * BATCH_SIZE
    print(
        f"data: {len(dm.keys)} AFLOW compositions, {n_train} training rows, "
        f"{samples_per_epoch} samples/epoch (batch {BATCH_SIZE}, drop_last), 7 regression tasks"
    )

    ours: list[RunFigures] = []
    bare: list[RunFigures] = []
    model: FlexibleMultiTaskModel | None = None
    with tempfile.TemporaryDirectory(prefix="fm-bench-throughput-") as tmp:
        scratch = Path(tmp)
        for index in range(N_RUNS):  # interleaved, alternating order: ours-bare, bare-ours, ours-bare
            order = ("ours", "bare") if index % 2 == 0 else ("bare", "ours")
            for which in order:
                with OtherLoad() as load:
                    if which == "ours":
                        figures = run_ours(config, samples_per_epoch, scratch, index)
                        ours.append(figures)
                    else:
                        figures, model = run_bare(config, dm)
                        bare.append(figures)
                figures.other_load = load.share
            o, b = ours[-1], bare[-1]
            print(
                f"  round {index + 1}: ours {o.samples_per_s:,.0f} samples/s "
                f"({o.samples_per_s_with_validation or 0:,.0f} with validation), bare {b.samples_per_s:,.0f}"
                f"   [other processes' CPU use: ours {o.other_load:.0%}, bare {b.other_load:.0%}]"
            )
        assert model is not None
        ours_config = json.loads((scratch / "ours-0" / "model_config.json").read_text(encoding="utf-8"))
        same_network = json.loads(json.dumps(model.config.to_dict())) == ours_config
        deterministic = torch.are_deterministic_algorithms_enabled()  # set by Lightning, process-wide
        profile = profile_ours(scratch, samples_per_epoch // BATCH_SIZE) if args.profile else None

    disturbed = max(r.other_load for r in ours + bare)
    if disturbed > 0.1:
        print(f"warning: other processes used up to {disturbed:.0%} of the CPU in a run: figures not valid")
    n_parameters = sum(p.numel() for p in model.parameters())
    flop = training_flop_per_sample(model)
    gemm_peak = gemm_gflops(2048, 2048, 2048)
    gemm_layer = gemm_gflops(256, 464, 256)
    ours_rate = statistics.median(r.samples_per_s for r in ours)
    ours_whole = statistics.median(r.samples_per_s_with_validation or 0.0 for r in ours)
    bare_rate = statistics.median(r.samples_per_s for r in bare)
    ratio_bare = ours_rate / bare_rate
    ratio_reference = ours_rate / REFERENCE_SAMPLES_PER_S
    # The reference figure scaled by this machine's GEMM speed relative to the anchor machine's.
    machine_factor = gemm_peak / REFERENCE_GEMM_GFLOPS
    scaled_reference = REFERENCE_SAMPLES_PER_S * machine_factor

    def pct_peak(rate: float) -> str:
        return f"({100 * rate * flop / (gemm_peak * 1e9):.1f} % of GEMM peak)"

    print()
    print(
        f"network: {n_parameters:,} parameters (reference: {REFERENCE_PARAMETERS:,}); "
        f"same config in both loops: {same_network}; ~{flop / 1e6:.2f} MFLOP per training sample"
    )
    print(f"deterministic algorithms (trainer.deterministic; process-wide, in both loops): {deterministic}")
    print(
        f"this machine: fp32 GEMM {gemm_peak:.0f} GFLOP/s at 2048^3, {gemm_layer:.0f} GFLOP/s at "
        f"256x464x256 (anchor machine: {REFERENCE_GEMM_GFLOPS:.0f} / 330)"
    )
    print(f"training throughput, samples/s over epochs 2-5, median of {N_RUNS} interleaved runs:")
    print(f"  ours (train(), training steps only)         {ours_rate:10,.0f}   {pct_peak(ours_rate)}")
    print(f"  ours (whole epoch: + validation, last.ckpt) {ours_whole:10,.0f}")
    print(f"  bare PyTorch loop, same network             {bare_rate:10,.0f}   {pct_peak(bare_rate)}")
    print(f"  reference project (ANCHORS.md)              {REFERENCE_SAMPLES_PER_S:10,.0f}  (anchor machine)")
    verdict_bare = "meets" if ratio_bare >= GOAL_VS_BARE else "MISSES"
    verdict_ref = "meets" if ratio_reference >= GOAL_VS_REFERENCE else "MISSES"
    print(f"  ours / bare      = {ratio_bare:.2f}  (goal >= {GOAL_VS_BARE}: {verdict_bare})")
    print(f"  ours / reference = {ratio_reference:.2f}x (goal >= {GOAL_VS_REFERENCE:.0f}x: {verdict_ref})")
    print(
        f"  ours / reference scaled by this machine's GEMM speed ({machine_factor:.2f}x the anchor's) "
        f"= {ours_rate / scaled_reference:.2f}x"
    )
    result = {
        "environment": env,
        "setup": {
            "tasks": list(AFLOW_TASKS),
            "compositions": len(dm.keys),
            "train_rows": n_train,
            "samples_per_epoch": samples_per_epoch,
            "batch_size": BATCH_SIZE,
            "epochs": N_EPOCHS,
            "measured_epochs": "2-5",
            "runs": N_RUNS,
            "deterministic": config.trainer.deterministic,
            "deterministic_algorithms_in_bare_loop": deterministic,
        },
        "n_parameters": n_parameters,
        "reference_parameters": REFERENCE_PARAMETERS,
        "same_network_config": same_network,
        "training_flop_per_sample": flop,
        "gemm_gflops_2048": gemm_peak,
        "gemm_gflops_256x464x256": gemm_layer,
        "ours_samples_per_s": ours_rate,
        "ours_samples_per_s_with_validation": ours_whole,
        "bare_samples_per_s": bare_rate,
        "ours_over_bare": ratio_bare,
        "goal_ours_over_bare": GOAL_VS_BARE,
        "reference_samples_per_s": REFERENCE_SAMPLES_PER_S,
        "ours_over_reference": ratio_reference,
        "goal_ours_over_reference": GOAL_VS_REFERENCE,
        "runs": {"ours": [r.__dict__ for r in ours], "bare": [r.__dict__ for r in bare]},
        "max_other_load": disturbed,
        "profile_top": profile,
    }
    print(f"wrote {write_result('train_throughput', result)}")


if __name__ == "__main__":
    main()
