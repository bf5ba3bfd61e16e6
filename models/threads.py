"""How many torch threads a run uses, set for the duration of a call and restored afterwards.

Library calls never leave torch's process-wide thread count changed: ``torch_threads`` sets it for
a block and puts the caller's value back, however the block ends.

The count comes from what this process can really use: the CPU affinity mask, the cgroup CPU
quota (containers), and the cores other processes keep busy. Two torch processes that each use
every core slow each other down five-fold and more (spinning OpenMP threads fight for the same
cores); a run that leaves the busy cores alone gets its fair share instead. The count is checked
again before every fold (``ThreadGovernor.adapt``), so a run that started alone yields cores to a
second run started later. A thread count the user chose (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``)
is used as it is.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

from lstmbt.models.specs import available_cores

#: environment variables through which a user pins the thread count; set, they win
USER_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
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
    """The thread ceiling of a run: every core the process may use (``cpu_budget``), or None when
    the user pinned ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (torch already follows it)."""
    return None if user_threads() else cpu_budget()


def caller_threads() -> int | None:
    """The thread ceiling for a library call: None (torch's setting is left alone) when the user
    pinned a count by environment or lowered torch's own (``torch.set_num_threads``), else every
    core this process may use."""
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


class ThreadGovernor:
    """Sets torch's thread count to the cores not kept busy by others, at most ``ceiling``.

    ``adapt()`` (called before each fold) reads ``CpuMeter`` and moves the count when it changed.
    The first time it takes fewer threads than the ceiling it warns once (``ContentionWarning``).
    """

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.meter = CpuMeter()
        self.current = self.ceiling  # torch_threads has set it
        self._warned = False

    def wanted(self, others: float | None) -> int:
        """Threads for the next fold given ``others`` busy cores: the idle ones, at least 1."""
        if others is None:
            return self.current
        return max(1, min(self.ceiling, round(self.ceiling - others)))

    def adapt(self) -> int:
        import torch  # heavy: the caller is about to train anyway

        others = self.meter.others_busy()
        threads = self.wanted(others)
        if threads != self.current:
            torch.set_num_threads(threads)
            self.current = threads
        if threads < self.ceiling and not self._warned:
            self._warned = True
            warnings.warn(ContentionWarning(
                f"other processes keep about {others:.1f} of {self.ceiling} cores busy, so training uses {threads} "
                f"thread{'s' if threads > 1 else ''} (rechecked every fold); set OMP_NUM_THREADS to choose the "
                "count yourself"), stacklevel=2)
        return threads


@contextlib.contextmanager
def torch_threads(threads: int | None, adaptive: bool = False) -> Iterator[ThreadGovernor | None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the caller's count.

    Parameters
    ----------
    threads : threads for the block, >= 1; None (or 0) leaves torch's setting alone and does
        not import torch.
    adaptive : yield a ``ThreadGovernor`` with ``threads`` as its ceiling; the block calls its
        ``adapt()`` before each fold to leave cores that other processes use to them.
    """
    if not threads:
        yield None
        return
    if threads < 0:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    import torch  # heavy: only when a thread count is really set

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    governor = ThreadGovernor(threads) if adaptive else None
    try:
        yield governor
    finally:
        torch.set_num_threads(before)
