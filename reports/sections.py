"""Rows of the head-to-head and regime sections: formatting of saved results, never new numbers."""

from __future__ import annotations

import math
import numbers
from typing import Any

import pandas as pd

from lstmbt.reports.scorecard import interval, pair_level, pair_sentence
from lstmbt.reports.tables import format_metric

#: regime kinds in report order, with their titles
REGIME_TITLES = {"volatility": "Trailing 63-day volatility (terciles)", "drawdown": "Buy-and-hold drawdown",
                 "trend": "Close against its 200-day average", "year": "Calendar year"}


def pair_rows(pairs: list[dict[str, Any]]) -> list[list[str]]:
    """One table row per head-to-head pair of ``comparisons.json``; the interval says its level."""
    rows = []
    for p in pairs:
        diff = p.get("sharpe_diff")
        ci = interval(p.get("sharpe_diff_ci_low"), p.get("sharpe_diff_ci_high"), "sharpe", signed=True)
        rows.append([f"{p['a']} vs {p['b']}", f"{diff:+.2f}" if _finite(diff) else format_metric("sharpe", None),
                     f"{ci} ({pair_level(p)})" if ci else format_metric("sharpe", None),
                     format_metric("mcnemar_pvalue", p.get("mcnemar_pvalue")),
                     format_metric("dm_pvalue", p.get("dm_pvalue")), format_metric("agreement", p.get("agreement")),
                     format_metric("n_days", p.get("n_days")), _better(p)])
    return rows


def _better(pair: dict[str, Any]) -> str:
    sentence = pair_sentence(pair)
    return sentence.split(":", 1)[0]


def regime_blocks(regimes: pd.DataFrame, strategies: list[str], rules: dict[str, str]) -> list[dict[str, Any]]:
    """One table per regime kind: strategies as rows, the kind's states as columns.

    A cell shows the strategy's Sharpe with its interval, and below it buy-and-hold's Sharpe on the
    same days and, for strategies that call a direction, the hit rate against the base rate.
    """
    if not len(regimes):
        return []
    blocks = []
    for kind in [k for k in REGIME_TITLES if k in set(regimes["kind"])]:
        part = regimes[regimes["kind"] == kind]
        states = list(dict.fromkeys(part["state"]))
        by_key = {(r["strategy"], r["state"]): r for r in part.to_dict("records")}
        rows = [{"name": s, "cells": [_regime_cell(by_key.get((s, state))) for state in states]}
                for s in strategies if any((s, state) in by_key for state in states)]
        blocks.append({"kind": kind, "title": REGIME_TITLES[kind], "rule": rules.get(kind, ""), "states": states,
                       "rows": rows})
    return blocks


def _regime_cell(r: dict[str, Any] | None) -> dict[str, str]:
    dash = format_metric("sharpe", None)
    if r is None or not _finite(r.get("sharpe")):
        days = f"{int(r['n_days'])} days" if r is not None and _finite(r.get("n_days")) else ""
        return {"text": dash, "sub": days}
    text = f"{format_metric('sharpe', r['sharpe'])} {interval(r.get('sharpe_ci_low'), r.get('sharpe_ci_high'), 'sharpe')}"
    sub = [f"B&H {format_metric('sharpe', r.get('bh_sharpe'))}", f"{int(r['n_days'])} days"]
    if r.get("strategy") != "buy_and_hold" and _finite(r.get("hit_rate")):
        share = r.get("base_rate")
        base = max(share, 1 - share) if _finite(share) else math.nan
        sub.append(f"hit {format_metric('hit_rate', r['hit_rate'])} vs {format_metric('base_rate', base)}")
    return {"text": text, "sub": ", ".join(sub)}


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
