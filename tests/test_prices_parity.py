"""The Python door is the CLI's door: a DataFrame given to ``lstmbt.run(prices=...)`` is
normalised and checked exactly as the same rows written to CSV and read as ``csv:PATH``.

Each malformed frame goes through both real entry points: written to CSV and passed to
``lstmbt run --source csv:PATH`` (``helpers.call_main``), and passed as ``prices=`` to
``lstmbt.run``. Both must end the same way, refused, warned or accepted, with the same line but
for the source's name, and an accepted frame must load to the same prices. No case trains: the
run is stopped where the loaded prices reach the features (``pipeline.make_design``), after
every data check, so an accepted case ends in the sentinel line. One pair of finished tiny runs
checks that the figures agree (Adj Close applied) and that the frame is recorded under its name.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest

import lstmbt
import lstmbt.backtest.pipeline as pipeline
from lstmbt.backtest.errors import ConfigError, DataError, DataWarning, LstmbtError
from helpers import LINEAR_VALUES, TINY_VALUES, call_main, set_args

NAME = "PARITY-FRAME"  # the frame's name: replaced, as the CSV's path is, before lines are compared
STOP = "stopped after the data checks"  # the sentinel line of an accepted case
SETS = {**TINY_VALUES, "model.lstm": False}  # nothing trains; check_length's row count needs these
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    """629 real S&P 500 bars (2014-01-02 to 2016-06-30) as the embedded sample holds them:
    Open High Low Close Adj Close Volume (integers) on a DatetimeIndex named Date."""
    from arch.data import sp500

    return sp500.load().loc["2014-01-01":"2016-06-30"]


# --------------------------------------------------------------------------- malformed frames


def _set(frame: pd.DataFrame, row: int, **values: Any) -> pd.DataFrame:
    out = frame.copy()
    for column, value in values.items():
        out[column] = out[column].astype(object) if isinstance(value, str) else out[column]
        out.iloc[row, out.columns.get_loc(column)] = value
    return out


def _adjusted(frame: pd.DataFrame) -> pd.DataFrame:
    """Adj Close 30% below Close at the start, equal at the end (dividends paid along the way)."""
    return frame.assign(**{"Adj Close": frame["Close"] * np.linspace(0.7, 1.0, len(frame))})


def _bad_tick(frame: pd.DataFrame) -> pd.DataFrame:
    """One day x11 (Close, High and Adj Close), the next day back."""
    row = 300
    return _set(frame, row, **{c: frame[c].iloc[row] * 11 for c in ("Close", "High", "Adj Close")})


def _stale(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    still = out.iloc[100]["Close"]
    out.iloc[101:108, :5] = still  # Open High Low Close Adj Close: seven bars at the same price
    return out


def _german_volume(frame: pd.DataFrame) -> pd.DataFrame:
    """Volume as a German export writes it: 1.058 (1058 shares) beside 907."""
    volume = [("1.058" if i % 2 else "907") for i in range(len(frame))]
    return frame.assign(Volume=volume)


def _hourly(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_axis(pd.date_range("2020-01-01", periods=len(frame), freq="h", name="Date"))


def _calendar_days(frame: pd.DataFrame) -> pd.DataFrame:
    """Every calendar day, weekends too (a crypto-like calendar)."""
    return frame.set_axis(pd.date_range("2014-01-01", periods=len(frame), freq="D", name="Date"))


def _gap(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame.iloc[:300], frame.iloc[300:].set_axis(frame.index[300:] + pd.Timedelta(days=90))])


def _two_symbols(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame.assign(Symbol="SPX"), frame.assign(Symbol="SPY")])


def _date_column_day_first(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.reset_index().assign(Date=frame.index.strftime("%d.%m.%Y"))


@dataclass(frozen=True)
class Case:
    """A malformed frame, what both doors must do with it and a phrase of that line."""

    make: Callable[[pd.DataFrame], pd.DataFrame]
    outcome: str  # "refused", "warned" or "accepted"
    phrase: str = ""
    values: dict[str, Any] = field(default_factory=dict)  # config values both doors are given


CASES: dict[str, Case] = {
    "adj-close": Case(_adjusted, "accepted"),
    "bad-tick": Case(_bad_tick, "refused", "looks like a bad tick"),
    "lowercase-columns": Case(lambda f: f.rename(columns=str.lower), "accepted"),
    "padded-upper-columns": Case(lambda f: f.rename(columns=lambda c: f" {c.upper()} "), "accepted"),
    "duplicate-date": Case(lambda f: pd.concat([f.iloc[:200], f.iloc[199:]]), "refused", "1 duplicate date(s)"),
    "unsorted-dates": Case(lambda f: f.iloc[np.r_[0:100, 101, 100, 102:len(f)]], "refused", "not in ascending order"),
    "nan-close": Case(lambda f: _set(f, 50, Close=np.nan), "refused", "Close has 1 missing value(s)"),
    "negative-low": Case(lambda f: _set(f, 50, Low=-1.0), "refused", "Low has non-positive price(s)"),
    "zero-close": Case(lambda f: _set(f, 50, Close=0.0), "refused", "Close has non-positive price(s)"),
    "inf-open": Case(lambda f: _set(f, 50, Open=np.inf), "refused", "Open has 1 non-finite value(s)"),
    "text-close": Case(lambda f: _set(f, 50, Close="abc"), "refused", "column Close is not numeric ('abc'"),
    "comma-volume": Case(lambda f: f.assign(Volume=f["Volume"].map("{:,}".format)), "refused",
                         "column Volume is not numeric ("),
    "german-volume": Case(_german_volume, "warned", "Volume looks written with '.' as a thousands separator"),
    "hourly-bars": Case(_hourly, "refused", "has intraday timestamps"),
    "weekly-bars": Case(lambda f: f.iloc[::5], "refused", "calendar days apart (weekly)"),
    "gap": Case(_gap, "refused", "has a gap of"),
    "weekend-bars": Case(_calendar_days, "accepted"),  # a 7-day calendar: annualised with 365, not suspect
    "high-below-low": Case(lambda f: f.rename(columns={"High": "Low", "Low": "High"}), "refused",
                           "High is below Low"),
    "close-above-high": Case(lambda f: _set(f, 60, Close=f["High"].iloc[60] * 1.02,
                                            **{"Adj Close": f["High"].iloc[60] * 1.02}),
                             "refused", "Close is above High"),
    "adj-close-missing": Case(lambda f: _set(f, 70, **{"Adj Close": np.nan}), "refused", "Adj Close has 1 missing"),
    "no-volume": Case(lambda f: f.drop(columns=["Volume"]), "refused", "missing column(s) Volume"),
    "two-close-columns": Case(lambda f: f.assign(close=f["Close"]), "refused", "has two close columns"),
    "no-dates": Case(lambda f: f.reset_index(drop=True), "refused", "has no date column"),
    "day-first-date-column": Case(_date_column_day_first, "accepted"),
    "too-short": Case(lambda f: f.iloc[:100], "refused", "has 100 rows"),
    "stale-closes": Case(_stale, "warned", "Close is unchanged for 8 bars"),
    "one-symbol-column": Case(lambda f: f.assign(Symbol="SPX"), "accepted"),
    "symbol-picked": Case(_two_symbols, "accepted", values={"data.symbol": "SPY"}),
    "symbol-not-there": Case(_two_symbols, "refused", "has no rows for symbol 'QQQ'", {"data.symbol": "QQQ"}),
    "utc-offsets": Case(lambda f: f.tz_localize("America/New_York"), "accepted"),
}


# --------------------------------------------------------------------------- the two doors


@dataclass
class Outcome:
    outcome: str
    line: str  # the error line without "error: ", the source's name replaced by <src>
    warnings: list[str]
    prices: pd.DataFrame | None


def _stop_at_design(seen: list[pd.DataFrame]) -> Callable[..., Any]:
    def stop(prices: pd.DataFrame, config: Any) -> Any:
        seen.append(prices)
        raise DataError(STOP)
    return stop


def _classify(error: str | None, warned: list[str], seen: list[pd.DataFrame]) -> Outcome:
    if error is None or error != STOP:
        assert not seen, "a refused case must not reach the features"
        return Outcome("refused", error or "(no error)", warned, None)
    return Outcome("warned" if warned else "accepted", "", warned, seen[0])


def through_csv(frame: pd.DataFrame, folder: Path, values: dict[str, Any]) -> Outcome:
    """``lstmbt run --source csv:PATH`` on ``frame`` written to CSV, as a user's file would be."""
    path = folder / "prices.csv"
    dated = isinstance(frame.index, pd.DatetimeIndex)
    frame.to_csv(path, index=dated, index_label="Date" if dated else None)
    source = f"csv:{path}"
    seen: list[pd.DataFrame] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "make_design", _stop_at_design(seen))
        code, _, err = call_main(["run", "--quick", "--source", source, *set_args({**SETS, **values}),
                                  "--out", str(folder / "run")])
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert not (folder / "run").exists() and sorted(p.name for p in folder.iterdir()) == ["prices.csv"]
    error = lines[-1].removeprefix("error: ").replace(source, "<src>")
    warned = [line.removeprefix("warning: ").replace(source, "<src>") for line in lines if line.startswith("warning:")]
    return _classify(error, warned, seen)


def through_prices(frame: pd.DataFrame, values: dict[str, Any] | None = None) -> Outcome:
    """``lstmbt.run(prices=frame)`` with the same config."""
    seen: list[pd.DataFrame] = []
    error = None
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        mp.setattr(pipeline, "make_design", _stop_at_design(seen))
        try:
            lstmbt.run(quick=True, set={**SETS, **(values or {})}, prices=frame, name=NAME)
        except LstmbtError as exc:
            error = str(exc)
    assert error is not None and "\n" not in error
    warned = list(dict.fromkeys(str(w.message).replace(NAME, "<src>") for w in caught
                                if issubclass(w.category, DataWarning)))
    return _classify(error.replace(NAME, "<src>"), warned, seen)


def _same_prices(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Equal prices (a CSV's decimal text may differ from the float in its last bit) on equal dates."""
    assert ours.index.as_unit("ns").equals(theirs.index.as_unit("ns"))
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), theirs.reset_index(drop=True), rtol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_a_malformed_frame_ends_the_same_through_prices_and_csv(name, base, tmp_path):
    case = CASES[name]
    frame = case.make(base)
    by_csv, by_frame = through_csv(frame, tmp_path, case.values), through_prices(frame, case.values)
    assert (by_frame.outcome, by_frame.line, by_frame.warnings) == (by_csv.outcome, by_csv.line, by_csv.warnings)
    assert by_csv.outcome == case.outcome, by_csv
    said = [by_csv.line] if case.outcome == "refused" else by_csv.warnings
    assert not case.phrase or any(case.phrase in line and line.startswith("<src>") for line in said), said
    if case.outcome != "refused":
        _same_prices(by_frame.prices, by_csv.prices)


def test_adj_close_adjusts_the_prices_of_both_doors(base, tmp_path):
    prices = through_prices(_adjusted(base)).prices
    assert np.allclose(prices["Close"], _adjusted(base)["Adj Close"])
    assert np.allclose(prices["Open"] / base["Open"].to_numpy(), np.linspace(0.7, 1.0, len(base)))


# --------------------------------------------------------------------------- what only a DataFrame can be


def _flat(base: pd.DataFrame) -> pd.DataFrame:
    return through_prices(base).prices


def test_one_tickers_yfinance_columns_are_read_as_that_ticker(base):
    frame = base.copy()
    frame.columns = pd.MultiIndex.from_product([base.columns, ["SPY"]], names=["Price", "Ticker"])
    outcome = through_prices(frame)
    assert outcome.outcome == "accepted", outcome
    pd.testing.assert_frame_equal(outcome.prices, _flat(base))


def test_dates_in_a_named_text_index_are_read_as_a_date_column(base):
    frame = base.set_axis(base.index.strftime("%Y-%m-%d").rename("Date"))
    pd.testing.assert_frame_equal(through_prices(frame).prices, _flat(base), check_index_type=False)


@pytest.mark.parametrize("prices, words", [
    (lambda b: b["Close"], "prices= is a pandas Series ('Close'), not a frame of daily bars; pass a DataFrame"),
    (lambda b: b.to_numpy(), "prices= is a ndarray, not a pandas DataFrame; pass a DataFrame"),
    (lambda b: pd.concat({"SPY": b, "QQQ": b}, axis=1, names=["Ticker", "Price"]),
     "<src> holds the columns of 2 tickers (SPY, QQQ); pass one ticker's, e.g. "
     "prices.xs('SPY', axis=1, level='Ticker')"),
    (lambda b: pd.concat({"a": pd.concat({"SPY": b}, axis=1)}, axis=1), "<src> has 3 levels of column names"),
], ids=["series", "array", "two-tickers", "three-levels"])
def test_shapes_a_csv_cannot_hold_are_refused_in_one_line(prices, words, base):
    with pytest.raises(DataError) as caught:
        lstmbt.run(quick=True, set=SETS, prices=prices(base), name=NAME)
    line = str(caught.value).replace(NAME, "<src>")
    assert line.startswith(words) and "\n" not in line, line


@pytest.mark.parametrize("kwargs, words", [
    ({"set": 123}, "set must be a dict like {'model.hidden_size': 64} or a list of 'key=value' strings, not 123"),
    ({"set": {1: 2}}, "set must be a dict"),
    ({"name": "x"}, "name= names a DataFrame given as prices=; pass prices= too"),
    ({"name": "two\nlines", "prices": "frame"}, "name='two\\nlines' is not a usable name"),
    ({"name": 7, "prices": "frame"}, "name=7 is not a usable name"),
    ({"source": "sample:nasdaq", "prices": "frame"}, "source='sample:nasdaq' and prices= both say"),
], ids=["set-int", "set-int-key", "name-alone", "name-two-lines", "name-int", "source-and-prices"])
def test_a_wrong_argument_is_a_config_error(kwargs, words, base):
    if kwargs.get("prices") == "frame":
        kwargs = {**kwargs, "prices": base}
    with pytest.raises(ConfigError) as caught:
        lstmbt.run(quick=True, **kwargs)
    assert str(caught.value).startswith(words), caught.value


@pytest.mark.parametrize("source", ["frame:my prices", "frame:SPY, daily"])
def test_a_frame_source_cannot_be_loaded_again(source, tmp_path):
    code, _, err = call_main(["run", "--quick", "--source", source, "--out", str(tmp_path / "run")])
    assert code == 2 and "Traceback" not in err and list(tmp_path.iterdir()) == []
    assert err.strip().splitlines()[-1] == (
        f"error: source {source!r} names a DataFrame given to lstmbt.run(prices=...), which a run does not "
        "keep; pass the frame again as prices=, or save it as CSV and use csv:PATH")


# --------------------------------------------------------------------------- dates out of range


@pytest.mark.parametrize("flag, value, words", [
    ("--start", "0001-01-01", "data.start = '0001-01-01' is before 1677-09-22, the first date pandas can hold; "
                              "leave it out (--start) to use the data from its first date"),
    ("--end", "9999-12-31", "data.end = '9999-12-31' is after 2262-04-11, the last date pandas can hold; "
                            "leave it out (--end) to use the data to its last date"),
])
def test_a_date_pandas_cannot_hold_is_refused_in_one_line(flag, value, words, tmp_path):
    code, _, err = call_main(["run", "--quick", flag, value, "--out", str(tmp_path / "run")])
    assert (code, err.strip().splitlines()[-1]) == (2, f"error: {words}") and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="the .* date pandas can hold") as caught:
        lstmbt.run(quick=True, set={f"data.{flag[2:]}": value})
    assert str(caught.value) == words


def test_the_edges_of_the_dates_pandas_can_hold_keep_every_row(base):
    outcome = through_prices(base)
    with pytest.MonkeyPatch.context() as mp:
        seen: list[pd.DataFrame] = []
        mp.setattr(pipeline, "make_design", _stop_at_design(seen))
        with pytest.raises(DataError, match=STOP):
            lstmbt.run(quick=True, set={**SETS, "data.start": "1677-09-22", "data.end": "2262-04-11"}, prices=base)
    pd.testing.assert_frame_equal(seen[0], outcome.prices)


# --------------------------------------------------------------------------- finished runs: figures and name


@pytest.fixture(scope="module")
def two_runs(base, tmp_path_factory) -> tuple[Path, Path]:
    """The same frame with Adj Close as a finished tiny linear run through each door: (csv, prices)."""
    folder = tmp_path_factory.mktemp("runs")
    frame = _adjusted(base)
    frame.to_csv(folder / "adjusted.csv", index_label="Date")
    code, _, err = call_main(["run", "--quick", "--source", f"csv:{folder / 'adjusted.csv'}",
                              *set_args(LINEAR_VALUES), "--out", str(folder / "by-csv")])
    assert code == 0, err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lstmbt.run(quick=True, set=LINEAR_VALUES, prices=frame, name="my prices", out=folder / "by-prices")
    return folder / "by-csv", folder / "by-prices"


def test_prices_give_the_clis_figures(two_runs):
    by_csv, by_prices = (json.loads((run / "metrics.json").read_text()) for run in two_runs)
    assert by_prices.keys() == by_csv.keys()
    for strategy, figures in by_csv.items():
        words = {k: v for k, v in figures.items() if not isinstance(v, (int, float))}
        assert {k: by_prices[strategy][k] for k in words} == words, strategy  # verdicts, undefined figures
        numbers = {k: v for k, v in figures.items() if k not in words}
        assert {k: by_prices[strategy][k] for k in numbers} == pytest.approx(numbers, rel=1e-9, nan_ok=True), strategy
    returns = pd.read_parquet(two_runs[1] / "returns.parquet")["buy_and_hold"]
    assert by_prices["buy_and_hold"]["total_return"] == pytest.approx(float((1 + returns).prod() - 1), rel=1e-9)


def test_the_frame_is_recorded_under_its_name_never_a_samples(two_runs):
    run = two_runs[1]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["data"]["source"] == "my prices"
    assert 'source = "frame:my prices"' in (run / "config.toml").read_text()
    page = (run / "report.html").read_text()
    assert "lstmbt report - my prices" in page
    for text in (page, (run / "manifest.json").read_text(), (run / "config.toml").read_text()):
        assert "sample:sp500" not in text
    code, out, err = call_main(["runs", "list", "--root", str(run.parent)])
    assert code == 0 and "my prices" in out, err
    assert lstmbt.load(run).config.data.label == "my prices"


def test_a_refusal_names_the_frame_or_dataframe_never_the_configs_sample(base):
    short = base.iloc[:100]
    for name, source, label in (("my prices", None, "my prices"), (None, None, "DataFrame"),
                                (None, "frame:a saved frame run", "a saved frame run")):
        with pytest.raises(DataError) as caught:
            lstmbt.run(quick=True, set={**SETS, **({"data.source": source} if source else {})}, prices=short, name=name)
        assert str(caught.value).startswith(f"{label} has 100 rows"), caught.value
