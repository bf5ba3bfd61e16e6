"""Portfolio weights across a universe of tickers: equal weight and the cross-sectional top-k.

Pure functions of panels (decision days x tickers). A ticker's *life* is the span from its first
to its last out-of-sample decision day; it is *active* on every day of that span and on no other,
so a ticker is never held before its data (and a prediction) starts or after it ends: no
survivorship from the future. On a day inside its life without a bar of its own (a holiday of its
market in a mixed universe) it keeps its last decision. Weights are target fractions of the
portfolio's value decided after the close of each day; ``backtest.portfolio`` applies the lag.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def life_panel(series: dict[str, pd.Series], calendar: pd.DatetimeIndex) -> pd.DataFrame:
    """Each ticker's values on ``calendar``, carried forward inside its life and NaN outside it.

    Parameters
    ----------
    series : dict[str, pd.Series]
        Per ticker, a value per decision day (a position in [-1, 1] or a score); the life is the
        span from its first to its last non-NaN date.
    calendar : pd.DatetimeIndex
        The universe's decision days (sorted, unique); must contain every ticker's dates.

    Returns
    -------
    pd.DataFrame
        ``calendar`` x tickers (in ``series`` order); NaN exactly where a ticker is not active.
    """
    columns = {}
    for name, values in series.items():
        values = values.dropna()
        panel = values.reindex(calendar)
        if len(values):
            inside = (calendar >= values.index[0]) & (calendar <= values.index[-1])
            panel = panel.ffill().where(inside)  # ffill never reaches past the last date: masked
        columns[name] = panel
    return pd.DataFrame(columns, index=calendar)


def equal_weights(positions: pd.DataFrame) -> pd.DataFrame:
    """Each active ticker's position scaled by 1 / (number of active tickers that day).

    ``positions``: a ``life_panel`` of one per-ticker strategy (NaN = not active). Returns target
    weights with the same shape, 0 where a ticker is not active; a day with no active ticker is
    all 0 (cash). The gross weight is at most 1.
    """
    active = positions.notna()
    n_active = active.sum(axis=1).replace(0, np.nan)
    return positions.div(n_active, axis=0).fillna(0.0)


def default_top_k(n_tickers: int, bottom_k: int = 0) -> int:
    """The default number of tickers the cross-sectional strategy holds long (``portfolio.top_k = 0``).

    A third of the universe, rounded to the nearest integer (N / 3 is never halfway), at least 1
    and at most ``n_tickers - bottom_k``; long only (``bottom_k = 0``) also fewer than all N, since
    holding every ticker ranks nothing. Returns 0 when ``bottom_k`` leaves no ticker to hold long.
    Two tickers give 1, three to four 1, five to seven 2, eight to ten 3, thirty 10.
    """
    room = n_tickers - bottom_k - (0 if bottom_k else 1)
    return max(0, min(max(1, round(n_tickers / 3)), room))


def ranking_days(n_active: np.ndarray, top_k: int, bottom_k: int = 0) -> np.ndarray:
    """Per day, whether ``top_k_weights`` chooses among the ``n_active`` active tickers: long only,
    when there are more than the ``top_k`` it holds (with ``top_k`` or fewer it holds all or none of
    them, equal weight again); with shorts, when there are ``top_k + bottom_k`` to split into sides."""
    n = np.asarray(n_active)
    return n >= top_k + bottom_k if bottom_k else n > top_k


def top_k_weights(scores: pd.DataFrame, top_k: int, bottom_k: int = 0) -> pd.DataFrame:
    """Long the ``top_k`` highest-scoring active tickers each day, short the ``bottom_k`` lowest.

    Parameters
    ----------
    scores : pd.DataFrame
        Decision days x tickers; higher = more bullish (p_up, or a predicted log return). NaN
        marks a ticker that is not active (no data or no prediction that day).
    top_k, bottom_k : int
        Tickers held long / short per day (``top_k >= 1``, ``bottom_k >= 0``).

    Returns
    -------
    pd.DataFrame
        Target weights: ``+1 / (top_k + bottom_k)`` per long and ``-1 / (top_k + bottom_k)`` per
        short (gross exposure 1), 0 otherwise. Ties rank by column order. A day with fewer than
        ``top_k + bottom_k`` active tickers holds nothing: the ranking it needs does not exist.
    """
    if top_k < 1 or bottom_k < 0:
        raise ValueError(f"top_k must be >= 1 and bottom_k >= 0, got {top_k} and {bottom_k}")
    values = scores.to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    n_active = finite.sum(axis=1)
    # stable sort of -score: the highest first, ties in column order, inactive (-inf -> +inf) last
    order = np.argsort(np.where(finite, -values, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(values.shape[1])[None, :].repeat(len(values), axis=0), axis=1)
    size = 1.0 / (top_k + bottom_k)
    weights = np.where(rank < top_k, size, 0.0)
    if bottom_k:
        weights -= np.where((rank >= n_active[:, None] - bottom_k) & finite, size, 0.0)
    weights[n_active < top_k + bottom_k] = 0.0
    return pd.DataFrame(weights * finite, index=scores.index, columns=scores.columns)
