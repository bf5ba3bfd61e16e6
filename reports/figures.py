"""Plotly figures for the report, built from a RunResult's frames (no metrics are computed here)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from backtest.metrics import drawdown_curve, equity_curve

BENCHMARK = "buy_and_hold"
_COLORS = {"buy_and_hold": "#7f7f7f", "lstm_regression": "#1f77b4", "lstm_classification": "#d62728"}
_LAYOUT = dict(template="plotly_white", height=380, margin=dict(l=60, r=20, t=50, b=40),
               legend=dict(orientation="h", y=-0.15), hovermode="x unified")


def _dates(index: pd.Index) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.DatetimeIndex(index)]


def _line(x: list[str], y, name: str, **style) -> go.Scatter:
    color = _COLORS.get(name)
    line = dict(width=1.4, **({"color": color} if color else {}), **style)
    return go.Scatter(x=x, y=y, name=name, mode="lines", line=line)


def equity_figure(returns: pd.DataFrame) -> go.Figure:
    """Growth of 1 unit of capital per strategy, log-scale toggle included."""
    x = _dates(returns.index)
    fig = go.Figure([_line(x, equity_curve(returns[c].to_numpy())[1:], c) for c in returns.columns])
    fig.update_layout(title="Equity (growth of 1, net of costs)", yaxis_title="equity", **_LAYOUT)
    fig.update_layout(updatemenus=[dict(type="buttons", direction="right", x=1, y=1.15, showactive=True, buttons=[
        dict(label="linear", method="relayout", args=[{"yaxis.type": "linear"}]),
        dict(label="log", method="relayout", args=[{"yaxis.type": "log"}]),
    ])])
    return fig


def drawdown_figure(returns: pd.DataFrame) -> go.Figure:
    """Underwater chart: fall below the running peak, as a fraction."""
    x = _dates(returns.index)
    fig = go.Figure([_line(x, drawdown_curve(returns[c].to_numpy())[1:], c) for c in returns.columns])
    fig.update_layout(title="Drawdown", yaxis_title="below peak", yaxis_tickformat=".0%", **_LAYOUT)
    return fig


def regression_figure(predictions: pd.DataFrame, target: str) -> go.Figure:
    """Predicted vs realised target on each out-of-sample day, with persistence beside it."""
    frame = predictions[predictions["target"] == "regression"]
    x = _dates(frame["date"])
    naive = frame["close"] if target == "price" else 0.0 * frame["y_true"]
    unit = "close" if target == "price" else "log return"
    fig = go.Figure([
        _line(x, frame["y_true"].to_numpy(), "actual", color="#222222"),
        _line(x, frame["y_pred"].to_numpy(), "lstm_regression"),
        _line(x, naive.to_numpy(), "persistence", color="#2ca02c", dash="dot"),
    ])
    fig.update_layout(title=f"Regression: predicted vs actual next-period {unit}", yaxis_title=unit, **_LAYOUT)
    return fig


def probability_figure(predictions: pd.DataFrame) -> go.Figure:
    """Classifier p_up per day, coloured by the realised direction."""
    frame = predictions[predictions["target"] == "classification"]
    fig = go.Figure()
    for label, name, color in ((1.0, "realised up", "#2ca02c"), (0.0, "realised down", "#d62728")):
        part = frame[frame["y_true"] == label]
        fig.add_trace(go.Scatter(x=_dates(part["date"]), y=part["p_up"].to_numpy(), name=name, mode="markers",
                                 marker=dict(size=3, color=color, opacity=0.6)))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#444444")
    fig.update_layout(title="Classification: predicted p_up by realised direction", yaxis_title="p_up", **_LAYOUT)
    return fig


def report_figures(predictions: pd.DataFrame, returns: pd.DataFrame, regression_target: str) -> dict[str, go.Figure]:
    """All figures of the report keyed by element id, in page order."""
    figures = {"fig-equity": equity_figure(returns), "fig-drawdown": drawdown_figure(returns)}
    tasks = set(predictions["target"])
    if "regression" in tasks:
        figures["fig-regression"] = regression_figure(predictions, regression_target)
    if "classification" in tasks:
        figures["fig-probability"] = probability_figure(predictions)
    return figures
