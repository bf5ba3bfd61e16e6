"""The universe report: portfolio strategies against equal-weight buy-and-hold, and every ticker.

Renders a ``backtest.universe.io.UniverseResult`` (live or read back with
``backtest.universe.io.load_universe_run``) as one self-contained page; numbers come from its
metrics, the tickers' own ``metrics.json`` and its returns and weights, never recomputed here
beyond the curves ``backtest.metrics`` draws.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Any

import jinja2
import pandas as pd

from lstmbt.backtest import __version__
from lstmbt.reports import METRIC_HELP, environment, format_metric
from lstmbt.reports.embed import pack_figures, plotly_bundle
from lstmbt.reports.scorecard import VERDICTS, interval
from lstmbt.reports.tables import DASH, metric_rows

BENCHMARK = "ew_buy_and_hold"
#: what the metrics mean for a portfolio where that differs from a single ticker's run
PORTFOLIO_HELP = {
    **METRIC_HELP,
    "exposure": "share of days with any position",
    "turnover": "sum over tickers of |target weight changes| per year (1 = book traded once a year)",
    "avg_holdings": "mean number of tickers held per day",
    "n_trades": "round trips over all tickers (an open position at the end counts)",
    "n_orders": "fills over all tickers, rebalancing included (each pays fees and slippage)",
    "sharpe_diff_ci_low": "lower end of the 95% block bootstrap interval of Sharpe minus ew_buy_and_hold's "
                          "(above 0 = evidence of beating it)",
}
#: rows where more or less is not better in itself
NEUTRAL = ("avg_holdings", "n_orders")
HEADLINE = ("total_return", "cagr", "sharpe", "max_drawdown", "exposure", "turnover", "fees_paid")
#: per-ticker figures shown for each of its strategies
TICKER_KEYS = ("total_return", "sharpe", "hit_rate", "hit_rate_pvalue")
SECTIONS = ("summary", "metrics", "performance", "tickers", "run")


def render_universe(result: Any) -> str:
    """The HTML text of the universe report for ``result``."""
    metrics, manifest = result.metrics, result.manifest
    strategies = list(metrics)
    figures = universe_figures(result.returns, result.weights)
    columns, rows = ticker_rows(result.ticker_metrics, manifest)
    return _template().render(
        title=f"lstmbt universe - {manifest.get('data', {}).get('source', result.config.data.source)}",
        version=__version__, sections=SECTIONS, manifest=manifest, portfolio=result.config.portfolio,
        backtest=result.config.backtest, headline=headline_rows(metrics), headline_keys=HEADLINE,
        verdicts=verdicts(metrics), rows=_metric_rows(metrics, strategies), strategies=strategies,
        ticker_columns=columns, tickers=rows, warnings=manifest.get("warnings", []),
        config_toml=result.config.to_toml(), figure_ids=list(figures),
        plotly_gz=plotly_bundle(), figures_gz=pack_figures(figures),
    )


def _metric_rows(metrics: dict[str, dict[str, Any]], strategies: list[str]) -> list[dict]:
    """Every metric of every strategy; counts of holdings and fills are not ranked. Every strategy
    but the benchmark is a portfolio of one model (``ew_<model>``, ``xs_<model>``), and ranked."""
    rows = metric_rows(metrics, strategies, PORTFOLIO_HELP, [s for s in strategies if s != BENCHMARK])
    for row in rows:
        if row["name"] in NEUTRAL:
            row["cells"] = [{**cell, "best": False} for cell in row["cells"]]
    return rows


def headline_rows(metrics: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Per strategy: its key figures and the 95% interval of its Sharpe minus the benchmark's."""
    return [[name] + [format_metric(k, entry.get(k)) for k in HEADLINE] + [_interval(entry)]
            for name, entry in metrics.items()]


def _interval(entry: dict[str, Any]) -> str:
    low, high = entry.get("sharpe_diff_ci_low"), entry.get("sharpe_diff_ci_high")
    if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in (low, high)):
        return DASH
    return f"[{low:+.2f}, {high:+.2f}]"


def verdicts(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """One sentence per strategy: its verdict against the benchmark in the words of the single-ticker
    scorecard (``reports.scorecard.VERDICTS``), with the family-wise interval it rests on."""
    bench = metrics.get(BENCHMARK)
    if bench is None:
        return []
    out = []
    for name, entry in metrics.items():
        if name == BENCHMARK:
            continue
        words = VERDICTS.get(entry.get("verdict") or "", ("no verdict (no Sharpe to compare)", ""))[0]
        words = words.replace("buy-and-hold", BENCHMARK)
        span = interval(entry.get("verdict_ci_low"), entry.get("verdict_ci_high"), "sharpe", signed=True) or DASH
        out.append(f"{name}: {words}. Sharpe {format_metric('sharpe', entry['sharpe'])} vs "
                   f"{format_metric('sharpe', bench['sharpe'])}, total return "
                   f"{format_metric('total_return', entry['total_return'])} vs "
                   f"{format_metric('total_return', bench['total_return'])}; Sharpe difference {span} "
                   f"(family-wise interval; 95% alone: {_interval(entry)}).")
    return out


def ticker_rows(ticker_metrics: dict[str, dict[str, dict[str, Any]]],
                manifest: dict[str, Any]) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """The per-ticker table: (strategy, metric) columns and one row per ticker with a report link."""
    strategies: list[str] = []
    for metrics in ticker_metrics.values():
        strategies += [s for s in metrics if s not in strategies and s not in ("persistence", "majority")]
    columns = [(s, k) for s in strategies for k in TICKER_KEYS
               if any(k in m.get(s, {}) for m in ticker_metrics.values())]
    rows = []
    for entry in manifest.get("tickers", []):
        metrics = ticker_metrics.get(entry["name"], {})
        oos = entry.get("out_of_sample", {})
        rows.append({"name": entry["name"], "link": f"{entry['run_dir']}/report.html",
                     "period": f"{oos.get('first_date', '')}..{oos.get('last_date', '')}", "days": oos.get("days"),
                     "cells": [format_metric(k, metrics.get(s, {}).get(k)) for s, k in columns]})
    return columns, rows


def universe_figures(returns: pd.DataFrame, weights: pd.DataFrame) -> dict[str, Any]:
    """Equity and drawdown of the portfolio strategies, and how many tickers were active each day."""
    import plotly.graph_objects as go

    from lstmbt.reports.figures import drawdown_figure, equity_figure  # loads plotly: only when called

    active = weights[weights["strategy"] == BENCHMARK]
    counts = active.assign(held=active["weight"] != 0).groupby("date")["held"].sum()
    count_fig = go.Figure(go.Scatter(x=[d.strftime("%Y-%m-%d") for d in pd.DatetimeIndex(counts.index)],
                                     y=counts.to_numpy(), mode="lines", line=dict(shape="hv", width=1.4),
                                     name="tickers"))
    count_fig.update_layout(title="Tickers in the universe per decision day (data and a prediction that day)",
                            height=300, margin=dict(l=60, r=20, t=50, b=40), yaxis_title="tickers")
    return {"perf-equity": equity_figure(returns), "perf-drawdown": drawdown_figure(returns),
            "perf-active": count_fig}


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    return environment().get_template("universe.html.j2")
