"""``forecast_next(config)``: each model trained once on all the data, forecasting past the last bar.

The retrain is a walk-forward retrain whose test day is the next trading day, so the timing rule
holds unchanged: the samples fitted on are those whose label is realised by the last bar
(t + h <= last bar, minus any embargo); the early-stopping validation set is the chronological
tail of that window, purged the same way (it is ``WalkForwardSplit``'s own fold); the scaler is
fit on those training rows only; and the forecast reads the window that ends on the last bar,
whose own label is not known yet. Torch is imported only when a model is trained.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import DataError
from lstmbt.backtest.pipeline import (Progress, estimator_for, load_checked, make_design, target_anchor,
                                      training_weights)
from lstmbt.backtest.scoring import model_plan
from lstmbt.backtest.splits import Fold
from lstmbt.backtest.walkforward import SampleGrid, scaled_windows
from lstmbt.models.key import ModelKey
from lstmbt.models.targets import price_to_relative, relative_to_price
from lstmbt.models.threads import one_thread_per_fit, run_side_by_side
from lstmbt.strategies import predicted_log_return


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
class Forecast:
    """A forecast made after the close of ``last_date`` for the close ``horizon`` bars later.

    ``last_close``: the close of the last bar, in the data's currency. ``train_start`` and
    ``train_end``: dates of the first and last training sample (``train_end`` + ``horizon`` bars
    <= ``last_date``). ``n_train``: samples fitted on; ``n_val``: samples in the validation
    tail. A task the config does not ask for is ``None``.
    """

    source: str
    last_date: pd.Timestamp
    last_close: float
    horizon: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    n_train: int
    n_val: int
    regression: RegressionForecast | None = None
    classification: ClassificationForecast | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: dates as YYYY-MM-DD, non-finite numbers as None, absent tasks left out."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("last_date", "train_start", "train_end"):
            out[key] = out[key].date().isoformat()
        for task in ("regression", "classification"):
            record = out.pop(task)
            if record is not None:
                out[task] = {k: _finite(v) for k, v in asdict(record).items()}
        return out


def forecast_next(config: RunConfig, threads: int | None = None, progress: Progress | None = None) -> Forecast:
    """Train one model per task of ``config`` on all its data and forecast past the last bar.

    ``threads``: how many models may train side by side, each on one torch thread (None: torch's
    current count; ``backtest.pipeline.run``); torch's count is restored afterwards. ``progress``:
    called as progress(stage, done, total) with stage ``data`` and then each model's name.
    Raises ``DataError`` when the data are too short, with the same check as ``run``.
    """
    report = progress or (lambda stage, done, total: None)
    report("data", 0, 1)
    design = make_design(load_checked(config, folds=False, positions=False), config)  # no folds trained, no positions
    grid, h = design.grid, config.target.horizon
    last_row = len(design.features) - 1
    fold = final_fold(config, last_row - grid.first_row, grid.n)
    train = np.concatenate([fold.train, fold.val])
    windows = scaled_windows(design.features, grid.rows(train), grid.lookback)  # scaler: training rows only
    keys = forecasters(config)

    def forecast(task: str) -> tuple[float, int]:
        report(keys[task].name, 0, 1)
        record = _fit_and_forecast(estimator_for(keys[task], config), windows, design.targets[task], grid, fold,
                                   training_weights(design, task, h, config), target_anchor(design, task, config))
        report(keys[task].name, 1, 1)
        return record

    with one_thread_per_fit(threads) as governor:  # the caller's thread count is back when the forecast returns
        records = dict(zip(keys, run_side_by_side([lambda task=task: forecast(task) for task in keys], governor)))
    last_close = float(design.prices["Close"].iloc[-1])
    if "regression" in records:
        y_pred, epochs = records["regression"]
        records["regression"] = _regression_record(keys["regression"].name, config.target.regression, y_pred,
                                                   last_close, epochs)
    if "classification" in records:
        p_up, epochs = records["classification"]
        base = float(np.mean(design.targets["classification"].to_numpy()[grid.rows(train)]))
        records["classification"] = ClassificationForecast(model=keys["classification"].name, p_up=p_up,
                                                           base_rate=base, epochs=epochs)
    label = config.data.source + (f" ({config.data.symbol})" if config.data.symbol else "")
    return Forecast(source=label, last_date=design.prices.index[-1], last_close=last_close, horizon=h,
                    train_start=grid.dates[train[0]], train_end=grid.dates[train[-1]], n_train=len(fold.train),
                    n_val=len(fold.val), **records)


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


def _fit_and_forecast(model, windows: np.ndarray, target: pd.Series, grid: SampleGrid, fold: Fold,
                      weight: pd.Series | None = None, anchor: pd.Series | None = None) -> tuple[float, int]:
    """Fit the unfitted ``model`` on ``fold`` and forecast from the window ending on the last bar.

    ``windows``: every scaled window of the feature frame, (T - L + 1, L, F), the last ending on
    the last bar. ``weight``: training weights per row (the dead zone), or None. ``anchor``: the
    close per row when a price is fitted relative to it (``pipeline.target_anchor``), as
    ``walk_forward_predict`` fits it. Returns the regression output (a log return or a price, in
    the target's units) or the classifier's p_up, and the number of epochs trained.
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

    extra = {}
    if weight is not None:
        first = grid.first_row + int(fold.train[0])
        extra["sample_weight"] = weight.to_numpy(dtype=np.float64)[first : first + len(fold.train)]
    model.fit(*take(fold.train), *(take(fold.val) if len(fold.val) else ()), **extra)
    x_last = windows[-1:]  # shape (1, L, F): rows T - L .. T - 1, ending on the last bar
    if hasattr(model, "predict_proba"):
        value = model.predict_proba(x_last)[0, list(model.classes_).index(1)]
    else:
        value = model.predict(x_last)[0]
        if anchor is not None:  # back from log(price / last close) to a price
            value = relative_to_price(value, anchor_values[-1])
    return float(value), int(getattr(model, "n_epochs_", 0))


def _regression_record(model: str, kind: str, y_pred: float, last_close: float, epochs: int) -> RegressionForecast:
    """Price and return of a regression output ``y_pred`` (a log return or a price, by ``kind``)."""
    log_ret = float(predicted_log_return(pd.Series([y_pred]), pd.Series([last_close]), kind).iloc[0])
    close = y_pred if kind == "price" else last_close * math.exp(log_ret)
    return RegressionForecast(model=model, target=kind, close=float(close), simple_return=float(np.expm1(log_ret)),
                              log_return=log_ret, persistence_close=last_close, persistence_return=0.0,
                              epochs=epochs)


def forecasters(config: RunConfig) -> dict[str, ModelKey]:
    """``{task: key}``: the model that forecasts each task, the first of the run's plan for it
    (the first network family, else the linear baseline, LightGBM, then a plug-in)."""
    keys: dict[str, ModelKey] = {}
    for key in model_plan(config):
        keys.setdefault(key.task, key)
    return keys


def format_forecast(forecast: Forecast) -> str:
    """The forecast as the few lines ``lstmbt predict`` prints."""
    f, h = forecast, forecast.horizon
    day = f.last_date.date().isoformat()
    when = "next trading day" if h == 1 else f"close {h} trading days"
    lines = [f"last bar used: {day} (close {_price(f.last_close)}), {f.source}",
             f"{when} after {day} (horizon {h} day{'s' if h > 1 else ''}):"]
    epochs = []
    if f.regression is not None:
        r = f.regression
        what = f"worst close of the next {h} days" if r.target == "max_drawdown" else "close"
        lines.append(f"  regression: {what} {_price(r.close)} ({r.simple_return:+.2%})   "
                     f"persistence: {_price(r.persistence_close)} ({r.persistence_return:+.2%})")
        epochs.append(f"{_count(r.epochs, 'epoch')} {r.model}")
    if f.classification is not None:
        c, moves = f.classification, "days" if h == 1 else f"{h}-day moves"
        lines.append(f"  classification: p_up {c.p_up:.3f}           "
                     f"base rate (training share of up {moves}): {c.base_rate:.3f}")
        epochs.append(f"{_count(c.epochs, 'epoch')} {c.model}")
    lines.append(f"trained on {f.train_start.date()}..{f.train_end.date()} ({f.n_train + f.n_val} samples, "
                 f"{f.n_val} of them validation; {', '.join(epochs)}); models are not evidence of skill - "
                 "see the walk-forward report.")
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _price(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
