"""The deflated Sharpe ratio (Bailey & Lopez de Prado 2014): how much of the best of several trials'
Sharpe is luck. Pure functions of arrays.

The probabilistic Sharpe ratio of the selected trial against ``SR0``, the Sharpe the best of ``N``
skill-less trials is expected to show by luck alone, given how much the trials' Sharpe ratios vary.
A run uses it for the best seed of a seed ensemble (``backtest.seeds``), a sweep for its best row
(``backtest.campaign``, which imports it from here: the core never imports the campaign).

Conventions: returns are simple daily net returns as fractions; Sharpe ratios are per period
(daily, ``mean / std(ddof=1)``, risk-free rate 0), not annualised, unless a name ends in ``_ann``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from lstmbt.backtest.metrics import PERIODS_PER_YEAR
from lstmbt.backtest.significance import probabilistic_sharpe_ratio

EULER_GAMMA = 0.5772156649015329
"""The Euler-Mascheroni constant of the expected-maximum formula."""


def expected_max_sharpe(n_trials: int, sharpe_var: float) -> float:
    """``SR0``: the expected maximum of ``n_trials`` Sharpe estimates of skill-less strategies.

    ``SR0 = sqrt(V) * ((1 - g) * Phi^-1(1 - 1/N) + g * Phi^-1(1 - 1/(N e)))`` with the Euler-
    Mascheroni constant ``g`` (Bailey & Lopez de Prado 2014, eq. 2; the true Sharpe is 0 for all).

    Parameters
    ----------
    n_trials : int
        Number of independent trials N the best was selected from, >= 2.
    sharpe_var : float
        Variance V of the trials' Sharpe ratio estimates, in the units of those ratios squared
        (per period here), >= 0.

    Returns
    -------
    float
        SR0 in the units of ``sqrt(sharpe_var)``.
    """
    if n_trials < 2:
        raise ValueError(f"the expected maximum Sharpe needs at least 2 trials, got {n_trials}")
    if not sharpe_var >= 0:
        raise ValueError(f"sharpe_var must be a variance >= 0, got {sharpe_var!r}")
    z = stats.norm.ppf
    return math.sqrt(sharpe_var) * ((1 - EULER_GAMMA) * z(1 - 1 / n_trials)
                                    + EULER_GAMMA * z(1 - 1 / (n_trials * math.e)))


def deflated_sharpe_ratio(returns: np.ndarray, n_trials: int, sharpe_var: float) -> float:
    """Deflated Sharpe ratio of the selected trial's daily ``returns`` (Bailey & Lopez de Prado 2014).

    The probabilistic Sharpe ratio (``backtest.significance.probabilistic_sharpe_ratio``, which
    accounts for the trial's length, skew and kurtosis) against the benchmark
    :func:`expected_max_sharpe` of ``n_trials`` and ``sharpe_var``.

    Parameters
    ----------
    returns : np.ndarray
        Daily net returns (fractions) of the trial that was selected.
    n_trials : int
        How many trials it was selected from (>= 2); every seed of every candidate counts.
    sharpe_var : float
        Variance across the trials of their per-period (daily) Sharpe ratios.

    Returns
    -------
    float
        Probability in [0, 1] that the selected trial's true Sharpe is above what the best of
        ``n_trials`` skill-less trials would show; >= 0.95 is evidence of skill after the search.
        NaN when the PSR is undefined (fewer than three days, or no variance).
    """
    sr0 = expected_max_sharpe(n_trials, sharpe_var)
    return probabilistic_sharpe_ratio(returns, benchmark_sharpe_ann=sr0 * math.sqrt(PERIODS_PER_YEAR))


def sharpe_per_period(returns: np.ndarray) -> np.ndarray:
    """Daily Sharpe ratio of each column of a (T, N) matrix; 0 where a column does not vary."""
    r = np.asarray(returns, dtype=np.float64)
    sd = r.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = r.mean(axis=0) / sd
    return np.where(sd > 0, out, 0.0)


def deflate_best(trials: np.ndarray, best: int, periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, float]:
    """The deflated Sharpe of column ``best`` of the (T, N) daily returns ``trials``, selected among all N.

    Returns
    -------
    dict[str, float]
        ``n_trials`` (N), ``sharpe_var`` (sample variance, ddof=1, of the columns' daily Sharpe),
        ``sr0_ann`` (:func:`expected_max_sharpe`, annualised with ``periods_per_year``) and ``dsr``
        (:func:`deflated_sharpe_ratio`); NaN figures with fewer than 2 columns.
    """
    m = np.asarray(trials, dtype=np.float64)
    n = m.shape[1]
    if n < 2:
        return {"n_trials": n, "sharpe_var": math.nan, "sr0_ann": math.nan, "dsr": math.nan}
    var = float(np.var(sharpe_per_period(m), ddof=1))
    return {"n_trials": n, "sharpe_var": var, "sr0_ann": expected_max_sharpe(n, var) * math.sqrt(periods_per_year),
            "dsr": deflated_sharpe_ratio(m[:, best], n, var)}


__all__ = ["expected_max_sharpe", "deflated_sharpe_ratio", "sharpe_per_period", "deflate_best", "EULER_GAMMA"]
