"""Causal feature groups built with ``ta``: row t uses only data known at the close of day t.

All groups are scale-free (ratios, log returns, z-scores). ``lags`` is too by default
(``lag_scale = "relative"``: log(close[t-k] / close[t]), each lagged close relative to the
decision day's close); ``lag_scale = "level"`` keeps the seed's raw closes, which a scaler
fitted on training rows cannot carry to prices outside their range. The walk-forward scaler
standardises every column per fold.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import ta

from lstmbt.models.specs import LAG_SCALES

RETURN_WINDOWS = (1, 5, 10, 20)
MA_WINDOWS = (5, 10, 20, 60)
VOLUME_WINDOW = 20


def make_features(prices: pd.DataFrame, groups: tuple[str, ...], n_lags: int = 10,
                  lag_scale: str = "relative") -> pd.DataFrame:
    """Feature frame on ``prices.index``, one block of columns per group, in ``groups`` order.

    Leading rows are NaN until every indicator has warmed up; later gaps (a zero-width range,
    a flat volume window) are forward-filled, which only ever uses the past.

    Parameters
    ----------
    prices : OHLCV frame from ``backtest.data.load_prices``.
    groups : names from ``GROUPS``.
    n_lags : number of lagged closes in the ``lags`` group.
    lag_scale : ``relative``: column ``lag{k}_to_close`` = log(close[t-k] / close[t]) for
        k = 1..n_lags, scale-free and known at the close of t; ``level``: column ``close_lag{k}``
        = close[t-k] in the data's currency for k = 0..n_lags-1 (lag 0 is today's close).
    """
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown feature group(s) {unknown}; choose from {sorted(GROUPS)}")
    if lag_scale not in LAG_SCALES:
        raise ValueError(f"lag_scale must be one of {LAG_SCALES}, got {lag_scale!r}")
    build = {**GROUPS, "lags": _lags if lag_scale == "level" else _relative_lags}
    parts = [build[g](prices, n_lags) for g in groups]
    frame = pd.concat(parts, axis=1).replace([np.inf, -np.inf], np.nan)
    return frame.ffill()


def warmup_rows(groups: tuple[str, ...], n_lags: int = 10, lag_scale: str = "relative") -> int:
    """Leading rows that ``make_features`` leaves NaN for these groups (measured, not tabulated)."""
    n = 400 + n_lags
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(0).normal(0.0, 0.01, n)))
    probe = pd.DataFrame(
        {"Open": close, "High": close * 1.01, "Low": close * 0.99, "Close": close,
         "Volume": np.linspace(1e6, 2e6, n)},
        index=pd.bdate_range("2000-01-03", periods=n),
    )
    valid = make_features(probe, groups, n_lags, lag_scale).notna().all(axis=1).to_numpy()
    return int(np.argmax(valid))


def _returns(prices: pd.DataFrame, _n_lags: int) -> pd.DataFrame:
    log_close = np.log(prices["Close"])
    return pd.DataFrame({f"ret_{k}d": log_close.diff(k) for k in RETURN_WINDOWS})


def _ohlc(prices: pd.DataFrame, _n_lags: int) -> pd.DataFrame:
    close = prices["Close"]
    return pd.DataFrame({f"{name.lower()}_to_close": np.log(prices[name] / close) for name in ("Open", "High", "Low")})


def _volume(prices: pd.DataFrame, _n_lags: int) -> pd.DataFrame:
    log_volume = np.log1p(prices["Volume"])
    rolling = log_volume.rolling(VOLUME_WINDOW, min_periods=VOLUME_WINDOW)
    return pd.DataFrame({"volume_z20": (log_volume - rolling.mean()) / rolling.std()})


def _ma(prices: pd.DataFrame, _n_lags: int) -> pd.DataFrame:
    close = prices["Close"]
    return pd.DataFrame({f"close_to_ma{w}": close / ta.trend.sma_indicator(close, window=w) - 1.0 for w in MA_WINDOWS})


def _rsi(prices: pd.DataFrame, _n_lags: int) -> pd.DataFrame:
    return pd.DataFrame({"rsi14": ta.momentum.rsi(prices["Close"], window=14) / 100.0})


def _macd(prices: pd.DataFrame, _n_lags: int) -> pd.DataFrame:
    close = prices["Close"]
    macd = ta.trend.MACD(close, window_slow=26, window_fast=12, window_sign=9)
    return pd.DataFrame({
        "macd": macd.macd() / close,
        "macd_signal": macd.macd_signal() / close,
        "macd_diff": macd.macd_diff() / close,
    })


def _bollinger(prices: pd.DataFrame, _n_lags: int) -> pd.DataFrame:
    bands = ta.volatility.BollingerBands(prices["Close"], window=20, window_dev=2)
    return pd.DataFrame({"bb_pct_b": bands.bollinger_pband(), "bb_width": bands.bollinger_wband() / 100.0})


def _atr(prices: pd.DataFrame, _n_lags: int) -> pd.DataFrame:
    window = 14
    atr = ta.volatility.average_true_range(prices["High"], prices["Low"], prices["Close"], window=window)
    atr = atr.where(np.arange(len(atr)) >= window)  # ta writes zeros during the warm-up
    return pd.DataFrame({"atr14_to_close": atr / prices["Close"]})


def _lags(prices: pd.DataFrame, n_lags: int) -> pd.DataFrame:
    close = prices["Close"]
    return pd.DataFrame({f"close_lag{k}": close.shift(k) for k in range(n_lags)})


def _relative_lags(prices: pd.DataFrame, n_lags: int) -> pd.DataFrame:
    log_close = np.log(prices["Close"])
    return pd.DataFrame({f"lag{k}_to_close": log_close.shift(k) - log_close for k in range(1, n_lags + 1)})


GROUPS: dict[str, Callable[[pd.DataFrame, int], pd.DataFrame]] = {
    "returns": _returns,
    "ohlc": _ohlc,
    "volume": _volume,
    "ma": _ma,
    "rsi": _rsi,
    "macd": _macd,
    "bollinger": _bollinger,
    "atr": _atr,
    "lags": _lags,
}
