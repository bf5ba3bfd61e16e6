"""Exposure, buy-and-hold at the strategy's beta, and target positions that are held.

Expected values are recomputed here with numpy alone from what the entry points saved or returned:
the regression slope by least squares, CAGRs by compounding, the rebalanced book by a loop over bars.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_resume import ARGS

import lstmbt
from lstmbt.backtest.config import BacktestConfig, DataConfig
from lstmbt.backtest.data import load_prices
from lstmbt.reports.scorecard import COLUMNS, scorecard_rows
from lstmbt.reports.tables import format_metric
from helpers import call_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: a bull market: an un-rebalanced half position drifts towards three quarters
BULL_START = "2009-03-09"


def _slope(r: np.ndarray, b: np.ndarray) -> float:
    """The least-squares slope of ``r`` on ``b`` with an intercept."""
    return float(np.linalg.lstsq(np.column_stack([np.ones_like(b), b]), r, rcond=None)[0][1])


def _cagr(r: np.ndarray) -> float:
    return float(np.prod(1.0 + r) ** (252 / len(r)) - 1.0)


# ------------------------------------------------------------------ a run: exposure and B&H at the same beta


@pytest.fixture(scope="module")
def sized_run(tmp_path_factory) -> Path:
    """A tiny run under confidence sizing, so positions take fractional sizes."""
    out = tmp_path_factory.mktemp("exposure") / "run"
    code, _, err = call_main(["run", *ARGS, "--set", "strategy.sizing=confidence", "--out", str(out)])
    assert code == 0, err
    return out


def test_exposure_is_mean_absolute_position_and_time_invested_the_share_of_days(sized_run):
    metrics = json.loads((sized_run / "metrics.json").read_text())
    positions = pd.read_parquet(sized_run / "positions.parquet")
    for name in positions.columns:
        p = positions[name].to_numpy()
        assert metrics[name]["exposure"] == pytest.approx(np.mean(np.abs(p)), rel=1e-12)
        assert metrics[name]["time_invested"] == pytest.approx(np.mean(p != 0), rel=1e-12)
    sized = metrics["lstm_classification"]
    assert 0 < sized["exposure"] < sized["time_invested"]  # fractional sizes: less capital than days


def test_buy_and_hold_at_the_same_beta_is_recomputed_with_numpy(sized_run):
    metrics = json.loads((sized_run / "metrics.json").read_text())
    returns = pd.read_parquet(sized_run / "returns.parquet")
    b = returns["buy_and_hold"].to_numpy()
    checked = 0
    for name in returns.columns.drop("buy_and_hold"):
        r = returns[name].to_numpy()
        if np.ptp(r) == 0:  # never invested: no beta, so nothing to match
            assert metrics[name]["beta_matched_bh_cagr"] is None
            continue
        beta = _slope(r, b)
        assert metrics[name]["beta"] == pytest.approx(beta, rel=1e-9)
        assert metrics[name]["beta_matched_bh_cagr"] == pytest.approx(_cagr(beta * b), rel=1e-9)
        checked += 1
    assert checked >= 2
    rows = {row["name"]: row["cells"] for row in scorecard_rows(metrics, ["lstm_classification"])}
    cell = rows["lstm_classification"]["beta_matched_bh_cagr"]
    assert cell["text"] == format_metric("cagr", _cagr(metrics["lstm_classification"]["beta"] * b))
    sized = metrics["lstm_classification"]["time_invested"]
    assert rows["lstm_classification"]["exposure"]["sub"] == f"{format_metric('time_invested', sized)} of days"
    assert rows["buy_and_hold"]["exposure"]["sub"] == ""  # always fully long: exposure and time invested agree
    report = (sized_run / "report.html").read_text()
    assert "B&amp;H at same beta" in report and "at exposure" not in report


def test_the_scorecard_says_what_exposure_and_its_benchmark_are():
    words = {key: (header, text) for key, header, text in COLUMNS}
    assert words["exposure"][1].startswith("mean |position|") and "time invested" in words["exposure"][1]
    assert words["beta_matched_bh_cagr"][0] == "B&H at same beta" and "beta" in words["beta_matched_bh_cagr"][1]
    assert "exposure_matched_bh_cagr" not in words


# ------------------------------------------------------------------ a constant half position on real prices


@pytest.fixture(scope="module")
def bull() -> pd.DataFrame:
    return load_prices(DataConfig(source="sample:sp500")).loc[BULL_START:]


@pytest.fixture(scope="module")
def half(bull):
    """A constant 0.5 target through ``lstmbt.backtest``: held (the default band) and left to drift."""
    pos = pd.Series(0.5, index=bull.index[:-1], name="half")
    return lstmbt.backtest(bull, pos), lstmbt.backtest(bull, pos, rebalance_band=1.0)


def test_a_constant_half_position_is_half_exposed_and_always_invested(half):
    held, _ = half
    figures = held.metrics.loc["half"]
    assert figures["exposure"] == 0.5 and figures["time_invested"] == 1.0
    cell = {row["name"]: row["cells"] for row in scorecard_rows(held.metrics.T.to_dict(), [])}["half"]["exposure"]
    assert (cell["text"], cell["sub"]) == ("50.0%", "100.0% of days")


def test_a_held_half_position_has_beta_one_half(half):
    held, drifted = half
    b = held.returns["buy_and_hold"].to_numpy()
    beta_held, beta_drifted = _slope(held.returns["half"].to_numpy(), b), _slope(drifted.returns["half"].to_numpy(), b)
    assert held.metrics.loc["half", "beta"] == pytest.approx(beta_held, rel=1e-9)
    assert abs(beta_held - 0.5) < 0.02
    assert beta_drifted > 0.6  # left alone, the half position grew with the market: the band is what holds it
    assert held.metrics.loc["half", "n_trades"] > drifted.metrics.loc["half", "n_trades"]


def test_the_report_says_how_positions_are_held(half, sized_run):
    assert "drifts more than 5 percentage points of equity from its target is restored" in \
        (sized_run / "report.html").read_text()
    _, drifted = half
    assert "Positions drift with prices between target changes" in drifted.report()


def _rebalanced(bars: pd.DataFrame, target: float, band: float, fee: float) -> tuple[np.ndarray, float]:
    """Net returns and fees of a constant ``target``, by hand: filled at the next open, and restored at
    the next open whenever, at a close, the holding bought at the last fill (valued at that close, the
    rest in cash, costs left out as the rule states) weighed more than ``band`` away from it; a fee
    per side, no slippage."""
    opens, closes = bars["Open"].to_numpy(), bars["Close"].to_numpy()
    shares, cash, fees, before, out, bought_at = 0.0, 1.0, 0.0, 1.0, [], math.nan
    for bar in range(1, len(bars)):
        grown = target * closes[bar - 1] / bought_at
        if bar == 1 or abs(grown / (grown + 1.0 - target) - target) > band:
            price = bought_at = opens[bar]
            wanted = target * (cash + shares * price) / price
            paid = fee * abs(wanted - shares) * price
            cash, shares, fees = cash - (wanted - shares) * price - paid, wanted, fees + paid
        value = cash + shares * closes[bar]
        out.append(value / before - 1.0)
        before = value
    return np.asarray(out), fees


def test_rebalancing_trades_are_the_hand_simulated_ones_and_pay_their_fees(bull):
    cfg = BacktestConfig()
    pos = pd.Series(0.5, index=bull.index[:-1], name="half")
    result = lstmbt.backtest(bull, pos, slippage=0.0)
    expected, fees = _rebalanced(bull, 0.5, cfg.rebalance_band, cfg.fee_rate)
    np.testing.assert_allclose(result.returns["half"].to_numpy(), expected, rtol=1e-9, atol=1e-12)
    assert result.metrics.loc["half", "fees_paid"] == pytest.approx(fees, rel=1e-9)
    assert fees > 0.5 * cfg.fee_rate + 1e-4  # the entry's fee, and those of the rebalancing trades after it


def test_a_long_flat_position_is_never_rebalanced(bull):
    rng = np.random.default_rng(7)
    pos = pd.DataFrame({f"c{i}": rng.choice([0.0, 1.0], size=len(bull) - 1) for i in range(4)}, index=bull.index[:-1])
    held, drifted = lstmbt.backtest(bull, pos), lstmbt.backtest(bull, pos, rebalance_band=1.0)
    assert held.returns.to_numpy().tobytes() == drifted.returns.to_numpy().tobytes()
    assert held.metrics.equals(drifted.metrics)


# ------------------------------------------------------------------ the config key (its CLI errors: test_portfolio)


def test_the_default_band_is_stated_and_accepted_at_its_ends():
    assert BacktestConfig().rebalance_band == 0.05
    assert BacktestConfig(rebalance_band=0.0).rebalance_band == 0.0  # restore every bar
    assert BacktestConfig(rebalance_band=1.0).rebalance_band == 1.0  # never: positions drift
