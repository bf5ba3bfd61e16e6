"""Exogenous series: the as-of join, the lag, loading (csv and a recorded FinanceDataReader frame),
the warm-up accounting, and ``--exog`` through the CLI. No network: FDR is replaced by a fake reader.
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lstmbt.backtest.data as data
from lstmbt.backtest.config import DataConfig, RunConfig
from lstmbt.backtest.data import check_exog_coverage, fdr_cache_dir, load_exog, load_exogs
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.backtest.pipeline import load_checked, make_design
from lstmbt.backtest.rundir import RUN_FILES
from lstmbt.models.exog import EXOG_WINDOWS, asof_join, exog_features, exog_slug, exog_warmup_rows
from helpers import LINEAR_VALUES, set_args, set_items

FIRST_DAY = "2016-06-01"  # ~650 rows of the embedded S&P 500, as in tests/test_cli.py


# --------------------------------------------------------------------------- helpers


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message and message.strip() == message
    return message


def price_dates(days: int = 120) -> pd.DatetimeIndex:
    """Business days less two holidays, so the exchange calendar has gaps of its own."""
    return pd.bdate_range("2021-01-04", periods=days + 2).delete([10, 40])


def irregular_series(dates: pd.DatetimeIndex, seed: int = 0) -> pd.Series:
    """Observations on weekends, in gaps, between price dates and after the last one; the first
    one falls after the first few price days. Values are positive, like an exchange rate."""
    rng = np.random.default_rng(seed)
    calendar = pd.date_range(dates[0] - pd.Timedelta(days=3), dates[-1] + pd.Timedelta(days=10), freq="D")
    keep = rng.random(len(calendar)) < 0.6  # weekends included, random gaps
    keep[calendar <= dates[3]] = False  # nothing until the fifth price day, which has one
    keep[calendar == dates[4]] = True
    stamps = calendar[keep]
    values = 1200.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, len(stamps))))
    return pd.Series(values, index=stamps, name="fdr:USD/KRW")


# 2021-01-04 Mon .. 2021-01-12 Tue, without the weekend
HAND_DATES = pd.DatetimeIndex(["2021-01-04", "2021-01-05", "2021-01-06", "2021-01-07", "2021-01-08",
                               "2021-01-11", "2021-01-12"])
# a gap on Wed 6th, a missing value on Fri 8th, a Saturday stamp, and one after the last price day
HAND_SERIES = pd.Series([10.0, 11.0, np.nan, 12.0, 99.0], name="csv:hand.csv",
                        index=pd.DatetimeIndex(["2021-01-05", "2021-01-07", "2021-01-08", "2021-01-09", "2021-01-13"]))


# --------------------------------------------------------------------------- the as-of join


def test_asof_join_by_hand():
    nan = np.nan
    assert asof_join(HAND_DATES, HAND_SERIES).tolist()[1:] == [10.0, 10.0, 11.0, 11.0, 12.0, 12.0]
    assert np.isnan(asof_join(HAND_DATES, HAND_SERIES).iloc[0])  # before the first observation: not back-filled
    np.testing.assert_array_equal(asof_join(HAND_DATES, HAND_SERIES, lag_days=1),
                                  [nan, nan, 10.0, 10.0, 11.0, 12.0, 12.0])
    np.testing.assert_array_equal(asof_join(HAND_DATES, HAND_SERIES, lag_days=3),
                                  [nan, nan, nan, nan, 10.0, 11.0, 12.0])


def test_exog_features_by_hand():
    frame = exog_features(HAND_DATES, {"csv:data/hand.csv": HAND_SERIES}, windows=(1, 2))
    assert list(frame.columns) == ["exog_hand_ret_1d", "exog_hand_ret_2d"]
    assert frame.index.equals(HAND_DATES)
    nan = np.nan
    np.testing.assert_allclose(frame["exog_hand_ret_1d"], [nan, nan, 0.0, np.log(11 / 10), 0.0, np.log(12 / 11), 0.0])
    np.testing.assert_allclose(frame["exog_hand_ret_2d"], [nan, nan, nan, np.log(11 / 10), np.log(11 / 10),
                                                           np.log(12 / 11), np.log(12 / 11)])


@pytest.mark.parametrize("lag", [0, 1, 3])
def test_perturbing_observations_after_day_d_leaves_features_up_to_d_unchanged(lag):
    dates = price_dates()
    series = irregular_series(dates)
    base = exog_features(dates, {series.name: series}, lag_days=lag).to_numpy()
    rng = np.random.default_rng(1)
    changed_later = 0
    for cut in (5, 6, 30, 31, 77):
        day = dates[cut]
        # the stamp as the join sees it lies after day D: that observation must not reach D or earlier
        after = series.index + pd.Timedelta(days=lag) > day
        perturbed = series.where(~after, series * rng.uniform(0.5, 1.5, len(series)))
        other = exog_features(dates, {series.name: perturbed}, lag_days=lag).to_numpy()
        np.testing.assert_array_equal(other[: cut + 1], base[: cut + 1])  # bit for bit, NaN where NaN
        changed_later += int(not np.array_equal(other[cut + 1:], base[cut + 1:], equal_nan=True))
    assert changed_later == 5  # the perturbation does reach the later days: the test can fail


def test_gaps_are_filled_from_the_past_and_the_start_is_not_back_filled():
    dates = price_dates()
    series = irregular_series(dates)
    joined = asof_join(dates, series)
    first = series.index[0]
    assert joined[dates < first].isna().all() and (dates < first).sum() == 4
    for day, value in joined[dates >= first].items():
        assert value == series[series.index <= day].iloc[-1]  # the last observation on or before the day
    frame = exog_features(dates, {series.name: series})
    assert frame.iloc[: 4 + max(EXOG_WINDOWS)].isna().any(axis=1).all()
    assert frame.iloc[4 + max(EXOG_WINDOWS):].notna().all().all()  # no gaps after the warm-up


def test_lag_days_shifts_every_stamp_by_that_many_calendar_days():
    dates = price_dates()
    series = irregular_series(dates)
    for lag in (1, 2, 5):
        moved = series.set_axis(series.index + pd.Timedelta(days=lag))
        lagged = exog_features(dates, {"x": series}, lag_days=lag)
        pd.testing.assert_frame_equal(lagged, exog_features(dates, {"x": moved}))
        assert not lagged.equals(exog_features(dates, {"x": series}))


def test_bad_series_are_refused():
    with pytest.raises(ValueError, match="sorted, unique"):
        asof_join(HAND_DATES, HAND_SERIES.iloc[::-1])
    with pytest.raises(ValueError, match="lag_days"):
        asof_join(HAND_DATES, HAND_SERIES, lag_days=-1)
    with pytest.raises(ValueError, match="non-positive"):
        exog_features(HAND_DATES, {"x": HAND_SERIES.replace(11.0, 0.0)})
    with pytest.raises(ValueError, match="distinct names"):
        exog_features(HAND_DATES, {"fdr:VIX": HAND_SERIES, "csv:vix.csv": HAND_SERIES})


def test_slugs_and_warmup():
    assert exog_slug("fdr:USD/KRW") == "usd_krw"
    assert exog_slug("fdr:VIX") == "vix"
    assert exog_slug("fdr:FRED:DEXKOUS") == "fred_dexkous"
    assert exog_slug("csv:some/dir/Brent Oil.csv") == "brent_oil"
    assert exog_warmup_rows(0) == 0 and exog_warmup_rows(2) == max(EXOG_WINDOWS) == 21


# --------------------------------------------------------------------------- config


def test_config_keys_validate_and_round_trip():
    cfg = RunConfig().with_values({"data.exog": ["fdr:USD/KRW", "csv:x.csv"], "data.exog_lag_days": 1})
    assert cfg.data.exog == ("fdr:USD/KRW", "csv:x.csv") and cfg.data.exog_lag_days == 1
    assert RunConfig.from_dict(tomllib.loads(cfg.to_toml())) == cfg
    assert RunConfig().data.exog == () and 'exog = []' in RunConfig().to_toml()


@pytest.mark.parametrize("values, words", [
    ({"data.exog": ["ftp:x.csv"]}, ["'ftp:x.csv'", "fdr:TICKER", "csv:PATH"]),
    ({"data.exog": ["VIX"]}, ["'VIX'", "fdr:TICKER"]),
    ({"data.exog": ["fdr:"]}, ["'fdr:'"]),
    ({"data.exog": ["fdr:VIX", "csv:data/vix.csv"]}, ["exog_vix_", "rename"]),
    ({"data.exog": ["fdr:VIX", "fdr:VIX"]}, ["list each series once"]),
    ({"data.exog": "fdr:VIX"}, ["must be a list"]),
    ({"data.exog_lag_days": -1}, ["data.exog_lag_days", "out of range"]),
])
def test_bad_config_is_one_line(values, words):
    with pytest.raises(ConfigError) as excinfo:
        RunConfig().with_values(values)
    message = one_line(excinfo)
    for word in words:
        assert word in message, (word, message)


# --------------------------------------------------------------------------- loading a csv


def write(tmp_path: Path, text: str, name: str = "exog.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return f"csv:{path}"


def test_csv_with_case_insensitive_columns_and_empty_cells(tmp_path):
    source = write(tmp_path, "DATE,VALUE\n2021-01-05,10\n2021-01-07,11\n2021-01-08,\n2021-01-09,12\n")
    values = load_exog(source)
    assert values.name == source and values.index.name == "Date"
    assert values.tolist() == [10.0, 11.0, 12.0]  # the empty cell is no observation, not a zero
    assert list(values.index.strftime("%Y-%m-%d")) == ["2021-01-05", "2021-01-07", "2021-01-09"]


def test_csv_picks_adj_close_then_close_then_a_single_column(tmp_path):
    wide = "date,open,close,adj close\n2021-01-04,1,2,3\n2021-01-05,1,2,4\n"
    assert load_exog(write(tmp_path, wide, "a.csv")).tolist() == [3.0, 4.0]
    assert load_exog(write(tmp_path, "Date,Open,Close\n2021-01-04,1,2\n", "b.csv")).tolist() == [2.0]
    assert load_exog(write(tmp_path, "date,DEXKOUS\n20210104,1100.5\n", "c.csv")).tolist() == [1100.5]


@pytest.mark.parametrize("text, words", [
    ("date,a,b\n2021-01-04,1,2\n", ["no value column", "found: a, b", "Close or Value"]),
    ("date\n2021-01-04\n", ["no value column", "found: none"]),
    ("when,close\n2021-01-04,1\n", ["no date column"]),
    ("date,close\n2021-01-04,1\nnot a day,2\n", ["not a date", "'not a day'"]),
    ("date,close\n2021-01-05,1\n2021-01-04,2\n", ["not in ascending order"]),
    ("date,close\n2021-01-04,1\n2021-01-04,2\n", ["duplicate date"]),
    ("date,close\n2021-01-04,1\n2021-01-05,0\n", ["non-positive value", "2021-01-05"]),
    ("date,close\n2021-01-04,1\n2021-01-05,x12\n", ["not numeric", "'x12'"]),
    ("date,close\n2021-01-04,\n", ["holds no values"]),
    ("", ["is empty"]),
])
def test_bad_csv_is_one_line(tmp_path, text, words):
    source = write(tmp_path, text)
    with pytest.raises(DataError) as excinfo:
        load_exog(source)
    message = one_line(excinfo)
    assert source in message
    for word in words:
        assert word in message, (word, message)


def test_missing_file_and_unknown_scheme(tmp_path):
    with pytest.raises(DataError, match="file not found") as excinfo:
        load_exog(f"csv:{tmp_path / 'nope.csv'}")
    one_line(excinfo)
    with pytest.raises(DataError, match="fdr:TICKER or csv:PATH"):
        load_exog("sample:sp500")


def test_coverage_refuses_a_late_start_or_a_stale_end():
    dates = HAND_DATES
    with pytest.raises(DataError) as excinfo:
        check_exog_coverage(HAND_SERIES, dates)
    message = one_line(excinfo)
    assert "starts on 2021-01-05" in message and "--start 2021-01-05" in message
    early = pd.concat([pd.Series([9.0], index=pd.DatetimeIndex(["2021-01-01"])), HAND_SERIES]).rename("s")
    check_exog_coverage(early, dates)
    with pytest.raises(DataError, match=r"usable from 2021-01-05 with data.exog_lag_days = 4.*--start 2021-01-05"):
        check_exog_coverage(early, dates, lag_days=4)
    later = dates.append(pd.DatetimeIndex(["2021-02-15"]))
    with pytest.raises(DataError, match=r"ends on 2021-01-13, 33 days before .* --end 2021-01-13"):
        check_exog_coverage(early, later)


def test_load_exogs_keys_by_source_and_checks_coverage(tmp_path):
    early = write(tmp_path, "date,close\n2021-01-01,9\n2021-01-05,10\n2021-01-11,12\n", "early.csv")
    late = write(tmp_path, "date,close\n2021-01-05,10\n2021-01-11,12\n", "late.csv")
    loaded = load_exogs(DataConfig(exog=(early,)), HAND_DATES)
    assert list(loaded) == [early] and loaded[early].tolist() == [9.0, 10.0, 12.0]
    with pytest.raises(DataError, match="late.csv starts on 2021-01-05, after the prices start on 2021-01-04"):
        load_exogs(DataConfig(exog=(early, late)), HAND_DATES)
    with pytest.raises(DataError, match="usable from 2021-01-05"):
        load_exogs(DataConfig(exog=(early,), exog_lag_days=4), HAND_DATES)


# --------------------------------------------------------------------------- FinanceDataReader, no network


def yahoo_frame(start: str, end: str, seed: int = 7) -> pd.DataFrame:
    """What ``fdr.DataReader('VIX', ...)`` returns (FDR 0.9's Yahoo reader): an unnamed, normalised
    UTC-day index, float columns Open High Low Close Volume Adj Close, volume 0 for an index,
    and the occasional all-null bar."""
    seconds = (pd.bdate_range(start, end) - pd.Timestamp(0)) // pd.Timedelta(seconds=1) + 14 * 3600  # bars at 14:00 UTC
    index = pd.to_datetime(seconds, unit="s").normalize()
    rng = np.random.default_rng(seed)
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0, 0.05, len(index))))
    frame = pd.DataFrame({"Open": close * 0.99, "High": close * 1.03, "Low": close * 0.97, "Close": close,
                          "Volume": 0.0, "Adj Close": close}, index=index)
    frame.iloc[7] = np.nan
    return frame


class FakeReader:
    """Stands in for ``fdr.DataReader``: returns the recorded frame sliced like the real one."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.calls: list[tuple] = []

    def __call__(self, symbol, start=None, end=None):
        self.calls.append((symbol, start, end))
        print("fake FDR chatter")
        return self.frame.loc[start:end]


@pytest.fixture
def fdr(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to open a network connection to {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("LSTMBT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data.time, "sleep", lambda s: None)

    def install(frame: pd.DataFrame) -> FakeReader:
        reader = FakeReader(frame)
        monkeypatch.setattr(data, "_fdr_datareader", lambda: reader)
        return reader

    return install


def test_fdr_exog_reads_adj_close_drops_null_bars_and_caches(fdr, capsys):
    recorded = yahoo_frame("2016-01-04", "2018-12-31")
    reader = fdr(recorded)
    values = load_exog("fdr:VIX", "2016-05-01", "2018-12-31")
    assert reader.calls == [("VIX", "2016-05-01", "2018-12-31")]
    expected = recorded.loc["2016-05-01":"2018-12-31", "Adj Close"].dropna()
    np.testing.assert_array_equal(values.to_numpy(), expected.to_numpy())
    assert values.index.equals(expected.index) and values.name == "fdr:VIX"
    assert (fdr_cache_dir() / "VIX_2016-05-01_2018-12-31.parquet").is_file()
    again = load_exog("fdr:VIX", "2016-05-01", "2018-12-31")
    assert len(reader.calls) == 1 and again.equals(values)  # second read from the cache
    assert capsys.readouterr().out == ""


@pytest.fixture(scope="module")
def sp500_slice() -> pd.DataFrame:
    from arch.data import sp500

    return sp500.load()


def test_fdr_exog_through_make_design(fdr, sp500_slice, tmp_path):
    prices_csv = tmp_path / "prices.csv"
    sp500_slice.loc[FIRST_DAY:].to_csv(prices_csv)
    reader = fdr(yahoo_frame("2016-01-04", "2018-12-31"))
    cfg = RunConfig.from_toml(_toml(tmp_path, f"csv:{prices_csv}"), set_items(LINEAR_VALUES) + [
        'data.exog=["fdr:VIX"]', "data.exog_lag_days=1"])
    prices = load_checked(cfg)
    design = make_design(prices, cfg)
    first = (prices.index[0] - pd.Timedelta(days=data.EXOG_BUFFER_DAYS + 1)).date().isoformat()
    assert reader.calls == [("VIX", first, None)]
    vix = [c for c in design.features.columns if c.startswith("exog_")]
    assert vix == ["exog_vix_ret_1d", "exog_vix_ret_5d", "exog_vix_ret_21d"]
    close = yahoo_frame("2016-01-04", "2018-12-31")["Adj Close"].dropna()

    def known(day: pd.Timestamp) -> float:  # lag 1: the last close stamped on or before day - 1
        return close[close.index <= day - pd.Timedelta(days=1)].iloc[-1]

    for row in (0, 1, 100, 400):
        day = prices.index[row]
        assert design.features["exog_vix_ret_5d"].iloc[row + 5] == pytest.approx(
            np.log(known(prices.index[row + 5]) / known(day)), abs=1e-12)
    assert design.features.loc[design.grid.dates].notna().all().all()


def _toml(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(f'[data]\nsource = "{source}"\n')
    return path


# --------------------------------------------------------------------------- warm-up accounting


def test_rows_needed_include_the_exog_warmup_and_are_enough(tmp_path, sp500_slice):
    """With only the 20-row ``returns`` group, the 21-day exog return sets the warm-up: exactly the
    rows load_checked asks for make a run with one test block; one fewer is refused up front."""
    sets = ["split.min_train=40", "split.step=10", "model.lookback=5", "model.lstm=false",
            'features.groups=["returns"]']
    need = 21 + 4 + 40 + 10 + 1
    exog = sp500_slice["Close"].loc[:"2016-12-31"].rename("value")
    exog.to_csv(tmp_path / "own.csv")
    for rows, ok in ((need, True), (need - 1, False)):
        sp500_slice.loc[FIRST_DAY:].iloc[:rows].to_csv(tmp_path / "p.csv")
        cfg = RunConfig.from_toml(_toml(tmp_path, f"csv:{tmp_path / 'p.csv'}"),
                                  sets + [f'data.exog=["csv:{tmp_path / "own.csv"}"]'])
        if not ok:
            with pytest.raises(DataError, match=f"needs at least {need} \\(21 feature warm-up"):
                load_checked(cfg)
            continue
        design = make_design(load_checked(cfg), cfg)
        assert design.grid.first_row == 21 + 4 and len(design.folds) == 1


# --------------------------------------------------------------------------- the CLI




@pytest.fixture(scope="module")
def files(tmp_path_factory, sp500_slice) -> Path:
    """Prices from FIRST_DAY, and as exog the same close lagged by one trading day (legitimate:
    the value stamped t is the close of t-1), starting on the first price date."""
    folder = tmp_path_factory.mktemp("exog")
    sp500_slice.loc[FIRST_DAY:].to_csv(folder / "prices.csv")
    lagged = sp500_slice["Close"].shift(1).loc[FIRST_DAY:]
    pd.DataFrame({"Date": lagged.index.strftime("%Y-%m-%d"), "Value": lagged.to_numpy()}).to_csv(
        folder / "own_close_lagged.csv", index=False)
    pd.DataFrame({"Date": lagged.index, "a": 1.0, "b": 2.0}).to_csv(folder / "two_columns.csv", index=False)
    return folder


def test_run_with_a_csv_exog_end_to_end(files, tmp_path, run_cli):
    out = tmp_path / "runs" / "exog"
    exog = f"csv:{files / 'own_close_lagged.csv'}"
    argv = ["run", "--source", f"csv:{files / 'prices.csv'}", "--exog", exog, "--out", str(out)]
    argv += set_args(LINEAR_VALUES)
    code, stdout, err = run_cli(argv)
    assert code == 0, (stdout, err)
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    saved = RunConfig.from_dict(tomllib.loads((out / "config.toml").read_text()))
    assert saved.data.exog == (exog,)

    design = make_design(load_checked(saved), saved)
    features = design.features
    assert [c for c in features.columns if c.startswith("exog_")] == [
        "exog_own_close_lagged_ret_1d", "exog_own_close_lagged_ret_5d", "exog_own_close_lagged_ret_21d"]
    # the exog is yesterday's close, so its 1-day return on day t is the price's return on day t-1
    np.testing.assert_allclose(features["exog_own_close_lagged_ret_1d"].iloc[2:],
                               features["ret_1d"].shift(1).iloc[2:], rtol=0, atol=1e-12)
    assert features.loc[design.grid.dates].notna().all().all()


@pytest.mark.parametrize("case, words", [
    ("unknown_prefix", ["data.exog entry 'ftp:vix.csv'", "fdr:TICKER"]),
    ("missing_file", ["nope.csv", "file not found"]),
    ("no_value_column", ["two_columns.csv", "no value column", "found: a, b"]),
])
def test_bad_exog_is_one_error_line_and_leaves_nothing(case, words, files, tmp_path, run_cli):
    exog = {"unknown_prefix": "ftp:vix.csv", "missing_file": f"csv:{tmp_path / 'nope.csv'}",
            "no_value_column": f"csv:{files / 'two_columns.csv'}"}[case]
    parent = tmp_path / "runs"
    parent.mkdir()
    argv = ["run", "--source", f"csv:{files / 'prices.csv'}", "--exog", exog, "--out", str(parent / "out")]
    argv += set_args(LINEAR_VALUES)
    code, stdout, err = run_cli(argv)
    assert code == 2, (stdout, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + stdout
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert list(parent.iterdir()) == []


def test_predict_accepts_exog(files, run_cli):
    argv = ["predict", "--source", f"csv:{files / 'prices.csv'}", "--exog", "ftp:x", "--json"]
    code, _, err = run_cli(argv)
    assert code == 2 and "data.exog entry 'ftp:x'" in err
