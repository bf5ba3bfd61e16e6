"""Targets aligned to the decision day: y_t uses closes t+1..t+h and is NaN for the last h rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGETS = ("return", "direction", "price", "week_mean")


def make_target(prices: pd.DataFrame, kind: str, horizon: int = 1) -> pd.Series:
    """Label for each day t, known only after the close of day t + horizon.

    ``return``: log(close[t+h] / close[t]). ``direction``: 1.0 if that log return is > 0, else
    0.0. ``price``: close[t+h], in the data's currency. ``week_mean``: log(mean(close[t+1..t+h])
    / close[t]), the seed notes' "mean close of the next week" for h = 5, as a log ratio to today.
    """
    if kind not in TARGETS:
        raise ValueError(f"unknown target {kind!r}; choose from {TARGETS}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    close = prices["Close"]
    future = close.shift(-horizon)
    if kind == "price":
        return future.rename(f"price_{horizon}d")
    if kind == "week_mean":
        ahead = pd.concat([close.shift(-k) for k in range(1, horizon + 1)], axis=1)
        mean = ahead.mean(axis=1, skipna=False)
        return np.log(mean / close).rename(f"mean_fwd_{horizon}d")
    log_ret = np.log(future / close)
    if kind == "return":
        return log_ret.rename(f"ret_fwd_{horizon}d")
    return (log_ret > 0).astype("float64").where(log_ret.notna()).rename(f"up_fwd_{horizon}d")
