"""Threshold rules and the buy-and-hold baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd


def predicted_log_return(y_pred: pd.Series, close: pd.Series, target: str) -> pd.Series:
    """The model's predicted log return from the decision day's close.

    ``target``: ``return`` (``y_pred`` already is one) or ``price`` (``y_pred`` is a predicted
    close, compared with ``close`` on the same day).
    """
    if target == "return":
        return y_pred.astype("float64")
    if target == "price":
        ratio = y_pred / close
        return np.log(ratio.where(ratio > 0)).fillna(-np.inf)  # a non-positive price forecast means "down"
    raise ValueError(f"target must be 'return' or 'price', got {target!r}")


def regression_positions(pred_return: pd.Series, threshold: float = 0.0, long_short: bool = False) -> pd.Series:
    """1 when the predicted log return is above ``threshold``; -1 below ``-threshold`` if ``long_short``; else 0."""
    long = (pred_return > threshold).astype("float64")
    if not long_short:
        return long.rename("position")
    return (long - (pred_return < -threshold).astype("float64")).rename("position")


def classification_positions(p_up: pd.Series, cutoff: float = 0.5, long_short: bool = False) -> pd.Series:
    """1 when p_up is above ``cutoff``; -1 when below ``1 - cutoff`` if ``long_short``; else 0."""
    long = (p_up > cutoff).astype("float64")
    if not long_short:
        return long.rename("position")
    return (long - (p_up < 1.0 - cutoff).astype("float64")).rename("position")


def buy_and_hold(index: pd.Index) -> pd.Series:
    """Fully long on every decision day: the baseline every strategy is measured against."""
    return pd.Series(1.0, index=index, name="position")
