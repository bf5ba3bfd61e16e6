"""Every interrupt lands and says the truth: SIGINT and SIGTERM at random moments of real runs.

Each case starts the ``lstmbt`` script in a subprocess (its own process group) while another
process keeps a core busy, waits for a moment of its phase, sends the signal, and checks:

- status 130 for SIGINT, 143 for SIGTERM (never 0, never death by the signal);
- exactly one ``interrupted`` line, the last on stderr, no other line but ``warning:`` and ``note:``
  lines (no traceback, no blank line a progress bar left), and no process of the run left behind;
- the line is true of the disk: "nothing was written" (not even the --out parent folder the run
  made), "k of n folds (tickers) saved; continue with ..." (the partial directory holds exactly k
  committed, intact folds of n, no run directory, and ``--resume``'s checks accept it), or
  "interrupted while cleaning up: the run was saved at OUT" (a complete run, no partial directory).

Phases of a single run (``test_resume.ARGS``, the cheapest run that saves folds): ``start``, a
moment in its first second, counted from lstmbt's first line (its handlers in place, as
/proc/PID/status shows; before that the interpreter itself is starting, and a signal ends it as it
ends any program); ``training``, after its first committed fold; ``saving``, when its temporary run
directory appears; ``saved``, when the run directory appears (the partial directory is being
removed, the scorecard printed); ``exiting``, just after the ``report:`` line (the exit callbacks,
torch's among them). A universe of two tickers (``workers``) and a sweep of two training trials
(``sweep``), each on a pool of two workers, get the signal on their whole process group, as a
terminal's Ctrl-C, while the workers start; a sweep's line is "finished training trials are kept
in OUT; finish with lstmbt sweep --resume OUT" once its directory exists.

The short test runs 8 cases; the slow one, the acceptance proof, 50 and resumes a few kept runs to
the end. Both print a table of phases and outcomes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from lstmbt.backtest.partial import load_partial_config, partial_dir, resume_paths, saved_work
from lstmbt.backtest.rundir import RUN_FILES, load_run
from lstmbt.backtest.universe.io import UNIVERSE_FILES
from helpers import LINEAR_FLAGS, call_main, set_args
from test_resume import ARGS, SETS

ROOT = Path(__file__).resolve().parents[1]
UNIVERSE = ["--source", "sample:sp500,nasdaq", *ARGS]
#: the phases in the order the cases take them (the moments that went wrong before come twice)
ROTATION = ("start", "training", "saving", "saved", "exiting", "workers", "sweep", "start", "saved", "exiting")
POOLED = ("workers", "sweep")  # the phases signalled on the whole process group, while the pool's workers start
#: the exit status each signal must end a run with
EXPECTED = {signal.SIGINT: 130, signal.SIGTERM: 143}
NOTHING = "interrupted: nothing was written"
PF_EXITING = 0x4  # a process flag in /proc/PID/stat: it has begun to exit
pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="aims by what /proc shows (Linux)")


@dataclass
class Case:
    phase: str
    signum: int
    delay_s: float = 0.0
    status: int | None = None
    line: str = ""
    outcome: str = ""  # nothing / kept / saved
    out: Path | None = None
    module: bool = False  # started as `python -m lstmbt` rather than the script
    redrawn: int = 0  # runs that ended before the drawn moment (no signal sent), drawn again
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- running and aiming


def _script() -> list[str]:
    path = Path(sys.executable).with_name("lstmbt")
    if not path.is_file():
        pytest.skip("the lstmbt console script is not installed next to this Python")
    return [str(path)]


def _argv(case: Case, out: Path, logs: Path) -> list[str]:
    command = [sys.executable, "-m", "lstmbt"] if case.module else _script()
    if case.phase == "sweep":  # two training trials of the tiny run on the same cached sample
        values = {"data.start": "2014-01-01", "data.end": "2016-06-30", "target.task": "classification", **SETS}
        sweep = logs / "sweep.toml"  # JSON literals of these values are TOML literals too
        sweep.write_text("[sweep]\nquick = true\n[sweep.set]\n" + "".join(
            f'"{key}" = {json.dumps(value)}\n' for key, value in values.items()) + '[params]\n"train.seed" = [0, 1]\n')
        out.parent.mkdir()  # the sweeps' folder, as a user's runs/ is there already
        return [*command, "sweep", "--config", str(sweep), "--workers", "2", "--out", str(out)]
    return [*command, "run", *(UNIVERSE if case.phase == "workers" else ARGS), "--out", str(out)]


def _start(case: Case, out: Path, logs: Path) -> subprocess.Popen:
    # two cores' worth for the pools: two spawned workers; unbuffered, so `report:` shows when printed
    env = {**os.environ, "OMP_NUM_THREADS": "2" if case.phase in POOLED else "1", "PYTHONUNBUFFERED": "1"}
    argv = _argv(case, out, logs)
    with (logs / "out.txt").open("w") as out_log, (logs / "err.txt").open("w") as err_log:
        # SIGINT back to its default, as a terminal's shell leaves it (a background job ignores it)
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out_log, stderr=err_log, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _handlers_installed(pid: int) -> bool:
    """Whether lstmbt's handlers are in place: the process catches SIGTERM (Python alone does not)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", text, re.M).group(1), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def _children(pid: int) -> int:
    try:
        return len(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return 0


def _moment(case: Case, out: Path, logs: Path) -> tuple[Callable[[int], bool], float]:
    """(the condition that starts the phase, the most seconds to wait after it)."""
    partial = partial_dir(out)
    return {
        "start": (_handlers_installed, 1.0),
        "training": (lambda pid: any(partial.glob("folds/**/fold-*.sha256.json")), 2.0),
        "saving": (lambda pid: any(out.parent.glob(f".{out.name}.tmp-*")), 0.15),
        "saved": (lambda pid: out.is_dir(), 0.15),
        "exiting": (lambda pid: "report:" in (logs / "out.txt").read_text(), 0.1),
        "workers": (lambda pid: _children(pid) >= 3, 1.5),  # the resource tracker and two workers
        "sweep": (lambda pid: _children(pid) >= 3, 1.5),
    }[case.phase]


def _ended(proc: subprocess.Popen) -> bool:
    """Whether the run has ended or begun to exit (its main thread gone, its status decided: a
    signal now would interrupt nothing, and is lost as for any process)."""
    if proc.poll() is not None:
        return True
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return True
    return fields[0] == "Z" or bool(int(fields[6]) & PF_EXITING)


def _interrupt(case: Case, out: Path, logs: Path, rng: random.Random, scale: float = 1.0) -> bool:
    """Run the case, the signal at most ``scale`` times its phase's window after the phase begins;
    False when the run ended before that moment (no signal was sent)."""
    proc = _start(case, out, logs)
    ready, most = _moment(case, out, logs)
    deadline = time.monotonic() + (3 if case.phase == "start" else 300)
    while not ready(proc.pid):
        if proc.poll() is not None:
            _group_ended(proc.pid)
            return False
        if time.monotonic() > deadline:  # a run with no handler of its own is signalled all the same
            case.problems.append(f"the {case.phase} phase never came (no handler for SIGTERM, or stalled)")
            break
        time.sleep(0.002)
    case.delay_s = rng.uniform(0, most * scale)
    time.sleep(case.delay_s)
    if _ended(proc):
        proc.wait()
        _group_ended(proc.pid)
        return False
    if case.phase in POOLED:
        os.killpg(proc.pid, case.signum)  # as a terminal's Ctrl-C: every process of the group
    else:
        os.kill(proc.pid, case.signum)
    try:
        case.status = proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        case.problems.append("still running 180 s after the signal")
    _expect(case, _group_ended(proc.pid), "processes of the run (its workers) outlived it")
    return True


def _group_ended(pgid: int, wait_s: float = 30) -> bool:
    """Whether every process of the run's group has ended (its pool's workers and resource tracker
    included) within ``wait_s``; what is left is killed."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    os.killpg(pgid, signal.SIGKILL)
    return False


# --------------------------------------------------------------------------- judging


def _judge(case: Case, out: Path, logs: Path) -> None:
    err = (logs / "err.txt").read_text()
    lines = err.rstrip("\n").splitlines() if err.strip() else []
    said = [line for line in lines if line.startswith("interrupted")]
    if case.status != EXPECTED[case.signum]:
        case.problems.append(f"exit status {case.status}, not {EXPECTED[case.signum]}")
    if "Traceback" in err or "Exception ignored" in err:
        case.problems.append("a traceback on stderr")
    if len(said) != 1 or lines[-1] != said[0]:
        case.problems.append(f"{len(said)} interrupted lines, the last line being {lines[-1:]}")
    other = [line for line in lines if line not in said and not line.startswith(("warning: ", "note: "))]
    _expect(case, not other, f"other lines on stderr: {other[:3]}")
    case.line = said[-1] if said else ""
    tickers = 2 if case.phase == "workers" else None
    kept = re.fullmatch(rf"interrupted: (\d+) of (\d+) (folds|tickers) saved; continue with: lstmbt run --resume "
                        rf"{re.escape(str(out))}", case.line)
    if case.phase == "sweep":
        _judge_sweep(case, out)
    elif case.line == NOTHING:
        case.outcome = "nothing"
        _expect(case, not out.parent.exists(), f"{sorted(p.name for p in out.parent.glob('*'))} left")
    elif case.line == f"interrupted while cleaning up: the run was saved at {out}":
        case.outcome = "saved"
        _check_saved(case, out, tickers)
    elif kept:
        case.outcome = "kept"
        _check_kept(case, out, int(kept.group(1)), int(kept.group(2)), tickers)
    else:
        case.outcome = "?"
        case.problems.append(f"an unknown line: {case.line!r}")


def _judge_sweep(case: Case, out: Path) -> None:
    """A sweep's line: nothing written (no sweep directory), its finished trials kept (the directory
    holds the sweep, every trial in it complete), or the sweep saved (its page written)."""
    trials = sorted((out / "trials").glob("t*")) if out.is_dir() else []
    complete = all(sorted(p.name for p in trial.iterdir()) == sorted(RUN_FILES) for trial in trials)
    if case.line == NOTHING:
        case.outcome = "nothing"
        _expect(case, not any(out.parent.iterdir()), f"{sorted(p.name for p in out.parent.iterdir())} left")
    elif case.line == (f"interrupted: finished training trials are kept in {out}; finish with lstmbt sweep "
                       f"--resume {out}"):
        case.outcome = "kept"
        _expect(case, (out / "sweep.toml").is_file() and complete, "no sweep, or an incomplete trial, kept")
    elif case.line == f"interrupted while cleaning up: the sweep was saved at {out}":
        case.outcome = "saved"
        _expect(case, (out / "sweep.html").is_file() and len(trials) == 2 and complete, "the sweep is incomplete")
    else:
        case.outcome = "?"
        case.problems.append(f"an unknown line: {case.line!r}")


def _expect(case: Case, condition: bool, problem: str) -> None:
    if not condition:
        case.problems.append(problem)


def _check_saved(case: Case, out: Path, tickers: int | None) -> None:
    names = sorted(p.name for p in out.parent.iterdir())
    _expect(case, names == [out.name], f"the run's folder holds {names}, not the run alone")
    expected = sorted([*UNIVERSE_FILES, "tickers"]) if tickers else sorted(RUN_FILES)
    _expect(case, sorted(p.name for p in out.iterdir()) == expected, "the run directory is incomplete")
    if not tickers:
        load_run(out)  # every file reads back


def _check_kept(case: Case, out: Path, done: int, total: int, tickers: int | None) -> None:
    partial = partial_dir(out)
    names = sorted(p.name for p in out.parent.iterdir())
    _expect(case, names == [partial.name], f"the run's folder holds {names}, not the partial directory alone")
    _expect(case, saved_work(partial, tickers)[0] == done, f"{saved_work(partial, tickers)[1]} on disk, {done} said")
    _expect(case, tickers is not None or _fold_total(partial) == total, f"{total} folds said, not the run's count")
    resume_paths(out)  # what --resume checks before it starts: the run is not finished, its config reads back
    load_partial_config(partial)
    _expect(case, not _damaged_folds(partial), f"damaged saved folds: {_damaged_folds(partial)}")


def _fold_total(partial: Path) -> int | None:
    from lstmbt.backtest.checkpoint import saved_folds

    return saved_folds(partial / "folds")[1]


def _damaged_folds(partial: Path) -> list[str]:
    """Committed folds whose files are missing or differ from their checksums (a warm chain keeps
    only its newest state), as ``--resume`` would find them."""
    damaged = []
    for sums_path in partial.glob("**/fold-*.sha256.json"):
        sums = json.loads(sums_path.read_text())
        stem = sums_path.name.removesuffix(".sha256.json")
        for kind, digest in sums.items():
            path = sums_path.with_name(f"{stem}.{kind}")
            if kind == "state.pt" and not path.exists():
                continue  # an older fold of a warm chain: its state was replaced by the newer one's
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                damaged.append(path.name)
    return damaged


# --------------------------------------------------------------------------- the loop


@pytest.fixture
def busy_core() -> Callable[[], None]:
    """Another process keeping a core busy for the test's length."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield
    burner.kill()
    burner.wait()


def _plan(n: int) -> list[Case]:
    """``n`` cases, the phases of ``ROTATION`` in turn, SIGINT and SIGTERM alternating (the other way
    round in every second rotation, so each phase gets both)."""
    return [Case(ROTATION[i % len(ROTATION)], (signal.SIGINT, signal.SIGTERM)[(i + i // len(ROTATION)) % 2])
            for i in range(n)]


def _run_cases(n: int, seed: int, tmp_path: Path) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for i, case in enumerate(_plan(n)):
        for attempt in range(4):  # a run that ended before its moment was not interrupted: draw again, sooner
            logs = tmp_path / f"case{i}-{attempt}"
            logs.mkdir()
            out = case.out = logs / "runs" / "run"
            if _interrupt(case, out, logs, rng, scale=0.5 ** attempt):
                _judge(case, out, logs)
                break
            case.redrawn += 1
        else:
            case.problems.append("the run ended before its moment four times")
        cases.append(case)
    return cases


def _summary(cases: list[Case]) -> str:
    counts = Counter((c.phase, signal.Signals(c.signum).name, c.outcome, not c.problems) for c in cases)
    rows = [f"{phase:<9} {sig:<7} {outcome:<8} {'true' if ok else 'FAILED':<6} {n}"
            for (phase, sig, outcome, ok), n in sorted(counts.items())]
    failed = [f"  {c.phase} {signal.Signals(c.signum).name} +{c.delay_s:.3f}s: {'; '.join(c.problems)}"
              for c in cases if c.problems]
    good = sum(not c.problems for c in cases)
    redrawn = sum(c.redrawn for c in cases)
    return "\n".join([f"interrupted runs: {good} of {len(cases)} ended 130/143 with one true line ({redrawn} more "
                      "ended before their drawn moment, no signal sent, and were drawn again)",
                      "phase     signal  line     judged count", *rows, *failed])


def _check(cases: list[Case], capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print("\n" + _summary(cases))
    assert all(not c.problems for c in cases), _summary(cases)


def test_interrupts_land_and_say_the_truth(busy_core, tmp_path, capsys):
    cases = _run_cases(8, seed=int(os.environ.get("LSTMBT_INTERRUPT_SEED", "26")), tmp_path=tmp_path)
    _check(cases, capsys)


#: the lstmbt script with an exit callback of a library registered after lstmbt's, as torch's is
#: (so it runs first): the signal lands inside it, after the command has finished
LATE_SCRIPT = """
import atexit, os, signal, sys, time
from lstmbt.backtest.cli import main

def library_exit_callback():
    os.kill(os.getpid(), signal.{name})
    time.sleep(0.5)

atexit.register(library_exit_callback)
sys.exit(main())
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert call_main(["run", *set_args(LINEAR_FLAGS), "--out", str(out)])[0] == 0
    return out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_in_a_library_exit_callback_is_answered(signum, finished_run, tmp_path):
    script = tmp_path / "lstmbt"  # the command's name, as its console script has
    script.write_text(LATE_SCRIPT.format(name=signal.Signals(signum).name))
    done = subprocess.run([sys.executable, str(script), "report", str(finished_run)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == EXPECTED[signum], done.stderr
    assert f"report: {(finished_run / 'report.html').resolve()}" in done.stdout
    assert done.stderr.splitlines() == [f"interrupted while cleaning up: the report was written to "
                                        f"{finished_run / 'report.html'}"]


def test_python_dash_m_lstmbt_answers_from_its_first_import_too(tmp_path):
    case = Case("start", signal.SIGTERM, module=True)
    assert _interrupt(case, tmp_path / "runs" / "run", tmp_path, random.Random(0))
    _judge(case, tmp_path / "runs" / "run", tmp_path)
    assert not case.problems and case.outcome == "nothing", case


def test_a_program_that_imports_lstmbt_keeps_its_own_handlers():
    code = ("import signal, sys, lstmbt, lstmbt.backtest.cli; print(signal.getsignal(signal.SIGINT) is "
            "signal.default_int_handler, signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, sys.excepthook is "
            "sys.__excepthook__)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.split() == ["True", "True", "True"]


@pytest.mark.slow
def test_fifty_interrupts_land_and_say_the_truth(busy_core, tmp_path, capsys):
    cases = _run_cases(50, seed=int(os.environ.get("LSTMBT_INTERRUPT_SEED", "2026")), tmp_path=tmp_path)
    _check(cases, capsys)
    kept = [c for c in cases if c.outcome == "kept" and c.phase not in POOLED][:3]
    for case in kept:  # the kept folds resume to a finished run
        code, _, err = call_main(["run", "--resume", str(case.out)])
        assert code == 0 and (case.out / "report.html").is_file(), err
