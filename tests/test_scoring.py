"""Baselines and per-fold figures: the majority baseline sees only training labels; fold stats add up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.metrics import hit_rate, total_return
from lstmbt.backtest.scoring import fold_stats, majority_p_up
from lstmbt.backtest.splits import Fold


class _Grid:
    def __init__(self, dates):
        self.dates = dates


DATES = pd.bdate_range("2024-01-01", periods=12)


def test_majority_uses_each_folds_training_and_validation_labels_only():
    direction = pd.Series([1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0], index=DATES, dtype=float)
    folds = [Fold(index=0, train=np.arange(0, 3), val=np.arange(3, 4), test=np.arange(5, 8)),
             Fold(index=1, train=np.arange(0, 6), val=np.array([], dtype=int), test=np.arange(8, 12))]
    p = majority_p_up(direction, _Grid(DATES), folds)
    assert list(p.index) == list(DATES[5:12])
    assert p.iloc[:3].tolist() == [0.75] * 3          # rows 0..3: three ups of four
    assert p.iloc[3:].tolist() == [4 / 6] * 4         # rows 0..5: four ups of six
    # labels past a fold's training rows never move its baseline
    later = direction.copy()
    later.iloc[6:] = 1.0
    pd.testing.assert_series_equal(majority_p_up(later, _Grid(DATES), folds), p)
    gap = direction.copy()
    gap.iloc[4] = 0.0  # the purge gap of fold 0, training data of fold 1
    moved = majority_p_up(gap, _Grid(DATES), folds)
    assert moved.iloc[:3].tolist() == p.iloc[:3].tolist() and moved.iloc[3] == pytest.approx(3 / 6)


def test_fold_stats_are_the_blocks_hit_rate_and_compounded_returns():
    dates = DATES[:6]
    positions = pd.DataFrame({"m": [1, 1, 0, 0, 1, 1], "buy_and_hold": 1.0}, index=dates)
    returns = pd.DataFrame({"m": [0.01, -0.02, 0.0, 0.0, 0.03, 0.01],
                            "buy_and_hold": [0.01, -0.02, 0.02, -0.01, 0.03, 0.01]}, index=DATES[1:7])
    real_up = np.array([True, False, True, False, True, True])
    calls = {"m": np.array([True, True, False, False, True, True])}
    folds = pd.DataFrame({"model": ["m", "m"], "fold": [0, 1], "test_start": [dates[0], dates[3]],
                          "test_end": [dates[2], dates[5]]})
    out = fold_stats(folds, positions, returns, real_up, calls)
    assert out["hit_rate"].tolist() == pytest.approx([hit_rate(calls["m"][:3], real_up[:3]), 1.0])
    assert out["base_rate"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert out["strategy_return"].tolist() == pytest.approx([total_return([0.01, -0.02, 0.0]),
                                                             total_return([0.0, 0.03, 0.01])])
    assert out["buy_and_hold_return"].iloc[1] == pytest.approx(total_return([-0.01, 0.03, 0.01]))


def _predictions(dates: pd.DatetimeIndex, close: pd.Series) -> pd.DataFrame:
    n = len(dates)
    key = {"horizon": 1, "family": "lstm", "baseline": False}
    reg = pd.DataFrame({"date": dates, "target": "regression", "model": "lstm_regression", **key,
                        "y_pred": np.linspace(-0.002, 0.02, n), "p_up": np.nan, "close": close.reindex(dates).values})
    clf = pd.DataFrame({"date": dates, "target": "classification", "model": "lstm_classification", **key,
                        "y_pred": 0.0, "p_up": np.linspace(0.4, 0.7, n), "close": close.reindex(dates).values})
    return pd.concat([reg, clf], ignore_index=True)


def test_sizing_threshold_is_the_plain_rule_and_confidence_scales_with_conviction():
    from lstmbt.backtest.config import RunConfig
    from lstmbt.backtest.scoring import make_positions

    days = pd.bdate_range("2024-01-01", periods=80)
    close = pd.Series(100 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, 80))), index=days)
    dates = days[40:]
    preds = _predictions(dates, close)
    plain = make_positions(preds, dates, RunConfig(), close=close)
    assert set(plain["lstm_regression"]) <= {0.0, 1.0} and set(plain["lstm_classification"]) <= {0.0, 1.0}
    assert (plain["lstm_classification"] == (preds.loc[preds["model"] == "lstm_classification", "p_up"]
                                             .to_numpy() > 0.5)).all()
    cfg = RunConfig().with_values({"strategy.sizing": "confidence"})
    sized = make_positions(preds, dates, cfg, close=close)
    p_up = preds.loc[preds["model"] == "lstm_classification", "p_up"].to_numpy()
    np.testing.assert_allclose(sized["lstm_classification"], np.clip(10 * (p_up - 0.5), 0, 1))
    from lstmbt.strategies import regression_confidence_positions

    y_pred = preds.loc[preds["model"] == "lstm_regression", "y_pred"].set_axis(dates)
    expected = regression_confidence_positions(y_pred, close, 21, 1.0, False)
    np.testing.assert_allclose(sized["lstm_regression"], expected)
    reg = sized["lstm_regression"]
    assert (reg.iloc[:3] == 0).all()  # negative forecasts, long-only
    assert ((reg > 0) & (reg < 1)).any() and reg.max() == 1.0  # fractional, then capped
    # with the whole close history the first test days already have a trailing volatility
    late = make_positions(preds, dates, cfg, close=close.loc[dates[0]:])
    assert (late["lstm_regression"].iloc[:21] == 0).all() and (reg.iloc[5:21] > 0).all()
    assert (sized["persistence"] == 0).all()
