"""Nothing left behind, nothing lost: faults around a run's files (issue 11, item 4).

Every case goes through the real entry point (``backtest.cli.main``, or the ``lstmbt`` script in a
subprocess that is frozen with SIGSTOP at a chosen point and killed) and checks the exit status,
that the last stderr line is the one message, that no traceback is printed, what is left in the
run's parent folder (no run directory, ``.NAME.partial`` or ``.NAME.tmp-*`` where none should be)
and that saved work is untouched. The faults are made here: exceptions of every type before and
after the first fold, SIGKILL during the final save, a second process on the same run, a disk
reported full, a real file-size limit (and a real tmpfs where this machine allows mounting one),
a read-only filesystem, links to nothing, and damaged or edited fold files.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pytest

import lstmbt.backtest.cli.app as cli
import lstmbt.backtest.cli.options as cli_options
import lstmbt.backtest.pipeline as pipeline
import lstmbt.backtest.rundir as rundir
from lstmbt.backtest.checkpoint import check_free_space, estimate_run_bytes, saved_folds
from lstmbt.backtest.errors import DataError
from lstmbt.backtest.partial import partial_dir, remove_stale_tmp, saved_work, start_partial
from helpers import call_main
from test_resume import ARGS, LSTM, assert_same_run, tiny_config

ROOT = Path(__file__).resolve().parents[1]
LOGIT = "logistic_classification"  # the cold-start model of the tiny run: refitted per fold
Usage = namedtuple("Usage", "total used free")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- shared runs


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted tiny run that every resumed run must equal."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert call_main(["run", *ARGS, "--out", str(out)])[0] == 0
    return out


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """The partial directory of a run stopped (Ctrl-C) after two folds of the logistic model:
    the warm LSTM chain is complete, with its newest state (one fit at a time, so the chains run
    in their fixed order, the linear baselines last)."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    real_call = cli_options.progress_bars.__call__

    def interrupt(self, stage, done, total):
        if stage == LOGIT and done == 2:
            raise KeyboardInterrupt
        real_call(self, stage, done, total)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli_options.progress_bars, "__call__", interrupt)
        mp.setenv("OMP_NUM_THREADS", "1")
        assert call_main(["run", *ARGS, "--out", str(out)])[0] == 130
    return partial_dir(out)


@pytest.fixture(scope="module")
def all_saved(tmp_path_factory) -> Path:
    """The partial directory of a run stopped by Ctrl-C while saving its run directory: every
    fold is saved, and the line says so."""
    out = tmp_path_factory.mktemp("all_saved") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("lstmbt.reports.render_report", _raiser(KeyboardInterrupt()))
        code, _, err = call_main(["run", *ARGS, "--out", str(out)])
    done, total = saved_folds(partial_dir(out) / "folds")
    assert code == 130 and done == total and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"interrupted: {done} of {total} folds saved; continue with: "
                                            f"lstmbt run --resume {out}")
    assert _names(out.parent) == [partial_dir(out).name]  # no run directory, no .run.tmp-*
    return partial_dir(out)


def _copy(partial: Path, tmp_path: Path) -> Path:
    """A copy of a fixture's partial directory in ``tmp_path/runs``; returns the run's --out."""
    out = tmp_path / "runs" / "run"
    shutil.copytree(partial, partial_dir(out))
    return out


def _raiser(exc: BaseException) -> Callable[..., None]:
    def fail(*args, **kwargs):
        raise exc
    return fail


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes, but the lock (which holds the pid of its last user)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "lock"}


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _failed(code: int, err: str, status: int = 2) -> str:
    """The one message of a failed command: its status, the last line, no traceback."""
    assert code == status, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err
    return last


def _never(*args, **kwargs):
    raise AssertionError("training started although the run should have been refused before it")


# --------------------------------------------------------------------------- errors before and after the first fold


@pytest.mark.parametrize("exc, status", [
    (ValueError("a bad value"), 1), (RuntimeError("a failure"), 1), (KeyError("column"), 1),
    (OSError(errno.ENOSPC, "No space left on device", "prices.parquet"), 2), (DataError("refused input"), 2),
], ids=["ValueError", "RuntimeError", "KeyError", "OSError-ENOSPC", "DataError"])
def test_any_error_before_the_first_fold_leaves_nothing(exc, status, tmp_path, monkeypatch, run_cli):
    parent = tmp_path / "runs"
    parent.mkdir()
    monkeypatch.setattr(pipeline, "load_checked", _raiser(exc))
    code, _, err = run_cli(["run", *ARGS, "--out", str(parent / "x")])
    _failed(code, err, status)
    assert _names(parent) == []
    code, _, err = run_cli(["run", "--resume", str(parent / "x")])
    assert "nothing to resume" in _failed(code, err)  # not "interrupted", not a crash


def test_after_a_failure_before_the_first_fold_the_same_out_runs(reference, tmp_path, monkeypatch, run_cli):
    out = tmp_path / "runs" / "x"
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "load_checked", _raiser(RuntimeError("a failure")))
        _failed(*run_cli(["run", *ARGS, "--out", str(out)])[::2], status=1)
    code, _, err = run_cli(["run", *ARGS, "--out", str(out)])
    assert code == 0, err
    assert_same_run(out, reference)
    assert _names(out.parent) == ["x"]


def test_a_failure_after_training_keeps_the_folds_and_says_so(reference, tmp_path, monkeypatch, run_cli):
    out = tmp_path / "runs" / "x"
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "score_run", _raiser(DataError("scoring refused")))
        code, _, err = run_cli(["run", *ARGS, "--out", str(out)])
    done, what = saved_work(partial_dir(out))
    assert done > 0 and what == f"{done} of {done} folds"
    assert _failed(code, err) == (f"error: scoring refused; {what} saved in {partial_dir(out)}: continue with "
                                  f"`lstmbt run --resume {out}` once that is fixed")
    assert _names(out.parent) == [partial_dir(out).name]
    code, _, err = run_cli(["run", "--resume", str(out)])
    assert code == 0, err
    assert_same_run(out, reference)


def test_an_unexpected_error_on_resume_notes_the_kept_folds(stopped, tmp_path, monkeypatch, run_cli):
    out = _copy(stopped, tmp_path)
    before = _files(partial_dir(out))
    monkeypatch.setattr(pipeline, "score_run", _raiser(ValueError("a bug")))
    code, _, err = run_cli(["run", "--resume", str(out)])
    _failed(code, err, status=1)
    done, what = saved_work(partial_dir(out))
    assert f"note: {what} saved in {partial_dir(out)}: continue with `lstmbt run --resume {out}`" in err
    assert done > saved_work(stopped)[0]  # the folds trained in this session are kept too
    assert before.items() <= _files(partial_dir(out)).items()


# --------------------------------------------------------------------------- Ctrl-C at chosen points


def test_ctrl_c_before_the_first_fold_leaves_nothing(tmp_path, monkeypatch, run_cli):
    monkeypatch.setattr(pipeline, "load_checked", _raiser(KeyboardInterrupt()))
    code, _, err = run_cli(["run", *ARGS, "--out", str(tmp_path / "x")])
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted: nothing was written"
    assert "Traceback" not in err and _names(tmp_path) == []


def test_ctrl_c_while_saving_keeps_every_fold_and_resumes(all_saved, reference, tmp_path, monkeypatch, run_cli):
    out = _copy(all_saved, tmp_path)
    monkeypatch.setattr("lstmbt.backtest.walkforward.sliding_windows", _never)  # every fold is read back
    code, _, err = run_cli(["run", "--resume", str(out)])
    assert code == 0, err
    assert_same_run(out, reference)
    assert _names(out.parent) == ["run"]


def test_ctrl_c_on_resume_keeps_the_saved_folds(stopped, tmp_path, monkeypatch, run_cli):
    out = _copy(stopped, tmp_path)
    before = _files(partial_dir(out))
    monkeypatch.setattr(pipeline, "load_checked", _raiser(KeyboardInterrupt()))
    code, _, err = run_cli(["run", "--resume", str(out)])
    done, what = saved_work(partial_dir(out))
    assert code == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"interrupted: {what} saved; continue with: lstmbt run --resume {out}"
    assert _files(partial_dir(out)) == before and _names(out.parent) == [partial_dir(out).name]


# --------------------------------------------------------------------------- kills and concurrent runs


def _lstmbt() -> list[str]:
    path = Path(sys.executable).with_name("lstmbt")
    return [str(path)] if path.is_file() else [sys.executable, "-m", "lstmbt"]


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as sink:  # a file, not a pipe: a full pipe would stall the run
        return subprocess.Popen([*_lstmbt(), *argv], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)


def _freeze_when(proc: subprocess.Popen, ready: Callable[[], bool], log: Path) -> None:
    """SIGSTOP ``proc`` the moment ``ready()`` holds (polled every 2 ms)."""
    deadline = time.monotonic() + 180
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run ended or stalled before the chosen point:\n{log.read_text()}")
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGSTOP)


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL  # reaped: its pid is gone, not a zombie


def test_a_kill_while_saving_is_cleaned_by_the_next_run_and_resume(all_saved, reference, tmp_path, run_cli):
    out = _copy(all_saved, tmp_path)
    proc = _start(["run", "--resume", str(out)], tmp_path / "log.txt")
    _freeze_when(proc, lambda: any(out.parent.glob(".run.tmp-*")), tmp_path / "log.txt")
    _kill(proc)
    assert _names(out.parent) == sorted([partial_dir(out).name, f".run.tmp-{proc.pid}"])

    code, _, err = run_cli(["run", *ARGS, "--out", str(out)])
    assert "an interrupted run of" in _failed(code, err)  # refused, but the dead process's temporary is gone
    assert _names(out.parent) == [partial_dir(out).name]
    (out.parent / f".run.tmp-{proc.pid}").mkdir()  # as the kill left it, for the resume to clean
    code, _, err = run_cli(["run", "--resume", str(out)])
    assert code == 0, err
    assert_same_run(out, reference)
    assert _names(out.parent) == ["run"]


def test_a_live_run_is_locked_and_a_killed_one_taken_over(stopped, reference, tmp_path, run_cli):
    out = _copy(stopped, tmp_path)
    lock = partial_dir(out) / "lock"
    proc = _start(["run", "--resume", str(out)], tmp_path / "log.txt")
    _freeze_when(proc, lambda: lock.is_file() and lock.read_text().strip() == str(proc.pid), tmp_path / "log.txt")
    try:
        before = _files(partial_dir(out))
        expected = (f"error: another lstmbt process (pid {proc.pid}) is running this run; wait for it to finish, "
                    f"or stop it and continue with `lstmbt run --resume {out}`")
        for argv in (["run", *ARGS, "--out", str(out)], ["run", "--resume", str(out)]):
            code, _, err = run_cli(argv)
            assert _failed(code, err) == expected
        assert _files(partial_dir(out)) == before and lock.read_text().strip() == str(proc.pid)
    finally:
        _kill(proc)
    code, _, err = run_cli(["run", "--resume", str(out)])  # the stale lock is taken over
    assert code == 0, err
    assert_same_run(out, reference)
    assert _names(out.parent) == ["run"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_dead_processes_go_and_a_live_ones_stay(tmp_path):
    out, dead, live = tmp_path / "run", _dead_pid(), os.getpid()
    made = [f".run.tmp-{dead}", f".run.partial.tmp-{dead}", f".run.tmp-{live}", ".run.tmp-x", ".other.tmp-1"]
    for name in made:
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.html").write_text("half")
    remove_stale_tmp(out)
    assert _names(tmp_path) == sorted([f".run.tmp-{live}", ".run.tmp-x", ".other.tmp-1"])


def test_a_partial_left_before_the_first_fold_is_taken_over(tmp_path, monkeypatch, run_cli):
    out = tmp_path / "run"
    partial_dir(out).mkdir()
    (partial_dir(out) / "config.toml").write_text(tiny_config().to_toml())
    (partial_dir(out) / "lock").write_text(f"{_dead_pid()}\n")  # what a SIGKILL before the first fold leaves
    monkeypatch.setattr(pipeline, "load_checked", _raiser(DataError("refused after the take-over")))
    code, _, err = run_cli(["run", *ARGS, "--out", str(out)])
    assert _failed(code, err) == "error: refused after the take-over"
    assert _names(tmp_path) == []


def test_the_default_run_directory_skips_names_in_use(tmp_path, monkeypatch):
    import datetime

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=tz)

    monkeypatch.setattr(rundir, "dt", type("dt", (), {"datetime": Frozen, "timezone": datetime.timezone}))
    first = rundir.default_run_dir("sample:sp500", tmp_path)
    assert first == tmp_path / "sample-sp500-20240506-070809"
    first.mkdir()
    second = rundir.default_run_dir("sample:sp500", tmp_path)
    partial_dir(second).mkdir()  # an interrupted run of that name counts as in use too
    assert second.name.endswith("-2") and rundir.default_run_dir("sample:sp500", tmp_path).name.endswith("-3")


UNIVERSE = ["run", "--source", "sample:sp500,nasdaq", *ARGS]


def _hold_lock(lock: Path) -> subprocess.Popen:
    """Another process that holds ``lock`` as a live lstmbt run does (flock, its pid written)."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); os.pwrite(fd, str(os.getpid()).encode(), 0); "
            "print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_universe_refused_before_its_first_ticker_leaves_nothing(tmp_path, monkeypatch, run_cli):
    monkeypatch.setattr("lstmbt.backtest.universe.running.run_universe", _raiser(RuntimeError("a failure")))
    code, _, err = run_cli([*UNIVERSE, "--out", str(tmp_path / "u")])
    _failed(code, err, status=1)
    assert _names(tmp_path) == []
    monkeypatch.setattr("lstmbt.backtest.universe.running.run_universe", _raiser(KeyboardInterrupt()))
    code, _, err = run_cli([*UNIVERSE, "--out", str(tmp_path / "u")])
    assert code == 130 and err.strip().splitlines()[-1] == "interrupted: nothing was written"
    assert _names(tmp_path) == []


def test_an_unexpected_error_in_a_resumed_universe_notes_the_kept_tickers(tmp_path, monkeypatch, run_cli):
    out = tmp_path / "u"
    start_partial(out, tiny_config().with_values({"data.source": "sample:sp500,nasdaq"}))
    (partial_dir(out) / "tickers" / "sp500").mkdir(parents=True)
    (partial_dir(out) / "tickers" / "sp500" / "report.html").write_text("a finished ticker")
    monkeypatch.setattr("lstmbt.backtest.cli.universe._finished_tickers", lambda *args: {})
    monkeypatch.setattr("lstmbt.backtest.universe.running.run_universe", _raiser(ValueError("a bug")))
    code, _, err = run_cli(["run", "--resume", str(out)])
    _failed(code, err, status=1)
    assert f"note: 1 tickers saved in {partial_dir(out)}: continue with `lstmbt run --resume {out}`" in err, err
    assert (partial_dir(out) / "tickers" / "sp500" / "report.html").read_text() == "a finished ticker"


def test_a_locked_universe_is_refused_and_a_dead_lock_taken_over(tmp_path, monkeypatch, run_cli):
    out = tmp_path / "u"
    config = tiny_config().with_values({"data.source": "sample:sp500,nasdaq"})
    start_partial(out, config)
    holder = _hold_lock(partial_dir(out) / "lock")
    try:
        for argv in ([*UNIVERSE, "--out", str(out)], ["run", "--resume", str(out)]):
            code, _, err = run_cli(argv)
            assert _failed(code, err).startswith(f"error: another lstmbt process (pid {holder.pid}) is running")
    finally:
        holder.kill()
        holder.wait()
    monkeypatch.setattr("lstmbt.backtest.universe.running.run_universe", _raiser(KeyboardInterrupt()))
    code, _, err = run_cli(["run", "--resume", str(out)])
    assert code == 130 and err.strip().splitlines()[-1] == (f"interrupted: 0 of 2 tickers saved; continue with: "
                                                            f"lstmbt run --resume {out}")
    assert (partial_dir(out) / "lock").read_text().strip() == str(os.getpid())  # taken over by this process


# --------------------------------------------------------------------------- disk space


def test_too_little_free_space_is_refused_before_training(tmp_path, monkeypatch, run_cli):
    parent = tmp_path / "runs"
    parent.mkdir()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 << 30, 10 << 30, 1 << 20))
    monkeypatch.setattr("lstmbt.backtest.pipeline.walk_forward_predict", _never)
    code, _, err = run_cli(["run", *ARGS, "--out", str(parent / "x")])
    last = _failed(code, err)
    match = re.fullmatch(rf"error: not enough free disk space in {re.escape(str(parent))}: this run needs about "
                         r"([\d.]+) MB \(2 models x \d+ rows of predictions, the report and the fold checkpoints\) "
                         r"and 1\.0 MB is free; free some space or choose an --out on another disk", last)
    assert match and float(match.group(1)) > 1.0, last
    assert _names(parent) == []


def test_a_universe_with_too_little_free_space_is_refused_before_training(tmp_path, monkeypatch, run_cli):
    parent = tmp_path / "runs"
    parent.mkdir()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 << 30, 10 << 30, 1 << 20))
    monkeypatch.setattr("lstmbt.backtest.pipeline.walk_forward_predict", _never)
    code, _, err = run_cli([*UNIVERSE, "--out", str(parent / "u")])
    last = _failed(code, err)
    match = re.fullmatch(r"error: not enough free disk space in .*: this universe needs about ([\d.]+) MB \(2 tickers "
                         r"x 2 models, their reports and the universe's\) and 1\.0 MB is free; free some space or "
                         r"choose an --out on another disk", last)
    assert match and float(match.group(1)) > 2 * 2.0, last  # two ticker reports of >= 2 MB each, at least
    assert _names(parent) == []


def test_too_little_free_space_on_resume_keeps_the_folds(stopped, tmp_path, monkeypatch, run_cli):
    out = _copy(stopped, tmp_path)
    before = _files(partial_dir(out))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10 << 30, 10 << 30, 0))
    code, _, err = run_cli(["run", "--resume", str(out)])
    last = _failed(code, err)
    assert last.startswith(f"error: not enough free disk space in {out.parent}: this run needs about")
    assert _files(partial_dir(out)) == before and _names(out.parent) == [partial_dir(out).name]


def test_the_free_space_threshold_is_the_estimate(tmp_path, monkeypatch):
    config, models = tiny_config(), [LSTM, LOGIT]
    data = {"rows": 630}
    run_dir, folds = estimate_run_bytes(config, 630, models, 9)
    need_mb = []
    for free in (0, 1 << 40):
        monkeypatch.setattr(shutil, "disk_usage", lambda path, free=free: Usage(1 << 41, 0, free))
        try:
            check_free_space(tmp_path, config, data, models, 9)
        except DataError as exc:
            need_mb.append(float(re.search(r"needs about ([\d.]+) MB", str(exc)).group(1)))
    assert len(need_mb) == 1 and need_mb[0] * (1 << 20) > run_dir + folds  # with a margin
    for factor, refused in ((0.98, True), (1.02, False)):
        free = int(need_mb[0] * (1 << 20) * factor)
        monkeypatch.setattr(shutil, "disk_usage", lambda path, free=free: Usage(1 << 41, 0, free))
        with pytest.raises(DataError) if refused else contextlib.nullcontext():
            check_free_space(tmp_path, config, data, models, 9)
    bigger = estimate_run_bytes(config.with_values({"model.hidden_size": 256}), 5000, models, 20)
    assert bigger[0] > run_dir and bigger[1] > folds


def test_the_estimate_covers_what_a_run_writes(all_saved, reference):
    config = tiny_config()
    rows = json.loads((reference / "manifest.json").read_text())["data"]["rows"]
    run_dir, folds = estimate_run_bytes(config, rows, [LSTM, LOGIT], saved_folds(all_saved / "folds")[0] // 2)
    written_run = sum(len(b) for b in _files(reference).values())
    written_folds = sum(len(b) for b in _files(all_saved / "folds").values())
    assert written_run <= run_dir <= 3 * written_run
    assert written_folds <= folds <= 4 * written_folds


@contextlib.contextmanager
def _file_size_limit(limit: int) -> Iterator[None]:
    """A real RLIMIT_FSIZE on this process (writes past it fail with EFBIG; Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_file_size_limit_while_saving_keeps_the_folds(reference, tmp_path, run_cli):
    out = tmp_path / "runs" / "x"
    with _file_size_limit(1 << 20):  # the folds fit, the ~2 MB report does not
        code, _, err = run_cli(["run", *ARGS, "--out", str(out)])
    last = _failed(code, err)
    assert re.match(rf"error: cannot write the run {re.escape(str(out))}( \(\S+\))?: it grew past the file-size "
                    r"limit \(no space for it\); raise the limit \(ulimit -f\), or choose another --out", last), last
    done, what = saved_work(partial_dir(out))
    assert done > 0 and last.endswith(f"; {what} saved in {partial_dir(out)}: continue with "
                                      f"`lstmbt run --resume {out}` once that is fixed")
    assert _names(out.parent) == [partial_dir(out).name]  # no run directory, no .x.tmp-*
    code, _, err = run_cli(["run", "--resume", str(out)])
    assert code == 0, err
    assert_same_run(out, reference)


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True).returncode == 0 if shutil.which("mount") else False
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root and mount privileges)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_real_small_disk_is_refused_before_training(tmp_path, monkeypatch, run_cli):
    with _tmpfs(tmp_path / "disk", "2m") as disk:
        monkeypatch.setattr("lstmbt.backtest.pipeline.walk_forward_predict", _never)
        code, _, err = run_cli(["run", *ARGS, "--out", str(disk / "x")])
        assert "not enough free disk space" in _failed(code, err)
        assert _names(disk) == []


def test_a_real_full_disk_while_saving_keeps_the_folds(tmp_path, monkeypatch, run_cli):
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        monkeypatch.setattr("lstmbt.backtest.checkpoint.check_free_space", lambda *args, **kwargs: None)
        code, _, err = run_cli(["run", *ARGS, "--out", str(disk / "x")])
        last = _failed(code, err)
        assert "no space left on the device" in last and "free some space" in last, last
        assert _names(disk) == [".x.partial"]  # no run directory, no .x.tmp-*
        assert saved_work(disk / ".x.partial")[0] > 0


# --------------------------------------------------------------------------- where --out points


def _read_only_root() -> Path:
    probe = Path("/sys/lstmbt-write-probe")
    try:
        probe.mkdir()
    except OSError:
        return Path("/sys")
    probe.rmdir()
    pytest.skip("/sys is writable here, so it cannot stand for a read-only filesystem")


@pytest.mark.parametrize("tail", ["lstmbt-test-run", "lstmbt-missing/run"], ids=["parent", "missing-parent"])
def test_a_read_only_out_is_refused_before_training(tail, monkeypatch, run_cli):
    out = _read_only_root() / tail
    monkeypatch.setattr(pipeline, "run", _never)
    code, _, err = run_cli(["run", *ARGS, "--out", str(out)])
    last = _failed(code, err)
    assert last.startswith(f"error: the run {out} ") and "choose another --out" in last, last
    assert "permission denied" in last or "read-only file system" in last, last
    assert not out.exists() and not partial_dir(out).exists()


def test_a_read_only_filesystem_is_refused_before_training(tmp_path, monkeypatch, run_cli):
    read_only, real_mkdir = tmp_path / "ro", os.mkdir
    read_only.mkdir()

    def mkdir(path, *args, **kwargs):  # what a read-only mount answers, on any system
        if str(path).startswith(str(read_only)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(pipeline, "run", _never)
    code, _, err = run_cli(["run", *ARGS, "--out", str(read_only / "x")])
    assert "is on a read-only file system (not writable); choose another --out" in _failed(code, err)
    assert _names(read_only) == []


def test_a_dangling_symlink_out_is_refused(tmp_path, monkeypatch, run_cli):
    (tmp_path / "x").symlink_to(tmp_path / "nowhere")
    monkeypatch.setattr(pipeline, "run", _never)
    code, _, err = run_cli(["run", *ARGS, "--out", str(tmp_path / "x")])
    assert _failed(code, err) == (f"error: --out {tmp_path / 'x'} is a symbolic link to {tmp_path / 'nowhere'}, "
                                  "which does not exist; remove the link or choose another --out")
    assert _names(tmp_path) == ["x"] and (tmp_path / "x").is_symlink()


def _every_file(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes, the lock included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("linked", [".run.partial", ".run.partial/lock"], ids=["partial", "lock"])
def test_a_linked_partial_or_lock_is_refused_and_never_written_through(linked, tmp_path, monkeypatch, run_cli):
    target = start_partial(tmp_path / "elsewhere" / "run", tiny_config())  # a real partial directory, unlocked
    out = tmp_path / "runs" / "run"
    if linked == ".run.partial":
        out.parent.mkdir()
        partial_dir(out).symlink_to(target, target_is_directory=True)
    else:
        shutil.copytree(target, partial_dir(out))
        (partial_dir(out) / "lock").unlink()
        (partial_dir(out) / "lock").symlink_to(target / "lock")
    before = _every_file(target)
    monkeypatch.setattr(pipeline, "run", _never)
    link = out.parent / linked
    expected = (f"error: {link} is a symbolic link to {os.readlink(link)}, and lstmbt never writes through a link; "
                "put the folder itself there, or remove the link")
    for argv in (["run", "--resume", str(out)], ["run", *ARGS, "--out", str(out)]):
        code, _, err = run_cli(argv)
        assert _failed(code, err) == expected
        assert _every_file(target) == before and link.is_symlink()  # no lock taken or written in the target
    assert _names(out.parent) == [partial_dir(out).name]


@pytest.mark.parametrize("fault", ["refused", "interrupted"])
def test_a_run_that_leaves_nothing_leaves_no_folder_it_made(fault, tmp_path, monkeypatch, run_cli):
    (tmp_path / "kept").mkdir()
    if fault == "refused":  # refused once its data are loaded, after the partial directory was made
        argv = ["run", "--quick", "--start", "2016-01-01", "--end", "2016-03-01"]
    else:
        monkeypatch.setattr(pipeline, "load_checked", _raiser(KeyboardInterrupt()))
        argv = ["run", *ARGS]
    code, _, err = run_cli([*argv, "--out", str(tmp_path / "kept" / "new" / "deeper" / "run")])
    if fault == "refused":
        assert "rows" in _failed(code, err)
    else:
        assert code == 130 and err.strip().splitlines()[-1] == "interrupted: nothing was written"
    assert _names(tmp_path) == ["kept"] and _names(tmp_path / "kept") == []  # the folder that was there stays


@pytest.mark.parametrize("setup, out, expected", [
    (lambda d: (d / "file").write_text("kept"), "file/x", "has a file where a folder should be"),
    (lambda d: (d / "link").symlink_to(d / "nowhere"), "link/x", "x already exists"),
    (lambda d: (d / "file").write_text("kept"), "file", "already exists"),
], ids=["parent-is-a-file", "parent-is-a-dangling-link", "out-is-a-file"])
def test_an_impossible_out_is_refused_before_training(setup, out, expected, tmp_path, monkeypatch, run_cli):
    setup(tmp_path)
    before = _names(tmp_path)
    monkeypatch.setattr(pipeline, "run", _never)
    code, _, err = run_cli(["run", *ARGS, "--out", str(tmp_path / out)])
    assert expected in _failed(code, err)
    assert _names(tmp_path) == before
    if (tmp_path / "file").exists():
        assert (tmp_path / "file").read_text() == "kept"


# --------------------------------------------------------------------------- damaged or edited folds


def _fold(folds: Path, model: str, fold: int, kind: str) -> Path:
    return folds / model / f"fold-{fold:04d}.{kind}"


def _state(folds: Path) -> Path:
    return next((folds / LSTM).glob("fold-*.state.pt"))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _resummed(path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    """Rewrite a fold file with ``edit`` and update its checksum: a consistent but wrong fold."""
    edit(pd.read_parquet(path)).to_parquet(path, index=False)
    sums_path = path.with_name(path.name.split(".")[0] + ".sha256.json")
    sums = json.loads(sums_path.read_text())
    sums[path.name.split(".", 1)[1]] = hashlib.sha256(path.read_bytes()).hexdigest()
    sums_path.write_text(json.dumps(sums))


def _set_plan(folds: Path, **values) -> None:
    plan = json.loads((folds / "checkpoint.json").read_text())
    (folds / "checkpoint.json").write_text(json.dumps({**plan, **values}))


WARM_FIX = r"delete \S+/folds/lstm_classification to retrain this model \(a warm-start chain keeps only its newest"
COLD_FIX = r"delete \S+/folds/logistic_classification/fold-0001\.\* to retrain that fold and the ones after it"
START_OVER = r"remove \S+/\.run\.partial to start the run again$"
DAMAGES = {
    "truncated-predictions": (lambda f: _truncate(_fold(f, LOGIT, 1, "predictions.parquet")),
                              rf"saved fold 1 of {LOGIT} is damaged: fold-0001.predictions.parquet does not match "
                              rf"its checksum \(edited or cut short\); {COLD_FIX}, or {START_OVER}"),
    "emptied-log": (lambda f: _fold(f, LOGIT, 1, "log.parquet").write_bytes(b""),
                    rf"saved fold 1 of {LOGIT} is damaged: fold-0001.log.parquet does not match its checksum"),
    "random-bytes-in-state": (lambda f: _state(f).write_bytes(np.random.default_rng(0).bytes(4096)),
                              rf"saved fold \d+ of {LSTM} is damaged: fold-\d+.state.pt does not match its "
                              rf"checksum .*; {WARM_FIX}"),
    "missing-predictions": (lambda f: _fold(f, LSTM, 3, "predictions.parquet").unlink(),
                            rf"saved fold 3 of {LSTM} is damaged: fold-0003.predictions.parquet is missing; "
                            rf"{WARM_FIX}"),
    "missing-log": (lambda f: _fold(f, LOGIT, 1, "log.parquet").unlink(),
                    rf"saved fold 1 of {LOGIT} is damaged: fold-0001.log.parquet is missing; {COLD_FIX}"),
    "missing-state": (lambda f: _state(f).unlink(), rf"fold-\d+.state.pt is missing; {WARM_FIX}"),
    "missing-commit-mark-mid-chain": (lambda f: _fold(f, LSTM, 2, "sha256.json").unlink(),
                                      rf"saved fold 1 of {LSTM} is damaged: fold-0001.state.pt is missing; {WARM_FIX}"),
    "edited-byte-in-predictions": (lambda f: _flip_byte(_fold(f, LSTM, 0, "predictions.parquet")),
                                   rf"saved fold 0 of {LSTM} is damaged: fold-0000.predictions.parquet does not match"),
    "edited-byte-in-log": (lambda f: _flip_byte(_fold(f, LOGIT, 1, "log.parquet")),
                           rf"saved fold 1 of {LOGIT} is damaged: fold-0001.log.parquet does not match .*{COLD_FIX}"),
    "garbage-commit-mark": (lambda f: _fold(f, LOGIT, 1, "sha256.json").write_bytes(b"\x00\xff{"),
                            rf"saved fold 1 of {LOGIT} is damaged: fold-0001.sha256.json is not a list of checksums"),
    "empty-commit-mark": (lambda f: _fold(f, LSTM, 4, "sha256.json").write_text("{}"),
                          rf"saved fold 4 of {LSTM} is damaged: fold-0004.sha256.json is not a list of checksums"),
    "predictions-cut-and-resummed": (lambda f: _resummed(_fold(f, LOGIT, 1, "predictions.parquet"), lambda d: d[:3]),
                                     rf"saved fold 1 of {LOGIT} is damaged: its predictions hold 3 rows for \d+ test"),
    "log-of-other-dates-resummed": (
        lambda f: _resummed(_fold(f, LOGIT, 0, "log.parquet"),
                            lambda d: d.assign(test_end=d["test_end"] + pd.Timedelta(days=1))),
        rf"saved fold 0 in \S+/{LOGIT} covers other dates or sizes \(test_end\)"),
    "invalid-checkpoint-json": (lambda f: (f / "checkpoint.json").write_text("{not json"),
                                rf"\S+/checkpoint.json is damaged \(not the checkpoint lstmbt wrote\); {START_OVER}"),
    "checkpoint-json-not-a-plan": (lambda f: (f / "checkpoint.json").write_text("[]"),
                                   r"checkpoint.json is damaged"),
    "missing-checkpoint-json": (lambda f: (f / "checkpoint.json").unlink(),
                                rf"\S+/checkpoint.json is missing although \d+ folds are saved; {START_OVER}"),
    "older-checkpoint-format": (lambda f: _set_plan(f, format=1),
                                r"written by another version of lstmbt \(format 1, now 2\); remove \S+/\.run\.partial"),
    "other-data-in-plan": (lambda f: _set_plan(f, data={**json.loads((f / "checkpoint.json").read_text())["data"],
                                                        "sha256": "0" * 64}),
                           r"the data differ from those of the checkpointed run"),
    "invalid-partial-config": (lambda f: (f.parent / "config.toml").write_text("[[[ not toml"),
                               r"the interrupted run's config is damaged: .*remove \S+/\.run\.partial and start"),
    "edited-partial-config": (lambda f: (f.parent / "config.toml").write_text(
                                  (f.parent / "config.toml").read_text().replace("seed = 0", "seed = 7")),
                              r"was written for another config \(train.seed\)"),
}


@pytest.mark.parametrize("damage, message", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_fold_is_refused_on_resume(damage, message, stopped, tmp_path, monkeypatch, run_cli):
    out = _copy(stopped, tmp_path)
    damage(partial_dir(out) / "folds")
    before = _files(partial_dir(out))
    monkeypatch.setattr("lstmbt.backtest.walkforward.sliding_windows", _never)  # refused before any fold is trained
    code, _, err = run_cli(["run", "--resume", str(out)])
    last = _failed(code, err)
    assert re.search(message, last), last
    assert _files(partial_dir(out)) == before  # the partial folder is kept as it was
    assert _names(out.parent) == [partial_dir(out).name]


@pytest.mark.parametrize("damage, fix", [
    (lambda f: _state(f).write_bytes(b"junk"), lambda m: shutil.rmtree(re.search(r"delete (\S+) to retrain", m)[1])),
    (lambda f: _truncate(_fold(f, LOGIT, 1, "predictions.parquet")),
     lambda m: [os.unlink(p) for p in glob.glob(re.search(r"delete (\S+) to retrain", m)[1])]),
], ids=["warm-chain", "cold-fold"])
def test_the_fix_a_damaged_fold_names_works(damage, fix, stopped, reference, tmp_path, run_cli):
    out = _copy(stopped, tmp_path)
    damage(partial_dir(out) / "folds")
    code, _, err = run_cli(["run", "--resume", str(out)])
    fix(_failed(code, err))  # exactly what the message says to delete
    code, _, err = run_cli(["run", "--resume", str(out)])
    assert code == 0, err
    assert_same_run(out, reference)
