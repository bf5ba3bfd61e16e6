"""Leakage canary: a feature that knows tomorrow's return must be caught, the same feature lagged must pass.

The guard has two lines: the timing test (perturbing prices after day D must not change any
feature dated up to D) and the run's "too good to be true" warning (a daily hit rate above
``TOO_GOOD_HIT_RATE``). Linear baselines stand in for the LSTM to keep this fast. The timing
test also covers a custom strategy (``strategy.custom``) with a volatility target.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lstmbt.backtest.design as design_module
import lstmbt.models.features as features_module
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.data import load_prices
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.lookahead import TOO_GOOD_HIT_RATE
import test_pipeline
from test_pipeline import perturb_after, sp500_slice, write_csv  # noqa: F401  (sp500_slice: a fixture)

_real_make_features = features_module.make_features


def _with_planted(lag: int):
    """make_features plus a column holding the close-to-close log return shifted by ``lag`` days.

    lag = -1 is the leak (tomorrow's return on today's row); lag = 0 is today's return, known at
    today's close and therefore legitimate.
    """
    def make_features(prices: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
        frame = _real_make_features(prices, *args, **kwargs)
        ret = np.log(prices["Close"]).diff()
        return frame.assign(planted=ret.shift(lag).fillna(0.0))
    return make_features


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    return load_prices(RunConfig().data).loc["2012-01-01":"2015-12-31"]


def _config(source: str, **extra) -> RunConfig:
    return RunConfig.resolve(flags={"data.source": source, "model.lstm": False, "split.min_train": 300,
                                    "split.step": 126, "model.lookback": 5, **extra})


@pytest.mark.parametrize("lag, leaks", [(-1, True), (0, False)])
def test_timing_test_catches_the_leak_and_passes_the_lagged_feature(prices, lag, leaks):
    make = _with_planted(lag)
    day = prices.index[600]
    before = make(prices, ("returns",), 5)
    after = make(perturb_after(prices, day), ("returns",), 5)
    unchanged = before.loc[:day].equals(after.loc[:day])
    assert unchanged is not leaks


@pytest.mark.parametrize("lag, leaks", [(-1, True), (0, False)])
def test_too_good_to_be_true_flags_the_leak_only(tmp_path, monkeypatch, prices, lag, leaks):
    monkeypatch.setattr(design_module, "make_features", _with_planted(lag))  # where the run looks it up
    result = run(_config(write_csv(tmp_path / "p.csv", prices)))
    hit = result.metrics["logistic_classification"]["hit_rate"]
    flagged = [w for w in result.manifest["warnings"] if w.startswith("LOOK-AHEAD SUSPECTED")]
    if leaks:
        assert hit > TOO_GOOD_HIT_RATE
        assert any("logistic_classification" in w for w in flagged) and any("ridge_regression" in w for w in flagged)
        assert result.manifest["warnings"][0] == flagged[0]  # the first thing the report says
    else:
        assert hit < 0.6 and not flagged


@pytest.mark.parametrize("mode", ["sequence+warm", pytest.param("window", marks=pytest.mark.slow)])
def test_perturbing_the_future_changes_nothing_with_refit_on(tmp_path, sp500_slice, monkeypatch, mode):
    """The timing rule holds when each fold also trains on its validation tail (``train.refit``)."""
    monkeypatch.setitem(test_pipeline.MODES, "refit", {**test_pipeline.MODES[mode], "train.refit": True})
    test_pipeline.test_perturbing_the_future_changes_nothing_up_to_that_day(tmp_path, sp500_slice, "return", "refit")


def test_perturbing_the_future_changes_nothing_under_a_custom_strategy(tmp_path, prices):
    """The timing rule holds for a rule of your own that reads the prices (``custom_rules.momentum_vol``:
    a 20-day trend filter on the model's call), scaled to a volatility target: every position and
    return dated up to the cut is unchanged, bit for bit, while later ones move."""
    extra = {"strategy.custom": "custom_rules:momentum_vol", "strategy.vol_target": 0.1}
    base = run(_config(write_csv(tmp_path / "a.csv", prices), **extra))
    oos = base.positions.index
    cut = oos[len(oos) // 2 + 7]
    other = run(_config(write_csv(tmp_path / "b.csv", perturb_after(prices, cut)), **extra))
    pd.testing.assert_frame_equal(base.positions.loc[:cut], other.positions.loc[:cut], check_exact=True)
    pd.testing.assert_frame_equal(base.returns.loc[:cut], other.returns.loc[:cut], check_exact=True)
    sized = base.positions.drop(columns="buy_and_hold")
    assert ((sized.abs() > 0) & (sized.abs() < 1)).any().any()  # the rule and the target both acted
    assert not base.positions.loc[cut:].iloc[1:].equals(other.positions.loc[cut:].iloc[1:])
