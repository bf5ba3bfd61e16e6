"""How a run uses the cores: one torch thread per fit, independent fits side by side.

Every fit computes on one intra-op thread (``one_thread_per_fit``), so no number depends on the
machine's cores or load, and there is no thread cliff: two torch processes that each spread one
small fit over every core slowed each other down five-fold and more (spinning OpenMP threads
fighting for the same cores). The cores go to independent fits instead: both targets' models,
the seeds of an ensemble, run on threads side by side (``run_side_by_side``).

How many run at once comes from what this process can really use: the CPU affinity mask, the
cgroup CPU quota (containers), a count the user chose (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
or a lowered ``torch.set_num_threads`` from Python), and the cores other processes keep busy,
re-read between folds (``ThreadGovernor``), so a run that started alone yields cores to a second
run started later. Library calls never leave torch's process-wide thread count changed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
import re
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, TypeVar

from lstmbt.models.specs import available_cores

T = TypeVar("T")

#: environment variables through which a user pins the thread count; set, they win
USER_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: what OpenMP reads as a thread count: whole numbers from 1, or a comma list of them (one per nesting level)
_THREAD_COUNT = re.compile(r"\s*\+?0*[1-9]\d{0,8}\s*(,\s*\+?0*[1-9]\d{0,8}\s*)*")
#: /proc/stat columns of busy time (user nice system idle iowait irq softirq steal): all but idle, iowait
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


class ContentionWarning(UserWarning):
    """Other processes keep cores busy, so this run trains on fewer threads than the machine has."""


def user_threads() -> int | None:
    """The thread count the user pinned through ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, else None."""
    for name in USER_THREAD_VARS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def invalid_thread_vars(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``{name: value}`` of the ``USER_THREAD_VARS`` set to what is no thread count (``abc``, ``0``,
    ``-1``, empty): OpenMP prints "libgomp: Invalid value ..." for one when it loads, and MKL
    quietly runs torch on one thread."""
    return {name: environ[name] for name in USER_THREAD_VARS
            if name in environ and not _THREAD_COUNT.fullmatch(environ[name])}


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """Cores the cgroup CPU quota allows (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``), None if unlimited."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    with contextlib.suppress(OSError, ValueError):
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    return None


def cpu_budget() -> int:
    """Cores this process may use: the affinity mask, capped by the cgroup quota (at least 1)."""
    cores = available_cores()
    limit = cgroup_cpu_limit()
    return max(1, min(cores, math.floor(limit + 1e-9)) if limit is not None else cores)


def default_threads() -> int | None:
    """How many fits a run may train side by side: every core the process may use (``cpu_budget``),
    or None when the user pinned ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (torch's count follows it)."""
    return None if user_threads() else cpu_budget()


def caller_threads() -> int | None:
    """How many fits a library call may run side by side: None (torch's current count, which
    follows them) when the user pinned a count by environment or lowered torch's own
    (``torch.set_num_threads``), else every core this process may use."""
    if user_threads():
        return None
    torch = sys.modules.get("torch")  # imported by the caller already: its count may be theirs
    budget = cpu_budget()
    if torch is not None and torch.get_num_threads() < budget:
        return None
    return budget


class CpuMeter:
    """Cores other processes kept busy since the last reading: the machine's busy time from
    ``/proc/stat`` minus this process's own CPU time, over the wall time in between."""

    def __init__(self) -> None:
        self._last = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            ticks = os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):  # not Linux: no reading, no adaptation
            return None
        busy = sum(int(fields[i]) for i in _BUSY_FIELDS if i < len(fields)) / ticks
        own = sum(os.times()[:4])
        return time.monotonic(), busy, own

    def others_busy(self) -> float | None:
        """Mean number of cores busy with other processes since the previous call (None: unknown)."""
        now = self._sample()
        last, self._last = self._last, now
        if now is None or last is None or now[0] - last[0] < 0.05:
            return None
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0]))


class Cancelled(Exception):
    """A side-by-side task stopped at a fold boundary because another task failed or the run was interrupted."""


class ThreadGovernor:
    """How many fits run side by side: at most ``ceiling``, and no more than the cores other
    processes leave idle (at least 1).

    Every task holds a slot while it computes (``slot``) and, between folds, calls ``checkpoint``,
    which re-reads ``CpuMeter`` (``adapt``) and hands its slot back and waits for one, so a run that
    started alone yields cores to a second run started later. The first time fewer fits may run
    than the ceiling it warns once (``ContentionWarning``). Each fit computes on one thread, so how
    many run at once never changes a number.
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.meter = CpuMeter()
        self.current = self.ceiling
        self._warned = False
        self._running = 0
        self._cond = threading.Condition()
        self.cancel = threading.Event()

    def wanted(self, others: float | None) -> int:
        """Fits for the next fold given ``others`` busy cores: the idle ones, at least 1."""
        if others is None:
            return self.current
        return max(1, min(self.ceiling, round(self.ceiling - others)))

    def adapt(self) -> int:
        """Re-read the load and set how many fits may run at once; returns that count."""
        with self._cond:
            others = self.meter.others_busy()
            wanted = self.wanted(others)
            if wanted != self.current:
                self.current = wanted
                self._cond.notify_all()
            if wanted < self.ceiling and not self._warned:
                self._warned = True
                warnings.warn(ContentionWarning(
                    f"other processes keep about {others:.1f} of {self.ceiling} cores busy, so {wanted} "
                    f"model{'s train' if wanted > 1 else ' trains'} at a time (rechecked every fold); set "
                    "OMP_NUM_THREADS to choose the count yourself"), stacklevel=3)  # the fold loop that checked
            return wanted

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``current`` slots for the block (waits for a free one)."""
        self._acquire()
        try:
            yield
        finally:
            self._release()

    def checkpoint(self) -> None:
        """Between two folds: raise ``Cancelled`` if the run is stopping, else adapt to the load
        and let another task (or this one) have the slot."""
        if self.cancel.is_set():
            raise Cancelled()
        self.adapt()
        self._release()
        self._acquire()

    def _acquire(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._running < self.current or self.cancel.is_set())
            self._running += 1

    def _release(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()


def run_side_by_side(tasks: Sequence[Callable[[], T]], governor: ThreadGovernor | None) -> list[T]:
    """Call every task and return their results in order, up to ``governor.ceiling`` at once on
    threads (in this thread when one task or one slot).

    Tasks call ``governor.checkpoint()`` between folds. The first error stops the tasks not yet
    started and, at their next fold boundary, the running ones; it is raised once they stopped, as
    is an interrupt (Ctrl-C) of the waiting caller.
    """
    if governor is None or governor.ceiling == 1 or len(tasks) <= 1:
        if governor is None:
            return [task() for task in tasks]
        with governor.slot():
            return [task() for task in tasks]

    def guarded(task: Callable[[], T]) -> T:
        with governor.slot():
            if governor.cancel.is_set():
                raise Cancelled()
            return task()

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(governor.ceiling, len(tasks)),
                                               thread_name_prefix="lstmbt-fit") as pool:
        futures = [pool.submit(guarded, task) for task in tasks]
        try:
            done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        except BaseException:  # Ctrl-C while waiting: the others stop at their next fold
            governor.cancel.set()
            raise
        if any(future.exception() is not None for future in done):
            governor.cancel.set()
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
    return [future.result() for future in futures]


@contextlib.contextmanager
def one_thread_per_fit(workers: int | None) -> Iterator[ThreadGovernor]:
    """Run the block with torch on one intra-op thread and yield a ``ThreadGovernor`` for up to
    ``workers`` fits side by side (None: torch's current count, which already follows
    ``OMP_NUM_THREADS`` and a caller's ``torch.set_num_threads``); torch's count is restored after.

    One thread per fit makes every number independent of the machine's cores and load; the cores
    go to independent models (both targets, seeds) instead, which on small LSTMs is also faster:
    a second intra-op thread slowed a 32-unit LSTM's training step down (bench/RESULTS.md).
    """
    import torch  # heavy: the caller is about to train

    governor = ThreadGovernor(workers or torch.get_num_threads())
    with torch_threads(1):
        yield governor


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the caller's count.

    ``threads``: >= 1; None (or 0) leaves torch's setting alone and does not import torch. A run
    inside the block (an executor's job) takes that count as the fits it may run side by side.
    """
    if not threads:
        yield
        return
    if threads < 0:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    import torch  # heavy: only when a thread count is really set

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
