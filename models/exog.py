"""Exogenous series (an exchange rate, a volatility index, ...) as causal return features.

The as-of rule: the value used on price day t is the series' last observation stamped on or
before t (after adding ``lag_days`` calendar days to every stamp), never a later one. A gap in
the series carries its previous value forward; price days before its first observation stay NaN,
never back-filled. Returns are then taken on the joined series, on the price calendar.

The rule trusts the date stamp. A value stamped t but published after that day's equity close,
such as a US close (VIX, S&P 500) or a Yahoo FX bar (whose day ends around midnight London) next
to KRX prices, is still look-ahead by publication time: set ``lag_days=1`` for such a series, so
the value stamped t is first used on the first price day after t.
"""

from __future__ import annotations

import re
from pathlib import PurePath

import numpy as np
import pandas as pd

#: return windows, in price days, of every exogenous series
EXOG_WINDOWS = (1, 5, 21)


def exog_slug(name: str) -> str:
    """The column stem for a series: ``fdr:USD/KRW`` -> ``usd_krw``, ``csv:data/vix.csv`` -> ``vix``."""
    scheme, sep, rest = name.partition(":")
    if sep and scheme in ("fdr", "csv"):
        name = PurePath(rest).stem if scheme == "csv" else rest
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or "series"


def asof_join(dates: pd.DatetimeIndex, values: pd.Series, lag_days: int = 0) -> pd.Series:
    """``values`` as known on each of ``dates``: the last observation stamped <= date - ``lag_days``.

    Parameters
    ----------
    dates : price dates (tz-naive), the calendar of the result.
    values : observations on a sorted, unique DatetimeIndex; NaN entries count as no observation.
    lag_days : calendar days added to every stamp before the join (>= 0).

    Returns
    -------
    Series on ``dates``; NaN before the first usable observation.
    """
    if lag_days < 0:
        raise ValueError(f"lag_days must be >= 0, got {lag_days}")
    observed = values.dropna()
    stamps = pd.DatetimeIndex(observed.index) + pd.Timedelta(days=lag_days)
    if not (stamps.is_monotonic_increasing and stamps.is_unique):
        raise ValueError(f"series {values.name!r} needs sorted, unique dates for an as-of join")
    shifted = pd.Series(observed.to_numpy(dtype="float64"), index=stamps)
    # reindex(method="ffill") takes, for each date, the last stamp <= that date: never a later one
    return shifted.reindex(pd.DatetimeIndex(dates), method="ffill").rename(values.name)


def exog_features(dates: pd.DatetimeIndex, series: dict[str, pd.Series],
                  windows: tuple[int, ...] = EXOG_WINDOWS, lag_days: int = 0) -> pd.DataFrame:
    """Log returns of each as-of-joined series over ``windows`` price days, on ``dates``.

    Column ``exog_<slug>_ret_<w>d`` holds log(x_t / x_{t-w}), where x_t is the as-of value on
    price day t (see ``asof_join``) and ``<slug>`` comes from the key (``exog_slug``).

    Parameters
    ----------
    dates : price dates.
    series : name (e.g. the source ``fdr:VIX``) -> positive observations, such as closes.
    windows : return windows in price days.
    lag_days : calendar days every stamp is delayed by before the join.
    """
    columns: dict[str, pd.Series] = {}
    for name, values in series.items():
        joined = asof_join(dates, values, lag_days)
        if (joined <= 0).any():
            raise ValueError(f"series {name!r} has non-positive values; returns need values > 0")
        log_level = np.log(joined)
        for window in windows:
            column = f"exog_{exog_slug(name)}_ret_{window}d"
            if column in columns:
                raise ValueError(f"two series map to the column {column}; give them distinct names")
            columns[column] = log_level.diff(window)
    return pd.DataFrame(columns, index=pd.DatetimeIndex(dates))


def exog_warmup_rows(n_series: int, windows: tuple[int, ...] = EXOG_WINDOWS) -> int:
    """Leading price rows the exogenous features leave NaN when every series covers the first date."""
    return max(windows) if n_series else 0
