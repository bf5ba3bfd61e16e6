"""Threshold rules, confidence sizing and the buy-and-hold baseline.

Threshold rules take all-or-nothing positions; confidence sizing scales the position with how
sure the model is, capped at a full position. Both map a missing prediction (NaN) to flat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view


def predicted_log_return(y_pred: pd.Series, close: pd.Series, target: str) -> pd.Series:
    """The model's predicted log return from the decision day's close.

    ``target``: ``return``, ``week_mean`` or ``max_drawdown`` (``y_pred`` already is a log ratio
    to the decision day's close; for ``max_drawdown``, to the worst close ahead) or ``price`` (``y_pred`` is a predicted close, compared with ``close`` on the
    same day).
    """
    if target in ("return", "week_mean", "max_drawdown"):
        return y_pred.astype("float64")
    if target == "price":
        ratio = y_pred / close
        return np.log(ratio.where(ratio > 0)).fillna(-np.inf)  # a non-positive price forecast means "down"
    raise ValueError(f"target must be 'return', 'week_mean', 'max_drawdown' or 'price', got {target!r}")


def regression_positions(pred_return: pd.Series, threshold: float = 0.0, long_short: bool = False) -> pd.Series:
    """1 when the predicted log return is above ``threshold``; -1 below ``-threshold`` if ``long_short``; else 0."""
    long = (pred_return > threshold).astype("float64")
    if not long_short:
        return long.rename("position")
    return (long - (pred_return < -threshold).astype("float64")).rename("position")


def drawdown_positions(pred_drawdown: pd.Series, limit: float = 0.02) -> pd.Series:
    """1 (long) unless the predicted worst log drop ahead is deeper than ``limit`` (a fraction), then 0.

    A risk filter for the ``max_drawdown`` target: a missing forecast keeps the position flat.
    """
    return (pred_drawdown > -limit).astype("float64").rename("position")


def classification_positions(p_up: pd.Series, cutoff: float = 0.5, long_short: bool = False) -> pd.Series:
    """1 when p_up is above ``cutoff``; -1 when below ``1 - cutoff`` if ``long_short``; else 0."""
    long = (p_up > cutoff).astype("float64")
    if not long_short:
        return long.rename("position")
    return (long - (p_up < 1.0 - cutoff).astype("float64")).rename("position")


def classification_confidence_positions(p_up: pd.Series, gain: float = 10.0, long_short: bool = False) -> pd.Series:
    """Position proportional to the classifier's edge: ``clip(gain * (p_up - 0.5), lower, 1)``.

    Parameters
    ----------
    p_up : pd.Series
        Probability (0..1) that the h-day log return after the decision day's close is > 0.
    gain : float
        Position per unit of probability above 0.5 (> 0). The default 10 gives a full long at
        p_up >= 0.6 and half a position at p_up = 0.55.
    long_short : bool
        ``lower = -1`` (p_up below 0.5 goes short, symmetrically) if true; ``lower = 0`` (flat) if false.

    Returns
    -------
    pd.Series
        Target position in [lower, 1] (fraction of equity, + long), named ``position``; NaN p_up -> 0.
    """
    if not gain > 0:
        raise ValueError(f"gain must be > 0, got {gain!r}")
    lower = -1.0 if long_short else 0.0
    return (gain * (p_up.astype("float64") - 0.5)).clip(lower, 1.0).fillna(0.0).rename("position")


def trailing_volatility(close: pd.Series, vol_window: int = 21) -> pd.Series:
    """Standard deviation (ddof 1) of the last ``vol_window`` daily log returns known at each close.

    The value at day t uses ``log(close[t-k] / close[t-k-1])`` for k = 0..vol_window-1, i.e.
    closes t - vol_window .. t and nothing later; it is NaN for the first ``vol_window`` days
    (warm-up) and wherever a window holds a NaN. Units: log return per day, not annualised.
    """
    if vol_window < 2:
        raise ValueError(f"vol_window must be >= 2 daily returns, got {vol_window!r}")
    log_ret = np.diff(np.log(close.to_numpy(dtype="float64")))  # log_ret[i]: day i -> day i + 1
    vol = np.full(len(close), np.nan)
    if len(log_ret) >= vol_window:
        vol[vol_window:] = sliding_window_view(log_ret, vol_window).std(axis=1, ddof=1)
    return pd.Series(vol, index=close.index, name="trailing_vol")


def regression_confidence_positions(pred_return: pd.Series, close: pd.Series, vol_window: int = 21,
                                    gain: float = 1.0, long_short: bool = False, *,
                                    horizon: int = 1) -> pd.Series:
    """Position proportional to the forecast in volatility units: ``clip(gain * z, lower, 1)``.

    ``z = pred_return / (trailing_vol * sqrt(horizon))``: the predicted h-day log return over the
    h-day volatility implied by ``trailing_volatility(close, vol_window)`` at the decision day.

    Parameters
    ----------
    pred_return : pd.Series
        Predicted log return over ``horizon`` days from each decision day's close (-inf = "down").
    close : pd.Series
        Daily closes whose index contains every date of ``pred_return``. It may start earlier
        (pass the full history so the first decision days are past the warm-up); prices after a
        decision day never enter its position.
    vol_window : int
        Daily log returns in the volatility estimate (>= 2); 21 is about one trading month.
    gain : float
        Position per forecast sigma (> 0). The default 1 gives a full position only to a forecast
        of one sigma or more; typical forecasts are a small fraction of a sigma, so exposure is small.
    long_short : bool
        ``lower = -1`` (negative forecasts go short) if true; ``lower = 0`` (flat) if false.
    horizon : int
        Days h the forecast spans (>= 1); daily volatility is scaled by sqrt(h).

    Returns
    -------
    pd.Series
        Target position in [lower, 1] on ``pred_return``'s index, named ``position``; 0 where the
        forecast is NaN, during the volatility warm-up, and where trailing volatility is 0.
    """
    if not gain > 0:
        raise ValueError(f"gain must be > 0, got {gain!r}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 day, got {horizon!r}")
    _check_covers(close, pred_return.index, "pred_return")
    vol = trailing_volatility(close, vol_window).reindex(pred_return.index) * np.sqrt(horizon)
    z = pred_return.astype("float64") / vol.where(vol > 0)  # zero or unknown vol -> NaN -> flat
    lower = -1.0 if long_short else 0.0
    return (gain * z).clip(lower, 1.0).fillna(0.0).rename("position")


#: trading days per year, the annualisation of every volatility here (as in ``backtest.metrics``)
TRADING_DAYS = 252


def vol_target_positions(position: pd.Series, close: pd.Series, vol_target: float, vol_window: int = 21,
                         max_leverage: float = 1.0) -> pd.Series:
    """Scale positions to a target annual volatility: ``position * min(max_leverage, vol_target / sigma)``.

    ``sigma = trailing_volatility(close, vol_window) * sqrt(252)``: the annualised standard
    deviation of the last ``vol_window`` daily log returns known at each decision day's close.

    Parameters
    ----------
    position : pd.Series
        Target positions in [-1, 1] (fraction of equity, + long) per decision day, from any sizing.
    close : pd.Series
        Daily closes whose index contains every date of ``position`` (pass the full history, as
        for ``regression_confidence_positions``); closes after a decision day never enter it.
    vol_target : float
        Target annual volatility as a fraction (0.10 = 10% a year), > 0.
    vol_window : int
        Daily log returns in the trailing volatility (>= 2).
    max_leverage : float
        Largest scale factor (> 0). The default 1 only ever scales down, so positions stay in [-1, 1].

    Returns
    -------
    pd.Series
        Scaled positions on ``position``'s index, named ``position``; within
        ``[-max_leverage, max_leverage]``. A trailing volatility of 0 scales by ``max_leverage``;
        an undefined one (warm-up, a gap in ``close``) gives 0 (flat).
    """
    if not vol_target > 0:
        raise ValueError(f"vol_target must be > 0, got {vol_target!r}")
    if not max_leverage > 0:
        raise ValueError(f"max_leverage must be > 0, got {max_leverage!r}")
    _check_covers(close, position.index, "position")
    sigma = trailing_volatility(close, vol_window).reindex(position.index) * np.sqrt(TRADING_DAYS)
    with np.errstate(divide="ignore"):  # sigma 0 -> inf -> capped at max_leverage
        scale = (vol_target / sigma).clip(upper=max_leverage)
    return (position.astype("float64") * scale).fillna(0.0).rename("position")


def _check_covers(close: pd.Series, days: pd.Index, name: str) -> None:
    """Refuse ``close`` when it lacks a decision day of ``name`` (whose index is ``days``)."""
    missing = days.difference(close.index)
    if len(missing):
        raise ValueError(f"close lacks {len(missing)} decision days of {name} (first: {missing[0]}); "
                         "pass the full close series")


def confidence_undecided(pred_return: pd.Series, close: pd.Series, vol_window: int = 21) -> pd.Series:
    """True on the days ``regression_confidence_positions`` holds flat for want of an input, not by
    choice: the forecast is NaN, or the trailing volatility at the decision day is undefined
    (warm-up, a gap in ``close``) or zero (closes unchanged for ``vol_window`` days).

    ``close`` as for ``regression_confidence_positions``; only closes up to each day are used.
    """
    _check_covers(close, pred_return.index, "pred_return")
    vol = trailing_volatility(close, vol_window).reindex(pred_return.index)
    return (pred_return.isna() | ~(vol > 0)).rename("undecided")


def buy_and_hold(index: pd.Index) -> pd.Series:
    """Fully long on every decision day: the baseline every strategy is measured against."""
    return pd.Series(1.0, index=index, name="position")
