"""The pooled model of a universe (``model.pooled = true``): one model per model name and fold,
trained on the training samples of every ticker together.

Folds are cut on calendar dates common to the universe: the union of all tickers' sample dates
is split by ``WalkForwardSplit`` with the run's split settings, and each fold becomes a set of
dates (``FoldDates``): the training window's start, the validation tail's start, and the test
block. Each ticker then contributes its own samples by date (``select_samples``), purged on its
*own* trading days: a sample at row t is usable before a block starting on date s only if the
ticker's bar t + h + embargo is dated before s. A union-calendar purge alone would leak for a
ticker with missing days, whose bar t + h can lie after s although the union's day t + h does not.

Per fold and ticker, features are standardised with that ticker's own training rows (fit and
validation, as ``walkforward.scaled_windows`` does for one series); the windows of all tickers
are concatenated to fit, and each ticker's test windows are predicted separately. Choices:

- Training mode: pooled windows are not one series, which ``train.mode = "sequence"`` needs, so
  pooled fits always run in ``window`` mode (``pooled_config``); the fold log says so in its
  ``train_mode`` column. Warm start across folds works as configured.
- Targets: ``return``, ``week_mean`` and ``max_drawdown`` are log ratios, scale-free, and pooled
  as they are. ``price`` is not (a 10-dollar and a 5000-dollar stock in one regression), so the
  pooled regressor fits the scale-free ``log(price[t+h] / close[t])`` and reports
  ``close[t] * exp(prediction)``: predictions stay in each ticker's own price units. This is
  what ``target.price_scale = "relative"`` (the default) does for one ticker; a pooled model
  fits relative prices whatever ``price_scale`` says.
- No ticker embedding: the model sees only the features, so what it learns is shared by all.
- Predictions are kept on the days each ticker's own design scores (from its own
  ``min_train``-th sample on), so ``pipeline.score_run`` scores them unchanged and a pooled run
  compares with per-ticker runs day for day.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from lstmbt.backtest.config import RunConfig, SplitConfig
from lstmbt.backtest.design import plugin_faults
from lstmbt.backtest.errors import DataError
from lstmbt.backtest.fitdates import next_weights_end
from lstmbt.backtest.pipeline import Design, Progress, estimator_for, training_weights
from lstmbt.backtest.retraining import weights_changed
from lstmbt.backtest.scoring import horizon_plan
from lstmbt.backtest.splits import Fold
from lstmbt.backtest.walkforward import scaled_windows
from lstmbt.models.key import FOLD_KEY_COLUMNS, ModelKey, insert_key_columns
from lstmbt.models.targets import price_to_relative, relative_to_price

#: the training mode of every pooled fit (see the module docstring)
POOLED_TRAIN_MODE = "window"


@dataclass(frozen=True)
class FoldDates:
    """One pooled retrain as dates of the universe's calendar.

    ``window_start``: first date a training sample may have (later than the first sample only in
    the ``rolling`` scheme). ``val_start``: first date of the validation tail, None without
    validation. ``test_start``/``test_end``: the test block, inclusive; retraining happens after
    the close of the last trading day before ``test_start``.
    """

    index: int
    window_start: pd.Timestamp
    val_start: pd.Timestamp | None
    test_start: pd.Timestamp
    test_end: pd.Timestamp


@dataclass(frozen=True)
class _Part:
    """One ticker in one fold: its sample positions, the ones it predicts, and its scaled windows."""

    fold: Fold
    predict: np.ndarray
    windows: np.ndarray | None  # (T - L + 1, L, F); None when the ticker takes no part in the fold


def union_calendar(designs: Mapping[str, Design]) -> pd.DatetimeIndex:
    """Every date on which some ticker has a sample, sorted: the calendar pooled folds are cut on."""
    calendar = pd.DatetimeIndex([])
    for design in designs.values():
        calendar = calendar.union(design.grid.dates)
    return calendar


def pooled_folds(calendar: pd.DatetimeIndex, split: SplitConfig, horizon: int) -> list[FoldDates]:
    """The walk-forward folds of ``split`` on ``calendar`` (counted in its days), as dates.

    ``horizon``: label horizon h in bars; with the embargo it sets the purge between the fit
    samples and the validation tail on the calendar, before ``select_samples`` purges each ticker
    on its own days.
    """
    folds = split.splitter(horizon).split(len(calendar))
    return [FoldDates(index=f.index, window_start=calendar[f.train[0]],
                      val_start=calendar[f.val[0]] if len(f.val) else None,
                      test_start=calendar[f.test[0]], test_end=calendar[f.test[-1]]) for f in folds]


def label_known_dates(bar_dates: pd.DatetimeIndex, sample_rows: np.ndarray, gap: int) -> np.ndarray:
    """Per sample, the date of the ticker's own bar ``row + gap`` (gap = horizon + embargo).

    After that bar's close the sample's label is realised and its embargo has passed. ``NaT``
    where that bar lies beyond the data (never usable). Returns datetime64[ns] of shape (N,).
    """
    rows = np.asarray(sample_rows, dtype=np.int64) + gap
    bars = bar_dates.to_numpy(dtype="datetime64[ns]")
    known = np.full(len(rows), np.datetime64("NaT"), dtype="datetime64[ns]")
    inside = rows < len(bars)
    known[inside] = bars[rows[inside]]
    return known


def select_samples(sample_dates: np.ndarray, known: np.ndarray, block: FoldDates) -> Fold:
    """One ticker's sample positions to fit on, validate on and test in ``block`` (a pure function).

    ``sample_dates``: the ticker's sample dates (its grid), ascending. ``known``: per sample, the
    date its label is realised plus embargo (``label_known_dates``). Fit: dated on or after
    ``window_start`` and known before ``val_start`` (before ``test_start`` without validation).
    Validation: dated on or after ``val_start`` and known before ``test_start``. Test: dated
    within ``test_start .. test_end``. A NaT in ``known`` is never usable (NaT compares False).
    """
    dates = np.asarray(sample_dates, dtype="datetime64[ns]")
    known = np.asarray(known, dtype="datetime64[ns]")
    start, end = block.test_start.to_datetime64(), block.test_end.to_datetime64()
    fit_until = start if block.val_start is None else block.val_start.to_datetime64()
    fit = (dates >= block.window_start.to_datetime64()) & (known < fit_until)
    val = (dates >= fit_until) & (known < start) if block.val_start is not None else np.zeros(len(dates), bool)
    test = (dates >= start) & (dates <= end)
    return Fold(index=block.index, train=np.flatnonzero(fit), val=np.flatnonzero(val), test=np.flatnonzero(test))


def pooled_config(config: RunConfig) -> RunConfig:
    """``config`` as the pooled fits run it: ``train.mode = "window"`` (see the module docstring)."""
    return config.with_values({"train.mode": POOLED_TRAIN_MODE})


@plugin_faults()  # a plug-in model's fault is one ConfigError line
def pooled_predict(designs: Mapping[str, Design], config: RunConfig,
                   progress: Progress | None = None) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Out-of-sample predictions of every model of ``horizon_plan(config)``, each fitted per fold on
    the pooled samples of all tickers, and split back per ticker.

    ``designs``: ``{ticker: pipeline.make_design(prices_of_ticker, config)}``, all made with
    ``config``. ``progress(model, done_folds, n_folds)`` is called as fits finish.

    Returns
    -------
    ``{ticker: (predictions, fold_log)}``: per ticker, frames with the columns and dtypes of
    ``pipeline._predict_all`` (predictions: date, the model key's ``models.key.KEY_COLUMNS``, fold,
    y_true, y_pred, p_up, close, on the days ``pipeline.score_run`` scores for that ticker). The
    fold log has one row per model and fold in which the ticker has test days: the model key's
    ``FOLD_KEY_COLUMNS``, the pooled fit's training dates,
    sizes, epochs and losses, the ticker's own test days, then ``train_mode``, ``n_tickers``
    (tickers with fit samples) and ``n_train_ticker``/``n_val_ticker`` (this ticker's share).
    """
    report = progress or (lambda stage, done, total: None)
    _check_designs(designs)
    effective = pooled_config(config)
    calendar = union_calendar(designs)
    frames: dict[tuple[str, str], list[pd.DataFrame]] = {(t, key.name): [] for t in designs
                                                          for key in horizon_plan(config)}
    logs: dict[tuple[str, str], list[dict[str, Any]]] = {pair: [] for pair in frames}
    for h in config.target.all_horizons:
        models = [key for key in horizon_plan(config) if key.horizon == h]
        _walk_horizon(designs, effective, h, models, calendar, frames, logs, report)
    return {t: _assemble(t, config, frames, logs) for t in designs}


def _walk_horizon(designs: Mapping[str, Design], config: RunConfig, h: int, models: list[ModelKey],
                  calendar: pd.DatetimeIndex, frames: dict, logs: dict, report: Progress) -> None:
    """Every fold of horizon ``h``: build each ticker's part once, then fit and predict each model."""
    blocks = pooled_folds(calendar, config.split, h)
    gap = h + config.split.embargo
    known = {t: label_known_dates(d.prices.index, d.grid.rows(np.arange(d.grid.n)), gap) for t, d in designs.items()}
    first_scored = {t: d.grid.dates[d.folds[0].test[0]] for t, d in designs.items()}
    estimators = {key.name: estimator_for(key, config) for key in models}
    fitted: dict[str, Any] = {}
    carried = {key.name: pd.NaT for key in models}  # where each chain's selection weights end (backtest.fitdates)
    for key in models:
        report(key.name, 0, len(blocks))
    for k, block in enumerate(blocks):
        parts = {t: _ticker_part(t, d, known[t], block, first_scored[t]) for t, d in designs.items()}
        pools = (_gather(designs, parts, "train"), _gather(designs, parts, "val"))
        for key in models:
            name, task = key.name, key.task
            model = fitted.get(name) if getattr(estimators[name], "warm_start", False) else None
            model, fit_log = _fit_fold(model or _clone(estimators[name]), designs, pools, task, h, config, block)
            carried[name], fit_log["weights_end"] = next_weights_end(fit_log, carried[name])
            fitted[name] = model
            for t, design in designs.items():
                if len(parts[t].predict):
                    frames[(t, name)].append(_predict_part(model, design, parts[t], task, h, config))
                    logs[(t, name)].append(_log_entry(fit_log, parts[t], design))
            report(name, k + 1, len(blocks))


def _ticker_part(ticker: str, design: Design, known: np.ndarray, block: FoldDates,
                 first_scored: pd.Timestamp) -> _Part:
    """The ticker's samples in ``block`` and its windows, scaled with its own training rows."""
    grid = design.grid
    fold = select_samples(grid.dates, known, block)
    predict = fold.test[grid.dates[fold.test] >= first_scored]
    seen = np.concatenate([fold.train, fold.val])
    if len(seen) < 2:
        # A ticker with (almost) no labelled history yet: scale with its feature rows dated before
        # the block, all known at the retrain (features need no label).
        seen = np.flatnonzero(grid.dates < block.test_start)
    if len(seen) < 2:
        if len(predict):
            raise DataError(f"{ticker} has fewer than 2 samples before pooled fold {block.index} "
                            f"({block.test_start.date()}) yet must be predicted there; raise split.min_train "
                            "to at least split.step + 2")
        return _Part(fold=fold, predict=predict, windows=None)

    return _Part(fold=fold, predict=predict, windows=scaled_windows(design.features, grid.rows(seen), grid.lookback))


def _windows(design: Design, part: _Part, positions: np.ndarray) -> np.ndarray:
    """The (n, L, F) windows of sample ``positions`` (window i ends on row i + L - 1)."""
    return part.windows[design.grid.rows(positions) - design.grid.lookback + 1]


def _fit_labels(design: Design, task: str, h: int, config: RunConfig, rows: np.ndarray) -> np.ndarray:
    """The labels the pooled model fits at feature ``rows``: the target, or log(price / close) for
    the ``price`` target, which is not comparable across tickers (see the module docstring)."""
    y = design.horizon_targets[h][task].to_numpy(dtype=np.float64)[rows]
    if task == "regression" and config.target.regression == "price":
        return price_to_relative(y, design.prices["Close"].to_numpy(dtype=np.float64)[rows])
    return y


@dataclass(frozen=True)
class _Pool:
    """One fold's pooled fit or validation samples: every ticker's windows, concatenated in ticker order."""

    windows: np.ndarray  # (N, L, F)
    rows: dict[str, np.ndarray]  # per ticker, the feature rows of its samples in the pool
    dates: np.ndarray  # (N,) sample dates


def _gather(designs: Mapping[str, Design], parts: dict[str, _Part], which: str) -> _Pool:
    """The pooled windows of every ticker's ``which`` (``train`` or ``val``) samples of one fold."""
    xs, rows, dates = [], {}, []
    for t, design in designs.items():
        positions = getattr(parts[t].fold, which)
        if len(positions) and parts[t].windows is not None:
            rows[t] = design.grid.rows(positions)
            xs.append(_windows(design, parts[t], positions))
            dates.append(design.grid.dates[positions].to_numpy())
    if not xs:
        return _Pool(windows=np.empty((0, 0, 0), np.float32), rows={}, dates=np.empty(0, "datetime64[ns]"))
    return _Pool(windows=np.concatenate(xs), rows=rows, dates=np.concatenate(dates))


def _pooled_labels(designs: Mapping[str, Design], pool: _Pool, task: str, h: int,
                   config: RunConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels of ``pool``'s samples and their dead-zone training weights (None without a dead zone)."""
    ys, ws = [], []
    for t, rows in pool.rows.items():
        ys.append(_fit_labels(designs[t], task, h, config, rows))
        weight = training_weights(designs[t], task, h, config)
        ws.append(None if weight is None else weight.to_numpy(dtype=np.float64)[rows])
    if not ys:
        return np.empty(0), None
    return np.concatenate(ys), None if ws[0] is None else np.concatenate(ws)


def _fit_fold(model: Any, designs: Mapping[str, Design], pools: tuple[_Pool, _Pool], task: str, h: int,
              config: RunConfig, block: FoldDates) -> tuple[Any, dict[str, Any]]:
    """Fit ``model`` on the fold's pooled (fit, validation) samples; returns it and its fold-log figures."""
    fit, val = pools
    y, weight = _pooled_labels(designs, fit, task, h, config)
    y_val, _ = _pooled_labels(designs, val, task, h, config)
    if not len(y):
        raise DataError(f"pooled fold {block.index} ({block.test_start.date()}) has no training samples in any "
                        "ticker; raise split.min_train or drop tickers that start late")
    if weight is not None and not (weight > 0).any():
        raise DataError(f"every training sample of pooled fold {block.index} has weight 0 (all inside the dead "
                        "zone?); lower target.dead_zone")
    started = time.perf_counter()
    model.fit(fit.windows, y, *((val.windows, y_val) if len(y_val) else ()),
              **({} if weight is None else {"sample_weight": weight}))
    train_log = getattr(model, "log_", None)
    return model, {
        "fold": block.index, "fit_start": pd.Timestamp(fit.dates.min()), "fit_end": pd.Timestamp(fit.dates.max()),
        "train_start": pd.Timestamp(fit.dates.min()), "train_end": pd.Timestamp(fit.dates.max()),
        "val_start": pd.Timestamp(val.dates.min()) if len(y_val) else pd.NaT,
        "val_end": pd.Timestamp(val.dates.max()) if len(y_val) else pd.NaT,
        "n_train": len(y), "n_val": len(y_val), "warm": bool(getattr(model, "warm_started_", False)),
        "epochs": int(getattr(model, "n_epochs_", 0)), "best_epoch": int(getattr(model, "best_epoch_", 0)) + 1,
        "best_val_loss": float(getattr(model, "best_loss_", np.nan)),
        "refit": False, "refit_epochs": 0,  # the pooled model is not refitted on fit + validation (train.refit)
        "weights_changed": weights_changed(model),
        "fit_seconds": round(time.perf_counter() - started, 3),
        "train_steps": int(getattr(train_log, "train_steps", 0)),
        "eval_steps": int(getattr(train_log, "eval_steps", 0)),
        "train_mode": POOLED_TRAIN_MODE, "n_tickers": len(fit.rows),
    }


def _predict_part(model: Any, design: Design, part: _Part, task: str, h: int, config: RunConfig) -> pd.DataFrame:
    """One ticker's predictions in one fold, in the target's own units (prices for ``price``)."""
    rows = design.grid.rows(part.predict)
    X = _windows(design, part, part.predict)
    close = design.prices["Close"].to_numpy(dtype=np.float64)[rows]
    # the same reading of the estimator as walkforward's fold predictions
    if hasattr(model, "predict_proba"):
        p_up = model.predict_proba(X)[:, list(model.classes_).index(1)]
        y_pred = (p_up > 0.5).astype(np.float64)
    else:
        y_pred = np.asarray(model.predict(X), dtype=np.float64)
        if config.target.regression == "price":
            y_pred = relative_to_price(y_pred, close)
        p_up = np.full(len(y_pred), np.nan)
    return pd.DataFrame({"date": design.grid.dates[part.predict], "fold": part.fold.index,
                         "y_true": design.horizon_targets[h][task].to_numpy(dtype=np.float64)[rows],
                         "y_pred": y_pred, "p_up": p_up, "close": close})


def _log_entry(fit_log: dict[str, Any], part: _Part, design: Design) -> dict[str, Any]:
    """The fold-log row of one ticker: the pooled fit's figures with the ticker's own test days."""
    dates = design.grid.dates[part.predict]
    return dict(fit_log, test_start=dates[0], test_end=dates[-1], n_test=len(dates),
                n_train_ticker=len(part.fold.train), n_val_ticker=len(part.fold.val))


_LOG_ORDER = ("fold", "fit_start", "fit_end", "weights_end", "train_start", "train_end", "val_start", "val_end", "test_start",
              "test_end", "n_train", "n_val", "n_test", "warm", "epochs", "best_epoch", "best_val_loss", "refit",
              "refit_epochs", "weights_changed", "fit_seconds", "train_steps",
              "eval_steps", "train_mode", "n_tickers", "n_train_ticker", "n_val_ticker")


def _assemble(ticker: str, config: RunConfig, frames: dict, logs: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One ticker's predictions and fold log, models in ``horizon_plan`` order as ``_predict_all`` has them."""
    preds, folds = [], []
    for key in horizon_plan(config):
        preds.append(insert_key_columns(pd.concat(frames[(ticker, key.name)], ignore_index=True), key, 1))
        log = pd.DataFrame(logs[(ticker, key.name)], columns=list(_LOG_ORDER))
        folds.append(insert_key_columns(log, key, 0, FOLD_KEY_COLUMNS))
    return pd.concat(preds, ignore_index=True), pd.concat(folds, ignore_index=True)


def _clone(estimator: Any) -> Any:
    from sklearn.base import clone

    return clone(estimator)


def _check_designs(designs: Mapping[str, Design]) -> None:
    """Every ticker's design must share the feature columns and the lookback of one config."""
    if not designs:
        raise ValueError("pooled_predict needs at least one ticker's design")
    first_name, first = next(iter(designs.items()))
    for name, design in designs.items():
        if list(design.features.columns) != list(first.features.columns) or design.grid.lookback != first.grid.lookback:
            raise ValueError(f"designs of {first_name} and {name} differ in features or lookback; make every "
                             "design with pipeline.make_design(prices, config) and the same config")
