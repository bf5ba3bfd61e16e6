"""Strategy rules for ``strategy.custom`` in the tests (``custom_rules:<name>``; tests/ is on
``sys.path``): one that keeps the protocol, two that try to read tomorrow's close (from the prices
given, and from the CSV on disk), and one for each way a rule can break it."""

from __future__ import annotations

import functools
import os

import numpy as np
import pandas as pd

#: every call of ``spy``: (decision day, last predictions date, last prices date, columns, rows)
CALLS: list[tuple] = []
#: not a function
THRESHOLD = 0.55


def band(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    """Classifiers: long above p_up 0.55, short below 0.45, flat between; regression models: the
    sign of the forecast, halved. Causal and vectorised."""
    p_up, y_pred = predictions["p_up"], predictions["y_pred"]
    by_p = np.where(p_up > 0.55, 1.0, np.where(p_up < 0.45, -1.0, 0.0))
    return pd.Series(np.where(p_up.isna(), 0.5 * np.sign(y_pred.fillna(0.0)), by_p), index=predictions.index)


def momentum_vol(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    """Reads the prices: long when the close is above its 20-day mean and the model says up."""
    close = prices["Close"]
    trend = (close > close.rolling(20, min_periods=1).mean()).reindex(predictions.index)
    up = (predictions["p_up"] > 0.5) | (predictions["y_pred"] > 0)
    return (trend & up).astype("float64")


def peek(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    """The cheat: long when tomorrow's close is higher, short when lower. Given only the rows up
    to the decision day, tomorrow's close is missing (NaN), so it can only say 0."""
    close = prices["Close"]
    tomorrow = np.sign(close.shift(-1) - close).fillna(0.0)
    return tomorrow.reindex(predictions.index)


def spy(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    """Records what it was given, then tries to change it in place."""
    CALLS.append((predictions.index[-1], predictions.index.max(), prices.index.max(), tuple(predictions.columns),
                  len(prices)))
    prices.loc[:, "Close"] = -1.0
    predictions.loc[:, "p_up"] = 2.0
    return pd.Series(0.25, index=predictions.index)


def half(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    return pd.Series(0.5, index=predictions.index)


def raises(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    return predictions["no_such_column"]


def too_big(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    return pd.Series(1.5, index=predictions.index)


def nan(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    return 2.0 * predictions["p_up"] - 1.0  # NaN for regression models, whose p_up is NaN


def a_list(predictions: pd.DataFrame, prices: pd.DataFrame) -> list:
    return [0.0] * len(predictions)


def reset_index(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    return pd.Series(0.0, index=range(len(predictions)))


def one_argument(predictions: pd.DataFrame) -> pd.Series:
    return pd.Series(0.0, index=predictions.index)


#: the environment variable naming the CSV that ``oracle`` reads (the run's own source file)
ORACLE_CSV = "LSTMBT_TEST_ORACLE_CSV"


@functools.lru_cache(maxsize=4)
def _closes_on_disk(path: str) -> pd.Series:
    return pd.read_csv(path, index_col=0, parse_dates=True)["Close"]


def oracle(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    """The cheat that works: reads the whole CSV from disk (``$LSTMBT_TEST_ORACLE_CSV``), around the
    rows it is given, and goes long on days before a higher close, short before a lower one."""
    close = _closes_on_disk(os.environ[ORACLE_CSV])
    tomorrow = np.sign(close.shift(-1) - close).fillna(0.0)
    out = pd.Series(0.0, index=predictions.index)
    out.iloc[-1] = float(tomorrow.get(predictions.index[-1], 0.0))
    return out


def exits(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    raise SystemExit(3)


def strings(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    return pd.Series("0.5", index=predictions.index)


def interrupts(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    raise KeyboardInterrupt


#: whether ``fixable`` still fails; a test sets it false to fix the rule in place
BROKEN = {"fixable": True}


def fixable(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    """Halves every position once fixed; until then exits (a rule fixed in place between runs)."""
    if BROKEN["fixable"]:
        raise SystemExit(3)
    return pd.Series(0.5, index=predictions.index)
