"""One price frame, normalised and checked: what every source hands a run.

``normalize_ohlcv`` takes the raw rows of any source (a CSV file's rows, an embedded sample, a
FinanceDataReader download, or a DataFrame given to ``lstmbt.run(prices=...)``) and returns the
frame every later stage receives: a sorted, unique, tz-naive ``DatetimeIndex`` named ``Date`` of
daily bars and float columns ``Open High Low Close Volume``, with ``Adj Close`` applied, prices
> 0 and finite, volume >= 0, no NaN, High/Low bounding Open/Close, and no one-day move beyond
``data.max_move`` (``backtest.datacheck`` holds those checks). ``frame_prices`` is the Python
door: it reads what a DataFrame can hold and a CSV cannot (a Series, two levels of column names,
dates in the index) into the rows a CSV would give, then goes through the same function, so both
doors refuse, warn and accept alike, with the same lines.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np
import pandas as pd

from lstmbt.backtest.config import DataConfig
from lstmbt.backtest.datacheck import check_daily_bars, check_finite, check_moves, check_values
from lstmbt.backtest.errors import DataError

OHLCV = ("Open", "High", "Low", "Close", "Volume")
DATE_NAMES = ("date", "datetime", "timestamp", "time", "day")
SYMBOL_NAMES = ("symbol", "ticker", "code")
ADJ_NAMES = ("adj close", "adj_close", "adjclose", "adjusted close", "adjusted_close")


# --------------------------------------------------------------------------- the Python door


def frame_prices(prices: Any, cfg: DataConfig) -> pd.DataFrame:
    """A DataFrame given in Python, normalised and checked as the rows of a ``csv:`` file are,
    its messages naming ``cfg.label``.

    Dates are a ``DatetimeIndex`` or a date column; a named index (``Date`` kept as text, or
    ``(symbol, date)`` of a long frame) is read as the CSV's first columns would be. A one-ticker
    frame with two levels of column names, yfinance's ``('Close', 'SPY')``, is read as that
    ticker's columns. A Series, another type, several tickers' columns or more levels raise
    ``DataError``; a symbol column is picked by ``cfg.symbol`` as in a long CSV.
    """
    label = cfg.label
    raw = _one_level(_as_frame(prices), label)
    if not isinstance(raw.index, pd.DatetimeIndex) and any(name is not None for name in raw.index.names):
        clash = any(name in raw.columns for name in raw.index.names)
        raw = raw.reset_index(drop=clash)  # as to_csv writes it: the index becomes the first column(s)
    raw = select_symbol(raw, symbol_column(raw), cfg.symbol, label)
    return normalize_ohlcv(raw, label=label, max_move=cfg.max_move, start=cfg.start, end=cfg.end)


def _as_frame(prices: Any) -> pd.DataFrame:
    """``prices`` when it is a DataFrame; anything else is refused with the shape it needs."""
    need = "a DataFrame with Open, High, Low, Close and Volume columns (names are case-insensitive)"
    if isinstance(prices, pd.Series):
        name = "unnamed" if prices.name is None else repr(str(prices.name)[:40])
        raise DataError(f"prices= is a pandas Series ({name}), not a frame of daily bars; pass {need}")
    if not isinstance(prices, pd.DataFrame):
        raise DataError(f"prices= is a {type(prices).__name__}, not a pandas DataFrame; pass {need}")
    return prices


def _one_level(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """``frame`` with one level of column names: of yfinance's (field, ticker) pairs for one
    ticker, the field; several tickers or another layout are refused, naming the fix."""
    columns = frame.columns
    if columns.nlevels == 1:
        return frame
    fields = [i for i in range(columns.nlevels)
              if "close" in {str(v).strip().lower() for v in columns.get_level_values(i)}]
    if columns.nlevels != 2 or len(fields) != 1:
        raise DataError(f"{label} has {columns.nlevels} levels of column names (first {columns[0]!r}); pass "
                        "one level: Open, High, Low, Close and Volume")
    other = 1 - fields[0]
    tickers = list(dict.fromkeys(columns.get_level_values(other)))
    if len(tickers) == 1:
        return frame.droplevel(other, axis=1)
    shown = ", ".join(str(t) for t in tickers[:8]) + (", ..." if len(tickers) > 8 else "")
    level = columns.names[other] if columns.names[other] is not None else other
    raise DataError(f"{label} holds the columns of {len(tickers)} tickers ({shown}); pass one ticker's, e.g. "
                    f"prices.xs({tickers[0]!r}, axis=1, level={level!r})")


# --------------------------------------------------------------------------- symbols


def symbol_column(frame: pd.DataFrame) -> Any:
    """The symbol column of a long frame (``symbol``, ``ticker`` or ``code``, any case), else None."""
    return next((c for c in frame.columns if str(c).strip().lower() in SYMBOL_NAMES), None)


def select_symbol(frame: pd.DataFrame, column: Any, symbol: str | None, label: str) -> pd.DataFrame:
    """``frame`` itself when it has no symbol ``column``; else the rows of ``symbol`` (or of the
    only symbol there is) without that column. A symbol that is not there, or several without
    one named, raise ``DataError``."""
    if column is None:
        if symbol is not None:
            raise DataError(f"{label} has no symbol column but --symbol {symbol} was given; "
                            "drop --symbol for a single-series file, or add a 'symbol' column")
        return frame
    names = frame[column].astype(str).str.strip()
    available = sorted(names.unique())
    shown = ", ".join(available[:8]) + (", ..." if len(available) > 8 else "")
    if symbol is None:
        if len(available) != 1:
            raise DataError(f"{label} holds {len(available)} symbols ({shown}); pick one with --symbol SYM "
                            "(`lstmbt run` without --symbol runs them all as a universe)")
        symbol = available[0]
    picked = frame[names == str(symbol)]
    if picked.empty:
        matches = [a for a in available if a.lower() == str(symbol).lower()]
        hint = f" (did you mean {matches[0]}?)" if matches else ""
        raise DataError(f"{label} has no rows for symbol {symbol!r}{hint}; available: {shown}")
    return picked.drop(columns=[column])


# --------------------------------------------------------------------------- normalisation


def normalize_ohlcv(raw: pd.DataFrame, label: str, max_move: float | None = None,
                    start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """The checked OHLCV frame of a source's raw rows, its messages naming ``label``.

    Columns are matched case-insensitively onto OHLCV (two columns for one name are refused);
    rows are trimmed to ``start``..``end``, validated, ``Adj Close`` is applied, and one-day moves
    beyond ``max_move`` (default ``DataConfig.max_move``) are refused. Only the kept dates are
    validated, so --start/--end can leave a bad stretch out; moves are checked on adjusted closes,
    so a split that ``Adj Close`` accounts for passes.
    """
    frame = with_date_index(raw, label)
    if start or end:
        check_dates(frame.index, label)  # sorted and unique before slicing by date
        frame = trim_dates(frame, start, end, label)
    lookup = _price_columns(frame, label)
    out = pd.DataFrame({name: numeric_column(frame[lookup[name.lower()]], name, label) for name in OHLCV})
    out.index.name = "Date"
    _validate(out, label)  # before adjusting, so a message names the column that is really wrong
    adj_key = next((k for k in ADJ_NAMES if k in lookup), None)
    if adj_key is not None:
        out = _adjusted(out, numeric_column(frame[lookup[adj_key]], "Adj Close", label), label)
    check_moves(out["Close"], label, DataConfig.max_move if max_move is None else max_move)
    return out


def _price_columns(frame: pd.DataFrame, label: str) -> dict[str, Any]:
    """``{lower-case name: column}`` of ``frame``; missing OHLCV columns, or two columns a price or
    date name could mean (``Close`` and ``close``), are refused."""
    lookup: dict[str, Any] = {}
    for column in frame.columns:
        key = str(column).strip().lower()
        if key in lookup and key in (*(name.lower() for name in OHLCV), *ADJ_NAMES):
            raise DataError(f"{label} has two {key} columns ({lookup[key]!r} and {column!r}; names are "
                            "case-insensitive); keep one of them")
        lookup.setdefault(key, column)
    missing = [name for name in OHLCV if name.lower() not in lookup]
    if missing:
        found = ", ".join(str(c) for c in frame.columns) or "none"
        raise DataError(f"{label} is missing column(s) {', '.join(missing)} (found: {found}); "
                        "provide Open, High, Low, Close and Volume (names are case-insensitive)")
    return lookup


def _adjusted(prices: pd.DataFrame, adj: pd.Series, label: str) -> pd.DataFrame:
    """``prices`` with Open, High and Low scaled by ``adj`` / Close, and ``adj`` as the Close."""
    if adj.isna().any() or (adj <= 0).any():
        raise DataError(f"{label}: Adj Close has {int((adj.isna() | (adj <= 0)).sum())} missing or non-positive "
                        "value(s); fix them, or drop the Adj Close column to use unadjusted prices")
    factor = adj / prices["Close"]
    out = prices.copy()
    for name in ("Open", "High", "Low"):
        out[name] = out[name] * factor
    out["Close"] = adj
    return out


def with_date_index(raw: pd.DataFrame, label: str) -> pd.DataFrame:
    """``raw`` on a tz-naive ``DatetimeIndex``: its own, or its date column parsed (ISO, day-first,
    ``YYYYMMDD`` numbers, UTC offsets read as the local date). No rows, no date column, a value
    that is not a date, a missing date or mixed date formats raise ``DataError``."""
    if not isinstance(raw, pd.DataFrame) or raw.shape[1] == 0 or raw.empty:
        raise DataError(f"{label} holds no rows; check that the file or ticker has price data")
    frame = raw
    if not isinstance(frame.index, pd.DatetimeIndex):
        date_col = next((c for c in frame.columns if str(c).strip().lower() in DATE_NAMES), None)
        if date_col is None:
            raise DataError(f"{label} has no date column; name one column 'Date' holding dates like 2020-01-31")
        stamps = _strip_utc_offsets(frame[date_col])
        parsed = _prefer_day_first(stamps, _parse_dates(stamps))
        _check_one_date_format(stamps, parsed, label)
        bad = parsed.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{label}: column {date_col!r} has a value that is not a date "
                            f"({frame[date_col].iloc[row]!r} in data row {row + 1}); fix or remove that row")
        frame = frame.drop(columns=[date_col]).set_index(pd.DatetimeIndex(parsed))
    if frame.index.hasnans:
        row = int(np.flatnonzero(frame.index.isna())[0])
        raise DataError(f"{label}: the date index has {int(frame.index.isna().sum())} missing date(s) (NaT), first in "
                        f"data row {row + 1}; fix or remove those rows")
    if frame.index.tz is not None:
        frame = frame.tz_localize(None)
    return frame


def _prefer_day_first(stamps: pd.Series, parsed: pd.Series) -> pd.Series:
    """Day-first text dates (13.01.2015, European exports) when only that reading gives one
    ascending row per date; read month-first they would look unsorted or not be dates at all."""
    if pd.api.types.is_numeric_dtype(stamps) or (parsed.notna().all() and parsed.is_monotonic_increasing):
        return parsed
    if pd.to_datetime(stamps, errors="coerce", format="ISO8601").notna().all():
        return parsed  # ISO dates are never day-first: a real ordering problem, reported later
    day_first = pd.to_datetime(stamps, errors="coerce", format="mixed", dayfirst=True)
    ordered = day_first.notna().all() and day_first.is_monotonic_increasing and not day_first.duplicated().any()
    return day_first if ordered else parsed


# a time of day followed by a UTC offset ("00:00:00-05:00", "00:00+0900", "00:00:00Z")
_UTC_OFFSET = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d*)?)?)\s*(?:Z|[+-]\d{2}(?::?\d{2})?)\s*$")


def _strip_utc_offsets(column: pd.Series) -> pd.Series:
    """Text stamps with UTC offsets as their local wall-clock time: an exchange stamps a bar with
    its own date, and converting to UTC would move a +09:00 midnight bar to the previous day
    (mixed offsets across DST, -05:00 and -04:00, would not parse at all)."""
    if pd.api.types.is_numeric_dtype(column):
        return column
    return column.map(lambda v: _UTC_OFFSET.sub(r"\1", v) if isinstance(v, str) else v)


def _check_one_date_format(column: pd.Series, parsed: pd.Series, label: str) -> None:
    """Refuse a text date column mixing ISO dates with other formats: 08/01/2015 next to
    2015-01-07 could be January or August, and either guess would silently reorder the data."""
    if pd.api.types.is_numeric_dtype(column):
        return
    iso = pd.to_datetime(column, errors="coerce", format="ISO8601")
    odd = iso.isna() & parsed.notna()
    if iso.notna().any() and odd.any():
        row = int(np.flatnonzero(odd.to_numpy())[0])
        raise DataError(f"{label}: dates mix formats ({column.iloc[row]!r} in data row {row + 1} next to ISO dates "
                        f"like {column[iso.notna()].iloc[0]!r}); write every date as YYYY-MM-DD")


def _parse_dates(column: pd.Series) -> pd.Series:
    """Parse a date column; NaT marks a value that is not a date.

    Integer dates are read as ``YYYYMMDD`` (common in KRX exports): pandas would otherwise take
    ``20200131`` for nanoseconds since 1970 and every row would silently land on 1970-01-01.
    """
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        text = column.astype(str).str.replace(r"\.0$", "", regex=True)
        return pd.to_datetime(text, errors="coerce", format="%Y%m%d")
    return pd.to_datetime(column, errors="coerce", format="mixed")


def numeric_column(column: pd.Series, name: str, label: str) -> pd.Series:
    """``column`` as float64 (NaN where empty); text, thousands separators and non-finite values
    raise ``DataError`` naming the column, the value and its date."""
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        pos = int(np.flatnonzero(bad.to_numpy())[0])
        # positional: with duplicate dates (checked later) ``.loc`` would return a multi-line Series
        where = column.index[pos]
        raise DataError(f"{label}: column {name} is not numeric ({column.iloc[pos]!r} on {iso_day(where)}); "
                        "remove text, thousands separators or currency signs from that column")
    # nullable and Arrow dtypes hold pd.NA, which plain float64 cannot: it becomes NaN (a missing value)
    values = pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=column.index)
    check_finite(column, values, name, label)
    return values


def _validate(prices: pd.DataFrame, label: str) -> None:
    check_dates(prices.index, label)
    check_daily_bars(prices.index, label)
    check_values(prices, label)  # on the prices as given: an adjustment would blur which value is wrong


def check_dates(index: pd.DatetimeIndex, label: str) -> None:
    """Dates oldest first, one row per date."""
    if not index.is_monotonic_increasing:
        pos = int(np.flatnonzero(np.diff(index.asi8) < 0)[0])
        raise DataError(f"{label}: dates are not in ascending order ({iso_day(index[pos + 1])} comes after "
                        f"{iso_day(index[pos])}); sort the rows by date, oldest first")
    dupes = index[index.duplicated()]
    if len(dupes):
        raise DataError(f"{label}: {len(dupes)} duplicate date(s), first {iso_day(dupes[0])}; "
                        "keep exactly one row per date")


def iso_day(stamp: Any) -> str:
    """A date as YYYY-MM-DD (anything else as its text), for messages."""
    return pd.Timestamp(stamp).date().isoformat() if isinstance(stamp, (pd.Timestamp, dt.date)) else str(stamp)


def trim_dates(prices: pd.DataFrame, start: str | None, end: str | None, label: str) -> pd.DataFrame:
    """Keep rows with ``start <= date <= end`` (inclusive, either may be None)."""
    if not (start or end):
        return prices
    days = prices.index.normalize()  # compared by day: slicing by text would overflow near 2262-04-11
    keep = np.ones(len(prices), dtype=bool)
    if start:
        keep &= days >= pd.Timestamp(start)
    if end:
        keep &= days <= pd.Timestamp(end)
    out = prices[keep]
    if out.empty:
        raise DataError(f"{label} has no rows between {start or 'the start'} and {end or 'the end'}; "
                        f"it covers {prices.index[0].date()} to {prices.index[-1].date()}")
    return out

