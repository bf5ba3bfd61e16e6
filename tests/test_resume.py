"""Resumable runs: estimator state round trips, fold checkpoints, and ``lstmbt run --resume``.

The promise under test: a run stopped at any point (Ctrl-C, SIGKILL) and resumed produces the
same predictions, bit for bit, and the same metrics as a run that was never stopped. The
end-to-end tests kill a real ``lstmbt run`` subprocess once a fold file has appeared (it is
frozen with SIGSTOP the moment the file shows up, so the kill always lands mid-run, however
fast the folds go), then resume it and compare with an uninterrupted run of the same config.
The config has no validation set, so every fold after the first continues the previous fold's
weights: a resumed chain must restore the estimator state exactly to match.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

import lstmbt.backtest.cli.app as cli
import lstmbt.backtest.cli.options as cli_options
from lstmbt.backtest.checkpoint import open_checkpoint, saved_folds
from lstmbt.backtest.partial import load_partial_config, partial_dir, start_partial
from lstmbt.backtest.config import QUICK_PRESET, RunConfig
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.backtest.pipeline import run as run_pipeline
from lstmbt.backtest.rundir import RUN_FILES
from lstmbt.backtest.splits import WalkForwardSplit
from lstmbt.backtest.walkforward import make_sample_grid, walk_forward_predict
from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.specs import NetSpec, TrainSettings
from helpers import TINY_VALUES, call_main, set_args

ROOT = Path(__file__).resolve().parents[1]
#: the tiny config with no validation set (each fold continues the last one's weights), over --quick
SETS = {**TINY_VALUES, "split.step": 40, "split.val_fraction": 0.0, "train.max_epochs": 2, "train.warm_epochs": 1}
ARGS = ["--quick", "--start", "2014-01-01", "--end", "2016-06-30", "--target", "classification", *set_args(SETS)]
LSTM = "lstm_classification"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config() -> RunConfig:
    """What ``lstmbt run ARGS`` resolves to."""
    flags = {"data.start": "2014-01-01", "data.end": "2016-06-30", "target.task": "classification"}
    return RunConfig.resolve(preset=QUICK_PRESET, flags=flags, overrides=SETS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every resumed run must equal."""
    out = tmp_path_factory.mktemp("ref") / "run"
    code, _, err = call_main(["run", *ARGS, "--out", str(out)])
    assert code == 0, err
    return out


def assert_same_run(resumed: Path, reference: Path) -> None:
    """Predictions bit-identical, metrics equal, fold logs equal but for the fit timings."""
    pd.testing.assert_frame_equal(pd.read_parquet(resumed / "predictions.parquet"),
                                  pd.read_parquet(reference / "predictions.parquet"), check_exact=True)
    assert json.loads((resumed / "metrics.json").read_text()) == json.loads((reference / "metrics.json").read_text())
    folds = [pd.read_parquet(d / "folds.parquet").drop(columns="fit_seconds") for d in (resumed, reference)]
    pd.testing.assert_frame_equal(*folds, check_exact=True)
    assert sorted(p.name for p in resumed.iterdir()) == sorted(RUN_FILES)
    assert not partial_dir(resumed).exists()


# --------------------------------------------------------------------------- estimator state


def _windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6, 3)).astype(np.float32)
    return X, 0.01 * X[:, -1, 0] + 0.01 * rng.normal(size=n)


@pytest.mark.parametrize("cls", [LSTMRegressor, LSTMClassifier])
def test_checkpoint_round_trip_continues_warm_fits_bit_for_bit(cls, tmp_path):
    def label(y):
        return y if cls is LSTMRegressor else (y > 0).astype(float)

    (X1, y1), (X2, y2) = _windows(120, 1), _windows(120, 2)
    est = cls(net=NetSpec(hidden_size=4, head=()), train=TrainSettings(max_epochs=2, warm_epochs=2, mode="window"),
              device="cpu", random_state=3, warm_start=True).fit(X1, label(y1))
    torch.save(est.get_checkpoint(), tmp_path / "state.pt")
    restored = clone(est).set_checkpoint(torch.load(tmp_path / "state.pt", weights_only=True))
    np.testing.assert_array_equal(restored.predict(X2), est.predict(X2))

    fresh = clone(est).fit(X2, label(y2))  # what a resume without the state would do
    est.fit(X2, label(y2))
    restored.fit(X2, label(y2))
    assert est.warm_started_ and restored.warm_started_ and not fresh.warm_started_
    outputs = [m.predict(X1) if cls is LSTMRegressor else m.predict_proba(X1) for m in (est, restored, fresh)]
    np.testing.assert_array_equal(outputs[1], outputs[0])
    assert not np.array_equal(outputs[2], outputs[0])  # so the state is what made them equal


def test_set_checkpoint_refuses_another_estimator_or_network():
    X, y = _windows(60, 4)
    state = LSTMRegressor(net=NetSpec(hidden_size=4, head=()), train=TrainSettings(max_epochs=1, mode="window"),
                          device="cpu").fit(X, y).get_checkpoint()
    with pytest.raises(ValueError, match="not a LSTMClassifier checkpoint"):
        LSTMClassifier(device="cpu").set_checkpoint(state)
    with pytest.raises(ValueError, match="net settings"):
        LSTMRegressor(net=NetSpec(hidden_size=5, head=()), device="cpu").set_checkpoint(state)


# --------------------------------------------------------------------------- the fold loop


def _case(cls, warm: bool, val_fraction: float):
    rng = np.random.default_rng(0)
    index = pd.bdate_range("2020-01-01", periods=220)
    features = pd.DataFrame(rng.normal(size=(220, 3)), index=index, columns=["a", "b", "c"])
    ret = pd.Series(0.01 * features["a"].to_numpy() + 0.01 * rng.normal(size=220), index=index).shift(-1)
    target = ret if cls is LSTMRegressor else (ret > 0).astype(float).where(ret.notna())
    grid = make_sample_grid(features, target, 5)
    folds = WalkForwardSplit(min_train=80, step=20, horizon=1, val_fraction=val_fraction).split(grid.n)
    est = cls(net=NetSpec(hidden_size=4, head=()), train=TrainSettings(max_epochs=3, warm_epochs=2, mode="window"),
              device="cpu", random_state=7, warm_start=warm)
    return est, features, target, grid, folds


def _stop_after(fold_index: int):
    def on_fold(entry):
        if entry["fold"] == fold_index:
            raise KeyboardInterrupt
    return on_fold


@pytest.mark.parametrize("cls, warm, val_fraction", [(LSTMRegressor, True, 0.0), (LSTMClassifier, True, 0.25),
                                                     (LSTMClassifier, False, 0.25)])
def test_walk_forward_resumes_from_its_saved_folds(cls, warm, val_fraction, tmp_path, monkeypatch):
    est, features, target, grid, folds = _case(cls, warm, val_fraction)
    expected, expected_log = walk_forward_predict(est, features, target, grid, folds)
    with pytest.raises(KeyboardInterrupt):
        walk_forward_predict(est, features, target, grid, folds, on_fold=_stop_after(2), checkpoint_dir=tmp_path)
    fits, real_fit = [], cls.fit
    monkeypatch.setattr(cls, "fit", lambda self, *a, **k: fits.append(1) or real_fit(self, *a, **k))
    seen = []
    got, log = walk_forward_predict(est, features, target, grid, folds, on_fold=seen.append, checkpoint_dir=tmp_path)

    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    pd.testing.assert_frame_equal(log.drop(columns="fit_seconds"), expected_log.drop(columns="fit_seconds"))
    assert len(fits) == len(folds) - 3  # folds 0..2 were read back, not refitted
    assert [entry["fold"] for entry in seen] == list(range(len(folds)))  # progress counts them as done
    assert len(folds) >= 6
    # without validation every refit continues the last weights, so the chain crossed the stop; with
    # validation the restored weights still decide (against the naive forecast) whether it continues
    assert log["warm"].iloc[1:].all() == (warm and val_fraction == 0)


def test_a_fold_cut_off_before_its_log_entry_is_redone(tmp_path, monkeypatch):
    import lstmbt.backtest.checkpoint as checkpoint

    est, features, target, grid, folds = _case(LSTMRegressor, True, 0.0)
    expected, _ = walk_forward_predict(est, features, target, grid, folds)
    real_write = checkpoint.write_atomic

    def die_before_third_commit(path, write):
        if path.name == "fold-0002.log.parquet":  # its state and predictions are already on disk
            raise KeyboardInterrupt
        real_write(path, write)

    monkeypatch.setattr(checkpoint, "write_atomic", die_before_third_commit)
    with pytest.raises(KeyboardInterrupt):
        walk_forward_predict(est, features, target, grid, folds, checkpoint_dir=tmp_path)
    monkeypatch.setattr(checkpoint, "write_atomic", real_write)
    assert (tmp_path / "fold-0002.predictions.parquet").is_file() and len(list(tmp_path.glob("*.log.parquet"))) == 2
    (tmp_path / ".fold-0002.log.parquet.tmp-1").write_bytes(b"half a file")  # as a SIGKILL mid-write leaves
    got, _ = walk_forward_predict(est, features, target, grid, folds, checkpoint_dir=tmp_path)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert not list(tmp_path.glob(".*tmp*"))
    assert [p.name for p in tmp_path.glob("*.state.pt")] == [f"fold-{len(folds) - 1:04d}.state.pt"]


def test_saved_folds_of_another_split_are_refused(tmp_path):
    est, features, target, grid, folds = _case(LSTMClassifier, False, 0.25)
    with pytest.raises(KeyboardInterrupt):
        walk_forward_predict(est, features, target, grid, folds, on_fold=_stop_after(1), checkpoint_dir=tmp_path)
    other = WalkForwardSplit(min_train=80, step=25, horizon=1, val_fraction=0.25).split(grid.n)
    with pytest.raises(DataError, match="test_end.*remove"):
        walk_forward_predict(est, features, target, grid, other, checkpoint_dir=tmp_path)


# --------------------------------------------------------------------------- the run checkpoint


def test_open_checkpoint_refuses_other_data_or_config(tmp_path):
    config = tiny_config()
    data = {"source": "sample:sp500", "symbol": None, "first_date": "2014-01-02", "last_date": "2016-06-30",
            "rows": 630, "sha256": "a" * 64}
    assert open_checkpoint(tmp_path, config, data, [LSTM], 9) == 0
    assert open_checkpoint(tmp_path, config, data, [LSTM], 9) == 0  # same inputs: accepted again
    with pytest.raises(DataError, match="data differ.*remove"):
        open_checkpoint(tmp_path, config, {**data, "sha256": "b" * 64}, [LSTM], 9)
    with pytest.raises(ConfigError, match=r"another config \(train.seed\)"):
        open_checkpoint(tmp_path, config.with_values({"train.seed": 1}), data, [LSTM], 9)
    assert open_checkpoint(tmp_path, config.with_values({"data.refresh": True}), data, [LSTM], 9) == 0  # how, not what
    # a universe's portfolio is built after its tickers' folds: a checkpoint saved under the old top_k default resumes
    assert open_checkpoint(tmp_path, config.with_values({"portfolio.top_k": 2}), data, [LSTM], 9) == 0
    assert saved_folds(tmp_path) == (0, 9)


def test_a_run_started_with_refresh_resumes_from_the_cache(tmp_path):
    config = tiny_config().with_values({"data.refresh": True})
    partial = start_partial(tmp_path / "run", config)
    assert load_partial_config(partial) == config.with_values({"data.refresh": False})


def test_pipeline_resume_equals_reference_and_checks_the_data(reference, tmp_path):
    config, checkpoint = tiny_config(), tmp_path / "folds"

    def stop_at_third_fold(stage, done, total):
        if stage == LSTM and done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, progress=stop_at_third_fold, checkpoint=checkpoint)
    assert saved_folds(checkpoint)[0] == 3
    from lstmbt.backtest.data import load_prices

    changed = load_prices(config.data)
    changed.iloc[-1, changed.columns.get_loc("Close")] *= 1.01
    with pytest.raises(DataError, match="data differ"):
        run_pipeline(config, prices=changed, checkpoint=checkpoint)

    calls = []
    result = run_pipeline(config, progress=lambda *call: calls.append(call), checkpoint=checkpoint)
    n_folds = int(result.manifest["out_of_sample"]["folds"])
    assert [done for stage, done, _ in calls if stage == LSTM] == list(range(n_folds + 1))  # restored ones too
    assert result.manifest["resumed"] == {"folds_restored": 3}
    pd.testing.assert_frame_equal(result.predictions, pd.read_parquet(reference / "predictions.parquet"),
                                  check_exact=True)


# --------------------------------------------------------------------------- the command line


def _lstmbt(script: bool) -> list[str]:
    if not script:
        return [sys.executable, "-m", "lstmbt"]
    path = Path(sys.executable).with_name("lstmbt")
    if not path.is_file():
        pytest.skip("the lstmbt console script is not installed next to this Python")
    return [str(path)]


def _start_run(out: Path, script: bool, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread each: the test machine has two busy cores
    with log.open("w") as sink:  # a file, not a pipe: a full pipe would stall the run
        # SIGINT back to its default, so the child turns it into KeyboardInterrupt even when this
        # test runs in a background job, whose children inherit an ignored SIGINT
        return subprocess.Popen([*_lstmbt(script), "run", *ARGS, "--out", str(out)], cwd=ROOT, env=env,
                                stdout=sink, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _freeze_after_a_fold(proc: subprocess.Popen, folds: Path, log: Path) -> None:
    """Wait until the run has saved a fold of the LSTM chain, then stop it on the spot (SIGSTOP)."""
    marker, deadline = folds / LSTM / "fold-0001.sha256.json", time.monotonic() + 180  # its commit mark
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run ended or stalled before saving a fold:\n{log.read_text()}")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGSTOP)


@pytest.mark.parametrize("sig, script", [(signal.SIGINT, False), (signal.SIGKILL, True)], ids=["sigint", "sigkill"])
def test_killed_run_resumes_to_the_uninterrupted_result(sig, script, reference, tmp_path, run_cli):
    out, log = tmp_path / "runs" / "killed", tmp_path / "output.txt"
    partial = partial_dir(out)
    proc = _start_run(out, script, log)
    _freeze_after_a_fold(proc, partial / "folds", log)
    done, total = saved_folds(partial / "folds")
    assert 2 <= done < total and not out.exists()
    os.kill(proc.pid, sig)
    os.kill(proc.pid, signal.SIGCONT)
    code = proc.wait(timeout=120)
    done = saved_folds(partial / "folds")[0]
    if sig == signal.SIGINT:
        assert code == 130, log.read_text()
        last = log.read_text().strip().splitlines()[-1]
        assert re.fullmatch(rf"interrupted: {done} of {total} folds saved; continue with: lstmbt run --resume "
                            rf"{re.escape(str(out))}", last), last
        assert "Traceback" not in log.read_text() and log.read_text().count("interrupted") == 1
    else:
        assert code == -signal.SIGKILL
    assert not out.exists() and (partial / "config.toml").is_file() and done < total

    target = partial if script else out  # --resume takes the run directory or its .partial
    code, stdout, err = run_cli(["run", "--resume", str(target)])
    assert code == 0, err
    assert f"report: {(out / 'report.html').resolve()}" in stdout
    assert_same_run(out, reference)
    assert json.loads((out / "manifest.json").read_text())["resumed"] == {"folds_restored": done}


def test_ctrl_c_in_process_keeps_the_folds_and_refuses_a_new_run_over_them(tmp_path, monkeypatch, run_cli):
    out = tmp_path / "runs" / "stopped"
    real_call = cli_options.progress_bars.__call__

    def interrupt(self, stage, done, total):
        if stage == LSTM and done == 2:
            raise KeyboardInterrupt
        real_call(self, stage, done, total)

    monkeypatch.setattr(cli_options.progress_bars, "__call__", interrupt)
    code, _, err = run_cli(["run", *ARGS, "--out", str(out)])
    done, total = saved_folds(partial_dir(out) / "folds")
    assert code == 130 and total > done >= 2  # the other models' chains ran side by side until a fold boundary
    last = err.strip().splitlines()[-1]
    assert last == f"interrupted: {done} of {total} folds saved; continue with: lstmbt run --resume {out}"
    code, _, err = run_cli(["run", *ARGS, "--out", str(out)])
    assert code == 2 and "waiting in" in err and f"--resume {out}" in err
    assert sorted(p.name for p in out.parent.iterdir()) == [partial_dir(out).name]


def _error(argv: list[str], run_cli) -> str:
    code, out, err = run_cli(argv)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), (code, out, err)
    assert "Traceback" not in out + err
    return err


def test_resume_refusals_are_one_line(reference, tmp_path, run_cli):
    assert "drop --set, --quick" in _error(["run", "--resume", str(tmp_path / "x"), "--set", "train.seed=1",
                                            "--quick"], run_cli)
    err = _error(["run", "--resume", str(tmp_path / "never")], run_cli)
    assert "nothing to resume" in err and "needs no resume" in err
    assert "finished and needs no resume" in _error(["run", "--resume", str(reference)], run_cli)
    partial_dir(tmp_path / "empty").mkdir()
    assert "holds no config.toml" in _error(["run", "--resume", str(tmp_path / "empty")], run_cli)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".empty.partial"]


def test_a_refused_input_leaves_no_partial_directory(tmp_path, run_cli):
    parent = tmp_path / "runs"
    parent.mkdir()
    err = _error(["run", "--quick", "--start", "2016-01-01", "--end", "2016-03-01", "--out", str(parent / "out")],
                 run_cli)
    assert "rows" in err  # refused once loaded, after the partial directory was made
    assert list(parent.iterdir()) == []
