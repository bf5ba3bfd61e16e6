"""Every error path ends in one line: a table of faults, each through the real entry point.

Each case names a setup (a damaged file, a patched function that fails the way a full disk, a
read-only disk, Ctrl-C or a bug would), the command line, the exit status and the words of its one
line. Each asserts the exit status, that the last stderr line is that line, that no traceback is
printed, and that nothing is lost: every file that existed before is byte-identical afterwards
(the registry's index is a cache and may be rebuilt) and no new file is left behind.

The saved run is a tiny linear-only run (a few seconds), copied into a fresh root per case.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import DataError, DataWarning
from lstmbt.backtest.pipeline import run

from lstmbt.backtest.campaign.registry import INDEX_NAME, list_runs
from helpers import LINEAR_FLAGS, save_with_report, set_args

ROOT = Path(__file__).resolve().parents[1]
Setup = Callable[[Path, pytest.MonkeyPatch], None]


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    """One finished run directory (ridge and logistic models only: seconds, not minutes)."""
    return save_with_report(run(RunConfig().with_values(LINEAR_FLAGS)), tmp_path_factory.mktemp("saved") / "good")


@pytest.fixture
def root(saved_run, tmp_path, monkeypatch) -> Path:
    """A run root holding a copy of the saved run as ``good``; the working directory is its parent."""
    monkeypatch.delenv("LSTMBT_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(saved_run, tmp_path / "runs" / "good")
    return tmp_path / "runs"


# --------------------------------------------------------------------------- setups


def fails(target: str, exc: BaseException) -> Setup:
    """``target`` (a dotted name) raises ``exc`` when called."""
    def raise_it(*args, **kwargs):
        raise exc

    return lambda root, mp: mp.setattr(target, raise_it)


def returns(target: str, value) -> Setup:
    return lambda root, mp: mp.setattr(target, lambda *args, **kwargs: value)


def steps(*setups: Setup) -> Setup:
    def setup(root: Path, mp: pytest.MonkeyPatch) -> None:
        for step in setups:
            step(root, mp)
    return setup


def copy(name: str, source: str = "good") -> Setup:
    return lambda root, mp: shutil.copytree(root / source, root / name)


def truncate(rel: str) -> Setup:
    """Keep the first half of the file's bytes, as a kill or a full disk mid-write leaves it."""
    def setup(root: Path, mp: pytest.MonkeyPatch) -> None:
        data = (root / rel).read_bytes()
        (root / rel).write_bytes(data[: len(data) // 2])
    return setup


def garble(rel: str) -> Setup:
    """Random bytes in place of the file (fixed seed)."""
    def setup(root: Path, mp: pytest.MonkeyPatch) -> None:
        size = max((root / rel).stat().st_size, 64)
        (root / rel).write_bytes(random.Random(0).randbytes(size))
    return setup


def write(rel: str, text: str) -> Setup:
    return lambda root, mp: (root / rel).write_text(text, encoding="utf-8")


def delete(rel: str) -> Setup:
    return lambda root, mp: (root / rel).unlink()


def indexed(root: Path, mp: pytest.MonkeyPatch) -> None:
    """A real, healthy index of the runs there now."""
    list_runs(root)
    assert (root / INDEX_NAME).is_file()


def corrupt_pages(root: Path, mp: pytest.MonkeyPatch) -> None:
    """A real index whose pages after the first (the schema's) are random bytes: it still opens and
    shows its tables, and fails only when a query reads a damaged page."""
    indexed(root, mp)
    path = root / INDEX_NAME
    data = bytearray(path.read_bytes())
    assert len(data) >= 4 * 4096, "too small an index to damage some pages of"
    rng = random.Random(1)
    data[4096:] = bytes(rng.randrange(256) for _ in range(len(data) - 4096))
    path.write_bytes(bytes(data))
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall()  # connects, reads the schema
        with pytest.raises(sqlite3.DatabaseError, match="malformed"):
            db.execute("SELECT * FROM metrics").fetchall()


def foreign_index(root: Path, mp: pytest.MonkeyPatch) -> None:
    """Another program's database at the index path, with its own ``runs`` table."""
    with contextlib.closing(sqlite3.connect(root / INDEX_NAME)) as db:
        db.execute("CREATE TABLE runs (id TEXT, owner TEXT)")
        db.execute("INSERT INTO runs VALUES ('x', 'someone else')")
        db.commit()


def directory_index(root: Path, mp: pytest.MonkeyPatch) -> None:
    (root / INDEX_NAME).mkdir()
    (root / INDEX_NAME / "keep.txt").write_text("not lstmbt's")


def read_only_index(root: Path, mp: pytest.MonkeyPatch) -> None:
    """SQLite may read but not create or write the index, as on a read-only root (root ignores modes)."""
    real = sqlite3.connect

    def connect(path, *args, **kwargs):
        if str(path) == ":memory:":
            return real(path, *args, **kwargs)
        return real(f"file:{path}?mode=ro", *args, uri=True, **kwargs)

    mp.setattr("lstmbt.backtest.campaign.registry.sqlite3.connect", connect)


def universe(manifest_extra: dict | None = None) -> Setup:
    """A universe run directory ``uni`` made from ``good``'s files (enough for its loader)."""
    def setup(root: Path, mp: pytest.MonkeyPatch) -> None:
        uni, good = root / "uni", root / "good"
        uni.mkdir()
        for name in ("config.toml", "metrics.json", "returns.parquet", "report.html"):
            shutil.copy(good / name, uni / name)
        shutil.copy(good / "positions.parquet", uni / "weights.parquet")
        manifest = json.loads((good / "manifest.json").read_text())
        manifest.update({"universe": ["good"], "tickers": [{"name": "good", "run_dir": "tickers/good"}]},
                        **(manifest_extra or {}))
        (uni / "manifest.json").write_text(json.dumps(manifest))
    return setup


def no_space(code: int, name: str = "runs/good/.report.html.tmp-1") -> OSError:
    return OSError(code, os.strerror(code), name)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    setup: Setup
    argv: tuple[str, ...]            # "{root}" is the run root
    code: int
    prefix: str                      # how the last stderr line starts; "" for a silent success
    words: tuple[str, ...] = ()      # in that line
    absent: tuple[str, ...] = ()     # not in that line
    listed: tuple[str, ...] = ()     # `runs list`: exactly these runs are listed
    changes: tuple[str, ...] = ()    # files (relative to the root) that may change or appear
    kept: tuple[str, ...] = ()       # folders (relative to the root) whose files may appear: folds kept for --resume


BUG = ("this is a bug in lstmbt", "LSTMBT_DEBUG=1", "--debug", "report it")
REPORT = ("report", "{root}/good")
COMPARE = ("compare", "{root}/good", "{root}/other", "--out", "{root}/../compare.html")
LIST = ("runs", "list", "--root", "{root}")
SKIPPED = ("skipped", "bad", "restore the file")
INDEX = (INDEX_NAME,)
INTERRUPTED = ("nothing was written",)
NOTHING: Setup = lambda root, mp: None  # noqa: E731
RENDERED = returns("lstmbt.reports.render_report", "<html></html>")  # the write is what fails; skip the rendering


def custom_run(rule: str) -> tuple[str, ...]:
    """``lstmbt run`` of the saved run's linear-only config with ``strategy.custom = rule``, into a new --out."""
    return ("run", *set_args({**LINEAR_FLAGS, "strategy.custom": rule}), "--out", "{root}/custom")


PLUGIN = "error: strategy.custom"
#: a rule that fails after training: no run directory, the trained folds kept to resume once it is fixed
RESUME = ("folds saved in", "continue with `lstmbt run --resume", "/custom` once that is fixed")


#: a run that a config check refuses before it loads anything; the last --set names the plug-in
PLUGIN_RUN = ("run", "--source", "sample:sp500", "--out", "{root}/new", "--set", "model.lstm=false", "--set")
CASES: dict[str, Case] = {
    # a strategy plug-in that cannot be used: refused when the config is read, or on the first bad position
    "strategy-plugin-not-importable": Case(NOTHING, custom_run("no_such_rules_module:rule"), 2,
                                           f"{PLUGIN} = 'no_such_rules_module:rule': module no_such_rules_module cannot "
                                           "be imported", ("ModuleNotFoundError", "install it, or name the folder that "
                                                           "holds no_such_rules_module.py with --plugin-path DIR")),
    "strategy-plugin-not-callable": Case(NOTHING, custom_run("custom_rules:THRESHOLD"), 2,
                                         f"{PLUGIN} = 'custom_rules:THRESHOLD' is a float, not a function",
                                         ("rule(predictions, prices)",)),
    "strategy-plugin-raises": Case(NOTHING, custom_run("custom_rules:raises"), 2,
                                   f"{PLUGIN} rule custom_rules:raises raised KeyError",
                                   ("for ridge_regression on", "fix the rule", *RESUME), kept=(".custom.partial",)),
    "strategy-plugin-out-of-range": Case(NOTHING, custom_run("custom_rules:too_big"), 2,
                                         f"{PLUGIN} rule custom_rules:too_big returned 1.5 for ridge_regression",
                                         ("outside [-1, 1]", "clip them", *RESUME), kept=(".custom.partial",)),
    "strategy-plugin-nan": Case(NOTHING, custom_run("custom_rules:nan"), 2,
                                f"{PLUGIN} rule custom_rules:nan returned NaN for ridge_regression",
                                ("return a number in [-1, 1]", *RESUME), kept=(".custom.partial",)),
    # a bug: one line, exit 1, the traceback behind LSTMBT_DEBUG
    "bug-in-report": Case(fails("lstmbt.backtest.rundir.load_run", RuntimeError("boom\nsecond line")), REPORT, 1,
                          "error: internal error (RuntimeError: boom second line)", BUG),
    "bug-in-runs-list": Case(fails("lstmbt.backtest.campaign.registry.list_runs", KeyError("id")), LIST, 1,
                             "error: internal error (KeyError: 'id')", BUG),
    "bug-with-debug-0": Case(steps(lambda root, mp: mp.setenv("LSTMBT_DEBUG", "0"),
                                   fails("lstmbt.backtest.rundir.load_run", RuntimeError("boom"))), REPORT, 1,
                             "error: internal error (RuntimeError: boom)", BUG),
    # the disk: full, over quota, over a size limit, read-only, failing; by errno, with the fix
    "enospc-writing-report": Case(steps(RENDERED, fails("lstmbt.backtest.rundir.write_atomic", no_space(errno.ENOSPC))), REPORT, 2,
                                  "error: cannot write runs/good/.report.html.tmp-1: no space left",
                                  ("free some space", "choose another --out")),
    "edquot-writing-compare": Case(steps(copy("other"), returns("lstmbt.reports.compare.compare_runs", "<html>"),
                                         fails("lstmbt.reports.compare.write_atomic", no_space(errno.EDQUOT, "compare.html"))),
                                   COMPARE, 2, "error: cannot write compare.html", ("quota", "choose another --out")),
    "efbig-in-importance": Case(fails("lstmbt.backtest.importance.importance_frame", no_space(errno.EFBIG, "x.parquet")),
                                ("importance", "--out", "{root}/../imp.html"), 2, "error: cannot write x.parquet",
                                ("file-size limit", "ulimit -f")),
    "erofs-writing-report": Case(steps(RENDERED, fails("lstmbt.backtest.rundir.write_atomic", no_space(errno.EROFS))), REPORT, 2,
                                 "error: runs/good/.report.html.tmp-1 is on a read-only file system",
                                 ("choose another --out",)),
    "eacces-in-runs-list": Case(fails("lstmbt.backtest.campaign.registry.list_runs", no_space(errno.EACCES, "runs")), LIST, 2,
                                "error: runs is read-only or not yours (permission denied)",
                                ("fix its permissions",), absent=("--out",)),
    "eio-in-data-show": Case(fails("lstmbt.backtest.data.load_prices", no_space(errno.EIO, "prices.csv")),
                             ("data", "show"), 2, "error: prices.csv could not be read or written",
                             ("input/output error", "check the disk")),
    # real faults: a file where --out needs a folder
    "enotdir-report-out-real": Case(steps(RENDERED, write("afile", "in the way")),
                                    (*REPORT, "--out", "{root}/afile/sub/r.html"), 2, "error: ",
                                    ("afile/sub", "has a file where a folder should be", "check the path")),
    "eexist-report-out-real": Case(steps(RENDERED, write("afile", "in the way")),
                                   (*REPORT, "--out", "{root}/afile/r.html"), 2, "error: ",
                                   ("afile already exists", "choose another --out")),
    # memory and GPU
    "memory-error-predict": Case(fails("lstmbt.backtest.forecast.forecast_next", MemoryError()), ("predict",), 2,
                                 "error: out of memory", ("smaller model",)),
    "no-gpu-predict": Case(fails("lstmbt.backtest.forecast.forecast_next", ValueError(
        "device 'cuda' was requested but torch sees no CUDA GPU; use device 'auto' or 'cpu'")), ("predict",), 2,
        "error: no usable GPU", ("train.device=cpu",)),
    # Ctrl-C: exit 130 and its line, on every command
    "ctrl-c-report": Case(fails("lstmbt.reports.render_report", KeyboardInterrupt()), REPORT, 130, "interrupted:",
                          INTERRUPTED),
    "ctrl-c-compare": Case(steps(copy("other"), fails("lstmbt.reports.compare.compare_runs", KeyboardInterrupt())),
                           COMPARE, 130, "interrupted:", INTERRUPTED),
    "ctrl-c-data-show": Case(fails("lstmbt.backtest.data.load_prices", KeyboardInterrupt()), ("data", "show"), 130,
                             "interrupted:", INTERRUPTED),
    "ctrl-c-data-fetch": Case(fails("lstmbt.backtest.data.load_prices", KeyboardInterrupt()), ("data", "fetch", "AAPL"),
                              130, "interrupted:", INTERRUPTED),
    "ctrl-c-runs-list": Case(fails("lstmbt.backtest.campaign.registry.list_runs", KeyboardInterrupt()), LIST, 130, "interrupted:",
                             INTERRUPTED),
    "ctrl-c-runs-show": Case(fails("lstmbt.backtest.campaign.registry.show_run", KeyboardInterrupt()),
                             ("runs", "show", "good", "--root", "{root}"), 130, "interrupted:", INTERRUPTED),
    "ctrl-c-predict": Case(fails("lstmbt.backtest.forecast.forecast_next", KeyboardInterrupt()), ("predict",), 130,
                           "interrupted:", INTERRUPTED),
    "ctrl-c-importance": Case(fails("lstmbt.backtest.importance.importance_frame", KeyboardInterrupt()),
                              ("importance", "--out", "{root}/../imp.html"), 130, "interrupted:", INTERRUPTED),
    # the registry: a damaged index is rebuilt, an unusable one bypassed with one warning
    "index-pages-corrupted": Case(corrupt_pages, LIST, 0, "", listed=("good",), changes=INDEX),
    "index-not-a-database": Case(write(INDEX_NAME, "SQLite format 3\0 but not really" * 50), LIST, 0, "",
                                 listed=("good",), changes=INDEX),
    "index-foreign-schema": Case(foreign_index, LIST, 0, "warning: run index",
                                 ("is not an lstmbt run index", "runs", "move it away", "in-memory"), listed=("good",)),
    "index-is-a-directory": Case(directory_index, LIST, 0, "warning: run index", ("is a directory", "in-memory"),
                                 listed=("good",)),
    "index-root-read-only": Case(read_only_index, LIST, 0, "warning: run index",
                                 ("cannot be opened or written", "writable", "in-memory"), listed=("good",)),
    "index-read-only-and-stale": Case(steps(indexed, copy("good2"), read_only_index), LIST, 0,
                                      "warning: run index", ("readonly", "in-memory"), listed=("good", "good2")),
    "show-with-corrupted-index": Case(corrupt_pages, ("runs", "show", "good", "--root", "{root}"), 0, "",
                                      changes=INDEX),
    # the registry: one bad run folder is skipped with a note, never breaking the listing
    "run-metrics-truncated": Case(steps(indexed, copy("bad"), truncate("bad/metrics.json")), LIST, 0,
                                  "warning: skipped", (*SKIPPED, "metrics.json is not valid JSON"), listed=("good",),
                                  changes=INDEX),
    "run-metrics-an-array": Case(steps(copy("bad"), write("bad/metrics.json", "[1, 2]")), LIST, 0,
                                 "warning: skipped", (*SKIPPED, "metrics.json has an unexpected shape"),
                                 listed=("good",), changes=INDEX),
    "run-metrics-entry-a-number": Case(steps(copy("bad"), write("bad/metrics.json", '{"ridge": 1}')), LIST, 0,
                                       "warning: skipped", (*SKIPPED, "'ridge' holds a JSON number"),
                                       listed=("good",), changes=INDEX),
    "run-manifest-garbage": Case(steps(copy("bad"), garble("bad/manifest.json")), LIST, 0, "warning: skipped",
                                 (*SKIPPED, "manifest.json is not"), listed=("good",), changes=INDEX),
    "run-manifest-wrong-shape": Case(steps(copy("bad"), write("bad/manifest.json", '{"data": "sp500"}')), LIST, 0,
                                     "warning: skipped", (*SKIPPED, "data is not a table"), listed=("good",),
                                     changes=INDEX),
    "run-config-invalid-toml": Case(steps(copy("bad"), write("bad/config.toml", "[target\ntask = ")), LIST, 0,
                                    "warning: skipped", (*SKIPPED, "config.toml is not valid TOML"), listed=("good",),
                                    changes=INDEX),
    "run-config-missing": Case(steps(copy("bad"), delete("bad/config.toml")), LIST, 0, "warning: skipped",
                               (*SKIPPED, "config.toml is missing"), listed=("good",), changes=INDEX),
    "dot-directories-never-listed": Case(steps(copy(".good.tmp-123"), copy(".good.partial")), LIST, 0, "",
                                         listed=("good",), changes=INDEX),
    "show-a-skipped-run": Case(steps(copy("bad"), truncate("bad/metrics.json")),
                               ("runs", "show", "bad", "--root", "{root}"), 2, "error: run 'bad'",
                               ("cannot be shown", "metrics.json is not valid JSON", "restore the file"),
                               changes=INDEX),
    # report and compare on damaged run directories: one line naming the file, report.html kept
    "report-truncated-predictions": Case(truncate("good/predictions.parquet"), REPORT, 2, "error: ",
                                         ("good/predictions.parquet is not a readable parquet file", "re-run")),
    "report-garbage-returns": Case(garble("good/returns.parquet"), REPORT, 2, "error: ",
                                   ("good/returns.parquet is not a readable parquet file", "restore it")),
    "report-empty-folds": Case(write("good/folds.parquet", ""), REPORT, 2, "error: ",
                               ("good/folds.parquet is not a readable parquet file",)),
    "report-truncated-metrics": Case(truncate("good/metrics.json"), REPORT, 2, "error: ",
                                     ("good/metrics.json is not valid JSON", "re-run")),
    "report-metrics-wrong-shape": Case(write("good/metrics.json", '{"ridge": [1]}'), REPORT, 2, "error: ",
                                       ("good/metrics.json has an unexpected shape",)),
    "report-truncated-manifest": Case(truncate("good/manifest.json"), REPORT, 2, "error: ",
                                      ("good/manifest.json is not valid JSON",)),
    "report-invalid-config": Case(write("good/config.toml", "[model\nlstm = "), REPORT, 2, "error: ",
                                  ("good/config.toml is not valid TOML",)),
    "report-config-not-a-run-config": Case(write("good/config.toml", "target = 5\n"), REPORT, 2, "error: ",
                                           ("good/config.toml is not a valid run config",)),
    "compare-truncated-metrics": Case(steps(copy("other"), truncate("other/metrics.json")), COMPARE, 2, "error: ",
                                      ("other/metrics.json is not valid JSON", "re-run")),
    "compare-universe-damaged-manifest": Case(steps(universe(), truncate("uni/manifest.json")),
                                              ("compare", "{root}/good", "{root}/uni"), 2, "error: ",
                                              ("uni/manifest.json is not valid JSON",)),
    "report-universe-truncated-weights": Case(steps(universe(), truncate("uni/weights.parquet")),
                                              ("report", "{root}/uni"), 2, "error: ",
                                              ("uni/weights.parquet is not a readable parquet file",)),
    "report-universe-without-tickers": Case(universe({"tickers": "all"}), ("report", "{root}/uni"), 2, "error: ",
                                            ("uni/manifest.json has an unexpected shape",)),
    # command-line usage: one line with the nearest valid name, not click's boxed usage text
    "usage-option-typo": Case(NOTHING, ("run", "--sorce", "csv:x.csv"), 2, "error: No such option: --sorce",
                              ("did you mean --source?", "`lstmbt run --help`")),
    "usage-unknown-option": Case(NOTHING, ("report", "{root}/good", "--xyzzy"), 2, "error: No such option: --xyzzy",
                                 ("`lstmbt report --help`",)),
    "usage-command-typo": Case(NOTHING, ("rnu",), 2, "error: No such command 'rnu'",
                               ("Did you mean 'run'?", "`lstmbt --help`")),
    "usage-missing-argument": Case(NOTHING, ("report",), 2, "error: Missing argument",
                                   ("`lstmbt report --help`",)),
    "usage-option-without-value": Case(NOTHING, ("run", "--set"), 2, "error: Option '--set' requires an argument",
                                       ("--help",)),
    # a plug-in model (tests/plugin_models.py) refused when the config is read: nothing trained or written
    "plugin-model-import": Case(NOTHING, (*PLUGIN_RUN, 'model.custom=["nosuch_pkg.models:Net"]'), 2,
                                "error: model.custom entry 'nosuch_pkg.models:Net': module nosuch_pkg.models cannot be imported",
                                ("ModuleNotFoundError", "the package nosuch_pkg/ with --plugin-path DIR")),
    "plugin-model-not-a-class": Case(NOTHING, (*PLUGIN_RUN, 'model.custom=["plugin_models:not_a_class"]'), 2,
                                     "error: model.custom entry 'plugin_models:not_a_class' is a builtin_function",
                                     ("not a class",)),
    "plugin-model-protocol": Case(NOTHING, (*PLUGIN_RUN, 'model.custom=["plugin_models:NoProba"]'), 2,
                                  "error: model.custom entry 'plugin_models:NoProba' lacks predict_proba",
                                  ("scikit-learn estimator",)),
    "plugin-model-input": Case(NOTHING, (*PLUGIN_RUN, 'model.custom=["plugin_models:Cube"]'), 2,
                               "error: model.custom entry 'plugin_models:Cube' declares lstmbt_input = 'cubes'",
                               ("'rows' or 'windows'",)),
    "usage-bad-integer": Case(NOTHING, ("importance", "--repeats", "many"), 2, "error: Invalid value",
                              ("'--repeats'", "valid integer", "`lstmbt importance --help`")),
}


@pytest.mark.parametrize("name", list(CASES))
def test_error_path(name, root, monkeypatch, run_cli):
    case = CASES[name]
    case.setup(root, monkeypatch)
    before = snapshot(root.parent)
    argv = [arg.format(root=root) for arg in case.argv]
    code, out, err = run_cli(argv)
    assert code == case.code, (code, out, err)
    assert "Traceback" not in out + err, err
    lines = err.strip().splitlines()
    if not case.prefix:
        assert lines == [], err
    else:
        line = lines[-1]
        assert line.startswith(case.prefix), err
        assert all(word in line for word in case.words), (case.words, line)
        assert not any(word in line for word in case.absent), (case.absent, line)
        assert sum(other.startswith(("error:", "warning:", "interrupted:")) for other in lines) == 1, err
    if case.listed:
        assert out.startswith(f"{len(case.listed)} run{'' if len(case.listed) == 1 else 's'} under "), out
        assert all(f"\n{run_id} " in out for run_id in case.listed), out
        assert "\n.good" not in out and "\nbad " not in out
    after = snapshot(root.parent)
    kept = {path for path in after for folder in case.kept if (root / folder) in path.parents}
    assert_nothing_lost(before, after, {root.parent / rel for rel in [f"runs/{c}" for c in case.changes]} | kept)


def snapshot(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def assert_nothing_lost(before: dict[Path, bytes], after: dict[Path, bytes], may_change: set[Path]) -> None:
    changed = [path for path, data in before.items() if path not in may_change and after.get(path) != data]
    assert changed == [], f"changed or lost: {changed}"
    left = set(after) - set(before) - may_change
    assert left == set(), f"left behind: {left}"


# --------------------------------------------------------------------------- beyond the table


@pytest.mark.parametrize("how", ["env", "flag"])
def test_a_bug_shows_its_traceback_when_debugging(how, root, monkeypatch, capsys, run_cli):
    fails("lstmbt.backtest.rundir.load_run", RuntimeError("boom"))(root, monkeypatch)
    argv = ["report", str(root / "good")]
    if how == "env":
        monkeypatch.setenv("LSTMBT_DEBUG", "1")
    else:
        argv.insert(0, "--debug")
    before = snapshot(root)
    with pytest.raises(RuntimeError, match="boom"):  # re-raised: Python prints the traceback
        run_cli(argv)
    assert "internal error" not in capsys.readouterr().err
    assert_nothing_lost(before, snapshot(root), set())


def test_data_warnings_print_once_as_one_line_each(root, monkeypatch, run_cli):
    def load_prices(*args, **kwargs):
        for text in ("Close repeats for 30 days\n  from 2020-01-02", "Close repeats for 30 days from 2020-01-02",
                     "Open equals the previous Close on 40% of bars"):
            warnings.warn(text, DataWarning, stacklevel=2)
        raise DataError("stopped here; fix the data")

    monkeypatch.setattr("lstmbt.backtest.data.load_prices", load_prices)
    hook = warnings.showwarning
    code, out, err = run_cli(["data", "show"])
    assert code == 2 and err.splitlines() == ["warning: Close repeats for 30 days from 2020-01-02",
                                              "warning: Open equals the previous Close on 40% of bars",
                                              "error: stopped here; fix the data"], err
    assert warnings.showwarning is hook  # main() installs its hook for its own call only


def test_a_damaged_index_is_rebuilt_and_a_foreign_one_left_alone(root, monkeypatch):
    corrupt_pages(root, monkeypatch)
    assert set(list_runs(root)["id"]) == {"good"}
    with contextlib.closing(sqlite3.connect(root / INDEX_NAME)) as db:
        assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert db.execute("SELECT id FROM runs").fetchall() == [("good",)]
    (root / INDEX_NAME).unlink()
    foreign_index(root, monkeypatch)
    data = (root / INDEX_NAME).read_bytes()
    with pytest.warns(DataWarning, match="is not an lstmbt run index"):
        assert set(list_runs(root)["id"]) == {"good"}
    assert (root / INDEX_NAME).read_bytes() == data


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs a file-size limit")
def test_a_real_file_size_limit_while_writing_the_report(root):
    """A real fault, not a patched one: the report cannot be written under a 64 KiB file-size limit
    (Python ignores SIGXFSZ, so the write fails with EFBIG); the old report.html is kept."""
    before = snapshot(root)
    limit = 64 * 1024

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {name: value for name, value in os.environ.items() if name != "LSTMBT_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "lstmbt", "report", str(root / "good")], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, preexec_fn=small_files, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot write ") and "file-size limit" in line and "--out" in line, line
    assert_nothing_lost(before, snapshot(root), set())


def test_a_damaged_ticker_of_an_interrupted_universe_names_the_ticker_to_retrain(saved_run, tmp_path):
    from types import SimpleNamespace

    from lstmbt.backtest.cli.universe import _finished_tickers
    from lstmbt.backtest.readback import DamagedFileError

    saved = tmp_path / ".u.partial" / "tickers"
    for slug in ("AAA", "BBB"):
        shutil.copytree(saved_run, saved / slug)
    tickers = [SimpleNamespace(name=slug, slug=slug) for slug in ("AAA", "BBB", "CCC")]  # CCC: not finished yet
    assert sorted(_finished_tickers(saved, tickers, tmp_path / "u")) == ["AAA", "BBB"]
    damaged = saved / "BBB" / "predictions.parquet"
    damaged.write_bytes(damaged.read_bytes()[:50])
    with pytest.raises(DamagedFileError) as info:
        _finished_tickers(saved, tickers, tmp_path / "u")
    message = str(info.value)
    assert message.startswith(f"{damaged} is not a readable parquet file") and "\n" not in message
    assert message.endswith(f"remove {saved / 'BBB'} and run `lstmbt run --resume {tmp_path / 'u'}` to retrain "
                            "that ticker")
