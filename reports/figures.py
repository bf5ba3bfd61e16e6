"""Plotly figures for the report, built from a RunResult's frames through ``backtest.metrics``.

Figure ids start with the section they belong to (``perf-``, ``pred-``, ``folds-``, ``costs-``);
per-strategy figures end in its name (``perf-monthly-<name>``, ``pred-reg-<name>``).
Every daily series is drawn in full: nothing is decimated, so no drawdown can hide between
samples.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lstmbt.backtest import metrics as m
from lstmbt.models.key import keys_from_frame
from lstmbt.reports.cpcv import cpcv_figure
from lstmbt.strategies import predicted_log_return

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


def monthly_heatmaps(returns: pd.DataFrame, names: list[str]) -> dict[str, go.Figure]:
    """A monthly heatmap per strategy in ``names`` (ids ``perf-monthly-<name>``), all on one colour scale.

    The scale is symmetric around 0 and ends at the largest |monthly return| of any of them,
    so one colour means the same return in every heatmap.
    """
    tables = {name: m.monthly_return_table(returns[name]) for name in names}
    values = np.concatenate([t.to_numpy().ravel() for t in tables.values()]) if tables else np.array([])
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if len(finite) and finite.max() > 0 else 0.01
    return {f"perf-monthly-{name}": monthly_heatmap(table, name, limit) for name, table in tables.items()}


def monthly_heatmap(table: pd.DataFrame, name: str, limit: float) -> go.Figure:
    """Compounded return per calendar month (``backtest.metrics.monthly_return_table``) of one strategy.

    ``limit``: the colour scale runs from -limit (red) to +limit (green), as a fraction.
    """
    z = table.to_numpy()
    text = [["" if np.isnan(v) else f"{100 * v:.1f}" for v in row] for row in z]
    heat = go.Heatmap(z=z, x=_MONTHS, y=[str(y) for y in table.index], text=text, texttemplate="%{text}",
                      colorscale="RdYlGn", zmin=-limit, zmax=limit, colorbar=dict(tickformat=".0%"),
                      hovertemplate="%{y} %{x}: %{z:.1%}<extra></extra>")
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


def rolling_sharpe_figure(returns: pd.DataFrame, window: int = 126, periods_per_year: int = 252) -> go.Figure:
    """Annualised Sharpe (``periods_per_year`` bars a year) over a trailing ``window`` days per strategy."""
    x = _dates(returns.index)
    fig = _figure([_line(x, m.rolling_sharpe(returns[c].to_numpy(), window, periods_per_year), c)
                   for c in returns.columns],
                  f"Rolling {window}-day Sharpe (annualised)", yaxis_title="Sharpe", hovermode="x unified")
    fig.add_hline(y=0.0, line_color="#444444", line_width=1)
    return fig


# ----------------------------------------------------------------------------------- predictions


def regression_figures(frames: dict[str, pd.DataFrame], target: str) -> dict[str, go.Figure]:
    """Per regression model (id ``pred-reg-<name>``): predicted vs realised return, and the residuals.

    ``frames``: per regression model, its prediction rows (date, horizon, y_true, y_pred, close).
    """
    return {f"pred-reg-{name}": regression_figure(frame, name, target) for name, frame in frames.items()}


def forecast_returns(frame: pd.DataFrame, target: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(realised, predicted, what they are) on comparable axes.

    A price target becomes the simple return from the decision day's close (``y / close - 1``);
    the other targets already are log ratios to that close and are used as they are.
    """
    h = int(frame["horizon"].iloc[0]) if "horizon" in frame.columns and len(frame) else 1
    real, pred = frame["y_true"].to_numpy(np.float64), frame["y_pred"].to_numpy(np.float64)
    if target == "price":
        close = frame["close"].to_numpy(np.float64)
        return real / close - 1.0, pred / close - 1.0, f"{h}-day return"
    what = {"week_mean": "log ratio of the next 5 closes' mean", "max_drawdown": "worst log drop ahead"}
    return real, pred, what.get(target, f"{h}-day log return")


def regression_figure(frame: pd.DataFrame, name: str, target: str) -> go.Figure:
    """Left: realised against predicted return with the y = x line of a perfect forecast.
    Right: histogram of the residual (realised - predicted) beside persistence's (it predicts 0)."""
    from plotly.subplots import make_subplots

    real, pred, what = forecast_returns(frame, target)
    ok = np.isfinite(real) & np.isfinite(pred)
    real, pred, dates = real[ok], pred[ok], np.asarray(_dates(frame["date"]))[ok]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.58, 0.42], horizontal_spacing=0.1,
                        subplot_titles=("realised vs predicted", "residual: realised - predicted"))
    color = _COLORS.get(name, "#1f77b4")
    fig.add_trace(go.Scatter(x=pred, y=real, mode="markers", name=name, customdata=dates,
                             marker=dict(size=4, opacity=0.35, color=color),
                             hovertemplate="%{customdata}<br>predicted %{x:.3%}<br>realised %{y:.2%}<extra></extra>"),
                  row=1, col=1)
    lo, hi = _diagonal_span(real, pred)
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect forecast (y = x)",
                             line=dict(dash="dot", color="#444444")), row=1, col=1)
    for x, label, hue in ((real - pred, f"{name} residual", color), (real, "persistence residual", "#2ca02c")):
        fig.add_trace(go.Histogram(x=x, name=label, nbinsx=60, opacity=0.55, marker_color=hue), row=1, col=2)
    fig.update_layout(**{**_LAYOUT, "height": 420, "margin": dict(l=60, r=20, t=90, b=40)}, barmode="overlay",
                      title=f"Regression: {name}, predicted vs realised {what}")
    fig.update_xaxes(title_text=f"predicted {what}", tickformat=_percent_ticks(pred), row=1, col=1)
    fig.update_yaxes(title_text=f"realised {what}", tickformat=".1%", row=1, col=1)
    fig.update_xaxes(title_text="residual", tickformat=".1%", row=1, col=2)
    fig.update_yaxes(title_text="days", row=1, col=2)
    return fig


def _percent_ticks(values: np.ndarray) -> str:
    """A d3 percent format with enough decimals to tell ticks apart across the span of ``values``."""
    span = float(np.ptp(values)) if len(values) else 0.0
    decimals = 1 if span <= 0 else min(max(1, math.ceil(-math.log10(100 * span)) + 1), 4)
    return f".{decimals}%"


def _diagonal_span(real: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Where the y = x line is drawn: the overlap of the predicted and realised ranges (else the predicted)."""
    if not len(pred):
        return 0.0, 0.0
    lo, hi = max(pred.min(), real.min()), min(pred.max(), real.max())
    return (float(lo), float(hi)) if lo < hi else (float(pred.min()), float(pred.max()))


def confusion_figure(pred_up: np.ndarray, real_up: np.ndarray, name: str) -> go.Figure:
    """Counts of realised vs predicted direction of the classifier ``name``."""
    counts = m.confusion_counts(pred_up, real_up)
    share = counts / max(counts.sum(), 1)
    text = [[f"{counts[i, j]}<br>{100 * share[i, j]:.1f}%" for j in range(2)] for i in range(2)]
    heat = go.Heatmap(z=counts, x=["predicted down", "predicted up"], y=["realised down", "realised up"], text=text,
                      texttemplate="%{text}", colorscale="Blues", showscale=False,
                      hovertemplate="%{y}, %{x}: %{z}<extra></extra>")
    return _figure([heat], f"Confusion matrix: {name} (p_up > 0.5 = up)", height=340)


def calibration_figure(frames: dict[str, pd.DataFrame], n_bins: int = 10) -> go.Figure:
    """Reliability curves over quantile bins of p_up, per classifier, zoomed to the bins' mean p_up.

    Each marker is one bin (about the same number of days in each): its mean p_up against the
    share of those days that went up, with a 95% binomial bar; the hover gives the bin's edges
    and day count. The dotted y = x line is perfect calibration, the grey one the share of up days.
    """
    traces, counts, used, up_share = [], [], [], None
    for name, frame in frames.items():
        table = m.calibration_curve(frame["y_true"].to_numpy(), frame["p_up"].to_numpy(), n_bins, bins="quantile")
        counts += table["count"].tolist()
        used += [table["mean_p"].min(), table["mean_p"].max()] if len(table) else []
        if up_share is None and len(table):
            up_share = float((table["realised"] * table["count"]).sum() / table["count"].sum())
        traces.append(go.Scatter(
            x=table["mean_p"], y=table["realised"], mode="lines+markers", name=name,
            marker=dict(size=8, color=_COLORS.get(name)), line=dict(color=_COLORS.get(name)),
            error_y=dict(type="data", array=1.96 * table["realised_se"], thickness=1, width=3),
            customdata=table[["count", "bin_low", "bin_high"]].to_numpy(),
            hovertemplate="p_up %{customdata[1]:.3f} to %{customdata[2]:.3f}: %{customdata[0]} days<br>"
                          "mean p_up %{x:.3f}<br>realised up share %{y:.3f}<extra>%{fullData.name}</extra>"))
    lo, hi = (min(used), max(used)) if used else (0.0, 1.0)
    pad = max(0.005, 0.05 * (hi - lo))
    ideal = go.Scatter(x=[lo - pad, hi + pad], y=[lo - pad, hi + pad], mode="lines", name="perfect calibration",
                       line=dict(dash="dot", color="#444444"))
    days = f"{min(counts)}-{max(counts)}" if counts and min(counts) != max(counts) else f"{counts[0] if counts else 0}"
    fig = _figure(traces + [ideal], f"Calibration: quantile bins of p_up, {days} days each",
                  xaxis=dict(title="mean predicted p_up in the bin", range=[lo - pad, hi + pad]),
                  yaxis=dict(title="realised up share (95% bar)"))
    if up_share is not None:
        fig.add_hline(y=up_share, line_dash="dash", line_color="#9a9a9a", line_width=1,
                      annotation_text=f"share of up days {100 * up_share:.1f}%", annotation_position="bottom right")
    return fig


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
    config = result.config
    returns, target = result.returns, config.target.regression
    predictions = result.predictions
    if len(predictions):
        models = [name for name in predictions["model"].unique() if name in returns.columns]
    else:  # an ad-hoc backtest or tear sheet (lstmbt.backtest.adhoc): every strategy is one to show
        models = [name for name in returns.columns if name != BENCHMARK]
    keys = keys_from_frame(predictions) if len(predictions) else {}
    frames = {name: g for name, g in predictions.groupby("model", sort=False)
              if keys[name].horizon == config.target.horizon} if len(predictions) else {}
    regression = {n: f for n, f in frames.items() if keys[n].task == "regression"}
    classifiers = {n: f for n, f in frames.items() if keys[n].task == "classification"}
    figures = {"perf-equity": equity_figure(returns), "perf-drawdown": drawdown_figure(returns)}
    figures.update(monthly_heatmaps(returns, models + [n for n in (BENCHMARK,) if n in returns.columns]))
    figures["perf-yearly"] = yearly_figure(returns)
    figures["perf-rolling-sharpe"] = rolling_sharpe_figure(
        returns, periods_per_year=int(result.manifest.get("periods_per_year") or 252))  # a run saved before: 252
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
    if getattr(result, "cpcv", {}):
        figures["cpcv-sharpe"] = cpcv_figure(result.cpcv)
    if len(result.costs):
        figures["costs-by-fee"] = cost_figure(result.costs)
    return figures
