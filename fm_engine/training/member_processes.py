"""An ensemble's members trained side by side, one OS process each (``ensemble.parallel``).

A training uses one torch thread (:mod:`fm_engine.threads`), so on a machine with two or more cores the members of
an ensemble can train at the same time, each in its own process, each exactly as it would train alone: the same
config, seed and thread count give the same weights bit for bit (tested against members trained one after
another). The parent process starts up to ``parallel`` members (``spawn``: a fresh interpreter, no state shared),
records which members are training in the run's ``status.json`` (``member``: the first of them, ``training``:
all of them), and waits. On SIGTERM (cancel) or an error it sends SIGTERM to the members still training, which
save their ``last.ckpt`` and mark themselves cancelled, so ``--resume`` continues each where it stopped.
"""

from __future__ import annotations

import multiprocessing
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from tqdm import tqdm

from fm_engine.training.config import TrainConfig
from fm_engine.training.run_files import RunDirectory

EXIT_FAILED, EXIT_CANCELLED = 2, 3  # a member process's exit codes (0: done)
POLL_S = 0.2  # how often the parent looks at its members (a wait on a state, not a fixed delay of the work)


@dataclass(frozen=True)
class MemberJob:
    """Member ``index``: its config and run folder, and whether it resumes from the folder's ``last.ckpt``."""

    index: int
    config: TrainConfig
    folder: Path
    resume: bool


def _member_main(config: TrainConfig | None, folder: str, resume: bool) -> None:
    """A member's process: train it as ``fm train`` would (SIGTERM cancels, saving ``last.ckpt``)."""
    from fm_engine.cli import _on_sigterm
    from fm_engine.training.trainer import train

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = train(config, folder, resume=resume, progress_bar=False)
    except KeyboardInterrupt:
        raise SystemExit(EXIT_CANCELLED) from None
    except Exception:  # recorded in the member's status.json; the parent reports it in one line
        raise SystemExit(EXIT_FAILED) from None
    raise SystemExit(0 if result.state == "done" else EXIT_CANCELLED)


def member_jobs(configs: Sequence[TrainConfig], folder_of: Callable[[int], Path]) -> list[MemberJob]:
    """The members still to train (a finished member, one with ``checkpoint/``, is skipped; a folder without a
    saved epoch is started again)."""
    jobs = []
    for index, config in enumerate(configs):
        folder = folder_of(index)
        if (folder / "checkpoint").is_dir():
            continue
        again = (folder / "last.ckpt").is_file()
        if not again and folder.exists():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        jobs.append(MemberJob(index, config, folder, again))
    return jobs


def train_side_by_side(
    jobs: Sequence[MemberJob], *, parallel: int, status: Callable[[list[int]], None], progress_bar: bool = False
) -> str:
    """Train ``jobs`` with at most ``parallel`` processes at once; ``status(training)`` is called whenever the set of
    members in training changes. Returns ``"done"`` or ``"cancelled"`` (a member was cancelled, or this process got
    SIGTERM: the others are then cancelled too); a member that fails raises ``ValueError`` with its error.
    ``progress_bar``: a bar of finished members with each training member's epoch."""
    context = multiprocessing.get_context("spawn")
    waiting = list(jobs)
    running: dict[int, tuple[MemberJob, BaseProcess]] = {}
    outcome = "done"
    bar = tqdm(total=len(jobs), unit="member", desc="members", disable=not progress_bar)
    try:
        while waiting or running:
            bar.set_postfix_str(_epochs(running), refresh=True)
            while waiting and len(running) < parallel and outcome == "done":
                job = waiting.pop(0)
                process = context.Process(target=_member_main, args=(None if job.resume else job.config,
                                                                     str(job.folder), job.resume))  # fmt: skip
                process.start()
                running[job.index] = (job, process)
                status(sorted(running))
            if outcome != "done" and not running:
                break
            for index, (job, process) in list(running.items()):
                process.join(POLL_S / max(len(running), 1))
                if process.exitcode is None:
                    continue
                del running[index]
                status(sorted(running))
                bar.update(1 if process.exitcode == 0 else 0)
                if process.exitcode == EXIT_CANCELLED:
                    outcome = "cancelled"
                    _stop(running)
                elif process.exitcode != 0:
                    _stop(running)
                    raise ValueError(f"member {index + 1}: {_failure(job.folder, process.exitcode)}")
            if outcome != "done" and not running:
                break
    except BaseException:
        _stop(running)
        raise
    finally:
        bar.close()
    return outcome


def _epochs(running: dict[int, tuple[MemberJob, BaseProcess]]) -> str:
    """``member 1: epoch 12/60, member 2: epoch 10/60`` from the training members' status files."""
    shown = []
    for index, (job, _) in sorted(running.items()):
        state = RunDirectory(job.folder).read_status() if job.folder.is_dir() else {}
        shown.append(f"member {index + 1}: epoch {state.get('epoch') or 0}/{state.get('max_epochs') or '?'}")
    return ", ".join(shown)


def _stop(running: dict[int, tuple[MemberJob, BaseProcess]]) -> None:
    """SIGTERM every member still training and wait until each has saved its state and ended."""
    for _, process in running.values():
        if process.exitcode is None and process.pid is not None:
            process.terminate()
    for _, process in running.values():
        process.join()
    running.clear()


def _failure(folder: Path, exitcode: int) -> str:
    """What a failed member's run folder says (its status message), else its exit code."""
    message = RunDirectory(folder).read_status().get("message") if folder.is_dir() else None
    return str(message) if message else f"its process ended with exit code {exitcode}"
