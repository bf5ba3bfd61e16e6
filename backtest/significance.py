"""Significance of a strategy's skill: pure functions of arrays, nothing global.

Every test asks one question of out-of-sample data and answers with a p-value or an interval:

- hit rate vs the better constant guess: one-sided binomial p-value and a Wilson interval;
- Pesaran-Timmermann (1992): do predicted directions carry information about realised ones?
- Diebold-Mariano (1995): is the model's forecast loss lower than persistence's?
- stationary block bootstrap (Politis & Romano 1994): intervals for the annualised Sharpe ratio
  and for its difference to buy-and-hold;
- probabilistic Sharpe ratio (Bailey & Lopez de Prado 2012).

Conventions: returns are simple daily net returns as fractions; Sharpe ratios are annualised with
``sqrt(252)`` and a zero risk-free rate, exactly as :func:`backtest.metrics.sharpe`, unless a name
says "per period". Every p-value is one-sided with the alternative "the model is skilled", so a
small p-value is evidence of skill and a large one is not. Undefined values are NaN.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from arch.bootstrap import optimal_block_length
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from lstmbt.backtest.metrics import PERIODS_PER_YEAR, hit_rate_pvalue
from lstmbt.backtest.resampling import (NAN_INTERVAL, BootInterval, adaptive_interval, adaptive_intervals, index_stream,
                                        percentile_interval)

N_BOOT = 1000
"""Resamples of the fixed-size bootstraps (SPA, MCS). The Sharpe intervals choose their own number
(:mod:`backtest.resampling`) unless given one."""

MIN_BLOCKS = 10
"""The default block length is capped at ``n / MIN_BLOCKS`` so a resample mixes >= ~10 blocks."""


# ----------------------------------------------------------------------------------- direction


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``hits / n`` (e.g. a hit rate).

    Parameters
    ----------
    hits : int
        Number of successes, ``0 <= hits <= n``.
    n : int
        Number of trials; ``n == 0`` gives ``(nan, nan)``.
    confidence : float
        Two-sided coverage, e.g. 0.95.

    Returns
    -------
    tuple[float, float]
        Lower and upper bound, as fractions in [0, 1].
    """
    if n == 0:
        return math.nan, math.nan
    low, high = proportion_confint(hits, n, alpha=1.0 - confidence, method="wilson")
    return float(low), float(high)


def pesaran_timmermann(pred_up: np.ndarray, real_up: np.ndarray) -> tuple[float, float]:
    """Pesaran-Timmermann (1992) test of directional accuracy.

    Compares the share of correct directions ``P`` with ``P*``, the share expected if predictions
    were independent of outcomes with the same marginal frequencies:
    ``S = (P - P*) / sqrt(Var(P) - Var(P*))``, asymptotically standard normal under the null.

    Parameters
    ----------
    pred_up, real_up : np.ndarray
        Boolean-like arrays of equal length: predicted and realised "up" (True) per day.

    Returns
    -------
    tuple[float, float]
        The statistic ``S`` (positive = more correct directions than chance) and the one-sided
        p-value ``1 - Phi(S)`` (H1: predictions carry directional information). When predictions
        or outcomes never change direction the variance is zero and the test is undefined: the
        statistic is NaN and the p-value 1.0, because a constant forecast has no directional skill
        to detect. An empty input gives ``(nan, nan)``.
    """
    x = np.asarray(pred_up, dtype=bool)
    y = np.asarray(real_up, dtype=bool)
    n = len(y)
    if n == 0:
        return math.nan, math.nan
    p_hit, py, px = float(np.mean(x == y)), float(np.mean(y)), float(np.mean(x))
    p_star = py * px + (1.0 - py) * (1.0 - px)
    var_p = p_star * (1.0 - p_star) / n
    var_p_star = ((2 * py - 1) ** 2 * px * (1 - px) / n + (2 * px - 1) ** 2 * py * (1 - py) / n
                  + 4 * py * px * (1 - py) * (1 - px) / n**2)
    var = var_p - var_p_star
    if not var > 1e-15:
        return math.nan, 1.0
    stat = (p_hit - p_star) / math.sqrt(var)
    return float(stat), float(stats.norm.sf(stat))


# ---------------------------------------------------------------------------------- forecasts


def newey_west_lags(n: int, horizon: int = 1) -> int:
    """HAC truncation lag: ``max(horizon - 1, floor(4 * (n / 100) ** (2 / 9)))``.

    The data-driven rule of Newey & West (1994) for the Bartlett kernel, but never fewer than the
    ``horizon - 1`` lags that overlapping ``horizon``-step forecast errors need. 2400 days -> 8.
    """
    return max(horizon - 1, int(math.floor(4.0 * (n / 100.0) ** (2.0 / 9.0))))


def long_run_variance(d: np.ndarray, lags: int) -> float:
    """Newey-West (Bartlett kernel) long-run variance of a series around its mean.

    ``gamma_0 + 2 * sum_{j=1..lags} (1 - j / (lags + 1)) * gamma_j`` with autocovariances
    ``gamma_j = sum_t (d_t - mean)(d_{t-j} - mean) / n`` (divisor n, no small-sample correction).
    Units: those of ``d`` squared.
    """
    e = np.asarray(d, dtype=np.float64) - np.mean(d)
    n = len(e)
    gammas = np.array([e[j:] @ e[: n - j] / n for j in range(min(lags, n - 1) + 1)])
    weights = 1.0 - np.arange(len(gammas)) / (lags + 1.0)
    return float(gammas[0] + 2.0 * np.sum(weights[1:] * gammas[1:]))


def diebold_mariano(loss_model: np.ndarray, loss_bench: np.ndarray, horizon: int = 1) -> tuple[float, float]:
    """Diebold-Mariano test that the model's expected loss is below the benchmark's.

    The loss differential ``d = loss_model - loss_bench`` (negative = model better) is averaged;
    its variance is the Newey-West long-run variance with :func:`newey_west_lags` lags. The
    statistic ``mean(d) / sqrt(lrv / n)`` is multiplied by the Harvey-Leybourne-Newbold (1997)
    factor ``sqrt((n + 1 - 2h + h(h - 1) / n) / n)`` and compared with a Student t with ``n - 1``
    degrees of freedom (slightly more conservative than the normal in small samples).

    Parameters
    ----------
    loss_model, loss_bench : np.ndarray
        Per-period losses of the two forecasts on the same days (finite, equal length >= 2).
    horizon : int
        Forecast horizon ``h`` in periods (1 = next day).

    Returns
    -------
    tuple[float, float]
        The HLN-adjusted statistic (negative = model better) and the one-sided p-value
        ``P(t_{n-1} <= stat)`` (H1: model loss lower). Identical losses give ``(nan, 1.0)``;
        fewer than two observations ``(nan, nan)``.
    """
    d = np.asarray(loss_model, dtype=np.float64) - np.asarray(loss_bench, dtype=np.float64)
    n = len(d)
    if n < 2:
        return math.nan, math.nan
    if np.all(d == d[0]) and d[0] == 0:
        return math.nan, 1.0
    lrv = max(long_run_variance(d, newey_west_lags(n, horizon)), 0.0)
    hln = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    with np.errstate(divide="ignore"):
        stat = float(np.mean(d) / np.sqrt(lrv / n)) * hln
    return stat, float(stats.t.cdf(stat, df=n - 1))


def dm_test(y_true: np.ndarray, y_pred: np.ndarray, y_bench: np.ndarray,
            loss: str = "squared", horizon: int = 1) -> tuple[float, float]:
    """Diebold-Mariano test of forecast ``y_pred`` against benchmark ``y_bench`` (e.g. persistence).

    Parameters
    ----------
    y_true, y_pred, y_bench : np.ndarray
        Realised values and the two forecasts, in the same units (price or return). Days where any
        of the three is NaN are dropped.
    loss : {"squared", "absolute"}
        Per-period loss of a forecast error ``e = y_true - y``: ``e ** 2`` or ``|e|``.
    horizon : int
        Forecast horizon in periods.

    Returns
    -------
    tuple[float, float]
        See :func:`diebold_mariano`: statistic (negative = model better) and one-sided p-value.
    """
    if loss not in ("squared", "absolute"):
        raise ValueError(f"loss must be 'squared' or 'absolute', got {loss!r}; pick one of the two")
    y, a, b = (np.asarray(v, dtype=np.float64) for v in (y_true, y_pred, y_bench))
    keep = np.isfinite(y) & np.isfinite(a) & np.isfinite(b)
    fn = np.square if loss == "squared" else np.abs
    return diebold_mariano(fn(y[keep] - a[keep]), fn(y[keep] - b[keep]), horizon)


# ------------------------------------------------------------------------------------ Sharpe


def default_block_length(*series: np.ndarray) -> int:
    """Mean block length (days) for the stationary bootstrap of Sharpe ratios of ``series``.

    The largest Politis-White (2004, corrected 2009) estimate over each series and its square, so
    that volatility clustering, which drives the sampling error of the standard deviation, is kept
    inside blocks. Constant series are skipped. Rounded up, at least 1, and at most
    ``n / MIN_BLOCKS`` so a resample is still made of ~10 or more blocks.
    """
    cols = [np.asarray(s, dtype=np.float64) for s in series]
    n = len(cols[0])
    data = np.column_stack(cols + [c**2 for c in cols])
    data = data[:, np.ptp(data, axis=0) > 0]
    if n < 2 * MIN_BLOCKS or data.shape[1] == 0:
        return 1
    estimate = float(np.nanmax(optimal_block_length(data)["stationary"].to_numpy()))
    cap = n // MIN_BLOCKS
    return int(min(max(math.ceil(estimate), 1), cap)) if math.isfinite(estimate) else 1


def bootstrap_indices(n: int, n_boot: int, block: float, seed: int) -> np.ndarray:
    """Stationary-bootstrap resample positions, shape (n_boot, n), from a local seeded RNG.

    Blocks start at uniform positions, wrap around the end, and have geometric lengths with mean
    ``block`` days (``arch.bootstrap.StationaryBootstrap``). Same arguments -> same indices: the
    first ``n_boot`` rows of the stream the adaptive intervals draw from
    (:func:`backtest.resampling.index_stream`).
    """
    return index_stream(n, block, seed)(n_boot)


def _sharpe_rows(x: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> np.ndarray:
    """Annualised Sharpe of each row of ``x`` (as ``metrics.sharpe``), defined for every row.

    A constant row has no volatility: its Sharpe is 0 when its returns are 0 (a resample of days
    without a position: it earned nothing, for no risk) and +/-inf otherwise (a sure gain or loss,
    such as the cash rate alone). No resample is ever left out, since leaving out the days a
    strategy was flat would keep only its invested days and narrow its interval. The variance
    comes from row sums (one pass each, several times faster than ``np.std`` on 32,000 rows); a
    row whose variance is below 1e-12 of its mean square is constant up to that rounding.
    """
    n = x.shape[1]
    total, squares = x.sum(axis=1), np.einsum("ij,ij->i", x, x)
    var = np.maximum(squares - total * total / n, 0.0) / (n - 1)
    flat = var <= 1e-12 * squares / n
    with np.errstate(divide="ignore", invalid="ignore"):
        out = total / n / np.sqrt(var) * math.sqrt(periods_per_year)
    out[flat] = np.where(total[flat] == 0, 0.0, np.copysign(np.inf, total[flat]))
    return out


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Equal-tailed percentile interval of all ``values`` (linear interpolation, none dropped)."""
    return percentile_interval(values, confidence).bounds


def _finite_returns(returns: np.ndarray, name: str) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or not np.all(np.isfinite(r)):
        raise ValueError(f"{name} must be a 1-d array of finite daily returns; drop or fill NaN days first")
    return r


def sharpe_interval(returns: np.ndarray, confidence: float = 0.95, n_boot: int | None = None,
                    seed: int = 0, block: float | None = None,
                    periods_per_year: int = PERIODS_PER_YEAR) -> BootInterval:
    """Stationary block bootstrap percentile interval for the annualised Sharpe ratio.

    Parameters
    ----------
    returns : np.ndarray
        Daily net returns as fractions (finite).
    confidence : float
        Two-sided coverage, e.g. 0.95 -> the 2.5% and 97.5% bootstrap percentiles.
    n_boot : int, optional
        A fixed number of resamples. None (default): as many as it takes for the interval's side
        of 0 not to depend on the seed (:mod:`backtest.resampling`: 1,000 to 32,000 at 95%).
    seed : int
        Seed of the local ``np.random.default_rng``; the interval is a pure function of the inputs.
    block : float, optional
        Mean block length in days; default :func:`default_block_length`.
    periods_per_year : int
        Bars a year the Sharpe ratio is annualised with (252; 365 on a 7-day calendar).

    Returns
    -------
    BootInterval
        Bounds of the annualised Sharpe ratio, their Monte-Carlo errors and the resamples used.
        Every resample counts (:func:`_sharpe_rows`). NaN bounds for a constant series or fewer
        than two days.
    """
    r = _finite_returns(returns, "returns")
    if len(r) < 2 or np.ptp(r) == 0:
        return NAN_INTERVAL
    return adaptive_interval(lambda idx: _sharpe_rows(r[idx], periods_per_year), len(r),
                             block or default_block_length(r), seed, confidence, n_boot)


def sharpe_diff_interval(returns: np.ndarray, bench_returns: np.ndarray, confidence: float = 0.95,
                         n_boot: int | None = None, seed: int = 0, block: float | None = None,
                         periods_per_year: int = PERIODS_PER_YEAR) -> BootInterval:
    """Bootstrap interval for ``sharpe(returns) - sharpe(bench_returns)`` (annualised).

    Both series are resampled with the same stationary-bootstrap indices, so their dependence
    (a strategy is often long the benchmark) is kept. Positive = the strategy beats the benchmark.
    Arguments and result as :func:`sharpe_interval`; the default block length considers both
    series. A series against itself gives exactly ``[0.0, 0.0]`` with no error. A resample in
    which both are sure gains (or both sure losses) differs by 0.
    """
    r = _finite_returns(returns, "returns")
    b = _finite_returns(bench_returns, "bench_returns")
    if len(r) != len(b):
        raise ValueError(f"returns ({len(r)} days) and bench_returns ({len(b)} days) must cover the same days")
    if len(r) < 2 or np.ptp(r) == 0 or np.ptp(b) == 0:
        return NAN_INTERVAL

    return adaptive_interval(_sharpe_diff_rows(r, b, periods_per_year), len(r), block or default_block_length(r, b),
                             seed, confidence, n_boot)


def sharpe_diff_intervals(returns: dict[str, np.ndarray], bench_returns: np.ndarray, confidence: float = 0.95,
                          seed: int = 0, periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, BootInterval]:
    """:func:`sharpe_diff_interval` of several strategies against one benchmark on the same days,
    with one block length for all (:func:`default_block_length` of every series) and each resample
    drawn once for all (``backtest.resampling.adaptive_intervals``). A strategy or benchmark
    that is flat, or fewer than two days, gives the NaN interval."""
    b = _finite_returns(bench_returns, "bench_returns")
    series = {name: _finite_returns(r, "returns") for name, r in returns.items()}
    if any(len(r) != len(b) for r in series.values()):
        raise ValueError("every strategy's returns must cover the benchmark's days")
    out = {name: NAN_INTERVAL for name, r in series.items() if len(r) < 2 or np.ptp(r) == 0 or np.ptp(b) == 0}
    tested = {name: r for name, r in series.items() if name not in out}
    if tested:
        block = default_block_length(b, *tested.values())
        out |= adaptive_intervals({name: _sharpe_diff_rows(r, b, periods_per_year) for name, r in tested.items()},
                                  len(b), block, seed, confidence)
    return {name: out[name] for name in series}


def _sharpe_diff_rows(r: np.ndarray, b: np.ndarray, periods_per_year: int) -> Callable[[np.ndarray], np.ndarray]:
    """Resample positions -> Sharpe of ``r`` minus Sharpe of ``b`` per resample (a flat pair: 0)."""

    def diff(idx: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            d = _sharpe_rows(r[idx], periods_per_year) - _sharpe_rows(b[idx], periods_per_year)
        return np.nan_to_num(d, nan=0.0, posinf=np.inf, neginf=-np.inf)

    return diff


def sharpe_ci(returns: np.ndarray, confidence: float = 0.95, n_boot: int | None = None,
              seed: int = 0, block: float | None = None,
              periods_per_year: int = PERIODS_PER_YEAR) -> tuple[float, float]:
    """``(low, high)`` of :func:`sharpe_interval` (same arguments)."""
    return sharpe_interval(returns, confidence, n_boot, seed, block, periods_per_year).bounds


def sharpe_diff_ci(returns: np.ndarray, bench_returns: np.ndarray, confidence: float = 0.95,
                   n_boot: int | None = None, seed: int = 0, block: float | None = None,
                   periods_per_year: int = PERIODS_PER_YEAR) -> tuple[float, float]:
    """``(low, high)`` of :func:`sharpe_diff_interval` (same arguments); decide a word from the
    interval itself (``backtest.relative.interval_verdict``), which knows its Monte-Carlo error."""
    return sharpe_diff_interval(returns, bench_returns, confidence, n_boot, seed, block, periods_per_year).bounds


def probabilistic_sharpe_ratio(returns: np.ndarray, benchmark_sharpe_ann: float = 0.0) -> float:
    """Probabilistic Sharpe ratio of Bailey & Lopez de Prado (2012).

    ``PSR = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR ** 2))`` with the
    per-period (daily, not annualised) Sharpe ``SR = mean / std(ddof=1)``, the benchmark converted
    to per period ``SR* = benchmark_sharpe_ann / sqrt(252)``, and the sample skewness ``g3`` and
    kurtosis ``g4`` (not excess: 3 for a normal), both with divisor n.

    Parameters
    ----------
    returns : np.ndarray
        Daily net returns as fractions.
    benchmark_sharpe_ann : float
        Annualised Sharpe ratio to beat; 0 asks "is the true Sharpe positive?".

    Returns
    -------
    float
        Probability in [0, 1] that the true Sharpe exceeds the benchmark (1 - PSR is a one-sided
        p-value). NaN for fewer than three days or zero variance.
    """
    r = np.asarray(returns, dtype=np.float64)
    n = len(r)
    if n < 3 or np.ptp(r) == 0:
        return math.nan
    sr = float(np.mean(r) / np.std(r, ddof=1))
    sr_star = benchmark_sharpe_ann / math.sqrt(PERIODS_PER_YEAR)
    g3, g4 = float(stats.skew(r)), float(stats.kurtosis(r, fisher=False))
    denom = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr**2
    if not denom > 0:
        return math.nan
    return float(stats.norm.cdf((sr - sr_star) * math.sqrt(n - 1) / math.sqrt(denom)))


# ---------------------------------------------------------------------------------- metrics.json


def sharpe_figures(returns: np.ndarray, bench_returns: np.ndarray | None = None, *, n_boot: int | None = None,
                   seed: int = 0, periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, float]:
    """The Sharpe keys of one strategy in ``metrics.json``, in this order: ``sharpe_ci_low`` /
    ``sharpe_ci_high`` (``sharpe_ci``), with ``bench_returns`` ``sharpe_diff_ci_low`` /
    ``sharpe_diff_ci_high`` (``sharpe_diff_ci``, strategy minus benchmark), then ``psr`` (per
    bar, so no annualisation). ``seed`` seeds both bootstraps; ``periods_per_year`` annualises them."""
    low, high = sharpe_ci(returns, n_boot=n_boot, seed=seed, periods_per_year=periods_per_year)
    out = {"sharpe_ci_low": low, "sharpe_ci_high": high}
    if bench_returns is not None:
        out["sharpe_diff_ci_low"], out["sharpe_diff_ci_high"] = sharpe_diff_ci(
            returns, bench_returns, n_boot=n_boot, seed=seed, periods_per_year=periods_per_year)
    out["psr"] = probabilistic_sharpe_ratio(returns)
    return out


def significance_metrics(returns: np.ndarray, bench_returns: np.ndarray, pred_up: np.ndarray,
                         real_up: np.ndarray, *, y_true: np.ndarray | None = None,
                         y_pred: np.ndarray | None = None, y_naive: np.ndarray | None = None,
                         horizon: int = 1, n_boot: int | None = None, seed: int = 0,
                         periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, float]:
    """The significance keys of one strategy in ``metrics.json`` (95% intervals, fractions).

    ``hit_rate_pvalue`` (one-sided binomial vs max(base rate, 1 - base rate)), ``hit_rate_ci_low``
    / ``hit_rate_ci_high`` (Wilson), ``pt_pvalue`` (Pesaran-Timmermann, one-sided),
    ``sharpe_ci_low`` / ``sharpe_ci_high`` (annualised, stationary bootstrap),
    ``sharpe_diff_ci_low`` / ``sharpe_diff_ci_high`` (strategy minus ``bench_returns``), ``psr``
    (probability that the true Sharpe is > 0), and, only when ``y_true``, ``y_pred`` and
    ``y_naive`` (persistence) are all given, ``dm_pvalue`` (squared loss) and ``dm_pvalue_abs``
    (absolute loss), one-sided Diebold-Mariano with H1 "model beats persistence".
    ``seed`` seeds both bootstraps; ``periods_per_year`` annualises the Sharpe intervals; NaN where
    a value is undefined (e.g. no position ever held).
    """
    pred, real = np.asarray(pred_up, dtype=bool), np.asarray(real_up, dtype=bool)
    hit_low, hit_high = wilson_interval(int(np.sum(pred == real)), len(real))
    out = {
        "hit_rate_pvalue": hit_rate_pvalue(pred, real),
        "hit_rate_ci_low": hit_low,
        "hit_rate_ci_high": hit_high,
        "pt_pvalue": pesaran_timmermann(pred, real)[1],
        **sharpe_figures(returns, bench_returns, n_boot=n_boot, seed=seed, periods_per_year=periods_per_year),
    }
    if y_true is not None and y_pred is not None and y_naive is not None:
        out["dm_pvalue"] = dm_test(y_true, y_pred, y_naive, "squared", horizon)[1]
        out["dm_pvalue_abs"] = dm_test(y_true, y_pred, y_naive, "absolute", horizon)[1]
    return out
