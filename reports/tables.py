"""Table rows and sentences for the report: formatting of saved run data, never new numbers."""

from __future__ import annotations

import math
import numbers
from typing import Any

import pandas as pd

# How each metric is shown; metrics.json always holds raw fractions.
PERCENT = {"total_return", "cagr", "ann_volatility", "max_drawdown", "exposure", "hit_rate", "fees_paid",
           "slippage_paid", "accuracy", "precision", "recall", "f1", "mape", "persistence_mape", "win_rate",
           "strategy_return", "buy_and_hold_return", "base_rate", "hit_rate_ci_low", "hit_rate_ci_high"}
PVALUES = {"hit_rate_pvalue", "pt_pvalue", "dm_pvalue", "dm_pvalue_abs"}
INTEGER = {"n_trades", "n_days", "no_decision_days",
           "fold", "epochs", "best_epoch", "n_train", "n_val", "n_test", "holding_days",
           "train_steps", "eval_steps"}
LOWER_IS_BETTER = {"ann_volatility", "rmse", "mae", "mape", "log_loss", "brier", "turnover", "fees_paid",
                   "slippage_paid", "hit_rate_pvalue", "pt_pvalue", "dm_pvalue", "dm_pvalue_abs", "persistence_rmse",
                   "persistence_mae", "persistence_mape"}
PRICES = {"entry_price", "exit_price"}
#: rows where a higher or lower value is not better in itself: no highlight
NEUTRAL = {"n_trades", "n_days", "no_decision_days",
           "exposure", "avg_holding_days", "ann_volatility", "turnover", "fees_paid",
           "slippage_paid", "hit_rate_ci_high", "sharpe_ci_high", "sharpe_diff_ci_high"}
#: return and risk rows, where a strategy that never holds a position is not ranked
PERFORMANCE = {"total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate"}
DASH = "\u2013"


def format_metric(name: str, value: Any) -> str:
    """Display text for one metric value; missing or undefined values show as an en dash."""
    if value is None or (isinstance(value, numbers.Real) and not math.isfinite(value)):
        return DASH
    if hasattr(value, "strftime"):
        return "" if pd.isna(value) else value.strftime("%Y-%m-%d")
    if isinstance(value, (bool, str)):
        return str(value)
    if name in INTEGER:
        return f"{int(value):,}"
    if name in PERCENT:
        return f"{100 * value:.2f}%"
    if name in PVALUES:
        return f"{value:.3g}"
    if name in PRICES:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def best_columns(name: str, values: list[Any], skip: set[int] = frozenset()) -> set[int]:
    """Indexes of the best value in a metric row (ties included); none for neutral rows.

    ``skip``: columns left out of the ranking.
    """
    if name in NEUTRAL:
        return set()
    finite = [(i, float(v)) for i, v in enumerate(values) if i not in skip
              and isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)]
    if len(finite) < 2:
        return set()
    pick = min if name in LOWER_IS_BETTER else max
    best = pick(v for _, v in finite)
    return {i for i, v in finite if v == best}


def metric_rows(metrics: dict[str, dict[str, Any]], strategies: list[str], help_text: dict[str, str]) -> list[dict]:
    """One row per metric key (in first-seen order): formatted cells, which are best, the meaning.

    A strategy that never holds a position is not ranked on return and risk rows: its zero
    drawdown is not an achievement.
    """
    names: list[str] = []
    for entry in metrics.values():
        names += [k for k in entry if k not in names]
    flat = {i for i, s in enumerate(strategies) if metrics[s].get("exposure") == 0}
    rows = []
    for name in names:
        values = [metrics[s].get(name) for s in strategies]
        best = best_columns(name, values, flat if name in PERFORMANCE else set())
        cells = [{"text": format_metric(name, v), "best": i in best} for i, v in enumerate(values)]
        rows.append({"name": name, "help": help_text.get(name, ""), "cells": cells})
    return rows


def verdicts(metrics: dict[str, dict[str, Any]], models: list[str]) -> list[str]:
    """One paragraph per model: against buy-and-hold and its base rate with margins, then the
    significance figures that say whether the difference is more than luck."""
    bench = metrics.get("buy_and_hold")
    if bench is None:
        return []
    out = []
    for name in models:
        mm = metrics[name]
        share = mm["base_rate"] if isinstance(mm.get("base_rate"), numbers.Real) else bench["hit_rate"]
        base = max(share, 1 - share)  # at the model's own horizon
        sharpe_gap = _gap(mm["sharpe"], bench["sharpe"])
        ret_gap = _gap(mm["total_return"], bench["total_return"])
        hit_gap = _gap(mm["hit_rate"], base)
        beat_bh = "beat" if sharpe_gap > 0 else "did not beat"
        beat_base = "beat" if hit_gap > 0 else "did not beat"
        versus_base = (f"and it {beat_base} its base rate: hit rate {format_metric('hit_rate', mm['hit_rate'])} vs "
                       f"{format_metric('hit_rate', base)} ({_signed(100 * hit_gap, 1)} pp, p = "
                       f"{format_metric('hit_rate_pvalue', mm.get('hit_rate_pvalue'))})"
                       if math.isfinite(_gap(mm["hit_rate"], base)) else "it calls no up/down direction, so it has no hit rate")
        out.append(
            f"{name} {beat_bh} buy-and-hold: Sharpe {format_metric('sharpe', mm['sharpe'])} vs "
            f"{format_metric('sharpe', bench['sharpe'])} ({_signed(sharpe_gap, 2)}), total return "
            f"{format_metric('total_return', mm['total_return'])} vs {format_metric('total_return', bench['total_return'])} "
            f"({_signed(100 * ret_gap, 1)} pp); {versus_base}." + _significance_sentence(mm)
        )
    return out


def _significance_sentence(m: dict[str, Any]) -> str:
    """Is it luck? The intervals and tests of one model, in words; empty when none were computed."""
    if "sharpe_diff_ci_low" not in m:
        return ""
    low, high = m["sharpe_diff_ci_low"], m["sharpe_diff_ci_high"]
    beats = _gap(low, 0.0) > 0
    text = (f" Sharpe minus buy-and-hold's: 95% CI [{format_metric('sharpe', low)}, {format_metric('sharpe', high)}]"
            f" ({'excludes' if beats else 'includes'} 0{', evidence of beating it' if beats else ', so no evidence of beating it'});"
            f" Sharpe 95% CI [{format_metric('sharpe', m['sharpe_ci_low'])}, {format_metric('sharpe', m['sharpe_ci_high'])}],"
            f" PSR {format_metric('psr', m.get('psr'))}")
    if "pt_pvalue" in m:
        text += (f"; hit rate 95% CI [{format_metric('hit_rate', m['hit_rate_ci_low'])},"
                 f" {format_metric('hit_rate', m['hit_rate_ci_high'])}]; Pesaran-Timmermann p ="
                 f" {format_metric('pt_pvalue', m['pt_pvalue'])}")
    if "dm_pvalue" in m:
        text += (f"; Diebold-Mariano vs persistence p = {format_metric('dm_pvalue', m['dm_pvalue'])} (squared error),"
                 f" {format_metric('dm_pvalue_abs', m['dm_pvalue_abs'])} (absolute)")
    return text + "."


def _gap(value: Any, reference: Any) -> float:
    ok = all(isinstance(v, numbers.Real) and math.isfinite(v) for v in (value, reference))
    return float(value) - float(reference) if ok else math.nan


def _signed(value: float, digits: int) -> str:
    return DASH if not math.isfinite(value) else f"{value:+.{digits}f}"


FOLD_COLUMNS = ("model", "fold", "train_start", "train_end", "test_start", "test_end", "n_train", "warm", "epochs",
                "best_epoch", "best_val_loss", "hit_rate", "base_rate", "strategy_return", "buy_and_hold_return",
                "fit_seconds")


def frame_rows(frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> tuple[list[str], list[list[str]]]:
    """The present ``columns`` of ``frame`` as a header and formatted rows."""
    shown = [c for c in columns if c in frame.columns]
    rows = [[format_metric(c, v) for c, v in zip(shown, record)] for record in frame[shown].itertuples(index=False)]
    return shown, rows


def cost_rows(costs: pd.DataFrame, value: str) -> tuple[list[str], list[list[dict]]]:
    """Fee levels as rows and strategies as columns, for ``value`` (total_return or sharpe)."""
    wide = costs.pivot(index="fee_bps", columns="strategy", values=value)
    strategies = list(dict.fromkeys(costs["strategy"]))
    wide = wide[strategies]
    rows = []
    for bps, values in wide.iterrows():
        best = best_columns(value, list(values))
        rows.append([{"text": f"{int(bps)} bps", "best": False}]
                    + [{"text": format_metric(value, v), "best": i in best} for i, v in enumerate(values)])
    return strategies, rows


TRADE_COLUMNS = ("strategy", "direction", "entry_date", "exit_date", "holding_days", "entry_price", "exit_price",
                 "return", "status")


def last_trades(trades: pd.DataFrame, n: int = 50) -> tuple[list[str], list[list[str]]]:
    """The ``n`` most recent trades (by entry), newest first."""
    recent = trades.sort_values("entry_date", ascending=False, kind="stable").head(n)
    shown = [c for c in TRADE_COLUMNS if c in recent.columns]
    rows = []
    for record in recent[shown].itertuples(index=False):
        rows.append([format_metric("total_return" if c == "return" else c, v) for c, v in zip(shown, record)])
    return shown, rows
