"""Performance, prediction and significance metrics: pure functions of arrays.

Conventions: returns are simple daily net returns as fractions; annualisation uses 252
trading days (``periods_per_year``: the bars a year of another calendar, e.g. 365 for a portfolio
held on a 7-day calendar); the risk-free rate is 0; drawdowns are negative fractions (-0.57 = 57% below
the peak). Undefined values (a ratio over zero) are NaN.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

PERIODS_PER_YEAR = 252


def total_return(returns: np.ndarray) -> float:
    """Compounded return over the whole period."""
    return float(np.prod(1.0 + np.asarray(returns, dtype=np.float64)) - 1.0)


def cagr(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Compound annual growth rate over ``len(returns) / periods_per_year`` years."""
    years = len(returns) / periods_per_year
    growth = 1.0 + total_return(returns)
    if years == 0:
        return math.nan
    return float(growth ** (1.0 / years) - 1.0) if growth > 0 else -1.0


def ann_volatility(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Sample standard deviation of daily returns times sqrt(periods_per_year), 252 by default."""
    return _sample_std(returns) * math.sqrt(periods_per_year)


def sharpe(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sharpe ratio: mean / sample std of daily returns, times sqrt(periods_per_year)."""
    r = np.asarray(returns, dtype=np.float64)
    sd = _sample_std(r)
    return float(np.mean(r) / sd * math.sqrt(periods_per_year)) if sd > 0 else math.nan


def _sample_std(returns: np.ndarray) -> float:
    """Sample std (ddof=1); exactly 0 for a constant series, NaN for fewer than two values.

    ``np.std`` of a constant series like ``[0.1] * 3`` is ~1e-17, not 0, from rounding in the
    mean; that would turn a zero-volatility Sharpe into ~1e17 instead of NaN.
    """
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return math.nan
    return 0.0 if np.all(r == r[0]) else float(np.std(r, ddof=1))


def sortino(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised Sortino ratio: mean over the downside deviation sqrt(mean(min(r, 0)^2))."""
    r = np.asarray(returns, dtype=np.float64)
    downside = math.sqrt(np.mean(np.minimum(r, 0.0) ** 2)) if len(r) else 0.0
    return float(np.mean(r) / downside * math.sqrt(periods_per_year)) if downside > 0 else math.nan


def max_drawdown(returns: np.ndarray) -> float:
    """Worst peak-to-trough fall of the equity curve that starts at 1, as a negative fraction."""
    return float(np.min(drawdown_curve(returns)))


def calmar(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """CAGR over the absolute max drawdown."""
    mdd = max_drawdown(returns)
    return cagr(returns, periods_per_year) / abs(mdd) if mdd < 0 else math.nan


def exposure(positions: np.ndarray) -> float:
    """Mean |position| over the days: the average share of capital in the market (a constant 0.5 is 0.5)."""
    p = np.asarray(positions, dtype=np.float64)
    return float(np.mean(np.abs(p))) if len(p) else math.nan


def time_invested(positions: np.ndarray) -> float:
    """Share of days with a non-zero position, of any size (a constant 0.5 is 1.0)."""
    p = np.asarray(positions, dtype=np.float64)
    return float(np.mean(p != 0)) if len(p) else math.nan


def turnover(positions: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annual one-way turnover: sum of |position changes| (entry from flat included) per year.

    1.0 means the book was traded once its full value per year; a daily flip long <-> flat is 252.
    """
    p = np.asarray(positions, dtype=np.float64)
    if not len(p):
        return math.nan
    changes = np.abs(np.diff(np.concatenate([[0.0], p]))).sum()
    return float(changes / (len(p) / periods_per_year))


def return_metrics(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, float]:
    """The figures of a daily return series alone: total_return, cagr, ann_volatility, sharpe,
    sortino, max_drawdown and calmar, in that order (the one builder of these keys)."""
    ppy = periods_per_year
    return {
        "total_return": total_return(returns),
        "cagr": cagr(returns, ppy),
        "ann_volatility": ann_volatility(returns, ppy),
        "sharpe": sharpe(returns, ppy),
        "sortino": sortino(returns, ppy),
        "max_drawdown": max_drawdown(returns),
        "calmar": calmar(returns, ppy),
    }


def performance_metrics(returns: np.ndarray, positions: np.ndarray,
                        periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, float]:
    """Return and risk figures of one strategy over its out-of-sample days: ``return_metrics``,
    then ``exposure``, ``time_invested`` and ``turnover`` of its positions."""
    return {**return_metrics(returns, periods_per_year), "exposure": exposure(positions),
            "time_invested": time_invested(positions), "turnover": turnover(positions, periods_per_year)}


def hit_rate(pred_up: np.ndarray, real_up: np.ndarray) -> float:
    """Share of days on which the predicted direction (up or not) equals the realised one."""
    pred_up, real_up = np.asarray(pred_up, dtype=bool), np.asarray(real_up, dtype=bool)
    return float(np.mean(pred_up == real_up)) if len(pred_up) else math.nan


def hit_rate_pvalue(pred_up: np.ndarray, real_up: np.ndarray) -> float:
    """One-sided binomial p-value that the hit rate beats the better constant guess.

    The null hit probability is max(base rate, 1 - base rate): what always-up or always-down
    would score on the same days, so a model cannot look skilled by riding the market's drift.
    """
    pred_up, real_up = np.asarray(pred_up, dtype=bool), np.asarray(real_up, dtype=bool)
    n = len(real_up)
    if n == 0:
        return math.nan
    base = float(np.mean(real_up))
    hits = int(np.sum(pred_up == real_up))
    return float(stats.binomtest(hits, n, max(base, 1.0 - base), alternative="greater").pvalue)


def regression_errors(y_true: np.ndarray, y_pred: np.ndarray, y_naive: np.ndarray,
                      with_mape: bool = False) -> dict[str, float]:
    """RMSE and MAE of the model next to the persistence forecast ``y_naive``; MAPE for prices."""
    y_true, y_pred, y_naive = (np.asarray(a, dtype=np.float64) for a in (y_true, y_pred, y_naive))
    out = {
        "rmse": _rmse(y_true, y_pred),
        "mae": float(np.mean(np.abs(y_true - y_pred))),
        "persistence_rmse": _rmse(y_true, y_naive),
        "persistence_mae": float(np.mean(np.abs(y_true - y_naive))),
    }
    if with_mape:
        out["mape"] = float(np.mean(np.abs((y_true - y_pred) / y_true)))
        out["persistence_mape"] = float(np.mean(np.abs((y_true - y_naive) / y_true)))
    return out


def _rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def classification_scores(y_true: np.ndarray, p_up: np.ndarray, cutoff: float = 0.5) -> dict[str, float]:
    """Scores of up/down probabilities against realised labels (1 = up), class 1 as positive.

    ``accuracy``/``precision``/``recall``/``f1`` use ``p_up > cutoff``; ``roc_auc``, ``log_loss``
    (nats) and ``brier`` score the probabilities themselves.
    """
    from sklearn import metrics as skm

    y_true = np.asarray(y_true).astype(int)
    p_up = np.clip(np.asarray(p_up, dtype=np.float64), 0.0, 1.0)
    pred = (p_up > cutoff).astype(int)
    both = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(skm.accuracy_score(y_true, pred)),
        "precision": float(skm.precision_score(y_true, pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, pred, zero_division=0)),
        "f1": float(skm.f1_score(y_true, pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y_true, p_up)) if both else math.nan,
        "log_loss": float(skm.log_loss(y_true, p_up, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y_true, p_up, pos_label=1)),
    }


def equity_curve(returns: np.ndarray) -> np.ndarray:
    """Equity starting at 1 before the first return: shape (len(returns) + 1,)."""
    return np.concatenate([[1.0], np.cumprod(1.0 + np.asarray(returns, dtype=np.float64))])


def drawdown_curve(returns: np.ndarray) -> np.ndarray:
    """Fall below the running peak of ``equity_curve(returns)``, as negative fractions."""
    equity = equity_curve(returns)
    return equity / np.maximum.accumulate(equity) - 1.0


# ------------------------------------------------------------------------ report series and tables


def trade_stats(trade_returns: np.ndarray, holding_days: np.ndarray) -> dict[str, float]:
    """``win_rate``: share of trades with a positive net return; ``avg_holding_days`` in bars."""
    r = np.asarray(trade_returns, dtype=np.float64)
    days = np.asarray(holding_days, dtype=np.float64)
    if not len(r):
        return {"win_rate": math.nan, "avg_holding_days": math.nan}
    return {"win_rate": float(np.mean(r > 0)), "avg_holding_days": float(np.mean(days))}


def period_returns(returns: pd.Series, freq: str) -> pd.Series:
    """Compounded returns per calendar period: ``freq`` "M" (month) or "Y" (year), indexed by period."""
    r = pd.Series(np.asarray(returns, dtype=np.float64), index=pd.DatetimeIndex(returns.index))
    grouped = r.groupby(r.index.to_period(freq))
    return grouped.apply(lambda x: float(np.prod(1.0 + x.to_numpy()) - 1.0))


def monthly_return_table(returns: pd.Series) -> pd.DataFrame:
    """Compounded monthly returns as a year x month (1..12) table; months without data are NaN."""
    monthly = period_returns(returns, "M")
    table = pd.DataFrame({"year": monthly.index.year, "month": monthly.index.month, "r": monthly.to_numpy()})
    return table.pivot(index="year", columns="month", values="r").reindex(columns=range(1, 13))


def rolling_sharpe(returns: np.ndarray, window: int = 126, periods_per_year: int = PERIODS_PER_YEAR) -> np.ndarray:
    """Annualised Sharpe (``periods_per_year``) over each trailing ``window`` days; NaN before the
    window fills or at zero std."""
    r = pd.Series(np.asarray(returns, dtype=np.float64))
    roll = r.rolling(window)
    sd = roll.std(ddof=1)
    out = roll.mean() / sd.where(sd > 1e-15) * math.sqrt(periods_per_year)
    return out.to_numpy()


def rolling_hit_rate(pred_up: np.ndarray, real_up: np.ndarray, window: int = 63) -> tuple[np.ndarray, np.ndarray]:
    """Trailing ``window``-day hit rate and base rate (share of up days); NaN before the window fills."""
    hits = pd.Series((np.asarray(pred_up, dtype=bool) == np.asarray(real_up, dtype=bool)).astype(float))
    ups = pd.Series(np.asarray(real_up, dtype=float))
    return hits.rolling(window).mean().to_numpy(), ups.rolling(window).mean().to_numpy()


def calibration_curve(y_true: np.ndarray, p_up: np.ndarray, n_bins: int = 10,
                      bins: str = "quantile") -> pd.DataFrame:
    """Reliability table: per p_up bin, its edges, mean p_up, realised up share and count.

    ``bins``: ``"quantile"`` (edges at the quantiles of ``p_up``, so each bin holds about
    ``len / n_bins`` days wherever the probabilities sit; equal edges, from ties, are merged
    into one bin) or ``"uniform"`` (``n_bins`` equal-width bins over [0, 1]). A value on an
    inner edge falls in the upper bin; the last bin includes its upper edge. Non-finite pairs
    and empty bins are dropped. Columns: ``bin_low``, ``bin_high``, ``mean_p``, ``realised``
    (share of ``y_true`` > 0), ``count``, ``realised_se`` (its binomial standard error,
    sqrt(realised (1 - realised) / count)). A calibrated model has ``realised`` close to
    ``mean_p`` in every bin.
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(p_up, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(p)
    y, p = (y[keep] > 0).astype(np.float64), np.clip(p[keep], 0.0, 1.0)
    edges = _calibration_edges(p, n_bins, bins)
    which = np.searchsorted(edges[1:-1], p, side="right")  # bin i holds edges[i] <= p < edges[i + 1]
    frame = pd.DataFrame({"bin": which, "p": p, "y": y}).groupby("bin")
    out = pd.DataFrame({"mean_p": frame["p"].mean(), "realised": frame["y"].mean(), "count": frame["y"].size()})
    out["realised_se"] = np.sqrt(out["realised"] * (1.0 - out["realised"]) / out["count"])
    out.insert(0, "bin_high", edges[np.minimum(out.index + 1, len(edges) - 1)])
    out.insert(0, "bin_low", edges[out.index])
    return out.reset_index(drop=True)


def _calibration_edges(p: np.ndarray, n_bins: int, bins: str) -> np.ndarray:
    """Bin edges, ascending and distinct: quantiles of ``p`` or equal widths over [0, 1]."""
    if bins == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if bins != "quantile":
        raise ValueError(f"bins must be 'quantile' or 'uniform', got {bins!r}")
    if not len(p):
        return np.array([0.0, 1.0])
    return np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))


def confusion_counts(pred_up: np.ndarray, real_up: np.ndarray) -> np.ndarray:
    """2 x 2 counts: rows realised (down, up), columns predicted (down, up)."""
    pred = np.asarray(pred_up, dtype=bool).astype(int)
    real = np.asarray(real_up, dtype=bool).astype(int)
    counts = np.zeros((2, 2), dtype=np.int64)
    np.add.at(counts, (real, pred), 1)
    return counts
