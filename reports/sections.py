"""Rows of the head-to-head and regime sections: formatting of saved results, never new numbers."""

from __future__ import annotations

import math
import numbers
from typing import Any

import pandas as pd

from lstmbt.backtest.regimes import MIN_INVESTED_DAYS
from lstmbt.reports.scorecard import interval, pair_level, pair_sentence
from lstmbt.reports.tables import format_metric

#: regime kinds in report order, with their titles
REGIME_TITLES = {"volatility": "Trailing 63-day volatility (terciles)", "drawdown": "Buy-and-hold drawdown",
                 "trend": "Close against its 200-day average", "year": "Calendar year"}

#: how a regime cell's verdict (``backtest.relative.verdict``) reads against buy-and-hold
REGIME_WORDS = {"beats": "beats B&H", "worse": "worse than B&H", "inconclusive": "cannot be told apart",
                "borderline": "cannot be told apart (at the edge)"}


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
    if r is None or not _finite(r.get("n_days")):
        return {"text": dash, "sub": ""}
    days = f"{int(r['n_days'])} days"
    if not _finite(r.get("bh_sharpe")):  # too few days in the regime: no figures at all
        return {"text": dash, "sub": days}
    bh = f"B&H {format_metric('sharpe', r.get('bh_sharpe'))}"
    if not _finite(r.get("sharpe")):
        few = _finite(r.get("n_invested")) and int(r["n_invested"]) < MIN_INVESTED_DAYS
        why = f"too few invested days ({int(r['n_invested'])} of {int(r['n_days'])})" if few else days
        return {"text": dash, "sub": f"{why}, {bh}"}
    text = f"{format_metric('sharpe', r['sharpe'])} {interval(r.get('sharpe_ci_low'), r.get('sharpe_ci_high'), 'sharpe')}"
    sub = [bh, *_versus_bh(r), days]
    if r.get("strategy") != "buy_and_hold" and _finite(r.get("hit_rate")):
        share = r.get("base_rate")
        base = max(share, 1 - share) if _finite(share) else math.nan
        sub.append(f"hit {format_metric('hit_rate', r['hit_rate'])} vs {format_metric('base_rate', base)}")
    return {"text": text, "sub": ", ".join(sub)}


def _versus_bh(r: dict[str, Any]) -> list[str]:
    """``minus B&H +0.12 [-0.30, +0.55]`` and the word its family-wise interval decides, if any."""
    span = interval(r.get("verdict_ci_low"), r.get("verdict_ci_high"), "sharpe", signed=True)
    if not (span and _finite(r.get("sharpe_diff"))):
        return []
    word = REGIME_WORDS.get(str(r.get("verdict")), str(r.get("verdict")))
    return [f"minus B&H {r['sharpe_diff']:+.2f} {span} {word}"]


def regime_sentences(regimes: pd.DataFrame) -> list[str]:
    """What the regime tables let one say against buy-and-hold, decided by each cell's family-wise interval.

    A model "beats" or "is worse than" buy-and-hold in a regime only where the paired interval of
    its Sharpe minus buy-and-hold's, at the Bonferroni level over every tested cell, excludes 0;
    every other cell "cannot be told apart". Empty for a table saved without verdicts.
    """
    if not len(regimes) or "verdict" not in regimes.columns:
        return []
    family = regimes["tested"].fillna(False).astype(bool)
    cells = regimes[family & regimes["verdict"].notna()]
    few = regimes[family & (regimes["n_invested"] < MIN_INVESTED_DAYS) & regimes["bh_sharpe"].notna()]
    if not len(cells):
        return [] if not len(few) else [_few_sentence(few)]
    level = float(cells["verdict_confidence"].iloc[0])
    lines = [f"{len(cells)} regime cells of the models tested against buy-and-hold (Sharpe difference; Bonferroni: "
             f"each interval at {100 * level:.4g}%, so all {len(cells)} hold together at 95%)."]
    named = []
    for verdict, word in REGIME_WORDS.items():
        if verdict != "inconclusive":
            part = cells[cells["verdict"] == verdict]
            named += [f"{word[0].upper()}{word[1:]}: {_cell_list(part)}."] if len(part) else []
    others = sorted(set(cells["verdict"]) - set(REGIME_WORDS))  # a state this page has no word for yet
    named += [f"{v[0].upper()}{v[1:]}: {_cell_list(cells[cells['verdict'] == v])}." for v in others]
    if named:
        lines += named + ["Every other tested cell cannot be told apart from buy-and-hold."]
    else:
        lines.append("No model beats buy-and-hold or falls behind it in any regime: every tested cell cannot be "
                     "told apart from buy-and-hold.")
    return lines + ([_few_sentence(few)] if len(few) else [])


def _cell_list(part: pd.DataFrame) -> str:
    return "; ".join(f"{r['strategy']} in {_where(r['kind'], r['state'])} ({r['sharpe_diff']:+.2f} "
                     f"{interval(r['verdict_ci_low'], r['verdict_ci_high'], 'sharpe', signed=True)})"
                     for r in part.to_dict("records"))


def _where(kind: str, state: str) -> str:
    return str(state) if kind == "year" else f"{kind} {state}"


def _few_sentence(few: pd.DataFrame) -> str:
    where = "; ".join(f"{r['strategy']} in {_where(r['kind'], r['state'])} ({_days(int(r['n_invested']))})"
                      for r in few.to_dict("records"))
    return f"Not tested, too few invested days (fewer than {MIN_INVESTED_DAYS}; a dash in the tables): {where}."


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"
