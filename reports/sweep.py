"""The sweep summary: the page (``sweep.html``) and the lines ``lstmbt sweep`` prints, in one vocabulary.

Renders a ``backtest.sweep.SweepOutcome`` (computed and ranked by ``backtest.sweep``, with the
deflated Sharpe ratio and PBO from ``backtest.overfit``); it formats, and draws curves through
``backtest.metrics``, but computes no new figures. The counts and the core split are the outcome's
own sentences, so the console, the page and ``overfit.json`` say the same numbers in the same
words. Every figure is formatted by ``reports.tables.format_metric``, as in the run report, and
buy-and-hold's beside it by the same key, so the two are always in the same units.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from lstmbt.backtest import __version__
from lstmbt.backtest import metrics as m
from lstmbt.reports import environment
from lstmbt.reports.embed import pack_figures, plotly_bundle
from lstmbt.reports.tables import DASH, format_metric

#: headers of the ranking metrics; each is shown beside buy-and-hold's (``bh_<metric>``)
LABELS = {"sharpe": "Sharpe", "total_return": "return", "cagr": "CAGR", "sortino": "Sortino", "calmar": "Calmar",
          "max_drawdown": "max DD", "hit_rate": "hit rate"}
#: the metrics every table shows beside buy-and-hold's; the sweep's own metric joins them when it is another
PAIRED = ("sharpe", "total_return", "max_drawdown", "hit_rate")
#: after the pairs: (summary column, header)
OTHER_COLUMNS = (("psr", "PSR"), ("n_trades", "trades"), ("fees_paid", "fees"))
#: most rows shown in the page's table (all rows are in summary.parquet)
MAX_ROWS = 500
#: what the words mean, on the page (the README's "Sweeps" says the same)
LEGEND = (
    ("trial", "one combination of the swept [params] values."),
    ("training trial", "the trials that share every training value (every swept key outside strategy.* and "
                       "backtest.*): trained once, saved as one run directory; its trials are scored from its "
                       "saved predictions."),
    ("row", "one trial and one model strategy, backtested on the common out-of-sample days beside buy-and-hold "
            "at the same costs; named trial:strategy."),
    ("distinct row", "a row whose daily returns no earlier row has. Ranks 1, 2, 3, ... count distinct rows; a row "
                     "that repeats one (a classifier does not read strategy.threshold) shares its rank and is "
                     "listed beside it."),
    ("N", "what the deflated Sharpe ratio and PBO count as the search's tries: the distinct rows (every seed of "
          "each, for the DSR of a median seed)."),
)
_LAYOUT = dict(height=380, margin=dict(l=60, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.2))


def figure_columns(metric: str) -> list[tuple[str, str, str]]:
    """The ranking table's figure columns for a sweep ranked by ``metric``: (summary column, header,
    key it is formatted as). Every metric sits beside buy-and-hold's, formatted as the same key."""
    shown = [*PAIRED[:2], *([metric] if metric not in PAIRED else []), *PAIRED[2:]]
    columns = []
    for key in shown:
        columns += [(key, LABELS[key], key), (f"bh_{key}", f"B&H {LABELS[key]}", key)]
        if key == "sharpe":
            columns.append(("sharpe_minus_bh", "Sharpe - B&H", "sharpe_minus_bh"))
    return columns + [(column, header, column) for column, header in OTHER_COLUMNS]


def ranked_label(spec: Any) -> str:
    """The header of the figure rows are ranked by: "Sharpe", or "Sharpe (seed median)"."""
    label = LABELS[spec.metric]
    return f"{label} (seed median)" if spec.rank_by == "seed_median" else label


def sweep_lines(outcome: Any, top: int = 5) -> list[str]:
    """What ``lstmbt sweep`` prints: the counts, days, core split and timings, the ``top`` distinct
    rows beside buy-and-hold (in the page's formats), then the DSR and PBO sentences."""
    o, t, common = outcome.overfit, outcome.timings_s, outcome.common
    columns = [(c, h, k) for c, h, k in figure_columns(outcome.spec.metric)
               if c.removeprefix("bh_") in ("sharpe", "total_return", outcome.spec.metric)]
    seeded = outcome.spec.rank_by == "seed_median"
    headers = ["rank", "trial", "strategy", *([ranked_label(outcome.spec)] if seeded else []),
               *[h for _, h, _ in columns]]
    table = [headers]
    for r in _distinct(outcome.summary).head(top).to_dict("records"):
        table.append([str(r["rank"]), str(r["trial"]), r["strategy"],
                      *([format_metric(outcome.spec.metric, r["seed_median"])] if seeded else []),
                      *[format_metric(key, r.get(column)) for column, _, key in columns]])
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = [o["counts_sentence"],
             f"{common['days']:,} common out-of-sample days ({common['first_date']} to {common['last_date']}); "
             f"{outcome.cores.get('sentence', 'cores not recorded')}; signal-only scoring {t['signal_only']:.1f} s, "
             f"total {t['total']:.1f} s"]
    lines += ["  ".join(cell.ljust(w) if i == 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
              .rstrip() for row in table]
    return lines + [o["dsr_sentence"], o["pbo_sentence"]]


def render_sweep(outcome: Any) -> str:
    """The HTML text of ``sweep.html`` for ``outcome`` (a ``backtest.sweep.SweepOutcome``)."""
    summary, overfit = outcome.summary, outcome.overfit
    params = [key for key, _ in outcome.spec.params]
    distinct = _distinct(summary)
    ranks = dict(zip(distinct["candidate"], distinct["rank"]))
    curves = outcome.curves.rename(columns=lambda c: f"rank {ranks[c]}: {c}" if c in ranks else c)
    figures = {"fig-sharpe": sharpe_figure(distinct), "fig-equity": equity_figure(curves),
               "fig-logits": logit_figure(overfit.get("logits", []))}
    seeded = "n_seeds" in summary and bool((summary["n_seeds"] > 1).any())  # a seed ensemble among the rows
    metric = outcome.spec.metric if seeded else None
    columns = figure_columns(outcome.spec.metric)
    repeats = _repeats(summary)
    return environment().get_template("sweep.html.j2").render(
        title=f"lstmbt sweep - {outcome.out_dir.name}", version=__version__, legend=LEGEND,
        overfit=overfit, facts=_facts(outcome), common=outcome.common, best=_best(summary, outcome.spec.metric),
        cores=outcome.cores.get("sentence", ""), ranked_label=ranked_label(outcome.spec),
        params=params, figure_headers=[h for _, h, _ in columns],
        param_headers=[Markup(".<wbr>").join(key.split(".")) for key in params],  # may wrap after a dot
        seed_header=f"{LABELS[outcome.spec.metric]} over seeds" if seeded else "",
        rows=[_table_row(r, params, columns, repeats.get(r["candidate"], ""), metric)
              for r in distinct.head(MAX_ROWS).to_dict("records")],
        n_distinct=len(distinct), max_rows=MAX_ROWS, trials=_training_rows(outcome.trials),
        sweep_toml=outcome.spec.to_toml(), base_toml=outcome.spec.base.to_toml(),
        plotly_gz=plotly_bundle(), figures_gz=pack_figures(figures),
    )


def _distinct(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows that are their own return series (ranks 1, 2, 3, ...), best first."""
    return summary[summary["duplicate_of"].isna()]


def _repeats(summary: pd.DataFrame) -> dict[str, str]:
    """``{row: "trial 2, trial 6"}``: the rows that repeat each distinct row's daily returns
    (by trial, with the strategy when it is another)."""
    out: dict[str, list[str]] = {}
    strategy = dict(zip(summary["candidate"], summary["strategy"]))
    for r in summary[summary["duplicate_of"].notna()].to_dict("records"):
        same = strategy[r["duplicate_of"]] == r["strategy"]
        out.setdefault(r["duplicate_of"], []).append(f"trial {r['trial']}" + ("" if same else f" ({r['strategy']})"))
    return {key: ", ".join(names) for key, names in out.items()}


def _facts(outcome: Any) -> list[tuple[str, str]]:
    """The counts and the numbers behind the two sentences, as (label, text) rows."""
    o, t = outcome.overfit, outcome.timings_s
    seeds = o.get("rank_by") == "seed_median"
    return [
        ("ranked by", LABELS[o["metric"]] + (" (median over each row's seeds)" if seeds else "")),
        *([("random draws / repeated draws (each combination runs once)",
             f"{o['n_draws']:,} / {o['n_draws'] - o['n_trials']:,}")] if o.get("n_draws") else []),
        ("trials / training trials", f"{o['n_trials']:,} / {o['n_training_trials']:,}"),
        ("rows (trial × strategy) / distinct rows", f"{o['n_rows']:,} / {o['n_distinct']:,}"),
        ("N, what the DSR counts", f"{o['dsr_n']:,}" + (
            f": every seed of each distinct row, since the DSR is that of one seed ({o['dsr_candidate']})"
            if seeds else ": the distinct rows")),
        ("common out-of-sample days", f"{outcome.common['days']:,} ({outcome.common['first_date']} to "
                                      f"{outcome.common['last_date']})"),
        ("best row's median seed's Sharpe (annualised)" if seeds else "best row's Sharpe (annualised)",
         _num(o["best_sharpe_ann"])),
        ("SR0: the expected best Sharpe of N skill-less series (annualised)", _num(o["sr0_ann"])),
        ("variance of the N series' daily Sharpe ratios", _num(o["sharpe_var"], ".3g")),
        ("best row's skew / kurtosis (3 = normal)", f"{_num(o['best_skew'])} / {_num(o['best_kurtosis'])}"),
        ("deflated Sharpe ratio (DSR)", _num(o["dsr"], ".3f")),
        ("PBO (CSCV)", f"{_num(o['pbo'], '.3f')} over {o['pbo_splits']:,} splits of S = {o['pbo_blocks']} blocks"),
        ("in-sample best loses out of sample", format_metric("prob_oos_loss", o["prob_oos_loss"]) + " of splits"),
        ("cores", outcome.cores.get("sentence", DASH)),
        ("time: training / signal-only / total", " / ".join(f"{t.get(k, math.nan):.1f} s"
                                                            for k in ("training", "signal_only", "total"))),
    ]


def _best(summary: pd.DataFrame, metric: str) -> dict[str, str]:
    """The best row in words; ``seeds``: its ``metric`` over its seeds, when it has several."""
    row = summary.iloc[0]
    verdict = ("beats" if row["sharpe_minus_bh"] > 0 else "does not beat") + " buy-and-hold's Sharpe on the same days"
    seeds = (f"Its {metric} over its {row['n_seeds']} seeds: median {format_metric(metric, row['seed_median'])} "
             f"({format_metric(metric, row['seed_min'])} to {format_metric(metric, row['seed_max'])})."
             if row.get("n_seeds", 1) > 1 else "")
    return {"candidate": row["candidate"], "strategy": row["strategy"], "trial": row["trial"],
            "sharpe": format_metric("sharpe", row["sharpe"]), "bh_sharpe": format_metric("sharpe", row["bh_sharpe"]),
            "verdict": verdict, "reproduce": row["reproduce"], "seeds": seeds}


def _table_row(record: dict[str, Any], params: list[str], columns: list[tuple[str, str, str]], repeats: str,
               metric: str | None = None) -> dict[str, Any]:
    """One ranking-table row; ``repeats``: the rows with the same daily returns; ``seed``: with
    ``metric`` (a sweep with seed ensembles) the metric over the row's seeds, "median (min to max), N seeds"."""
    cells = [format_metric(key, record.get(column)) for column, _, key in columns]
    return {"rank": record["rank"], "trial": record["trial"], "strategy": record["strategy"],
            "params": [_plain(record.get(p)) for p in params], "cells": cells,
            "seed": _seed_cell(metric, record) if metric is not None else "",
            "beats": bool(record["sharpe_minus_bh"] > 0), "repeats": repeats,
            "run_dir": record["run_dir"], "reproduce": record["reproduce"]}


def _seed_cell(metric: str, record: dict[str, Any]) -> str:
    if record.get("n_seeds", 1) <= 1:
        return "one fit"
    low, high = format_metric(metric, record.get("seed_min")), format_metric(metric, record.get("seed_max"))
    return f"{format_metric(metric, record.get('seed_median'))} ({low} to {high}), {record['n_seeds']} seeds"


def _training_rows(trials: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"name": r["training_trial"], "run_dir": r["run_dir"], "overrides": r["overrides"],
             "n_trials": r["n_trials"], "status": r["status"],
             "threads": format_metric("n_threads", r.get("threads")),
             "seconds": DASH if not np.isfinite(r["train_seconds"]) else f"{r['train_seconds']:.1f}"}
            for r in trials.to_dict("records")]


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
    """Each distinct row's Sharpe by rank, one trace per strategy, with buy-and-hold's on the same days and costs."""
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


__all__ = ["render_sweep", "sweep_lines", "figure_columns", "ranked_label", "sharpe_figure", "equity_figure",
           "logit_figure", "LABELS", "LEGEND", "MAX_ROWS"]
