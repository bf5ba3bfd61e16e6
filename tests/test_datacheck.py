"""Price sanity before any training (``backtest.datacheck``): bar spacing, non-finite values, OHLC
consistency, one-day moves, stale closes, opens at the previous close, UTC offsets, --symbol with a
source that has no symbols, a corrupt FinanceDataReader cache, and the warnings' way into the
manifest, the report's notes and ``lstmbt data show``.

Golden tiny frames test each threshold at and beyond its edge; the bad-input table goes through the
real entry point and asserts one error line, exit status 2 and nothing written.
"""

from __future__ import annotations

import hashlib
import math
import socket
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

import lstmbt.backtest.data as data
from lstmbt.backtest.config import DataConfig, RunConfig
from lstmbt.backtest.data import fdr_cache_dir, load_prices, normalize_ohlcv
from lstmbt.backtest.datacheck import (
    MAX_DAILY_MEDIAN_GAP_DAYS,
    OHLC_TOLERANCE,
    OPEN_AT_CLOSE_SHARE,
    data_warnings,
    open_at_prev_close,
    stale_runs,
)
from lstmbt.backtest.errors import ConfigError, DataError, DataWarning
from helpers import save_with_report, TINY

CFG = DataConfig()  # the defaults: max_move 0.4, max_stale_bars 5


# --------------------------------------------------------------------------- helpers


def bars(close, dates=None, open_=None, high=None, low=None, volume=1000.0) -> pd.DataFrame:
    """An OHLCV frame around ``close``: opens 0.1% above the previous close, a 1% range each side."""
    close = np.asarray(close, dtype=np.float64)
    index = pd.DatetimeIndex(dates if dates is not None else pd.bdate_range("2020-01-02", periods=len(close)),
                             name="Date")
    if open_ is None:
        open_ = np.concatenate(([close[0]], close[:-1])) * 1.001
    open_ = np.asarray(open_, dtype=np.float64)
    high = np.maximum(open_, close) * 1.01 if high is None else np.asarray(high, dtype=np.float64)
    low = np.minimum(open_, close) * 0.99 if low is None else np.asarray(low, dtype=np.float64)
    return pd.DataFrame({"Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}, index=index)


def walk(n: int, seed: int = 0) -> np.ndarray:
    """A price path with small daily moves (no stale closes, nothing near a threshold)."""
    return 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0.0003, 0.01, n)))


def refused(frame: pd.DataFrame, *words: str, **kw) -> str:
    with pytest.raises(DataError) as exc:
        normalize_ohlcv(frame, label="t", **kw)
    message = str(exc.value)
    assert "\n" not in message and message.startswith("t")
    for word in words:
        assert word in message, (word, message)
    return message


def daily(n: int, step_days: int, start: str = "2020-01-02") -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.Timestamp(start) + pd.to_timedelta(np.arange(n) * step_days, unit="D"))


@pytest.fixture(scope="module")
def sp500() -> pd.DataFrame:
    from arch.data import sp500 as module

    return module.load()


@pytest.fixture(scope="module")
def nasdaq() -> pd.DataFrame:
    from arch.data import nasdaq as module

    return module.load()


# --------------------------------------------------------------------------- bar spacing


@pytest.mark.parametrize(("step", "name"), [(7, "weekly"), (14, "every two weeks"), (30, "monthly"),
                                            (91, "quarterly")])
def test_bars_more_than_a_few_days_apart_are_refused(step, name):
    refused(bars(walk(60), dates=daily(60, step)), f"about {step} calendar days apart ({name})", "daily bars",
            "252 bars a year")


def test_bar_spacing_threshold_is_the_median_gap():
    # every 4 calendar days is still (sparse) daily; every 5 is not
    at = normalize_ohlcv(bars(walk(60), dates=daily(60, MAX_DAILY_MEDIAN_GAP_DAYS)), label="t")
    assert len(at) == 60
    refused(bars(walk(60), dates=daily(60, MAX_DAILY_MEDIAN_GAP_DAYS + 1)), "about 5 calendar days apart")
    # one long holiday among daily bars moves no median
    dates = daily(60, 1).delete(range(10, 16))
    assert len(normalize_ohlcv(bars(walk(54), dates=dates), label="t")) == 54


def test_weekend_trading_is_accepted_and_annualised_with_365():
    from lstmbt.backtest.annualise import run_note

    prices = normalize_ohlcv(bars(walk(400), dates=daily(400, 1)), label="t")  # 7 days a week, like crypto
    assert data_warnings(prices, DataConfig(source="csv:crypto.csv")) == []  # not suspect: a run annualises it right
    note = run_note(prices.index)
    assert note.startswith("Annualised with 365 bars a year: a 7-day calendar (about 365 bars a year")
    assert "weekends" in note


def test_sparse_daily_bars_warn():
    prices = normalize_ohlcv(bars(walk(100), dates=daily(100, 2)), label="t")
    [line] = data_warnings(prices, CFG)
    assert "only about 183 bars a year" in line and f"{math.sqrt(252 / 182.6):.2f}x" in line


@pytest.mark.parametrize("which", ["sp500", "nasdaq"])
def test_both_samples_and_short_slices_pass_as_plain_daily(which, sp500, nasdaq):
    raw = {"sp500": sp500, "nasdaq": nasdaq}[which]
    prices = normalize_ohlcv(raw, label=which)
    assert len(prices) == len(raw)
    assert data_warnings(prices, CFG) == []
    slices = [raw.iloc[i:i + 150] for i in range(0, len(raw) - 150, 250)]
    slices += [raw.loc[f"{year}-11-15":].iloc[:n] for year in (2001, 2008, 2012, 2018) for n in (40, 60)]
    for part in slices:
        assert data_warnings(normalize_ohlcv(part, label=which), CFG) == [], (part.index[0], len(part))


# --------------------------------------------------------------------------- non-finite values


@pytest.mark.parametrize(("column", "text"), [("close", "inf"), ("open", "-inf"), ("high", "1e400"),
                                              ("volume", "1e400"), ("volume", "-inf")])
def test_non_finite_csv_values_name_column_and_date(tmp_path, column, text):
    rows = [f"2020-01-0{d},10,11,9,10.5,1000" for d in (2, 3, 6)]
    cells = rows[1].split(",")
    cells[["date", "open", "high", "low", "close", "volume"].index(column)] = text
    rows[1] = ",".join(cells)
    path = tmp_path / "p.csv"
    path.write_text("date,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=rf"column {column.capitalize()} has 1 non-finite value\(s\), first "
                                        rf"'-?inf' on 2020-01-03; fix that value") as exc:
        load_prices(DataConfig(source=f"csv:{path}"))
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------- OHLC consistency


def test_ohlc_violation_within_tolerance_passes_and_beyond_is_refused():
    close = walk(30)
    at = bars(close)
    at.iloc[10, at.columns.get_loc("High")] = close[10] / (1 + OHLC_TOLERANCE)  # Close 0.5% above High: rounding
    at.iloc[10, at.columns.get_loc("Open")] = close[10] * 0.999
    assert len(normalize_ohlcv(at, label="t")) == 30
    beyond = at.copy()
    beyond.iloc[10, beyond.columns.get_loc("High")] = close[10] / (1 + 2 * OHLC_TOLERANCE)
    refused(beyond, "Close is above High on 2020-01-16", "1 row(s) break", "0.5% rounding tolerance")


def test_high_below_low_on_every_row_is_refused(sp500):
    swapped = sp500.iloc[:300].rename(columns={"High": "Low", "Low": "High"})
    message = refused(swapped, "High is below Low on 1999-01-04", "swapped")
    count = int(message.split("); ")[1].split(" row")[0])
    assert count > 250  # nearly every row; the calmest days sit within the tolerance


def test_close_x100_above_the_high_is_refused_as_a_bad_tick(sp500):
    bad = sp500.iloc[:300].drop(columns=["Adj Close"])
    bad.iloc[100, bad.columns.get_loc("Close")] *= 100
    refused(bad, f"Close is above High on {bad.index[100].date()}", "a bad tick", "1 row(s)")


@pytest.mark.parametrize(("column", "factor", "what"), [("Open", 1.05, "Open is above High"),
                                                         ("Open", 0.95, "Open is below Low"),
                                                         ("Close", 0.95, "Close is below Low")])
def test_each_ohlc_rule_is_named(column, factor, what):
    frame = bars(walk(30))
    frame.iloc[5, frame.columns.get_loc(column)] *= factor * (1.01 if factor > 1 else 0.99)
    refused(frame, f"{what} on 2020-01-09")


def test_ohlc_is_checked_before_the_adj_close_adjustment():
    frame = bars(walk(30)).assign(**{"Adj Close": lambda f: f["Close"] * 0.5})
    frame.iloc[3, frame.columns.get_loc("High")] = frame["Low"].iloc[3] * 0.9
    refused(frame, "High is below Low on 2020-01-07", f"High {frame['High'].iloc[3]:.10g}")  # the raw value


# --------------------------------------------------------------------------- one-day moves


@pytest.mark.parametrize(("to", "ok"), [(140.0, True), (140.1, False), (60.0, True), (59.9, False)])
def test_move_threshold_is_inclusive(to, ok):
    frame = bars([99.0, 99.5, 100.0, to, to * 1.001, to * 1.002])
    if ok:
        assert len(normalize_ohlcv(frame, label="t")) == 6
    else:
        refused(frame, "Close moves", "on 2020-01-07", "1 move(s) beyond +-40%", "data.max_move (now 0.4)")


@pytest.mark.parametrize(("ratio", "hint"), [(0.1, "looks like an unadjusted 10:1 split"),
                                             (0.5, "looks like an unadjusted 2:1 split"),
                                             (1 / 3, "looks like an unadjusted 3:1 split"),
                                             (10.0, "looks like an unadjusted 1:10 reverse split"),
                                             (1.8, "")])
def test_big_move_names_a_split_when_the_ratio_fits(ratio, hint):
    close = walk(40)
    close[20:] *= ratio
    message = refused(bars(close), "Close moves", "Adj Close", "raise data.max_move")
    assert (hint in message) if hint else ("looks like" not in message)


def test_whole_row_x100_is_a_bad_tick_the_next_day_undoes(sp500):
    bad = sp500.iloc[:300].drop(columns=["Adj Close"])
    bad.iloc[100, :4] *= 100
    refused(bad, "+9", f"on {bad.index[100].date()}", "looks like a bad tick", str(bad.index[101].date()),
            "2 move(s)")


def test_max_move_is_configurable_and_adj_close_absorbs_a_split(tmp_path):
    close = walk(40)
    close[20:] *= 0.5
    frame = bars(close)
    frame.rename_axis("Date").to_csv(tmp_path / "raw.csv")
    with pytest.raises(DataError, match="2:1 split"):
        load_prices(DataConfig(source=f"csv:{tmp_path / 'raw.csv'}"))
    assert len(load_prices(DataConfig(source=f"csv:{tmp_path / 'raw.csv'}", max_move=0.6))) == 40
    adjusted = frame.assign(**{"Adj Close": walk(40)})  # the true, split-free path
    adjusted.rename_axis("Date").to_csv(tmp_path / "adj.csv")
    prices = load_prices(DataConfig(source=f"csv:{tmp_path / 'adj.csv'}"))
    np.testing.assert_allclose(prices["Close"], walk(40))


def test_bad_rows_outside_start_end_are_left_out(sp500):
    bad = sp500.drop(columns=["Adj Close"])
    bad.iloc[100, :4] *= 10  # in 1999
    refused(bad, "looks like")
    kept = normalize_ohlcv(bad, label="t", start="2001-01-01", end="2001-12-31")
    assert kept.index[0] == pd.Timestamp("2001-01-02") and kept.index[-1] == pd.Timestamp("2001-12-31")


@pytest.mark.parametrize(("key", "value"), [("max_move", 0), ("max_move", -0.1), ("max_move", math.inf),
                                            ("max_stale_bars", 1), ("max_stale_bars", -3)])
def test_bad_check_settings_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=rf"data.{key}") as exc:
        DataConfig(**{key: value})
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------- stale closes


@pytest.mark.parametrize(("length", "warned"), [(4, False), (5, True), (9, True)])
def test_stale_closes_warn_from_max_stale_bars(length, warned):
    close = walk(60)
    close[30:30 + length] = close[30]
    prices = bars(close)
    lines = data_warnings(prices, CFG)
    if warned:
        [line] = lines
        first, last = prices.index[30].date(), prices.index[30 + length - 1].date()
        assert f"Close is unchanged for {length} bars from {first} to {last}" in line
        assert "data.max_stale_bars (now 5; 0 turns this off)" in line and "--start/--end" in line
    else:
        assert lines == []
    assert data_warnings(prices, DataConfig(max_stale_bars=0)) == []


def test_stale_runs_are_found_and_counted():
    close = walk(60)
    close[5:12] = close[5]
    close[40:45] = close[40]
    index = bars(close).index
    runs = stale_runs(pd.Series(close, index=index), 5)
    assert runs == [(index[5], index[11], 7), (index[40], index[44], 5)]
    [line] = data_warnings(bars(close), CFG)
    assert "(2 such stretches, 12 bars in all)" in line


# --------------------------------------------------------------------------- locale-formatted volume


def _german(shares: np.ndarray) -> np.ndarray:
    """``shares`` as a German export writes them and pandas reads them back: 1058 as "1.058" -> 1.058."""
    return np.where(shares >= 1000, shares / 1000, shares)


@pytest.mark.parametrize(("name", "volume", "warned"), [
    ("german export around 1000 shares", lambda rng: _german(rng.integers(600, 3000, 60)), True),
    ("german export, few days above 1000", lambda rng: _german(rng.integers(100, 1100, 60)), True),
    ("whole shares", lambda rng: rng.integers(600, 3000, 60).astype(float), False),
    ("every value in thousands, 3 decimals", lambda rng: rng.integers(1000, 90000, 60) / 1000, False),
    ("fractional coins", lambda rng: rng.uniform(1, 900, 60).round(6), False),
    ("millions with 3 decimals and a whole one", lambda rng: np.r_[rng.integers(1000, 9000, 59) / 1000, 3.0], False),
    ("large shares with decimals", lambda rng: rng.integers(10**6, 10**7, 60) + 0.5, False),
])
def test_volume_with_dots_as_thousands_separators_warns(name, volume, warned):
    rng = np.random.default_rng(3)
    prices = bars(walk(60), volume=volume(rng))
    lines = [line for line in data_warnings(prices, CFG) if "Volume" in line]
    if not warned:
        assert lines == [], name
        return
    [line] = lines
    first = prices["Volume"][prices["Volume"] % 1 != 0].iloc[0]
    assert line.startswith("sample:sp500: Volume looks written with '.' as a thousands separator: ")
    assert f"as if {first:g} stood for {first * 1000:.0f}; export Volume without thousands separators" in line


# --------------------------------------------------------------------------- opens at the previous close


def test_open_at_prev_close_share_and_count():
    close = walk(11)
    opens = close * 1.002
    opens[[3, 4, 8]] = close[[2, 3, 7]]
    prices = bars(close, open_=opens)
    assert open_at_prev_close(prices) == (0.3, 3, 10)
    assert open_at_prev_close(prices, prices.index[[0, 3, 5, 8]]) == (2 / 3, 2, 3)  # the first bar has no previous
    share, count, total = open_at_prev_close(prices, pd.DatetimeIndex(["2030-01-01"]))
    assert math.isnan(share) and count == total == 0


@pytest.mark.parametrize(("equal", "warned"), [(5, False), (6, True)])
def test_open_at_prev_close_warns_above_the_threshold_for_next_open_only(equal, warned):
    close = walk(101)
    opens = close * 1.002
    opens[1:equal + 1] = close[:equal]
    prices = bars(close, open_=opens)
    assert OPEN_AT_CLOSE_SHARE == 0.05  # 5 of 100 bars is at the threshold, 6 above it
    lines = data_warnings(prices, CFG, oos_dates=prices.index[1:], execution="next_open")
    if warned:
        [line] = lines
        assert "6 of 100 out-of-sample bars (6.0%, from 2020-01-03 to 2020-01-10)" in line
        assert 'backtest.execution = "next_close"' in line
    else:
        assert lines == []
    assert data_warnings(prices, CFG, oos_dates=prices.index[1:], execution="next_close") == []
    assert data_warnings(prices, CFG) == []  # only for out-of-sample bars


def test_open_at_prev_close_on_the_sp500_sample():
    from lstmbt.backtest.config import QUICK_PRESET
    from lstmbt.backtest.pipeline import load_checked, make_design

    cfg = RunConfig.resolve(preset=QUICK_PRESET)
    prices = load_checked(cfg)
    design = make_design(prices, cfg)
    decisions = design.grid.dates[design.folds[0].test[0]:]
    fills = prices.index[prices.index.get_indexer(decisions)[:-1] + 1]  # next_open fills the bar after
    share, count, total = open_at_prev_close(prices, fills)
    assert round(share, 3) == 0.286 and total == len(fills)  # the 28.6% of the --quick run
    by_hand = np.isclose(prices["Open"].to_numpy()[1:], prices["Close"].to_numpy()[:-1], rtol=1e-9, atol=0)
    assert count == int(pd.Series(by_hand, index=prices.index[1:]).reindex(fills).sum())
    early = open_at_prev_close(prices.loc["1999":"2005"])[0]
    assert early > 0.95  # nearly every open of 1999-2005 is the previous close
    assert "(28.6%" in data_warnings(prices, cfg.data, oos_dates=fills)[0]


@pytest.mark.parametrize(("source", "warned"), [("sample:sp500", True), ("sample:nasdaq", False)])
def test_default_sample_run_warns_about_opens_and_nothing_else(source, warned):
    from lstmbt.backtest.pipeline import load_checked, make_design

    cfg = RunConfig.resolve(flags={"data.source": source})  # the default config: out of sample 2009-2018
    prices = load_checked(cfg)
    design = make_design(prices, cfg)
    fills = prices.index[prices.index.get_indexer(design.grid.dates[design.folds[0].test[0]:])[:-1] + 1]
    lines = data_warnings(prices, cfg.data, oos_dates=fills, execution=cfg.backtest.execution)
    if warned:
        [line] = lines
        assert "(6.6%, from 2009-07-23 to 2015-01-02) open exactly at the previous close" in line
    else:
        assert lines == []


# --------------------------------------------------------------------------- dates with UTC offsets


def test_utc_offsets_keep_the_local_calendar_date(tmp_path):
    dates = pd.bdate_range("2020-02-24", "2020-03-20")  # US DST starts on 8 March: -05:00, then -04:00
    stamps = [f"{d.date()} 00:00:00{'-05:00' if d < pd.Timestamp('2020-03-08') else '-04:00'}" for d in dates]
    frame = bars(walk(len(dates)), dates=dates).assign(Date=stamps)
    frame.to_csv(tmp_path / "dst.csv", index=False)
    prices = load_prices(DataConfig(source=f"csv:{tmp_path / 'dst.csv'}"))
    assert list(prices.index) == list(dates)
    seoul = [f"{d.date()}T00:00:00+09:00" for d in dates]
    frame.assign(Date=seoul).to_csv(tmp_path / "krx.csv", index=False)
    prices = load_prices(DataConfig(source=f"csv:{tmp_path / 'krx.csv'}"))
    assert prices.index[0] == pd.Timestamp("2020-02-24")  # not 2020-02-23, as UTC would make it
    aware = bars(walk(len(dates)), dates=dates.tz_localize("Asia/Seoul"))
    assert list(normalize_ohlcv(aware, label="t").index) == list(dates)


# --------------------------------------------------------------------------- --symbol without symbols


@pytest.mark.parametrize("source", ["sample:sp500", "fdr:005930"])
def test_symbol_with_a_source_without_symbols_is_refused(source, monkeypatch):
    monkeypatch.setattr(data, "_fdr_datareader", lambda: pytest.fail("no download for a refused --symbol"))
    with pytest.raises(DataError, match=rf"--symbol FOO does not apply to {source}.*drop --symbol") as exc:
        load_prices(DataConfig(source=source, symbol="FOO"))
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------- corrupt FinanceDataReader cache


def fdr_frame(start: str = "2020-01-01", days: int = 300) -> pd.DataFrame:
    """What ``fdr.DataReader('005930', ...)`` returns for KRX: int prices, float ``Change``, a
    ``Date`` index without a freq."""
    index = pd.DatetimeIndex(pd.bdate_range(start, periods=days + 3, name="Date").delete([20, 90, 200]), freq=None)
    rng = np.random.default_rng(5930)
    close = np.round(60_000 * np.exp(np.cumsum(rng.normal(0, 0.015, days))), -2).astype("int64")
    open_ = np.round(close * np.exp(rng.normal(0, 0.004, days)), -2).astype("int64")
    frame = pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) + 300,
                          "Low": np.minimum(open_, close) - 300, "Close": close,
                          "Volume": rng.integers(5_000_000, 30_000_000, days).astype("int64")}, index=index)
    frame["Change"] = frame["Close"].pct_change()
    return frame


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("LSTMBT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data.time, "sleep", lambda s: None)


def _garbage(path: Path) -> None:
    path.write_bytes(b"PAR1 this is not a parquet file")


def _truncated(path: Path) -> None:
    fdr_frame().to_parquet(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [_garbage, _truncated, lambda p: p.write_bytes(b"")], ids=["garbage", "truncated",
                                                                                               "empty"])
def test_corrupt_fdr_cache_is_a_miss_and_replaced(no_network, monkeypatch, damage):
    cfg = DataConfig(source="fdr:005930", start="2020-02-03", end="2020-12-30")
    cache = fdr_cache_dir() / "005930_2020-02-03_2020-12-30.parquet"
    cache.parent.mkdir(parents=True)
    damage(cache)
    calls = []
    monkeypatch.setattr(data, "_fdr_datareader",
                        lambda: lambda t, s, e: calls.append((t, s, e)) or fdr_frame().loc[s:e])
    prices = load_prices(cfg)
    assert calls == [("005930", "2020-02-03", "2020-12-30")]
    assert prices.index[0] == pd.Timestamp("2020-02-03") and len(prices) > 200
    pd.testing.assert_frame_equal(pd.read_parquet(cache), fdr_frame().loc["2020-02-03":"2020-12-30"],
                                  check_freq=False)  # the entry is whole again
    again = load_prices(cfg)
    assert len(calls) == 1 and again.equals(prices)  # and is used from now on


def test_corrupt_fdr_cache_then_failed_download_is_one_line(no_network, monkeypatch, tmp_path, run_cli):
    cache = fdr_cache_dir() / "005930_2020-02-03_2020-12-30.parquet"
    cache.parent.mkdir(parents=True)
    _garbage(cache)

    def unknown(*args):
        raise ValueError("symbol not found")

    monkeypatch.setattr(data, "_fdr_datareader", lambda: unknown)
    code, out, err = run_cli(["data", "show", "--source", "fdr:005930", "--start", "2020-02-03", "--end",
                              "2020-12-30"])
    assert code == 2 and err.splitlines() == [err.strip()] and err.startswith("error: fdr:005930: ")
    assert "FinanceDataReader could not read this ticker" in err and "Traceback" not in err + out


# --------------------------------------------------------------------------- warnings into the run


@pytest.fixture(scope="module")
def stale_run(tmp_path_factory):
    """A small linear-only run on S&P 500 prices of 2011-2013 (a quarter of their opens are the
    previous close) with six identical closes planted: (result, caught warnings, saved dir)."""
    from lstmbt.backtest.pipeline import run
    from lstmbt.backtest.rundir import load_run

    prices = load_prices(DataConfig(source="sample:sp500", start="2011-01-01", end="2013-12-31")).copy()
    prices.iloc[200:206, :4] = prices["Close"].iloc[200]
    cfg = RunConfig.resolve(flags={"model.lstm": False, "split.min_train": 300, "split.step": 126,
                                   "model.lookback": 5})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run(cfg, prices=prices)
    out = save_with_report(result, tmp_path_factory.mktemp("runs") / "stale")
    return result, [w for w in caught if issubclass(w.category, DataWarning)], prices, load_run(out)


def test_run_emits_load_time_warnings_as_data_warnings(stale_run):
    _, caught, prices, _ = stale_run
    [warning] = caught
    assert str(warning.message).startswith("sample:sp500: Close is unchanged for 6 bars from "
                                           f"{prices.index[200].date()} to {prices.index[205].date()}")
    assert Path(warning.filename).name != "pipeline.py"  # stacklevel=2 points at the caller


def test_manifest_keeps_data_checks_first_among_warnings(stale_run):
    result, _, prices, reloaded = stale_run
    checks = result.manifest["data_checks"]
    fills = result.returns.index
    share = float(np.mean([prices["Open"].iloc[i] == prices["Close"].iloc[i - 1]
                           for i in prices.index.get_indexer(fills)]))
    assert share > OPEN_AT_CLOSE_SHARE
    assert len(checks) == 2 and "Close is unchanged for 6 bars" in checks[0]
    assert f"({share:.1%}, from" in checks[1] and "next_open fill" in checks[1]
    assert result.manifest["warnings"][:2] == checks
    assert reloaded.manifest["data_checks"] == checks and reloaded.manifest["warnings"][:2] == checks


def test_report_shows_the_data_checks(stale_run):
    from lstmbt.reports import render_report

    _, _, _, reloaded = stale_run
    html = render_report(reloaded)
    assert "Close is unchanged for 6 bars" in html and "open exactly at the previous close" in html


def test_data_show_prints_each_warning(tmp_path, run_cli):
    close = walk(300)
    close[100:108] = close[100]
    bars(close, dates=daily(300, 1)).rename_axis("Date").to_csv(tmp_path / "p.csv")
    code, out, err = run_cli(["data", "show", "--source", f"csv:{tmp_path / 'p.csv'}"])
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 1 and "unchanged for 8 bars" in lines[0]
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and notes[0].startswith("note: Annualised with 365 bars a year: a 7-day calendar")
    code, out, _ = run_cli(["data", "show", "--source", "sample:nasdaq"])
    assert code == 0 and "warning:" not in out


@pytest.mark.parametrize("command", ["predict", "importance"])
def test_commands_that_train_without_a_run_show_the_data_warnings_first(command, tmp_path, monkeypatch, run_cli):
    prices = _spx(tmp_path).iloc[:500]
    prices.iloc[300:307, :4] = prices["Close"].iloc[300]
    prices.rename_axis("Date").to_csv(tmp_path / "stale.csv")
    import lstmbt.backtest.forecast
    import lstmbt.backtest.importance

    def stop(config, *args, **kwargs):  # the warning comes from loading; training is not what is tested
        from lstmbt.backtest.pipeline import load_checked

        load_checked(config, folds=False, positions=False)
        raise KeyboardInterrupt

    monkeypatch.setattr(lstmbt.backtest.forecast, "forecast_next", stop)
    monkeypatch.setattr(lstmbt.backtest.importance, "importance_frame", stop)
    argv = [command, "--quick", "--source", f"csv:{tmp_path / 'stale.csv'}", "--set", "split.min_train=200",
            "--set", "split.step=100", *(["--out", str(tmp_path / "imp.html")] if command == "importance" else [])]
    code, out, err = run_cli(argv)
    lines = err.strip().splitlines()
    assert code == 130 and lines[-1].startswith("interrupted:"), err
    assert [line for line in lines if line.startswith("warning: ")] == [
        line for line in lines if "Close is unchanged for 7 bars" in line], err
    assert len(lines) == 2


# --------------------------------------------------------------------------- the bad-input table, through the CLI


def _spx(folder: Path) -> pd.DataFrame:
    from arch.data import sp500 as module

    return module.load().loc["2016-06-01":].drop(columns=["Adj Close"])


def _csv(edit: Callable[[pd.DataFrame], pd.DataFrame], name: str = "bad.csv") -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        edit(_spx(folder)).rename_axis("Date").to_csv(folder / name)
        return ["--source", f"csv:{folder / name}"]
    return build


def _times(rows: slice, factor: float, columns=slice(0, 4)):
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.iloc[rows, columns] = frame.iloc[rows, columns] * factor
        return frame
    return edit


def _cell(row: int, column: str, value):
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.astype({column: object})
        frame.iloc[row, frame.columns.get_loc(column)] = value
        return frame
    return edit


def _resampled(rule: str):
    agg = {"Open": "first", "High": "max", "Low": "min", "Close": "last", "Volume": "sum"}
    return lambda frame: frame.resample(rule).agg(agg).dropna()


def _from_sample(source: str, *extra: str) -> Callable[[Path], list[str]]:
    return lambda folder: ["--source", source, *extra]


BAD_INPUT = {
    "monthly_bars": (_csv(_resampled("ME")), ["calendar days apart (monthly)", "daily bars"]),
    "weekly_bars": (_csv(_resampled("W-FRI")), ["about 7 calendar days apart (weekly)", "252 bars a year"]),
    "biweekly_bars": (_csv(lambda f: f.iloc[::10]), ["(every two weeks)"]),
    "quarterly_bars": (_csv(_resampled("QE")), ["(quarterly)"]),
    "unadjusted_10_to_1_split": (_csv(_times(slice(300, None), 0.1)),
                                 ["Close moves -9", "looks like an unadjusted 10:1 split", "Adj Close",
                                  "data.max_move"]),
    "unadjusted_2_to_1_split": (_csv(_times(slice(300, None), 0.5)), ["looks like an unadjusted 2:1 split"]),
    "unadjusted_reverse_split": (_csv(_times(slice(300, None), 10)), ["1:10 reverse split"]),
    "close_x100_bad_tick": (_csv(_times(slice(200, 201), 100, slice(3, 4))), ["Close is above High", "bad tick"]),
    "whole_row_x100_bad_tick": (_csv(_times(slice(200, 201), 100)), ["looks like a bad tick", "2 move(s)"]),
    "real_looking_crash_beyond_max_move": (_csv(_times(slice(300, None), 0.55)), ["Close moves -4", "beyond +-40%"]),
    "high_below_low_every_row": (_csv(lambda f: f.rename(columns={"High": "Low", "Low": "High"})),
                                 ["High is below Low on 2016-06-01", "swapped"]),
    "open_above_high": (_csv(_times(slice(50, 51), 1.05, slice(0, 1))), ["Open is above High"]),
    "close_below_low": (_csv(_times(slice(50, 51), 0.9, slice(3, 4))), ["Close is below Low"]),
    "inf_close": (_csv(_cell(20, "Close", "inf")), ["column Close", "non-finite", "'inf'"]),
    "minus_inf_open": (_csv(_cell(20, "Open", "-inf")), ["column Open", "non-finite"]),
    "overflowing_1e400_high": (_csv(_cell(20, "High", "1e400")), ["column High", "1e400 overflows"]),
    "overflowing_1e400_volume": (_csv(_cell(20, "Volume", "1e400")), ["column Volume", "non-finite"]),
    "symbol_with_sample_source": (_from_sample("sample:sp500", "--symbol", "FOO"),
                                  ["--symbol FOO does not apply to sample:sp500"]),
    "symbol_with_fdr_source": (_from_sample("fdr:005930", "--symbol", "FOO"),
                               ["--symbol FOO does not apply to fdr:005930"]),
    "max_move_zero": (_from_sample("sample:sp500", "--set", "data.max_move=0"), ["data.max_move = 0"]),
    "max_stale_bars_one": (_from_sample("sample:sp500", "--set", "data.max_stale_bars=1"),
                           ["data.max_stale_bars = 1", "0 to turn"]),
    "split_inside_start_end": (
        lambda folder: [*_csv(_times(slice(300, None), 0.1))(folder), "--start", "2017-01-01"], ["10:1 split"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_prices_are_one_error_line_and_leave_nothing(case, tmp_path, monkeypatch, run_cli):
    build, words = BAD_INPUT[case]
    monkeypatch.setenv("LSTMBT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_fdr_datareader", lambda: pytest.fail("no download for refused input"))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    args = build(inputs)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs.iterdir()}
    parent = tmp_path / "runs"
    parent.mkdir()
    (parent / "keep.txt").write_text("an earlier file")
    code, out, err = run_cli(["run", *args, *TINY, "--out", str(parent / "out")])
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[-1].startswith("error: "), err
    assert "Traceback" not in err and "Traceback" not in out
    for word in words:
        assert word in lines[-1], (word, lines[-1])
    assert sorted(p.name for p in parent.iterdir()) == ["keep.txt"]  # no run dir, no .partial, no .tmp-*
    assert (parent / "keep.txt").read_text() == "an earlier file"
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs.iterdir()} == before
    assert not (tmp_path / "cache").exists()


def _run_section(html: str) -> str:
    return html[html.index('<section id="run">'):html.index("</section>", html.index('<section id="run">'))]


def test_report_run_section_lists_the_data_checks(stale_run):
    from lstmbt.reports import render_report

    result = stale_run[3]
    section = _run_section(render_report(result))
    listed = section[section.index('id="data-checks"'):section.index("</ul>", section.index('id="data-checks"'))]
    assert listed.count("<li>") == len(result.manifest["data_checks"]) == 2
    assert "Close is unchanged for 6 bars" in listed and "No findings" not in section


def test_report_run_section_says_when_no_check_found_anything(stale_run):
    import dataclasses

    from lstmbt.reports import render_report

    result = stale_run[3]
    clean = dataclasses.replace(result, manifest={**result.manifest, "data_checks": [], "warnings": []})
    section = _run_section(render_report(clean))
    assert 'id="data-checks"' in section and "No findings" in section
    older = dataclasses.replace(result, manifest={k: v for k, v in result.manifest.items() if k != "data_checks"})
    assert "Data checks" not in _run_section(render_report(older))  # runs saved before the checks existed
