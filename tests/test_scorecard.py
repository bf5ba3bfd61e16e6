"""The scorecard's words: one verdict per interval state, pairs said winner first with their level, the family
summary."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lstmbt.backtest.relative import verdict
from lstmbt.reports.scorecard import family_sentences, pair_sentence, scorecard_rows
from lstmbt.reports.sections import pair_rows, regime_blocks

BENCH = {"sharpe": 0.77, "sharpe_ci_low": 0.35, "sharpe_ci_high": 1.28, "hit_rate": 0.546, "cagr": 0.111,
         "exposure": 1.0}


def model(low: float, high: float, **extra) -> dict:
    return {"sharpe": 0.5, "sharpe_ci_low": 0.1, "sharpe_ci_high": 0.9, "verdict": verdict(low, high),
            "verdict_ci_low": low, "verdict_ci_high": high, "hit_rate": 0.53, "base_rate": 0.546,
            "hit_rate_pvalue": 0.8, "alpha": -0.007, "alpha_pvalue": 0.6, **extra}


@pytest.mark.parametrize(("low", "high", "words", "css"), [
    (0.10, 0.90, "beats buy-and-hold", "good"),           # entirely above 0
    (-0.30, 0.20, "inconclusive", "neutral"),    # straddling
    (0.0, 0.40, "inconclusive", "neutral"),      # touching 0 is not above it
    (-1.75, -0.67, "significantly worse", "bad"),  # entirely below: the case the old summary misread
])
def test_the_verdict_cell_has_three_states(low, high, words, css):
    rows = scorecard_rows({"m": model(low, high), "buy_and_hold": BENCH}, ["m"])
    cell = rows[0]["cells"]["verdict"]
    assert (cell["text"], cell["cls"]) == (words, css)
    assert cell["sub"] == f"[{low:+.2f}, {high:+.2f}]"
    assert rows[-1]["name"] == "buy_and_hold" and rows[-1]["cells"]["verdict"]["text"] == "benchmark"


def test_rows_put_models_first_and_baselines_use_the_market_base_rate():
    metrics = {"majority": {"hit_rate": 0.546, "hit_rate_pvalue": 0.5, "verdict": "inconclusive",
                            "verdict_ci_low": 0.0, "verdict_ci_high": 0.0},
               "m": model(-0.3, 0.2), "buy_and_hold": BENCH}
    rows = scorecard_rows(metrics, ["m"])
    assert [r["name"] for r in rows] == ["m", "majority", "buy_and_hold"]
    assert [r["kind"] for r in rows] == ["model", "baseline", "benchmark"]
    assert rows[1]["cells"]["hit_rate"]["sub"] == "base 54.6%, p 0.500"
    assert rows[0]["cells"]["alpha"] == {"text": "-0.7%", "sub": "p 0.600", "cls": ""}


def test_a_model_without_direction_says_so():
    rows = scorecard_rows({"m": model(-0.3, 0.2, hit_rate=math.nan), "buy_and_hold": BENCH}, ["m"])
    assert rows[0]["cells"]["hit_rate"]["sub"] == "no direction call"


def test_pairs_name_the_winner_first_with_a_positive_difference():
    below = {"a": "reg", "b": "clf", "sharpe_diff": -0.79, "sharpe_diff_ci_low": -1.24, "sharpe_diff_ci_high": -0.35}
    assert pair_sentence(below).startswith("clf beats reg: Sharpe difference +0.79 [+0.35, +1.24]")
    above = {**below, "sharpe_diff": 0.5, "sharpe_diff_ci_low": 0.1, "sharpe_diff_ci_high": 0.9}
    assert pair_sentence(above).startswith("reg beats clf: Sharpe difference +0.50 [+0.10, +0.90]")
    straddle = {**below, "sharpe_diff": -0.16, "sharpe_diff_ci_low": -0.57, "sharpe_diff_ci_high": 0.25,
                "agreement": 0.301, "mcnemar_pvalue": 0.0082, "dm_pvalue": 0.0004, "up_share_a": 0.28, "up_share_b": 0.9}
    text = pair_sentence(straddle)
    assert text.startswith("reg and clf cannot be told apart: Sharpe difference -0.16 [-0.57, +0.25]")
    assert "30.1% of days (McNemar p = 0.008, Diebold-Mariano p = <0.001)" in text
    assert "clf on 90.0%" in text
    assert pair_rows([straddle])[0][:3] == ["reg vs clf", "-0.16", "[-0.57, +0.25] (95%, unadjusted)"]


def test_a_pair_says_its_level_and_never_names_a_winner_at_the_edge():
    """A pair saved with its family-wise level quotes it; one without says "unadjusted"; a pair whose
    bound lies within Monte-Carlo error of 0 names no winner, however its point estimate leans."""
    adjusted = {"a": "lstm", "b": "logit", "sharpe_diff": 0.21, "sharpe_diff_ci_low": 0.01, "sharpe_diff_ci_high": 0.5,
                "confidence": 1 - 0.05 / 3, "verdict": "beats"}
    assert pair_sentence(adjusted).startswith("lstm beats logit: Sharpe difference +0.21 [+0.01, +0.50] "
                                              "(98.33%, family-wise)")
    unadjusted = {k: v for k, v in adjusted.items() if k not in ("confidence", "verdict")}
    assert "[+0.01, +0.50] (95%, unadjusted)" in pair_sentence(unadjusted)
    edge = {**adjusted, "sharpe_diff_ci_low": 0.002, "sharpe_diff_ci_low_mc_se": 0.002, "verdict": "borderline"}
    text = pair_sentence(edge)
    assert text.startswith("lstm and logit cannot be told apart (at the edge): Sharpe difference +0.21 [+0.00, +0.50]")
    assert "beats" not in text and "within Monte-Carlo error of 0" in text
    assert pair_rows([edge])[0][-1] == "lstm and logit cannot be told apart (at the edge)"


def test_a_verdict_at_the_edge_has_its_own_badge_and_family_line():
    edge = model(0.002, 0.8) | {"verdict": verdict(0.002, 0.8, 0.002, 0.01)}
    assert edge["verdict"] == "borderline"
    cell = scorecard_rows({"m": edge, "buy_and_hold": BENCH}, ["m"])[0]["cells"]["verdict"]
    assert (cell["text"], cell["cls"], cell["sub"]) == ("inconclusive (at the edge)", "neutral", "[+0.00, +0.80]")
    line = family_sentences({"m": edge, "buy_and_hold": BENCH}, ["m"], {})[0]
    assert "Beats it: none." in line and "At the edge (a bound within Monte-Carlo error of 0" in line


def test_the_family_summary_counts_verdicts_and_reads_spa_and_mcs():
    metrics = {"a": model(0.1, 0.9), "b": model(-1.0, -0.2), "c": model(-0.2, 0.3), "buy_and_hold": BENCH}
    comparisons = {"family": {"confidence": 1 - 0.05 / 3}, "spa": {"pvalue": 0.02, "n_strategies": 3,
                   "benchmark": "buy_and_hold"}, "mcs": {"included": ["a", "buy_and_hold"], "size": 0.1}}
    lines = family_sentences(metrics, ["a", "b", "c"], comparisons)
    assert lines[0].startswith("3 models tested against buy-and-hold (Bonferroni: each Sharpe-difference interval "
                               "at 98.33%")
    assert "Beats it: a. Significantly worse: b. Inconclusive: c." in lines[0]
    assert "p = 0.020, some model beats it" in lines[1]
    assert lines[2].startswith("Model confidence set (90%, by daily net return): a, buy_and_hold.")
    comparisons["spa"]["pvalue"] = 0.5
    assert "no evidence that any model beats it" in family_sentences(metrics, ["a"], comparisons)[1]


def test_regime_blocks_put_states_in_columns_with_the_baseline_below():
    frame = pd.DataFrame([
        {"strategy": "m", "kind": "drawdown", "state": "shallow", "n_days": 300, "sharpe": 0.3, "sharpe_ci_low": -0.2,
         "sharpe_ci_high": 0.8, "bh_sharpe": 0.5, "hit_rate": 0.52, "base_rate": 0.53},
        {"strategy": "m", "kind": "drawdown", "state": "deep", "n_days": 10, "sharpe": math.nan},
    ])
    (block,) = regime_blocks(frame, ["m", "buy_and_hold"], {"drawdown": "rule"})
    assert block["states"] == ["shallow", "deep"] and [r["name"] for r in block["rows"]] == ["m"]
    shallow, deep = block["rows"][0]["cells"]
    assert shallow == {"text": "0.30 [-0.20, 0.80]", "sub": "B&H 0.50, 300 days, hit 52.0% vs 53.0%"}
    assert deep == {"text": "\u2013", "sub": "10 days"}


def test_the_mcs_sentence_names_the_rest_only_when_there_is_one():
    metrics = {"a": model(0.1, 0.9), "b": model(-0.2, 0.3), "c": model(-1.0, -0.2), "buy_and_hold": BENCH}
    tested = {"a": 0.02, "b": 0.5, "c": 0.01, "buy_and_hold": 1.0}
    mcs = {"included": ["b", "buy_and_hold"], "pvalues": tested, "size": 0.1, "not_tested": ["flat"]}
    some = family_sentences(metrics, ["a", "b", "c"], {"mcs": mcs})[-1]
    assert some == ("Model confidence set (90%, by daily net return): b, buy_and_hold. The rest of those tested (a, c) "
                    "are worse than the best of these at that level. Not tested (never invested): flat.")
    every = family_sentences(metrics, ["a", "b", "c"], {"mcs": {**mcs, "included": list(tested), "not_tested": []}})[-1]
    assert every == ("Model confidence set (90%, by daily net return): a, b, c, buy_and_hold. It keeps every tested "
                     "strategy: none is shown worse than the best at that level, so the set does not separate them.")
    assert "rest" not in every and "worse than the best of these" not in every


def test_a_cpcv_verdict_at_the_edge_claims_neither_side():
    from lstmbt.reports.cpcv import skill_sentence

    summary = {"cpcv_paths": 5, "cpcv_beats_bh_share": 0.6, "cpcv_sharpe_median": 0.4, "cpcv_sharpe_p05": 0.1,
               "cpcv_sharpe_p95": 0.7}
    edge = {"verdict": "borderline", "verdict_ci_low": 0.002, "verdict_ci_high": 0.9}
    text = skill_sentence("m", summary, edge, {})
    assert "at the edge" in text and "do not beat it" not in text and "beat it at the family-wise level" not in text
    assert "do not beat it" in skill_sentence("m", summary, {**edge, "verdict": "inconclusive"}, {})
