"""The scorecard: one row per strategy with its verdict and the figures a PM asks for first.

Formatting of ``metrics.json`` and ``comparisons.json`` only; every number was computed by the
run. The report, the console summary and ``lstmbt compare`` all build their scorecard here, so
they say the same thing in the same words.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from lstmbt.backtest.relative import VERDICT_WORDS
from lstmbt.reports.tables import format_metric

BENCHMARK = "buy_and_hold"

#: the verdict's words and the CSS class of its badge; every page uses these
VERDICTS = {key: (VERDICT_WORDS[key], css) for key, css in (("beats", "good"), ("inconclusive", "neutral"),
                                                              ("worse", "bad"))}

#: (column key, header, what the column means: the header's tooltip and the README's glossary)
COLUMNS = (
    ("strategy", "strategy", "model or baseline"),
    ("verdict", "verdict", "Sharpe minus buy-and-hold's: above 0 = beats, below 0 = significantly worse, "
                           "else inconclusive, from its family-wise interval (shown under it)"),
    ("sharpe", "Sharpe", "annualised, risk-free rate 0; 95% stationary-bootstrap interval below"),
    ("cagr", "CAGR", "compound annual growth rate, net of costs"),
    ("alpha", "alpha / yr", "intercept of the strategy's daily returns on buy-and-hold's, x 252; "
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
    lines = [f"{len(models)} model{'s' if len(models) != 1 else ''} tested against buy-and-hold{how}. "
             f"Beats it: {beats}. Significantly worse: {', '.join(counts['worse']) or 'none'}. "
             f"Inconclusive: {', '.join(counts['inconclusive']) or 'none'}."]
    spa = comparisons.get("spa") or {}
    if spa:
        p = spa.get("pvalue")
        finding = "some model beats it" if _finite(p) and p < 0.05 else "no evidence that any model beats it"
        lines.append(f"Hansen's SPA test of all {spa.get('n_strategies')} models against {spa.get('benchmark')}: "
                     f"p = {format_metric('spa_pvalue', p)}, {finding} after searching over them.")
    mcs = comparisons.get("mcs") or {}
    if mcs:
        size = mcs.get("size", 0.10)
        kept = ", ".join(mcs.get("included", [])) or "none"
        lines.append(f"Model confidence set ({100 * (1 - size):.0f}%, by daily net return): {kept}. "
                     "The rest are worse than the best of these at that level.")
    return lines


def pair_sentence(pair: dict[str, Any]) -> str:
    """One head-to-head in words: which is better, or that they cannot be told apart."""
    a, b = pair["a"], pair["b"]
    low, high, diff = pair.get("sharpe_diff_ci_low"), pair.get("sharpe_diff_ci_high"), pair.get("sharpe_diff")
    if _finite(high) and high < 0:  # said winner first, so the difference it quotes is positive
        head, low, high, diff = f"{b} beats {a}", -high, -low, -diff
    elif _finite(low) and low > 0:
        head = f"{a} beats {b}"
    else:
        head = f"{a} and {b} cannot be told apart"
    ci = interval(low, high, "sharpe", signed=True)
    text = f"{head}: Sharpe difference {diff:+.2f} {ci}" if _finite(diff) else f"{head}: no Sharpe difference"
    if _finite(pair.get("agreement")):
        text += (f"; they call the same direction on {format_metric('agreement', pair['agreement'])} of days "
                 f"(McNemar p = {format_metric('mcnemar_pvalue', pair.get('mcnemar_pvalue'))}, "
                 f"Diebold-Mariano p = {format_metric('dm_pvalue', pair.get('dm_pvalue'))})")
    if _finite(pair.get("up_share_a")) and _finite(pair.get("up_share_b")):
        text += (f"; {a} calls up on {format_metric('agreement', pair['up_share_a'])} of days, "
                 f"{b} on {format_metric('agreement', pair['up_share_b'])}")
    return text + "."


def _cell(text: str, sub: str = "", cls: str = "") -> dict[str, str]:
    return {"text": text, "sub": sub, "cls": cls}


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
