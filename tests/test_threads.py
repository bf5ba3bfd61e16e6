"""One torch thread per fit, independent fits side by side: as many as the process can really use
(affinity, cgroup quota, the cores other processes keep busy, the user's own choice); results do
not depend on how many."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import warnings

import pandas as pd
import pytest
import torch

import lstmbt.models.threads as threads
from lstmbt.backtest.campaign.executors import LocalExecutor
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.pipeline import run
from lstmbt.models.threads import ContentionWarning, CpuMeter, ThreadGovernor
from helpers import TINY_SPX, set_args


def test_the_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_limit(v1) == 3.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(v1) is None and threads.cgroup_cpu_limit(tmp_path / "none") is None


def test_the_budget_is_the_affinity_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 2.5)
    assert threads.cpu_budget() == 2
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.5)
    assert threads.cpu_budget() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.cpu_budget() == 8


@pytest.mark.parametrize("var", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_count_the_user_pinned_wins(monkeypatch, var):
    for name in threads.USER_THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "cpu_budget", lambda: 4)
    assert threads.default_threads() == 4 and threads.user_threads() is None
    monkeypatch.setenv(var, "3")
    assert threads.user_threads() == 3 and threads.default_threads() is None and threads.caller_threads() is None


def test_the_api_keeps_a_count_the_caller_set_in_torch(monkeypatch):
    for name in threads.USER_THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "cpu_budget", lambda: 4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert threads.caller_threads() is None  # lowered by the caller: left alone
        torch.set_num_threads(4)
        assert threads.caller_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_the_governor_takes_the_idle_cores_and_warns_once(monkeypatch):
    governor = ThreadGovernor(2)
    assert [governor.wanted(x) for x in (0.0, 0.4, 1.0, 1.6, 7.0)] == [2, 2, 1, 1, 1]
    readings = iter([0.0, 1.2, 1.0, 0.1])
    monkeypatch.setattr(governor.meter, "others_busy", lambda: next(readings))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen = [governor.adapt() for _ in range(4)]
    assert seen == [2, 1, 1, 2]
    notes = [w for w in caught if issubclass(w.category, ContentionWarning)]
    assert len(notes) == 1 and "about 1.2 of 2 cores busy" in str(notes[0].message)


def test_fits_run_side_by_side_up_to_the_slots_and_in_order():
    governor = ThreadGovernor(2)
    lock, running, peak = threading.Lock(), [0], [0]

    def task(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return i * i

    assert threads.run_side_by_side([lambda i=i: task(i) for i in range(6)], governor) == [i * i for i in range(6)]
    assert peak[0] == 2
    governor.current = 1  # the load left one core
    peak[0] = 0
    assert threads.run_side_by_side([lambda i=i: task(i) for i in range(4)], governor) == [0, 1, 4, 9]
    assert peak[0] == 1


def test_the_first_error_stops_the_other_fits_at_their_next_fold():
    governor = ThreadGovernor(2)
    folds_after_error = []

    def failing() -> None:
        time.sleep(0.05)
        raise ValueError("fold 3 of lstm_regression failed")

    def long_chain() -> None:
        for fold in range(200):
            time.sleep(0.01)
            governor.checkpoint()  # raises Cancelled once the other task failed
            folds_after_error.append(fold)

    with pytest.raises(ValueError, match="fold 3 of lstm_regression failed"):
        threads.run_side_by_side([long_chain, failing], governor)
    assert len(folds_after_error) < 50  # stopped at a fold boundary soon after, not run to the end


def test_one_thread_per_fit_restores_the_callers_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with threads.one_thread_per_fit(None) as governor:
            assert torch.get_num_threads() == 1 and governor.ceiling == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_meter_counts_other_processes_and_not_its_own():
    meter = CpuMeter()
    end = time.monotonic() + 0.4
    while time.monotonic() < end:  # this process busy: not "others"
        pass
    assert meter.others_busy() < 0.5
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 1.5\n"
                             "while time.monotonic() < end: pass"])
    try:
        time.sleep(0.3)  # the child is past its start-up
        meter.others_busy()
        time.sleep(0.8)
        assert meter.others_busy() > 0.5  # the child's busy loop: about one core
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.filterwarnings("ignore::lstmbt.models.threads.ContentionWarning")  # the machine may be busy
def test_results_do_not_depend_on_how_many_fits_run_at_once():
    config = RunConfig().with_values(TINY_SPX)
    one, two = run(config, threads=1), run(config, threads=2)
    pd.testing.assert_frame_equal(one.predictions, two.predictions, check_exact=True)
    assert one.metrics.keys() == two.metrics.keys()


def test_a_run_under_load_trains_fewer_models_at_once_and_says_so(monkeypatch):
    monkeypatch.setattr(CpuMeter, "others_busy", lambda self: 1.0)
    seen = []
    real = ThreadGovernor.adapt
    monkeypatch.setattr(ThreadGovernor, "adapt", lambda self: seen.append(real(self)) or seen[-1])
    before = torch.get_num_threads()
    with pytest.warns(ContentionWarning, match="1 model trains at a time"):
        run(RunConfig().with_values(TINY_SPX), threads=2)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_the_cli_prints_the_note_once(monkeypatch, run_cli, tmp_path):
    for name in threads.USER_THREAD_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "cpu_budget", lambda: 2)
    monkeypatch.setattr(CpuMeter, "others_busy", lambda self: 1.0)
    code, _, err = run_cli(["run", *set_args({**TINY_SPX, "model.linear": False}), "--out", str(tmp_path / "run")])
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: other processes")]
    assert len(notes) == 1 and "1 model trains at a time" in notes[0]


def test_local_jobs_honour_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr("lstmbt.backtest.campaign.executors._cores", lambda: 2)
    assert LocalExecutor(workers=1).map(_torch_thread_count, [0]) == [1]
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert LocalExecutor(workers=1).map(_torch_thread_count, [0]) == [2]


def _torch_thread_count(_item: int) -> int:
    return torch.get_num_threads()
