"""The data layer: sources, normalisation, validation messages, provenance and the FDR cache."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

import lstmbt.backtest.data as data
from lstmbt.backtest.config import DataConfig
from lstmbt.backtest.data import (
    check_enough_rows,
    describe_prices,
    fdr_cache_dir,
    load_prices,
    normalize_ohlcv,
    read_fdr,
)
from lstmbt.backtest.errors import DataError
from lstmbt.backtest.frames import OHLCV, trim_dates

HEADER = "date,open,high,low,close,volume"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def sp500_raw() -> pd.DataFrame:
    from arch.data import sp500

    return sp500.load()


def write_csv(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_csv(path: Path, **kw) -> pd.DataFrame:
    return load_prices(DataConfig(source=f"csv:{path}", **kw))


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    """The CLI prints the message as-is, so it must be a single line."""
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message and message
    return message


def assert_clean_frame(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(OHLCV)
    assert all(frame.dtypes == np.float64)
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.name == "Date"
    assert frame.index.tz is None
    assert frame.index.is_monotonic_increasing and frame.index.is_unique
    assert not frame.isna().any().any()


def rows_csv(*rows: str, header: str = HEADER) -> str:
    return "\n".join((header, *rows)) + "\n"


# Two valid rows reused by the bad-input tests; each test breaks exactly one thing.
GOOD_1 = "2020-01-02,10,11,9,10.5,1000"
GOOD_2 = "2020-01-03,10.5,12,10,11,1200"


# --------------------------------------------------------------------------- samples


@pytest.mark.parametrize("name", ["sp500", "nasdaq"])
def test_sample_loads_real_ohlcv(name):
    prices = load_prices(DataConfig(source=f"sample:{name}"))
    assert_clean_frame(prices)
    assert 5000 <= len(prices) <= 5100
    assert prices.index[0] == pd.Timestamp("1999-01-04")
    assert prices.index[-1] == pd.Timestamp("2018-12-31")
    assert (prices["High"] >= prices["Low"]).all()


def test_sample_sp500_matches_arch_data(sp500_raw):
    prices = load_prices(DataConfig(source="sample:sp500"))
    # Adj Close equals Close for an index, so the adjustment must leave the values untouched
    np.testing.assert_allclose(prices["Close"], sp500_raw["Adj Close"])
    np.testing.assert_allclose(prices["Open"], sp500_raw["Open"] * sp500_raw["Adj Close"] / sp500_raw["Close"])


def test_unknown_sample_is_a_data_error():
    with pytest.raises(DataError, match=r"unknown sample 'dow'.*sample:sp500") as exc:
        load_prices(DataConfig(source="sample:dow"))
    one_line(exc)


def test_source_with_nothing_after_the_scheme_is_a_data_error():
    with pytest.raises(DataError, match=r"names nothing after 'sample:'") as exc:
        load_prices(DataConfig(source="sample:"))
    one_line(exc)


# --------------------------------------------------------------------------- CSV sources


def test_wide_csv_matches_columns_case_insensitively(tmp_path, sp500_raw):
    head = sp500_raw.iloc[:50]
    body = pd.DataFrame({"date": head.index.strftime("%Y-%m-%d"), "OPEN": head["Open"], "high": head["High"],
                         "Low": head["Low"], "close": head["Close"], "VOLUME": head["Volume"]})
    path = tmp_path / "wide.csv"
    body.to_csv(path, index=False)
    prices = load_csv(path)
    assert_clean_frame(prices)
    expected = head[list(OHLCV)].astype("float64")
    expected.index = expected.index.astype(prices.index.dtype)
    pd.testing.assert_frame_equal(prices, expected, check_freq=False)


def test_adj_close_adjusts_ohlc_by_hand(tmp_path):
    # factor = Adj Close / Close: 0.5 on day one, 1.0 on day two (no split)
    path = write_csv(tmp_path, rows_csv("2020-01-02,8,12,6,10,100,5", "2020-01-03,20,22,19,21,200,21",
                                        header="Date,Open,High,Low,Close,Volume,Adj Close"))
    prices = load_csv(path, max_move=5.0)  # adjusted closes 5 -> 21: a +320% move the default refuses
    assert prices.loc["2020-01-02"].tolist() == [4.0, 6.0, 3.0, 5.0, 100.0]
    assert prices.loc["2020-01-03"].tolist() == [20.0, 22.0, 19.0, 21.0, 200.0]


def test_adj_close_with_gaps_is_refused_not_silently_skipped(tmp_path):
    path = write_csv(tmp_path, rows_csv("2020-01-02,8,12,6,10,100,5", "2020-01-03,20,22,19,21,200,",
                                        header="Date,Open,High,Low,Close,Volume,Adj Close"))
    with pytest.raises(DataError, match=r"Adj Close has 1 missing or non-positive.*drop the Adj Close column") as exc:
        load_csv(path)
    one_line(exc)


def test_gap_in_close_is_named_even_with_adj_close(tmp_path):
    # The adjustment would spread a missing Close into Open; validation runs first and names Close.
    path = write_csv(tmp_path, rows_csv("2020-01-02,8,12,6,10,100,5", "2020-01-03,20,22,19,n/a,200,21",
                                        header="Date,Open,High,Low,Close,Volume,Adj Close"))
    with pytest.raises(DataError, match=r"Close has 1 missing value") as exc:
        load_csv(path)
    assert "Open" not in str(exc.value)


def test_date_column_may_be_the_saved_index_or_yyyymmdd_integers(tmp_path):
    frame = pd.DataFrame({"Open": [1.0, 1.2], "High": [1.5, 1.5], "Low": [0.5, 1.0], "Close": [1.2, 1.3],
                          "Volume": [10, 20]}, index=pd.DatetimeIndex(["2021-03-01", "2021-03-02"], name="Date"))
    frame.to_csv(tmp_path / "indexed.csv")  # pandas writes the index as a 'Date' column
    assert load_csv(tmp_path / "indexed.csv").index[1] == pd.Timestamp("2021-03-02")
    # KRX exports often write 20210301; it must not be read as nanoseconds since 1970
    path = write_csv(tmp_path, rows_csv("20210301,1,2,1,1.5,10", "20210302,1,2,1,1.5,10"), "int_dates.csv")
    assert list(load_csv(path).index) == [pd.Timestamp("2021-03-01"), pd.Timestamp("2021-03-02")]


@pytest.fixture
def long_csv(tmp_path, sp500_raw) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """The seed's prices.csv shape (date, symbol, open, close, low, high, volume) with two symbols."""
    from arch.data import nasdaq

    parts = {"005930": sp500_raw.iloc[:40], "AAPL": nasdaq.load().iloc[:40]}
    frames = []
    for sym, part in parts.items():
        frames.append(pd.DataFrame({"date": part.index.strftime("%Y-%m-%d"), "symbol": sym, "open": part["Open"],
                                    "close": part["Close"], "low": part["Low"], "high": part["High"],
                                    "volume": part["Volume"]}))
    # interleaved by date, as a multi-symbol export is
    both = pd.concat(frames).sort_values(["date", "symbol"], kind="stable")
    path = tmp_path / "long.csv"
    both.to_csv(path, index=False)
    return path, parts["005930"], parts["AAPL"]


def test_long_csv_picks_each_symbol(long_csv):
    path, first, second = long_csv
    for symbol, part in (("005930", first), ("AAPL", second)):
        prices = load_csv(path, symbol=symbol)
        assert_clean_frame(prices)
        assert len(prices) == 40
        assert list(prices.index) == list(part.index)
        np.testing.assert_allclose(prices["Close"], part["Close"])
        np.testing.assert_allclose(prices["Volume"], part["Volume"])


def test_long_csv_with_two_symbols_needs_symbol(long_csv):
    with pytest.raises(DataError, match=r"holds 2 symbols \(005930, AAPL\); pick one with --symbol") as exc:
        load_csv(long_csv[0])
    one_line(exc)


def test_long_csv_unknown_symbol(long_csv):
    with pytest.raises(DataError, match=r"no rows for symbol 'MSFT'.*available: 005930, AAPL") as exc:
        load_csv(long_csv[0], symbol="MSFT")
    one_line(exc)
    with pytest.raises(DataError, match=r"did you mean AAPL\?"):
        load_csv(long_csv[0], symbol="aapl")


def test_long_csv_with_one_symbol_needs_no_symbol(tmp_path):
    path = write_csv(tmp_path, rows_csv("2020-01-02,X,10,10.5,9,11,1000", "2020-01-03,X,10.5,11,10,12,1200",
                                        header="date,symbol,open,close,low,high,volume"))
    prices = load_csv(path)
    assert prices["Close"].tolist() == [10.5, 11.0]


def test_long_csv_keeps_leading_zeros_of_krx_codes(tmp_path):
    # with only numeric codes pandas would read 005930 as the integer 5930 and --symbol 005930 would miss
    path = write_csv(tmp_path, rows_csv("2020-01-02,005930,10,10.5,9,11,1000", "2020-01-02,000660,20,21,19,22,50",
                                        "2020-01-03,005930,10.5,11,10,12,1200", "2020-01-03,000660,21,22,20,23,60",
                                        header="date,symbol,open,close,low,high,volume"))
    assert load_csv(path, symbol="005930")["Close"].tolist() == [10.5, 11.0]
    assert load_csv(path, symbol="000660")["Volume"].tolist() == [50.0, 60.0]
    with pytest.raises(DataError, match=r"holds 2 symbols \(000660, 005930\)"):
        load_csv(path)


def test_symbol_given_for_a_file_without_symbol_column(tmp_path):
    path = write_csv(tmp_path, rows_csv(GOOD_1, GOOD_2))
    with pytest.raises(DataError, match=r"no symbol column but --symbol AAPL") as exc:
        load_csv(path, symbol="AAPL")
    one_line(exc)


# --------------------------------------------------------------------------- bad input, one test each


def test_frame_without_datetime_index_or_date_column(tmp_path):
    path = write_csv(tmp_path, rows_csv("10,11,9,10.5,1000", header="open,high,low,close,volume"))
    with pytest.raises(DataError, match=r"has no date column; name one column 'Date'") as exc:
        load_csv(path)
    one_line(exc)
    # the same check guards frames handed over from Python
    raw = pd.DataFrame({name: [1.0] for name in OHLCV})
    with pytest.raises(DataError, match="has no date column"):
        normalize_ohlcv(raw, label="frame")


def test_unparseable_date(tmp_path):
    path = write_csv(tmp_path, rows_csv(GOOD_1, "2020-13-45,1,2,1,1.5,10"))
    with pytest.raises(DataError, match=r"not a date \('2020-13-45' in data row 2\)") as exc:
        load_csv(path)
    one_line(exc)


def test_unsorted_dates(tmp_path):
    path = write_csv(tmp_path, rows_csv(GOOD_2, GOOD_1))
    with pytest.raises(DataError, match=r"not in ascending order \(2020-01-02 comes after 2020-01-03\)") as exc:
        load_csv(path)
    one_line(exc)


def test_duplicate_dates(tmp_path):
    path = write_csv(tmp_path, rows_csv(GOOD_1, GOOD_1, GOOD_2))
    with pytest.raises(DataError, match=r"1 duplicate date\(s\), first 2020-01-02") as exc:
        load_csv(path)
    one_line(exc)


@pytest.mark.parametrize(("row", "column"), [("2020-01-03,10.5,12,0,11,1200", "Low"),
                                             ("2020-01-03,-1,12,10,11,1200", "Open")])
def test_non_positive_prices(tmp_path, row, column):
    path = write_csv(tmp_path, rows_csv(GOOD_1, row))
    with pytest.raises(DataError, match=rf"{column} has non-positive price\(s\).*on 2020-01-03") as exc:
        load_csv(path)
    one_line(exc)


def test_nan_in_close(tmp_path):
    path = write_csv(tmp_path, rows_csv(GOOD_1, "2020-01-03,10.5,12,10,,1200"))
    with pytest.raises(DataError, match=r"Close has 1 missing value\(s\), first on 2020-01-03") as exc:
        load_csv(path)
    one_line(exc)


def test_non_numeric_column(tmp_path):
    path = write_csv(tmp_path, rows_csv(GOOD_1, '2020-01-03,10.5,12,10,11,"1,200"'))
    with pytest.raises(DataError, match=r"column Volume is not numeric \('1,200' on 2020-01-03\)") as exc:
        load_csv(path)
    one_line(exc)


def test_non_numeric_value_with_duplicate_dates_stays_one_line(tmp_path):
    # duplicates are only checked after conversion, so the message must not print a Series
    path = write_csv(tmp_path, rows_csv(GOOD_1, "2020-01-02,x,11,9,10.5,1000"))
    with pytest.raises(DataError, match=r"column Open is not numeric \('x' on 2020-01-02\)") as exc:
        load_csv(path)
    one_line(exc)


def test_missing_column(tmp_path):
    path = write_csv(tmp_path, rows_csv("2020-01-02,10,11,9,10.5", header="date,open,high,low,close"))
    with pytest.raises(DataError, match=r"missing column\(s\) Volume \(found: open, high, low, close\)") as exc:
        load_csv(path)
    one_line(exc)


def test_negative_volume(tmp_path):
    path = write_csv(tmp_path, rows_csv(GOOD_1, "2020-01-03,10.5,12,10,11,-5"))
    with pytest.raises(DataError, match=r"Volume is negative on 2020-01-03") as exc:
        load_csv(path)
    one_line(exc)


def test_empty_file(tmp_path):
    path = write_csv(tmp_path, "")
    with pytest.raises(DataError, match=r"is empty; it needs a header row") as exc:
        load_csv(path)
    one_line(exc)


def test_header_only_file(tmp_path):
    path = write_csv(tmp_path, rows_csv())
    with pytest.raises(DataError, match=r"holds no rows") as exc:
        load_csv(path)
    one_line(exc)


def test_file_not_found(tmp_path):
    with pytest.raises(DataError, match=r"missing\.csv: file not found") as exc:
        load_csv(tmp_path / "missing.csv")
    one_line(exc)


def test_date_range_with_no_rows():
    with pytest.raises(DataError, match=r"no rows between 2030-01-01 and 2030-12-31; it covers 1999-01-04 to "
                                        r"2018-12-31") as exc:
        load_prices(DataConfig(source="sample:sp500", start="2030-01-01", end="2030-12-31"))
    one_line(exc)


def test_too_few_rows_for_the_run():
    prices = load_prices(DataConfig(source="sample:sp500", start="2018-12-01"))
    check_enough_rows(prices, len(prices), "exactly enough", "sample:sp500")  # the boundary passes
    with pytest.raises(DataError, match=rf"has {len(prices)} rows \(2018-12-03 to 2018-12-31\) but the run needs "
                                        rf"at least 300 \(lookback 60 \+ min_train 220 \+ step 20\)") as exc:
        check_enough_rows(prices, 300, "lookback 60 + min_train 220 + step 20", "sample:sp500")
    one_line(exc)


# --------------------------------------------------------------------------- trimming and provenance


def test_trim_dates_is_inclusive():
    prices = load_prices(DataConfig(source="sample:sp500"))
    cut = trim_dates(prices, "2000-01-03", "2000-01-31", label="x")
    assert cut.index[0] == pd.Timestamp("2000-01-03") and cut.index[-1] == pd.Timestamp("2000-01-31")
    assert len(cut) == 20  # the trading days of January 2000
    # a bound on a non-trading day keeps the nearest day inside the range
    assert trim_dates(prices, "2000-01-01", None, label="x").index[0] == pd.Timestamp("2000-01-03")
    assert trim_dates(prices, None, "2000-01-01", label="x").index[-1] == pd.Timestamp("1999-12-31")
    assert trim_dates(prices, None, None, label="x") is prices
    # load_prices applies the same trim
    via_config = load_prices(DataConfig(source="sample:sp500", start="2000-01-03", end="2000-01-31"))
    pd.testing.assert_frame_equal(via_config, cut)


def test_describe_prices_records_provenance():
    cfg = DataConfig(source="sample:nasdaq", start="2010-01-01", end="2010-12-31")
    first, second = load_prices(cfg), load_prices(cfg)
    info = describe_prices(first, cfg.source)
    assert info["source"] == "sample:nasdaq"
    assert info["first_date"] == "2010-01-04" and info["last_date"] == "2010-12-31"
    assert info["rows"] == len(first) == 252
    assert re.fullmatch(r"[0-9a-f]{64}", info["sha256"])
    assert describe_prices(second, cfg.source)["sha256"] == info["sha256"]
    changed = first.copy()
    changed.iloc[100, changed.columns.get_loc("Close")] += 0.01
    assert describe_prices(changed, cfg.source)["sha256"] != info["sha256"]
    # the date resolution pandas happens to pick (ns from one source, us from another) is not content
    for unit in ("s", "ms", "us", "ns"):
        relabelled = first.set_axis(first.index.as_unit(unit))
        assert describe_prices(relabelled, cfg.source)["sha256"] == info["sha256"]


# --------------------------------------------------------------------------- FinanceDataReader, no network


def fdr_frame(start: str = "2020-01-01", days: int = 300) -> pd.DataFrame:
    """What ``fdr.DataReader('005930', ...)`` returns for KRX: int prices, float ``Change``."""
    # business days less a few exchange holidays: an irregular index without a freq, like FDR's
    index = pd.bdate_range(start, periods=days + 3, name="Date").delete([20, 90, 200])
    index = pd.DatetimeIndex(index, freq=None)
    rng = np.random.default_rng(5930)
    close = np.round(60_000 * np.exp(np.cumsum(rng.normal(0, 0.015, days))), -2).astype("int64")
    open_ = np.roll(close, 1)
    open_[0] = close[0]
    high = np.maximum(open_, close) + 300
    low = np.minimum(open_, close) - 300
    volume = rng.integers(5_000_000, 30_000_000, days).astype("int64")
    frame = pd.DataFrame({"Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}, index=index)
    frame["Change"] = frame["Close"].pct_change()
    return frame


class FakeReader:
    """Stands in for ``fdr.DataReader``: plays back one outcome (exception or frame) per call."""

    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.calls: list[tuple] = []

    def __call__(self, symbol, start=None, end=None):
        self.calls.append((symbol, start, end))
        outcome = self.outcomes[min(len(self.calls), len(self.outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        print(f"fake FDR chatter for {symbol}")  # FDR prints; the loader must keep stdout clean
        return outcome.loc[start:end] if len(outcome) else outcome


@pytest.fixture
def fdr(monkeypatch, tmp_path):
    """No sockets, no sleeping, a private cache; returns a function that installs a FakeReader."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to open a network connection to {args[1:]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("LSTMBT_CACHE_DIR", str(tmp_path / "cache"))
    delays: list[float] = []
    monkeypatch.setattr(data.time, "sleep", delays.append)

    def install(*outcomes) -> FakeReader:
        reader = FakeReader(*outcomes)
        monkeypatch.setattr(data, "_fdr_datareader", lambda: reader)
        return reader

    install.delays = delays
    return install


def http_error(status: int) -> requests.exceptions.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.exceptions.HTTPError(f"{status} Error for url: https://example.invalid", response=response)


FDR_CFG = DataConfig(source="fdr:005930", start="2020-02-03", end="2020-12-30")


def test_socket_guard_is_active(fdr):
    with pytest.raises(AssertionError, match="network connection"):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)


def test_fdr_loads_through_load_prices(fdr, capsys):
    reader = fdr(fdr_frame())
    prices = load_prices(FDR_CFG)
    assert_clean_frame(prices)
    assert reader.calls == [("005930", "2020-02-03", "2020-12-30")]
    assert prices.index[0] == pd.Timestamp("2020-02-03") and prices.index[-1] == pd.Timestamp("2020-12-30")
    expected = fdr_frame().loc["2020-02-03":"2020-12-30", list(OHLCV)].astype("float64")
    pd.testing.assert_frame_equal(prices, expected, check_freq=False)
    assert capsys.readouterr().out == ""


def test_fdr_cache_is_written_and_reused(fdr):
    reader = fdr(fdr_frame())
    first = load_prices(FDR_CFG)
    cache = fdr_cache_dir() / "005930_2020-02-03_2020-12-30.parquet"
    assert cache.is_file() and cache.is_relative_to(Path(os.environ["LSTMBT_CACHE_DIR"]))
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".tmp")]
    second = load_prices(FDR_CFG)
    assert len(reader.calls) == 1  # served from the parquet file
    pd.testing.assert_frame_equal(first, second)
    # the manifest hash must not depend on whether the data came from the network or the cache
    assert describe_prices(first, FDR_CFG.source)["sha256"] == describe_prices(second, FDR_CFG.source)["sha256"]
    # refresh bypasses the cache and downloads again
    load_prices(DataConfig(source="fdr:005930", start="2020-02-03", end="2020-12-30", refresh=True))
    assert len(reader.calls) == 2


def test_fdr_cache_reaching_today_goes_stale(fdr):
    reader = fdr(fdr_frame())
    read_fdr("005930", "2020-02-03", None)
    read_fdr("005930", "2020-02-03", None)
    assert len(reader.calls) == 1  # fresh within 12 hours
    cache = fdr_cache_dir() / "005930_2020-02-03_latest.parquet"
    old = time.time() - data.FDR_FRESH_S - 60
    os.utime(cache, (old, old))
    read_fdr("005930", "2020-02-03", None)
    assert len(reader.calls) == 2


def test_fdr_retries_transient_errors_with_backoff(fdr):
    boom = requests.exceptions.ConnectionError("Max retries exceeded with url: /sise")
    reader = fdr(boom, boom, fdr_frame())
    prices = load_prices(FDR_CFG)
    assert len(reader.calls) == 3
    assert fdr.delays == [data.FDR_BACKOFF_S, 2 * data.FDR_BACKOFF_S]
    assert len(prices) > 200


def test_fdr_retries_http_5xx(fdr):
    reader = fdr(http_error(503), fdr_frame())
    assert len(load_prices(FDR_CFG)) > 200
    assert len(reader.calls) == 2 and fdr.delays == [data.FDR_BACKOFF_S]


def test_fdr_retries_urllib_and_dns_errors(fdr):
    import socket
    import urllib.error

    reader = fdr(urllib.error.URLError("timed out"), socket.gaierror("Name or service not known"), fdr_frame())
    assert len(load_prices(FDR_CFG)) > 200
    assert len(reader.calls) == 3


def test_fdr_persistent_network_error(fdr):
    reader = fdr(requests.exceptions.ConnectionError("Failed to resolve 'fchart.stock.naver.com'\nsecond line"))
    with pytest.raises(DataError, match=rf"fdr:005930: could not reach .* after {data.FDR_ATTEMPTS} attempts "
                                        r"\(ConnectionError: Failed to resolve.*check the network") as exc:
        load_prices(FDR_CFG)
    one_line(exc)
    assert len(reader.calls) == data.FDR_ATTEMPTS
    assert fdr.delays == [data.FDR_BACKOFF_S * 2**i for i in range(data.FDR_ATTEMPTS - 1)]
    assert not fdr_cache_dir().exists() or not any(fdr_cache_dir().iterdir())  # nothing cached


def test_fdr_empty_frame_names_the_ticker(fdr, capsys):
    reader = fdr(pd.DataFrame())
    with pytest.raises(DataError, match=r"fdr:999999: FinanceDataReader returned no rows.*check the ticker") as exc:
        load_prices(DataConfig(source="fdr:999999", start="2020-01-01", end="2020-12-31"))
    one_line(exc)
    assert len(reader.calls) == 1 and fdr.delays == []
    assert capsys.readouterr().out == ""


def test_fdr_http_404_is_not_retried(fdr):
    reader = fdr(http_error(404))
    with pytest.raises(DataError, match=r"fdr:NOSUCH: FinanceDataReader could not read this ticker "
                                        r"\(HTTPError: 404 Error.*check the code") as exc:
        load_prices(DataConfig(source="fdr:NOSUCH", start="2020-01-01", end="2020-12-31"))
    one_line(exc)
    assert len(reader.calls) == 1 and fdr.delays == []


def test_fdr_calls_run_under_a_socket_timeout(fdr, monkeypatch):
    # FDR calls requests without a timeout; a stalled connection must fail and be retried, not hang.
    seen = []
    reader = fdr(fdr_frame())
    original = reader.__call__

    def spy(*args, **kwargs):
        seen.append(socket.getdefaulttimeout())
        return original(*args, **kwargs)

    monkeypatch.setattr(data, "_fdr_datareader", lambda: spy)
    before = socket.getdefaulttimeout()
    load_prices(FDR_CFG)
    assert seen == [data.FDR_TIMEOUT_S]
    assert socket.getdefaulttimeout() == before


# --------------------------------------------------------------------------- what spreadsheets export


@pytest.fixture(scope="module")
def sp500_2015(sp500_raw) -> pd.DataFrame:
    return sp500_raw.loc["2015"].drop(columns=["Adj Close"])


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_semicolon_tab_and_pipe_separated_files_read_like_commas(tmp_path, sp500_2015, sep):
    plain = load_csv(write_csv(tmp_path, sp500_2015.to_csv(), "comma.csv"))
    other = load_csv(write_csv(tmp_path, sp500_2015.to_csv(sep=sep), "other.csv"))
    pd.testing.assert_frame_equal(plain, other)
    assert len(plain) == len(sp500_2015)


def test_day_first_dates_are_read_day_first_when_only_that_reading_is_ordered(tmp_path, sp500_2015):
    german = sp500_2015.copy()
    german.index = german.index.strftime("%d.%m.%Y").rename("Date")
    frame = load_csv(write_csv(tmp_path, german.to_csv()))
    assert list(frame.index) == list(sp500_2015.index)  # 13.01.2015 is 13 January, 01.12.2015 is 1 December


def test_month_first_dates_stay_month_first(tmp_path, sp500_2015):
    us = sp500_2015.copy()
    us.index = us.index.strftime("%m/%d/%Y").rename("Date")
    frame = load_csv(write_csv(tmp_path, us.to_csv()))
    assert list(frame.index) == list(sp500_2015.index)


def test_day_first_dates_out_of_order_are_still_refused(tmp_path, sp500_2015):
    german = sp500_2015.iloc[[0, 2, 1, *range(3, len(sp500_2015))]].copy()
    german.index = german.index.strftime("%d.%m.%Y").rename("Date")
    with pytest.raises(DataError, match="not in ascending order") as info:
        load_csv(write_csv(tmp_path, german.to_csv()))
    one_line(info)


def test_rows_of_empty_cells_at_the_end_are_ignored(tmp_path, sp500_2015):
    text = sp500_2015.to_csv() + ",,,,,\n,,,,,\n"
    frame = load_csv(write_csv(tmp_path, text))
    assert len(frame) == len(sp500_2015) and frame.index[-1] == sp500_2015.index[-1]


@pytest.mark.parametrize(("magic", "what"), [(b"PK\x03\x04\x14\x00", "an Excel .xlsx (zip) file"),
                                             (b"\xd0\xcf\x11\xe0\xa1\xb1", "an Excel .xls file"),
                                             (b"PAR1\x15\x04", "a parquet file"), (b"\x1f\x8b\x08\x00", "a gzip archive")])
def test_spreadsheets_and_archives_are_named_not_called_bad_text(tmp_path, magic, what):
    path = tmp_path / "prices.csv"
    path.write_bytes(magic + bytes(range(256)))
    with pytest.raises(DataError, match="save or export it as CSV") as info:
        load_csv(path)
    assert what in one_line(info)
