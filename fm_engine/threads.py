"""CPU thread policy: stay fast when other processes share the cores (issue 14, "graceful under load").

Why: torch runs its CPU kernels (and MKL / oneDNN) on an OpenMP team of one thread per core. Every
parallel operation ends at a barrier where the team waits for its slowest thread, and by default
GNU OpenMP *spins* there. When another busy process shares the cores, one thread of the team is
often descheduled, so each of the thousands of small operations of a training step waits for a
scheduler time slice while its sibling burns the CPU spinning: the demo's epochs went from 0.7 s
to 5-67 s beside other work, far beyond the share of CPU lost.

The policy (default ``FM_THREAD_POLICY=auto``):

* *Passive waiting*: ``OMP_WAIT_POLICY=PASSIVE`` is put into the environment before torch is
  imported (OpenMP reads it once, when torch loads it), and into the environment of every process
  the workbench starts. Waiting threads sleep instead of spinning.
* *One intra-op thread per process* (``DEFAULT_THREADS``): our networks are small, so a second
  thread gains little even on a quiet machine (demo epoch 0.73-0.79 s with two spinning threads,
  0.86-0.89 s with one; two *passive* threads 1.74 s) and a fixed count keeps runs bit-reproducible
  whatever else the machine is doing (results differ in the last bits between thread counts).

Overrides: ``FM_NUM_THREADS=N`` sets the thread count (``OMP_NUM_THREADS`` set by the user is also
respected), e.g. for a large encoder on a dedicated machine; a user's own ``OMP_WAIT_POLICY`` is kept;
``FM_THREAD_POLICY=off`` restores torch's defaults (one thread per core, spinning waits), the
behaviour before this policy.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

POLICY_ENV = "FM_THREAD_POLICY"  # auto (default) | off
THREADS_ENV = "FM_NUM_THREADS"  # a whole number >= 1, or auto (default)
PASSIVE_WAIT = {"OMP_WAIT_POLICY": "PASSIVE"}
DEFAULT_THREADS = 1  # intra-op threads per process unless FM_NUM_THREADS / OMP_NUM_THREADS say otherwise


def policy_enabled(env: Mapping[str, str] | None = None) -> bool:
    """False when ``FM_THREAD_POLICY=off`` (torch's own defaults); ValueError for other unknown values."""
    env = os.environ if env is None else env
    value = env.get(POLICY_ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "off"):
        raise ValueError(f"{POLICY_ENV}={env.get(POLICY_ENV)!r}: expected 'auto' or 'off'")
    return value == "auto"


def fixed_threads(env: Mapping[str, str] | None = None) -> int | None:
    """The thread count the user fixed (``FM_NUM_THREADS``, else ``OMP_NUM_THREADS``), or None for automatic."""
    env = os.environ if env is None else env
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        raw = env.get(name, "").strip()
        if not raw or (name == THREADS_ENV and raw.lower() == "auto"):
            continue
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"{name}={raw!r}: expected a whole number of threads >= 1" + (
                " or 'auto'" if name == THREADS_ENV else ""))  # fmt: skip
        return value
    return None


def training_threads(env: Mapping[str, str] | None = None) -> int:
    """The torch threads one training process uses: the fixed count, else :data:`DEFAULT_THREADS`; with
    ``FM_THREAD_POLICY=off`` torch's own default, one per core."""
    env = os.environ if env is None else env
    if not policy_enabled(env):
        return os.cpu_count() or 1
    return fixed_threads(env) or DEFAULT_THREADS


def thread_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables to add to a child process's environment (``env`` defaults to ours) so its OpenMP
    threads wait passively; empty with ``FM_THREAD_POLICY=off``. A value the user set is never replaced."""
    env = os.environ if env is None else env
    if not policy_enabled(env):
        return {}
    return {key: value for key, value in PASSIVE_WAIT.items() if key not in env}


def prepare_environment(env: MutableMapping[str, str] | None = None) -> None:
    """Put the passive wait policy into ``env`` (default ``os.environ``); effective only before torch is imported."""
    env = os.environ if env is None else env
    env.update(thread_environment(env))


@dataclass(frozen=True)
class ThreadPolicy:
    """The thread count applied to this process and whether the user fixed it."""

    threads: int
    fixed: bool

    def describe(self) -> str:
        how = "set by FM_NUM_THREADS / OMP_NUM_THREADS" if self.fixed else "default"
        return f"{self.threads} torch thread{'s' if self.threads != 1 else ''} ({how})"


def _set_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() == threads:
        return
    torch.set_num_threads(threads)
    try:  # numpy's OpenBLAS threads, when threadpoolctl is installed (it is optional)
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")
    except ImportError:
        pass


_LOCK = threading.Lock()  # the workbench server designs for several sessions at once


def configure_threads() -> ThreadPolicy | None:
    """Apply the policy to this process (called where training, prediction and design start): passive
    waits for processes started later, and torch's intra-op thread count. Returns the policy (None with
    ``FM_THREAD_POLICY=off``); raises ValueError naming a bad override."""
    if not policy_enabled():
        return None
    with _LOCK:
        prepare_environment()  # for processes started later by this one
        fixed = fixed_threads()
        policy = ThreadPolicy(threads=fixed or DEFAULT_THREADS, fixed=fixed is not None)
        _set_threads(policy.threads)
        return policy
