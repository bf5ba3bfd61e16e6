"""Plotly figures for the report, built from a RunResult's frames through ``backtest.metrics``.

Figure ids start with the section they belong to (``perf-``, ``pred-``, ``folds-``, ``costs-``).
Every daily series is drawn in full: nothing is decimated, so no drawdown can hide between
samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from backtest import metrics as m

BENCHMARK = "buy_and_hold"
_COLORS = {"buy_and_hold": "#7f7f7f", "lstm_regression": "#1f77b4", "lstm_classification": "#d62728",
           "ridge_regression": "#17becf", "logistic_classification": "#ff7f0e",
           "persistence": "#2ca02c", "majority": "#9467bd", "actual": "#222222"}
_LAYOUT = dict(height=380, margin=dict(l=60, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.15))
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def _dates(index: Any) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.DatetimeIndex(index)]


def _line(x: Any, y: Any, name: str, **style: Any) -> go.Scatter:
    color = _COLORS.get(name)
    line = dict(width=1.4, **({"color": color} if color else {}), **style)
    return go.Scatter(x=x, y=y, name=name, mode="lines", line=line)


def _figure(traces: list, title: str, **layout: Any) -> go.Figure:
    fig = go.Figure(traces)
    fig.update_layout(title=title, **{**_LAYOUT, **layout})
    return fig


# ----------------------------------------------------------------------------------- performance


def scale_toggle() -> list[dict]:
    """Linear/log buttons for the y axis, inside the plot's top-left corner (clear of the toolbar)."""
    return [dict(type="buttons", direction="right", x=0.01, y=0.99, xanchor="left", yanchor="top", showactive=True,
                 buttons=[dict(label="linear", method="relayout", args=[{"yaxis.type": "linear"}]),
                          dict(label="log", method="relayout", args=[{"yaxis.type": "log"}])])]


def equity_figure(returns: pd.DataFrame) -> go.Figure:
    """Growth of 1 unit of capital per strategy, with a linear/log toggle."""
    x = _dates(returns.index)
    fig = _figure([_line(x, m.equity_curve(returns[c].to_numpy())[1:], c) for c in returns.columns],
                  "Equity (growth of 1, net of costs)", yaxis_title="equity", hovermode="x unified")
    fig.update_layout(updatemenus=scale_toggle())
    return fig


def drawdown_figure(returns: pd.DataFrame) -> go.Figure:
    """Underwater chart: fall below the running peak, as a fraction."""
    x = _dates(returns.index)
    return _figure([_line(x, m.drawdown_curve(returns[c].to_numpy())[1:], c) for c in returns.columns],
                   "Drawdown (underwater)", yaxis_title="below peak", yaxis_tickformat=".0%", hovermode="x unified")


def monthly_heatmap(returns: pd.Series, name: str) -> go.Figure:
    """Compounded return per calendar month (rows years, columns months) of one strategy."""
    table = m.monthly_return_table(returns)
    z = table.to_numpy()
    text = [["" if np.isnan(v) else f"{100 * v:.1f}" for v in row] for row in z]
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    heat = go.Heatmap(z=z, x=_MONTHS, y=[str(y) for y in table.index], text=text, texttemplate="%{text}",
                      colorscale="RdYlGn", zmid=0.0, zmin=-limit, zmax=limit, colorbar=dict(tickformat=".0%"),
                      hovertemplate="%{y} %{x}: %{z:.2%}<extra></extra>")
    height = max(260, 26 * len(table) + 110)
    return _figure([heat], f"Monthly returns (%): {name}", height=height, yaxis=dict(autorange="reversed", type="category"))


def yearly_figure(returns: pd.DataFrame) -> go.Figure:
    """Compounded return per calendar year, every strategy beside buy-and-hold."""
    bars = []
    for c in returns.columns:
        yearly = m.period_returns(returns[c], "Y")
        bars.append(go.Bar(x=[str(p.year) for p in yearly.index], y=yearly.to_numpy(), name=c,
                           marker_color=_COLORS.get(c)))
    return _figure(bars, "Yearly returns vs buy-and-hold", barmode="group", yaxis_tickformat=".0%")


def rolling_sharpe_figure(returns: pd.DataFrame, window: int = 126) -> go.Figure:
    """Annualised Sharpe over a trailing ``window`` days per strategy."""
    x = _dates(returns.index)
    fig = _figure([_line(x, m.rolling_sharpe(returns[c].to_numpy(), window), c) for c in returns.columns],
                  f"Rolling {window}-day Sharpe (annualised)", yaxis_title="Sharpe", hovermode="x unified")
    fig.add_hline(y=0.0, line_color="#444444", line_width=1)
    return fig


# ----------------------------------------------------------------------------------- predictions


def regression_figures(frames: dict[str, pd.DataFrame], target: str) -> dict[str, go.Figure]:
    """Predicted vs actual close and return h days ahead for each regression model, with persistence.

    ``frames``: per regression model, its prediction rows (date, y_true, y_pred, close); the
    models share their days.
    """
    from strategies import predicted_log_return

    first = next(iter(frames.values()))
    x = _dates(first["date"])
    close = first["close"].to_numpy()
    true_ret = predicted_log_return(first["y_true"], first["close"], target).to_numpy()
    pred_ret = {name: predicted_log_return(f["y_pred"], f["close"], target).to_numpy() for name, f in frames.items()}
    what = ("worst close of the next days", "worst log drop ahead") if target == "max_drawdown" else ("close", "log return")
    price = _figure([_line(x, close * np.exp(true_ret), "actual")]
                    + [_line(x, close * np.exp(r), name) for name, r in pred_ret.items()]
                    + [_line(x, close, "persistence", dash="dot")],
                    f"Regression: predicted vs actual {what[0]}", yaxis_title=what[0], hovermode="x unified")
    ret = _figure([go.Scatter(x=x, y=true_ret, name="actual", mode="markers", marker=dict(size=3, color="#222222"))]
                  + [_line(x, r, name) for name, r in pred_ret.items()]
                  + [_line(x, np.zeros(len(x)), "persistence", dash="dot")],
                  f"Regression: predicted vs actual {what[1]}", yaxis_title=what[1], yaxis_tickformat=".1%",
                  hovermode="x unified")
    return {"pred-reg-price": price, "pred-reg-return": ret}


def confusion_figure(pred_up: np.ndarray, real_up: np.ndarray, name: str) -> go.Figure:
    """Counts of realised vs predicted direction of the classifier ``name``."""
    counts = m.confusion_counts(pred_up, real_up)
    share = counts / max(counts.sum(), 1)
    text = [[f"{counts[i, j]}<br>{100 * share[i, j]:.1f}%" for j in range(2)] for i in range(2)]
    heat = go.Heatmap(z=counts, x=["predicted down", "predicted up"], y=["realised down", "realised up"], text=text,
                      texttemplate="%{text}", colorscale="Blues", showscale=False,
                      hovertemplate="%{y}, %{x}: %{z}<extra></extra>")
    return _figure([heat], f"Confusion matrix: {name} (p_up > 0.5 = up)", height=340)


def calibration_figure(frames: dict[str, pd.DataFrame]) -> go.Figure:
    """Reliability curves: realised up share per p_up bin against the bin's mean p_up, per classifier."""
    traces = []
    for name, frame in frames.items():
        table = m.calibration_curve(frame["y_true"].to_numpy(), frame["p_up"].to_numpy())
        size = 6 + 18 * np.sqrt(table["count"] / table["count"].max())
        traces.append(go.Scatter(x=table["mean_p"], y=table["realised"], mode="lines+markers", name=name,
                                 marker=dict(size=size, color=_COLORS.get(name)), line=dict(color=_COLORS.get(name)),
                                 customdata=table["count"],
                                 hovertemplate="mean p_up %{x:.3f}<br>realised %{y:.3f}<br>%{customdata} days"
                                               "<extra></extra>"))
    ideal = go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                       line=dict(dash="dot", color="#444444"))
    return _figure(traces + [ideal], "Classification: calibration (marker size = days in bin)",
                   xaxis=dict(title="mean predicted p_up", range=[0, 1]), yaxis=dict(title="realised up share", range=[0, 1]))


def probability_histogram(y_true: np.ndarray, p_up: np.ndarray, name: str) -> go.Figure:
    """Distribution of the classifier ``name``'s p_up on days that went up vs days that went down."""
    y = np.asarray(y_true) > 0
    traces = [go.Histogram(x=np.asarray(p_up)[y == up], name=label, opacity=0.6, nbinsx=40, marker_color=color)
              for up, label, color in ((True, "realised up", "#2ca02c"), (False, "realised down", "#d62728"))]
    fig = _figure(traces, f"p_up by realised outcome: {name}", barmode="overlay",
                  xaxis_title="p_up", yaxis_title="days")
    fig.add_vline(x=0.5, line_dash="dot", line_color="#444444")
    return fig


def rolling_hit_figure(dates: pd.Index, calls: dict[str, np.ndarray], real_up: np.ndarray,
                       window: int = 63) -> go.Figure:
    """Trailing hit rate of each model's daily up/down calls against the trailing base rate."""
    x = _dates(dates)
    traces, base = [], None
    for name, pred_up in calls.items():
        hits, base = m.rolling_hit_rate(pred_up, real_up, window)
        traces.append(_line(x, hits, name))
    traces.append(_line(x, base, "base rate (share of up days)", color="#7f7f7f", dash="dot"))
    return _figure(traces, f"Rolling {window}-day hit rate vs base rate", yaxis_tickformat=".0%", hovermode="x unified")


# ----------------------------------------------------------------------------------- folds, costs


def fold_hit_figure(folds: pd.DataFrame) -> go.Figure:
    """Hit rate per fold and model, with each block's base rate."""
    traces = [go.Bar(x=g["fold"], y=g["hit_rate"], name=model, marker_color=_COLORS.get(model))
              for model, g in folds.groupby("model", sort=False)]
    first = folds[folds["model"] == folds["model"].iloc[0]]
    traces.append(go.Scatter(x=first["fold"], y=first["base_rate"], name="base rate", mode="markers",
                             marker=dict(symbol="line-ew-open", size=14, color="#222222", line=dict(width=2))))
    return _figure(traces, "Hit rate per fold (test block)", barmode="group", xaxis_title="fold",
                   yaxis_tickformat=".0%")


def cost_figure(costs: pd.DataFrame) -> go.Figure:
    """Total return of each strategy as the fee per side grows."""
    traces = [go.Scatter(x=g["fee_bps"], y=g["total_return"], name=s, mode="lines+markers",
                         line=dict(color=_COLORS.get(s))) for s, g in costs.groupby("strategy", sort=False)]
    return _figure(traces, "Total return by fee level", xaxis_title="fee per side (bps)", yaxis_tickformat=".0%")


def report_figures(result: Any) -> dict[str, go.Figure]:
    """All figures of the report keyed by element id, in page order.

    Every model gets a monthly heatmap; the prediction charts show the models of the primary
    horizon (further ``target.horizons`` predict other quantities, and are in the tables). The
    classification diagnostics (confusion matrix, p_up histogram) are drawn for the first
    classifier (the LSTM's, when it ran), with every classifier on the calibration chart.
    """
    from backtest.scoring import horizon_of, task_of
    from strategies import predicted_log_return

    config = result.config
    returns, target = result.returns, config.target.regression
    models = [name for name in result.predictions["model"].unique() if name in returns.columns]
    frames = {name: g for name, g in result.predictions.groupby("model", sort=False)
              if horizon_of(name, config) == config.target.horizon}
    regression = {n: f for n, f in frames.items() if task_of(n) == "regression"}
    classifiers = {n: f for n, f in frames.items() if task_of(n) == "classification"}
    figures = {"perf-equity": equity_figure(returns), "perf-drawdown": drawdown_figure(returns)}
    for name in models + [BENCHMARK]:
        figures[f"perf-monthly-{name}"] = monthly_heatmap(returns[name], name)
    figures["perf-yearly"] = yearly_figure(returns)
    figures["perf-rolling-sharpe"] = rolling_sharpe_figure(returns)
    calls, real_up = {}, None
    for name, f in regression.items():
        if target != "max_drawdown":  # a drawdown forecast calls no direction
            calls[name] = (predicted_log_return(f["y_pred"], f["close"], target) > 0).to_numpy()
            real_up = (predicted_log_return(f["y_true"], f["close"], target) > 0).to_numpy()
    if regression:
        figures.update(regression_figures(regression, target))
    for name, f in classifiers.items():
        calls[name], real_up = (f["p_up"] > 0.5).to_numpy(), (f["y_true"] > 0).to_numpy()
    if classifiers:
        name, f = next(iter(classifiers.items()))
        figures["pred-confusion"] = confusion_figure(calls[name], real_up, name)
        figures["pred-calibration"] = calibration_figure(classifiers)
        figures["pred-p-up-histogram"] = probability_histogram(f["y_true"].to_numpy(), f["p_up"].to_numpy(), name)
    if calls:
        figures["pred-rolling-hit"] = rolling_hit_figure(next(iter(frames.values()))["date"], calls, real_up)
    if "hit_rate" in result.folds.columns:
        figures["folds-hit-rate"] = fold_hit_figure(result.folds)
    if len(result.costs):
        figures["costs-by-fee"] = cost_figure(result.costs)
    return figures
