"""Price loading: ``sample:``, ``csv:`` and ``fdr:`` sources -> one validated OHLCV frame.

Each source's raw rows go through ``backtest.frames.normalize_ohlcv``, as a DataFrame given to
``lstmbt.run(prices=...)`` does: the frame every later stage receives has a sorted, unique,
tz-naive ``DatetimeIndex`` named ``Date`` of daily bars and float columns ``Open High Low Close
Volume``; prices are > 0 and finite, volume >= 0, no NaN, High/Low bound Open/Close, and no
one-day move exceeds ``data.max_move`` (``backtest.datacheck`` holds these checks and the
non-refusing warnings). This module and the run saver are the only places that touch disk or network.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from lstmbt.backtest.config import DataConfig
from lstmbt.backtest.errors import DataError
from lstmbt.backtest.frames import (ADJ_NAMES, SYMBOL_NAMES, check_dates, iso_day, normalize_ohlcv, numeric_column,
                                    select_symbol, symbol_column, with_date_index)
from lstmbt.backtest.rundir import write_parquet

SAMPLES = ("sp500", "nasdaq")
FDR_ATTEMPTS = 4
FDR_BACKOFF_S = 1.0
FDR_FRESH_S = 12 * 3600
FDR_TIMEOUT_S = 30.0


def load_prices(cfg: DataConfig) -> pd.DataFrame:
    """Load, normalise, validate and trim prices as ``cfg`` describes.

    Raises ``DataError`` with a one-line fix for anything unusable, including the price sanity
    checks of ``backtest.datacheck`` (bar spacing, OHLC consistency, moves beyond ``cfg.max_move``).
    """
    scheme, _, rest = cfg.source.partition(":")
    if not rest:
        raise DataError(f"source {cfg.source!r} names nothing after '{scheme}:'; e.g. sample:sp500, "
                        "csv:prices.csv, fdr:005930")
    if scheme == "frame":
        raise DataError(f"source {cfg.source!r} names a DataFrame given to lstmbt.run(prices=...), which a run does "
                        "not keep; pass the frame again as prices=, or save it as CSV and use csv:PATH")
    if scheme == "list" or ("," in rest and not (scheme == "csv" and Path(rest).is_file())):
        one = "one of its tickers" if scheme == "list" else f"one, e.g. {scheme}:{rest.split(',')[0].strip()}"
        raise DataError(f"source {cfg.source!r} names several tickers, which only `lstmbt run` takes (as a "
                        f"universe); pass {one} here")
    if cfg.symbol is not None and scheme in ("sample", "fdr"):
        raise DataError(f"--symbol {cfg.symbol} does not apply to {cfg.source}, which holds one series; drop "
                        "--symbol (data.symbol), which picks a series from a CSV with a symbol column")
    if scheme == "sample":
        raw = _read_sample(rest)
    elif scheme == "csv":
        raw = _read_csv(Path(rest), cfg.symbol)
    elif scheme == "fdr":
        raw = read_fdr(rest, cfg.start, cfg.end, refresh=cfg.refresh)
    else:
        raise DataError(f"unknown source {cfg.source!r}; use sample:sp500, sample:nasdaq, csv:PATH or fdr:TICKER")
    return normalize_ohlcv(raw, label=cfg.source, max_move=cfg.max_move, start=cfg.start, end=cfg.end)


def describe_prices(prices: pd.DataFrame, source: str, symbol: str | None = None) -> dict[str, Any]:
    """Provenance for ``manifest.json``: source, first/last date, rows and a content hash."""
    # dates hashed at one resolution: pandas stores them as ns or us depending on where they came from
    # (CSV text, parquet, FinanceDataReader), and the same prices must give the same hash
    canonical = prices.set_axis(pd.DatetimeIndex(prices.index).as_unit("ns"))
    digest = hashlib.sha256(pd.util.hash_pandas_object(canonical, index=True).to_numpy().tobytes()).hexdigest()
    return {
        "source": source,
        "symbol": symbol,
        "first_date": prices.index[0].date().isoformat(),
        "last_date": prices.index[-1].date().isoformat(),
        "rows": int(len(prices)),
        "sha256": digest,
    }


def check_enough_rows(prices: pd.DataFrame, need: int, breakdown: str, label: str) -> None:
    """Fail early, naming what the rows are needed for, when the data cannot fill one test block."""
    if len(prices) < need:
        span = f"{prices.index[0].date()} to {prices.index[-1].date()}" if len(prices) else "no dates"
        raise DataError(f"{label} has {len(prices)} rows ({span}) but the run needs at least {need} "
                        f"({breakdown}); use a longer date range or lower split.min_train, split.step "
                        "or model.lookback")


# --------------------------------------------------------------------------- exogenous series

EXOG_BUFFER_DAYS = 31  # calendar days fetched before the first price date, so day one has an as-of value
EXOG_STALE_DAYS = 14  # a series whose last value is older than this at the last price date is refused
_VALUE_NAMES = (*ADJ_NAMES, "close", "value", "price")


def load_exog(source: str, start: str | None = None, end: str | None = None, refresh: bool = False) -> pd.Series:
    """One exogenous series: positive close-like values on sorted, unique dates, named ``source``.

    ``fdr:TICKER`` goes through the cached, retrying ``read_fdr`` (``start``/``end`` bound the
    download, ``refresh`` bypasses the cache); ``csv:PATH`` reads a date column and one value
    column: Adj Close, Close, Value or Price (case-insensitive), or the only other column. Empty
    values are days without an observation and are dropped (the as-of join carries the previous
    value forward); text, non-positive values and bad dates raise ``DataError``.
    """
    scheme, _, rest = source.partition(":")
    if scheme == "fdr" and rest:
        raw = read_fdr(rest, start, end, refresh=refresh)
    elif scheme == "csv" and rest:
        raw = _read_csv(Path(rest), None)
    else:
        raise DataError(f"exogenous source {source!r} is not fdr:TICKER or csv:PATH; "
                        "e.g. fdr:USD/KRW, fdr:VIX or csv:vix.csv")
    frame = with_date_index(raw, source)
    check_dates(frame.index, source)
    column = _value_column(frame, source)
    values = numeric_column(frame[column], str(column), source).dropna()
    if values.empty:
        raise DataError(f"{source}: column {column} holds no values; give it one number per date")
    if (values <= 0).any():
        when = values.index[(values <= 0).to_numpy()][0]
        raise DataError(f"{source}: column {column} has a non-positive value ({values[when]!r} on {iso_day(when)}); "
                        "returns need values > 0, fix or drop that row")
    return values.rename(source).rename_axis("Date")


def _value_column(frame: pd.DataFrame, label: str) -> Any:
    lookup = {str(c).strip().lower(): c for c in frame.columns}
    key = next((k for k in _VALUE_NAMES if k in lookup), None)
    if key is not None:
        return lookup[key]
    if frame.shape[1] == 1:
        return frame.columns[0]
    found = ", ".join(str(c) for c in frame.columns) or "none"
    raise DataError(f"{label} has no value column (found: {found}); name it Close or Value, "
                    "or keep only the date and one value column")


def load_exogs(cfg: DataConfig, dates: pd.DatetimeIndex) -> dict[str, pd.Series]:
    """Every ``cfg.exog`` series by source, each checked to cover the price ``dates``.

    FinanceDataReader series are fetched from ``EXOG_BUFFER_DAYS`` (plus the lag) calendar days
    before the first price date, so the first price day already has an as-of value.
    """
    lag = cfg.exog_lag_days
    first = (dates[0] - pd.Timedelta(days=EXOG_BUFFER_DAYS + lag)).date().isoformat()
    out = {}
    for source in cfg.exog:
        out[source] = load_exog(source, first, cfg.end, refresh=cfg.refresh)
        check_exog_coverage(out[source], dates, lag)
    return out


def check_exog_coverage(values: pd.Series, dates: pd.DatetimeIndex, lag_days: int = 0) -> None:
    """Refuse a series that starts after the first price date (so the warm-up would silently grow)
    or ends more than ``EXOG_STALE_DAYS`` before the last one (its last value would pass for current)."""
    usable = values.index[0] + pd.Timedelta(days=lag_days)
    if usable > dates[0]:
        lagged = f" (usable from {iso_day(usable)} with data.exog_lag_days = {lag_days})" if lag_days else ""
        raise DataError(f"{values.name} starts on {iso_day(values.index[0])}{lagged}, after the prices start on "
                        f"{iso_day(dates[0])}; pass --start {iso_day(usable)} or later, or give the series a longer "
                        "history")
    stale = (dates[-1] - values.index[-1]).days
    if stale > EXOG_STALE_DAYS:
        raise DataError(f"{values.name} ends on {iso_day(values.index[-1])}, {stale} days before the prices end on "
                        f"{iso_day(dates[-1])}; pass --end {iso_day(values.index[-1])} or extend the series")


def _read_sample(name: str) -> pd.DataFrame:
    if name not in SAMPLES:
        raise DataError(f"unknown sample {name!r}; use one of: {', '.join('sample:' + s for s in SAMPLES)}")
    if name == "sp500":
        from arch.data import sp500 as module
    else:
        from arch.data import nasdaq as module
    return module.load()


def _read_csv(path: Path, symbol: str | None) -> pd.DataFrame:
    label = f"csv:{path}"
    frame, symbol_col = read_csv_frame(path)
    return select_symbol(frame, symbol_col, symbol, label)


def read_csv_frame(path: Path) -> tuple[pd.DataFrame, Any]:
    """The raw rows of a CSV price file and its symbol column (None for a single-series file).

    Symbols are read as text; a missing, empty, non-UTF-8 or unparsable file raises DataError.
    """
    label = f"csv:{path}"
    if not path.is_file():
        raise DataError(f"{label}: file not found; check the path (relative paths start at {Path.cwd()})")
    sep = _delimiter(path, label)
    try:
        header = pd.read_csv(path, nrows=0, sep=sep).columns
        # symbols as text: KRX codes such as 005930 would otherwise become the integer 5930
        frame = pd.read_csv(path, sep=sep, dtype={c: str for c in header if str(c).strip().lower() in SYMBOL_NAMES})
    except pd.errors.EmptyDataError:
        raise DataError(f"{label} is empty; it needs a header row and one row per date") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{label} is not UTF-8 text (byte {exc.object[exc.start]:#x} at offset {exc.start}); "
                        "re-save it as UTF-8, e.g. iconv -f cp949 -t utf-8 for a euc-kr/cp949 export") from None
    except pd.errors.ParserError as exc:
        first = str(exc).strip().splitlines()[0]
        raise DataError(f"{label} cannot be parsed as CSV ({first}); check the delimiter and quoting") from None
    frame = frame.dropna(how="all")  # rows of empty cells (",,,,," that spreadsheets append)
    return frame, symbol_column(frame)


#: leading bytes of files that are not text: (magic, what the file is)
_BINARY_FORMATS = ((b"PK\x03\x04", "an Excel .xlsx (zip) file"), (b"\xd0\xcf\x11\xe0", "an Excel .xls file"),
                   (b"PAR1", "a parquet file"), (b"\x1f\x8b", "a gzip archive"))


def _delimiter(path: Path, label: str) -> str:
    """The field separator of a CSV: ``,`` unless the header holds none but ``;``, a tab or ``|``
    (European and tab-separated exports). Spreadsheets and archives are refused by name."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    for magic, what in _BINARY_FORMATS:
        if head.startswith(magic):
            raise DataError(f"{label} is {what}, not CSV text; save or export it as CSV (UTF-8)")
    first = head.split(b"\n", 1)[0]
    if b"," in first:
        return ","
    return next((sep for sep in (";", "\t", "|") if sep.encode() in first), ",")


def fdr_cache_dir() -> Path:
    """Where FinanceDataReader downloads are cached: ``$LSTMBT_CACHE_DIR`` or the user cache dir."""
    env = os.environ.get("LSTMBT_CACHE_DIR")
    if env:
        return Path(env) / "fdr"
    import platformdirs

    return Path(platformdirs.user_cache_dir("lstmbt")) / "fdr"


def _fdr_datareader() -> Callable[..., pd.DataFrame]:
    import FinanceDataReader as fdr

    return fdr.DataReader


def read_fdr(ticker: str, start: str | None, end: str | None, refresh: bool = False) -> pd.DataFrame:
    """Daily OHLCV from FinanceDataReader, cached as parquet; ``refresh`` bypasses the cache.

    A cache entry whose ``end`` lies in the past never goes stale; one that reaches today is
    refetched after 12 hours. Network errors are retried with exponential backoff.
    """
    cache = fdr_cache_dir() / f"{_safe_name(ticker)}_{start or 'first'}_{end or 'latest'}.parquet"
    if not refresh and _cache_fresh(cache, end):
        cached = _read_cache(cache)
        if cached is not None:
            return cached
    frame = _fetch_fdr(ticker, start, end)
    write_parquet(cache, frame, index=None)
    return frame


def _safe_name(ticker: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", ticker)


def _read_cache(cache: Path) -> pd.DataFrame | None:
    """A cached download, or None (the entry removed) when it is unreadable or empty: a truncated
    or garbage file is a cache miss to download again, never a traceback."""
    try:
        frame = pd.read_parquet(cache)
    except Exception:  # noqa: BLE001 - pyarrow raises several types for a damaged file; all mean "miss"
        frame = None
    if frame is None or frame.empty:
        cache.unlink(missing_ok=True)
        return None
    return frame


def _cache_fresh(cache: Path, end: str | None) -> bool:
    if not cache.is_file():
        return False
    if end is not None and dt.date.fromisoformat(end) < dt.date.today():
        return True
    return time.time() - cache.stat().st_mtime < FDR_FRESH_S


def _fetch_fdr(ticker: str, start: str | None, end: str | None) -> pd.DataFrame:
    label = f"fdr:{ticker}"
    reader = _fdr_datareader()
    last_error: Exception | None = None
    for attempt in range(FDR_ATTEMPTS):
        if attempt:
            time.sleep(FDR_BACKOFF_S * 2 ** (attempt - 1))
        try:
            # FDR prints instead of raising, and calls requests without a timeout.
            with contextlib.redirect_stdout(io.StringIO()), _socket_timeout(FDR_TIMEOUT_S):
                frame = reader(ticker, start, end)
        except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
            if not _is_transient(exc):
                raise DataError(f"{label}: FinanceDataReader could not read this ticker ({_brief(exc)}); "
                                "check the code, e.g. 005930 (KRX), AAPL (US), KS11 (index)") from None
            last_error = exc
            continue
        if frame is None or len(frame) == 0:
            raise DataError(f"{label}: FinanceDataReader returned no rows for {start or 'all dates'} to "
                            f"{end or 'today'}; check the ticker and the date range")
        return frame
    raise DataError(f"{label}: could not reach FinanceDataReader's source after {FDR_ATTEMPTS} attempts "
                    f"({_brief(last_error)}); check the network, or save the data and use --source csv:PATH")


def _is_transient(exc: Exception) -> bool:
    """Network trouble worth a retry, as opposed to a ticker the source does not know."""
    import socket
    import urllib.error

    import requests

    if isinstance(exc, requests.exceptions.HTTPError):
        status = getattr(exc.response, "status_code", None)
        return status is None or status == 429 or status >= 500
    if isinstance(exc, urllib.error.HTTPError):  # some FDR sources read through pandas/urllib
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                            requests.exceptions.ChunkedEncodingError, urllib.error.URLError, socket.gaierror,
                            ConnectionError, TimeoutError))


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """Make a stalled connection fail (and be retried) instead of hanging forever."""
    import socket

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _brief(exc: Exception | None) -> str:
    if exc is None:
        return "no error recorded"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(text) > 150:
        text = text[:147].rstrip() + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
