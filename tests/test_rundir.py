"""The run directory (``backtest.rundir``): the one atomic writer, pages handed in by the caller,
and runs of earlier versions read back with their model keys."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import lstmbt.backtest.rundir as rundir
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.readback import DamagedFileError
from lstmbt.backtest.rundir import RUN_FILES, json_text, load_run, save_run, write_atomic
from lstmbt.models.key import KEY_COLUMNS
from helpers import LINEAR_FLAGS


@pytest.fixture(scope="module")
def linear_run():
    return run(RunConfig().with_values(LINEAR_FLAGS))


def test_write_atomic_replaces_whole_files_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "deep" / "file.txt"
    assert write_atomic(target, "first") == target and target.read_text() == "first"
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"

    def half_then_fail(tmp):
        tmp.write_text("half a fi")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"second"  # the old file, untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]  # no temporary left


def test_save_run_writes_the_pages_it_is_given_and_no_others(linear_run, tmp_path):
    bare = save_run(linear_run, tmp_path / "bare")
    assert sorted(p.name for p in bare.iterdir()) == sorted(set(RUN_FILES) - {"report.html"})
    assert json_text(load_run(bare).metrics) == json_text(linear_run.metrics)  # it loads without its page
    paged = save_run(linear_run, tmp_path / "paged", pages={"report.html": "<html>given</html>"})
    assert (paged / "report.html").read_text() == "<html>given</html>"


def test_the_core_saves_runs_without_loading_the_report_package():
    code = ("import sys, lstmbt.backtest.pipeline, lstmbt.backtest.rundir, lstmbt.backtest.forecast, "
            "lstmbt.backtest.importance; print(sorted(m for m in sys.modules if m.startswith('lstmbt.reports')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_run_of_an_earlier_version_gets_its_model_keys_back(linear_run, tmp_path):
    saved = save_run(linear_run, tmp_path / "old")
    for name in ("predictions", "folds"):  # as written before the model key had columns
        frame = pd.read_parquet(saved / f"{name}.parquet")
        frame.drop(columns=["family", "baseline"]).to_parquet(saved / f"{name}.parquet", index=False)
    loaded = load_run(saved)
    pd.testing.assert_frame_equal(loaded.predictions, linear_run.predictions, check_exact=True)
    assert list(loaded.predictions.columns[1:1 + len(KEY_COLUMNS)]) == list(KEY_COLUMNS)
    assert set(loaded.predictions["family"]) == {"linear"} and loaded.predictions["baseline"].all()
    assert json_text(loaded.metrics) == json_text(linear_run.metrics)


def test_an_old_run_with_a_model_lstmbt_never_made_is_refused_in_one_line(linear_run, tmp_path, run_cli):
    saved = save_run(linear_run, tmp_path / "odd")
    frame = pd.read_parquet(saved / "predictions.parquet").drop(columns=["family", "baseline"])
    frame["model"] = "mystery_model"
    frame.to_parquet(saved / "predictions.parquet", index=False)
    with pytest.raises(DamagedFileError, match="predictions.parquet has no model key"):
        load_run(saved)
    code, _, err = run_cli(["report", str(saved)])
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ") and "predictions.parquet" in err


def test_every_writer_of_the_package_goes_through_write_atomic():
    """No module but rundir opens a file for writing, renames one into place, or has pandas write one."""
    import re
    from pathlib import Path

    root = Path(rundir.__file__).resolve().parents[1]
    pattern = re.compile(r"\.write_text\(|\.write_bytes\(|os\.replace\(|\.to_parquet\(|open\([^)]*['\"]w")
    offenders = []
    for folder in ("backtest", "models", "reports", "strategies", "lstmbt"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "rundir.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) and "buffer" not in line:  # in-memory, then write_atomic
                    offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == []
