"""backtest.relative: the verdict's states, Bonferroni levels, and alpha/beta against statsmodels.

Expected values are computed here independently: statsmodels' OLS with HAC errors called directly
(lags from the Newey-West rule written out), the information ratio and CAGR from their formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from lstmbt.backtest.relative import VERDICT_WORDS, benchmark_relative, family_confidence, verdict

NAN = float("nan")


@pytest.mark.parametrize("low, high, expected", [
    (0.10, 0.90, "beats"),           # entirely above 0
    (1e-12, 0.5, "beats"),           # just above
    (-0.30, 0.60, "inconclusive"),   # straddles 0
    (0.0, 0.50, "inconclusive"),     # touches 0 from above
    (-0.50, 0.0, "inconclusive"),    # touches 0 from below
    (0.0, 0.0, "inconclusive"),      # a strategy against itself
    (-1.75, -0.67, "worse"),         # entirely below 0 (ridge in the issue)
    (-0.5, -1e-12, "worse"),         # just below
    (NAN, 0.5, None), (-0.5, NAN, None), (NAN, NAN, None), (None, 0.5, None), (0.1, math.inf, None),
])
def test_verdict_at_its_boundaries(low, high, expected):
    assert verdict(low, high) == expected


def test_every_verdict_has_its_words():
    states = {verdict(0.1, 0.2), verdict(-0.1, 0.2), verdict(-0.2, -0.1), verdict(0.01, 0.2, 0.01, 0.01)}
    assert states == set(VERDICT_WORDS)
    assert VERDICT_WORDS["worse"] == "significantly worse" and VERDICT_WORDS["beats"] == "beats buy-and-hold"


@pytest.mark.parametrize("m, expected", [(0, 0.95), (1, 0.95), (2, 0.975), (4, 0.9875), (7, 1 - 0.05 / 7)])
def test_family_confidence_is_bonferroni(m, expected):
    assert family_confidence(m) == pytest.approx(expected, abs=1e-15)
    assert family_confidence(m, level=0.90) == pytest.approx(1 - 0.10 / max(m, 1), abs=1e-15)


def _market(n: int = 1500, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Benchmark returns with volatility clusters, and a 40%-invested strategy with a little alpha."""
    rng = np.random.default_rng(seed)
    vol = 0.01 * np.exp(np.convolve(rng.normal(0, 0.3, n), np.ones(20) / 20, mode="same"))
    bench = 3e-4 + vol * rng.standard_t(5, n) / math.sqrt(5 / 3)
    positions = (rng.random(n) < 0.4).astype(float)
    strategy = positions * bench + 2e-4 + rng.normal(0, 0.002, n)
    return strategy, bench, positions


def _nw_lags(n: int, horizon: int) -> int:
    return max(horizon - 1, int(4 * (n / 100) ** (2 / 9)))  # Newey & West (1994), floor of a positive number


@pytest.mark.parametrize("horizon", [1, 20])
def test_alpha_beta_and_pvalue_match_statsmodels_hac(horizon):
    r, b, _ = _market()
    n = len(r)
    fit = sm.OLS(r, sm.add_constant(b)).fit(cov_type="HAC", cov_kwds={"maxlags": _nw_lags(n, horizon)})
    out = benchmark_relative(r, b, horizon=horizon)
    assert out["alpha"] == pytest.approx(fit.params[0] * 252, rel=1e-10)
    assert out["beta"] == pytest.approx(fit.params[1], rel=1e-10)
    assert out["alpha_pvalue"] == pytest.approx(stats.norm.sf(fit.tvalues[0]), rel=1e-8)
    assert out["alpha_pvalue"] == pytest.approx(fit.pvalues[0] / 2, rel=1e-8)  # one-sided, alpha > 0 here
    assert 0.3 < out["beta"] < 0.5  # 40% invested


def test_more_hac_lags_for_a_longer_horizon_change_the_pvalue():
    r, b, _ = _market()
    assert benchmark_relative(r, b, 20)["alpha_pvalue"] != benchmark_relative(r, b, 1)["alpha_pvalue"]


def test_negative_alpha_has_a_large_one_sided_pvalue():
    r, b, _ = _market()
    out = benchmark_relative(r - 8e-4, b)
    fit = sm.OLS(r - 8e-4, sm.add_constant(b)).fit(cov_type="HAC", cov_kwds={"maxlags": _nw_lags(len(r), 1)})
    assert out["alpha"] < 0 and out["alpha_pvalue"] > 0.5
    assert out["alpha_pvalue"] == pytest.approx(1 - fit.pvalues[0] / 2, rel=1e-8)


def test_information_ratio_and_beta_matched_cagr_by_formula():
    r, b, _ = _market()
    out = benchmark_relative(r, b)
    active = r - b
    assert out["information_ratio"] == pytest.approx(active.mean() / active.std(ddof=1) * math.sqrt(252), rel=1e-12)
    beta = np.polyfit(b, r, 1)[0]  # the OLS slope, as the HAC regression's point estimate
    growth = np.prod(1 + beta * b)  # beta in the market, the rest in cash earning nothing
    assert out["beta_matched_bh_cagr"] == pytest.approx(growth ** (252 / len(b)) - 1, rel=1e-9)
    carried = benchmark_relative(r, b, cash_rate=0.03)["beta_matched_bh_cagr"]
    growth = np.prod(1 + beta * b + (1 - beta) * 0.03 / 252)  # the cash earns the run's cash rate
    assert carried == pytest.approx(growth ** (252 / len(b)) - 1, rel=1e-9)


def test_undefined_cases_are_nan():
    r, b, _ = _market(50)
    flat = benchmark_relative(np.zeros(50), b)  # never invested: nothing to regress
    assert math.isnan(flat["alpha"]) and math.isnan(flat["beta"]) and math.isnan(flat["alpha_pvalue"])
    assert math.isnan(flat["beta_matched_bh_cagr"])  # no beta to match
    short = benchmark_relative(r[:2], b[:2])
    assert all(math.isnan(short[k]) for k in ("alpha", "alpha_pvalue", "beta", "information_ratio"))
    same = benchmark_relative(b, b)  # an always-long baseline is buy-and-hold
    assert same["beta"] == pytest.approx(1.0) and abs(same["alpha"]) < 1e-12
    assert math.isnan(same["alpha_pvalue"]) and math.isnan(same["information_ratio"])
    gap = r.copy()
    gap[5] = np.nan  # a non-finite day is dropped, not propagated
    assert math.isfinite(benchmark_relative(gap, b)["alpha"])
