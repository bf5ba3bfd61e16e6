"""The range, choice and date checks every config section runs on its values (one-line ConfigErrors)."""

from __future__ import annotations

import datetime as dt
import difflib
import math
from typing import Any

from lstmbt.backtest.errors import ConfigError


def check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        hint = difflib.get_close_matches(str(value), allowed, n=1)
        also = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(f"{key} = {value!r} is not allowed{also}; use one of: {', '.join(allowed)}")


def check_range(key: str, value: float, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{key} = {value!r} is not a finite number; give a plain number such as 0.5")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "" if low is None else ("> " if low_open else ">= ") + str(low)
        hi = "" if high is None else ("< " if high_open else "<= ") + str(high)
        rule = " and ".join(part for part in (lo, hi) if part)
        raise ConfigError(f"{key} = {value!r} is out of range; it must be {rule}")


#: the dates a price index can hold (pandas' nanosecond timestamps span 1677-09-21 to 2262-04-11)
FIRST_DATE, LAST_DATE = dt.date(1677, 9, 22), dt.date(2262, 4, 11)


def check_date(key: str, value: str | None) -> None:
    """An ISO date within ``FIRST_DATE``..``LAST_DATE``: no price has a date outside them, and
    pandas cannot slice by one (``--end 9999-12-31`` would fail deep inside the run)."""
    if value is None:
        return
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{key} = {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2010-01-01") from None
    if day < FIRST_DATE:
        edge, use = f"before {FIRST_DATE}, the first", "from its first"
    elif day > LAST_DATE:
        edge, use = f"after {LAST_DATE}, the last", "to its last"
    else:
        return
    raise ConfigError(f"{key} = {value!r} is {edge} date pandas can hold; leave it out (--{key.split('.')[-1]}) "
                      f"to use the data {use} date")


def did_you_mean(name: str, options: Any) -> str:
    hint = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""
