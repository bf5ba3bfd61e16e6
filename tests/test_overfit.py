"""backtest.overfit: the deflated Sharpe ratio against the paper's formula worked by hand, and PBO by
CSCV against a brute-force loop, on noise (high PBO) and on one real edge (PBO near 0)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from lstmbt.backtest.campaign.overfit import (EULER_GAMMA, deflated_sharpe_ratio, dsr_verdict, expected_max_sharpe, pbo_verdict,
                              probability_of_backtest_overfitting, sharpe_per_period)
from lstmbt.backtest.significance import probabilistic_sharpe_ratio


def _returns(seed: int, n: int = 1000, drift: float = 0.0006) -> np.ndarray:
    return np.random.default_rng(seed).standard_t(5, n) * 0.01 + drift  # fat tails, some skew from sampling


def test_dsr_matches_the_papers_formula_worked_by_hand():
    r = _returns(3)
    n_trials, var = 25, 0.0015
    # moments by hand: divisor n for skew and kurtosis (not excess), ddof=1 for the Sharpe
    n, mu = len(r), r.mean()
    sr = mu / math.sqrt(((r - mu) ** 2).sum() / (n - 1))
    m2, m3, m4 = (((r - mu) ** k).mean() for k in (2, 3, 4))
    skew, kurt = m3 / m2**1.5, m4 / m2**2
    sr0 = math.sqrt(var) * ((1 - EULER_GAMMA) * stats.norm.ppf(1 - 1 / n_trials)
                            + EULER_GAMMA * stats.norm.ppf(1 - 1 / (n_trials * math.e)))
    z = (sr - sr0) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert expected_max_sharpe(n_trials, var) == pytest.approx(sr0, rel=1e-12)
    assert deflated_sharpe_ratio(r, n_trials, var) == pytest.approx(stats.norm.cdf(z), rel=1e-9)


def test_dsr_is_the_psr_when_trials_do_not_vary_and_falls_with_more_trials():
    r = _returns(4)
    assert deflated_sharpe_ratio(r, 2, 0.0) == pytest.approx(probabilistic_sharpe_ratio(r), rel=1e-12)
    values = [deflated_sharpe_ratio(r, n, 0.002) for n in (2, 10, 100, 1000)]
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_expected_max_sharpe_is_close_to_the_simulated_maximum_of_noise():
    # E[max of 100 standard normals] is 2.508; the paper's approximation is within a few percent
    draws = np.random.default_rng(0).standard_normal((20000, 100)).max(axis=1)
    assert expected_max_sharpe(100, 1.0) == pytest.approx(draws.mean(), rel=0.03)
    assert expected_max_sharpe(100, 4.0) == pytest.approx(2 * expected_max_sharpe(100, 1.0))


@pytest.mark.parametrize("n_trials, var", [(1, 0.01), (0, 0.01), (10, -0.1), (10, math.nan)])
def test_expected_max_sharpe_refuses_degenerate_inputs(n_trials, var):
    with pytest.raises(ValueError, match="at least 2 trials|variance"):
        expected_max_sharpe(n_trials, var)


def _brute_force_logits(m: np.ndarray, blocks: int) -> list[float]:
    """The paper's procedure written as a plain loop over splits."""
    m = m[len(m) % blocks:]
    parts = np.split(m, blocks)
    logits = []
    for chosen in combinations(range(blocks), blocks // 2):
        train = np.concatenate([parts[i] for i in chosen])
        test = np.concatenate([parts[i] for i in range(blocks) if i not in chosen])
        best = int(np.argmax(sharpe_per_period(train)))
        rank = stats.rankdata(sharpe_per_period(test))[best]
        w = rank / (m.shape[1] + 1)
        logits.append(math.log(w / (1 - w)))
    return logits


def test_pbo_logits_equal_a_brute_force_loop():
    m = np.random.default_rng(1).normal(0.0002, 0.01, size=(203, 7))
    result = probability_of_backtest_overfitting(m, 6)
    expected = _brute_force_logits(m, 6)
    np.testing.assert_allclose(result.logits, expected, rtol=1e-9, atol=1e-12)
    assert result.pbo == pytest.approx(np.mean(np.array(expected) <= 0))
    assert result.n_days == 198  # the oldest 203 mod 6 = 5 rows dropped


@pytest.mark.parametrize("blocks", [2, 4, 8, 16])
def test_number_of_splits_is_s_choose_s_over_2(blocks):
    m = np.random.default_rng(2).normal(0, 0.01, size=(400, 5))
    result = probability_of_backtest_overfitting(m, blocks)
    assert result.n_splits == math.comb(blocks, blocks // 2) == len(result.logits)


def test_pbo_is_high_for_pure_noise_trials():
    values = [probability_of_backtest_overfitting(np.random.default_rng(seed).normal(0, 0.01, size=(1000, 20))).pbo
              for seed in range(8)]
    assert 0.4 <= np.mean(values) <= 0.65, values  # the in-sample best is a coin flip out of sample
    assert min(values) > 0.25, values


def test_pbo_is_near_zero_when_one_trial_has_a_real_edge():
    m = np.random.default_rng(5).normal(0, 0.01, size=(1000, 20))
    m[:, 7] += 0.003  # ~4.8 annualised Sharpe against 19 noise trials
    result = probability_of_backtest_overfitting(m)
    assert result.pbo < 0.02
    assert result.prob_oos_loss < 0.02


@pytest.mark.parametrize("shape, blocks, words", [
    ((500, 1), 16, "at least 2 trials"),
    ((500,), 16, "at least 2 trials"),
    ((500, 5), 15, "even number of blocks"),
    ((500, 5), 0, "even number of blocks"),
    ((31, 5), 16, "needs at least 32 common days"),
])
def test_pbo_refuses_degenerate_inputs(shape, blocks, words):
    with pytest.raises(ValueError, match=words):
        probability_of_backtest_overfitting(np.zeros(shape) + 0.001, blocks)


def test_pbo_refuses_missing_values():
    m = np.random.default_rng(0).normal(0, 0.01, size=(100, 3))
    m[5, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        probability_of_backtest_overfitting(m, 4)


def test_flat_trials_score_a_sharpe_of_zero():
    m = np.column_stack([np.zeros(64), np.random.default_rng(0).normal(0, 0.01, 64)])
    assert sharpe_per_period(m)[0] == 0.0
    assert np.isfinite(probability_of_backtest_overfitting(m, 4).logits).all()


def test_verdicts_say_what_the_numbers_mean():
    assert "more often than not at or below the median" in pbo_verdict(0.62)
    assert "PBO 0.62" in pbo_verdict(0.62)
    assert "stays above the median out of sample in 98%" in pbo_verdict(0.02)
    assert "not evidence of skill" in dsr_verdict(0.41, 24, 0.85, 1.3)
    assert "is not above 1.30" in dsr_verdict(0.41, 24, 0.85, 1.3)
    assert "evidence (95%)" in dsr_verdict(0.97, 24, 2.5, 1.3)
    assert "the best of N = 24 skill-less distinct rows" in dsr_verdict(0.41, 24, 0.85, 1.3, what="distinct rows")


def _rows(strategies_by_trial: dict[int, list[str]], repeats: dict[str, str]):
    """A sweep summary by hand: trial -> its strategies (trials 0-1 on training trial t0, the rest
    on t1), a Sharpe falling with the plan order, and ``repeats`` {row: the row whose returns it repeats}."""
    import pandas as pd

    rows = [{"trial": t, "strategy": s, "training_trial": "t0" if t < 2 else "t1", "candidate": f"{t}:{s}"}
            for t, names in strategies_by_trial.items() for s in names]
    frame = pd.DataFrame(rows)
    frame["duplicate_of"] = frame["candidate"].map(repeats)
    frame["sharpe"] = np.linspace(1.0, 0.0, len(frame))
    frame.loc[frame["candidate"].isin(repeats), "sharpe"] = frame.set_index("candidate").loc[
        list(repeats.values()), "sharpe"].to_numpy()  # a repeat has its row's figures
    return frame


def test_ranks_count_distinct_rows_and_a_repeat_shares_its_rows_rank():
    from lstmbt.backtest.campaign.sweep_score import rank_rows

    summary = _rows({0: ["a", "b"], 1: ["a", "b"], 2: ["a", "b"]}, {"1:b": "0:b", "2:b": "0:b"})
    ranked = rank_rows(summary, "sharpe")
    assert list(ranked["candidate"]) == ["0:a", "0:b", "1:b", "2:b", "1:a", "2:a"]
    assert list(ranked["rank"]) == [1, 2, 2, 2, 3, 4] and list(ranked.columns[:2]) == ["rank", "trial"]
    backwards = rank_rows(summary.iloc[::-1].reset_index(drop=True), "sharpe")  # a row still leads its repeats
    assert list(backwards["candidate"])[:2] == ["0:a", "0:b"] and list(backwards["rank"]) == [1, 2, 2, 2, 3, 4]


def test_the_counts_and_their_sentence_use_one_vocabulary():
    from lstmbt.backtest.campaign.sweep_score import counts_sentence, sweep_counts

    summary = _rows({0: ["a", "b"], 1: ["a", "b"], 2: ["a", "b"]}, {"1:b": "0:b"})
    counts = sweep_counts(summary, dsr_n=5)
    assert counts == {"n_trials": 3, "n_training_trials": 2, "n_strategies": 2, "n_rows": 6, "n_distinct": 5,
                      "dsr_n": 5}
    assert counts_sentence(counts) == (
        "3 trials (2 training trials: trials that share every training value train once) × 2 strategies = 6 rows, "
        "5 of them distinct (1 repeat an earlier row's daily returns); the DSR and PBO count the 5 distinct rows: "
        "N = 5.")
    seeded = counts_sentence(sweep_counts(summary, dsr_n=15), by_seed=True)
    assert seeded.endswith("PBO counts the 5 distinct rows, the DSR every seed of them: N = 15.")
    uneven = sweep_counts(_rows({0: ["a"], 1: ["a"], 2: ["a", "b"]}, {}), dsr_n=4)
    assert uneven["n_strategies"] is None
    assert "give 4 rows (trial × strategy; the strategies differ between training trials), all distinct" in \
        counts_sentence(uneven)


def test_a_random_searchs_draws_lead_the_counts_sentence():
    from lstmbt.backtest.campaign.sweep_score import counts_sentence, sweep_counts

    counts = sweep_counts(_rows({0: ["a"], 1: ["a"], 2: ["a"]}, {}), dsr_n=3)
    assert counts_sentence({**counts, "n_draws": 40}).startswith(
        "40 random draws gave 3 distinct combinations (37 repeated draws dropped): 3 trials (")
    assert counts_sentence({**counts, "n_draws": 3}).startswith("3 random draws, none repeated: 3 trials (")
    assert counts_sentence({**counts, "n_draws": None}).startswith("3 trials (")  # a grid


def test_a_best_row_that_never_trades_gets_a_dsr_note_not_a_bare_refusal():
    from types import SimpleNamespace

    import pandas as pd

    from lstmbt.backtest.campaign.sweep_score import assess_overfit

    summary = _rows({0: ["a", "b"], 1: ["a", "b"]}, {}).assign(median_candidate=lambda f: f["candidate"])
    rng = np.random.default_rng(0)
    returns = pd.DataFrame({c: rng.normal(0, 0.01, 640) for c in summary["candidate"]})
    returns["0:a"] = 0.0  # ranked first (by hand), flat: nothing to deflate
    spec = SimpleNamespace(metric="sharpe", rank_by="ensemble", pbo_blocks=4, search="grid", n_trials=None)
    out = assess_overfit(summary, returns, spec)
    assert out["dsr_sentence"] == ("DSR not computed: the daily returns of 0:a do not vary (it never holds a "
                                   "position).")
    assert out["dsr_n"] == out["n_distinct"] == 4 and out["counts_sentence"].endswith("N = 4.")
