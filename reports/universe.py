"""The universe report: portfolio strategies against equal-weight buy-and-hold, and every ticker.

Renders a ``backtest.universe.io.UniverseResult`` (live or read back with
``backtest.universe.io.load_universe_run``) as one self-contained page; numbers come from its
metrics, the tickers' own ``metrics.json``, its returns and weights, its cost sweep and trades,
never recomputed here beyond the curves ``backtest.metrics`` draws. The Costs and Trades sections
are the single-ticker report's (``_costs.html.j2``, ``_trades.html.j2``, ``reports.tables``).
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Any

import jinja2
import pandas as pd

from lstmbt.backtest import __version__
from lstmbt.reports import METRIC_HELP, carry_text, environment, format_metric
from lstmbt.reports.embed import pack_figures, plotly_bundle
from lstmbt.reports.scorecard import VERDICTS, interval
from lstmbt.reports.tables import DASH, cost_rows, last_trades, metric_rows, trade_summary

BENCHMARK = "ew_buy_and_hold"
#: what the metrics mean for a portfolio where that differs from a single ticker's run
PORTFOLIO_HELP = {
    **METRIC_HELP,
    "exposure": "mean gross position (sum of |target weights|) over the days",
    "time_invested": "share of days with any position",
    "turnover": "sum over tickers of |target weight changes| per year (1 = book traded once a year)",
    "avg_holdings": "mean number of tickers held per day",
    "n_trades": "round trips over all tickers (an open position at the end counts)",
    "n_orders": "fills over all tickers, rebalancing included (each pays fees and slippage)",
    "win_rate": "share of trades (one ticker's, a partial sale included) with a positive net return",
    "avg_holding_days": "mean trade length in days of the tickers' joint calendar",
    "sharpe_diff_ci_low": "lower end of the 95% block bootstrap interval of Sharpe minus ew_buy_and_hold's "
                          "(above 0 = evidence of beating it)",
}
#: rows where more or less is not better in itself
NEUTRAL = ("avg_holdings", "n_orders")
HEADLINE = ("total_return", "cagr", "sharpe", "max_drawdown", "exposure", "turnover", "fees_paid")
#: per-ticker figures shown for each of its strategies
TICKER_KEYS = ("total_return", "sharpe", "hit_rate", "hit_rate_pvalue")
SECTIONS = ("summary", "metrics", "performance", "costs", "trades", "tickers", "run")
#: what a trade is in a portfolio, beside the single-ticker report's note
TRADES_NOTE = ("A trade is one ticker's position in one strategy; a rebalancing sale closes part of it as a trade "
               "of its own, and holding days count days of the tickers' joint calendar.")


def render_universe(result: Any) -> str:
    """The HTML text of the universe report for ``result``."""
    metrics, manifest = result.metrics, result.manifest
    strategies = list(metrics)
    costs, trades = result.costs, result.trades  # empty for a universe saved before they were kept
    figures = universe_figures(result.returns, result.weights, costs)
    columns, rows = ticker_rows(result.ticker_metrics, manifest)
    shown = [s for s in SECTIONS if {"costs": len(costs) > 0, "trades": len(trades) > 0}.get(s, True)]
    return _template().render(
        title=f"lstmbt universe - {manifest.get('data', {}).get('source', result.config.data.source)}",
        version=__version__, sections=shown, manifest=manifest, portfolio=held(result),
        top_k_text=top_k_sentence(result),
        backtest=result.config.backtest, headline=headline_rows(metrics), headline_keys=HEADLINE,
        verdicts=verdicts(metrics, ("xs_",) if repeats_benchmark(result) else ()), rows=_metric_rows(metrics, strategies), strategies=strategies,
        ticker_columns=columns, tickers=rows, warnings=manifest.get("warnings", []),
        config_toml=result.config.to_toml(), figure_ids=list(figures),
        plotly_gz=plotly_bundle(), figures_gz=pack_figures(figures),
        **_cost_and_trade_context(result, costs, trades),
    )


def _cost_and_trade_context(result: Any, costs: pd.DataFrame, trades: pd.DataFrame) -> dict[str, Any]:
    """What ``_costs.html.j2`` and ``_trades.html.j2`` need, as the single-ticker report fills them;
    every portfolio but the benchmark is a model's, and the best of them per fee level is marked."""
    strategies = list(result.metrics)
    models = [s for s in strategies if s != BENCHMARK]
    cost_strategies, cost_returns = cost_rows(costs, "total_return", models) if len(costs) else ([], [])
    _, cost_sharpe = cost_rows(costs, "sharpe", models) if len(costs) else ([], [])
    trade_columns, trade_list = last_trades(trades) if len(trades) else ([], [])
    return {"carry_text": carry_text(result.config.backtest), "cost_strategies": cost_strategies,
            "cost_returns": cost_returns, "cost_sharpe": cost_sharpe,
            "trade_summary": trade_summary(result.metrics, strategies), "trade_columns": trade_columns,
            "trades": trade_list, "n_trades_total": len(trades), "trades_note": TRADES_NOTE}


def held(result: Any) -> dict[str, int]:
    """The top_k and bottom_k the run used: the manifest's (``top_k = 0`` resolved to a third of the
    universe), or for a run saved before it recorded them, its config's (then always explicit)."""
    recorded = result.manifest.get("portfolio") or {}
    config = result.config.portfolio
    return {"top_k": recorded.get("top_k", config.top_k), "bottom_k": recorded.get("bottom_k", config.bottom_k)}


def repeats_benchmark(result: Any) -> bool:
    """Whether the xs_ strategies held every ticker long (a universe saved before such a top_k was
    refused): they are the benchmark again, which its saved note says once; no verdict each."""
    k, short = held(result).values()
    return not short and k >= len(result.manifest.get("universe", []))


def top_k_sentence(result: Any) -> str:
    """Where the xs_ strategies' top_k came from, in words (the report's summary and the console)."""
    n, (k, short) = len(result.manifest.get("universe", [])), held(result).values()
    configured = (result.manifest.get("portfolio") or {}).get("configured_top_k", result.config.portfolio.top_k)
    what = f"xs_ holds the top {k} of {n} tickers" + (f" and shorts the bottom {short}" if short else "")
    if (result.manifest.get("portfolio") or {}).get("ranking_days") == 0:
        return (f"No xs_ strategies: {what.replace('holds', 'would hold').replace('shorts', 'short')}, but no decision "
                "day has more active tickers than that to rank (see the notes).")
    if configured == 0:
        return (f"{what}: portfolio.top_k = 0, the default, is a third of the universe, rounded, at least 1 and "
                f"{'at most the tickers not shorted' if short else 'fewer than all its tickers'}.")
    return f"{what} (portfolio.top_k = {k})."


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


def verdicts(metrics: dict[str, dict[str, Any]], skip: tuple[str, ...] = ()) -> list[str]:
    """One sentence per strategy: its verdict against the benchmark in the words of the single-ticker
    scorecard (``reports.scorecard.VERDICTS``), with the family-wise interval it rests on; none for
    the strategies whose names start with one of ``skip``."""
    bench = metrics.get(BENCHMARK)
    if bench is None:
        return []
    out = []
    for name, entry in metrics.items():
        if name == BENCHMARK or name.startswith(skip):
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


def universe_figures(returns: pd.DataFrame, weights: pd.DataFrame, costs: pd.DataFrame | None = None) -> dict[str, Any]:
    """Equity and drawdown of the portfolio strategies, how many tickers were active each day, and
    (with a cost sweep) the single-ticker report's total return by fee level."""
    import plotly.graph_objects as go

    from lstmbt.reports.figures import cost_figure, drawdown_figure, equity_figure  # loads plotly: only when called

    active = weights[weights["strategy"] == BENCHMARK]
    counts = active.assign(held=active["weight"] != 0).groupby("date")["held"].sum()
    count_fig = go.Figure(go.Scatter(x=[d.strftime("%Y-%m-%d") for d in pd.DatetimeIndex(counts.index)],
                                     y=counts.to_numpy(), mode="lines", line=dict(shape="hv", width=1.4),
                                     name="tickers"))
    count_fig.update_layout(title="Tickers in the universe per decision day (data and a prediction that day)",
                            height=300, margin=dict(l=60, r=20, t=50, b=40), yaxis_title="tickers")
    figures = {"perf-equity": equity_figure(returns), "perf-drawdown": drawdown_figure(returns),
               "perf-active": count_fig}
    if costs is not None and len(costs):
        figures["costs-by-fee"] = cost_figure(costs)
    return figures


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    return environment().get_template("universe.html.j2")
