"""Bootstrap intervals whose words do not depend on the seed: adaptive resampling, the Monte-Carlo
error of the bounds, the fourth verdict at the edge, and no resample left out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest import significance as sig
from lstmbt.backtest.relative import family_confidence, family_verdict, verdict
from lstmbt.backtest.resampling import EDGE_Z, MAX_BOOT, adaptive_interval, quantile_with_error, start_size

SEEDS = range(20)


def edge_fixture() -> tuple[np.ndarray, np.ndarray]:
    """250 days whose Sharpe difference to the benchmark has its 98.75% lower bound (four models) at 0.

    The shift 0.0017041 puts the 0.625% quantile of the bootstrap distribution at 0 on 200,000
    resamples (found by bisection: a constant added to the returns moves each resample's Sharpe
    monotonically), so 1,000 resamples land on either side of 0 from one seed to the next."""
    rng = np.random.default_rng(2027)
    bench, noise = rng.normal(0.0004, 0.01, 250), rng.normal(0.0, 0.006, 250)
    return 0.6 * bench + noise + 0.0017041, bench


@pytest.mark.parametrize(("low", "high", "low_se", "high_se", "expected"), [
    (0.10, 0.90, 0.0, 0.0, "beats"),
    (-0.90, -0.10, 0.0, 0.0, "worse"),
    (-0.30, 0.20, 0.0, 0.0, "inconclusive"),
    (0.0, 0.0, 0.0, 0.0, "inconclusive"),        # a series against itself: exactly 0, no error
    (0.0, 0.40, None, None, "inconclusive"),     # saved without errors: the plain rule
    (0.03, 0.90, 0.01, 0.01, "borderline"),      # 3 errors above 0: not settled
    (0.06, 0.90, 0.01, 0.01, "beats"),           # 6 errors above 0: settled
    (-0.90, -0.02, 0.01, 0.01, "borderline"),
    (-0.30, 0.02, 0.01, 0.01, "borderline"),     # between inconclusive and worse: the edge too
    (-0.30, 0.20, 0.01, 0.01, "inconclusive"),
    (math.nan, 0.2, 0.0, 0.0, None),
])
def test_the_verdict_has_a_fourth_state_at_the_edge(low, high, low_se, high_se, expected):
    assert verdict(low, high, low_se, high_se) == expected


def test_a_verdict_near_the_edge_is_the_same_under_20_seeds():
    """The fixture's bound sits at 0: 1,000 resamples say "beats" under some seeds and
    "inconclusive" under others; the adaptive interval says "at the edge" under every one, and
    carries the resamples and errors behind it (20 draws of 32,000 resamples: a few seconds)."""
    r, bench = edge_fixture()
    level = family_confidence(4)
    fixed = {verdict(*sig.sharpe_diff_ci(r, bench, level, n_boot=1000, seed=s)) for s in SEEDS}
    assert fixed == {"beats", "inconclusive"}  # the fixture is near the edge: the old count flips
    adaptive = [family_verdict(r, bench, 4, seed=s) for s in SEEDS]
    assert {v["verdict"] for v in adaptive} == {"borderline"}
    for v in adaptive:
        assert v["verdict_n_boot"] == MAX_BOOT
        assert abs(v["verdict_ci_low"]) < EDGE_Z * v["verdict_ci_low_mc_se"]


def test_a_clear_verdict_stops_at_the_first_look_and_a_fixed_count_is_kept():
    rng = np.random.default_rng(5)
    bench = rng.normal(0.0003, 0.01, 500)
    r = bench + rng.normal(0.002, 0.004, 500)
    out = family_verdict(r, bench, 4, seed=1)
    assert out["verdict"] == "beats" and out["verdict_n_boot"] == start_size(family_confidence(4)) == 4000
    assert 0 < out["verdict_ci_low_mc_se"] < out["verdict_ci_low"] / EDGE_Z
    assert sig.sharpe_diff_interval(r, bench, n_boot=300).n_boot == 300


def test_the_adaptive_stream_extends_the_fixed_draw():
    """Doubling continues one seeded stream: the first 2,000 resamples are those of a draw of 2,000."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, 300)
    seen: list[np.ndarray] = []

    def statistic(idx: np.ndarray) -> np.ndarray:
        seen.append(idx)
        return x[idx].mean(axis=1)

    adaptive_interval(statistic, 300, 4.0, 11, 0.95, n_boot=3000)
    assert np.array_equal(np.concatenate(seen)[:2000], sig.bootstrap_indices(300, 2000, 4.0, 11))


def test_the_monte_carlo_error_of_a_quantile_matches_its_spread_over_seeds():
    """The spacing estimate of a bound's error agrees with the bound's spread over independent draws."""
    rng = np.random.default_rng(0)
    bounds, errors = [], []
    for _ in range(200):
        bound, error = quantile_with_error(np.sort(rng.normal(0, 1, 4000)), 0.025)
        bounds.append(bound)
        errors.append(error)
    assert np.median(errors) == pytest.approx(np.std(bounds), rel=0.25)


def test_a_strategy_invested_on_one_day_keeps_its_flat_resamples():
    """One invested day in a year: resamples that miss it earn nothing and count with Sharpe 0, so
    the interval starts at 0 instead of the ~1.0 of the resamples that happen to hold that day."""
    r = np.zeros(252)
    r[100] = 0.01
    low, high = sig.sharpe_ci(r, seed=0)
    assert low == 0.0 and high > 1.0
    kept = sig._sharpe_rows(r[sig.bootstrap_indices(252, 500, 5.0, 0)])
    assert np.isfinite(kept).all() and (kept == 0).mean() > 0.2


def test_constant_resamples_are_zero_or_a_sure_gain():
    rows = np.array([[0.0, 0.0, 0.0], [0.001, 0.001, 0.001], [-0.001, -0.001, -0.001], [0.01, -0.01, 0.0]])
    out = sig._sharpe_rows(rows)
    assert out[0] == 0.0 and out[1] == math.inf and out[2] == -math.inf and out[3] == 0.0
    low, high = sig._percentile_interval(np.array([1.0, 2.0, math.inf, math.inf]), 0.5)
    assert math.isfinite(low) and high == math.inf


def test_a_pvalue_at_its_level_draws_to_the_cap_and_says_it_is_at_the_edge():
    from lstmbt.backtest.resampling import MAX_BOOT, settled_reps

    asked: list[int] = []

    def at_level(reps: int) -> list[float]:
        asked.append(reps)
        return [0.05 + 0.5 / reps]  # the share of resamples beyond, converging on the level itself

    assert settled_reps(at_level, 0.05, 1000) == (MAX_BOOT, False)
    assert asked == [1000, 2000, 4000, 8000, 16000, 32000]
    asked.clear()
    assert settled_reps(lambda reps: asked.append(reps) or [0.6, math.nan], 0.05, 1000) == (1000, True)


def test_spa_and_mcs_report_their_resamples_and_words_follow_the_edge():
    from lstmbt.backtest.headtohead import mcs_test, spa_test
    from lstmbt.reports.scorecard import family_sentences

    rng = np.random.default_rng(3)
    bench = rng.normal(0.0004, 0.01, 800)
    returns = pd.DataFrame({"good": bench + 0.004 + rng.normal(0, 0.002, 800), "noise": rng.normal(0, 0.01, 800),
                            "buy_and_hold": bench})
    spa, mcs = spa_test(returns, models=["good", "noise"]), mcs_test(returns)
    assert spa["reps"] == 1000 and not spa["edge"] and spa["pvalue"] < 0.05 and spa["pvalue_mc_se"] >= 0
    assert mcs["reps"] == 1000 and mcs["edge"] == [] and mcs["included"] == ["good"]
    metrics = {"good": {"verdict": "beats"}, "noise": {"verdict": "worse"}}
    clear = family_sentences(metrics, ["good", "noise"], {"spa": spa, "mcs": mcs})
    assert "some model beats it" in clear[1] and "edge" not in " ".join(clear)
    edge = family_sentences(metrics, ["good", "noise"], {"spa": {**spa, "pvalue": 0.049, "edge": True, "reps": 32000},
                                                        "mcs": {**mcs, "edge": ["noise"], "reps": 32000}})
    assert "some model beats it" not in edge[1] and "at the edge" in edge[1] and "32,000 resamples" in edge[1]
    assert "At the edge" in edge[2] and edge[2].count("noise") >= 1
