"""Bars a year: lstmbt.tear_sheet and lstmbt.backtest annualise with the frequency of the dates they
get (or the periods_per_year they are given), say which, and refuse what they cannot tell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lstmbt
from lstmbt.backtest.errors import ConfigError, DataError, LstmbtError
from helpers import LINEAR_VALUES, call_main, set_args

#: (calendar, its dates, the bars a year a quant would annualise it with)
CALENDARS = {
    "exchange days": (pd.bdate_range("2019-01-01", periods=300), 252),
    "7-day days": (pd.date_range("2019-01-01", periods=300, freq="D"), 365),
    "weekly": (pd.date_range("2015-01-02", periods=150, freq="W-FRI"), 52),
    "monthly": (pd.date_range("2010-01-31", periods=60, freq="ME"), 12),
}


def _series(dates: pd.DatetimeIndex, seed: int = 9, scale: float = 0.02) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series(rng.normal(0.002, scale, len(dates)), index=dates, name="mine")


def _annualised(r: np.ndarray, ppy: float) -> dict[str, float]:
    """Sharpe, CAGR and volatility of ``r`` at ``ppy`` bars a year, computed here from the definitions."""
    sd = float(np.std(r, ddof=1))
    growth = float(np.prod(1.0 + r))
    return {"sharpe": float(np.mean(r)) / sd * np.sqrt(ppy), "ann_volatility": sd * np.sqrt(ppy),
            "cagr": growth ** (ppy / len(r)) - 1.0}


@pytest.mark.parametrize("calendar", list(CALENDARS))
def test_tear_sheet_annualises_with_the_bars_a_year_of_its_dates(calendar):
    dates, ppy = CALENDARS[calendar]
    mine = _series(dates)
    sheet = lstmbt.tear_sheet(mine)
    expected = _annualised(mine.to_numpy(), ppy)
    for key, value in expected.items():
        assert sheet.metrics.at["mine", key] == pytest.approx(value, rel=1e-9), key
    assert sheet.manifest["periods_per_year"] == ppy
    assert sheet.manifest["warnings"][0].startswith(f"Annualised with {ppy} bars a year")


def test_weekly_sharpe_is_not_scaled_as_daily():
    """The case of a weekly series once shown with Sharpe x sqrt(252/52) = 2.2 times its value."""
    weekly = pd.date_range("2012-01-06", periods=400, freq="W-FRI")
    mine = _series(weekly, seed=4, scale=0.03)
    r = mine.to_numpy()
    sheet = lstmbt.tear_sheet(mine)
    right = r.mean() / r.std(ddof=1) * np.sqrt(52)
    assert sheet.metrics.at["mine", "sharpe"] == pytest.approx(right, rel=1e-9)
    assert sheet.metrics.at["mine", "sharpe"] != pytest.approx(right * np.sqrt(252 / 52), rel=1e-3)
    low, high = sheet.metrics.at["mine", "sharpe_ci_low"], sheet.metrics.at["mine", "sharpe_ci_high"]
    assert low < right < high < right + 2.0  # the interval is annualised the same way
    assert "weekly bars" in sheet.report()


def test_tear_sheet_with_a_benchmark_annualises_alpha_and_the_difference():
    dates, ppy = CALENDARS["weekly"]
    bench = _series(dates, seed=1).rename("market")
    mine = (0.001 + 0.5 * bench + _series(dates, seed=2, scale=0.005)).rename("mine")
    m = lstmbt.tear_sheet(mine, benchmark=bench).metrics
    slope, intercept = np.polyfit(bench.to_numpy(), mine.to_numpy(), 1)
    assert m.at["mine", "alpha"] == pytest.approx(intercept * ppy)
    active = (mine - bench).to_numpy()
    assert m.at["mine", "information_ratio"] == pytest.approx(active.mean() / active.std(ddof=1) * np.sqrt(ppy))
    assert m.at["buy_and_hold", "sharpe"] == pytest.approx(_annualised(bench.to_numpy(), ppy)["sharpe"])


def test_periods_per_year_given_is_used_and_said():
    dates, _ = CALENDARS["exchange days"]
    mine = _series(dates)
    sheet = lstmbt.tear_sheet(mine, periods_per_year=260)
    assert sheet.metrics.at["mine", "sharpe"] == pytest.approx(_annualised(mine.to_numpy(), 260)["sharpe"])
    assert sheet.manifest["periods_per_year"] == 260
    assert "as passed in periods_per_year" in sheet.manifest["warnings"][0]
    few = lstmbt.tear_sheet(mine.iloc[:5], periods_per_year=52)  # too few to infer, but told
    assert few.metrics.at["mine", "sharpe"] == pytest.approx(_annualised(mine.to_numpy()[:5], 52)["sharpe"])


def _weekly_prices(n: int = 160) -> pd.DataFrame:
    rng = np.random.default_rng(8)
    weeks = pd.date_range("2016-01-08", periods=n, freq="W-FRI")
    close = 100 * np.exp(np.cumsum(rng.normal(0.002, 0.025, n)))
    return pd.DataFrame({"Open": close * np.exp(rng.normal(0, 0.005, n)), "Close": close}, index=weeks)


def test_backtest_of_weekly_bars_annualises_with_52():
    prices = _weekly_prices()
    pos = pd.Series(0.0, index=prices.index[10:150], name="weekly")
    pos.iloc[20:90] = 1.0
    result = lstmbt.backtest(prices, pos)
    m, ppy = result.metrics, 52
    for name in ("weekly", "buy_and_hold"):
        expected = _annualised(result.returns[name].to_numpy(), ppy)
        for key, value in expected.items():
            assert m.at[name, key] == pytest.approx(value, rel=1e-9), (name, key)
    costs = result.costs.set_index(["fee_bps", "strategy"])
    at_fee = costs.loc[(10, "weekly")]  # the run's fee, 0.001 = 10 bp
    assert at_fee["sharpe"] == pytest.approx(m.at["weekly", "sharpe"], rel=1e-9)
    assert result.manifest["periods_per_year"] == ppy
    assert result.raw.regimes.empty  # regimes are windows of exchange days: not shown for weekly bars
    assert "weekly bars" in result.report()
    daily = lstmbt.backtest(prices, pos, periods_per_year=252)  # told otherwise, it does as told
    assert daily.metrics.at["weekly", "sharpe"] == pytest.approx(
        _annualised(result.returns["weekly"].to_numpy(), 252)["sharpe"])


def _refusals():
    weekly = CALENDARS["weekly"][0]
    holey = weekly.delete(np.arange(3, 150, 3))  # every third week missing: a median of 7 days, 35 a year
    mine = _series(CALENDARS["exchange days"][0])
    return {
        "too few bars": (lambda: lstmbt.tear_sheet(mine.iloc[:12]), DataError, "too few to tell"),
        "irregular": (lambda: lstmbt.tear_sheet(_series(holey)), DataError, "irregular"),
        "quarterly": (lambda: lstmbt.tear_sheet(_series(pd.date_range("2000-03-31", periods=40, freq="QE"))),
                      DataError, "does not infer"),
        "intraday": (lambda: lstmbt.tear_sheet(_series(pd.date_range("2020-01-01", periods=50, freq="h"))),
                     DataError, "does not infer"),
        "zero": (lambda: lstmbt.tear_sheet(mine, periods_per_year=0), ConfigError, "periods_per_year"),
        "text": (lambda: lstmbt.tear_sheet(mine, periods_per_year="252"), ConfigError, "periods_per_year"),
        "fraction": (lambda: lstmbt.tear_sheet(mine, periods_per_year=365.25), ConfigError, "whole number"),
        "bool": (lambda: lstmbt.backtest(_weekly_prices(), pd.Series(1.0, index=_weekly_prices().index[:50]),
                                         periods_per_year=True), ConfigError, "periods_per_year"),
        "sparse backtest": (lambda: lstmbt.backtest(_weekly_prices().iloc[:15], pd.Series(
            1.0, index=_weekly_prices().index[:10])), DataError, "too few to tell"),
    }


@pytest.mark.parametrize("case", list(_refusals()))
def test_what_cannot_be_told_is_refused_in_one_line(case):
    call, error, words = _refusals()[case]
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, LstmbtError)
    message = str(info.value)
    assert "\n" not in message and words in message, message
    if error is DataError:
        assert "periods_per_year" in message  # the way out


# ------------------------------------------------------------------------- a run on a 7-day calendar


@pytest.fixture(scope="module")
def week_day_run(tmp_path_factory) -> tuple[Path, str]:
    """A linear-only run (seconds) on 700 calendar days of prices, weekends included, from a CSV:
    (run directory, stdout)."""
    folder = tmp_path_factory.mktemp("crypto")
    rng = np.random.default_rng(11)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0005, 0.02, 700)))
    frame = pd.DataFrame({"Open": close * 1.001, "High": close * 1.02, "Low": close * 0.98, "Close": close,
                          "Volume": rng.integers(500, 2000, 700)},
                         index=pd.date_range("2019-01-01", periods=700, freq="D", name="Date"))
    frame.to_csv(folder / "coin.csv")
    out = folder / "run"
    code, printed, err = call_main(["run", "--source", f"csv:{folder / 'coin.csv'}", *set_args(LINEAR_VALUES),
                                    "--out", str(out)])
    assert code == 0, err
    return out, printed


def test_a_7_day_calendar_run_annualises_with_365(week_day_run):
    out, printed = week_day_run
    metrics = json.loads((out / "metrics.json").read_text())
    returns = pd.read_parquet(out / "returns.parquet")
    for name in ("buy_and_hold", "ridge_regression", "logistic_classification"):
        expected = _annualised(returns[name].to_numpy(), 365)
        for key, value in expected.items():
            assert metrics[name][key] == pytest.approx(value, rel=1e-9), (name, key)
        assert metrics[name]["sharpe_ci_low"] < metrics[name]["sharpe"] < metrics[name]["sharpe_ci_high"]
    bench, mine = returns["buy_and_hold"].to_numpy(), returns["ridge_regression"].to_numpy()
    if np.ptp(mine) > 0:  # invested on some days: alpha is the daily intercept x 365
        assert metrics["ridge_regression"]["alpha"] == pytest.approx(np.polyfit(bench, mine, 1)[1] * 365, rel=1e-6)
    costs = pd.read_parquet(out / "costs.parquet").set_index(["fee_bps", "strategy"])
    assert costs.loc[(10, "buy_and_hold"), "sharpe"] == pytest.approx(metrics["buy_and_hold"]["sharpe"], rel=1e-9)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["periods_per_year"] == 365
    note = next(w for w in manifest["warnings"] if w.startswith("Annualised with 365 bars a year"))
    assert "7-day calendar" in note and f"note: {note}" in printed.splitlines()
    assert not any("weekends" in w for w in manifest["data_checks"])  # a note of what is used, not a doubt
    assert "Annualised with 365 bars a year" in (out / "report.html").read_text(encoding="utf-8")
    regimes = pd.read_parquet(out / "regimes.parquet")
    row = regimes[(regimes["strategy"] == "buy_and_hold") & (regimes["kind"] == "year") & regimes["sharpe"].notna()]
    row = row.iloc[0]
    decided_on = pd.read_parquet(out / "positions.parquet").index  # row k of returns is the bar after day k
    mask = np.asarray(pd.DatetimeIndex(decided_on).year.astype(str) == row["state"])
    assert row["sharpe"] == pytest.approx(_annualised(returns["buy_and_hold"].to_numpy()[mask], 365)["sharpe"],
                                          rel=1e-9)
    pair = json.loads((out / "comparisons.json").read_text())["pairs"][0]
    a, b = returns[pair["a"]].to_numpy(), returns[pair["b"]].to_numpy()
    if np.ptp(a) > 0 and np.ptp(b) > 0:
        assert pair["sharpe_diff"] == pytest.approx(_annualised(a, 365)["sharpe"] - _annualised(b, 365)["sharpe"],
                                                    rel=1e-9)


def test_an_exchange_calendar_run_keeps_252():
    from lstmbt.backtest.annualise import run_note, run_periods

    days = pd.bdate_range("2015-01-01", periods=800)
    assert run_periods(days) == 252 and run_note(days) is None
    assert run_periods(pd.date_range("2015-01-01", periods=800)) == 365
    assert run_periods(pd.date_range("2015-01-01", periods=10)) == 252  # too few bars to tell: the exchange rule


def test_the_rolling_sharpe_and_the_best_seeds_luck_use_the_bars_a_year():
    from lstmbt.backtest.deflated import deflate_best
    from lstmbt.backtest.metrics import rolling_sharpe

    rng = np.random.default_rng(7)
    r = rng.normal(0.001, 0.01, 300)
    window = r[-50:]
    assert rolling_sharpe(r, 50, 365)[-1] == pytest.approx(np.mean(window) / np.std(window, ddof=1) * np.sqrt(365))
    trials = rng.normal(0.0005, 0.01, (300, 4))
    daily, weekend = deflate_best(trials, 0), deflate_best(trials, 0, 365)
    assert weekend["sr0_ann"] == pytest.approx(daily["sr0_ann"] * np.sqrt(365 / 252))
    assert weekend["dsr"] == daily["dsr"]  # the deflated Sharpe is a probability: no annualisation in it
