"""The seed ensembles of a run in the report: each ensemble model's figures over its seeds (median,
min to max), how many seeds share its verdict and hit-rate claim, its best seed deflated over all
seeds, the spread of the fold figures, and every seed's own metrics.

Formatting of ``seeds.json`` (``backtest.seeds.seed_summary``) only; every number was computed by
the run. A run of one seed has no ``seeds.json``, and every function here then returns nothing.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from lstmbt.backtest.relative import VERDICT_WORDS
from lstmbt.backtest.seeds import SKILL_PVALUE
from lstmbt.reports.tables import DASH, format_metric, metric_rows

#: the columns of the spread table: (key of a model's ``summary`` in seeds.json, header)
SPREAD_COLUMNS = (("sharpe", "Sharpe"), ("total_return", "total return"), ("cagr", "CAGR"),
                  ("max_drawdown", "max DD"), ("hit_rate", "hit rate"), ("psr", "PSR"))


def ensemble_labels(seeds: dict[str, Any]) -> dict[str, str]:
    """``{model: "mean of N seeds"}`` for every ensemble model of ``seeds.json``."""
    return {name: f"mean of {entry['n_seeds']} seeds" for name, entry in (seeds or {}).get("models", {}).items()}


def spread_cell(key: str, spread: dict[str, Any] | None) -> dict[str, str]:
    """One figure over the seeds, formatted as ``key``: ``text`` the median, ``sub`` "min to max";
    a dash when no seed has the figure."""
    spread = spread or {}
    if not _finite(spread.get("median")):
        return {"text": DASH, "sub": ""}
    return {"text": format_metric(key, spread["median"]),
            "sub": f"{format_metric(key, spread.get('min'))} to {format_metric(key, spread.get('max'))}"}


def seed_rows(seeds: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per ensemble model for the report's seed table: ``name``, ``label``, ``cells`` (the
    spread of each of ``SPREAD_COLUMNS``), ``verdict`` and ``skill`` ("k of N": the seeds holding
    the ensemble's verdict and hit-rate claim) and ``best`` (the best seed and its deflated Sharpe);
    each cell ``{"text", "sub"}``, a figure and its smaller second line."""
    rows = []
    for name, entry in (seeds or {}).get("models", {}).items():
        skill = entry.get("hit_rate_skill")
        verdict = _words(entry["verdict"]["ensemble"])
        rows.append({"name": name, "label": ensemble_labels(seeds)[name],
                     "cells": [spread_cell(key, entry["summary"].get(key)) for key, _ in SPREAD_COLUMNS],
                     "verdict": {"text": _holds(entry["verdict"]), "sub": verdict},
                     "skill": {"text": _holds(skill), "sub": "skill" if skill["ensemble"] else "no skill"}
                     if skill else {"text": DASH, "sub": "no direction call"},
                     "best": _best_cell(entry.get("best_seed"))})
    return rows


def stability_sentences(seeds: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> list[str]:
    """Per ensemble model, in words: how many seeds hold its verdict and its hit-rate claim, and
    what its best seed's Sharpe is worth once every seed counts as a trial (the deflated Sharpe)."""
    lines = []
    for name, entry in (seeds or {}).get("models", {}).items():
        verdict, n = entry["verdict"], entry["n_seeds"]
        text = (f"{name} (mean of {n} seeds): the verdict ({_words(verdict['ensemble'])}) holds for "
                f"{verdict['holds']} of {verdict['n']} seeds{_dissent(verdict, _words)}.")
        skill = entry.get("hit_rate_skill")
        if skill:
            raw = metrics.get(name, {}).get("hit_rate_pvalue")
            p = format_metric("hit_rate_pvalue", raw)
            family = skill.get("n_tested", 1)  # a record saved before the adjustment: its p stood alone
            if family > 1 and isinstance(raw, (int, float)):
                p += f", {format_metric('hit_rate_pvalue', min(1.0, raw * family))} adjusted over {family} models"
            claim = (f"skill: p = {p}, below {SKILL_PVALUE}" if skill["ensemble"]
                     else f"no skill: p = {p}, not below {SKILL_PVALUE}")
            text += (f" The hit-rate claim ({claim}, binomial against the better constant guess) holds for "
                     f"{skill['holds']} of {skill['n']} seeds.")
        lines.append(text + _best_sentence(entry.get("best_seed")))
    return lines


def fold_rows(seeds: dict[str, Any]) -> list[list[dict[str, str]]]:
    """Per ensemble model and fold: model, fold, test block, then the hit rate and the strategy
    return as "median (min to max)" over the seeds with each seed's value as the second line."""
    rows = []
    for name, entry in (seeds or {}).get("models", {}).items():
        for fold in entry.get("folds", []):
            cells = [{"text": name, "sub": ""}, {"text": str(fold["fold"]), "sub": ""},
                     {"text": f"{fold['test_start']} to {fold['test_end']}", "sub": ""}]
            for key in ("hit_rate", "strategy_return"):
                cell = spread_cell(key, fold[key])
                by_seed = ", ".join(f"{seed}: {format_metric(key, v)}" for seed, v in fold[key]["by_seed"].items())
                cells.append({"text": f"{cell['text']} ({cell['sub']})" if cell["sub"] else cell["text"],
                              "sub": f"seed {by_seed}"})
            rows.append(cells)
    return rows


def seed_metric_tables(seeds: dict[str, Any], help_text: dict[str, str]) -> list[dict[str, Any]]:
    """Per ensemble model, every key of each seed's metrics (as the Details table shows a run's):
    ``name``, ``columns`` ("seed S") and ``rows`` (``tables.metric_rows``, nothing highlighted)."""
    out = []
    for name, entry in (seeds or {}).get("models", {}).items():
        per_seed = {f"seed {seed}": values for seed, values in entry["metrics"].items()}
        out.append({"name": name, "columns": list(per_seed),
                    "rows": metric_rows(per_seed, list(per_seed), help_text, models=())})
    return out


def _holds(agreement: dict[str, Any]) -> str:
    return f"{agreement['holds']} of {agreement['n']}"


def _words(verdict: Any) -> str:
    return VERDICT_WORDS.get(verdict, "no verdict") if isinstance(verdict, str) else "no verdict"


def _dissent(agreement: dict[str, Any], words: Any) -> str:
    """``"; seed 3: beats buy-and-hold"``: the seeds that do not hold the ensemble's value."""
    other = [f"seed {seed}: {words(value)}" for seed, value in agreement["by_seed"].items()
             if value != agreement["ensemble"]]
    return f"; {', '.join(other)}" if other else ""


def _best_cell(best: dict[str, Any] | None) -> dict[str, str]:
    if not best:
        return {"text": DASH, "sub": ""}
    return {"text": f"seed {best['seed']}: Sharpe {format_metric('sharpe', best['sharpe'])}",
            "sub": f"DSR {format_metric('psr', best['dsr'])}, {best['n_trials']} seeds as trials"}


def _best_sentence(best: dict[str, Any] | None) -> str:
    if not best:
        return ""
    n, dsr = best["n_trials"], best.get("dsr")
    luck = format_metric("sharpe", best["sr0_ann"])
    text = (f" Its best seed, {best['seed']}, has a Sharpe of {format_metric('sharpe', best['sharpe'])}; counting "
            f"all {n} seeds as trials (the best of {n} skill-less seeds shows {luck} by luck), its deflated Sharpe "
            f"ratio is {format_metric('psr', dsr)}")
    if not _finite(dsr):
        return text + "."
    return text + (", evidence of skill that survives picking the seed." if dsr >= 0.95
                   else ", not evidence of skill once the seed is picked (needs 0.95).")


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["SPREAD_COLUMNS", "ensemble_labels", "spread_cell", "seed_rows", "stability_sentences", "fold_rows",
           "seed_metric_tables"]
