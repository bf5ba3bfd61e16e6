"""``lstmbt compare``: several saved runs side by side on one self-contained HTML page.

Built only from run directories (``backtest.rundir.load_run``), never from a live run. The
"as saved" table shows every key of each run's ``metrics.json`` as written, each over its own
out-of-sample period. Because those periods differ, the common-period table and the equity
curves recompute the return figures with ``backtest.metrics`` from each ``returns.parquet``,
cut to the dates every run covers. Columns are (run label, strategy) pairs, so a run's
regression and classification models sit next to each other and next to other runs' models.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from lstmbt.backtest import __version__
from lstmbt.backtest import metrics as m
from lstmbt.backtest.crossruns import cross_run_pairs
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.backtest.rundir import RunResult, load_run, write_atomic
from lstmbt.reports import METRIC_HELP, environment, format_metric
from lstmbt.reports.embed import pack_figures, plotly_bundle
from lstmbt.reports.scorecard import pair_sentence
from lstmbt.reports.sections import pair_rows

#: fewest days of returns every run must share (a Sharpe ratio needs two)
MIN_COMMON_DAYS = 2
#: return figures recomputed over the common period, in row order
COMMON_METRICS = ("total_return", "cagr", "ann_volatility", "sharpe", "sortino", "max_drawdown", "calmar", "n_days")
#: run settings shown above the saved metrics: (row name, dotted config key)
_SETTINGS = (("source", "data.source"), ("symbol", "data.symbol"), ("target", "target.task"),
             ("regression target", "target.regression"), ("horizon (days)", "target.horizon"))
_DASHES = {"lstm_regression": "solid", "lstm_classification": "dash", "buy_and_hold": "dot"}
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")
_LAYOUT = dict(height=400, margin=dict(l=60, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.15),
               hovermode="x unified")
DASH = "\u2013"


@dataclass(frozen=True)
class SavedRun:
    """One loaded run directory: its unique ``label`` (the directory name), ``path`` and ``result``."""

    label: str
    path: Path
    result: RunResult


def compare_runs(run_dirs: Sequence[str | Path]) -> str:
    """The HTML text of a page comparing the saved runs in ``run_dirs``.

    Parameters
    ----------
    run_dirs
        One or more distinct run directories written by ``lstmbt run``.

    Raises
    ------
    ConfigError
        No run directory, or the same one given twice.
    DataError
        A path that is not a run directory, or runs sharing fewer than ``MIN_COMMON_DAYS`` days.
    """
    runs = load_runs(run_dirs)
    start, end = common_period(runs)
    windows = common_returns(runs, start, end)

    pairs = cross_run_pairs([(r.label, r.result) for r in runs])
    figures = {"fig-equity": equity_figure(windows, [r.label for r in runs]),
               "fig-drawdown": drawdown_figure(windows, [r.label for r in runs])}
    return _template().render(
        title="lstmbt compare - " + ", ".join(r.label for r in runs),
        version=__version__,
        runs=[{"label": r.label, "path": str(r.path)} for r in runs],
        start=start.strftime("%Y-%m-%d"), end=end.strftime("%Y-%m-%d"),
        common=_grid(list(windows), _common_rows(windows)),
        saved=_grid(_saved_columns(runs), _saved_rows(runs)),
        settings=_setting_rows(runs),
        pairs=pair_rows(pairs), pair_lines=[pair_sentence(p) for p in pairs],
        pair_data=all(p["same_data"] for p in pairs),
        plotly_gz=plotly_bundle(), figures_gz=pack_figures(figures),
    )


def write_compare(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Render the comparison and write it to ``out`` atomically (temporary file, then rename).

    Nothing is written when the runs are refused. Returns ``out`` as a ``Path``.
    """
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name such as {out / 'compare.html'}")
    text = compare_runs(run_dirs)

    return write_atomic(out, text)


def default_compare_path(root: str | Path = "runs") -> Path:
    """``runs/compare-<UTC timestamp>.html``."""
    return Path(root) / f"compare-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}.html"


# --------------------------------------------------------------------------- loading and checking


def load_runs(run_dirs: Sequence[str | Path]) -> list[SavedRun]:
    """Load each run directory once, labelled by its name (made unique when two names are equal)."""
    if not run_dirs:
        raise ConfigError("no run directory given; pass one or more directories written by `lstmbt run`")
    paths = [Path(p) for p in run_dirs]
    seen: dict[Path, Path] = {}
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise ConfigError(f"{path} is given twice (also as {seen[key]}); pass each run directory once")
        seen[key] = path
    runs = [SavedRun(label, path, load_run(path)) for label, path in zip(run_labels(paths), paths)]
    for run in runs:
        for name, table in (("returns.parquet", run.result.returns), ("metrics.json", run.result.metrics)):
            if len(table) == 0:
                raise DataError(f"{run.path / name} is empty; re-run `lstmbt run` to rebuild the run directory")
    return runs


def run_labels(paths: Sequence[str | Path]) -> list[str]:
    """Directory names; equal names get their parent's name in front, then ``#2``, ``#3`` if needed."""
    resolved = [Path(p).resolve() for p in paths]
    names = [p.name or str(p) for p in resolved]
    labels = [f"{p.parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(resolved, names)]
    out: list[str] = []
    for label in labels:
        candidate, n = label, 1
        while candidate in out:
            n += 1
            candidate = f"{label} #{n}"
        out.append(candidate)
    return out


def common_period(runs: Sequence[SavedRun]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last date of returns that every run covers; refuses runs that do not overlap."""
    spans = [(r.label, r.result.returns.index.min(), r.result.returns.index.max()) for r in runs]
    latest_start = max(spans, key=lambda s: s[1])
    earliest_end = min(spans, key=lambda s: s[2])
    start, end = latest_start[1], earliest_end[2]
    shared = min(len(r.result.returns.loc[start:end]) for r in runs)
    if shared >= MIN_COMMON_DAYS:
        return start, end
    if latest_start[0] == earliest_end[0]:
        raise DataError(f"run {latest_start[0]} holds {shared} day(s) of returns; comparing needs at least "
                        f"{MIN_COMMON_DAYS}")
    raise DataError(f"runs {latest_start[0]} ({_span(latest_start)}) and {earliest_end[0]} ({_span(earliest_end)}) "
                    f"share {shared} day(s) of returns, fewer than {MIN_COMMON_DAYS}; compare runs whose "
                    "out-of-sample periods overlap (set data.start/data.end so they do)")


def _span(span: tuple[str, pd.Timestamp, pd.Timestamp]) -> str:
    return f"{span[1]:%Y-%m-%d} to {span[2]:%Y-%m-%d}"


def common_returns(runs: Sequence[SavedRun], start: pd.Timestamp,
                   end: pd.Timestamp) -> dict[tuple[str, str], pd.Series]:
    """``{(run label, strategy): daily net returns from start to end}``, runs and strategies in order."""
    return {(r.label, str(name)): r.result.returns.loc[start:end, name]
            for r in runs for name in r.result.returns.columns}


# --------------------------------------------------------------------------- tables


def period_metrics(returns: np.ndarray) -> dict[str, float]:
    """The ``COMMON_METRICS`` of one series of daily net returns (fractions), via ``backtest.metrics``."""
    return {**m.return_metrics(returns), "n_days": len(returns)}


def _common_rows(windows: dict[tuple[str, str], pd.Series]) -> list[dict[str, Any]]:
    values = [period_metrics(series.to_numpy()) for series in windows.values()]
    help_text = {**METRIC_HELP, "total_return": "compounded net return over the common period",
                 "n_days": "days of returns inside the common period (calendars differ between markets)"}
    return [{"name": k, "help": help_text.get(k, ""), "cells": [format_metric(k, v[k]) for v in values]}
            for k in COMMON_METRICS]


def _saved_columns(runs: Sequence[SavedRun]) -> list[tuple[str, str]]:
    return [(r.label, name) for r in runs for name in r.result.metrics]


def _saved_rows(runs: Sequence[SavedRun]) -> list[dict[str, Any]]:
    """One row per metric key found in any run's metrics.json, in order of first appearance."""
    entries = [entry for r in runs for entry in r.result.metrics.values()]
    names: list[str] = []
    for entry in entries:
        names += [k for k in entry if k not in names]
    return [{"name": n, "help": METRIC_HELP.get(n, ""), "cells": [format_metric(n, e.get(n)) for e in entries]}
            for n in names]


def _grid(columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A table for the template: ``groups`` (consecutive columns of one run, for the two header rows),
    ``starts`` (indices of each run's first column) and ``rows``."""
    groups: list[dict[str, Any]] = []
    starts = []
    for i, (label, strategy) in enumerate(columns):
        if not groups or groups[-1]["label"] != label:
            groups.append({"label": label, "strategies": []})
            starts.append(i)
        groups[-1]["strategies"].append(strategy)
    return {"groups": groups, "starts": starts, "rows": rows}


def _setting_rows(runs: Sequence[SavedRun]) -> list[dict[str, Any]]:
    """Per-run provenance: source, target settings, out-of-sample period, then config keys that differ."""
    flat = [_flat_config(r.result) for r in runs]
    rows = [{"name": name, "cells": [_text(f.get(key)) for f in flat]} for name, key in _SETTINGS]
    oos = [r.result.manifest.get("out_of_sample", {}) for r in runs]
    rows.append({"name": "out of sample", "cells": [f"{o.get('first_date', DASH)} to {o.get('last_date', DASH)}"
                                                    for o in oos]})
    rows += [{"name": k, "cells": [_text(o.get(k)) for o in oos]} for k in ("days", "folds")]
    rows.append({"name": "created", "cells": [_text(r.result.manifest.get("created")) for r in runs]})
    shown = {key for _, key in _SETTINGS}
    keys = [k for k in dict.fromkeys(k for f in flat for k in f) if k not in shown]
    rows += [{"name": k, "cells": [_text(f.get(k)) for f in flat]} for k in keys
             if len({repr(f.get(k)) for f in flat}) > 1]
    return rows


def _flat_config(result: RunResult) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, values in result.config.to_dict().items()
            for key, value in values.items()}


def _text(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# --------------------------------------------------------------------------- figures


def unique_series(windows: dict[tuple[str, str], pd.Series]) -> list[tuple[list[tuple[str, str]], pd.Series]]:
    """Identical series (same dates and values) grouped: ``[(their columns, the series)]``, in order.

    Buy-and-hold of runs on the same data and period is one curve, so it is drawn once.
    """
    groups: list[tuple[list[tuple[str, str]], pd.Series]] = []
    for key, series in windows.items():
        for keys, first in groups:
            if first.index.equals(series.index) and np.array_equal(first.to_numpy(), series.to_numpy(),
                                                                   equal_nan=True):
                keys.append(key)
                break
        else:
            groups.append(([key], series))
    return groups


def trace_name(keys: list[tuple[str, str]]) -> str:
    """``run / strategy``; a shared curve lists its runs per strategy (``a, b / majority = a, b / buy_and_hold``)."""
    by_strategy: dict[str, list[str]] = {}
    for label, strategy in keys:
        by_strategy.setdefault(strategy, []).append(label)
    return " = ".join(f"{', '.join(labels)} / {strategy}" for strategy, labels in by_strategy.items())


def _curves(windows: dict[tuple[str, str], pd.Series], labels: list[str], curve: Any) -> list[Any]:
    """One Scatter per distinct series: colour per run, dash per strategy; ``meta`` lists its columns."""
    import plotly.graph_objects as go

    traces = []
    for keys, series in unique_series(windows):
        label, strategy = keys[0]
        line = dict(width=1.4, color=_COLORS[labels.index(label) % len(_COLORS)], dash=_DASHES.get(strategy, "dashdot"))
        traces.append(go.Scatter(x=[d.strftime("%Y-%m-%d") for d in pd.DatetimeIndex(series.index)],
                                 y=curve(series.to_numpy())[1:], name=trace_name(keys), mode="lines", line=line,
                                 meta=[list(k) for k in keys]))
    return traces


def equity_figure(windows: dict[tuple[str, str], pd.Series], labels: list[str]) -> Any:
    """Growth of 1 invested at the start of the common period, net of costs, with a log toggle."""
    import plotly.graph_objects as go

    from lstmbt.reports.figures import scale_toggle  # loads plotly: only when called

    fig = go.Figure(_curves(windows, labels, m.equity_curve))
    fig.update_layout(title="Equity over the common period (growth of 1, net of costs)", yaxis_title="equity",
                      **_LAYOUT)
    fig.update_layout(updatemenus=scale_toggle())
    return fig


def drawdown_figure(windows: dict[tuple[str, str], pd.Series], labels: list[str]) -> Any:
    """Fall below the running peak within the common period, as a fraction."""
    import plotly.graph_objects as go

    fig = go.Figure(_curves(windows, labels, m.drawdown_curve))
    fig.update_layout(title="Drawdown over the common period", yaxis_title="below peak", yaxis_tickformat=".0%",
                      **_LAYOUT)
    return fig


def _template() -> jinja2.Template:

    return environment().get_template("compare.html.j2")


__all__ = ["compare_runs", "write_compare", "default_compare_path", "load_runs", "run_labels", "common_period",
           "common_returns", "period_metrics", "unique_series", "trace_name", "equity_figure", "drawdown_figure",
           "SavedRun", "MIN_COMMON_DAYS", "COMMON_METRICS"]
