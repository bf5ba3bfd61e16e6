"""Targets aligned to the decision day: y_t uses closes t+1..t+h and is NaN for the last h rows.

Also the training weights over them: the dead zone of the up/down label, and the check every
estimator applies to ``sample_weight``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGETS = ("return", "direction", "price", "week_mean", "max_drawdown")


def make_target(prices: pd.DataFrame, kind: str, horizon: int = 1) -> pd.Series:
    """Label for each day t, known only after the close of day t + horizon.

    ``return``: log(close[t+h] / close[t]). ``direction``: 1.0 if that log return is > 0, else
    0.0. ``price``: close[t+h], in the data's currency (what is scored; with ``price_scale =
    "relative"`` the models fit ``price_to_relative`` of it and predict through
    ``relative_to_price``). ``week_mean``: log(mean(close[t+1..t+h])
    / close[t]), the seed notes' "mean close of the next week" for h = 5, as a log ratio to today.
    ``max_drawdown``: the worst close-to-close drop from today's close over the next h closes,
    min(0, min over k = 1..h of log(close[t+k] / close[t])): 0 when no close falls below today's.
    """
    if kind not in TARGETS:
        raise ValueError(f"unknown target {kind!r}; choose from {TARGETS}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    close = prices["Close"]
    future = close.shift(-horizon)
    if kind == "price":
        return future.rename(f"price_{horizon}d")
    if kind in ("week_mean", "max_drawdown"):
        ahead = pd.concat([close.shift(-k) for k in range(1, horizon + 1)], axis=1)
        if kind == "week_mean":
            return np.log(ahead.mean(axis=1, skipna=False) / close).rename(f"mean_fwd_{horizon}d")
        worst = np.log(ahead.min(axis=1, skipna=False) / close)
        return worst.clip(upper=0.0).rename(f"drawdown_fwd_{horizon}d")
    log_ret = np.log(future / close)
    if kind == "return":
        return log_ret.rename(f"ret_fwd_{horizon}d")
    return (log_ret > 0).astype("float64").where(log_ret.notna()).rename(f"up_fwd_{horizon}d")


def price_to_relative(price: np.ndarray, close: np.ndarray) -> np.ndarray:
    """A price target as a model fits it with ``price_scale = "relative"``: log(price / close).

    ``close``: the decision day's close (close[t], known at the close of t), row for row with
    ``price`` (close[t+h]). The result is scale-free (the h-day log return), so a model fitted
    on one price range applies to any other; NaN where ``price`` is NaN (unlabelled rows).
    This is reversible instance normalisation (RevIN) with each sample's own last close as its
    scale; ``relative_to_price`` is the inverse.
    """
    return np.log(np.asarray(price, dtype=np.float64) / np.asarray(close, dtype=np.float64))


def relative_to_price(relative: np.ndarray, close: np.ndarray) -> np.ndarray:
    """A relative prediction back in the data's currency: close * exp(relative), ``close`` being the
    decision day's close of each row (the inverse of ``price_to_relative``)."""
    return np.asarray(close, dtype=np.float64) * np.exp(np.asarray(relative, dtype=np.float64))


def dead_zone_weights(prices: pd.DataFrame, horizon: int, dead_zone: float) -> pd.Series:
    """Training weight per day for the up/down label with a dead zone around a zero return.

    Day t gets 1.0 when its h-day log return ``|log(close[t+h] / close[t])|`` is >= ``dead_zone``
    (a fraction of price: 0.001 = 0.1%), 0.0 inside the zone (too small a move to call up or
    down, so the sample is left out of the training loss), and NaN for the last h rows, whose
    label is not known yet. Like the label itself, the weight at t uses closes t and t + h only.
    ``dead_zone = 0`` weights every labelled day 1.0.
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if not 0.0 <= dead_zone < 0.5:
        raise ValueError(f"dead_zone must be >= 0 and < 0.5 (a fraction of price), got {dead_zone}")
    move = np.log(prices["Close"].shift(-horizon) / prices["Close"]).abs()
    return (move >= dead_zone).astype("float64").where(move.notna()).rename(f"weight_fwd_{horizon}d")


def check_sample_weight(sample_weight: np.ndarray | None, n_samples: int) -> np.ndarray | None:
    """Validated training weights as float64 of shape (n_samples,), or None when none are given.

    Weights must be finite, non-negative and not all zero; a weight of 0 drops a sample from the
    training loss, and weights scale each sample's share of it.
    """
    if sample_weight is None:
        return None
    weight = np.asarray(sample_weight, dtype=np.float64)
    if weight.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), one weight per sample, got {weight.shape}")
    if not np.isfinite(weight).all():
        raise ValueError("sample_weight contains NaN or inf; give every training sample a finite weight")
    if (weight < 0).any():
        raise ValueError("sample_weight has negative entries; weights must be >= 0 (0 drops a sample)")
    if not (weight > 0).any():
        raise ValueError("sample_weight is zero for every sample; at least one sample must have a positive weight")
    return weight
