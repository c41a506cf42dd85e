"""CPU thread policy: stay fast when other processes share the cores (issue 14, "graceful under load").

Why: torch runs its CPU kernels (and MKL / oneDNN) on an OpenMP team of one thread per core. Every
parallel operation ends at a barrier where the team waits for its slowest thread, and by default
GNU OpenMP *spins* there. When another busy process shares the cores, one thread of the team is
often descheduled, so each of the thousands of small operations of a training step waits for a
scheduler time slice while its sibling burns the CPU spinning: the demo's epochs went from 0.7 s
to 25-67 s, far beyond the share of CPU lost.

The policy (default ``FM_THREAD_POLICY=auto``):

* *Passive waiting*: ``OMP_WAIT_POLICY=PASSIVE`` is put into the environment before torch is
  imported (OpenMP reads it once, when torch loads it), and into the environment of every process
  the workbench starts. Waiting threads sleep instead of spinning.
* *Threads from the CPUs actually free*: the intra-op thread count is the number of CPUs this
  process may run on (affinity mask, cgroup quota) minus the cores other processes keep busy
  (measured from ``/proc/stat``), at least 1. Training measures again at every epoch and follows
  the load (two runs on 2 cores settle at 1 thread each; alone a run goes back to every core).

Overrides: ``FM_NUM_THREADS=N`` fixes the thread count (``OMP_NUM_THREADS`` set by the user is also
respected); a user's own ``OMP_WAIT_POLICY`` is kept; ``FM_THREAD_POLICY=off`` restores torch's
defaults (one thread per core, spinning waits), the behaviour before this fix.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

POLICY_ENV = "FM_THREAD_POLICY"  # auto (default) | off
THREADS_ENV = "FM_NUM_THREADS"  # a whole number >= 1, or auto (default)
PASSIVE_WAIT = {"OMP_WAIT_POLICY": "PASSIVE"}
SAMPLE_SECONDS = 0.25  # how long the first load measurement watches the CPUs (s)
MIN_INTERVAL = 0.2  # shorter intervals (s) are too coarse for /proc/stat's 10 ms ticks: the count stays


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


def _quota_cpus(cgroup_root: Path) -> float | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max``: ``quota period`` or ``max period``), or None."""
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def allowed_cpus() -> set[int]:
    """The CPU ids this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def available_cpus(cpus: set[int] | None = None, *, cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """How many CPUs this process can use: its affinity mask, capped by a cgroup CPU quota (at least 1)."""
    count = len(allowed_cpus() if cpus is None else cpus)
    quota = _quota_cpus(cgroup_root)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(count, 1)


def choose_threads(*, cpus: int, others_busy: float) -> int:
    """Intra-op threads for ``cpus`` usable CPUs of which other processes keep ``others_busy`` cores busy:
    the cores left free (rounded to nearest), at least 1, at most ``cpus``."""
    free = cpus - max(others_busy, 0.0)
    return max(1, min(cpus, math.floor(free + 0.5)))


def _busy_seconds(cpus: set[int]) -> float:
    """CPU seconds the given CPUs spent busy since boot (``/proc/stat``; steal counts as busy)."""
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = [int(v) for v in fields[:8]]
            total += sum(values) - values[3] - values[4]  # minus idle and iowait
    return total / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process (every thread) and of its waited-for children."""
    return sum(os.times()[:4])


class LoadMeter:
    """Cores that *other* processes kept busy on our CPUs since the last :meth:`read` (0 = quiet)."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.cpus = allowed_cpus() if cpus is None else cpus
        self._mark()

    def _mark(self) -> None:
        self._wall = time.monotonic()
        try:
            self._busy = _busy_seconds(self.cpus)
        except (OSError, ValueError):
            self._busy = math.nan
        self._own = _own_seconds()

    def read(self) -> float:
        """Others' busy cores since the last read; NaN (and the interval goes on) before ``MIN_INTERVAL`` s,
        or when /proc/stat is unreadable."""
        if time.monotonic() - self._wall < MIN_INTERVAL:
            return math.nan
        wall, busy, own = self._wall, self._busy, self._own
        self._mark()
        elapsed = self._wall - wall
        if math.isnan(busy) or math.isnan(self._busy):
            return math.nan
        return max((self._busy - busy) - (self._own - own), 0.0) / elapsed


@dataclass
class ThreadPolicy:
    """The thread count chosen for this process and why; :meth:`update` follows the load (training epochs)."""

    threads: int
    cpus: int
    others_busy: float
    automatic: bool
    meter: LoadMeter | None = None

    def describe(self) -> str:
        how = f"{self.others_busy:.1f} of {self.cpus} cores busy elsewhere" if self.automatic else "fixed"
        return f"{self.threads} torch thread{'s' if self.threads != 1 else ''} ({how})"

    def update(self) -> int:
        """Measure the other processes' load since the last call and set the thread count it calls for."""
        if not self.automatic or self.meter is None:
            return self.threads
        others = self.meter.read()
        if not math.isnan(others) or self.threads == 0:
            self.others_busy = 0.0 if math.isnan(others) else others
            self.threads = choose_threads(cpus=self.cpus, others_busy=self.others_busy)
            _set_threads(self.threads)
        return self.threads


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


_PROCESS_POLICY: ThreadPolicy | None = None
_LOCK = threading.Lock()  # the workbench server designs for several sessions at once


def configure_threads(*, sample_seconds: float = SAMPLE_SECONDS) -> ThreadPolicy | None:
    """Apply the policy to this process (called where training, prediction and design start).

    The first call measures the other processes' load for ``sample_seconds`` (s); later calls measure it
    since the previous call (no wait). Sets torch's intra-op threads and returns the process's policy
    (None with ``FM_THREAD_POLICY=off``). Raises ValueError for a bad override.
    """
    if not policy_enabled():
        return None
    with _LOCK:
        return _configure(sample_seconds)


def _configure(sample_seconds: float) -> ThreadPolicy:
    global _PROCESS_POLICY
    prepare_environment()  # for processes started later by this one
    fixed = fixed_threads()
    if _PROCESS_POLICY is not None and _PROCESS_POLICY.automatic and fixed is None:
        _PROCESS_POLICY.update()
        return _PROCESS_POLICY
    cpus = available_cpus()
    if fixed is not None:
        _set_threads(fixed)
        _PROCESS_POLICY = ThreadPolicy(threads=fixed, cpus=cpus, others_busy=math.nan, automatic=False)
        return _PROCESS_POLICY
    meter = LoadMeter()
    time.sleep(sample_seconds)
    _PROCESS_POLICY = ThreadPolicy(threads=0, cpus=cpus, others_busy=0.0, automatic=True, meter=meter)
    _PROCESS_POLICY.update()
    return _PROCESS_POLICY
