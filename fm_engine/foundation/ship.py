"""Shipping the foundation: a pretraining run's checkpoint becomes ``fm_engine/foundation_model/``.

The shipped folder is an ordinary checkpoint (``model.safetensors``, ``config.json``, ``card.json``, ``card.md``,
the training compositions as ``compositions.csv.gz``) plus ``replay/``: a small sample of the corpus in the corpus
format (:data:`SHIPPED_ROWS` compositions per task and split, seeded), so that fine-tuning from the foundation
keeps training the foundation's heads on their own data on a machine where the 400k-row corpus was never built
(the corpus is built on demand by ``make foundation``, never at set-up). The card records the exact commands that
rebuild the folder (``rebuild``). The whole folder must stay within :data:`SIZE_LIMIT_BYTES`.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fm_engine.cards import CARD_FILE, CARD_MARKDOWN_FILE
from fm_engine.checkpoints import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    install_directory,
    load_checkpoint,
    read_compositions,
    resolve_checkpoint_dir,
    write_compositions,
)
from fm_engine.foundation import REPLAY_FOLDER, foundation_checkpoint_path
from fm_engine.safe_io import atomic_write_json, atomic_write_text

SIZE_LIMIT_BYTES = 25 * 2**20  # the limit for the shipped folder: 25 MB
SHIPPED_ROWS = 1024  # per task and corpus split: the replay sample shipped beside the weights
SHIP_SEED = 42  # the replay sample's draw


class ShipError(ValueError):
    """The run cannot be shipped (the message names the file and what is wrong)."""


def replay_sample(corpus_dir: Path, *, rows: int = SHIPPED_ROWS, seed: int = SHIP_SEED):  # noqa: ANN201
    """The corpus rows shipped for replay: per task and split, ``rows`` labelled compositions (a seeded draw);
    a task's column is NaN on rows drawn only for other tasks. Returns ``(frame, tasks, manifest)``."""
    from fm_engine.data.splits import sample_per_task_and_split
    from fm_engine.foundation.corpus import load_corpus

    corpus = load_corpus(corpus_dir)
    frame = corpus.frame
    sample = sample_per_task_and_split(frame, corpus.task_names, rows=rows, seed=seed, tag="ship")
    manifest = dict(corpus.manifest) | {"replay_sample": {"rows_per_task_and_split": rows, "seed": seed,
                                                          "of_compositions": len(frame)}}  # fmt: skip
    return sample, corpus.tasks, manifest


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def ship_foundation(
    run: str | Path,
    *,
    corpus: str | Path,
    out: str | Path | None = None,
    rebuild: Sequence[str] | None = None,
    size_limit: int = SIZE_LIMIT_BYTES,
) -> Path:
    """Copy the checkpoint of ``run`` (a run folder or checkpoint folder) to ``out`` (default: the shipped
    foundation's place) with its compositions compressed, the replay sample of ``corpus`` and ``rebuild`` (the
    commands) in the card; the folder replaces ``out`` whole, only once complete. :class:`ShipError` if the
    checkpoint has no card or the folder would exceed ``size_limit`` bytes."""
    from fm_engine.foundation.corpus import CACHE_DIR, write_corpus

    source = resolve_checkpoint_dir(run)
    checkpoint = load_checkpoint(source)  # a checkpoint that does not load is not shipped
    if checkpoint.card is None:
        raise ShipError(f"{source}: has no model card ({checkpoint.card_problem}); the foundation ships with its card")
    out = Path(out) if out is not None else foundation_checkpoint_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            shutil.copy2(source / name, tmp / name)
        if rebuild is None:
            training = checkpoint.card.training
            rebuild = rebuild_commands(run, threads=training.torch_threads, seed=checkpoint.card.training_seed)
        card = dataclasses.replace(checkpoint.card, rebuild=list(rebuild))
        atomic_write_json(tmp / CARD_FILE, card.to_mapping(), sort_keys=False)
        atomic_write_text(tmp / CARD_MARKDOWN_FILE, card.render_markdown())
        table = read_compositions(source)
        if len(table):
            write_compositions(table, tmp, compress=True)
        frame, tasks, manifest = replay_sample(Path(corpus))
        write_corpus(tmp / REPLAY_FOLDER, frame, tasks, manifest=manifest)
        shutil.rmtree(tmp / REPLAY_FOLDER / CACHE_DIR, ignore_errors=True)  # rebuilt on use; not shipped
        size = folder_bytes(tmp)
        if size > size_limit:
            raise ShipError(f"{out}: the foundation folder would take {size / 2**20:.1f} MiB, over the limit of "
                            f"{size_limit / 2**20:.0f} MiB")  # fmt: skip
        install_directory(tmp, out, tag=checkpoint.checkpoint_id[:8])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def rebuild_commands(run: str | Path, *, threads: int | None, seed: int | None) -> list[str]:
    """The commands that rebuild the shipped folder (what ``make foundation`` runs), for the card."""
    env = f"FM_NUM_THREADS={threads} " if threads else ""
    run_text = shlex.quote(str(run))
    return [
        "fm corpus",
        f"{env}fm pretrain --out {run_text} --no-progress  # default recipe, seed {seed}",
        f"fm ship-foundation --run {run_text}",
    ]
