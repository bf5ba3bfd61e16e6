"""Table rows and sentences for the report: formatting of saved run data, never new numbers."""

from __future__ import annotations

import math
import numbers
from typing import Any, Collection

import numpy as np
import pandas as pd

# How each metric is shown; metrics.json always holds raw fractions. One format per kind:
#   percent  "12.3%"   returns, rates and shares (one decimal, thousands separators)
#   ratio    "1.23"    Sharpe-like ratios and other plain figures (two decimals)
#   p-value  "0.042"   three decimals, "<0.001" below 0.001: every key with a "pvalue" part
#   error    "0.009540" forecast errors and scores: 4 significant figures, enough to tell a
#                      model from its baseline (MAPE the same, as a percent: "1.234%")
#   integer  "2,520"   counts; a key starting with "n_" is a count
# An interval bound (``<key>_ci_low`` / ``<key>_ci_high``) is shown as its key; unknown keys
# get 4 significant figures.
PERCENT = {"total_return", "cagr", "ann_volatility", "max_drawdown", "exposure", "time_invested", "hit_rate",
           "fees_paid", "slippage_paid", "accuracy", "precision", "recall", "f1", "win_rate", "strategy_return",
           "buy_and_hold_return", "base_rate", "alpha", "beta_matched_bh_cagr", "bh_cagr", "bh_total_return",
           "agreement", "return", "prob_oos_loss", "cpcv_beats_bh_share"}
RATIO = {"sharpe", "sortino", "calmar", "psr", "information_ratio", "beta", "sharpe_diff", "bh_sharpe",
         "sharpe_minus_bh", "verdict_ci_low", "verdict_ci_high", "turnover", "avg_holding_days", "avg_holdings",
         "fit_seconds", "cpcv_sharpe_median", "cpcv_sharpe_p05", "cpcv_sharpe_p95"}
ERRORS = {"rmse", "mae", "log_loss", "brier", "best_val_loss", "roc_auc", "persistence_rmse", "persistence_mae"}
ERROR_PERCENT = {"mape", "persistence_mape"}
TEXT = {"verdict"}
INTEGER = {"n_trades", "n_days", "no_decision_days",
           "fold", "epochs", "best_epoch", "n_train", "n_val", "n_test", "holding_days",
           "train_steps", "eval_steps", "refit_epochs"}
PRICES = {"entry_price", "exit_price"}
LOWER_IS_BETTER = {"ann_volatility", "rmse", "mae", "mape", "log_loss", "brier", "turnover", "fees_paid",
                   "slippage_paid", "best_val_loss"}
#: rows where a higher or lower value is not better in itself, or that describe the market or a
#: baseline rather than the model: no highlight (interval bounds and counts never have one either)
NEUTRAL = {"no_decision_days", "exposure", "time_invested", "avg_holding_days", "ann_volatility", "turnover",
           "fees_paid", "slippage_paid", "base_rate", "beta", "beta_matched_bh_cagr", "persistence_rmse",
           "persistence_mae", "persistence_mape", "agreement", "verdict", "avg_holdings", "fit_seconds",
           "verdict_ci_low_mc_se", "verdict_ci_high_mc_se", "verdict_n_boot"}
#: return and risk rows, where a strategy that never holds a position is not ranked
PERFORMANCE = {"total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate", "alpha",
               "information_ratio"}
BOUND_SUFFIXES = ("_ci_low", "_ci_high")
DASH = "\u2013"


def format_metric(name: str, value: Any) -> str:
    """Display text for one metric value (see the kinds above); missing or undefined values show as an en dash."""
    if value is None or (isinstance(value, numbers.Real) and not math.isfinite(value)):
        return DASH
    if hasattr(value, "strftime"):
        return "" if pd.isna(value) else value.strftime("%Y-%m-%d")
    if isinstance(value, (bool, np.bool_, str)):
        return str(value)
    kind = metric_kind(name)
    text = _format_number(kind, value)
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text  # no "-0.0%"


def _format_number(kind: str, value: numbers.Real) -> str:
    if kind == "integer":
        return f"{int(value):,}"
    if kind == "pvalue":
        return "<0.001" if value < 0.001 else f"{value:.3f}"
    if kind == "percent":
        return f"{100 * value:,.1f}%"
    if kind in ("ratio", "price"):
        return f"{value:,.2f}"
    if kind == "error_percent":
        return f"{significant(100 * value)}%"
    if isinstance(value, numbers.Integral) and kind != "error":
        return f"{int(value):,}"
    return significant(value)


def metric_kind(name: str) -> str:
    """How metric ``name`` is shown: percent, ratio, pvalue, error, error_percent, integer, price, text or other."""
    if is_pvalue(name):
        return "pvalue"
    for kind, keys in (("percent", PERCENT), ("ratio", RATIO), ("error", ERRORS), ("error_percent", ERROR_PERCENT),
                       ("integer", INTEGER), ("price", PRICES), ("text", TEXT)):
        if name in keys:
            return kind
    if name.startswith("n_"):
        return "integer"
    base = _bound_base(name)
    return metric_kind(base) if base else "other"


def is_pvalue(name: str) -> bool:
    """Whether ``name`` is a p-value: any ``_``-separated part is "pvalue" (``alpha_pvalue``, ``dm_pvalue_abs``)."""
    parts = name.lower().replace(".", "_").split("_")
    return "pvalue" in parts or "pvalues" in parts


def significant(value: float, digits: int = 4) -> str:
    """``value`` with ``digits`` significant figures, fixed point (no exponent), thousands separators."""
    if value == 0:
        return "0"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    return f"{value:,.{min(max(decimals, 0), 12)}f}"


def _bound_base(name: str) -> str:
    """``sharpe`` for ``sharpe_ci_low``; empty when ``name`` is no interval bound."""
    for suffix in BOUND_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return ""


def is_ranked(name: str) -> bool:
    """Whether a row of metric ``name`` gets a highlight at all: not neutral, no count, no bound, no text."""
    return (name not in NEUTRAL and not _bound_base(name)
            and metric_kind(name) not in ("integer", "text", "price"))


def best_columns(name: str, values: list[Any], skip: set[int] = frozenset()) -> set[int]:
    """Indexes of the best value in a metric row (ties included); none for rows that are not ranked.

    ``skip``: columns left out of the ranking (baselines, flat strategies). Fewer than two
    ranked finite values: no highlight.
    """
    if not is_ranked(name):
        return set()
    finite = [(i, float(v)) for i, v in enumerate(values) if i not in skip
              and isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)]
    if len(finite) < 2:
        return set()
    pick = min if name in LOWER_IS_BETTER or is_pvalue(name) else max
    best = pick(v for _, v in finite)
    return {i for i, v in finite if v == best}


def metric_rows(metrics: dict[str, dict[str, Any]], strategies: list[str], help_text: dict[str, str],
                models: Collection[str]) -> list[dict]:
    """One row per metric key (in first-seen order): formatted cells, which are best, the meaning.

    Only ``models`` (the model strategies: a run's model keys, or a universe's portfolios of
    them) are ranked: baselines (buy_and_hold, persistence, majority) are never highlighted. A
    model that never holds a position is not ranked on return and risk rows either: its zero
    drawdown is not an achievement.
    """
    names: list[str] = []
    for entry in metrics.values():
        names += [k for k in entry if k not in names]
    baselines = {i for i, s in enumerate(strategies) if s not in models}
    flat = {i for i, s in enumerate(strategies) if metrics[s].get("exposure") == 0}
    rows = []
    for name in names:
        values = [metrics[s].get(name) for s in strategies]
        best = best_columns(name, values, baselines | (flat if name in PERFORMANCE else set()))
        cells = [{"text": format_metric(name, v), "best": i in best} for i, v in enumerate(values)]
        rows.append({"name": name, "help": help_text.get(name, ""), "cells": cells})
    return rows


FOLD_COLUMNS = ("model", "fold", "fit_start", "fit_end", "weights_end", "val_start", "val_end", "test_start",
                "test_end", "n_train", "n_val", "warm", "epochs", "best_epoch", "weights_changed", "refit", "refit_epochs",
                "best_val_loss", "hit_rate", "base_rate", "strategy_return", "buy_and_hold_return", "fit_seconds")


def frame_rows(frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> tuple[list[str], list[list[str]]]:
    """The present ``columns`` of ``frame`` as a header and formatted rows."""
    shown = [c for c in columns if c in frame.columns]
    rows = [[format_metric(c, v) for c, v in zip(shown, record)] for record in frame[shown].itertuples(index=False)]
    return shown, rows


def cost_rows(costs: pd.DataFrame, value: str, models: Collection[str]) -> tuple[list[str], list[list[dict]]]:
    """Fee levels as rows and strategies as columns, for ``value`` (total_return or sharpe).

    The best of ``models`` (the model strategies) per fee level is highlighted; baselines never are.
    """
    wide = costs.pivot(index="fee_bps", columns="strategy", values=value)
    strategies = list(dict.fromkeys(costs["strategy"]))
    wide = wide[strategies]
    baselines = {i for i, s in enumerate(strategies) if s not in models}
    rows = []
    for bps, values in wide.iterrows():
        best = best_columns(value, list(values), baselines)
        rows.append([{"text": f"{int(bps)} bps", "best": False}]
                    + [{"text": format_metric(value, v), "best": i in best} for i, v in enumerate(values)])
    return strategies, rows


TRADE_COLUMNS = ("strategy", "ticker", "direction", "entry_date", "exit_date", "holding_days", "entry_price", "exit_price",
                 "return", "status")


def last_trades(trades: pd.DataFrame, n: int = 50) -> tuple[list[str], list[list[str]]]:
    """The ``n`` most recent trades (by entry), newest first."""
    recent = trades.sort_values("entry_date", ascending=False, kind="stable").head(n)
    shown = [c for c in TRADE_COLUMNS if c in recent.columns]
    rows = []
    for record in recent[shown].itertuples(index=False):
        rows.append([format_metric("total_return" if c == "return" else c, v) for c, v in zip(shown, record)])
    return shown, rows


def trade_summary(metrics: dict[str, dict[str, Any]], strategies: list[str]) -> list[list[str]]:
    """The Trades section's summary: per strategy its trades, win rate, holding days, exposure,
    turnover and fees (a universe's portfolios have them too)."""
    keys = ("n_trades", "win_rate", "avg_holding_days", "exposure", "turnover", "fees_paid")
    return [[s] + [format_metric(k, metrics[s].get(k)) for k in keys] for s in strategies]
