"""Predictions -> target positions: the threshold rules, confidence sizing, volatility targeting and buy-and-hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import StrategyConfig
from lstmbt.strategies import (
    buy_and_hold,
    classification_confidence_positions,
    classification_positions,
    predicted_log_return,
    regression_confidence_positions,
    regression_positions,
    trailing_volatility,
    vol_target_positions,
)

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
    with pytest.raises(ValueError, match="'return', 'week_mean', 'max_drawdown' or 'price'"):
        predicted_log_return(returns, close, "direction")


def test_plain_threshold_rules_stay_the_default_and_keep_their_values():
    """sizing = "threshold" (the default) means the all-or-nothing rules, with their old defaults."""
    s = StrategyConfig()
    assert (s.sizing, s.threshold, s.cutoff, s.long_short) == ("threshold", 0.0, 0.5, False)
    p_up = pd.Series([0.7, 0.5, 0.3, 0.56, 0.44], index=DAYS)
    pred = p_up - 0.5
    assert classification_positions(p_up, s.cutoff, s.long_short).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert regression_positions(pred, s.threshold, s.long_short).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]


# --------------------------------------------------------------------------- confidence sizing: classification

P_UP = pd.Series([0.5, 0.55, 0.6, 0.7, 0.45, 0.3, np.nan], index=pd.bdate_range("2021-01-04", periods=7))


def test_classification_confidence_scales_caps_and_floors():
    # default gain 10: p_up 0.55 -> half, 0.6 and above -> full; NaN -> flat
    long_only = classification_confidence_positions(P_UP)
    assert long_only.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.0, 0.0, 0.0])
    long_short = classification_confidence_positions(P_UP, long_short=True)
    assert long_short.tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0, -0.5, -1.0, 0.0])
    assert classification_confidence_positions(P_UP, gain=4.0, long_short=True).tolist() == pytest.approx(
        [0.0, 0.2, 0.4, 0.8, -0.2, -0.8, 0.0])
    assert long_short.name == "position" and long_short.index.equals(P_UP.index)


def test_classification_confidence_is_linear_below_the_cap():
    p_up = pd.Series(np.linspace(0.3, 0.7, 41))
    small = classification_confidence_positions(p_up, gain=1.0, long_short=True)
    double = classification_confidence_positions(p_up, gain=2.0, long_short=True)
    np.testing.assert_allclose(double, 2.0 * small, atol=1e-15)
    np.testing.assert_allclose(small, p_up - 0.5, atol=1e-15)
    assert classification_confidence_positions(p_up, gain=100.0, long_short=True).between(-1.0, 1.0).all()


def test_classification_confidence_rejects_a_non_positive_gain():
    with pytest.raises(ValueError, match="gain must be > 0"):
        classification_confidence_positions(P_UP, gain=0.0)


# --------------------------------------------------------------------------- confidence sizing: regression


def closes_from(log_returns: list[float], start: float = 100.0) -> pd.Series:
    """Closes whose daily log returns are ``log_returns`` (one more close than returns)."""
    path = start * np.exp(np.concatenate([[0.0], np.cumsum(log_returns)]))
    return pd.Series(path, index=pd.bdate_range("2021-01-04", periods=len(path)))


# every 3 consecutive returns are {+0.02, 0, -0.02}: trailing 3-day vol (ddof 1) is exactly 0.02
CYCLE = closes_from([0.02, 0.0, -0.02] * 3)


def test_trailing_volatility_by_hand():
    vol = trailing_volatility(CYCLE, vol_window=3)
    assert vol.iloc[:3].isna().all()  # days 0..2 see fewer than 3 returns
    np.testing.assert_allclose(vol.iloc[3:], 0.02, rtol=1e-9)
    rng = np.random.default_rng(1)
    close = closes_from(list(rng.normal(0, 0.01, 30)))
    vol = trailing_volatility(close, vol_window=5)
    rets = np.diff(np.log(close.to_numpy()))
    for t in range(5, len(close)):
        assert vol.iloc[t] == pytest.approx(np.std(rets[t - 5:t], ddof=1), rel=1e-12)  # returns into days t-4..t


def test_regression_confidence_scales_with_the_forecast_in_sigmas():
    pred = pd.Series([0.0, 0.0, 0.0, 0.01, 0.03, -0.01, -0.05, 0.02, np.nan, -np.inf], index=CYCLE.index)
    long_only = regression_confidence_positions(pred, CYCLE, vol_window=3)
    # vol 0.02: 0.01 -> 0.5 sigma, 0.03 -> capped at 1, negatives -> flat, one sigma -> full, NaN -> flat
    assert long_only.tolist() == pytest.approx([0, 0, 0, 0.5, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    long_short = regression_confidence_positions(pred, CYCLE, vol_window=3, long_short=True)
    assert long_short.tolist() == pytest.approx([0, 0, 0, 0.5, 1.0, -0.5, -1.0, 1.0, 0.0, -1.0])
    half = regression_confidence_positions(pred, CYCLE, vol_window=3, gain=0.5, long_short=True)
    assert half.tolist() == pytest.approx([0, 0, 0, 0.25, 0.75, -0.25, -1.0, 0.5, 0.0, -1.0])
    assert long_short.name == "position" and long_short.index.equals(pred.index)


def test_regression_confidence_scales_volatility_by_sqrt_horizon():
    pred = pd.Series(0.01, index=CYCLE.index)
    out = regression_confidence_positions(pred, CYCLE, vol_window=3, horizon=4)  # 4-day sigma = 0.04
    assert out.iloc[3:].tolist() == pytest.approx([0.25] * 7)
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        regression_confidence_positions(pred, CYCLE, vol_window=3, horizon=0)


def test_regression_confidence_is_flat_in_the_warm_up_and_at_zero_volatility():
    close = closes_from([0.0] * 4 + [0.02, -0.02, 0.01])
    pred = pd.Series(0.05, index=close.index)
    out = regression_confidence_positions(pred, close, vol_window=3)
    assert out.iloc[:3].tolist() == [0.0] * 3   # warm-up: fewer than 3 returns known
    assert out.iloc[3:5].tolist() == [0.0] * 2  # three unchanged closes in a row: zero vol, no bet
    assert (out.iloc[5:] == 1.0).all()          # vol known and > 0: a big forecast is a full position


def test_regression_confidence_reads_earlier_history_and_checks_the_dates():
    """Closes before the first decision day fill the window, so it starts sized, not in warm-up."""
    pred = pd.Series(0.01, index=CYCLE.index[5:])
    out = regression_confidence_positions(pred, CYCLE, vol_window=3)
    assert out.index.equals(pred.index) and out.tolist() == pytest.approx([0.5] * 5)
    with pytest.raises(ValueError, match="close lacks 2 decision days"):
        regression_confidence_positions(pd.Series(0.01, index=CYCLE.index), CYCLE.iloc[2:], vol_window=3)
    with pytest.raises(ValueError, match="vol_window must be >= 2"):
        regression_confidence_positions(pred, CYCLE, vol_window=1)
    with pytest.raises(ValueError, match="gain must be > 0"):
        regression_confidence_positions(pred, CYCLE, gain=-1.0)


@pytest.mark.parametrize("cut", [25, 40, 58])
def test_regression_confidence_is_causal(cut):
    """Perturbing every close after day ``cut`` leaves every position up to ``cut`` unchanged, bit for bit."""
    rng = np.random.default_rng(cut)
    close = closes_from(list(rng.normal(0, 0.01, 59)))
    pred = pd.Series(rng.normal(0, 0.01, len(close)), index=close.index)
    shocked = close.copy()
    shocked.iloc[cut + 1:] *= np.exp(rng.normal(0, 0.05, len(close) - cut - 1))
    before = regression_confidence_positions(pred, close, vol_window=10, gain=3.0, long_short=True)
    after = regression_confidence_positions(pred, shocked, vol_window=10, gain=3.0, long_short=True)
    pd.testing.assert_series_equal(before.iloc[:cut + 1], after.iloc[:cut + 1], check_exact=True)
    if cut + 1 < len(close):
        assert not before.iloc[cut + 1:].equals(after.iloc[cut + 1:])  # the shock is visible afterwards


def test_vol_target_by_hand():
    """Log returns 0.01, -0.01, 0.02, 0 and a 2-day window: sigma (ddof 1) is 0.01 * sqrt(2) on day 2,
    0.015 * sqrt(2) on day 3 and 0.01 * sqrt(2) on day 4; times sqrt(252) a year."""
    close = closes_from([0.01, -0.01, 0.02, 0.0])
    position = pd.Series([1.0, 1.0, 1.0, -1.0, 0.5], index=close.index)
    out = vol_target_positions(position, close, 0.10, vol_window=2)
    day2, day3 = 0.10 / (0.01 * np.sqrt(2 * 252)), 0.10 / (0.015 * np.sqrt(2 * 252))  # 0.4454, 0.2970
    assert out.tolist() == pytest.approx([0.0, 0.0, day2, -day3, 0.5 * day2], rel=1e-9)
    assert out.name == "position" and out.index.equals(position.index)
    # a target above the realised volatility would lever up: capped at 1 by default, else at max_leverage
    assert vol_target_positions(position, close, 0.50, vol_window=2).tolist() == [0.0, 0.0, 1.0, -1.0, 0.5]
    lever = vol_target_positions(position, close, 0.50, vol_window=2, max_leverage=2.0)
    assert lever.tolist() == pytest.approx([0.0, 0.0, 2.0, -0.5 / (0.015 * np.sqrt(2 * 252)), 1.0], rel=1e-9)


def test_vol_target_at_zero_volatility_and_bad_arguments():
    close = closes_from([0.0, 0.0, 0.0, 0.01])
    out = vol_target_positions(pd.Series(0.8, index=close.index), close, 0.10, vol_window=2)
    assert out.tolist() == pytest.approx([0.0, 0.0, 0.8, 0.8, 0.10 / (0.01 / np.sqrt(2) * np.sqrt(252)) * 0.8])
    with pytest.raises(ValueError, match="vol_target must be > 0"):
        vol_target_positions(out, close, 0.0)
    with pytest.raises(ValueError, match="close lacks 1 decision days"):
        vol_target_positions(out, close.iloc[1:], 0.1, vol_window=2)


def test_vol_target_hits_the_target_on_a_random_walk_whose_volatility_jumps():
    """Daily sigma 1% for 3000 days, then 3% (16% and 48% a year): unscaled, the halves differ 3x;
    scaled to 10% a year over a 63-day window, each half's realised volatility is near 10%."""
    rng = np.random.default_rng(7)
    log_ret = np.concatenate([rng.normal(0, 0.01, 3000), rng.normal(0, 0.03, 3000)])
    close = closes_from(list(log_ret))
    position = pd.Series(np.where(rng.random(len(close)) < 0.5, 1.0, -1.0), index=close.index)
    scaled = vol_target_positions(position, close, 0.10, vol_window=63)
    earned = scaled.to_numpy()[:-1] * np.expm1(log_ret)  # the position decided at t earns the move t -> t+1
    for part in (earned[100:3000], earned[3100:]):  # skip the warm-up and the window straddling the jump
        assert np.std(part, ddof=1) * np.sqrt(252) == pytest.approx(0.10, rel=0.08)
    assert scaled.abs().max() < 1.0  # the target is below the volatility throughout: never capped


@pytest.mark.parametrize("cut", [25, 40])
def test_vol_target_is_causal(cut):
    rng = np.random.default_rng(cut)
    close = closes_from(list(rng.normal(0, 0.01, 59)))
    position = pd.Series(rng.uniform(-1, 1, len(close)), index=close.index)
    shocked = close.copy()
    shocked.iloc[cut + 1:] *= np.exp(rng.normal(0, 0.05, len(close) - cut - 1))
    before = vol_target_positions(position, close, 0.05, vol_window=10)
    after = vol_target_positions(position, shocked, 0.05, vol_window=10)
    pd.testing.assert_series_equal(before.iloc[:cut + 1], after.iloc[:cut + 1], check_exact=True)
    assert not before.iloc[cut + 1:].equals(after.iloc[cut + 1:])
