"""The scorecard: one row per strategy with its verdict and the figures a PM asks for first.

Formatting of ``metrics.json`` and ``comparisons.json`` only; every number was computed by the
run. The report, the console summary and ``lstmbt compare`` all build their scorecard here, so
they say the same thing in the same words.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from lstmbt.backtest.relative import VERDICT_WORDS, verdict
from lstmbt.reports.tables import format_metric

BENCHMARK = "buy_and_hold"

#: the verdict's words and the CSS class of its badge; every page uses these
VERDICTS = {key: (VERDICT_WORDS[key], css) for key, css in (("beats", "good"), ("inconclusive", "neutral"),
                                                              ("worse", "bad"), ("borderline", "neutral"))}

#: (column key, header, what the column means: the header's tooltip and the README's glossary)
COLUMNS = (
    ("strategy", "strategy", "model or baseline"),
    ("verdict", "verdict", "Sharpe minus buy-and-hold's: above 0 = beats, below 0 = significantly worse, "
                           "else inconclusive, from its family-wise interval (shown under it); at the edge when a "
                           "bound lies within Monte-Carlo error of 0 after the most resamples"),
    ("sharpe", "Sharpe", "annualised, risk-free rate 0; 95% stationary-bootstrap interval below"),
    ("cagr", "CAGR", "compound annual growth rate, net of costs"),
    ("alpha", "alpha / yr", "intercept of the strategy's daily returns on buy-and-hold's, x bars a year; "
                            "one-sided HAC p-value (alpha > 0) below"),
    ("beta", "beta", "slope on buy-and-hold's daily returns"),
    ("information_ratio", "IR", "annualised mean / std of returns minus buy-and-hold's"),
    ("exposure", "exposure", "mean |position|: the average share of capital in the market; below it, where "
                             "positions are fractional, the share of days with any position (time invested)"),
    ("beta_matched_bh_cagr", "B&H at same beta", "CAGR of buy-and-hold scaled to the strategy's beta (the slope "
                                                 "behind alpha), the rest in cash: what the same market risk earned "
                                                 "without timing; the gap to the strategy's CAGR is its alpha"),
    ("max_drawdown", "max DD", "worst fall from a running peak of equity"),
    ("turnover", "turnover", "sum of |position changes| per year"),
    ("hit_rate", "hit rate", "share of days whose direction call was right; below: the base rate of always "
                             "guessing the more common direction, and the one-sided binomial p-value"),
)

#: shorter headers where the console is narrow
CONSOLE_HEADERS = {"alpha": "alpha", "exposure": "exp.", "beta_matched_bh_cagr": "B&H@beta", "turnover": "turn.",
                   "information_ratio": "IR"}


def scorecard_rows(metrics: dict[str, dict[str, Any]], models: list[str],
                   labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per strategy, models first, then the baselines, buy-and-hold last.

    Each row: ``name``, ``kind`` ("model", "baseline" or "benchmark") and ``cells``, a dict per
    column key of ``{"text", "sub", "cls"}``: the figure, a smaller second line (its interval,
    p-value or baseline) and a CSS class (only the verdict has one). ``labels``: more words for a
    strategy's second line, e.g. ``{"lstm_classification": "mean of 5 seeds"}``
    (``reports.seeds.ensemble_labels``).
    """
    order = [s for s in metrics if s in models] + [s for s in metrics if s not in models and s != BENCHMARK]
    order += [BENCHMARK] if BENCHMARK in metrics else []
    up_share = metrics.get(BENCHMARK, {}).get("hit_rate")  # buy-and-hold's hit rate is the share of up days
    rows = [{"name": name, "kind": _kind(name, models), "cells": _cells(name, metrics[name], name in models, up_share)}
            for name in order]
    for row in rows:
        if (labels or {}).get(row["name"]):
            row["cells"]["strategy"]["sub"] += f", {labels[row['name']]}"
    return rows


def _kind(name: str, models: list[str]) -> str:
    return "model" if name in models else "benchmark" if name == BENCHMARK else "baseline"


def _cells(name: str, m: dict[str, Any], is_model: bool, up_share: Any) -> dict[str, dict[str, str]]:
    fmt = format_metric
    cells = {key: _cell(fmt(key, m.get(key))) for key, _, _ in COLUMNS[2:]}
    cells["strategy"] = _cell(name, "model" if is_model else "benchmark" if name == BENCHMARK else "baseline")
    cells["verdict"] = verdict_cell(name, m)
    cells["sharpe"]["sub"] = interval(m.get("sharpe_ci_low"), m.get("sharpe_ci_high"), "sharpe")
    if _finite(m.get("time_invested")) and m["time_invested"] != m.get("exposure"):  # fractional positions
        cells["exposure"]["sub"] = f"{fmt('time_invested', m['time_invested'])} of days"
    if name != BENCHMARK and _finite(m.get("alpha")):
        cells["alpha"]["sub"] = f"p {fmt('alpha_pvalue', m.get('alpha_pvalue'))}"
    if name == BENCHMARK:
        cells["hit_rate"]["sub"] = "share of up days"
    elif is_model and not _finite(m.get("hit_rate")):
        cells["hit_rate"]["sub"] = "no direction call"
    elif _finite(m.get("hit_rate")):
        share = m.get("base_rate", up_share)  # a baseline's base rate is the primary horizon's
        base = max(share, 1 - share) if _finite(share) else math.nan
        cells["hit_rate"]["sub"] = f"base {fmt('base_rate', base)}, p {fmt('hit_rate_pvalue', m.get('hit_rate_pvalue'))}"
    return cells


def verdict_cell(name: str, m: dict[str, Any]) -> dict[str, str]:
    """The verdict badge of one strategy, with its family-wise interval as the second line."""
    if name == BENCHMARK:
        return _cell("benchmark", "", "benchmark")
    words, cls = VERDICTS.get(m.get("verdict") or "", (format_metric("verdict", None), ""))
    sub = interval(m.get("verdict_ci_low"), m.get("verdict_ci_high"), "sharpe", signed=True)
    return _cell(words, sub if m.get("verdict") else "no Sharpe to compare", cls)


def interval(low: Any, high: Any, key: str, signed: bool = False) -> str:
    """``[low, high]`` formatted as ``key``; empty when either end is undefined."""
    if not (_finite(low) and _finite(high)):
        return ""
    if signed:
        return f"[{low:+.2f}, {high:+.2f}]"
    return f"[{format_metric(key, low)}, {format_metric(key, high)}]"


def family_sentences(metrics: dict[str, dict[str, Any]], models: list[str], comparisons: dict[str, Any]) -> list[str]:
    """What survives testing all models at once: the verdict counts, Hansen's SPA and the MCS."""
    if not models:
        return []
    family = comparisons.get("family", {})
    counts = {v: [s for s in models if metrics[s].get("verdict") == v] for v in VERDICTS}
    level = family.get("confidence")
    how = (f" (Bonferroni: each Sharpe-difference interval at {100 * level:.4g}%, so all {len(models)} hold together "
           "at 95%)" if _finite(level) else "")
    beats = ", ".join(counts["beats"]) or "none"
    edge = (f" At the edge (a bound within Monte-Carlo error of 0, so no word either way): "
            f"{', '.join(counts['borderline'])}." if counts["borderline"] else "")
    lines = [f"{len(models)} model{'s' if len(models) != 1 else ''} tested against buy-and-hold{how}. "
             f"Beats it: {beats}. Significantly worse: {', '.join(counts['worse']) or 'none'}. "
             f"Inconclusive: {', '.join(counts['inconclusive']) or 'none'}.{edge}"]
    spa = comparisons.get("spa") or {}
    if spa:
        p = spa.get("pvalue")
        finding = "some model beats it" if _finite(p) and p < 0.05 else "no evidence that any model beats it"
        if spa.get("edge"):
            finding = (f"within Monte-Carlo error of 0.05 after {spa.get('reps'):,} resamples, so at the edge: "
                       "neither a finding nor its absence")
        lines.append(f"Hansen's SPA test of all {spa.get('n_strategies')} models against {spa.get('benchmark')}: "
                     f"p = {format_metric('spa_pvalue', p)}, {finding} after searching over them.")
    mcs = comparisons.get("mcs") or {}
    if mcs:
        lines.append(mcs_sentence(mcs))
    return lines


def mcs_sentence(mcs: dict[str, Any]) -> str:
    """The model confidence set in words: who is in it, and who was shown worse (the tested
    strategies left out), which is no one when the set keeps every tested strategy; strategies
    never invested were not tested and are named apart."""
    size, included = mcs.get("size", 0.10), list(mcs.get("included", []))
    head = f"Model confidence set ({100 * (1 - size):.0f}%, by daily net return): {', '.join(included) or 'none'}."
    if "pvalues" not in mcs:  # a record without its tested strategies cannot say who is left out
        return f"{head} The rest are worse than the best of these at that level."
    rest = [name for name in mcs["pvalues"] if name not in included]
    if rest:
        text = f"{head} The rest of those tested ({', '.join(rest)}) are worse than the best of these at that level."
    else:
        text = (f"{head} It keeps every tested strategy: none is shown worse than the best at that level, so the "
                "set does not separate them.")
    if mcs.get("edge"):
        text += (f" At the edge (a p-value within Monte-Carlo error of {mcs.get('size', 0.10):.0%} after "
                 f"{mcs.get('reps'):,} resamples, so membership could change with the seed): "
                 f"{', '.join(mcs['edge'])}.")
    never = mcs.get("not_tested") or []
    return text + (f" Not tested (never invested): {', '.join(never)}." if never else "")


#: the answer to a pair's ``question`` (a model against its frozen twin: "does retraining pay?") when
#: ``a`` wins, ``b`` wins, or neither
_ANSWERS = ("Yes, ", "No, it costs: ", "Not shown: ")


def pair_sentence(pair: dict[str, Any]) -> str:
    """One head-to-head in words: which is better, or that they cannot be told apart, and at what
    level its interval is: family-wise over the pairs read together, or 95% and unadjusted (a
    pair saved without its ``confidence``); a pair with a ``question`` (``backtest.retraining``)
    is introduced by it and answered first."""
    a, b = pair["a"], pair["b"]
    low, high, diff = pair.get("sharpe_diff_ci_low"), pair.get("sharpe_diff_ci_high"), pair.get("sharpe_diff")
    side = pair.get("verdict") if "verdict" in pair else verdict(low, high)  # saved before pairs had one
    answers = _ANSWERS if pair.get("question") else ("", "", "")
    if side == "worse":  # said winner first, so the difference it quotes is positive
        head, low, high, diff = f"{answers[1]}{b} beats {a}", -high, -low, -diff
    elif side == "beats":
        head = f"{answers[0]}{a} beats {b}"
    else:
        head = f"{answers[2]}{a} and {b} cannot be told apart" + (" (at the edge)" if side == "borderline" else "")
    if pair.get("question"):
        head = f"{pair['question'].capitalize()} {head}"
    ci = interval(low, high, "sharpe", signed=True)
    text = f"{head}: Sharpe difference {diff:+.2f} {ci}" if _finite(diff) else f"{head}: no Sharpe difference"
    if ci:
        text += f" ({pair_level(pair)})"
    if side == "borderline":
        text += "; a bound lies within Monte-Carlo error of 0 even after the most resamples, so no winner is named"
    if _finite(pair.get("agreement")):
        text += (f"; they call the same direction on {format_metric('agreement', pair['agreement'])} of days "
                 f"(McNemar p = {format_metric('mcnemar_pvalue', pair.get('mcnemar_pvalue'))}, "
                 f"Diebold-Mariano p = {format_metric('dm_pvalue', pair.get('dm_pvalue'))})")
    if _finite(pair.get("up_share_a")) and _finite(pair.get("up_share_b")):
        text += (f"; {a} calls up on {format_metric('agreement', pair['up_share_a'])} of days, "
                 f"{b} on {format_metric('agreement', pair['up_share_b'])}")
    return text + "."


def pair_level(pair: dict[str, Any]) -> str:
    """The level of a pair's interval in words: ``"98.33%, family-wise"`` when it was widened over
    several pairs, ``"95%"`` for a single pair, ``"95%, unadjusted"`` when the pair was saved
    without its level (its interval is the plain 95% one, whatever the number of pairs)."""
    level = pair.get("confidence")
    if not _finite(level):
        return "95%, unadjusted"
    return f"{100 * level:.4g}%" + (", family-wise" if level > 0.95 + 1e-12 else "")


def _cell(text: str, sub: str = "", cls: str = "") -> dict[str, str]:
    return {"text": text, "sub": sub, "cls": cls}


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
