"""The report's CPCV section: the distribution of each strategy's figures over the paths, the
share of paths that beat buy-and-hold, the verdict on the path-averaged returns, and the PBO.
Everything is read from the run's ``cpcv.json``; nothing is computed here but formatting."""

from __future__ import annotations

import math
from typing import Any

from lstmbt.backtest.relative import VERDICT_WORDS
from lstmbt.backtest.scoring import BENCHMARK
from lstmbt.reports.tables import DASH, format_metric

#: the table's columns: header and what it means
COLUMNS = (("strategy", "the strategy, on every path"),
           ("walk-forward Sharpe", "the run's own Sharpe ratio, on the walk-forward's out-of-sample days"),
           ("paths on those days", "the paths' Sharpe ratios over the walk-forward's days only: lowest to highest"),
           ("Sharpe median, all days", "median over the paths of the annualised Sharpe ratio over every sample"),
           ("Sharpe 5-95%", "5th and 95th percentiles of the path Sharpe ratios"),
           ("return median", "median over the paths of the total net return"),
           ("return 5-95%", "5th and 95th percentiles of the path total returns"),
           ("hit rate median", "median over the paths of the hit rate (range below)"),
           ("beats B&H", "paths on which the Sharpe ratio is above buy-and-hold's on the same days"),
           ("path-mean verdict", "the family-wise verdict on the returns averaged over the paths"))


def cpcv_block(cpcv: dict[str, Any], models: list[str],
               metrics: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """What the template shows of ``cpcv`` (``RunResult.cpcv``), or None for a run without CPCV;
    ``metrics``: the run's, for the walk-forward's Sharpe beside the paths'."""
    if not cpcv:
        return None
    settings, summary, metrics = cpcv["settings"], cpcv["summary"], metrics or {}
    return {"settings": settings, "columns": COLUMNS,
            "rows": [_row(name, summary[name], cpcv, name in models, metrics.get(name, {}).get("sharpe"))
                     for name in summary],
            "lines": [skill_sentence(name, summary[name], cpcv.get("verdicts", {}).get(name, {}), settings)
                      + walk_forward_clause(metrics.get(name, {}).get("sharpe"), summary[name], settings)
                      for name in models if name in summary],
            "pbo": pbo_sentence(cpcv.get("pbo", {})), "timings": cpcv.get("timings_s", {})}


def _row(name: str, s: dict[str, Any], cpcv: dict[str, Any], is_model: bool, walk_sharpe: Any) -> dict[str, Any]:
    paths = int(s.get("cpcv_paths", 0))
    verdict = cpcv.get("verdicts", {}).get(name, {})
    words = VERDICT_WORDS.get(verdict.get("verdict") or "", DASH) if is_model else DASH
    beats = DASH if name == BENCHMARK else f"{round(s['cpcv_beats_bh_share'] * paths)} of {paths}"
    hit = format_metric("hit_rate", s.get("cpcv_hit_rate_median"))
    hit_range = _span("hit_rate", s.get("cpcv_hit_rate_min"), s.get("cpcv_hit_rate_max"))
    return {"name": name, "cells": [
        name,
        format_metric("sharpe", walk_sharpe),
        _span("sharpe", s.get("cpcv_sharpe_wf_days_min"), s.get("cpcv_sharpe_wf_days_max")),
        format_metric("sharpe", s.get("cpcv_sharpe_median")),
        _span("sharpe", s.get("cpcv_sharpe_p05"), s.get("cpcv_sharpe_p95")),
        format_metric("total_return", s.get("cpcv_total_return_median")),
        _span("total_return", s.get("cpcv_total_return_p05"), s.get("cpcv_total_return_p95")),
        hit if hit_range == DASH else f"{hit} ({hit_range})",
        beats, words]}


def _span(kind: str, low: Any, high: Any) -> str:
    low, high = format_metric(kind, low), format_metric(kind, high)
    return DASH if low == high == DASH else f"{low} to {high}"


def skill_sentence(name: str, s: dict[str, Any], verdict: dict[str, Any], settings: dict[str, Any]) -> str:
    """One line per model: how many paths beat buy-and-hold, and whether the path-averaged returns
    show evidence of skill (their family-wise Sharpe-difference interval lies above 0)."""
    paths = int(s.get("cpcv_paths", 0))
    beats = round(s.get("cpcv_beats_bh_share", 0.0) * paths)
    spread = (f"path Sharpe median {format_metric('sharpe', s.get('cpcv_sharpe_median'))}, "
              f"5-95% {_span('sharpe', s.get('cpcv_sharpe_p05'), s.get('cpcv_sharpe_p95'))}")
    interval = (f"[{format_metric('sharpe', verdict.get('verdict_ci_low'))}, "
                f"{format_metric('sharpe', verdict.get('verdict_ci_high'))}]")
    if verdict.get("verdict") == "beats":
        return (f"{name}: beats buy-and-hold on {beats} of {paths} paths ({spread}); the path-averaged returns beat "
                f"it at the family-wise level (family-wise Sharpe difference {interval}).")
    worse = " and are significantly worse" if verdict.get("verdict") == "worse" else ""
    finding = f"the path-averaged returns do not beat it{worse}"
    if verdict.get("verdict") == "borderline":
        finding = ("the path-averaged returns are at the edge: a bound of their family-wise interval lies within "
                   "Monte-Carlo error of 0, so no word either way")
    return (f"{name}: no evidence of skill across the paths. It beats buy-and-hold on {beats} of {paths} paths "
            f"({spread}); {finding} (family-wise Sharpe difference {interval}).")


def walk_forward_clause(sharpe: Any, s: dict[str, Any], settings: dict[str, Any]) -> str:
    """Where the walk-forward's Sharpe lies against the paths' on the same days, as a trailing sentence."""
    low, high = s.get("cpcv_sharpe_wf_days_min"), s.get("cpcv_sharpe_wf_days_max")
    if sharpe is None or low is None or high is None or not all(map(math.isfinite, (sharpe, low, high))):
        return ""
    where = "above every path" if sharpe > high else "below every path" if sharpe < low else "within their range"
    return (f" On the walk-forward's own days (from {settings.get('walk_forward_first_date', '?')}) the paths' "
            f"Sharpe runs from {format_metric('sharpe', low)} to {format_metric('sharpe', high)}; the walk-forward's, "
            f"{format_metric('sharpe', sharpe)}, lies {where}.")


def pbo_sentence(pbo: dict[str, Any]) -> str:
    """The PBO over the run's models, per path, in one line, with what it does not show."""
    if "models" not in pbo:  # a record from before PBO left the baselines out: it ranked every strategy
        return _strategies_pbo_sentence(pbo)
    n = len(pbo["models"])
    if not pbo.get("per_path"):
        return ("PBO not computed: it needs at least 2 models to pick the best of" if n < 2
                else "PBO not computed: too few days") + f" (this run has {n} model{'s' if n != 1 else ''})."
    return (f"PBO over the {n} models (CSCV with {pbo['n_blocks']} blocks on each path; buy-and-hold and the naive "
            f"baselines left out): median {pbo['median']:.2f}, range {pbo['min']:.2f} to {pbo['max']:.2f}. It is the "
            f"share of half-splits in which the best of these {n} on one half of a path's days is at or below their "
            "median on the other half (above 0.5: picking the best is mostly luck). It covers picking among these "
            "models only, not a search over settings, and says nothing about beating buy-and-hold.")


def _strategies_pbo_sentence(pbo: dict[str, Any]) -> str:
    """The PBO of an older record, over every strategy: labelled as the ranking it is, not a search."""
    if not pbo.get("per_path"):
        return "PBO not computed: too few strategies or days."
    return (f"PBO over the {len(pbo.get('strategies', []))} strategies, buy-and-hold and the naive baselines included "
            f"(CSCV with {pbo['n_blocks']} blocks on each path): median {pbo['median']:.2f}, range {pbo['min']:.2f} "
            f"to {pbo['max']:.2f}. That set is not a search, so a low value is no sign of low overfitting.")


def cpcv_figure(cpcv: dict[str, Any]) -> Any:
    """Each strategy's path Sharpe ratios over all the samples, one point per path, with
    buy-and-hold's as a line."""
    import plotly.graph_objects as go  # loads plotly: only when a report is drawn

    fig = go.Figure()
    for name, values in cpcv["paths"].items():
        fig.add_trace(go.Box(y=values["sharpe"], name=name, boxpoints="all", jitter=0.3, pointpos=0))
    bench = cpcv["summary"].get(BENCHMARK, {}).get("cpcv_sharpe_median")
    if bench is not None:
        fig.add_hline(y=bench, line_dash="dot", annotation_text="buy-and-hold")
    fig.update_layout(title="Sharpe ratio on each CPCV path, over every sample", yaxis_title="annualised Sharpe", showlegend=False,
                      height=360, margin={"l": 50, "r": 20, "t": 40, "b": 40})
    return fig
