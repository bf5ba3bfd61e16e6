"""backtest.headtohead: pairs, SPA, MCS and comparisons.json, checked against hand computations.

The paired interval is recomputed from the same bootstrap indices with the Sharpe ratio and the
percentiles written out; McNemar and Diebold-Mariano from their formulas; SPA and MCS from arch
called directly. A tiny run checks the file, an earlier version's run directory, and damage.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from arch.bootstrap import MCS, SPA
from helpers import TINY, TINY_SPX, save_with_report
from scipy import stats

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.headtohead import (LOSS, check_pairs, compare_pair, default_pairs, direction_tests, mcs_test,
                                 spa_test)
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.rundir import json_text, load_run
from lstmbt.backtest.scoring import horizon_plan
from lstmbt.backtest.readback import DamagedFileError
from lstmbt.backtest.relative import verdict
from lstmbt.backtest.significance import bootstrap_indices, default_block_length, sharpe_diff_ci, sharpe_diff_interval
from lstmbt.reports.scorecard import pair_sentence

N = 600


def _returns(seed: int = 0, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bench = rng.normal(4e-4, 0.011, n)
    return (rng.random(n) < 0.6) * bench + rng.normal(0, 0.002, n), bench


def _sharpe_by_hand(x: np.ndarray) -> float:
    return x.mean() / x.std(ddof=1) * math.sqrt(252)


# ------------------------------------------------------------------------------ the pair


def test_paired_bootstrap_interval_equals_a_hand_computation():
    a, b = _returns()
    out = compare_pair(a, b, None, None, None, seed=7, n_boot=300)
    idx = bootstrap_indices(N, 300, default_block_length(a, b), 7)  # the same rows for both series
    diffs = np.array([_sharpe_by_hand(a[i]) - _sharpe_by_hand(b[i]) for i in idx])
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert out["sharpe_diff_ci_low"] == pytest.approx(low, rel=1e-10)
    assert out["sharpe_diff_ci_high"] == pytest.approx(high, rel=1e-10)
    assert out["sharpe_diff"] == pytest.approx(_sharpe_by_hand(a) - _sharpe_by_hand(b), rel=1e-12)
    # unpaired indices (a different seed per series) would give another, wider interval
    other = bootstrap_indices(N, 300, default_block_length(a, b), 8)
    unpaired = np.array([_sharpe_by_hand(a[i]) - _sharpe_by_hand(b[j]) for i, j in zip(idx, other)])
    assert np.ptp(np.percentile(unpaired, [2.5, 97.5])) > high - low


def test_better_follows_the_interval():
    rng = np.random.default_rng(1)
    b = rng.normal(0, 0.01, N)
    a = b + 0.002 + rng.normal(0, 0.001, N)  # a beats b on almost every day
    assert compare_pair(a, b, None, None, None, n_boot=200)["better"] == "a"
    assert compare_pair(b, a, None, None, None, n_boot=200)["better"] == "b"
    x, y = _returns(2)
    out = compare_pair(x, x + rng.normal(0, 1e-4, N), None, None, None, n_boot=200)
    assert out["sharpe_diff_ci_low"] <= 0 <= out["sharpe_diff_ci_high"] and out["better"] is None


def _calls(table: tuple[int, int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calls of a and b and realised directions whose right/wrong table is ``table``
    (both right, only a right, only b right, both wrong), shuffled."""
    n11, n10, n01, n00 = table
    right_a = np.repeat([True, True, False, False], table)
    right_b = np.repeat([True, False, True, False], table)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(right_a))
    real = rng.random(len(right_a)) < 0.55
    right_a, right_b, real = right_a[order], right_b[order], real[order]
    return np.where(right_a, real, ~real), np.where(right_b, real, ~real), real


def test_mcnemar_exact_below_25_discordant_days():
    a, b, real = _calls((40, 10, 3, 7))
    out = direction_tests(a, b, real)
    k, n = 3, 13  # binomial(13, 1/2), two-sided: twice the lower tail at min(10, 3)
    assert out["mcnemar_pvalue"] == pytest.approx(2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n, rel=1e-12)
    assert out["hit_rate_a"] == pytest.approx(50 / 60) and out["hit_rate_b"] == pytest.approx(43 / 60)


def test_mcnemar_chi_square_with_continuity_correction_from_25():
    a, b, real = _calls((300, 30, 12, 58))
    stat = (abs(30 - 12) - 1) ** 2 / (30 + 12)
    assert direction_tests(a, b, real)["mcnemar_pvalue"] == pytest.approx(stats.chi2.sf(stat, 1), rel=1e-12)
    a, b, real = _calls((300, 13, 12, 58))  # 25 discordant: still chi-square
    stat = (abs(13 - 12) - 1) ** 2 / 25
    assert direction_tests(a, b, real)["mcnemar_pvalue"] == pytest.approx(stats.chi2.sf(stat, 1), rel=1e-12)


def test_agreement_and_up_shares():
    a = np.array([True, True, False, False, True, True, True, False])
    b = np.array([True, False, False, True, True, True, False, False])
    real = np.array([True, False, True, False, True, False, True, True])
    out = direction_tests(a, b, real)
    assert out["agreement"] == pytest.approx(5 / 8)
    assert out["up_share_a"] == pytest.approx(5 / 8) and out["up_share_b"] == pytest.approx(4 / 8)
    assert direction_tests(a, a, real)["agreement"] == 1.0 and direction_tests(a, ~a, real)["agreement"] == 0.0
    same = direction_tests(a, a, real)
    assert same["mcnemar_pvalue"] == 1.0 and same["dm_pvalue"] == 1.0  # identical calls cannot differ


def _dm_by_hand(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int) -> float:
    d = loss_a.astype(float) - loss_b.astype(float)
    n = len(d)
    lags = max(horizon - 1, int(4 * (n / 100) ** (2 / 9)))
    e = d - d.mean()
    gamma = [e[j:] @ e[: n - j] / n for j in range(lags + 1)]
    lrv = gamma[0] + 2 * sum((1 - j / (lags + 1)) * gamma[j] for j in range(1, lags + 1))
    hln = math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    stat = d.mean() / math.sqrt(lrv / n) * hln
    return 2 * stats.t.sf(abs(stat), n - 1)


@pytest.mark.parametrize("horizon", [1, 5])
def test_diebold_mariano_on_the_direction_loss_is_two_sided(horizon):
    a, b, real = _calls((200, 45, 25, 80), seed=4)
    out = direction_tests(a, b, real, horizon=horizon)
    expected = _dm_by_hand(a != real, b != real, horizon)
    assert out["dm_pvalue"] == pytest.approx(expected, rel=1e-10)
    assert direction_tests(b, a, real, horizon=horizon)["dm_pvalue"] == pytest.approx(expected, rel=1e-10)  # symmetric


def test_undecided_days_are_left_out_of_the_direction_fields_only():
    r_a, r_b = _returns(5)
    a, b, real = _calls((300, 100, 80, 120), seed=5)
    keep = np.random.default_rng(5).random(N) > 0.2
    out = compare_pair(r_a, r_b, a, b, real, decided=keep, n_boot=100)
    sliced = direction_tests(a[keep], b[keep], real[keep])
    assert {k: out[k] for k in sliced} == sliced and out["n_direction_days"] == keep.sum()
    assert out["sharpe_diff_ci_low"] == compare_pair(r_a, r_b, None, None, None, n_boot=100)["sharpe_diff_ci_low"]
    assert out["n_days"] == N


def test_a_strategy_without_calls_has_nan_direction_fields():
    r_a, r_b = _returns(6)
    a, _, real = _calls((300, 100, 80, 120), seed=6)
    out = compare_pair(r_a, r_b, a, None, real, n_boot=50)
    assert all(math.isnan(out[k]) for k in ("mcnemar_pvalue", "dm_pvalue", "agreement"))
    assert math.isfinite(out["sharpe_diff_ci_low"])


def test_default_pairs_per_horizon_and_only_those_present():
    every = {key.name: key for key in horizon_plan(RunConfig().with_values({"target.horizons": [1, 5]}))}

    def pairs(*names):
        return default_pairs(every[n] for n in names)

    assert pairs(*every) == [
        ("lstm_regression", "lstm_classification"), ("lstm_regression", "ridge_regression"),
        ("lstm_classification", "logistic_classification"),
        ("lstm_regression_h5", "lstm_classification_h5"), ("lstm_regression_h5", "ridge_regression_h5"),
        ("lstm_classification_h5", "logistic_classification_h5")]
    assert pairs("lstm_regression", "ridge_regression") == [("lstm_regression", "ridge_regression")]
    assert pairs("ridge_regression", "logistic_classification") == [
        ("ridge_regression", "logistic_classification")]  # a linear-only run still compares the targets
    assert pairs("lstm_classification") == []
    # pairs follow the keys, not the names: a twin keyed at another horizon is no twin
    moved = replace(every["ridge_regression"], horizon=5)
    assert default_pairs([every["lstm_regression"], moved]) == []


def test_configured_pairs_are_checked_for_form_and_names():
    assert check_pairs(("lstm_regression: majority",), ["lstm_regression", "majority"]) == [
        ("lstm_regression", "majority")]
    with pytest.raises(ConfigError, match=r"names 'nope'.*use two of: lstm_regression, majority$"):
        check_pairs(("lstm_regression:nope",), ["lstm_regression", "majority"])
    for bad in (["a-b"], ["a:b:c"], [":b"], ["a:a"]):
        with pytest.raises(ConfigError, match="not two different strategy names as 'a:b'"):
            RunConfig().with_values({"backtest.pairs": bad})


# ------------------------------------------------------------------------------ family-wise


def _frame(seed: int = 9, n: int = 800) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bench = rng.normal(3e-4, 0.01, n)
    cols = {f"m{i}": (rng.random(n) < 0.5) * bench + rng.normal(0, 0.003, n) for i in range(3)}
    cols["lstm_regression"], cols["lstm_classification"] = cols.pop("m0"), cols.pop("m1")
    return pd.DataFrame({**cols, "persistence": 0.0, "buy_and_hold": bench})


def test_spa_equals_arch():
    frame = _frame()
    models = ["lstm_regression", "lstm_classification"]  # the models a run's keys name, not m2 or baselines
    out = spa_test(frame, models=models, seed=11, reps=400)
    block = default_block_length(*(frame[c].to_numpy() for c in ["buy_and_hold", *models]))
    spa = SPA(-frame["buy_and_hold"].to_numpy(), -frame[models].to_numpy(), block_size=block, reps=400,
              seed=np.random.default_rng(11))
    spa.compute()
    assert out["benchmark"] == "buy_and_hold" and out["n_strategies"] == 2 and out["models"] == models
    assert out["pvalue"] == spa.pvalues["consistent"]
    assert out["pvalues"] == {k: spa.pvalues[k] for k in ("lower", "consistent", "upper")}


def test_spa_finds_a_planted_winner_and_not_noise():
    frame = _frame()
    frame["lstm_regression"] = frame["buy_and_hold"] + 0.002 + np.random.default_rng(0).normal(0, 0.002, len(frame))
    models = ["lstm_regression", "lstm_classification"]
    assert spa_test(frame, models=models, reps=400)["pvalue"] < 0.01
    assert spa_test(_frame(), models=models, reps=400)["pvalue"] > 0.10


def test_mcs_equals_arch_and_leaves_out_a_never_invested_strategy():
    frame = _frame()
    out = mcs_test(frame, size=0.10, seed=12, reps=400)
    tested = ["lstm_regression", "lstm_classification", "m2", "buy_and_hold"]
    losses = -frame[tested]
    block = default_block_length(*(frame[c].to_numpy() for c in tested))
    mcs = MCS(losses, 0.10, reps=400, block_size=block, seed=np.random.default_rng(12))
    mcs.compute()
    assert out["not_tested"] == ["persistence"] and out["size"] == 0.10
    assert sorted(out["included"]) == sorted(mcs.included)
    assert out["pvalues"] == {c: mcs.pvalues.loc[c, "Pvalue"] for c in tested}


def test_mcs_tests_a_copy_of_buy_and_hold_as_buy_and_hold():
    frame = _frame().assign(majority=lambda f: f["buy_and_hold"])
    out = mcs_test(frame, seed=12, reps=300)
    assert out["same_as"] == {"majority": "buy_and_hold"}
    assert out["pvalues"]["majority"] == out["pvalues"]["buy_and_hold"]
    assert ("majority" in out["included"]) == ("buy_and_hold" in out["included"])


# ------------------------------------------------------------------------------ a tiny run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, one_torch_thread):
    result = run(RunConfig.resolve(flags={**TINY_SPX, "backtest.pairs": ["lstm_classification:buy_and_hold"]}))
    return result, save_with_report(result, tmp_path_factory.mktemp("h2h") / "run")


def test_comparisons_json_has_the_issues_shape(tiny_run):
    result, run_dir = tiny_run
    saved = json.loads((run_dir / "comparisons.json").read_text())
    pairs = [(p["a"], p["b"]) for p in saved["pairs"]]
    assert pairs == [("lstm_regression", "lstm_classification"), ("lstm_regression", "ridge_regression"),
                     ("lstm_classification", "logistic_classification"), ("lstm_classification", "buy_and_hold")]
    for row in saved["pairs"]:
        assert {"a", "b", "sharpe_diff", "sharpe_diff_ci_low", "sharpe_diff_ci_high", "mcnemar_pvalue",
                "dm_pvalue", "agreement"} <= set(row)
        assert row["sharpe_diff_ci_low"] <= row["sharpe_diff_ci_high"] and 0 <= row["agreement"] <= 1
        assert row["n_days"] == len(result.returns)
    assert saved["loss"] == LOSS
    assert {"benchmark", "pvalue", "n_strategies"} <= set(saved["spa"]) and saved["spa"]["n_strategies"] == 4
    mcs = saved["mcs"]
    assert {"included", "pvalues"} <= set(mcs) and set(mcs["included"]) <= set(mcs["pvalues"])
    assert saved["family"] == {"n_models": 4, "confidence": pytest.approx(1 - 0.05 / 4), "level": 0.95,
                               "method": "Bonferroni", "n_pairs": 4, "pair_confidence": pytest.approx(1 - 0.05 / 4)}
    assert saved == json.loads(json_text(result.comparisons))
    # the pair of the two LSTMs is their own returns' paired interval, family-wise over the run's 4 pairs
    first = saved["pairs"][0]
    low, high = sharpe_diff_ci(result.returns["lstm_regression"].to_numpy(),
                               result.returns["lstm_classification"].to_numpy(), confidence=1 - 0.05 / 4,
                               seed=result.config.train.seed)
    assert (first["sharpe_diff_ci_low"], first["sharpe_diff_ci_high"]) == pytest.approx((low, high), rel=1e-12)


def test_pair_claims_are_family_wise_and_carry_their_monte_carlo_error(tiny_run):
    """Every pair's interval is at the Bonferroni level over the run's pairs, says so, and saves the
    error and resamples behind its word; "better" names a side only when the word is settled."""
    result, run_dir = tiny_run
    saved = json.loads((run_dir / "comparisons.json").read_text())
    for row in saved["pairs"]:
        assert row["confidence"] == pytest.approx(1 - 0.05 / len(saved["pairs"]))
        assert row["sharpe_diff_ci_low_mc_se"] >= 0 and row["sharpe_diff_ci_high_mc_se"] >= 0
        assert row["n_boot"] >= 4000  # 25 resamples beyond each bound at 98.75%
        expected = verdict(row["sharpe_diff_ci_low"], row["sharpe_diff_ci_high"], row["sharpe_diff_ci_low_mc_se"],
                           row["sharpe_diff_ci_high_mc_se"])
        assert row["verdict"] == expected and row["better"] == {"beats": "a", "worse": "b"}.get(expected)
        assert "(98.75%, family-wise)" in pair_sentence(row)


def test_metrics_carry_the_family_wise_verdict_and_benchmark_relative_keys(tiny_run):
    result, _ = tiny_run
    bench = result.returns["buy_and_hold"].to_numpy()
    for name, entry in result.metrics.items():
        if name == "buy_and_hold":
            assert "alpha" not in entry and "verdict" not in entry
            continue
        assert {"alpha", "alpha_pvalue", "beta", "information_ratio", "beta_matched_bh_cagr"} <= set(entry)
        if "sharpe_diff_ci_low" not in entry:
            assert "verdict" not in entry  # persistence
            continue
        ci = sharpe_diff_interval(result.returns[name].to_numpy(), bench, confidence=1 - 0.05 / 4,
                                  seed=result.config.train.seed)
        assert (entry["verdict_ci_low"], entry["verdict_ci_high"]) == ci.bounds
        assert entry["verdict_ci_low"] <= entry["sharpe_diff_ci_low"] <= entry["sharpe_diff_ci_high"] <= entry[
            "verdict_ci_high"]  # the family-wise interval is the wider one
        # the Monte-Carlo error of each bound and the resamples behind the word are saved with it
        assert (entry["verdict_ci_low_mc_se"], entry["verdict_ci_high_mc_se"], entry["verdict_n_boot"]) == (
            ci.low_mc_se, ci.high_mc_se, ci.n_boot)
        assert entry["verdict_n_boot"] >= 4000 and entry["verdict_ci_low_mc_se"] >= 0
        assert entry["verdict"] == verdict(*ci.bounds, ci.low_mc_se, ci.high_mc_se)


def test_a_run_saved_without_comparisons_json_loads_and_recomputes_them(tiny_run, tmp_path):
    result, run_dir = tiny_run
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    (old / "comparisons.json").unlink()
    loaded = load_run(old)
    assert json_text(loaded.comparisons) == json_text(result.comparisons)
    unchanged = sorted(p.name for p in run_dir.iterdir() if p.name != "comparisons.json")
    assert sorted(p.name for p in old.iterdir()) == unchanged  # loading writes nothing


@pytest.mark.parametrize("text, words", [("{\"pairs\": [", "is not valid JSON"),
                                         ("{\"pairs\": 3, \"spa\": {}, \"mcs\": {}}", "unexpected shape ('pairs'"),
                                         ("{\"pairs\": [], \"spa\": {}}", "unexpected shape ('mcs'")])
def test_a_damaged_comparisons_json_is_one_line(tiny_run, tmp_path, text, words, run_cli):
    _, run_dir = tiny_run
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    (bad / "comparisons.json").write_text(text)
    with pytest.raises(DamagedFileError, match="comparisons.json"):
        load_run(bad)
    before = {p.name: p.read_bytes() for p in bad.iterdir()}
    code, out, err = run_cli(["report", str(bad)])
    assert code == 2 and "Traceback" not in out + err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "comparisons.json" in line and words in line and "re-run" in line
    assert {p.name: p.read_bytes() for p in bad.iterdir()} == before


def test_an_unknown_pair_name_is_refused_before_training(tmp_path, run_cli):
    out_dir = tmp_path / "never"
    code, out, err = run_cli(["run", "--source", "sample:sp500", "--start", "2016-06-01", *TINY, "--set",
                              'backtest.pairs=["lstm_regression:lstm_classifier"]', "--out", str(out_dir)])
    assert code == 2 and "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: backtest.pairs entry")
    assert "'lstm_classifier'" in lines[0] and "lstm_classification" in lines[0] and "buy_and_hold" in lines[0]
    assert not out_dir.exists() and list(tmp_path.iterdir()) == []
