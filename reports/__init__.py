"""Render a RunResult as one self-contained HTML file (Jinja2 + Plotly, plotly.js embedded once).

Reports only format what the run computed: numbers come from ``result.metrics``, curves from
``result.returns`` and ``result.predictions`` through ``backtest.metrics`` helpers.
"""

from __future__ import annotations

import math
import numbers
from functools import lru_cache
from typing import Any

import jinja2

from backtest import __version__

# How each metric is shown; metrics.json always holds raw fractions.
_PERCENT = {"total_return", "cagr", "ann_volatility", "max_drawdown", "exposure", "hit_rate", "fees_paid",
            "slippage_paid", "accuracy", "precision", "recall", "f1", "mape", "persistence_mape"}
_INTEGER = {"n_trades", "n_days"}
_LOWER_IS_BETTER = {"ann_volatility", "rmse", "mae", "mape", "log_loss", "brier", "turnover", "fees_paid",
                    "slippage_paid", "hit_rate_pvalue", "persistence_rmse", "persistence_mae", "persistence_mape"}
METRIC_HELP = {
    "total_return": "compounded net return over the out-of-sample period",
    "cagr": "compound annual growth rate (252 trading days a year)",
    "ann_volatility": "standard deviation of daily returns x sqrt(252)",
    "sharpe": "annualised mean / std of daily returns, risk-free rate 0",
    "sortino": "annualised mean / downside deviation",
    "max_drawdown": "worst fall from a running peak of equity",
    "calmar": "CAGR / |max drawdown|",
    "exposure": "share of days with a position",
    "turnover": "sum of |position changes| per year (1 = book traded once a year)",
    "hit_rate": "share of days whose predicted direction was the realised one; for buy-and-hold the share of up days (the base rate)",
    "hit_rate_pvalue": "one-sided binomial p-value that the hit rate beats the better of always-up / always-down",
    "n_trades": "round trips (an open position at the end counts)",
    "fees_paid": "fees as a fraction of initial capital",
    "slippage_paid": "value lost to slippage as a fraction of initial capital",
    "n_days": "out-of-sample decision days",
    "rmse": "root mean squared error of the regression target",
    "mae": "mean absolute error of the regression target",
    "mape": "mean absolute percentage error (price target)",
    "persistence_rmse": "RMSE of persistence: tomorrow's price = today's (return 0)",
    "persistence_mae": "MAE of persistence",
    "persistence_mape": "MAPE of persistence",
    "accuracy": "share of correct up/down calls at p_up > 0.5",
    "precision": "share of predicted up days that were up",
    "recall": "share of up days predicted up",
    "f1": "harmonic mean of precision and recall",
    "roc_auc": "probability a random up day gets a higher p_up than a random down day (0.5 = no skill)",
    "log_loss": "cross-entropy of p_up in nats (0.693 = coin flip)",
    "brier": "mean squared error of p_up (0.25 = coin flip)",
}


def render_report(result: Any) -> str:
    """The HTML text of the report for ``result`` (a ``backtest.pipeline.RunResult``)."""
    from plotly.offline import get_plotlyjs

    from reports.figures import report_figures

    metrics = result.metrics
    strategies = list(metrics)
    rows = _metric_rows(metrics, strategies)
    figures = report_figures(result.predictions, result.returns, result.config.target.regression)
    manifest = result.manifest or {}
    return _template().render(
        title=f"lstmbt report - {manifest.get('data', {}).get('source', result.config.data.source)}",
        version=__version__,
        strategies=strategies,
        rows=rows,
        verdicts=_verdicts(metrics),
        figures=[(key, _figure_json(fig)) for key, fig in figures.items()],
        folds=_fold_rows(result.folds),
        fold_columns=list(result.folds.columns),
        config_toml=result.config.to_toml(),
        manifest=manifest,
        data=manifest.get("data", {}),
        warnings=manifest.get("warnings", []),
        plotlyjs=get_plotlyjs(),
    )


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html.j2")


def format_metric(name: str, value: Any) -> str:
    """Display text for one metric value; missing or undefined values show as an en dash."""
    if value is None or (isinstance(value, numbers.Real) and not math.isfinite(value)):
        return "\u2013"
    if name in _INTEGER:
        return f"{int(value):,}"
    if name in _PERCENT:
        return f"{100 * value:.2f}%"
    if name == "hit_rate_pvalue":
        return f"{value:.3g}"
    return f"{value:.4g}"


def _metric_rows(metrics: dict[str, dict[str, Any]], strategies: list[str]) -> list[dict[str, Any]]:
    names: list[str] = []
    for entry in metrics.values():
        names += [k for k in entry if k not in names]
    return [{"name": n, "help": METRIC_HELP.get(n, ""), "cells": [format_metric(n, metrics[s].get(n)) for s in strategies]}
            for n in names]


def _verdicts(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """One sentence per model: return and Sharpe vs buy-and-hold, hit rate vs base rate with its p-value."""
    bench = metrics.get("buy_and_hold")
    if bench is None:
        return []
    base = bench["hit_rate"]
    out = []
    for name, m in metrics.items():
        if name == "buy_and_hold":
            continue
        beat = "beat" if _finite(m["sharpe"]) > _finite(bench["sharpe"]) else "did not beat"
        out.append(
            f"{name} {beat} buy-and-hold on Sharpe ({format_metric('sharpe', m['sharpe'])} vs "
            f"{format_metric('sharpe', bench['sharpe'])}; total return {format_metric('total_return', m['total_return'])} "
            f"vs {format_metric('total_return', bench['total_return'])}); its hit rate "
            f"{format_metric('hit_rate', m['hit_rate'])} vs a base rate of {format_metric('hit_rate', max(base, 1 - base))} "
            f"(p = {format_metric('hit_rate_pvalue', m.get('hit_rate_pvalue'))})."
        )
    return out


def _finite(value: Any) -> float:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else -math.inf


def _fold_rows(folds: Any) -> list[list[str]]:
    rows = []
    for record in folds.to_dict("records"):
        rows.append([_cell(v) for v in record.values()])
    return rows


def _cell(value: Any) -> str:
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _figure_json(fig: Any) -> str:
    # Inside <script type="application/json"> a "</script" ends the element early and "<!--" can
    # swallow the rest of the page; JSON's \u escapes keep every <, > and & out of the markup
    # (what Jinja2's ``tojson`` filter does) and JSON.parse reads them back unchanged.
    return fig.to_json().replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


__all__ = ["render_report", "format_metric", "METRIC_HELP"]
