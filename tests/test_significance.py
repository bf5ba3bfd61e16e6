"""Golden values and size/power checks for backtest.significance.

Every expected value is computed here independently (a closed formula written out, a published
table, statsmodels' HAC regression, arch's own bootstrap interval), never by calling the function
under test. The size checks use fixed seeds, so they are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from arch.bootstrap import StationaryBootstrap
from arch.bootstrap.base import stationary_bootstrap_sample
from scipy import stats

from lstmbt.backtest import significance as sig
from lstmbt.backtest.metrics import hit_rate_pvalue, sharpe

SIGNIFICANCE_KEYS = {
    "hit_rate_pvalue", "hit_rate_ci_low", "hit_rate_ci_high", "pt_pvalue", "sharpe_ci_low",
    "sharpe_ci_high", "sharpe_diff_ci_low", "sharpe_diff_ci_high", "psr",
}


# ------------------------------------------------------------------------------------ Wilson


@pytest.mark.parametrize("hits, n", [(7, 10), (81, 263), (0, 20), (20, 20), (1234, 2400)])
def test_wilson_matches_closed_formula(hits, n):
    # (p + z^2 / 2n +- z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n)
    z = stats.norm.ppf(0.975)
    p = hits / n
    centre = p + z**2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    low, high = sig.wilson_interval(hits, n)
    assert low == pytest.approx((centre - half) / (1 + z**2 / n), abs=1e-12)
    assert high == pytest.approx((centre + half) / (1 + z**2 / n), abs=1e-12)


@pytest.mark.parametrize("hits, n, low, high", [
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table II, method 3 (score, no continuity)
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_published_table(hits, n, low, high):
    got = sig.wilson_interval(hits, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_confidence_and_empty():
    assert sig.wilson_interval(50, 100, 0.99)[0] < sig.wilson_interval(50, 100, 0.95)[0]
    assert all(math.isnan(v) for v in sig.wilson_interval(0, 0))


# ----------------------------------------------------------------------------- Pesaran-Timmermann


def _directions(up_up: int, up_down: int, down_up: int, down_down: int) -> tuple[np.ndarray, np.ndarray]:
    """(pred_up, real_up) with the given counts of (realised, predicted) pairs."""
    real = [True] * (up_up + up_down) + [False] * (down_up + down_down)
    pred = [True] * up_up + [False] * up_down + [True] * down_up + [False] * down_down
    return np.array(pred), np.array(real)


def test_pesaran_timmermann_hand_example():
    # 2x2 table, n = 20: realised up & predicted up 8, up & down 3, down & up 2, down & down 7.
    #   P  = (8 + 7) / 20 = 0.75; Py = 11 / 20 = 0.55 (realised up); Px = 10 / 20 = 0.5 (predicted up)
    #   P* = Py Px + (1 - Py)(1 - Px) = 0.275 + 0.225 = 0.5
    #   Var(P)  = P* (1 - P*) / n = 0.25 / 20 = 0.0125
    #   Var(P*) = (2Py - 1)^2 Px(1 - Px) / n + (2Px - 1)^2 Py(1 - Py) / n + 4 Py Px (1-Py)(1-Px) / n^2
    #           = 0.01 * 0.25 / 20 + 0 + 4 * 0.061875 / 400 = 0.000125 + 0.00061875 = 0.00074375
    #   S = (0.75 - 0.5) / sqrt(0.0125 - 0.00074375) = 0.25 / sqrt(0.01175625)
    pred, real = _directions(8, 3, 2, 7)
    stat, p = sig.pesaran_timmermann(pred, real)
    expected = 0.25 / math.sqrt(0.01175625)
    assert stat == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(2.305715, abs=1e-6)  # sqrt(0.01175625) = 0.1084262
    assert p == pytest.approx(stats.norm.sf(expected), rel=1e-12)


def test_pesaran_timmermann_asymmetric_margins():
    # up_up 30, up_down 10, down_up 25, down_down 35, n = 100
    #   P = 0.65, Py = 0.40, Px = 0.55, P* = 0.22 + 0.27 = 0.49
    #   Var(P) = 0.49 * 0.51 / 100 = 0.002499
    #   Var(P*) = 0.04 * 0.2475 / 100 + 0.01 * 0.24 / 100 + 4 * 0.4 * 0.55 * 0.6 * 0.45 / 10000
    #           = 0.000099 + 0.000024 + 0.00002376 = 0.00014676
    pred, real = _directions(30, 10, 25, 35)
    stat, _ = sig.pesaran_timmermann(pred, real)
    assert stat == pytest.approx(0.16 / math.sqrt(0.002499 - 0.00014676), rel=1e-12)


def test_pesaran_timmermann_wrong_way_round_is_not_skill():
    pred, real = _directions(3, 8, 7, 2)  # mostly wrong: negative statistic, large p-value
    stat, p = sig.pesaran_timmermann(pred, real)
    assert stat < 0 and p > 0.95


def test_pesaran_timmermann_constant_forecast_has_no_skill():
    real = np.random.default_rng(0).random(100) > 0.4
    stat, p = sig.pesaran_timmermann(np.ones(100, dtype=bool), real)
    assert math.isnan(stat) and p == 1.0
    stat, p = sig.pesaran_timmermann(real, np.zeros(100, dtype=bool))  # outcomes never go up
    assert math.isnan(stat) and p == 1.0
    assert all(math.isnan(v) for v in sig.pesaran_timmermann(np.array([]), np.array([])))


# ------------------------------------------------------------------------------- Diebold-Mariano


def _ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n)
    out = np.empty(n)
    out[0] = e[0]
    for t in range(1, n):
        out[t] = phi * out[t - 1] + e[t]
    return out


def test_newey_west_lags():
    # floor(4 (n / 100)^(2/9)): n = 100 -> 4; n = 2400 -> floor(4 * 24^(2/9)) = floor(8.10) = 8
    assert sig.newey_west_lags(100) == 4
    assert sig.newey_west_lags(2400) == 8
    assert sig.newey_west_lags(100, horizon=10) == 9  # overlapping 10-step errors need 9 lags


@pytest.mark.parametrize("horizon", [1, 3, 12])
def test_diebold_mariano_matches_statsmodels_hac(horizon):
    n = 300
    loss_model = _ar1(n, 0.5, 1) ** 2
    loss_bench = _ar1(n, 0.5, 2) ** 2 + 0.2
    d = loss_model - loss_bench
    lags = max(horizon - 1, math.floor(4 * (n / 100) ** (2 / 9)))  # 5 for h <= 6, 11 for h = 12
    fit = sm.OLS(d, np.ones(n)).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False})
    hln = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    expected = float(fit.tvalues[0]) * hln
    stat, p = sig.diebold_mariano(loss_model, loss_bench, horizon)
    assert stat == pytest.approx(expected, rel=1e-10)
    assert p == pytest.approx(stats.t.cdf(expected, df=n - 1), rel=1e-10)
    assert stat < 0  # the benchmark's loss was shifted up by 0.2: the model is better


def test_dm_test_losses_and_nan_days():
    rng = np.random.default_rng(5)
    y = rng.normal(size=200)
    a, b = y + rng.normal(0, 0.5, 200), y + rng.standard_t(3, 200)
    sq = sig.diebold_mariano((y - a) ** 2, (y - b) ** 2)
    ab = sig.diebold_mariano(np.abs(y - a), np.abs(y - b))
    assert sig.dm_test(y, a, b) == pytest.approx(sq, rel=1e-12)
    assert sig.dm_test(y, a, b, loss="absolute") == pytest.approx(ab, rel=1e-12)
    y_gap = np.concatenate([y, [np.nan]])
    assert sig.dm_test(y_gap, np.append(a, 1.0), np.append(b, 1.0)) == pytest.approx(sq, rel=1e-12)
    with pytest.raises(ValueError, match="squared"):
        sig.dm_test(y, a, b, loss="pinball")


def test_diebold_mariano_identical_forecasts():
    loss = np.random.default_rng(0).random(50)
    stat, p = sig.diebold_mariano(loss, loss)
    assert math.isnan(stat) and p == 1.0


# ------------------------------------------------------------------------------------- PSR


def test_psr_matches_formula_by_hand():
    r = np.random.default_rng(11).standard_t(4, 500) * 0.01 + 0.0008  # fat tails
    n, mu = len(r), r.mean()
    m2, m3, m4 = (np.mean((r - mu) ** k) for k in (2, 3, 4))
    g3, g4 = m3 / m2**1.5, m4 / m2**2
    sr = mu / math.sqrt(np.sum((r - mu) ** 2) / (n - 1))  # per day, ddof = 1
    for bench_ann in (0.0, 0.5):
        sr_star = bench_ann / math.sqrt(252)
        z = (sr - sr_star) * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
        assert sig.probabilistic_sharpe_ratio(r, bench_ann) == pytest.approx(stats.norm.cdf(z), rel=1e-12)
    assert g4 > 3.5  # the series really has fat tails, so the kurtosis term matters


def test_psr_undefined_and_direction():
    assert math.isnan(sig.probabilistic_sharpe_ratio(np.zeros(100)))
    assert math.isnan(sig.probabilistic_sharpe_ratio(np.array([0.01, 0.02])))
    r = np.random.default_rng(2).normal(0.001, 0.01, 1000)
    assert sig.probabilistic_sharpe_ratio(-r) < 0.5 < sig.probabilistic_sharpe_ratio(r)


# -------------------------------------------------------------------------------- bootstrap


R = np.random.default_rng(3).normal(0.0005, 0.01, 300)


def test_sharpe_ci_is_arch_sampler_rows_and_numpy_percentiles():
    # each resample is arch's stationary sampler on the batch's random numbers, in order
    rng = np.random.default_rng(7)
    starts, uniform = rng.integers(0, len(R), (1000, len(R)), dtype=np.int64), rng.random((1000, len(R)))
    rows = [stationary_bootstrap_sample(starts[k], uniform[k], 1 / 5) for k in range(200)]
    expected = np.percentile([sharpe(R[i]) for i in rows], [2.5, 97.5])
    assert sig.sharpe_ci(R, n_boot=200, seed=7, block=5) == pytest.approx(tuple(expected), rel=1e-12)


def test_sharpe_ci_agrees_with_arch_conf_int_within_monte_carlo_error():
    # arch's own bootstrap loop and percentile interval, 20,000 resamples each: the same distribution
    bs = StationaryBootstrap(5, R, seed=np.random.default_rng(7))
    expected = bs.conf_int(sharpe, reps=20_000, method="percentile", size=0.95).ravel()
    ci = sig.sharpe_interval(R, n_boot=20_000, seed=7, block=5)
    assert ci.bounds == pytest.approx(tuple(expected), abs=5 * max(ci.low_mc_se, ci.high_mc_se) * math.sqrt(2))


def test_sharpe_ci_huge_block_collapses_on_point_sharpe():
    # mean block 1e9 days: every resample is a circular shift of the whole series -> same Sharpe
    low, high = sig.sharpe_ci(R, n_boot=50, seed=0, block=1e9)
    point = sharpe(R)
    assert low - 1e-9 <= point <= high + 1e-9
    assert high - low < 1e-9


def test_sharpe_ci_deterministic_and_seeded():
    assert sig.sharpe_ci(R, n_boot=200, seed=1) == sig.sharpe_ci(R, n_boot=200, seed=1)
    assert sig.sharpe_ci(R, n_boot=200, seed=1) != sig.sharpe_ci(R, n_boot=200, seed=2)
    low, high = sig.sharpe_ci(R, n_boot=200, seed=1)
    assert low < sharpe(R) < high


def test_sharpe_diff_ci_of_series_against_itself_is_zero():
    assert sig.sharpe_diff_ci(R, R.copy(), n_boot=200, seed=0) == (0.0, 0.0)


def test_sharpe_diff_ci_sign():
    bench = np.random.default_rng(4).normal(0.0, 0.01, 2000)
    better = bench + 0.002  # same risk, 0.2% more per day: Sharpe difference ~ +3.2
    low, high = sig.sharpe_diff_ci(better, bench, n_boot=300, seed=0)
    assert 0 < low < sharpe(better) - sharpe(bench) < high


def test_sharpe_ci_undefined_and_bad_input():
    assert all(math.isnan(v) for v in sig.sharpe_ci(np.zeros(50)))
    assert all(math.isnan(v) for v in sig.sharpe_diff_ci(np.zeros(50), R[:50]))
    with pytest.raises(ValueError, match="finite"):
        sig.sharpe_ci(np.array([0.01, np.nan, 0.02]))
    with pytest.raises(ValueError, match="same days"):
        sig.sharpe_diff_ci(R, R[:-1])


def test_default_block_length_sees_volatility_clustering():
    iid = np.random.default_rng(0).normal(0, 0.01, 2000)
    vol = np.repeat(np.random.default_rng(1).choice([0.005, 0.03], 20), 100)  # 100-day regimes
    clustered = np.random.default_rng(2).normal(0, 1, 2000) * vol
    assert sig.default_block_length(iid) <= 3
    assert sig.default_block_length(clustered) > 10
    assert sig.default_block_length(clustered) <= 2000 // sig.MIN_BLOCKS
    assert sig.default_block_length(np.zeros(100)) == 1


def test_sharpe_ci_coverage_on_iid_normal_returns():
    # true annualised Sharpe 0.0005 / 0.01 * sqrt(252) ~ 0.79; 100 replicates of 500 days
    true_sharpe = 0.05 * math.sqrt(252)
    covered = 0
    for seed in range(100):
        r = np.random.default_rng(1000 + seed).normal(0.0005, 0.01, 500)
        low, high = sig.sharpe_ci(r, n_boot=300, seed=seed)
        covered += low <= true_sharpe <= high
    assert 88 <= covered <= 99


# ------------------------------------------------------------------------- metrics.json keys


def _random_walk_case(seed: int, n: int = 1000) -> dict[str, np.ndarray]:
    """Driftless random walk, random long/flat positions, a noisy persistence-like price forecast."""
    rng = np.random.default_rng(seed)
    ret = rng.normal(0.0, 0.01, n)
    price = 100 * np.cumprod(1 + ret)
    pred_up = rng.random(n) > 0.5
    naive = np.concatenate([[100.0], price[:-1]])
    return {"ret": ret, "strat": ret * pred_up, "pred_up": pred_up, "real_up": ret > 0,
            "price": price, "naive": naive, "pred": naive * (1 + rng.normal(0, 0.005, n))}


def test_significance_metrics_keys_and_values():
    c = _random_walk_case(0)
    out = sig.significance_metrics(c["strat"], c["ret"], c["pred_up"], c["real_up"], n_boot=200)
    assert set(out) == SIGNIFICANCE_KEYS
    assert all(isinstance(v, float) for v in out.values())
    assert out["hit_rate_pvalue"] == hit_rate_pvalue(c["pred_up"], c["real_up"])
    assert out["hit_rate_ci_low"] < np.mean(c["pred_up"] == c["real_up"]) < out["hit_rate_ci_high"]
    with_dm = sig.significance_metrics(c["strat"], c["ret"], c["pred_up"], c["real_up"], n_boot=200,
                                       y_true=c["price"], y_pred=c["pred"], y_naive=c["naive"])
    assert set(with_dm) == SIGNIFICANCE_KEYS | {"dm_pvalue", "dm_pvalue_abs"}
    assert with_dm["dm_pvalue"] == sig.dm_test(c["price"], c["pred"], c["naive"])[1]


def test_significance_metrics_without_position_is_nan():
    c = _random_walk_case(1, 200)
    out = sig.significance_metrics(np.zeros(200), c["ret"], np.zeros(200, dtype=bool), c["real_up"])
    for key in ("sharpe_ci_low", "sharpe_ci_high", "sharpe_diff_ci_low", "sharpe_diff_ci_high", "psr"):
        assert math.isnan(out[key])
    assert out["pt_pvalue"] == 1.0


# ----------------------------------------------------------------------------- size and power


def test_random_walk_is_not_significant_in_at_least_90_percent_of_seeds():
    rejections = dict.fromkeys(["binomial", "pt", "dm_random", "dm_equal", "sharpe", "sharpe_diff", "psr"], 0)
    for seed in range(50):
        c = _random_walk_case(seed)
        out = sig.significance_metrics(c["strat"], c["ret"], c["pred_up"], c["real_up"], n_boot=200,
                                       seed=seed, y_true=c["price"], y_pred=c["pred"], y_naive=c["naive"])
        rival = c["naive"] * (1 + np.random.default_rng(seed + 99).normal(0, 0.005, len(c["naive"])))
        rejections["binomial"] += out["hit_rate_pvalue"] < 0.05
        rejections["pt"] += out["pt_pvalue"] < 0.05
        rejections["dm_random"] += min(out["dm_pvalue"], out["dm_pvalue_abs"]) < 0.05
        rejections["dm_equal"] += sig.dm_test(c["price"], c["pred"], rival)[1] < 0.05  # H0 exactly true
        rejections["sharpe"] += out["sharpe_ci_low"] > 0
        rejections["sharpe_diff"] += out["sharpe_diff_ci_low"] > 0
        rejections["psr"] += out["psr"] > 0.95
    assert max(rejections.values()) <= 5, rejections
    assert rejections["dm_random"] == 0  # a noisy forecast is worse than persistence, never better


def test_planted_direction_signal_is_detected():
    rng = np.random.default_rng(42)
    real_up = rng.random(2000) < 0.53  # a drifting market: the base rate is not 50%
    right = rng.random(2000) < 0.60
    pred_up = np.where(right, real_up, ~real_up)
    assert hit_rate_pvalue(pred_up, real_up) < 0.01
    assert sig.pesaran_timmermann(pred_up, real_up)[1] < 0.01
    low, _ = sig.wilson_interval(int(np.sum(pred_up == real_up)), 2000)
    assert low > max(real_up.mean(), 1 - real_up.mean())


def test_planted_regression_signal_beats_persistence():
    rng = np.random.default_rng(7)
    known = rng.normal(0, 0.006, 2000)  # the predictable part of each day's return
    ret = known + rng.normal(0, 0.008, 2000)
    price = 100 * np.cumprod(1 + ret)
    naive = np.concatenate([[100.0], price[:-1]])
    pred = naive * (1 + known)
    assert sig.dm_test(price, pred, naive)[1] < 0.01
    assert sig.dm_test(price, pred, naive, loss="absolute")[1] < 0.01


def test_planted_return_signal_has_positive_sharpe_interval():
    rng = np.random.default_rng(8)
    ret = rng.normal(0.0, 0.01, 2000)
    side = np.sign(ret) * np.where(rng.random(2000) < 0.56, 1.0, -1.0)  # right 56% of days, long/short
    strat = side * ret
    out = sig.significance_metrics(strat, ret, side > 0, ret > 0, n_boot=500)
    assert out["sharpe_ci_low"] > 0
    assert out["sharpe_diff_ci_low"] > 0
    assert out["psr"] > 0.99
