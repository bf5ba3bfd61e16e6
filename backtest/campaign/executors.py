"""Where independent jobs run: sweep trials and the tickers of a universe.

``make_executor("local")`` (the default) is a process pool sized to the cores this process may use
(affinity and cgroup quota; ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, when set, give the count
instead, as they do for ``lstmbt run``), each worker training ``cores // workers`` models side by
side (one torch thread each; ``pipeline.run`` reads the job's torch count), so the cores are never
oversubscribed; with one worker (or one job) it runs in this process. ``split(n_jobs)`` says how
it will share the cores, before it runs. ``make_executor("ray", address=...)`` submits the same jobs as Ray
tasks of one CPU each, to a running cluster or to a local instance started on demand.

Both call ``fn(item)`` for every item and hand each result back to the caller's process in
``on_done(index, result)`` as it finishes, so the caller (never a worker) writes run directories.
Results are identical across executors because a job depends only on its item: training is
seeded from the config and runs on one thread per fit.
"""

from __future__ import annotations

import contextlib
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any, Callable, Sequence

from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.interrupts import reclaim, spawning
from lstmbt.models.plugins import plugin_folders, plugin_search
from lstmbt.models.threads import USER_THREAD_VARS, cpu_budget, torch_threads, user_threads

EXECUTORS = ("local", "ray")

#: on_done(index, result): called in the caller's process as each job finishes, in finishing order.
OnDone = Callable[[int, Any], None]


def make_executor(kind: str = "local", *, address: str | None = None, workers: int | None = None):
    """A ``LocalExecutor`` or ``RayExecutor``; ``address`` (Ray only) is e.g. ``ray://head:10001``
    or ``auto``; ``workers`` caps the local pool (default: the cores this process may use)."""
    if kind not in EXECUTORS:
        raise ConfigError(f"--executor {kind!r} is not known; use one of: {', '.join(EXECUTORS)}")
    if kind == "local":
        if address:
            raise ConfigError("--address only applies to --executor ray; drop it or add --executor ray")
        return LocalExecutor(workers=workers)
    return RayExecutor(address=address)


def _cores() -> int:
    return cpu_budget()


def _pinned_by() -> str | None:
    """``"OMP_NUM_THREADS=2"``: the variable that pinned the thread count, or None."""
    return next((f"{name}={os.environ[name].strip()}" for name in USER_THREAD_VARS
                 if os.environ.get(name, "").strip().isdigit() and int(os.environ[name]) > 0), None)


#: the job's torch thread count, readable by the job while it runs (set and restored around it)
THREADS_ENV = "LSTMBT_TORCH_THREADS"


def _call(fn: Callable[[Any], Any], item: Any, threads: int, folders: tuple[str, ...] = ()) -> Any:
    """``fn(item)`` on ``threads`` torch threads, importing plug-ins from ``folders`` too (the caller's
    ``--plugin-path``: a worker process starts without them). It runs in the caller's process when
    the local pool has one worker, so the thread count, ``THREADS_ENV`` and the folders are put back
    however the job ends."""
    previous = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)
    try:
        with torch_threads(threads), plugin_search(folders):
            return fn(item)
    finally:
        if previous is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = previous


class LocalExecutor:
    """A spawn-started process pool of ``workers`` processes (default: one per core)."""

    kind = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers

    def split(self, n_jobs: int) -> dict[str, Any]:
        """How ``map`` over ``n_jobs`` items shares the cores: ``cores`` (those this process may use,
        or the count ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` pinned, named in ``pinned_by``),
        ``at_once`` jobs side by side, each on ``threads`` torch threads (the fits it runs side by side)."""
        cores = user_threads() or _cores()  # a pinned count is the whole budget, as in `lstmbt run`
        workers = max(1, min(self.workers or cores, n_jobs))
        return {"executor": self.kind, "cores": cores, "pinned_by": _pinned_by(), "at_once": workers,
                "threads": max(1, cores // workers)}

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], on_done: OnDone | None = None) -> list[Any]:
        """``[fn(item) for item in items]``, run ``split(len(items))["at_once"]`` at a time."""
        plan = self.split(len(items))
        workers, threads = plan["at_once"], plan["threads"]
        results: list[Any] = [None] * len(items)
        if workers == 1 or len(items) <= 1:
            for index, item in enumerate(items):
                results[index] = _call(fn, item, threads)
                if on_done:
                    on_done(index, results[index])
            return results
        # spawn, not fork: a forked child would inherit torch's thread pool and any open locks
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_ignore_ctrl_c) as pool:
            folders = plugin_folders()  # a spawned worker starts without the caller's --plugin-path
            futures: dict[Any, int] = {}
            try:
                with spawning():  # the workers start deaf to a terminal's Ctrl-C: this process answers it
                    for index, item in enumerate(items):
                        futures[pool.submit(_call, fn, item, threads, folders)] = index
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in sorted(done, key=futures.get):
                        index = futures[future]
                        results[index] = future.result()  # a worker's LstmbtError re-raises here, intact
                        if on_done:
                            on_done(index, results[index])
            except BaseException:
                _stop_workers(pool, set(futures))
                raise
        return results


def _ignore_ctrl_c() -> None:
    """Worker initializer: SIGINT ignored for good (the driver stops the pool); SIGTERM keeps its
    default, so the driver's terminate() ends a worker at once and without a word."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool: ProcessPoolExecutor, futures: set[Any]) -> None:
    """Cancel the jobs not started and end the running ones now (their results would be dropped),
    so an interrupted or failed map returns at once instead of after the jobs in flight."""
    for future in futures:
        future.cancel()
    # ProcessPoolExecutor has no public way to end running workers before Python 3.14 (terminate_workers)
    for process in list(getattr(pool, "_processes", {}).values()):
        with contextlib.suppress(Exception):
            process.terminate()


class RayExecutor:
    """Ray tasks of one CPU each; connects to ``address`` or starts a local instance."""

    kind = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def split(self, n_jobs: int) -> dict[str, Any]:
        """Ray schedules the tasks, one CPU and one torch thread each; how many run at once is the cluster's."""
        return {"executor": self.kind, "cores": None, "pinned_by": None, "at_once": None, "threads": 1}

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], on_done: OnDone | None = None) -> list[Any]:
        """``[fn(item) for item in items]`` as Ray tasks; results come back to this process."""
        ray = _import_ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except ConnectionError as exc:
                raise ConfigError(f"cannot connect to the Ray cluster at {self.address}: {exc}; "
                                  "check --address (e.g. ray://head-node:10001) or drop it to start "
                                  "a local instance") from None
            finally:
                reclaim()  # ray.init sets a SIGTERM handler that exits 15 without a line
        task = ray.remote(num_cpus=1, max_retries=0)(_call)
        refs = {task.remote(fn, item, 1, plugin_folders()): index for index, item in enumerate(items)}
        results: list[Any] = [None] * len(items)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                index = refs[done[0]]
                results[index] = _unwrap(ray, done[0])
                if on_done:
                    on_done(index, results[index])
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return results


def _unwrap(ray, ref) -> Any:
    """The task's result; a user-input error raised in a task comes back as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.as_instanceof_cause()
        if isinstance(getattr(exc, "cause", None), Exception):
            raise exc.cause from None
        raise cause from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is an optional extra; install it with "
                          "pip install -c requirements.lock -e '.[ray]'") from None
    return ray
