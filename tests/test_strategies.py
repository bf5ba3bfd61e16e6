"""Predictions -> target positions: the threshold rules and buy-and-hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from strategies import buy_and_hold, classification_positions, predicted_log_return, regression_positions

DAYS = pd.bdate_range("2021-01-04", periods=5)


def test_regression_long_flat_uses_a_strict_threshold():
    pred = pd.Series([0.002, 0.0, -0.001, 0.0005, 0.001], index=DAYS)
    assert regression_positions(pred).tolist() == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert regression_positions(pred, threshold=0.001).tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_regression_long_short_goes_short_below_minus_threshold():
    pred = pd.Series([0.002, 0.0, -0.001, -0.0005, 0.001], index=DAYS)
    assert regression_positions(pred, long_short=True).tolist() == [1.0, 0.0, -1.0, -1.0, 1.0]
    assert regression_positions(pred, threshold=0.0008, long_short=True).tolist() == [1.0, 0.0, -1.0, 0.0, 1.0]


def test_classification_cutoff_and_mirror_short_side():
    p_up = pd.Series([0.7, 0.5, 0.3, 0.56, 0.44], index=DAYS)
    assert classification_positions(p_up).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert classification_positions(p_up, long_short=True).tolist() == [1.0, 0.0, -1.0, 1.0, -1.0]
    assert classification_positions(p_up, cutoff=0.6, long_short=True).tolist() == [1.0, 0.0, -1.0, 0.0, 0.0]


def test_positions_keep_the_index_and_stay_in_bounds():
    pred = pd.Series(np.random.default_rng(0).normal(0, 0.01, 5), index=DAYS)
    for pos in (regression_positions(pred, long_short=True), classification_positions(pred + 0.5, long_short=True),
                buy_and_hold(DAYS)):
        assert pos.index.equals(DAYS)
        assert pos.between(-1.0, 1.0).all()
    assert buy_and_hold(DAYS).tolist() == [1.0] * 5


def test_predicted_log_return_from_a_price_forecast():
    close = pd.Series([100.0, 100.0, 100.0], index=DAYS[:3])
    y_pred = pd.Series([110.0, 100.0, -5.0], index=DAYS[:3])
    out = predicted_log_return(y_pred, close, "price")
    assert out.iloc[0] == pytest.approx(np.log(1.1))
    assert out.iloc[1] == 0.0
    assert out.iloc[2] == -np.inf  # a non-positive price forecast reads as "down", never as NaN
    assert regression_positions(out, long_short=True).tolist() == [1.0, 0.0, -1.0]
    returns = pd.Series([0.01, -0.02, 0.0], index=DAYS[:3])
    pd.testing.assert_series_equal(predicted_log_return(returns, close, "return"), returns)
    with pytest.raises(ValueError, match="'return' or 'price'"):
        predicted_log_return(returns, close, "direction")
