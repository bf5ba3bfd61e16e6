"""Retraining that is reported as it happened, and the frozen twin that asks whether it pays.

- ``retrain_counts``: per model, retrains and the ones that changed the weights (a warm fold
  with best epoch 0 kept the carried weights), from a hand-made fold log;
- ``walk_forward_predict(frozen=True)``: fitted once, on the first fold, and never again: its
  predictions equal one fit on the first fold predicting every later test day;
- ``lstmbt run --set train.frozen_twin=true`` end to end: the manifest's ``retraining`` matches
  the fold log, the report's headline and the console say "retrained at n folds, weights
  changed at k", and the pair (model, twin) answers "does retraining pay?".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.retraining import retrain_counts
from lstmbt.backtest.splits import Fold, WalkForwardSplit
from lstmbt.backtest.walkforward import make_sample_grid, walk_forward_predict
from lstmbt.models.estimators import LSTMRegressor
from lstmbt.models.specs import NetSpec, TrainSettings
from lstmbt.reports.scorecard import pair_sentence
from helpers import TINY_SPX, call_main, set_args
from test_walkforward import make_case

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ARGS = ["run", *set_args({**TINY_SPX, "train.frozen_twin": True})]
NETWORKS = ("lstm_regression", "lstm_classification")


def _log(warm: list[bool], best: list[int], **extra) -> pd.DataFrame:
    n = len(warm)
    return pd.DataFrame({"model": "m", "fold": range(n), "warm": warm, "best_epoch": best,
                         "test_start": pd.bdate_range("2020-01-01", periods=n, freq="21B"), **extra})


def test_a_warm_fold_that_kept_its_weights_is_a_retrain_that_changed_nothing():
    counts = retrain_counts(_log([False, True, True, False, True], [5, 0, 2, 3, 0]), warm_start=["m"])["m"]
    assert counts == {"retrains": 5, "weights_changed": 3, "cold": 2, "warm": 3, "warm_changed": 1, "frozen": 0,
                      "last_change": _log([False] * 5, [1] * 5)["test_start"][3].date().isoformat(),
                      "warm_start": True}


def test_a_frozen_twins_later_folds_are_not_retrains():
    log = _log([False, False, False], [4, 0, 0], weights_changed=[True, False, False])
    counts = retrain_counts(log)["m"]
    assert (counts["retrains"], counts["weights_changed"], counts["frozen"], counts["cold"]) == (1, 1, 2, 1)


def test_a_seed_ensembles_counts_say_so_and_a_single_fit_beside_it_does_not():
    ensemble = _log([False, True], [3, 0], seeds=[3, 3])
    single = _log([False, False], [0, 0], seeds=[np.nan, np.nan]).assign(model="ridge")  # concat fills NaN
    counts = retrain_counts(pd.concat([ensemble, single], ignore_index=True))
    assert counts["m"]["seeds"] == 3 and "seeds" not in counts["ridge"]


def test_the_frozen_walk_forward_fits_once_on_the_first_fold():
    features, ret, _ = make_case(200)
    grid = make_sample_grid(features, ret, 5)
    folds = WalkForwardSplit(min_train=80, step=30, val_fraction=0.2).split(grid.n)
    assert len(folds) >= 3
    est = LSTMRegressor(net=NetSpec(hidden_size=4, num_layers=1, dropout=0.0, head=()), device="cpu",
                        train=TrainSettings(max_epochs=3, batch_size=16, mode="window"), random_state=3)
    frozen, log = walk_forward_predict(est, features, ret, grid, folds, frozen=True)
    once = Fold(index=0, train=folds[0].train, val=folds[0].val, test=np.concatenate([f.test for f in folds]))
    fitted_once, _ = walk_forward_predict(est, features, ret, grid, [once])
    np.testing.assert_array_equal(frozen["y_pred"].to_numpy(), fitted_once["y_pred"].to_numpy())
    assert list(log["weights_changed"]) == [True] + [False] * (len(folds) - 1)
    assert (log["epochs"].iloc[1:] == 0).all() and log["epochs"].iloc[0] > 0
    assert (log["weights_end"] == log["fit_end"].iloc[0]).all()  # every fold predicts with fold 0's weights
    retrained, _ = walk_forward_predict(est, features, ret, grid, folds)  # so the comparison above can fail
    assert not np.array_equal(retrained["y_pred"].to_numpy(), frozen["y_pred"].to_numpy())


def test_a_pair_with_a_question_answers_it_first():
    pair = {"a": "m", "b": "m_frozen", "question": "does retraining pay?", "sharpe_diff": -0.3,
            "sharpe_diff_ci_low": -0.5, "sharpe_diff_ci_high": -0.1}
    assert pair_sentence(pair).startswith("Does retraining pay? No, it costs: m_frozen beats m: Sharpe difference "
                                          "+0.30")
    assert pair_sentence({**pair, "sharpe_diff_ci_high": 0.1}).startswith(
        "Does retraining pay? Not shown: m and m_frozen cannot be told apart")


@pytest.fixture(scope="module")
def twin_run(tmp_path_factory) -> tuple[Path, str]:
    """A tiny run with frozen twins, and what it printed."""
    out = tmp_path_factory.mktemp("twin") / "run"
    code, stdout, err = call_main([*ARGS, "--out", str(out)])
    assert code == 0, err
    return out, stdout


def test_the_manifest_counts_the_retrains_that_changed_the_weights(twin_run):
    out, _ = twin_run
    folds = pd.read_parquet(out / "folds.parquet")
    saved = json.loads((out / "manifest.json").read_text())["retraining"]
    for name in NETWORKS:
        g = folds[folds["model"] == name]
        kept = int((g["warm"] & (g["best_epoch"] == 0)).sum())
        assert saved[name]["retrains"] == len(g) == saved["ridge_regression"]["weights_changed"]
        assert saved[name]["weights_changed"] == len(g) - kept == int(g["weights_changed"].sum())
        assert saved[name]["cold"] == int((~g["warm"]).sum())
        twin = saved[f"{name}_frozen"]
        assert (twin["retrains"], twin["weights_changed"], twin["frozen"]) == (1, 1, len(g) - 1)


def test_the_headline_and_the_console_say_where_the_weights_changed(twin_run):
    out, stdout = twin_run
    saved = json.loads((out / "manifest.json").read_text())["retraining"]["lstm_regression"]
    said = f"lstm_regression: retrained at {saved['retrains']} folds, weights changed at {saved['weights_changed']}"
    html = (out / "report.html").read_text()
    assert f"Retraining: {said}" in html
    assert "<th>weights_changed</th>" in html
    assert f"retraining: {said}" in stdout


def test_the_frozen_twin_is_paired_with_its_model(twin_run):
    out, stdout = twin_run
    pairs = json.loads((out / "comparisons.json").read_text())["pairs"]
    asked = [(p["a"], p["b"]) for p in pairs if p.get("question") == "does retraining pay?"]
    assert asked == [(name, f"{name}_frozen") for name in NETWORKS]
    assert sum(line.startswith("Does retraining pay? ") for line in stdout.splitlines()) == 2
    predictions = pd.read_parquet(out / "predictions.parquet")
    days = {name: set(g["date"]) for name, g in predictions.groupby("model")}
    assert all(days[name] == days[f"{name}_frozen"] for name in NETWORKS)  # scored on the same days
    metrics = json.loads((out / "metrics.json").read_text())
    assert {f"{name}_frozen" for name in NETWORKS} <= set(metrics)


def test_frozen_twin_must_be_a_boolean_and_not_pooled(tmp_path):
    code, _, err = call_main(["run", *set_args(TINY_SPX), "--set", 'train.frozen_twin="yes"',
                              "--out", str(tmp_path / "run")])
    assert code == 2 and "train.frozen_twin" in err.strip().splitlines()[-1]
    assert "Traceback" not in err and not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="train.frozen_twin has no pooled model"):
        RunConfig.resolve(overrides={"train.frozen_twin": True, "model.pooled": True})


def test_a_warm_refit_trains_at_the_warm_learning_rate():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5, 2)).astype(np.float32), rng.normal(size=60).astype(np.float32)
    settings = TrainSettings(lr=0.01, max_epochs=2, warm_epochs=1, mode="window", warm_lr_factor=0.25)
    est = LSTMRegressor(net=NetSpec(hidden_size=4, num_layers=1, head=()), train=settings, device="cpu",
                        warm_start=True)
    assert est.fit(x, y).log_.lr == [0.01, 0.01] and not est.warm_started_
    assert est.fit(x, y).log_.lr == [0.0025] and est.warm_started_


def test_the_warm_refit_keys_are_checked_and_older_runs_keep_their_rule():
    defaults = RunConfig().train
    assert (defaults.warm_lr_factor, defaults.warm_accept_z) == (1.0, 0.0)
    saved = RunConfig().to_dict()
    for key in ("warm_lr_factor", "warm_accept_z"):
        del saved["train"][key]
    old = RunConfig.from_saved(saved).train  # a run saved before the keys existed kept epochs 2 SE better
    assert (old.warm_lr_factor, old.warm_accept_z) == (1.0, 2.0)
    for key, bad in (("train.warm_lr_factor", 0.0), ("train.warm_accept_z", -1.0)):
        with pytest.raises(ConfigError, match=key):
            RunConfig.resolve(overrides={key: bad})
