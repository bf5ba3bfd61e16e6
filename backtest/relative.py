"""A strategy measured against buy-and-hold: the verdict (beats, inconclusive, worse, or at the
edge), alpha and beta, and the family-wise confidence level (pure functions of arrays).

Conventions as :mod:`backtest.significance`: simple daily net returns as fractions, 252 trading
days a year, a zero risk-free rate; every p-value is one-sided with the alternative "the strategy
is skilled" (here: alpha > 0). Undefined values are NaN.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from scipy import stats
from statsmodels.regression.linear_model import OLS  # already loaded with backtest.significance

from lstmbt.backtest.metrics import PERIODS_PER_YEAR, cagr
from lstmbt.backtest.resampling import BootInterval, bound_side
from lstmbt.backtest.significance import newey_west_lags, sharpe_diff_interval, sharpe_diff_intervals

VERDICT_WORDS = {"beats": "beats buy-and-hold", "inconclusive": "inconclusive", "worse": "significantly worse",
                 "borderline": "inconclusive (at the edge)"}
"""How every page words each verdict of :func:`verdict`."""

MIN_DAYS = 3
"""Fewer days than this leave the benchmark-relative figures undefined (NaN)."""

EXACT_FIT = 1e-20
"""Residual sum of squares below this share of the total marks an exact fit: alpha_pvalue is NaN."""


def verdict(ci_low: float | None, ci_high: float | None, low_mc_se: float | None = 0.0,
            high_mc_se: float | None = 0.0) -> str | None:
    """The verdict of an interval for ``strategy minus benchmark`` (e.g. the Sharpe difference).

    Parameters
    ----------
    ci_low, ci_high : float or None
        Bounds of the interval, in the units of the difference (annualised Sharpe for the usual use).
    low_mc_se, high_mc_se : float or None
        Monte-Carlo standard errors of the bounds (``backtest.resampling.BootInterval``); 0 or
        None for an interval without one.

    Returns
    -------
    str or None
        ``"beats"`` when the whole interval lies above 0 (``ci_low > 0``), ``"worse"`` when it lies
        below 0 (``ci_high < 0``), ``"inconclusive"`` when it contains or touches 0, each beyond
        Monte-Carlo error (``backtest.resampling.bound_side``); ``"borderline"`` when a bound that
        decides between them lies within Monte-Carlo error of 0, so that the resampling, not the
        data, would pick the word. None when a bound is missing or not finite. Words for each:
        :data:`VERDICT_WORDS`.
    """
    if ci_low is None or ci_high is None or not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return None
    low, high = bound_side(ci_low, low_mc_se), bound_side(ci_high, high_mc_se)
    if low == 1:
        return "beats"
    if high == -1:
        return "worse"
    return "borderline" if low is None or high is None else "inconclusive"


def interval_verdict(interval: BootInterval) -> str | None:
    """:func:`verdict` of a bootstrap interval, with its Monte-Carlo errors (for instance of
    ``backtest.significance.sharpe_diff_interval``)."""
    return verdict(interval.low, interval.high, interval.low_mc_se, interval.high_mc_se)


def family_confidence(m: int, level: float = 0.95) -> float:
    """Bonferroni-adjusted two-sided confidence for ``m`` intervals read together.

    Each interval gets coverage ``1 - (1 - level) / m`` so that all ``m`` cover at once with
    probability at least ``level``. ``m <= 1`` gives ``level`` unchanged. Four models -> 0.9875.
    """
    return 1.0 - (1.0 - level) / max(int(m), 1)


def family_verdict(returns: np.ndarray, bench_returns: np.ndarray, n_tested: int, seed: int = 0,
                   periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, Any]:
    """The verdict keys of one strategy among ``n_tested``: the Sharpe-difference interval against
    the benchmark (:func:`backtest.significance.sharpe_diff_interval`, same seed as the 95% one,
    resampled until its side of 0 does not depend on the seed) at the Bonferroni level
    :func:`family_confidence` of ``n_tested``, and its :func:`verdict`.

    Keys: ``verdict``, ``verdict_ci_low``, ``verdict_ci_high``, the Monte-Carlo standard error of
    each bound (``verdict_ci_low_mc_se``, ``verdict_ci_high_mc_se``) and ``verdict_n_boot``, the
    resamples drawn. ``periods_per_year`` annualises the interval (252 by default)."""
    ci = sharpe_diff_interval(returns, bench_returns, confidence=family_confidence(n_tested), seed=seed,
                              periods_per_year=periods_per_year)
    return _verdict_keys(ci)


def family_verdicts(returns: Mapping[str, np.ndarray], bench_returns: np.ndarray, n_tested: int, seed: int = 0,
                    periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, dict[str, Any]]:
    """:func:`family_verdict` of several strategies on the same days (one regime's), keyed by name,
    from one shared draw of resamples with one block length over every series
    (:func:`backtest.significance.sharpe_diff_intervals`)."""
    cis = sharpe_diff_intervals(dict(returns), bench_returns, family_confidence(n_tested), seed, periods_per_year)
    return {name: _verdict_keys(ci) for name, ci in cis.items()}


def _verdict_keys(ci: BootInterval) -> dict[str, Any]:
    """The verdict keys of one family-wise interval."""
    return {"verdict": interval_verdict(ci), "verdict_ci_low": ci.low, "verdict_ci_high": ci.high,
            "verdict_ci_low_mc_se": ci.low_mc_se, "verdict_ci_high_mc_se": ci.high_mc_se,
            "verdict_n_boot": ci.n_boot}


def benchmark_relative(returns: np.ndarray, bench_returns: np.ndarray, horizon: int = 1,
                       periods_per_year: int = PERIODS_PER_YEAR, *, cash_rate: float = 0.0) -> dict[str, float]:
    """Alpha, beta, information ratio and the beta-matched buy-and-hold CAGR of one strategy.

    Parameters
    ----------
    returns, bench_returns : np.ndarray
        Daily net returns (fractions) of the strategy and of buy-and-hold on the same days; days
        where either is not finite are dropped from every figure.
    horizon : int
        Label horizon in days; the HAC lag is at least ``horizon - 1`` (overlapping positions).
    periods_per_year : int
        Bars a year that alpha, the information ratio and the CAGR are annualised with (252).
    cash_rate : float
        Annual interest (fraction) the cash of the beta-matched book earns, accrued at
        ``cash_rate / 252`` a day as the run's idle cash does (``backtest.cash_rate``).

    Returns
    -------
    dict[str, float]
        ``alpha``: the intercept of the OLS regression ``r_t = alpha_d + beta * b_t + e_t``,
        annualised as ``alpha_d * periods_per_year`` (fraction per year). ``alpha_pvalue``: one-sided (H1
        alpha > 0), from Newey-West (HAC) standard errors with
        :func:`backtest.significance.newey_west_lags` lags. ``beta``: the slope (unitless).
        ``information_ratio``: mean over sample std of the active return ``r - b``, times
        sqrt(periods_per_year). ``beta_matched_bh_cagr``: the CAGR of ``beta * b_t + (1 - beta) * cash``,
        buy-and-hold scaled to the strategy's beta with the rest in cash (fraction per year):
        what the same market risk earned without timing, so the strategy's CAGR above or below
        it is its alpha shown as a growth rate. The regression figures (and so the beta-matched
        CAGR) are NaN for a constant series or fewer than :data:`MIN_DAYS` days; the
        information ratio when the active return is constant.
    """
    r = np.asarray(returns, dtype=np.float64)
    b = np.asarray(bench_returns, dtype=np.float64)
    keep = np.isfinite(r) & np.isfinite(b)
    r, b = r[keep], b[keep]
    out = _alpha_beta(r, b, horizon, periods_per_year)
    active = r - b
    defined = len(active) >= MIN_DAYS and np.ptp(active) > 0
    out["information_ratio"] = (float(np.mean(active) / np.std(active, ddof=1) * math.sqrt(periods_per_year))
                                if defined else math.nan)
    beta = out["beta"]
    matched = beta * b + (1.0 - beta) * cash_rate / PERIODS_PER_YEAR  # cash accrues per day as the run's carry
    out["beta_matched_bh_cagr"] = cagr(matched, periods_per_year) if math.isfinite(beta) else math.nan
    return out


def _alpha_beta(r: np.ndarray, b: np.ndarray, horizon: int, periods_per_year: int) -> dict[str, Any]:
    """Annualised alpha, its one-sided HAC p-value, and beta of ``r`` on ``b``."""
    nan = {"alpha": math.nan, "alpha_pvalue": math.nan, "beta": math.nan}
    if len(r) < MIN_DAYS or np.ptp(r) == 0 or np.ptp(b) == 0:
        return nan
    fit = OLS(r, np.column_stack([np.ones_like(b), b])).fit(
        cov_type="HAC", cov_kwds={"maxlags": newey_west_lags(len(r), horizon)})
    t_alpha = float(fit.tvalues[0])
    dist = stats.t(fit.df_resid) if fit.use_t else stats.norm
    # an exact fit (the strategy is a scaled benchmark, such as an always-long baseline) leaves
    # rounding noise as residuals: its alpha is exact, and a test of it meaningless
    exact = fit.ssr <= EXACT_FIT * float(np.sum((r - r.mean()) ** 2))
    return {"alpha": float(fit.params[0]) * periods_per_year,
            "alpha_pvalue": float(dist.sf(t_alpha)) if math.isfinite(t_alpha) and not exact else math.nan,
            "beta": float(fit.params[1])}
