"""The sweep summary page: ranked trials beside buy-and-hold, and how much of the best is luck.

Renders a ``backtest.sweep.SweepOutcome`` (computed and ranked by ``backtest.sweep``, with the
deflated Sharpe ratio and PBO from ``backtest.overfit``); it formats, and draws curves through
``backtest.metrics``, but computes no new figures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lstmbt.backtest import __version__
from lstmbt.backtest import metrics as m
from lstmbt.reports import environment
from lstmbt.reports.embed import pack_figures, plotly_bundle
from lstmbt.reports.tables import DASH, format_metric

#: the ranking table's figure columns, in order: (summary column, header)
FIGURE_COLUMNS = (("sharpe", "Sharpe"), ("bh_sharpe", "B&H Sharpe"), ("sharpe_minus_bh", "Sharpe - B&H"),
                  ("total_return", "return"), ("bh_total_return", "B&H return"), ("max_drawdown", "max DD"),
                  ("hit_rate", "hit rate"), ("psr", "PSR"), ("n_trades", "trades"), ("fees_paid", "fees"))
#: most rows shown in the page's table (all rows are in summary.parquet)
MAX_ROWS = 500
_LAYOUT = dict(height=380, margin=dict(l=60, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.2))


def render_sweep(outcome: Any) -> str:
    """The HTML text of ``sweep.html`` for ``outcome`` (a ``backtest.sweep.SweepOutcome``)."""
    summary, overfit = outcome.summary, outcome.overfit
    params = [key for key, _ in outcome.spec.params]
    figures = {"fig-sharpe": sharpe_figure(summary), "fig-equity": equity_figure(outcome.curves),
               "fig-logits": logit_figure(overfit.get("logits", []))}
    seeded = "n_seeds" in summary and bool((summary["n_seeds"] > 1).any())  # a seed ensemble among the rows
    metric = outcome.spec.metric if seeded else None
    return environment().get_template("sweep.html.j2").render(
        title=f"lstmbt sweep - {outcome.out_dir.name}", version=__version__,
        overfit=overfit, facts=_facts(outcome), common=outcome.common, best=_best(summary, outcome.spec.metric),
        params=params, figure_headers=[h for _, h in FIGURE_COLUMNS],
        seed_header=f"{metric} over seeds" if seeded else "",
        rows=[_table_row(r, params, metric) for r in summary.head(MAX_ROWS).to_dict("records")],
        n_rows=len(summary), max_rows=MAX_ROWS, trials=_training_rows(outcome.trials),
        sweep_toml=outcome.spec.to_toml(), base_toml=outcome.spec.base.to_toml(),
        plotly_gz=plotly_bundle(), figures_gz=pack_figures(figures),
    )


def _facts(outcome: Any) -> list[tuple[str, str]]:
    """The numbers behind the two sentences, as (label, text) rows."""
    o, t = outcome.overfit, outcome.timings_s
    n_signal = int(outcome.summary["trial"].nunique())
    seeds = o.get("rank_by") == "seed_median"
    return [
        ("ranked by", o["metric"] + (" (median over each row's seeds)" if seeds else "")),
        ("rows (trial x strategy)", f"{o['n_rows']:,} ({o['n_distinct']:,} distinct return series)"),
        ("trials the DSR counts (N)", f"{o.get('n_trials', o['n_distinct']):,}" + (
            f": every seed of each distinct row, since the DSR is that of one seed ({o['dsr_candidate']})"
            if seeds else "")),
        ("trials / training trials", f"{n_signal:,} / {len(outcome.trials):,}"),
        ("common out-of-sample days", f"{outcome.common['days']:,} ({outcome.common['first_date']} to "
                                      f"{outcome.common['last_date']})"),
        ("best row's median seed's Sharpe (annualised)" if seeds else "best row's Sharpe (annualised)",
         _num(o["best_sharpe_ann"])),
        ("expected best Sharpe of N skill-less trials (SR0, annualised)", _num(o["sr0_ann"])),
        ("variance of the trials' daily Sharpe ratios", _num(o["sharpe_var"], ".3g")),
        ("best row's skew / kurtosis (3 = normal)", f"{_num(o['best_skew'])} / {_num(o['best_kurtosis'])}"),
        ("deflated Sharpe ratio (DSR)", _num(o["dsr"], ".3f")),
        ("PBO (CSCV)", f"{_num(o['pbo'], '.3f')} over {o['pbo_splits']:,} splits of S = {o['pbo_blocks']} blocks"),
        ("in-sample best loses out of sample", format_metric("hit_rate", o["prob_oos_loss"]) + " of splits"),
        ("time: training / signal-only / total", " / ".join(f"{t.get(k, math.nan):.1f} s"
                                                            for k in ("training", "signal_only", "total"))),
    ]


def _best(summary: pd.DataFrame, metric: str) -> dict[str, str]:
    """The best row in words; ``seeds``: its ``metric`` over its seeds, when it has several."""
    row = summary.iloc[0]
    verdict = ("beats" if row["sharpe_minus_bh"] > 0 else "does not beat") + " buy-and-hold's Sharpe on the same days"
    seeds = (f"Its {metric} over its {row['n_seeds']} seeds: median {_cell(metric, row['seed_median'])} "
             f"({_cell(metric, row['seed_min'])} to {_cell(metric, row['seed_max'])})."
             if row.get("n_seeds", 1) > 1 else "")
    return {"candidate": row["candidate"], "strategy": row["strategy"], "sharpe": _num(row["sharpe"]),
            "bh_sharpe": _num(row["bh_sharpe"]), "verdict": verdict, "reproduce": row["reproduce"], "seeds": seeds}


def _table_row(record: dict[str, Any], params: list[str], metric: str | None = None) -> dict[str, Any]:
    """One ranking-table row; ``seed``: with ``metric`` (a sweep with seed ensembles) the metric over
    the row's seeds, "median (min to max), N seeds"."""
    cells = [_cell(column, record.get(column)) for column, _ in FIGURE_COLUMNS]
    return {"rank": record["rank"], "trial": record["trial"], "strategy": record["strategy"],
            "params": [_plain(record.get(p)) for p in params], "cells": cells,
            "seed": _seed_cell(metric, record) if metric is not None else "",
            "beats": bool(record["sharpe_minus_bh"] > 0), "duplicate_of": record.get("duplicate_of") or "",
            "run_dir": record["run_dir"], "reproduce": record["reproduce"]}


def _seed_cell(metric: str, record: dict[str, Any]) -> str:
    if record.get("n_seeds", 1) <= 1:
        return "one fit"
    low, high = _cell(metric, record.get("seed_min")), _cell(metric, record.get("seed_max"))
    return f"{_cell(metric, record.get('seed_median'))} ({low} to {high}), {record['n_seeds']} seeds"


def _training_rows(trials: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"name": r["training_trial"], "run_dir": r["run_dir"], "overrides": r["overrides"],
             "n_trials": r["n_trials"], "status": r["status"],
             "seconds": DASH if not np.isfinite(r["train_seconds"]) else f"{r['train_seconds']:.1f}"}
            for r in trials.to_dict("records")]


def _cell(column: str, value: Any) -> str:
    if column in ("sharpe", "bh_sharpe", "sharpe_minus_bh", "psr"):
        return _num(value, "+.2f" if column == "sharpe_minus_bh" else ".2f")
    return format_metric(column, value)


def _num(value: Any, spec: str = ".2f") -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DASH
    return format(number, spec) if math.isfinite(number) else DASH


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return DASH if value is None else str(value)


# --------------------------------------------------------------------------- figures


def sharpe_figure(summary: pd.DataFrame) -> Any:
    """Each row's Sharpe by rank, one trace per strategy, with buy-and-hold's on the same days and costs."""
    import plotly.graph_objects as go

    traces = [go.Scatter(x=group["rank"], y=group["sharpe"], mode="markers", name=strategy,
                         text=group["candidate"], hovertemplate="%{text}<br>Sharpe %{y:.2f}<extra></extra>")
              for strategy, group in summary.groupby("strategy", sort=False)]
    traces.append(go.Scatter(x=summary["rank"], y=summary["bh_sharpe"], mode="markers", name="buy_and_hold",
                             marker=dict(symbol="line-ew-open", size=10, color="#555")))
    fig = go.Figure(traces)
    fig.update_layout(title="Sharpe ratio (annualised, net of costs) by rank; buy-and-hold at each row's costs",
                      xaxis_title="rank", yaxis_title="Sharpe", **_LAYOUT)
    return fig


def equity_figure(curves: pd.DataFrame) -> Any:
    """Growth of 1 over the common days for the top rows and buy-and-hold."""
    import plotly.graph_objects as go

    from lstmbt.reports.figures import scale_toggle  # loads plotly: only when called

    x = [d.strftime("%Y-%m-%d") for d in pd.DatetimeIndex(curves.index)]
    traces = [go.Scatter(x=x, y=m.equity_curve(curves[c].to_numpy())[1:], mode="lines", name=str(c),
                         line=dict(width=1.4, dash="dot" if c == "buy_and_hold" else "solid")) for c in curves]
    fig = go.Figure(traces)
    fig.update_layout(title="Equity of the top rows on the common days (growth of 1, net of costs)",
                      yaxis_title="equity", hovermode="x unified", updatemenus=scale_toggle(), **_LAYOUT)
    return fig


def logit_figure(logits: list[float]) -> Any:
    """Histogram of the CSCV logits; the share at or left of 0 is the PBO."""
    import plotly.graph_objects as go

    fig = go.Figure([go.Histogram(x=logits, nbinsx=40, name="splits", marker_color="#1f77b4")])
    fig.add_vline(x=0, line_dash="dash", line_color="#d62728")
    fig.update_layout(title="Out-of-sample rank logit of the in-sample best, per split (left of 0 = below median)",
                      xaxis_title="logit of relative rank", yaxis_title="splits", **_LAYOUT)
    return fig


__all__ = ["render_sweep", "sharpe_figure", "equity_figure", "logit_figure", "FIGURE_COLUMNS", "MAX_ROWS"]
