"""Price sanity before any training: bar spacing, non-finite values, OHLC consistency, one-day
moves, stale closes, opens copied from the previous close and locale-formatted volume.

Two kinds of finding. What would make every number of a run wrong (weekly bars annualised as
daily, an unadjusted split, a bad tick, High below Low) raises ``DataError``, one line naming the
date, the values and the fix; ``backtest.data`` calls these checks while it normalises every
source (``sample:``, ``csv:``, ``fdr:`` and each ticker of a universe). What leaves the data
usable but suspect is a plain-text warning from ``data_warnings``, which the run shows on the
console and keeps in ``manifest.json``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lstmbt.backtest import annualise
from lstmbt.backtest.annualise import EXCHANGE_PERIODS, WEEKEND_BARS_PER_YEAR
from lstmbt.backtest.config import DataConfig
from lstmbt.backtest.errors import DataError

#: bars a year of an exchange's daily series, which the annualised figures assume on any calendar
#: without weekend trading (``backtest.annualise``)
BARS_PER_YEAR = EXCHANGE_PERIODS
#: longest calendar-day gap between two bars before a series is refused (market closures are shorter)
MAX_GAP_DAYS = 60
#: median calendar-day gap above which bars are not daily: a daily series' median is 1 (3 over a
#: weekend, 4-10 over the longest exchange holidays, all rare); weekly bars' is 7, monthly ~30
MAX_DAILY_MEDIAN_GAP_DAYS = 4
#: bars a year below which a daily series misses many days (returns then span several days)
SPARSE_BARS_PER_YEAR = 200
#: fewest bars from which the bars-a-year figure is estimated (fewer: too noisy to warn about)
MIN_BARS_FOR_RATE = 40
#: relative slack for High >= max(Open, Close) >= min(Open, Close) >= Low: vendors round adjusted
#: prices to cents, up to 0.5% of a $2 price; neither embedded sample breaks the rule at all
OHLC_TOLERANCE = 0.005
#: share of out-of-sample fill bars opening exactly at the previous close above which a run warns
#: (S&P 500 sample: 96% in 1999-2005, 29% of the --quick run, 7% of the default run; NASDAQ 0.2%)
OPEN_AT_CLOSE_SHARE = 0.05
#: close ratios read as unadjusted splits: (new shares, old shares), e.g. 10:1 -> the close / 10
SPLITS = ((3, 2), (2, 1), (3, 1), (4, 1), (5, 1), (8, 1), (10, 1), (20, 1), (25, 1), (50, 1), (100, 1))
#: how close (relative) a close ratio must be to a split's to be named as one
SPLIT_MATCH = 0.05
#: how many times the median whole Volume must exceed the median fractional one before the two
#: read as one column in two formats (907 shares beside 1.058 read from "1.058" = 1058 shares)
LOCALE_VOLUME_RATIO = 10
#: relative tolerance for "equal" prices: float noise of an Adj Close adjustment, not a tick
_SAME = 1e-9


# --------------------------------------------------------------------------- refusals


def check_daily_bars(index: pd.DatetimeIndex, label: str) -> None:
    """Daily bars without multi-month holes, else ``DataError``.

    Intraday stamps, bars a week or more apart (by the median calendar-day gap) and any gap over
    ``MAX_GAP_DAYS`` are refused: each would break the 252-bars-a-year annualisation or turn one
    "daily" return into a return over weeks.
    """
    timed = index != index.normalize()
    if timed.any():
        raise DataError(f"{label} has intraday timestamps (first {index[timed][0]}); lstmbt works on daily bars: "
                        "resample to one row per day (last close, summed volume) first")
    if len(index) < 2:
        return
    gaps = np.diff(index.values.astype("datetime64[D]").astype(np.int64))
    median = float(np.median(gaps))
    if median > MAX_DAILY_MEDIAN_GAP_DAYS:
        raise DataError(f"{label}: bars are about {median:g} calendar days apart ({_spacing_name(median)}), from "
                        f"{_day(index[0])} to {_day(index[-1])}; lstmbt needs daily bars (annualisation uses "
                        f"{BARS_PER_YEAR} bars a year): load daily prices of the same instrument")
    if gaps.max() > MAX_GAP_DAYS:
        pos = int(np.argmax(gaps))
        raise DataError(f"{label} has a gap of {int(gaps[pos])} days between {_day(index[pos])} and "
                        f"{_day(index[pos + 1])}; use --start/--end to keep one unbroken stretch")


def check_finite(raw: pd.Series, values: pd.Series, name: str, label: str) -> None:
    """Refuse ``inf``/``-inf`` in a numeric column (``1e400`` in a CSV overflows to ``inf``).

    ``raw``: the column as read (named in the message); ``values``: it as float64, same index.
    """
    bad = np.isinf(values.to_numpy(dtype=np.float64))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        shown = raw.iloc[pos] if isinstance(raw.iloc[pos], str) else _num(values.iloc[pos])
        raise DataError(f"{label}: column {name} has {int(bad.sum())} non-finite value(s), first {shown!r} "
                        f"on {_day(raw.index[pos])}; fix that value (a number such as 1e400 overflows to inf) "
                        "or drop the row")


def check_values(prices: pd.DataFrame, label: str) -> None:
    """Refuse missing values, prices <= 0, negative volume, and OHLC rows that contradict themselves."""
    for name in ("Open", "High", "Low", "Close", "Volume"):
        missing = prices[name].isna()
        if missing.any():
            raise DataError(f"{label}: {name} has {int(missing.sum())} missing value(s), first on "
                            f"{_day(prices.index[missing.to_numpy()][0])}; fill or drop those rows")
    for name in ("Open", "High", "Low", "Close"):
        bad = prices[name] <= 0
        if bad.any():
            when = prices.index[bad.to_numpy()][0]
            raise DataError(f"{label}: {name} has non-positive price(s), first {float(prices[name][when]):g} on "
                            f"{_day(when)}; prices must be > 0, fix or drop those rows")
    if (prices["Volume"] < 0).any():
        when = prices.index[(prices["Volume"] < 0).to_numpy()][0]
        raise DataError(f"{label}: Volume is negative on {_day(when)}; volume must be >= 0")
    check_ohlc(prices, label)


def check_ohlc(prices: pd.DataFrame, label: str, tolerance: float = OHLC_TOLERANCE) -> None:
    """Refuse rows breaking High >= max(Open, Close), Low <= min(Open, Close), High >= Low by more
    than ``tolerance`` (a fraction of the price): a swapped column or a bad tick, never rounding."""
    o, h, lo, c = (prices[name].to_numpy(dtype=np.float64) for name in ("Open", "High", "Low", "Close"))
    rules = (("High is below Low", (lo - h) / h, "are the High and Low columns swapped? fix or drop those rows"),
             ("Close is above High", (c - h) / h, "a bad tick? fix or drop those rows"),
             ("Open is above High", (o - h) / h, "fix or drop those rows"),
             ("Close is below Low", (lo - c) / c, "a bad tick? fix or drop those rows"),
             ("Open is below Low", (lo - o) / o, "fix or drop those rows"))
    broken = np.zeros(len(prices), dtype=bool)
    for _, excess, _ in rules:
        broken |= excess > tolerance
    if not broken.any():
        return
    pos = int(np.flatnonzero(broken)[0])
    what, _, fix = next(rule for rule in rules if rule[1][pos] > tolerance)
    raise DataError(f"{label}: {what} on {_day(prices.index[pos])} (Open {_num(o[pos])}, High {_num(h[pos])}, "
                    f"Low {_num(lo[pos])}, Close {_num(c[pos])}); {int(broken.sum())} row(s) break "
                    f"High >= Open, Close >= Low by more than the {tolerance:.1%} rounding tolerance; {fix}")


def check_moves(close: pd.Series, label: str, max_move: float) -> None:
    """Refuse a one-day close-to-close move beyond ``max_move`` (a fraction, either direction),
    naming the date, the move, whether it looks like an unadjusted split or a bad tick, and the fix."""
    values = close.to_numpy(dtype=np.float64)
    ratio = values[1:] / values[:-1]
    big = np.abs(ratio - 1.0) > max_move
    if not big.any():
        return
    pos = int(np.flatnonzero(big)[0])
    raise DataError(f"{label}: Close moves {ratio[pos] - 1:+.1%} in one day on {_day(close.index[pos + 1])} "
                    f"({_num(values[pos])} to {_num(values[pos + 1])}; {int(big.sum())} move(s) beyond "
                    f"+-{max_move:.0%}){_move_hint(ratio, pos, close.index)}; use adjusted prices (an Adj Close "
                    f"column), fix the row, or raise data.max_move (now {max_move:g}) if the move is real")


def _move_hint(ratio: np.ndarray, pos: int, index: pd.DatetimeIndex) -> str:
    """", looks like ..." for a move the next day undoes (a bad tick) or one at a split ratio."""
    step = math.log(ratio[pos])
    if pos + 1 < len(ratio) and abs(step + math.log(ratio[pos + 1])) < 0.2 * abs(step):
        return f", looks like a bad tick: the next close (on {_day(index[pos + 2])}) undoes it"
    factor = 1 / ratio[pos] if ratio[pos] < 1 else ratio[pos]
    for new, old in SPLITS:
        if abs(factor / (new / old) - 1) < SPLIT_MATCH:
            return (f", looks like an unadjusted {new}:{old} split" if ratio[pos] < 1
                    else f", looks like an unadjusted {old}:{new} reverse split")
    return ""


# --------------------------------------------------------------------------- warnings


def data_warnings(prices: pd.DataFrame, data_cfg: DataConfig, oos_dates: pd.DatetimeIndex | None = None,
                  execution: str = "next_open") -> list[str]:
    """Findings that leave ``prices`` usable but suspect, one line each (empty when none).

    Always: far fewer bars a year than a daily exchange's 252 (many missing days),
    stale closes (``data_cfg.max_stale_bars``) and a Volume written with '.' as a thousands
    separator. With ``oos_dates`` (the out-of-sample bars on which positions are filled) and
    ``execution == "next_open"``: the share of those bars whose Open equals the previous Close,
    when above ``OPEN_AT_CLOSE_SHARE``.
    """
    label = f"{data_cfg.label} symbol {data_cfg.symbol}" if data_cfg.symbol else data_cfg.label  # as refusals do
    found = [spacing_warning(prices.index, label), stale_warning(prices["Close"], label, data_cfg.max_stale_bars),
             volume_format_warning(prices["Volume"], label)]
    if oos_dates is not None and execution == "next_open":
        found.append(open_at_close_warning(prices, oos_dates, label))
    return [line for line in found if line]


def bars_per_year(index: pd.DatetimeIndex) -> float | None:
    """``annualise.bars_per_year`` of ``index``; None below ``MIN_BARS_FOR_RATE``."""
    return annualise.bars_per_year(index) if len(index) >= MIN_BARS_FOR_RATE else None


def spacing_warning(index: pd.DatetimeIndex, label: str) -> str | None:
    """A warning when a daily series has far fewer bars a year than 252 (missing days). A 7-day
    calendar (weekend trading, more than ``WEEKEND_BARS_PER_YEAR`` bars a year) is not suspect: a
    run annualises it with 365 (``backtest.annualise.run_periods``) and its notes say so."""
    rate = bars_per_year(index)
    if rate is None or rate >= SPARSE_BARS_PER_YEAR:
        return None
    factor = math.sqrt(BARS_PER_YEAR / rate)
    effect = (f"annualised figures assume {BARS_PER_YEAR} bars a year, so Sharpe, Sortino and volatility come out "
              f"{factor:.2f}x their true values")
    return (f"{label}: only about {rate:.0f} bars a year from {_day(index[0])} to {_day(index[-1])}, where a daily "
            f"series has about {BARS_PER_YEAR}: many days are missing, each return spans several days and {effect}; "
            "use a complete daily source, or trim to a complete stretch with --start/--end")


def stale_runs(close: pd.Series, min_bars: int) -> list[tuple[pd.Timestamp, pd.Timestamp, int]]:
    """Stretches of ``min_bars`` or more consecutive bars with the same Close: (first, last, bars)."""
    values = close.to_numpy(dtype=np.float64)
    same = np.isclose(values[1:], values[:-1], rtol=_SAME, atol=0.0)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], same.astype(np.int8), [0]))))
    starts, ends = edges[::2], edges[1::2]  # same[s:e] all True: bars s..e carry one close
    return [(close.index[s], close.index[e], int(e - s + 1)) for s, e in zip(starts, ends) if e - s + 1 >= min_bars]


def stale_warning(close: pd.Series, label: str, min_bars: int) -> str | None:
    """A warning naming the first stretch of ``min_bars``+ unchanged closes (None when none, or 0 = off)."""
    if min_bars <= 0:
        return None
    runs = stale_runs(close, min_bars)
    if not runs:
        return None
    first, last, bars = runs[0]
    more = f" ({len(runs)} such stretches, {sum(r[2] for r in runs)} bars in all)" if len(runs) > 1 else ""
    return (f"{label}: Close is unchanged for {bars} bars from {_day(first)} to {_day(last)}{more}; a trading halt "
            "or prices carried forward give flat returns a model can learn as a pattern: check the source, trim "
            f"the stretch with --start/--end, or raise data.max_stale_bars (now {min_bars}; 0 turns this off)")


def volume_format_warning(volume: pd.Series, label: str) -> str | None:
    """A warning when Volume looks written with '.' as a thousands separator (German and other
    locales), so that 1.058 (1058 shares) was read as 1.058 next to 907 read as 907: whole numbers
    below 1000 beside values of at most three decimals from 1 to 1000, the whole numbers far larger
    (``LOCALE_VOLUME_RATIO``). Volume that really has fractions rarely has this shape."""
    values = volume[volume > 0]
    if values.empty or values.max() >= 1000:
        return None
    whole = values[values == np.round(values)]
    part = values[values != np.round(values)]
    milli = part.to_numpy(dtype=np.float64) * 1000
    if whole.empty or part.empty or part.min() < 1 or not np.allclose(milli, np.round(milli), rtol=0, atol=1e-6):
        return None
    if whole.median() < LOCALE_VOLUME_RATIO * part.median():
        return None
    first = float(part.iloc[0])
    return (f"{label}: Volume looks written with '.' as a thousands separator: {len(part)} of {len(values)} values "
            f"have up to three decimals ({_num(first)} on {_day(part.index[0])}) beside whole numbers below 1000 "
            f"({_num(whole.iloc[0])} on {_day(whole.index[0])}), as if {_num(first)} stood for {first * 1000:.0f}; "
            "export Volume without thousands separators, or ignore this if volume really has fractions")


def open_at_prev_close(prices: pd.DataFrame, dates: pd.DatetimeIndex | None = None) -> tuple[float, int, int]:
    """How many of the bars on ``dates`` (default: every bar but the first) open exactly at the
    previous bar's close: (share, count, bars counted). Dates not in ``prices``, and the first
    bar, are not counted; ``share`` is NaN when no bar is."""
    flags = _open_at_close_flags(prices, dates)
    count, total = int(flags.sum()), int(len(flags))
    return (count / total if total else math.nan), count, total


def open_at_close_warning(prices: pd.DataFrame, dates: pd.DatetimeIndex, label: str) -> str | None:
    """A warning when more than ``OPEN_AT_CLOSE_SHARE`` of the fill bars ``dates`` open at the previous close."""
    flags = _open_at_close_flags(prices, dates)
    count, total = int(flags.sum()), int(len(flags))
    if not total or not count / total > OPEN_AT_CLOSE_SHARE:
        return None
    hit = flags.index[flags]
    return (f"{label}: {count} of {total} out-of-sample bars ({count / total:.1%}, from {_day(hit[0])} to "
            f"{_day(hit[-1])}) open exactly at the previous close, so on them a next_open fill is really a fill "
            'at the decision close; use backtest.execution = "next_close", or a source with real opens')


def _open_at_close_flags(prices: pd.DataFrame, dates: pd.DatetimeIndex | None) -> pd.Series:
    """True where a bar on ``dates`` opens at the previous bar's close (within float noise)."""
    opens, closes = prices["Open"].to_numpy(dtype=np.float64), prices["Close"].to_numpy(dtype=np.float64)
    flags = pd.Series(np.isclose(opens[1:], closes[:-1], rtol=_SAME, atol=0.0), index=prices.index[1:])
    return flags if dates is None else flags[flags.index.isin(pd.DatetimeIndex(dates))]


# --------------------------------------------------------------------------- formatting


def _spacing_name(days: float) -> str:
    for limit, name in ((10, "weekly"), (20, "every two weeks"), (45, "monthly"), (120, "quarterly")):
        if days <= limit:
            return name
    return "yearly or sparser"


def _num(value: Any) -> str:
    return f"{float(value):.10g}"


def _day(stamp: Any) -> str:
    return pd.Timestamp(stamp).date().isoformat()
