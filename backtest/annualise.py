"""How many bars make a year: the one number every annualised figure (CAGR, volatility, Sharpe,
Sortino, turnover, alpha) is scaled with.

A run's daily bars annualise with 252 on an exchange calendar and 365 on a 7-day one (crypto), told
apart by the bars a year between the first and last date (``run_periods``). Returns or prices given
to the API may be daily, 7-day daily, weekly or monthly: ``infer_periods`` tells which from the dates,
and refuses in one line what it cannot tell; ``given_periods`` checks a ``periods_per_year`` the
caller passes instead.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from lstmbt.backtest.errors import ConfigError, DataError

#: bars a year of an exchange's daily calendar (trading days)
EXCHANGE_PERIODS = 252
#: bars a year of a daily calendar that trades every day of the week (crypto)
WEEK_DAY_PERIODS = 365
#: bars a year above which a daily series trades on weekends (crypto ~365; exchanges 240-253)
WEEKEND_BARS_PER_YEAR = 300
#: fewest bars from which a frequency is inferred: 19 gaps give a stable median and rate
MIN_BARS_TO_INFER = 20
#: (name, median calendar-day gap range, bars a year a regular series of it has, periods used);
#: the daily row's periods depend on weekend trading, and 200-370 bars a year covers exchanges
#: with long holiday seasons up to a 7-day calendar; the others allow a missing bar in ~10
FREQUENCIES = (("daily", (0.9, 4.0), (200.0, 370.0), None),
               ("weekly", (5.0, 10.0), (46.0, 54.0), 52),
               ("monthly", (25.0, 35.0), (10.8, 12.4), 12))


@dataclasses.dataclass(frozen=True)
class Annualisation:
    """The bars a year figures are annualised with, and in words where that number came from.

    ``periods_per_year``: bars a year (252, 365, 52, 12 or the caller's whole number); ``basis``: a
    phrase such as ``"weekly bars (median 7 days apart), inferred from the dates"``.
    """

    periods_per_year: int
    basis: str

    def note(self) -> str:
        """One sentence for the report and console: which bars a year were used, and why."""
        return (f"Annualised with {self.periods_per_year:g} bars a year: {self.basis}; CAGR, volatility, Sharpe, "
                "Sortino, turnover, alpha and the Sharpe intervals use it.")


def run_periods(index: pd.DatetimeIndex) -> int:
    """Bars a year of a run's daily ``index``: 365 when it trades on weekends (more than
    ``WEEKEND_BARS_PER_YEAR`` bars a year between its first and last bar), else 252 (also for fewer
    than ``MIN_BARS_TO_INFER`` bars)."""
    rate = bars_per_year(index) if len(index) >= MIN_BARS_TO_INFER else None  # a few bars span no weekend
    return WEEK_DAY_PERIODS if rate is not None and rate > WEEKEND_BARS_PER_YEAR else EXCHANGE_PERIODS


def run_note(index: pd.DatetimeIndex) -> str | None:
    """The run's note on its bars a year when they are not an exchange's 252 (None when they are)."""
    if run_periods(index) == EXCHANGE_PERIODS:
        return None
    basis = (f"a 7-day calendar (about {bars_per_year(index):.0f} bars a year from {_day(index[0])} to "
             f"{_day(index[-1])}: it trades on weekends)")
    return (f"{Annualisation(WEEK_DAY_PERIODS, basis).note()[:-1]} in metrics.json, the cost table, the regime "
            "table, the head-to-head pairs, the CPCV paths, the rolling Sharpe chart and a seed ensemble's best "
            "seed; a sweep's summary (its best Sharpe and the luck threshold of its deflated Sharpe) and the carry "
            "on cash and shorts (annual rate / 252 a bar) still count 252.")


def bars_per_year(index: pd.DatetimeIndex) -> float | None:
    """Bars per 365.25 calendar days between the first and last bar; None with under two bars or no span."""
    if len(index) < 2:
        return None
    span_days = (index[-1] - index[0]) / pd.Timedelta(days=1)
    return (len(index) - 1) * 365.25 / span_days if span_days > 0 else None


def given_periods(value: Any) -> Annualisation:
    """``periods_per_year`` as the caller passed it, checked: a whole number of bars a year >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 1 or not float(value).is_integer():
        raise ConfigError(f"periods_per_year must be a whole number of bars a year >= 1 (252 exchange days, 365 "
                          f"7-day, 52 weekly, 12 monthly), not {value!r}")
    return Annualisation(int(value), "as passed in periods_per_year")


def infer_periods(index: pd.Index, label: str) -> Annualisation:
    """The bars a year of ``index`` (``label`` names it in messages), from its dates, else a DataError.

    Daily bars give 252 (exchange days) or 365 (a 7-day calendar), weekly bars 52, monthly bars 12,
    decided by the median calendar-day gap and checked against the bars a year the dates span.
    Fewer than ``MIN_BARS_TO_INFER`` bars, intraday or other spacings, and dates whose span does not
    fit their spacing (many missing bars) are refused: pass ``periods_per_year`` then.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(f"{label} need a DatetimeIndex to tell their frequency, not {type(index).__name__}; "
                        "set one with .set_index(pd.to_datetime(...))")
    if len(index) < MIN_BARS_TO_INFER:
        raise DataError(f"{label} hold {len(index)} bar(s), too few to tell their frequency from the dates (at least "
                        f"{MIN_BARS_TO_INFER}); pass periods_per_year {_EXAMPLES}")
    gaps = np.diff(index.values.astype("datetime64[s]").astype(np.int64)) / 86400.0  # calendar days
    median, rate = float(np.median(gaps)), bars_per_year(index)
    for name, (low, high), (fewest, most), periods in FREQUENCIES:
        if not low <= median <= high:
            continue
        if rate is None or not fewest <= rate <= most:
            raise DataError(f"{label} are irregular: {name} by their median gap ({median:g} days) but about "
                            f"{rate or 0:.0f} bars a year from {_day(index[0])} to {_day(index[-1])}, where {name} "
                            f"bars give {fewest:g}-{most:g}; fill or drop the missing bars, or pass periods_per_year")
        if periods is None:
            periods = WEEK_DAY_PERIODS if rate > WEEKEND_BARS_PER_YEAR else EXCHANGE_PERIODS
            name = "7-day daily" if periods == WEEK_DAY_PERIODS else "daily exchange"
        return Annualisation(periods, f"{name} bars (median {median:g} days apart, about {rate:.0f} a year), "
                                      "inferred from the dates")
    raise DataError(f"{label} are about {median:g} calendar days apart, a spacing lstmbt does not infer (daily, 7-day "
                    f"daily, weekly or monthly); pass periods_per_year {_EXAMPLES}")


_EXAMPLES = "(252 exchange days, 365 7-day, 52 weekly, 12 monthly)"


def _day(stamp: Any) -> str:
    return pd.Timestamp(stamp).date().isoformat()


__all__ = ["EXCHANGE_PERIODS", "WEEK_DAY_PERIODS", "WEEKEND_BARS_PER_YEAR", "MIN_BARS_TO_INFER", "Annualisation",
           "run_periods", "run_note", "bars_per_year", "given_periods", "infer_periods"]
