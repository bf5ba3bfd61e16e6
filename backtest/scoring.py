"""From out-of-sample predictions to positions, metrics and per-fold figures (pure functions).

Every model sits beside two naive baselines scored on the same days and folds:
``persistence`` beside the regression model (tomorrow's price = today's, so a predicted return
of 0: no direction, no position) and ``majority`` beside the classifier (p_up = the share of
up days in each fold's training window, so almost always "up"), plus ``buy_and_hold``.
"""

from __future__ import annotations

import math
from typing import Any, Collection, Mapping

import numpy as np
import pandas as pd

from lstmbt.backtest import metrics as m, significance as sig
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.lookahead import lookahead_suspected, position_alarms
from lstmbt.backtest.metrics import hit_rate, total_return
from lstmbt.backtest.plugins import custom_positions, resolve_strategy
from lstmbt.backtest.relative import benchmark_relative, family_verdict
from lstmbt.models.key import (BASE_NAMES, BASELINES, BENCHMARK, TASKS, ModelKey, keys_from_frame, own_key,
                               plugin_key)
from lstmbt.strategies import (
    buy_and_hold, classification_confidence_positions, classification_positions, drawdown_positions,
    predicted_log_return, regression_confidence_positions, regression_positions, vol_target_positions
)
from lstmbt.strategies.rules import confidence_undecided

MODEL_NAMES = {task: BASE_NAMES[("lstm", task)] for task in TASKS}
LINEAR_NAMES = {task: BASE_NAMES[("linear", task)] for task in TASKS}


def model_plan(config: RunConfig) -> list[ModelKey]:
    """The key of every model at the primary horizon, in task order per family: the network
    families of ``model.families`` first, then the linear and LightGBM baselines, then the
    plug-ins of ``model.custom`` whose task the run has."""
    return _plan(config, config.target.horizon)


def horizon_plan(config: RunConfig) -> list[ModelKey]:
    """The key of every model of a run: the primary horizon's under their plain names, then each
    further ``target.horizons`` entry with ``_h<h>`` appended to the name."""
    return [key for h in config.target.all_horizons for key in _plan(config, h)]


def _plan(config: RunConfig, h: int) -> list[ModelKey]:
    primary, model = config.target.horizon, config.model
    families = [*model.networks, *("linear",) * model.linear, *("lightgbm",) * model.lightgbm]
    keys = [own_key(family, task, h, primary) for family in families for task in config.target.tasks]
    return keys + [plugin_key(p.stem, p.task, h, primary) for p in model.plugins if p.task in config.target.tasks]


def strategy_horizon(name: str, keys: Mapping[str, ModelKey], config: RunConfig) -> int:
    """The label horizon strategy ``name`` is scored at: its model's (``keys``), else, for the
    baselines and buy-and-hold, the primary horizon."""
    key = keys.get(name)
    return key.horizon if key is not None else config.target.horizon


def overlapping(position: pd.Series, horizon: int) -> pd.Series:
    """Holdings of a strategy whose signals each last ``horizon`` days: the mean of the last h signals.

    Every day 1/h of the capital follows that day's signal for h days (overlapping tranches);
    before h signals exist the missing tranches are flat. h = 1 returns ``position`` unchanged.
    """
    if horizon == 1:
        return position
    return position.fillna(0.0).rolling(horizon, min_periods=1).sum() / horizon


def majority_p_up(direction: pd.Series, grid: Any, folds: list) -> pd.Series:
    """Per test day, the share of up labels in its fold's training and validation rows."""
    parts = []
    for fold in folds:
        seen = np.concatenate([fold.train, fold.val])
        share = float(np.mean(direction.reindex(grid.dates[seen]).to_numpy() > 0))
        parts.append(pd.Series(share, index=grid.dates[fold.test]))
    return pd.concat(parts)


def make_positions(predictions: pd.DataFrame, dates: pd.DatetimeIndex, config: RunConfig,
                   majority: pd.Series | None = None, close: pd.Series | None = None,
                   prices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Target positions per decision day: the models, then their baselines, then ``buy_and_hold``.

    ``persistence`` comes with a regression model, ``majority`` (p_up per day from
    ``majority_p_up``; None leaves it out) with a classifier. ``close``: the whole close
    history, for the trailing volatility of confidence sizing and ``strategy.vol_target`` (the
    predictions' own closes start on the first test day, which would leave the first
    ``vol_window`` days flat); taken from ``prices`` when not given. ``prices``: the whole OHLCV
    history, needed by ``strategy.custom``, whose rule sizes every model and both baselines
    (``backtest.plugins.custom_positions``). ``strategy.vol_target`` then scales all but buy-and-hold.
    """
    close = prices["Close"] if close is None and prices is not None else close
    rule = resolve_strategy(config.strategy.custom) if config.strategy.custom is not None else None
    if rule is not None and prices is None:
        raise ValueError("strategy.custom needs the price history: pass prices to make_positions")
    frames, keys = by_model(predictions, dates), keys_from_frame(predictions)
    frames.update(_baseline_frames(frames, keys, majority, dates, config))
    columns = {}
    for name, frame in frames.items():
        if rule is not None:
            columns[name] = custom_positions(rule, config.strategy.custom, frame, prices)
            continue
        key = keys.get(name)
        task = key.task if key is not None else ("regression" if name == "persistence" else "classification")
        predicted = pd.Series(0.0, index=dates) if name == "persistence" else None
        raw = _model_positions(task, frame["y_pred"], frame["p_up"], frame["close"], config, close, predicted)
        columns[name] = raw if name == "persistence" else overlapping(raw, strategy_horizon(name, keys, config))
    if config.strategy.vol_target > 0:
        s = config.strategy
        columns = {name: vol_target_positions(pos, close, s.vol_target, s.vol_window) for name, pos in columns.items()}
    columns[BENCHMARK] = buy_and_hold(dates)
    frame = pd.DataFrame(columns, index=dates)
    frame.index.name = "date"
    return frame


def _baseline_frames(models: dict[str, pd.DataFrame], keys: Mapping[str, ModelKey], majority: pd.Series | None,
                     dates: pd.DatetimeIndex, config: RunConfig) -> dict[str, pd.DataFrame]:
    """The predictions of ``persistence`` (with a regression model) and ``majority`` (with a
    classifier, when ``majority`` is given) in a model's frame layout: key columns (family
    ``naive``, baseline true), fold and close from the first model of that task, and ``y_pred``
    / ``p_up`` of the naive forecast (persistence: the no-change return 0, or the last close for a
    price target; p_up NaN. majority: p_up the share of up days, y_pred its 0/1 call)."""
    out, h = {}, config.target.horizon
    first = {}
    for name, frame in models.items():
        first.setdefault(keys[name].task, frame)
    if "regression" in first:
        g = first["regression"]
        naive = g["close"] if config.target.regression == "price" else pd.Series(0.0, index=dates)
        out["persistence"] = g.assign(target="regression", model="persistence", horizon=h, family="naive",
                                      baseline=True, y_pred=naive, p_up=np.nan)
    if majority is not None and "classification" in first:
        p_up = majority.reindex(dates)
        out["majority"] = first["classification"].assign(
            target="classification", model="majority", horizon=h, family="naive", baseline=True,
            y_pred=(p_up > 0.5).astype("float64").where(p_up.notna()), p_up=p_up)
    return out


def _model_positions(task: str, y_pred: pd.Series | None, p_up: pd.Series | None, own_close: pd.Series | None,
                     config: RunConfig, close: pd.Series | None, predicted: pd.Series | None = None) -> pd.Series:
    """One model's positions under the configured sizing (``strategy.sizing``)."""
    s = config.strategy
    if task == "regression" and config.target.regression == "max_drawdown" and predicted is None:
        return drawdown_positions(y_pred, s.drawdown_limit)
    if task == "classification":
        if s.sizing == "confidence":
            return classification_confidence_positions(p_up, s.confidence_gain, s.long_short)
        return classification_positions(p_up, s.cutoff, s.long_short)
    pred_ret = predicted if predicted is not None else predicted_log_return(y_pred, own_close, config.target.regression)
    if s.sizing == "confidence":
        history = close if close is not None else own_close
        return regression_confidence_positions(pred_ret, history, s.vol_window, s.return_gain, s.long_short,
                                               horizon=config.target.horizon)
    return regression_positions(pred_ret, s.threshold, s.long_short)


def by_model(predictions: pd.DataFrame, dates: pd.DatetimeIndex) -> dict[str, pd.DataFrame]:
    """Each model's predictions indexed by decision day."""
    return {name: g.set_index("date").reindex(dates) for name, g in predictions.groupby("model", sort=False)}


def predicted_up(name: str, models: dict[str, pd.DataFrame], majority: pd.Series | None,
                 config: RunConfig, dates: pd.DatetimeIndex, *, keys: Mapping[str, ModelKey]) -> np.ndarray | None:
    """The direction strategy ``name`` called on each decision day; None for persistence and for a
    ``max_drawdown`` model, which call no direction. ``keys``: the run's model keys
    (``models.key.keys_from_frame`` of its predictions)."""
    if name == BENCHMARK:
        return np.ones(len(dates), dtype=bool)
    if name == "majority":
        return (majority.reindex(dates) > 0.5).to_numpy()
    task = keys[name].task if name in keys else None
    if task == "regression" and config.target.regression != "max_drawdown":
        g = models[name]
        return (predicted_log_return(g["y_pred"], g["close"], config.target.regression) > 0).to_numpy()
    if task == "classification":
        return (models[name]["p_up"] > 0.5).to_numpy()
    return None


def undecided(key: ModelKey, models: dict[str, pd.DataFrame], config: RunConfig,
              close: pd.Series | None = None) -> np.ndarray:
    """Per decision day, whether the model of ``key`` held flat for want of an input rather than by choice:
    no forecast (NaN), or under confidence sizing a regression model without a trailing volatility
    over ``strategy.vol_window`` days (undefined or zero; ``strategies.rules.confidence_undecided``).

    ``close``: the whole close history (None: the model's own closes from the first test day).
    """
    g = models[key.name]
    if key.task == "classification":
        return g["p_up"].isna().to_numpy()
    missing = g["y_pred"].isna()
    if config.strategy.sizing != "confidence" or config.target.regression == "max_drawdown":
        return missing.to_numpy()
    pred = predicted_log_return(g["y_pred"], g["close"], config.target.regression)
    history = close if close is not None else g["close"]
    return (missing | confidence_undecided(pred, history, config.strategy.vol_window)).to_numpy()


def collect_metrics(predictions: pd.DataFrame, positions: pd.DataFrame, backtest, realised_up: np.ndarray,
                    config: RunConfig, majority: pd.Series | None = None,
                    realised_by_horizon: dict[int, np.ndarray] | None = None,
                    close: pd.Series | None = None,
                    periods_per_year: int = m.PERIODS_PER_YEAR) -> dict[str, dict[str, Any]]:
    """``{strategy: {metric: value}}`` for every column of ``positions``.

    ``realised_up``: the realised direction at the primary horizon per decision day;
    ``realised_by_horizon``: the same for every horizon of the run, so a model at horizon h is
    scored against h-day moves (and its ``base_rate`` is the share of up h-day moves).
    ``close``: the whole close history, as for ``make_positions``; it tells the days a model
    could not decide on (``undecided``): each model's ``no_decision_days``, left out of its
    hit rate, base rate and hit-rate tests (its returns count them flat, as it was held).
    ``periods_per_year``: the bars a year every annualised figure uses
    (``backtest.annualise.run_periods``: 252, or 365 on a 7-day calendar).
    """
    out: dict[str, dict[str, Any]] = {}
    ppy = periods_per_year
    dates, keys = positions.index, keys_from_frame(predictions)
    models = by_model(predictions, dates)
    for name in positions.columns:
        key, pos = keys.get(name), positions[name].to_numpy()
        entry = m.performance_metrics(backtest.returns[name].to_numpy(), pos, ppy)
        real = (realised_by_horizon or {}).get(strategy_horizon(name, keys, config), realised_up)
        pred_up = predicted_up(name, models, majority, config, dates, keys=keys)
        if key is not None:
            decided = ~undecided(key, models, config, close)
            entry["no_decision_days"] = int(len(decided) - decided.sum())
            real, pred_up = real[decided], None if pred_up is None else pred_up[decided]
        entry["hit_rate"] = m.hit_rate(pred_up, real) if pred_up is not None else math.nan
        if key is not None:
            entry["base_rate"] = float(np.mean(real)) if len(real) else math.nan
        entry.update(_significance(name, key, backtest.returns, pred_up, real, models, config, ppy))
        trades = backtest.trades[backtest.trades["strategy"] == name]
        entry.update(n_trades=backtest.n_trades[name], fees_paid=backtest.fees_paid[name],
                     slippage_paid=backtest.slippage_paid[name], n_days=len(pos),
                     **m.trade_stats(trades["return"].to_numpy(), trades["holding_days"].to_numpy()))
        entry.update(_prediction_scores(name, keys, models, majority, dates, config))
        entry.update(_relative(name, entry, backtest.returns, config, keys, ppy))
        out[name] = entry
    return out


def _relative(name: str, entry: dict[str, Any], returns: pd.DataFrame, config: RunConfig,
              keys: Mapping[str, ModelKey], ppy: int) -> dict[str, Any]:
    """Benchmark-relative figures (``backtest.relative``) for every strategy but buy-and-hold, and
    the verdict of each strategy with a Sharpe-difference interval: from that interval widened to
    the Bonferroni level over the run's models (``family_confidence``), same seed and resamples."""
    if name == BENCHMARK:
        return {}
    r, bench = returns[name].to_numpy(), returns[BENCHMARK].to_numpy()
    out: dict[str, Any] = benchmark_relative(r, bench, strategy_horizon(name, keys, config), ppy,
                                             cash_rate=config.backtest.cash_rate)
    if "sharpe_diff_ci_low" in entry:
        out.update(family_verdict(r, bench, sum(c in keys for c in returns.columns), config.train.run_seed, ppy))
    return out


def _significance(name: str, key: ModelKey | None, returns: pd.DataFrame, pred_up: np.ndarray | None,
                  realised_up: np.ndarray, models: dict[str, pd.DataFrame], config: RunConfig,
                  ppy: int = m.PERIODS_PER_YEAR) -> dict[str, float]:
    """The significance figures of one strategy (``backtest.significance``); see metrics.json in the README.
    ``key``: the strategy's model key, None for the baselines and buy-and-hold; ``ppy``: bars a year.

    Buy-and-hold gets its Sharpe interval and PSR only; persistence, which calls no direction,
    gets no directional test. Regression models add Diebold-Mariano against persistence.
    """
    r = returns[name].to_numpy()
    if name == BENCHMARK:
        return sig.sharpe_figures(r, seed=config.train.run_seed, periods_per_year=ppy)
    if pred_up is None and key is None:
        return {"hit_rate_pvalue": math.nan}  # persistence: no call, no position
    errors, horizon = {}, config.target.horizon if key is None else key.horizon
    if key is not None and key.task == "regression":
        g = models[name]
        naive = g["close"] if config.target.regression == "price" else np.zeros(len(g))
        errors = {"y_true": g["y_true"].to_numpy(), "y_pred": g["y_pred"].to_numpy(), "y_naive": np.asarray(naive)}
    if pred_up is None:  # a max_drawdown model: no direction to test, but its returns and errors are
        return _undirected_significance(r, returns[BENCHMARK].to_numpy(), errors, horizon, config, ppy)
    return sig.significance_metrics(r, returns[BENCHMARK].to_numpy(), pred_up, realised_up,
                                    horizon=horizon, seed=config.train.run_seed, periods_per_year=ppy, **errors)


def _undirected_significance(r: np.ndarray, bench: np.ndarray, errors: dict[str, np.ndarray], horizon: int,
                             config: RunConfig, ppy: int) -> dict[str, float]:
    """Sharpe intervals, PSR and Diebold-Mariano of a model that makes no up/down call."""
    out = {"hit_rate_pvalue": math.nan, **sig.sharpe_figures(r, bench, seed=config.train.run_seed,
                                                                periods_per_year=ppy)}
    for loss, key in (("squared", "dm_pvalue"), ("absolute", "dm_pvalue_abs")):
        out[key] = sig.dm_test(errors["y_true"], errors["y_pred"], errors["y_naive"], loss, horizon)[1]
    return out


def _prediction_scores(name: str, keys: Mapping[str, ModelKey], models: dict[str, pd.DataFrame],
                       majority: pd.Series | None, dates: pd.DatetimeIndex, config: RunConfig) -> dict[str, float]:
    """Forecast-error or probability scores of one strategy's predictions, where it has them."""
    price = config.target.regression == "price"
    tasks = {keys[n].task: g for n, g in models.items()}  # any model of a task has that task's y_true
    task = keys[name].task if name in keys else None
    if name == "persistence" or task == "regression":
        g = models[name] if task else tasks["regression"]
        naive = g["close"] if price else np.zeros(len(g))
        if name == "persistence":
            errors = m.regression_errors(g["y_true"], naive, naive, with_mape=price)
            return {k: v for k, v in errors.items() if not k.startswith("persistence_")}
        return m.regression_errors(g["y_true"], g["y_pred"], naive, with_mape=price)
    if task == "classification":
        return m.classification_scores(models[name]["y_true"], models[name]["p_up"])
    if name == "majority":
        return m.classification_scores(tasks["classification"]["y_true"], majority.reindex(dates))
    return {}


def fold_stats(folds: pd.DataFrame, positions: pd.DataFrame, returns: pd.DataFrame,
               realised_up: np.ndarray | dict[str, np.ndarray], up_calls: dict[str, np.ndarray]) -> pd.DataFrame:
    """``folds`` with, per model and test block: hit_rate, base_rate, strategy_return, buy_and_hold_return.

    ``returns`` row k is the bar held after decision day ``positions.index[k]``, so a block's
    return compounds the rows of its decision days. ``up_calls``: per model, its daily calls;
    ``realised_up``: the realised directions, or per model when models differ in horizon.
    """
    dates = positions.index
    extra = {k: [] for k in ("hit_rate", "base_rate", "strategy_return", "buy_and_hold_return")}
    for record in folds.to_dict("records"):
        rows = (dates >= record["test_start"]) & (dates <= record["test_end"])
        model = record["model"]
        real = realised_up[model] if isinstance(realised_up, dict) else realised_up
        calls = up_calls.get(model)
        extra["hit_rate"].append(hit_rate(calls[rows], real[rows]) if calls is not None else math.nan)
        extra["base_rate"].append(float(np.mean(real[rows])))
        extra["strategy_return"].append(total_return(returns[model].to_numpy()[rows]))
        extra["buy_and_hold_return"].append(total_return(returns[BENCHMARK].to_numpy()[rows]))
    return folds.assign(**extra)


def run_warnings(metrics: dict[str, dict[str, Any]], positions: pd.DataFrame, models: Collection[str],
                 returns: pd.DataFrame | None = None, rule: str | None = None) -> list[str]:
    """Plain-language cautions the report shows next to the numbers; ``models``: the strategies
    that are models (the names of the run's model keys), as opposed to baselines.

    The first are the look-ahead guard's second line of defence (``backtest.lookahead``): a model
    that calls more than ``TOO_GOOD_HIT_RATE`` of daily directions right, and ``LOOKAHEAD_MARGIN``
    more than always guessing the more common direction would, almost surely sees the future
    through a feature; with ``returns`` (the run's, row k the bar held after decision day k), so
    does a strategy whose positions do the same or whose Sharpe ratio is implausible for daily
    bars (``lookahead.position_alarms``; ``rule``: the ``strategy.custom`` value, named as their
    maker). The run says so first. Models with ``no_decision_days`` get a note saying how many.
    Nothing here repeats a scorecard cell (hit rate against base rate, Sharpe against
    buy-and-hold: the scorecard shows both, with their tests).
    """
    notes, flagged = [], []
    base = metrics[BENCHMARK]["hit_rate"]
    for name, entry in metrics.items():
        if name in models and lookahead_suspected(entry["hit_rate"], entry.get("base_rate", base)):
            flagged.append(name)
            notes.append(f"LOOK-AHEAD SUSPECTED: {name} calls {entry['hit_rate']:.1%} of directions right, too good "
                         "to be true for daily prices; check every feature for data from after the decision day.")
    if returns is not None:
        notes += position_alarms(positions, returns, metrics, rule, flagged)
    if len(positions) < 252:
        notes.append(f"The out-of-sample period is {len(positions)} days, shorter than one year.")
    for name, entry in metrics.items():
        if name not in models:
            continue
        if entry.get("no_decision_days"):
            notes.append(_no_decision_note(name, entry["no_decision_days"], len(positions)))
        if "rmse" in entry and not entry["rmse"] < entry["persistence_rmse"]:
            notes.append(f"{name}: RMSE {entry['rmse']:.4g} does not beat persistence ({entry['persistence_rmse']:.4g}).")
    return notes


def scale_warnings(config: RunConfig) -> list[str]:
    """Cautions for the raw-level options: a ``price`` target fitted as a level
    (``target.price_scale = "level"``) or raw lagged closes (``features.lag_scale = "level"``)
    tie a model to the training window's price range, so it cannot follow prices beyond it."""
    notes = []
    if "regression" in config.target.tasks and config.target.regression == "price" \
            and config.target.price_scale == "level":
        notes.append("target.price_scale = 'level': the regression models fit raw prices standardised on each "
                     "training window, so they cannot predict prices outside the range they were trained on (a "
                     "trending market leaves it); use target.price_scale = 'relative', the default.")
    if "lags" in config.features.groups and config.features.lag_scale == "level":
        notes.append("features.lag_scale = 'level': the lags group feeds raw closes, standardised on each training "
                     "window, so later prices outside that range reach the models as values they never saw; use "
                     "features.lag_scale = 'relative', the default.")
    return notes


def _no_decision_note(name: str, days: int, total: int) -> str:
    return (f"{name}: no decision on {days} of {total} out-of-sample days (no forecast, or under confidence sizing a "
            "trailing volatility over strategy.vol_window days that is undefined or zero, as after a stretch of "
            "unchanged closes); it was held flat on them, its returns count them flat, and its hit rate leaves them "
            "out. Check the prices for a stale stretch, or use a strategy.vol_window longer than it.")
