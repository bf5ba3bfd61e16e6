"""From out-of-sample predictions to positions, metrics and per-fold figures (pure functions).

Every model sits beside two naive baselines scored on the same days and folds:
``persistence`` beside the regression model (tomorrow's price = today's, so a predicted return
of 0: no direction, no position) and ``majority`` beside the classifier (p_up = the share of
up days in each fold's training window, so almost always "up"), plus ``buy_and_hold``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from backtest.config import RunConfig

BENCHMARK = "buy_and_hold"
MODEL_NAMES = {"regression": "lstm_regression", "classification": "lstm_classification"}
BASELINES = ("persistence", "majority")


def majority_p_up(direction: pd.Series, grid: Any, folds: list) -> pd.Series:
    """Per test day, the share of up labels in its fold's training and validation rows."""
    parts = []
    for fold in folds:
        seen = np.concatenate([fold.train, fold.val])
        share = float(np.mean(direction.reindex(grid.dates[seen]).to_numpy() > 0))
        parts.append(pd.Series(share, index=grid.dates[fold.test]))
    return pd.concat(parts)


def make_positions(predictions: pd.DataFrame, dates: pd.DatetimeIndex, config: RunConfig,
                   majority: pd.Series | None = None) -> pd.DataFrame:
    """Target positions per decision day: the models, then their baselines, then ``buy_and_hold``.

    ``persistence`` comes with a regression model, ``majority`` (p_up per day from
    ``majority_p_up``; None leaves it out) with a classifier.
    """
    from strategies import buy_and_hold, classification_positions, predicted_log_return, regression_positions

    s = config.strategy
    columns = {}
    for task, group in predictions.groupby("target", sort=False):
        group = group.set_index("date").reindex(dates)
        if task == "regression":
            pred_ret = predicted_log_return(group["y_pred"], group["close"], config.target.regression)
            columns[MODEL_NAMES[task]] = regression_positions(pred_ret, s.threshold, s.long_short)
        else:
            columns[MODEL_NAMES[task]] = classification_positions(group["p_up"], s.cutoff, s.long_short)
    if "regression" in set(predictions["target"]):
        columns["persistence"] = regression_positions(pd.Series(0.0, index=dates), s.threshold, s.long_short)
    if majority is not None and "classification" in set(predictions["target"]):
        columns["majority"] = classification_positions(majority.reindex(dates), s.cutoff, s.long_short)
    columns[BENCHMARK] = buy_and_hold(dates)
    frame = pd.DataFrame(columns, index=dates)
    frame.index.name = "date"
    return frame


def predicted_up(name: str, by_task: dict[str, pd.DataFrame], majority: pd.Series | None,
                 config: RunConfig, dates: pd.DatetimeIndex) -> np.ndarray | None:
    """The direction strategy ``name`` called on each decision day; None for persistence (no call)."""
    from strategies import predicted_log_return

    if name == BENCHMARK:
        return np.ones(len(dates), dtype=bool)
    if name == "majority":
        return (majority.reindex(dates) > 0.5).to_numpy()
    if name == MODEL_NAMES["regression"]:
        g = by_task["regression"]
        return (predicted_log_return(g["y_pred"], g["close"], config.target.regression) > 0).to_numpy()
    if name == MODEL_NAMES["classification"]:
        return (by_task["classification"]["p_up"] > 0.5).to_numpy()
    return None


def collect_metrics(predictions: pd.DataFrame, positions: pd.DataFrame, backtest, realised_up: np.ndarray,
                    config: RunConfig, majority: pd.Series | None = None) -> dict[str, dict[str, Any]]:
    """``{strategy: {metric: value}}`` for every column of ``positions``."""
    from backtest import metrics as m

    out: dict[str, dict[str, Any]] = {}
    dates = positions.index
    by_task = {task: g.set_index("date").reindex(dates) for task, g in predictions.groupby("target")}
    for name in positions.columns:
        pos = positions[name].to_numpy()
        entry = m.performance_metrics(backtest.returns[name].to_numpy(), pos)
        pred_up = predicted_up(name, by_task, majority, config, dates)
        entry["hit_rate"] = m.hit_rate(pred_up, realised_up) if pred_up is not None else math.nan
        if name != BENCHMARK:
            entry["hit_rate_pvalue"] = m.hit_rate_pvalue(pred_up, realised_up) if pred_up is not None else math.nan
        trades = backtest.trades[backtest.trades["strategy"] == name]
        entry.update(n_trades=backtest.n_trades[name], fees_paid=backtest.fees_paid[name],
                     slippage_paid=backtest.slippage_paid[name], n_days=len(pos),
                     **m.trade_stats(trades["return"].to_numpy(), trades["holding_days"].to_numpy()))
        entry.update(_prediction_scores(name, by_task, majority, dates, config))
        out[name] = entry
    return out


def _prediction_scores(name: str, by_task: dict[str, pd.DataFrame], majority: pd.Series | None,
                       dates: pd.DatetimeIndex, config: RunConfig) -> dict[str, float]:
    """Forecast-error or probability scores of one strategy's predictions, where it has them."""
    from backtest import metrics as m

    price = config.target.regression == "price"
    if name in (MODEL_NAMES["regression"], "persistence") and "regression" in by_task:
        g = by_task["regression"]
        naive = g["close"] if price else np.zeros(len(g))
        errors = m.regression_errors(g["y_true"], g["y_pred"] if name != "persistence" else naive, naive,
                                     with_mape=price)
        if name == "persistence":
            errors = {k: v for k, v in errors.items() if not k.startswith("persistence_")}
        return errors
    if name == MODEL_NAMES["classification"]:
        g = by_task["classification"]
        return m.classification_scores(g["y_true"], g["p_up"])
    if name == "majority" and "classification" in by_task:
        return m.classification_scores(by_task["classification"]["y_true"], majority.reindex(dates))
    return {}


def fold_stats(folds: pd.DataFrame, positions: pd.DataFrame, returns: pd.DataFrame, realised_up: np.ndarray,
               up_calls: dict[str, np.ndarray]) -> pd.DataFrame:
    """``folds`` with, per model and test block: hit_rate, base_rate, strategy_return, buy_and_hold_return.

    ``returns`` row k is the bar held after decision day ``positions.index[k]``, so a block's
    return compounds the rows of its decision days. ``up_calls``: per model, its daily calls.
    """
    from backtest.metrics import hit_rate, total_return

    dates = positions.index
    extra = {k: [] for k in ("hit_rate", "base_rate", "strategy_return", "buy_and_hold_return")}
    for record in folds.to_dict("records"):
        rows = (dates >= record["test_start"]) & (dates <= record["test_end"])
        model = record["model"]
        extra["hit_rate"].append(hit_rate(up_calls[model][rows], realised_up[rows]))
        extra["base_rate"].append(float(np.mean(realised_up[rows])))
        extra["strategy_return"].append(total_return(returns[model].to_numpy()[rows]))
        extra["buy_and_hold_return"].append(total_return(returns[BENCHMARK].to_numpy()[rows]))
    return folds.assign(**extra)


def run_warnings(metrics: dict[str, dict[str, Any]], positions: pd.DataFrame) -> list[str]:
    """Plain-language cautions the report shows next to the numbers."""
    notes = []
    if len(positions) < 252:
        notes.append(f"The out-of-sample period is {len(positions)} days, shorter than one year.")
    base = metrics[BENCHMARK]["hit_rate"]
    for name, entry in metrics.items():
        if name not in MODEL_NAMES.values():
            continue
        if not entry["hit_rate"] > max(base, 1 - base):
            notes.append(f"{name}: hit rate {entry['hit_rate']:.3f} is not above the base rate "
                         f"{max(base, 1 - base):.3f} of always guessing the more common direction.")
        if "rmse" in entry and not entry["rmse"] < entry["persistence_rmse"]:
            notes.append(f"{name}: RMSE {entry['rmse']:.6g} does not beat persistence ({entry['persistence_rmse']:.6g}).")
        if not entry["sharpe"] > metrics[BENCHMARK]["sharpe"]:
            notes.append(f"{name}: Sharpe does not beat buy-and-hold after costs.")
    return notes
