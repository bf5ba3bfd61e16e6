"""The executors: results in item order, each once to on_done, user errors intact, threads per worker."""

from __future__ import annotations

import builtins
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from lstmbt.backtest.config import parse_overrides
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.campaign.executors import LocalExecutor, make_executor
from lstmbt.backtest.rundir import pid_alive


def torch_threads(_: object) -> int:
    import torch

    return torch.get_num_threads()


def test_unknown_executor_and_stray_address_are_refused():
    with pytest.raises(ConfigError, match="not known; use one of: local, ray"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="only applies to --executor ray"):
        make_executor("local", address="ray://head:10001")


@pytest.mark.parametrize("workers", [1, 2])
def test_local_results_in_item_order_and_each_reported_once(workers):
    seen: dict[int, object] = {}
    items = [["a.b=1"], ["c.d=2"], ["e.f=3"]]
    results = LocalExecutor(workers=workers).map(parse_overrides, items, on_done=seen.__setitem__)
    assert results == [{"a.b": 1}, {"c.d": 2}, {"e.f": 3}]
    assert seen == dict(enumerate(results))


@pytest.mark.parametrize("workers", [1, 2])
def test_local_worker_error_reaches_the_caller_as_itself(workers):
    with pytest.raises(ConfigError, match="is not key=value"):
        LocalExecutor(workers=workers).map(parse_overrides, [["a.b=1"], ["oops"]])


def test_local_pool_splits_the_cores_between_workers(monkeypatch):
    monkeypatch.setattr("lstmbt.backtest.campaign.executors._cores", lambda: 4)
    assert LocalExecutor(workers=2).map(torch_threads, [0, 1]) == [2, 2]
    assert LocalExecutor(workers=1).map(torch_threads, [0]) == [4]


def mark_and_wait(path: str) -> None:
    """A job that says it runs (a file), then takes a minute."""
    Path(path).touch()
    time.sleep(60)


def _pool_workers() -> list[int]:
    """The pids of this process's spawned pool workers (/proc)."""
    pids = [int(pid) for task in Path(f"/proc/{os.getpid()}/task").iterdir()
            for pid in (task / "children").read_text().split()]
    return [pid for pid in pids if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def _leaves_ctrl_c_alone(pid: int) -> bool:
    """Whether process ``pid`` blocks or ignores SIGINT, as /proc/PID/status says."""
    masks = dict(re.findall(r"^(SigBlk|SigIgn):\s*([0-9a-f]+)", Path(f"/proc/{pid}/status").read_text(), re.M))
    return bool((int(masks["SigBlk"], 16) | int(masks["SigIgn"], 16)) & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the workers from /proc (Linux)")
def test_an_interrupted_pool_ends_its_running_workers_at_once_and_they_leave_ctrl_c_to_it(tmp_path):
    marks = [tmp_path / "a", tmp_path / "b"]
    workers: dict[int, bool] = {}
    sent: list[float] = []

    def interrupt_once_both_run() -> None:
        deadline = time.monotonic() + 120
        while not all(mark.exists() for mark in marks) and time.monotonic() < deadline:
            time.sleep(0.05)
        workers.update({pid: _leaves_ctrl_c_alone(pid) for pid in _pool_workers()})
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C of the driver, which waits for the jobs

    threading.Thread(target=interrupt_once_both_run, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        LocalExecutor(workers=2).map(mark_and_wait, [str(mark) for mark in marks])
    assert time.monotonic() - sent[0] < 20  # the jobs of a minute were ended, not waited for
    assert len(workers) == 2 and all(workers.values())  # a terminal's Ctrl-C reaches the driver alone
    assert not any(pid_alive(pid) for pid in workers)


def test_ray_missing_gives_the_install_line(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"pip install .*\[ray\]"):
        make_executor("ray").map(abs, [1])


def test_ray_matches_local_and_passes_user_errors_through():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        items = [["a.b=1"], ["c.d=[1, 2]"], ["e.f='x'"]]
        seen: dict[int, object] = {}
        got = make_executor("ray").map(parse_overrides, items, on_done=seen.__setitem__)
        assert got == LocalExecutor(workers=1).map(parse_overrides, items)
        assert seen == dict(enumerate(got))
        # each task holds one CPU, so it trains on one torch thread (test modules don't reach Ray workers)
        assert make_executor("ray").map(os.getenv, ["LSTMBT_TORCH_THREADS"]) == ["1"]
        with pytest.raises(ConfigError, match="is not key=value"):
            make_executor("ray").map(parse_overrides, [["oops"]])
    finally:
        ray.shutdown()
