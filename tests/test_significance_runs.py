"""Significance on whole walk-forwards: detected on a planted signal, not on random walks.

Linear baselines stand in for the LSTM (the same folds, features and scaling, milliseconds
per fold), so 50 random-walk seeds stay quick.
"""

from __future__ import annotations

import numpy as np

from lstmbt.backtest import significance as sig
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.metrics import hit_rate_pvalue
from lstmbt.backtest.pipeline import build_estimator, make_design, run
from lstmbt.backtest.walkforward import walk_forward_predict
from test_pipeline import planted_prices, write_csv
from helpers import PLANTED_FLAGS


def _pvalues(signal: bool, seed: int) -> dict[str, float]:
    """One-sided p-values of the logistic calls and the ridge forecasts over one walk-forward."""
    prices = planted_prices(700, signal=signal, seed=seed)
    config = RunConfig().with_values({"data.source": "sample:sp500", **PLANTED_FLAGS})
    design = make_design(prices, config)
    out = {}
    for task in ("classification", "regression"):
        preds, _ = walk_forward_predict(build_estimator(task, config, linear=True), design.features,
                                        design.targets[task], design.grid, design.folds)
        if task == "classification":
            pred_up, real_up = preds["p_up"].to_numpy() > 0.5, preds["y_true"].to_numpy() > 0
            out["binomial"] = hit_rate_pvalue(pred_up, real_up)
            out["pt"] = sig.pesaran_timmermann(pred_up, real_up)[1]
        else:
            y, p = preds["y_true"].to_numpy(), preds["y_pred"].to_numpy()
            out["dm"] = sig.dm_test(y, p, np.zeros(len(y)), "squared")[1]
    return out


def test_random_walks_are_not_called_significant_in_nine_of_ten_seeds():
    rejected = {"binomial": 0, "pt": 0, "dm": 0}
    for seed in range(50):
        for key, p in _pvalues(signal=False, seed=seed).items():
            rejected[key] += p < 0.05
    assert all(count <= 5 for count in rejected.values()), rejected


def test_a_planted_signal_is_called_significant():
    p = _pvalues(signal=True, seed=7)
    assert p["binomial"] < 0.01 and p["pt"] < 0.01 and p["dm"] < 0.01, p


def test_the_run_reports_significance_for_every_model_and_the_verdict_quotes_it(tmp_path):
    result = run(RunConfig.resolve(flags={"data.source": write_csv(tmp_path / "p.csv", planted_prices(700, True)),
                                          **PLANTED_FLAGS}))
    clf, reg = result.metrics["logistic_classification"], result.metrics["ridge_regression"]
    assert clf["pt_pvalue"] < 0.01 and clf["hit_rate_ci_low"] > max(result.metrics["buy_and_hold"]["hit_rate"], 0.5)
    assert reg["dm_pvalue"] < 0.01 and "dm_pvalue" not in clf
    assert clf["sharpe_diff_ci_low"] > 0 and clf["psr"] > 0.99
    assert clf["sharpe_ci_low"] <= clf["sharpe"] <= clf["sharpe_ci_high"]
    bench = result.metrics["buy_and_hold"]
    assert {"sharpe_ci_low", "sharpe_ci_high", "psr"} <= set(bench) and "pt_pvalue" not in bench
