"""``lstmbt importance``: the feature-group importance page (self-contained HTML) and its console tables.

Renders the per-fold frames of ``backtest.importance`` (permutation, ablation) and
``backtest.attribution`` (SHAP) and the summaries computed from them by
``summarize_importance`` / ``summarize_shap``; nothing here fits or scores a model. Intervals
shown are mean +/- 1.96 standard errors across folds (a rough 95% interval: folds are few and
not independent, so read them as a scale of the noise, not as a test).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pandas as pd

from lstmbt.backtest import __version__
from lstmbt.backtest.attribution import FEATURE, GROUP, summarize_shap
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.relative import VERDICT_WORDS
from lstmbt.backtest.importance import METHODS, feature_groups, summarize_importance
from lstmbt.backtest.rundir import write_atomic
from lstmbt.backtest.scoring import model_plan
from lstmbt.reports import environment
from lstmbt.reports.embed import pack_figures, plotly_bundle
from lstmbt.reports.tables import format_metric

#: half-width of the intervals, in standard errors
Z95 = 1.96
DASH = "\u2013"
LOSS_NAMES = {"regression": "MSE (target units)", "classification": "log loss (nats)"}
METHOD_TITLES = {"permutation": "Permutation within each test block",
                 "ablation": "Group ablation (retrained without the group)",
                 "shap": "SHAP values of the test predictions"}
#: what a model's SHAP values are measured in, by task
SHAP_UNITS = {"regression": "target units", "classification": "log-odds of up"}
#: features per model in the SHAP feature table (the largest mean |SHAP| first)
TOP_FEATURES = 20


def render_importance(frame: pd.DataFrame, config: RunConfig, n_repeats: int | None = None,
                      seed: int | None = None, shap: pd.DataFrame | None = None,
                      skill: dict[str, Any] | None = None) -> str:
    """The HTML text of the importance page for ``frame`` (``backtest.importance.FRAME_COLUMNS``,
    may be empty) and ``shap`` (``backtest.attribution.SHAP_COLUMNS``, or None without SHAP).

    ``n_repeats`` and ``seed`` describe the permutation method (shown when it is present).
    ``skill``: ``backtest.skill.importance_skill``'s header, shown above everything else.
    """
    summary = summarize_importance(frame) if len(frame) else frame
    methods = [m for m in METHODS if len(frame) and (summary["method"] == m).any()]
    figures = {f"fig-{m}": importance_figure(summary[summary["method"] == m], config) for m in methods}
    sections = [{"name": m, "title": METHOD_TITLES[m], "figure_id": f"fig-{m}",
                 "rows": summary_rows(summary[summary["method"] == m], config),
                 "folds": fold_rows(frame[frame["method"] == m])} for m in methods]
    shap_part = None
    if shap is not None:
        shap_part, figures["fig-shap"] = shap_section(shap, config), shap_figure(summarize_shap(shap), config)
    return environment().get_template("importance.html.j2").render(
        title=f"lstmbt importance - {config.data.source}", version=__version__, sections=sections,
        shap=shap_part, groups=list(feature_groups(config)), plotly_gz=plotly_bundle(), skill=skill_part(skill),
        settings=_settings(frame, config, methods + ["shap"] * (shap is not None), n_repeats, seed)
        + _shap_settings(shap, config),
        figures_gz=pack_figures(figures),
    )


def write_importance(frame: pd.DataFrame, config: RunConfig, out: str | Path, n_repeats: int | None = None,
                     seed: int | None = None, shap: pd.DataFrame | None = None,
                     skill: dict[str, Any] | None = None) -> Path:
    """Render the page and write it to ``out`` atomically (temporary file, then rename); returns ``out``."""
    out = Path(out)
    check_out_path(out)
    text = render_importance(frame, config, n_repeats, seed, shap, skill)

    return write_atomic(out, text)


def check_out_path(out: str | Path) -> None:
    """Refuse an ``--out`` that is a directory (checked before any model is trained)."""
    if Path(out).is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name such as {Path(out) / 'importance.html'}")


def default_importance_path(root: str | Path = "runs") -> Path:
    """``runs/importance-<UTC timestamp>.html``."""
    return Path(root) / f"importance-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}.html"


# --------------------------------------------------------------------------- tables


def skill_part(skill: dict[str, Any] | None) -> dict[str, Any] | None:
    """The skill section's display values: its source sentence, one row per model (hit rate, base
    rate, p-value and its family-wise adjustment, Sharpe, buy-and-hold's, verdict, evidence of skill)
    and the no-skill statement."""
    if skill is None:
        return None
    rows = [{"model": m["model"], "hit_rate": _percent(_nan(m["hit_rate"])),
             "base_rate": _percent(_nan(m["base_rate"])),
             "pvalue": _pvalue(_nan(m["hit_rate_pvalue"])),
             "adjusted": _pvalue(_nan(m["hit_rate_pvalue_adjusted"])), "sharpe": _fixed(_nan(m["sharpe"]), 2),
             "bh_sharpe": _fixed(_nan(m["bh_sharpe"]), 2),
             "verdict": VERDICT_WORDS.get(m["verdict"] or "", DASH), "skilled": "yes" if m["skilled"] else "no"}
            for m in skill["models"]]
    statement = next((line for line in skill["lines"] if line.startswith(("No model", "The importances of"))), "")
    return {"source": skill["source"], "rows": rows, "statement": statement}


def loss_names(config: RunConfig) -> dict[str, str]:
    """What each model of ``config`` (``backtest.scoring.model_plan``, the models an importance
    frame holds) measures its loss in: ``LOSS_NAMES`` of its task."""
    return {key.name: LOSS_NAMES[key.task] for key in model_plan(config)}


def summary_rows(summary: pd.DataFrame, config: RunConfig) -> list[dict[str, str]]:
    """Display rows of a summary: changes as mean and +/- 1.96 SE, hit rates in percentage points.
    ``config``: the run's config, which tells each model's task (its loss)."""
    losses = loss_names(config)
    return [{"method": r["method"], "model": r["model"], "group": r["group"],
             "d_hit_rate": _points(r["mean_d_hit_rate"], signed=True), "hit_ci": _plus_minus(r["se_d_hit_rate"], True),
             "d_loss": _number(r["mean_d_loss"], signed=True), "loss_ci": _plus_minus(r["se_d_loss"], False),
             "loss_name": losses.get(r["model"], "loss"), "n_folds": str(int(r["n_folds"])),
             "hit_rate": _percent(r["hit_rate"]), "loss": _number(r["loss"])}
            for r in summary.to_dict("records")]


def fold_rows(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Display rows of the per-fold frame."""
    return [{"model": r["model"], "group": r["group"], "fold": str(int(r["fold"])),
             "d_hit_rate": _points(r["d_hit_rate"], signed=True), "d_loss": _number(r["d_loss"], signed=True),
             "hit_rate": _percent(r["hit_rate"]), "loss": _number(r["loss"])}
            for r in frame.to_dict("records")]


def summary_tables(summary: pd.DataFrame, config: RunConfig) -> list[Any]:
    """One ``rich.table.Table`` per method for the terminal: mean +/- 1.96 SE of each change.
    ``config``: the run's config (as for ``summary_rows``)."""
    from rich import box
    from rich.table import Table

    tables = []
    for method in dict.fromkeys(summary["method"]):
        table = Table(title=f"{method}: change when the group is {'shuffled' if method == 'permutation' else 'dropped'}"
                      f" (mean across folds ± {Z95} SE)", box=box.SIMPLE_HEAD, pad_edge=False)
        for name in ("model", "group", "d hit, pp", "d loss", "folds"):
            table.add_column(name, justify="left" if name in ("model", "group") else "right", no_wrap=True)
        for r in summary_rows(summary[summary["method"] == method], config):
            hit = f"{r['d_hit_rate']} {r['hit_ci']}".replace(" pp", "")  # the header carries the unit
            table.add_row(r["model"], r["group"], hit, f"{r['d_loss']} {r['loss_ci']}", r["n_folds"])
        tables.append(table)
    return tables


# --------------------------------------------------------------------------- SHAP


def shap_units(config: RunConfig) -> dict[str, str]:
    """What each model of ``config`` has its SHAP values in: ``SHAP_UNITS`` of its task."""
    return {key.name: SHAP_UNITS[key.task] for key in model_plan(config)}


def shap_section(shap: pd.DataFrame, config: RunConfig, top: int = TOP_FEATURES) -> dict[str, Any]:
    """The template's SHAP section: summary rows per group and for each model's ``top`` features
    (largest mean |SHAP| first), and per-fold rows of the groups and of those features."""
    summary = summarize_shap(shap)
    features = top_features(summary, top)
    chosen = pd.MultiIndex.from_frame(features[["model", "feature"]])
    folds = shap[(shap["level"] == GROUP) | pd.MultiIndex.from_frame(shap[["model", "feature"]]).isin(chosen)]
    return {"name": "shap", "title": METHOD_TITLES["shap"], "figure_id": "fig-shap", "top": top,
            "groups": shap_rows(summary[summary["level"] == GROUP], config), "features": shap_rows(features, config),
            "folds": shap_fold_rows(folds, config)}


def top_features(summary: pd.DataFrame, top: int = TOP_FEATURES) -> pd.DataFrame:
    """The ``top`` feature rows of each model of a ``summarize_shap`` frame, largest mean |SHAP| first."""
    features = summary[summary["level"] == FEATURE]
    parts = [part.nlargest(top, "mean_abs_shap") for _, part in features.groupby("model", sort=False)]
    return pd.concat(parts) if parts else features


def shap_rows(summary: pd.DataFrame, config: RunConfig) -> list[dict[str, str]]:
    """Display rows of SHAP summary rows: mean |SHAP| with +/- 1.96 SE, share of the model's total."""
    units = shap_units(config)
    return [{"model": r["model"], "group": r["group"], "feature": r["feature"],
             "mean": _number(r["mean_abs_shap"]), "ci": _plus_minus(r["se_abs_shap"], False),
             "share": _percent(r["share"]), "unit": units.get(r["model"], ""), "n_folds": str(int(r["n_folds"]))}
            for r in summary.to_dict("records")]


def shap_fold_rows(shap: pd.DataFrame, config: RunConfig) -> list[dict[str, str]]:
    """Display rows of the per-fold SHAP frame."""
    units = shap_units(config)
    return [{"model": r["model"], "level": r["level"], "group": r["group"], "feature": r["feature"],
             "fold": str(int(r["fold"])), "mean": _number(r["mean_abs_shap"]), "unit": units.get(r["model"], ""),
             "n_explained": str(int(r["n_explained"])), "n_background": str(int(r["n_background"]))}
            for r in shap.to_dict("records")]


def shap_table(shap: pd.DataFrame, config: RunConfig) -> Any:
    """A ``rich.table.Table`` of the SHAP groups for the terminal: mean |SHAP| +/- 1.96 SE across folds."""
    from rich import box
    from rich.table import Table

    summary = summarize_shap(shap)
    table = Table(title=f"shap: mean |SHAP| of each group on test days (mean across folds ± {Z95} SE; "
                        "regression in target units, classifiers in log-odds of up)", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("model", "group", "mean |SHAP|", "share", "folds"):
        table.add_column(name, justify="left" if name in ("model", "group") else "right", no_wrap=True)
    for r in shap_rows(summary[summary["level"] == GROUP], config):
        table.add_row(r["model"], r["group"], f"{r['mean']} {r['ci']}", r["share"], r["n_folds"])
    return table


def shap_figure(summary: pd.DataFrame, config: RunConfig) -> Any:
    """Bars of mean |SHAP| per group, one panel per model (units differ by task), with error bars
    of +/- 1.96 standard errors across folds."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups = summary[summary["level"] == GROUP]
    models, units = list(dict.fromkeys(groups["model"])), shap_units(config)
    fig = make_subplots(rows=len(models), cols=1, subplot_titles=[f"{m}: mean |SHAP| ({units.get(m, '')})"
                                                                  for m in models],
                        vertical_spacing=min(0.3 / max(len(models) - 1, 1), 0.12))
    for i, model in enumerate(models, 1):
        part = groups[groups["model"] == model]
        errors = [Z95 * v if math.isfinite(v) else None for v in part["se_abs_shap"]]
        fig.add_trace(go.Bar(x=list(part["group"]), y=list(part["mean_abs_shap"]), marker_color="#2ca02c",
                             error_y=dict(type="data", array=errors, visible=True), showlegend=False, name=model,
                             hovertemplate="%{x}: %{y:.4g}<extra>" + model + "</extra>"), row=i, col=1)
    fig.update_layout(height=120 + 240 * len(models), margin=dict(l=60, r=20, t=60, b=40), bargap=0.35)
    return fig


def _shap_settings(shap: pd.DataFrame | None, config: RunConfig) -> list[tuple[str, str]]:
    if shap is None:
        return []
    first = shap.drop_duplicates("model")
    skipped = [k.name for k in model_plan(config) if k.name not in set(shap["model"])]
    rows = [("SHAP explainers", "; ".join(f"{r['model']}: {r['explainer']}" for r in first.to_dict("records"))),
            ("SHAP samples per fold", f"up to {shap['n_explained'].max()} test samples explained against up to "
                                      f"{shap['n_background'].max()} background samples of the fold's fit window"),
            ("SHAP seed", str(config.train.run_seed))]
    if skipped:
        rows.append(("not explained by SHAP", ", ".join(skipped) + " (plug-ins: SHAP needs a model's internals)"))
    return rows


def _settings(frame: pd.DataFrame, config: RunConfig, methods: list[str], n_repeats: int | None,
              seed: int | None) -> list[tuple[str, str]]:
    d, s = config.data, config.split
    rows = [("source", d.source + (f" ({d.symbol})" if d.symbol else "")),
            ("period", f"{d.start or 'first bar'} to {d.end or 'last bar'}"),
            ("feature groups", ", ".join(feature_groups(config)))]
    if len(frame):
        rows += [("models", ", ".join(frame["model"].unique())), ("folds", str(frame["fold"].nunique()))]
    rows += [("split", f"{s.scheme}, min_train {s.min_train}, step {s.step}, horizon {config.target.horizon}"),
             ("lookback (days)", str(config.model.lookback)), ("methods", ", ".join(methods)),
             ("training seed", str(config.train.run_seed))]
    if "permutation" in methods:
        rows.append(("shuffles per fold and group", DASH if n_repeats is None else str(n_repeats)))
        rows.append(("shuffle seed", str(config.train.run_seed if seed is None else seed)))
    return rows


def _points(value: float, signed: bool = False) -> str:
    # rounded first and + 0.0, so a rounding-size change shows as +0.0, never -0.0
    return DASH if not math.isfinite(value) else f"{round(100 * value, 1) + 0.0:{'+' if signed else ''}.1f} pp"


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)  # JSON-ready dicts carry NaN as None


def _pvalue(value: float) -> str:
    return DASH if not math.isfinite(value) else format_metric("hit_rate_pvalue", value)


def _fixed(value: float, digits: int) -> str:
    return DASH if not math.isfinite(value) else f"{value:.{digits}f}"


def _percent(value: float) -> str:
    return DASH if not math.isfinite(value) else f"{100 * value:.1f}%"


def _number(value: float, signed: bool = False) -> str:
    return DASH if not math.isfinite(value) else f"{value:{'+' if signed else ''}.3g}"


def _plus_minus(se: float, points: bool) -> str:
    if not math.isfinite(se):
        return DASH
    half = Z95 * se
    return f"\u00b1 {100 * half:.1f} pp" if points else f"\u00b1 {half:.2g}"


# --------------------------------------------------------------------------- figures


def importance_figure(summary: pd.DataFrame, config: RunConfig) -> Any:
    """Bars of one method's summary: a row per model, change in hit rate (left) and loss (right),
    with error bars of +/- 1.96 standard errors across folds. ``config``: as for ``summary_rows``."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    models, losses = list(dict.fromkeys(summary["model"])), loss_names(config)
    titles = [t for m in models for t in (f"{m}: change in hit rate (pp)",
                                          f"{m}: change in {losses.get(m, 'loss')}")]
    fig = make_subplots(rows=len(models), cols=2, subplot_titles=titles, horizontal_spacing=0.12,
                        vertical_spacing=min(0.3 / max(len(models) - 1, 1), 0.12))
    for i, model in enumerate(models, 1):
        part = summary[summary["model"] == model]
        for col, (mean, se, scale, color) in enumerate((("mean_d_hit_rate", "se_d_hit_rate", 100.0, "#1f77b4"),
                                                        ("mean_d_loss", "se_d_loss", 1.0, "#ff7f0e")), 1):
            errors = [Z95 * scale * v if math.isfinite(v) else None for v in part[se]]
            fig.add_trace(go.Bar(x=list(part["group"]), y=list(scale * part[mean]), marker_color=color,
                                 error_y=dict(type="data", array=errors, visible=True), showlegend=False,
                                 name=model, hovertemplate="%{x}: %{y:.4g}<extra>" + model + "</extra>"),
                          row=i, col=col)
    fig.update_layout(height=120 + 260 * len(models), margin=dict(l=60, r=20, t=60, b=40), bargap=0.35)
    return fig


__all__ = ["render_importance", "write_importance", "check_out_path", "default_importance_path", "loss_names",
           "summary_rows", "fold_rows", "summary_tables", "importance_figure", "shap_units", "shap_section",
           "top_features", "shap_rows", "shap_fold_rows", "shap_table", "shap_figure", "Z95", "LOSS_NAMES",
           "SHAP_UNITS", "TOP_FEATURES"]
