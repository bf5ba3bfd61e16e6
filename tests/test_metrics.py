"""Golden values for backtest.metrics on tiny hand-checkable series.

Every expected value is worked out by hand in the comments (or with an independent formula written
here), never by calling the function under test.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lstmbt.backtest import metrics as m

# r = [0.10, -0.05, 0.02, -0.01]
#   equity: 1 -> 1.1 -> 1.045 -> 1.0659 -> 1.055241
#   mean = 0.06 / 4 = 0.015; deviations 0.085, -0.065, 0.005, -0.025
#   sum of squares = 0.007225 + 0.004225 + 0.000025 + 0.000625 = 0.0121 -> sd (ddof=1) = 0.11 / sqrt(3)
#   downside: min(r, 0) = [0, -0.05, 0, -0.01] -> mean of squares = 0.0026 / 4 = 0.00065
#   drawdown: peak 1.1, trough 1.045 -> 1.045 / 1.1 - 1 = -0.05
R = np.array([0.10, -0.05, 0.02, -0.01])
GROWTH = 1.055241
YEARS = 4 / 252


def test_total_return():
    assert m.total_return(R) == pytest.approx(0.055241, rel=1e-12)


def test_cagr_annualises_over_252_days():
    # 4 days = 4/252 years -> growth ** 63 - 1
    assert m.cagr(R) == pytest.approx(GROWTH**63 - 1, rel=1e-12)
    # exactly one year of 252 days: cagr == total return
    one_year = np.full(252, 0.001)
    assert m.cagr(one_year) == pytest.approx(1.001**252 - 1, rel=1e-12)
    # two years: growth ** (1/2)
    two_years = np.full(504, 0.001)
    assert m.cagr(two_years) == pytest.approx(math.sqrt(1.001**504) - 1, rel=1e-12)


def test_cagr_edge_cases():
    assert math.isnan(m.cagr(np.array([])))
    assert m.cagr(np.array([0.5, -1.0, 0.2])) == -1.0  # equity wiped out


def test_ann_volatility_uses_ddof_1():
    # 0.11 / sqrt(3) * sqrt(252) = 0.11 * sqrt(84)
    assert m.ann_volatility(R) == pytest.approx(0.11 * math.sqrt(84), rel=1e-12)
    assert math.isnan(m.ann_volatility(np.array([0.01])))


def test_sharpe():
    # mean / sd * sqrt(252) = 0.015 / (0.11 / sqrt(3)) * sqrt(252) = 0.015 * sqrt(756) / 0.11
    assert m.sharpe(R) == pytest.approx(0.015 * math.sqrt(756) / 0.11, rel=1e-12)


def test_sortino_uses_downside_deviation_over_all_days():
    # 0.015 / sqrt(0.00065) * sqrt(252)
    assert m.sortino(R) == pytest.approx(0.015 / math.sqrt(0.00065) * math.sqrt(252), rel=1e-12)


def test_sortino_without_losing_days_is_nan():
    assert math.isnan(m.sortino(np.array([0.01, 0.0, 0.02])))


@pytest.mark.parametrize(
    "returns, expected",
    [
        (R, -0.05),
        ([0.1, -0.5, 0.2], -0.5),  # 1 -> 1.1 -> 0.55 -> 0.66: 0.55 / 1.1 - 1
        ([-0.2, -0.5, 0.1], -0.6),  # the starting equity of 1 is the first peak: 0.4 / 1 - 1
        ([-0.1, 0.5, -0.4], -0.4),  # 0.9 -> 1.35 -> 0.81: new peak 1.35, 0.81 / 1.35 - 1
        ([0.01, 0.02, 0.0], 0.0),  # never below a peak
    ],
)
def test_max_drawdown(returns, expected):
    assert m.max_drawdown(np.array(returns)) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_calmar():
    assert m.calmar(R) == pytest.approx((GROWTH**63 - 1) / 0.05, rel=1e-12)


def test_calmar_without_drawdown_is_nan():
    assert math.isnan(m.calmar(np.array([0.01, 0.02, 0.0])))


@pytest.mark.parametrize("value", [0.0, 0.01, 0.1, 1 / 3, 0.07])
def test_zero_volatility_gives_nan_sharpe(value):
    # np.std of a constant series is ~1e-17 from rounding; the Sharpe must still be NaN, not ~1e17.
    flat = np.full(10, value)
    assert math.isnan(m.sharpe(flat))
    assert m.ann_volatility(flat) == 0.0
    assert math.isnan(m.sharpe(np.array([0.01])))  # one day: no sample std


def test_exposure_is_mean_absolute_position_and_time_invested_the_share_of_days():
    # |0| + |1| + |-1| + |0.5| + |0| = 2.5 over 5 days; non-zero on 3 of 5 days
    assert m.exposure(np.array([0.0, 1.0, -1.0, 0.5, 0.0])) == pytest.approx(0.5)
    assert m.time_invested(np.array([0.0, 1.0, -1.0, 0.5, 0.0])) == pytest.approx(0.6)
    half = np.full(10, 0.5)  # a constant half position: half the capital, every day
    assert m.exposure(half) == 0.5 and m.time_invested(half) == 1.0
    assert math.isnan(m.exposure(np.array([]))) and math.isnan(m.time_invested(np.array([])))


def test_turnover_counts_entry_from_flat_per_year():
    # [1, 1, 0]: entry from flat 1 + 0 + exit 1 = 2 over 3/252 years -> 2 * 84 = 168
    assert m.turnover(np.array([1.0, 1.0, 0.0])) == pytest.approx(168.0)
    # [0, 1, 1, 0, -1, -1, 0.5]: 0 + 1 + 0 + 1 + 1 + 0 + 1.5 = 4.5 over 7/252 years -> 162
    assert m.turnover(np.array([0, 1, 1, 0, -1, -1, 0.5])) == pytest.approx(162.0)
    # a long -> short flip trades 2
    assert m.turnover(np.array([1.0, -1.0])) == pytest.approx((1 + 2) * 126)
    assert m.turnover(np.zeros(5)) == 0.0


def test_performance_metrics_has_the_contract_keys():
    out = m.performance_metrics(R, np.array([0.0, 1.0, 1.0, 0.0]))
    assert set(out) == {"total_return", "cagr", "ann_volatility", "sharpe", "sortino", "max_drawdown",
                        "calmar", "exposure", "time_invested", "turnover"}
    assert out["max_drawdown"] == pytest.approx(-0.05)
    assert out["exposure"] == pytest.approx(0.5)


# ---------------------------------------------------------------- hit rate and its significance

PRED = np.array([1, 1, 0, 0, 1, 0, 1, 1], dtype=bool)
REAL = np.array([1, 0, 0, 1, 1, 0, 1, 0], dtype=bool)
# agree on days 0, 2, 4, 5, 6 -> 5 of 8


def test_hit_rate():
    assert m.hit_rate(PRED, REAL) == pytest.approx(5 / 8)
    assert m.hit_rate(np.ones(8, dtype=bool), REAL) == pytest.approx(0.5)  # always up = share of up days
    assert math.isnan(m.hit_rate(np.array([], dtype=bool), np.array([], dtype=bool)))


def test_hit_rate_pvalue_balanced_base_rate():
    # base rate 4/8 -> null 0.5; P(X >= 5 | n=8, p=0.5) = (C(8,5)+C(8,6)+C(8,7)+C(8,8)) / 256 = 93 / 256
    assert m.hit_rate_pvalue(PRED, REAL) == pytest.approx(93 / 256, rel=1e-12)
    assert m.hit_rate_pvalue(PRED, REAL) == pytest.approx(stats.binom.sf(4, 8, 0.5), rel=1e-12)


def _upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed by hand."""
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))


@pytest.mark.parametrize("flip", [False, True])
def test_hit_rate_pvalue_null_is_the_better_constant_guess(flip):
    # real: 2 up days of 8 (base 0.25) or, flipped, 6 of 8 (base 0.75); the null is 0.75 either way.
    real = np.array([0, 0, 0, 1, 0, 0, 0, 1], dtype=bool)
    real = ~real if flip else real
    # the constant guess of the majority direction scores 6 of 8: exactly the null, no evidence of skill
    majority = np.full(8, flip, dtype=bool)
    expected = _upper_tail(6, 8, 0.75)
    assert m.hit_rate_pvalue(majority, real) == pytest.approx(expected, rel=1e-12)
    assert m.hit_rate_pvalue(majority, real) == pytest.approx(stats.binom.sf(5, 8, 0.75), rel=1e-12)
    assert m.hit_rate_pvalue(majority, real) > 0.5
    # against a naive 0.5 (or the minority rate 0.25) the same guess would look significant
    assert stats.binom.sf(5, 8, 0.25) < 0.01
    # a perfect predictor: 8 of 8 -> 0.75 ** 8
    assert m.hit_rate_pvalue(real, real) == pytest.approx(0.75**8, rel=1e-12)


def test_hit_rate_pvalue_larger_sample_against_scipy():
    rng = np.random.default_rng(0)
    real = rng.random(200) < 0.56
    pred = np.where(rng.random(200) < 0.7, real, ~real)
    hits = int(np.sum(pred == real))
    base = real.mean()
    assert m.hit_rate_pvalue(pred, real) == pytest.approx(
        stats.binom.sf(hits - 1, 200, max(base, 1 - base)), rel=1e-9)


# ---------------------------------------------------------------- prediction errors


def test_regression_errors_next_to_persistence():
    y_true = np.array([10.0, 11.0, 12.0, 11.0])
    y_pred = np.array([10.5, 11.0, 11.0, 12.0])  # errors -0.5, 0, 1, -1
    y_naive = np.array([9.0, 10.0, 11.0, 12.0])  # yesterday's price: errors 1, 1, 1, -1
    out = m.regression_errors(y_true, y_pred, y_naive)
    assert set(out) == {"rmse", "mae", "persistence_rmse", "persistence_mae"}
    assert out["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 1) / 4))  # 0.75
    assert out["mae"] == pytest.approx(2.5 / 4)
    assert out["persistence_rmse"] == pytest.approx(1.0)
    assert out["persistence_mae"] == pytest.approx(1.0)

    out = m.regression_errors(y_true, y_pred, y_naive, with_mape=True)
    assert out["mape"] == pytest.approx((0.5 / 10 + 0 / 11 + 1 / 12 + 1 / 11) / 4)
    assert out["persistence_mape"] == pytest.approx((1 / 10 + 1 / 11 + 1 / 12 + 1 / 11) / 4)


# y    = [1,   0,   1,   1,   0,   0  ]
# p_up = [0.9, 0.3, 0.6, 0.4, 0.7, 0.8]
# pred = [1,   0,   1,   0,   1,   1  ]  (p_up > 0.5)
# TP = 2 (days 0, 2), FP = 2 (days 4, 5), FN = 1 (day 3), TN = 1 (day 1)
Y = np.array([1, 0, 1, 1, 0, 0])
P = np.array([0.9, 0.3, 0.6, 0.4, 0.7, 0.8])


def _auc_by_pairs(y: np.ndarray, p: np.ndarray) -> float:
    """Share of (positive, negative) pairs ranked correctly, ties counting one half."""
    pos, neg = p[y == 1], p[y == 0]
    score = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return score / (len(pos) * len(neg))


def test_classification_scores_golden():
    out = m.classification_scores(Y, P)
    assert set(out) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "brier"}
    assert out["accuracy"] == pytest.approx(3 / 6)
    assert out["precision"] == pytest.approx(2 / 4)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))  # 4/7
    # positives 0.9, 0.6, 0.4 vs negatives 0.3, 0.7, 0.8: 3 + 1 + 1 = 5 of 9 pairs ordered right
    assert out["roc_auc"] == pytest.approx(5 / 9)
    assert out["roc_auc"] == pytest.approx(_auc_by_pairs(Y, P))
    # log loss in nats: -mean(log p for y=1, log(1-p) for y=0)
    hand_ll = -(math.log(0.9) + math.log(0.7) + math.log(0.6) + math.log(0.4) + math.log(0.3)
                + math.log(0.2)) / 6
    assert out["log_loss"] == pytest.approx(hand_ll, rel=1e-12)
    assert out["log_loss"] == pytest.approx(-np.mean(Y * np.log(P) + (1 - Y) * np.log(1 - P)), rel=1e-12)
    # brier: squared errors 0.01 + 0.09 + 0.16 + 0.36 + 0.49 + 0.64 = 1.75
    assert out["brier"] == pytest.approx(1.75 / 6, rel=1e-12)


def test_classification_cutoff_is_strict_and_roc_ties_count_half():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.5, 0.5, 0.8, 0.1])  # 0.5 is not > 0.5: predicted down
    out = m.classification_scores(y, p)
    assert out["accuracy"] == pytest.approx(3 / 4)  # pred [0, 0, 1, 0]
    assert out["precision"] == pytest.approx(1.0)
    assert out["recall"] == pytest.approx(1 / 2)
    # pairs: (0.5 vs 0.5) tie = 0.5, (0.5 vs 0.1) = 1, (0.8 vs 0.5) = 1, (0.8 vs 0.1) = 1 -> 3.5 / 4
    assert out["roc_auc"] == pytest.approx(3.5 / 4)
    assert out["roc_auc"] == pytest.approx(_auc_by_pairs(y, p))
    # a higher cutoff changes the labels, not the probability scores
    high = m.classification_scores(y, p, cutoff=0.9)
    assert high["accuracy"] == pytest.approx(2 / 4) and high["recall"] == 0.0 and high["precision"] == 0.0
    assert high["roc_auc"] == out["roc_auc"] and high["brier"] == out["brier"]


def test_single_class_labels_give_nan_roc_auc():
    y = np.array([1, 1, 1])
    p = np.array([0.2, 0.6, 0.4])
    out = m.classification_scores(y, p)
    assert math.isnan(out["roc_auc"])
    assert out["accuracy"] == pytest.approx(1 / 3)
    assert out["log_loss"] == pytest.approx(-(math.log(0.2) + math.log(0.6) + math.log(0.4)) / 3, rel=1e-12)
    assert out["brier"] == pytest.approx((0.64 + 0.16 + 0.36) / 3, rel=1e-12)


# --------------------------------------------------------------------------- report series


def test_period_returns_compound_within_each_month_and_year():
    from lstmbt.backtest.metrics import monthly_return_table, period_returns

    idx = pd.to_datetime(["2020-01-30", "2020-01-31", "2020-02-03", "2021-03-01"])
    r = pd.Series([0.1, -0.1, 0.05, 0.2], index=idx)
    monthly = period_returns(r, "M")
    assert monthly.tolist() == pytest.approx([1.1 * 0.9 - 1, 0.05, 0.2])
    yearly = period_returns(r, "Y")
    assert yearly.tolist() == pytest.approx([1.1 * 0.9 * 1.05 - 1, 0.2])
    table = monthly_return_table(r)
    assert list(table.index) == [2020, 2021] and list(table.columns) == list(range(1, 13))
    assert table.loc[2020, 1] == pytest.approx(-0.01) and table.loc[2021, 3] == pytest.approx(0.2)
    assert np.isnan(table.loc[2021, 1])


def test_rolling_sharpe_and_hit_rate_match_direct_computation():
    from lstmbt.backtest.metrics import rolling_hit_rate, rolling_sharpe, sharpe

    rng = np.random.default_rng(0)
    r = rng.normal(0.001, 0.01, 300)
    roll = rolling_sharpe(r, 126)
    assert np.isnan(roll[:125]).all()
    assert roll[125] == pytest.approx(sharpe(r[:126]))
    assert roll[-1] == pytest.approx(sharpe(r[-126:]))
    assert np.isnan(rolling_sharpe(np.zeros(200), 126)[-1])  # zero volatility: undefined, not huge
    pred, real = rng.random(100) > 0.5, rng.random(100) > 0.4
    hits, base = rolling_hit_rate(pred, real, 63)
    assert np.isnan(hits[61]) and hits[62] == pytest.approx(np.mean(pred[:63] == real[:63]))
    assert base[-1] == pytest.approx(np.mean(real[-63:]))


def test_calibration_confusion_and_trade_stats_by_hand():
    from lstmbt.backtest.metrics import calibration_curve, confusion_counts, trade_stats

    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.55, 0.58, 1.0])
    table = calibration_curve(y, p, n_bins=10, bins="uniform")
    assert table["bin_low"].tolist() == pytest.approx([0.0, 0.1, 0.5, 0.9])
    assert table["bin_high"].tolist() == pytest.approx([0.1, 0.2, 0.6, 1.0])
    assert table["count"].tolist() == [1, 1, 2, 1]
    assert table["realised"].tolist() == [0.0, 1.0, 0.5, 1.0]
    assert table["mean_p"].tolist() == pytest.approx([0.05, 0.15, 0.565, 1.0])
    counts = confusion_counts(p > 0.5, y > 0)
    assert counts.tolist() == [[1, 1], [1, 2]]  # rows realised down/up, columns predicted down/up
    stats = trade_stats(np.array([0.1, -0.05, 0.0, 0.2]), np.array([1, 2, 3, 6]))
    assert stats == {"win_rate": 0.5, "avg_holding_days": 3.0}
    assert all(np.isnan(v) for v in trade_stats(np.array([]), np.array([])).values())


def test_calibration_quantile_bins_hold_equal_shares_of_the_days():
    from lstmbt.backtest.metrics import calibration_curve

    rng = np.random.default_rng(3)
    p = rng.uniform(0.45, 0.58, 2392)  # a narrow band, as a real classifier's p_up: 0.1-wide bins give one dot
    y = (rng.random(2392) < p).astype(int)
    table = calibration_curve(y, p)  # quantile bins by default, 10 of them
    assert len(table) == 10
    assert table["count"].sum() == len(p)
    assert table["count"].max() - table["count"].min() <= 1  # 2392 / 10 = 239.2 each
    # edges: ascending, contiguous, from the smallest to the largest p_up
    assert table["bin_low"].iloc[0] == p.min() and table["bin_high"].iloc[-1] == p.max()
    assert (table["bin_low"].iloc[1:].to_numpy() == table["bin_high"].iloc[:-1].to_numpy()).all()
    assert (table["bin_low"] <= table["mean_p"]).all() and (table["mean_p"] <= table["bin_high"]).all()
    # each bin's figures by hand: the days between its edges (the last bin includes its top edge)
    for i, row in table.iterrows():
        inside = (p >= row["bin_low"]) & ((p < row["bin_high"]) | ((i == len(table) - 1) & (p <= row["bin_high"])))
        assert row["count"] == inside.sum()
        assert row["mean_p"] == pytest.approx(p[inside].mean())
        assert row["realised"] == pytest.approx(y[inside].mean())
        assert row["realised_se"] == pytest.approx(np.sqrt(y[inside].mean() * (1 - y[inside].mean()) / inside.sum()))


def test_calibration_quantile_bins_merge_tied_edges():
    from lstmbt.backtest.metrics import calibration_curve

    # 60 days at exactly 0.5 cover several deciles: their equal edges become one bin
    p = np.concatenate([np.full(60, 0.5), np.linspace(0.40, 0.49, 20), np.linspace(0.51, 0.60, 20)])
    y = np.arange(100) % 2
    table = calibration_curve(y, p, n_bins=10)
    assert table["count"].sum() == 100
    assert table["bin_low"].is_unique and (table["bin_low"] < table["bin_high"]).all()
    tied = table[(table["bin_low"] <= 0.5) & (0.5 < table["bin_high"])]
    assert len(tied) == 1 and tied["count"].iloc[0] >= 60 and tied["mean_p"].iloc[0] >= 0.5
    # all days alike: one bin holding them all
    one = calibration_curve(np.ones(7), np.full(7, 0.53))
    assert one["count"].tolist() == [7] and one["mean_p"].tolist() == pytest.approx([0.53])
    # non-finite days are left out, not counted
    assert calibration_curve(np.r_[y, 1], np.r_[p, np.nan])["count"].sum() == 100
    with pytest.raises(ValueError, match="quantile"):
        calibration_curve(y, p, bins="equal")
