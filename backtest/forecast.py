"""``forecast_next(config)``: every model of a run trained on all the data, forecasting past the last bar,
and what the configured strategy does with the forecasts.

The retrain is a walk-forward retrain whose test day is the next trading day, so the timing rule
holds unchanged: the samples fitted on are those whose label is realised by the last bar
(t + h <= last bar, minus any embargo); the early-stopping validation set is the chronological
tail of that window, purged the same way (it is ``WalkForwardSplit``'s own fold); with
``train.refit`` the model is then refitted on the whole usable window, as a run refits it; the
scaler is fit on those training rows only; and the forecast reads the window that ends on the last
bar, whose own label is not known yet. Torch is imported only when a model is trained.

Every model of the run's plan forecasts (each network family, the linear and LightGBM baselines,
plug-ins; a seed ensemble as the mean of its seeds), beside the naive baselines ``persistence``
and ``majority``. The strategy's next position comes from the same strategy code as a run
(``scoring.make_positions``) applied to the forecasts of the last ``horizon + 1`` decision days,
each made by a model retrained after that day's close exactly as above (so the position held
now, decided at the close before the last bar, used nothing after that close). A position decided
at the close of the last bar is filled at the next open (``backtest.execution``), as in a run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.data import describe_prices
from lstmbt.backtest.design import plugin_faults
from lstmbt.backtest.errors import DataError
from lstmbt.backtest.fitdates import fit_dates
from lstmbt.backtest.pipeline import (Progress, estimator_for, load_checked, make_design, target_anchor,
                                      training_weights)
from lstmbt.backtest.preflight import check_one_horizon
from lstmbt.backtest.scoring import BENCHMARK, make_positions, model_plan
from lstmbt.backtest.splits import Fold
from lstmbt.backtest.walkforward import SampleGrid, refit_positions, scaled_windows
from lstmbt.models.key import ModelKey, insert_key_columns
from lstmbt.models.specs import NETWORK_FAMILIES
from lstmbt.models.targets import price_to_relative, relative_to_price
from lstmbt.models.threads import one_thread_per_fit, run_side_by_side
from lstmbt.strategies import predicted_log_return

#: the direction words of a forecast: above/below no change, or no call (persistence, a p_up of exactly
#: 0.5, a ``max_drawdown`` model, which forecasts a drop and not a direction)
UP, DOWN, NO_CALL = "up", "down", "none"


@dataclass(frozen=True, kw_only=True)
class RegressionForecast:
    """The regression model's forecast of the close ``horizon`` bars after the last bar.

    ``target``: what the model learned, ``return`` (the h-day log return) or ``price`` (the
    close h days ahead). ``close``: forecast close, in the data's currency. ``simple_return``:
    close / last close - 1, a fraction (0.0018 = +0.18 %). ``log_return``: log(close / last
    close); -inf when a price model forecasts a non-positive price. ``persistence_close`` and
    ``persistence_return``: the no-change baseline beside it (the last close, 0.0).
    ``epochs``: epochs trained (0 for a model without epochs). ``model``: the strategy name of
    the model that forecasts.
    """

    model: str
    target: str
    close: float
    simple_return: float
    log_return: float
    persistence_close: float
    persistence_return: float
    epochs: int


@dataclass(frozen=True, kw_only=True)
class ClassificationForecast:
    """The classifier's probability that the close ``horizon`` bars ahead is above the last close.

    ``p_up``: that probability, in [0, 1]. ``base_rate``: the share of up labels among the
    training samples (fit and validation), what a model without skill would say. ``epochs``:
    epochs trained. ``model``: the strategy name of the model that forecasts.
    """

    model: str
    p_up: float
    base_rate: float
    epochs: int


@dataclass(frozen=True, kw_only=True)
class ModelForecast:
    """One model's (or naive baseline's) forecast made after the close of the last bar.

    ``task``: ``regression`` or ``classification``; ``family``: the model family (``naive`` for
    ``persistence`` and ``majority``); ``baseline``: a baseline rather than a contender.
    ``direction``: ``UP``, ``DOWN`` or ``NO_CALL``. Regression: ``close`` (data's currency),
    ``simple_return`` (fraction) and ``log_return``; classification: ``p_up`` in [0, 1] (the
    majority baseline's is the training share of up labels). Fields of the other task are None.
    ``epochs``: epochs trained by the first seed (0 without epochs).
    """

    model: str
    task: str
    family: str
    baseline: bool
    direction: str
    close: float | None = None
    simple_return: float | None = None
    log_return: float | None = None
    p_up: float | None = None
    epochs: int = 0


@dataclass(frozen=True, kw_only=True)
class Action:
    """What the configured strategy does for one model at the next session.

    ``current``: the position held now, decided at the close of the bar before the last one
    (fraction of equity, + long, - short); ``target``: the position decided at the close of the
    last bar; ``order``: ``BUY``, ``SELL`` or ``HOLD``; ``size``: |target - current|, filled at
    the next open (``backtest.execution = "next_open"``) or close (``"next_close"``).
    """

    strategy: str
    current: float
    target: float
    order: str
    size: float


@dataclass(frozen=True, kw_only=True)
class Forecast:
    """A forecast made after the close of ``last_date`` for the close ``horizon`` bars later.

    ``last_close``: the close of the last bar, in the data's currency. ``train_start`` and
    ``train_end``: dates of the first and last usable sample (fit and validation tail;
    ``train_end`` + ``horizon`` bars <= ``last_date``). ``fit_end``: the last sample the
    early-stopping fit trained on; ``val_start``..``val_end``: the validation tail that only picked
    the epoch count (None without one); ``refitted``: the models that ``train.refit`` then
    refitted on the whole usable window, ``train_start``..``train_end`` (their weights' data end at
    ``train_end``; every other model's at ``fit_end``). ``n_train``: samples fitted on before
    validation; ``n_val``: samples in the validation tail. ``regression``/``classification``: the
    first model of each task in the run's plan (None when the config does not ask for the task).
    ``models``: every model's forecast, then the naive baselines. ``actions``: the strategy's step
    per model, baseline and buy-and-hold. ``current_date``: the decision day of the positions held
    now. ``execution``: the config's ``backtest.execution``. ``data``:
    ``backtest.data.describe_prices`` of the prices used (its ``sha256`` finds the matching saved run). ``decisions``: per decision day behind the positions
    (the last ``horizon + 1`` bars, oldest first), each model's output then (regression value in
    the target's units, or p_up), from the model retrained after that day's close.
    """

    source: str
    last_date: pd.Timestamp
    last_close: float
    horizon: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    n_train: int
    n_val: int
    fit_end: pd.Timestamp | None = None
    val_start: pd.Timestamp | None = None
    val_end: pd.Timestamp | None = None
    refitted: tuple[str, ...] = ()
    regression: RegressionForecast | None = None
    classification: ClassificationForecast | None = None
    models: tuple[ModelForecast, ...] = ()
    actions: tuple[Action, ...] = ()
    current_date: pd.Timestamp | None = None
    execution: str = "next_open"
    data: dict[str, Any] = field(default_factory=dict)
    decisions: tuple[tuple[pd.Timestamp, dict[str, float]], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: dates as YYYY-MM-DD, non-finite numbers as None, absent tasks left out."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("last_date", "train_start", "train_end", "current_date", "fit_end", "val_start", "val_end"):
            out[key] = out[key].date().isoformat() if out[key] is not None else None
        for task in ("regression", "classification"):
            record = out.pop(task)
            if record is not None:
                out[task] = {k: _finite(v) for k, v in asdict(record).items()}
        for key in ("models", "actions"):
            out[key] = [{k: _finite(v) for k, v in asdict(record).items()} for record in out[key]]
        out["decisions"] = [{"date": day.date().isoformat(), "values": {k: _finite(v) for k, v in values.items()}}
                            for day, values in self.decisions]
        out["agreement"] = agreement(self.models)
        return out


@plugin_faults()  # a plug-in model's fault is one ConfigError line
def forecast_next(config: RunConfig, threads: int | None = None, progress: Progress | None = None) -> Forecast:
    """Train every model of ``config`` on all its data, forecast past the last bar, and size the positions.

    Each model (each seed of a network's ``train.seeds``) is retrained after the close of each of
    the last ``horizon + 1`` bars (``final_fold``) and predicts that bar's window; the last one
    is the forecast, all of them feed the strategy (``strategy_actions``).
    ``threads``: how many models may train side by side, each on one torch thread (None: torch's
    current count; ``backtest.pipeline.run``); torch's count is restored afterwards. ``progress``:
    called as progress(stage, done, total) with stage ``data`` and then each model's name.
    Raises ``DataError`` when the data are too short, with the same check as ``run``, and
    ``ConfigError`` for several ``target.horizons`` (``preflight.check_one_horizon``) before loading anything.
    """
    check_one_horizon(config)
    report = progress or (lambda stage, done, total: None)
    report("data", 0, 1)
    design = make_design(load_checked(config, folds=False, positions=False), config)  # no folds trained, no positions
    grid, h = design.grid, config.target.horizon
    last_row = len(design.features) - 1
    back = tuple(range(h, -1, -1))  # bars before the last whose decisions the positions held now and next average
    folds = {k: final_fold(config, last_row - k - grid.first_row, grid.n) for k in back}
    windows = {k: scaled_windows(design.features, grid.rows(_usable(folds[k])), grid.lookback)  # training rows only
               for k in back}
    keys = model_plan(config)
    jobs = [(key, seed, k) for key in keys for seed in _seeds(key, config) for k in back]
    done = {key.name: 0 for key in keys}

    def fit(key: ModelKey, seed: int | None, k: int) -> tuple[float, int, bool]:
        record = _fit_and_forecast(estimator_for(key, config, seed), windows[k], design.targets[key.task], grid,
                                   folds[k], training_weights(design, key.task, h, config),
                                   target_anchor(design, key.task, config), row=last_row - k)
        done[key.name] += 1
        report(key.name, done[key.name], len(jobs) // len(keys))
        return record

    with one_thread_per_fit(threads) as governor:  # the caller's thread count is back when the forecast returns
        fitted = dict(zip(jobs, run_side_by_side([lambda job=job: fit(*job) for job in jobs], governor)))
    values = {(key.name, k): float(np.mean([fitted[key, s, k][0] for s in _seeds(key, config)]))
              for key in keys for k in back}  # a seed ensemble forecasts the mean of its seeds, as in a run
    epochs = {key.name: fitted[key, _seeds(key, config)[0], 0][1] for key in keys}
    base = {k: float(np.mean(design.targets["classification"].to_numpy()[grid.rows(_usable(folds[k]))] > 0))
            for k in back}
    dates = design.prices.index[last_row - np.array(back)]
    positions = decision_positions(design.prices, keys, values, base, dates, config)
    last_close = float(design.prices["Close"].iloc[-1])
    models = _model_records(keys, values, epochs, base[0], last_close, config)
    label = config.data.source + (f" ({config.data.symbol})" if config.data.symbol else "")
    refitted = tuple(key.name for key in keys if fitted[key, _seeds(key, config)[0], 0][2])
    return Forecast(source=label, last_date=design.prices.index[-1], last_close=last_close, horizon=h,
                    **fit_dates(folds[0], grid.dates), refitted=refitted,
                    **_first_per_task(models, base[0], last_close, config),
                    models=tuple(models), actions=strategy_actions(positions), current_date=dates[-2],
                    execution=config.backtest.execution,
                    data=describe_prices(design.prices, config.data.source, config.data.symbol),
                    decisions=tuple((day, {key.name: values[key.name, k] for key in keys}) for day, k in zip(dates, back)))


def decision_positions(prices: pd.DataFrame, keys: list[ModelKey], values: dict[tuple[str, int], float],
                       base: dict[int, float], dates: pd.DatetimeIndex, config: RunConfig) -> pd.DataFrame:
    """The configured strategy's target positions on ``dates`` (the last ``horizon + 1`` bars, oldest
    first), from ``scoring.make_positions``, the code that makes a run's positions.

    ``values[(model, k)]``: the model's output (regression value in the target's units, or p_up)
    for the decision day k bars before the last; ``base[k]``: the training share of up labels
    then (the majority baseline's p_up). Columns: the models, their naive baselines, buy-and-hold.
    """
    back = range(len(dates) - 1, -1, -1)
    frames = []
    for key in keys:
        out = np.array([values[key.name, k] for k in back])
        p_up = out if key.task == "classification" else np.full(len(out), np.nan)
        y_pred = (out > 0.5).astype(np.float64) if key.task == "classification" else out
        frame = pd.DataFrame({"date": dates, "fold": -1, "y_true": np.nan, "y_pred": y_pred, "p_up": p_up})
        frame = insert_key_columns(frame, key, 1)
        frame["close"] = prices["Close"].reindex(dates).to_numpy()
        frames.append(frame)
    majority = pd.Series([base[k] for k in back], index=dates)
    return make_positions(pd.concat(frames, ignore_index=True), dates, config, majority, prices=prices)


def strategy_actions(positions: pd.DataFrame) -> tuple[Action, ...]:
    """Per strategy (column of ``positions``), the step from the second-to-last row's position (held
    now) to the last row's (decided at the last close)."""
    out = []
    for name in positions.columns:
        current, target = float(positions[name].iloc[-2]), float(positions[name].iloc[-1])
        change = round(target - current, 10)  # float noise is no order
        order = "BUY" if change > 0 else "SELL" if change < 0 else "HOLD"
        out.append(Action(strategy=name, current=current, target=target, order=order, size=abs(change)))
    return tuple(out)


def agreement(models: tuple[ModelForecast, ...] | list[ModelForecast]) -> dict[str, Any]:
    """``{"up": [...], "down": [...], "none": [...], "disagree": bool}``: the models (not the naive
    baselines) by forecast direction; they disagree when some call up and some down."""
    calls = {UP: [], DOWN: [], NO_CALL: []}
    for record in models:
        if record.family != "naive":
            calls[record.direction].append(record.model)
    return {**calls, "disagree": bool(calls[UP] and calls[DOWN])}


def final_fold(config: RunConfig, last_position: int, n_labelled: int) -> Fold:
    """The fold of a retrain after the close of the last bar, in sample positions.

    ``last_position``: the last bar's sample position (its row minus ``grid.first_row``);
    ``n_labelled``: how many positions carry a realised label (``grid.n``). The fold is the one
    ``WalkForwardSplit`` builds for a test block starting on the next trading day, position
    ``last_position + 1``, so its purge, embargo, validation tail and rolling window are exactly
    a walk-forward retrain's. Its ``test`` is that next day, which has no row yet.
    """
    s = config.split
    start = last_position + 1
    if start <= s.min_train:
        raise DataError(f"{config.data.source} leaves {start} samples up to the last bar, not more than "
                        f"split.min_train = {s.min_train}; use a longer date range or lower split.min_train")
    # folds start at min_train and at ``start``; take the latter
    fold = s.splitter(config.target.horizon, step=start - s.min_train).split(start + 1)[-1]
    usable = np.concatenate([fold.train, fold.val])
    if fold.test[0] != start or usable[-1] >= n_labelled:
        raise AssertionError("the final fold does not end before the last bar's unrealised labels")
    return fold


def _usable(fold: Fold) -> np.ndarray:
    return np.concatenate([fold.train, fold.val])


def _seeds(key: ModelKey, config: RunConfig) -> tuple[int | None, ...]:
    """The seeds a model trains with: every ``train.seeds`` member for a network, one (None) otherwise."""
    return tuple(config.train.members) if key.family in NETWORK_FAMILIES else (None,)


def _fit_and_forecast(model, windows: np.ndarray, target: pd.Series, grid: SampleGrid, fold: Fold,
                      weight: pd.Series | None = None, anchor: pd.Series | None = None,
                      row: int | None = None) -> tuple[float, int, bool]:
    """Fit the unfitted ``model`` on ``fold`` (and refit it on the whole usable window when it
    ``refits``, as ``walk_forward_predict`` does) and forecast from the window ending on feature ``row``.

    ``windows``: every scaled window of the feature frame, (T - L + 1, L, F), the last ending on
    the last bar. ``row``: the decision day's feature row (default the last bar's). ``weight``:
    training weights per row (the dead zone), or None. ``anchor``: the close per row when a
    price is fitted relative to it (``pipeline.target_anchor``), as ``walk_forward_predict``
    fits it. Returns the regression output (a log return or a price, in the target's units) or
    the classifier's p_up, the number of epochs trained, and whether it was refitted.
    """
    y = target.to_numpy(dtype=np.float64)
    if anchor is not None:
        anchor_values = anchor.reindex(target.index).to_numpy(dtype=np.float64)
        y = price_to_relative(y, anchor_values)

    def take(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Fold positions are contiguous ranges, so a slice keeps the windows a view.
        first = grid.first_row + int(positions[0])
        begin = first - grid.lookback + 1
        return windows[begin : begin + len(positions)], y[first : first + len(positions)]

    def weigh(positions: np.ndarray) -> dict[str, np.ndarray]:
        if weight is None:
            return {}
        first = grid.first_row + int(positions[0])
        return {"sample_weight": weight.to_numpy(dtype=np.float64)[first : first + len(positions)]}

    model.fit(*take(fold.train), *(take(fold.val) if len(fold.val) else ()), **weigh(fold.train))
    refit = bool(len(fold.val) and getattr(model, "refits", False))
    if refit:  # train.refit: the whole usable window, as a run's walk-forward refits
        usable = refit_positions(fold)
        model.refit_full(*take(usable), **weigh(usable))
    row = len(y) - 1 if row is None else row
    start = row - grid.lookback + 1
    x_last = windows[start : start + 1]  # shape (1, L, F): rows row - L + 1 .. row
    if hasattr(model, "predict_proba"):
        value = model.predict_proba(x_last)[0, list(model.classes_).index(1)]
    else:
        value = model.predict(x_last)[0]
        if anchor is not None:  # back from log(price / close) to a price
            value = relative_to_price(value, anchor_values[row])
    return float(value), int(getattr(model, "n_epochs_", 0)), refit


def _model_records(keys: list[ModelKey], values: dict[tuple[str, int], float], epochs: dict[str, int],
                   base_rate: float, last_close: float, config: RunConfig) -> list[ModelForecast]:
    """Every model's forecast for the last bar (k = 0), then persistence and majority where a
    model of their task runs."""
    kind, out = config.target.regression, []
    for key in keys:
        value, common = values[key.name, 0], dict(model=key.name, task=key.task, family=key.family,
                                                  baseline=key.baseline, epochs=epochs[key.name])
        if key.task == "classification":
            out.append(ModelForecast(**common, direction=_direction(value - 0.5), p_up=value))
            continue
        r = _regression_record(key.name, kind, value, last_close, epochs[key.name])
        call = NO_CALL if kind == "max_drawdown" else _direction(r.log_return)
        out.append(ModelForecast(**common, direction=call, close=r.close, simple_return=r.simple_return,
                                 log_return=r.log_return))
    tasks = {key.task for key in keys}
    if "regression" in tasks:
        out.append(ModelForecast(model="persistence", task="regression", family="naive", baseline=True,
                                 direction=NO_CALL, close=last_close, simple_return=0.0, log_return=0.0))
    if "classification" in tasks:
        out.append(ModelForecast(model="majority", task="classification", family="naive", baseline=True,
                                 direction=_direction(base_rate - 0.5), p_up=base_rate))
    return out


def _first_per_task(models: list[ModelForecast], base_rate: float, last_close: float,
                    config: RunConfig) -> dict[str, Any]:
    """``regression``/``classification`` of ``Forecast``: the first model of each task in the plan."""
    out: dict[str, Any] = {}
    for record in models:
        if record.family == "naive" or record.task in out:
            continue
        if record.task == "classification":
            out["classification"] = ClassificationForecast(model=record.model, p_up=record.p_up, base_rate=base_rate,
                                                           epochs=record.epochs)
        else:
            out["regression"] = RegressionForecast(model=record.model, target=config.target.regression,
                                                   close=record.close, simple_return=record.simple_return,
                                                   log_return=record.log_return, persistence_close=last_close,
                                                   persistence_return=0.0, epochs=record.epochs)
    return out


def _regression_record(model: str, kind: str, y_pred: float, last_close: float, epochs: int) -> RegressionForecast:
    """Price and return of a regression output ``y_pred`` (a log return or a price, by ``kind``)."""
    log_ret = float(predicted_log_return(pd.Series([y_pred]), pd.Series([last_close]), kind).iloc[0])
    close = y_pred if kind == "price" else last_close * math.exp(log_ret)
    return RegressionForecast(model=model, target=kind, close=float(close), simple_return=float(np.expm1(log_ret)),
                              log_return=log_ret, persistence_close=last_close, persistence_return=0.0,
                              epochs=epochs)


def _direction(value: float) -> str:
    return UP if value > 0 else DOWN if value < 0 else NO_CALL


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = ["Forecast", "ModelForecast", "Action", "RegressionForecast", "ClassificationForecast", "forecast_next",
           "decision_positions", "strategy_actions", "agreement", "final_fold", "BENCHMARK"]
