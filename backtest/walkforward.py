"""The fold loop: per-fold scaling, a fresh estimator per fold, out-of-sample predictions only."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.base import clone

from lstmbt.backtest.checkpoint import FoldStore
from lstmbt.backtest.errors import DataError, needs_new_config
from lstmbt.backtest.fitdates import next_weights_end, with_weights_end
from lstmbt.backtest.retraining import weights_changed
from lstmbt.backtest.splits import Fold
from lstmbt.models.targets import price_to_relative, relative_to_price
from lstmbt.models.windows import sliding_windows


@dataclass(frozen=True)
class SampleGrid:
    """Which rows of the feature frame are samples: a full valid window ending there and a label.

    Samples are the contiguous rows ``first_row .. first_row + n - 1``; sample position i is
    row ``first_row + i``, and its window spans rows ``first_row + i - lookback + 1 .. first_row + i``.
    """

    first_row: int
    n: int
    lookback: int
    dates: pd.DatetimeIndex

    def rows(self, positions: np.ndarray) -> np.ndarray:
        return self.first_row + np.asarray(positions)


def make_sample_grid(features: pd.DataFrame, target: pd.Series, lookback: int) -> SampleGrid:
    """Find the sample rows: after every feature has warmed up for ``lookback`` rows, while labelled."""
    empty = [c for c in features.columns if features[c].isna().all()]
    if empty:
        raise DataError(f"feature(s) {', '.join(empty)} are undefined for this data (e.g. constant volume); "
                        "drop their group from features.groups")
    valid = features.notna().all(axis=1).to_numpy()
    first_valid = int(np.argmax(valid))
    if not valid[first_valid:].all():
        raise ValueError("features have gaps after their warm-up; make_features forward-fills them")
    labelled = np.flatnonzero(target.notna().to_numpy())
    first_row = first_valid + lookback - 1
    last_row = int(labelled[-1]) if len(labelled) else -1
    n = max(0, last_row - first_row + 1)
    if n and not target.iloc[first_row : last_row + 1].notna().all():
        raise ValueError("target has gaps inside the sample range")
    return SampleGrid(first_row=first_row, n=n, lookback=lookback, dates=features.index[first_row : first_row + n])


def walk_forward_predict(
    estimator,
    features: pd.DataFrame,
    target: pd.Series,
    grid: SampleGrid,
    folds: list[Fold],
    on_fold: Callable[[dict], None] | None = None,
    train_weight: pd.Series | None = None,
    checkpoint_dir: str | Path | None = None,
    target_anchor: pd.Series | None = None,
    frozen: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit a clone of ``estimator`` per fold and predict that fold's test block.

    A fold's ``train``, ``val`` and ``test`` positions are sorted, unique sample positions: one
    contiguous range each in a walk-forward fold (their windows are then views), or several
    runs with gaps between them, as in combinatorial purged CV (their windows are gathered).
    The test block is predicted one contiguous run at a time, as a walk-forward block is, so a
    sequence-mode prediction never reads across a gap; the rows come back in position order.

    An estimator with ``warm_start=True`` is cloned once and refitted fold after fold, so each
    fold starts from the weights of the previous one (trained on data before its own test block).
    Its folds must therefore run forward in time (each fold's training positions before its test
    positions, test blocks in increasing order); other folds are a ValueError, so fit e.g.
    combinatorial purged CV folds with ``warm_start=False``.

    Features are standardised per fold with the mean and standard deviation of the training
    window's rows (fit and validation samples), so nothing after the retrain date shapes them.

    An estimator whose ``refits`` is true (``train.refit``) is, after ``fit`` has picked its
    epochs on the validation tail, trained again by ``refit_full`` on every usable sample of the
    window (``refit_positions``): ``fold.usable`` when the split sets it, else the fit samples,
    the purge gap after them and the validation tail, whose last label is realised before the
    test block as the split's purge requires. The feature scaling stays the one above (fit and
    validation rows). A fold without a validation tail is not refitted.

    ``train_weight``: optional per-row training weights on ``target``'s index (e.g.
    ``models.targets.dead_zone_weights``). Each fold's training samples pass theirs to
    ``fit(..., sample_weight=...)``; validation and test samples are never weighted. ``None``
    fits unweighted, exactly as before.

    ``checkpoint_dir``: optional folder (``backtest.checkpoint.FoldStore``) that receives each
    finished fold; folds already saved there are read back instead of refitted, and a warm-start
    chain continues from the saved estimator state (``get_checkpoint``/``set_checkpoint``), so
    the result is bit-identical to an uninterrupted run. ``on_fold`` is called for every fold,
    read back or fitted, in fold order.

    ``target_anchor``: optional per-row positive scale on ``target``'s index, known at the
    decision day (the close of day t for a price target, ``target.price_scale = "relative"``).
    The estimator then fits, validates and refits on log(target / anchor)
    (``models.targets.price_to_relative``) and each prediction p is returned as anchor * exp(p);
    ``y_true`` stays in the target's units. ``None`` fits the target as it is.

    ``frozen``: fit once, on the first fold (its feature scaling included), and predict every
    later test block with that model, never retrained: the frozen twin (``train.frozen_twin``).
    Its later folds log 0 epochs and ``weights_changed`` false; no checkpoint is kept.

    Returns
    -------
    predictions : one row per test day: ``date``, ``fold``, ``y_true``, ``y_pred`` and ``p_up``
        (the class-1 probability for classifiers, NaN for regressors).
    fold_log : one row per fold with its date ranges (``fit_start``/``fit_end``: the samples fitted
        before validation; ``train_start``/``train_end`` are the same dates under their old names;
        ``weights_end``: the last sample the predicting weights were fitted on, ``backtest.fitdates``),
        sizes, epochs, best validation loss, ``refit`` and ``refit_epochs``, fit time, and
        ``weights_changed``: whether the fold's retrain changed the weights (a cold fit, or a warm
        fit that kept an epoch over the carried weights).
    """
    values = features.to_numpy(dtype=np.float64)
    y_true = target.to_numpy(dtype=np.float64)
    anchor = _anchor_values(target_anchor, target)
    y = y_true if anchor is None else price_to_relative(y_true, anchor)  # what the estimator fits
    weights = _weight_values(train_weight, target)
    warm = bool(getattr(estimator, "warm_start", False))
    _check_folds(folds, grid, warm, type(estimator).__name__)
    store, parts, log, model = _open_store(None if frozen else checkpoint_dir, estimator, warm), [], [], None
    carried = pd.NaT  # where the data behind the selection weights a warm fold carries on end
    if store is not None:
        parts, log = store.read_done([_fold_span(fold, grid) for fold in folds])
        if warm and log and len(log) < len(folds):
            model = store.restore(clone(estimator), folds[len(log) - 1].index)
        for entry in log:
            carried, entry["weights_end"] = next_weights_end(entry, carried)
        for entry in log if on_fold is not None else ():
            on_fold(entry)
    for fold in folds[len(log):]:
        if frozen and model is not None:  # the first fold's model and scaling, never retrained
            log.append(_frozen_entry(fold, grid))
            parts.append(_fold_predictions(model, windows, y_true, grid, fold, anchor))
            if on_fold is not None:
                on_fold(log[-1])
            continue
        # A warm-starting estimator carries its weights from fold to fold; others start fresh.
        if not (warm and model is not None):
            model = clone(estimator)
        started = time.perf_counter()
        windows = sliding_windows(_standardize(values, grid.rows(np.concatenate([fold.train, fold.val]))),
                                  grid.lookback)
        model.fit(*_take(windows, y, grid, fold.train),
                  *(_take(windows, y, grid, fold.val) if len(fold.val) else ()),
                  **_fold_weight(weights, grid, fold))
        refit = _refit(model, windows, y, grid, fold, weights)
        part = _fold_predictions(model, windows, y_true, grid, fold, anchor)
        entry = _fold_entry(fold, grid, model, time.perf_counter() - started, refit)
        carried, entry["weights_end"] = next_weights_end(entry, carried)
        if store is not None:
            store.save(fold.index, part, entry, model.get_checkpoint() if warm else None)
        parts.append(part)
        log.append(entry)
        if on_fold is not None:
            on_fold(entry)
    return pd.concat(parts, ignore_index=True), with_weights_end(pd.DataFrame(log))


def _open_store(checkpoint_dir: str | Path | None, estimator, warm: bool):
    if checkpoint_dir is None:
        return None
    if warm and not hasattr(estimator, "get_checkpoint"):
        raise TypeError(f"{type(estimator).__name__} warm-starts but has no get_checkpoint/set_checkpoint, "
                        "so its folds cannot be checkpointed; pass checkpoint_dir=None")

    return FoldStore(checkpoint_dir, warm)


def _check_folds(folds: list[Fold], grid: SampleGrid, warm: bool, name: str) -> None:
    """Refuse positions that are unsorted, repeated or off the grid, and a warm start (``name``
    the estimator's class) over folds that do not run forward in time."""
    for fold in folds:
        if not (len(fold.train) and len(fold.test)):
            raise ValueError(f"fold {fold.index} has no training or no test positions")
        for part in ("train", "val", "test", "usable"):
            positions = getattr(fold, part)
            if positions is not None and len(positions) and not (
                    (np.diff(positions) > 0).all() and positions[0] >= 0 and positions[-1] < grid.n):
                raise ValueError(f"fold {fold.index}: {part} positions must be sorted, unique and within "
                                 f"0..{grid.n - 1} (the sample grid)")
    if warm:
        _check_forward(folds, name)


def _check_forward(folds: list[Fold], name: str) -> None:
    """Refuse folds a warm start cannot chain: training after the test block, or test blocks out of order."""
    for before, fold in zip([None, *folds], folds):
        trained = max(int(p[-1]) for p in (fold.train, fold.val, fold.usable) if p is not None and len(p))
        if trained >= fold.test[0] or (before is not None and fold.test[0] <= before.test[-1]):
            raise ValueError(f"{name} warm-starts (warm_start=True), so every fold continues the weights of the "
                             "one before and the folds must run forward in time: each fold's training positions "
                             f"before its test positions, test blocks in increasing order. Fold {fold.index} does "
                             "not; fit these folds with warm_start=False (as combinatorial purged CV does)")


def position_runs(positions: np.ndarray) -> list[np.ndarray]:
    """Sorted, unique ``positions`` split into their runs of consecutive positions, in order
    (one run for a walk-forward block; none for no positions)."""
    positions = np.asarray(positions)
    if not len(positions):
        return []
    return np.split(positions, np.flatnonzero(np.diff(positions) != 1) + 1)


def _take(windows: np.ndarray, y: np.ndarray, grid: SampleGrid, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The windows (N, L, F) and labels (N,) of sorted, unique sample ``positions``: views of
    ``windows`` and ``y`` for one contiguous range, gathered copies for several runs."""
    positions = np.asarray(positions)
    if len(positions) > 1 and not (np.diff(positions) == 1).all():
        rows = grid.rows(positions)  # window i ends on row i + L - 1
        return windows[rows - grid.lookback + 1], y[rows]
    first = grid.first_row + int(positions[0])
    rows = slice(first, first + len(positions))
    starts = slice(first - grid.lookback + 1, first - grid.lookback + 1 + len(positions))
    return windows[starts], y[rows]


def refit_positions(fold: Fold) -> np.ndarray:
    """The sample positions a refit (``refit_full``) trains on: ``fold.usable`` when set, else the
    whole window ``arange(train[0], val[-1] + 1)``: the fit samples, the purge gap after them and
    the validation tail (a fold without validation is not refitted). Positions that would
    include a test position are a ValueError, not a silent leak."""
    usable = np.arange(fold.train[0], fold.val[-1] + 1) if fold.usable is None else np.asarray(fold.usable)
    if np.isin(fold.test, usable).any():
        if fold.usable is not None:
            raise ValueError(f"fold {fold.index}: its usable positions include test positions, so a refit would "
                             "train on them")
        raise ValueError(f"fold {fold.index}: its default refit window (first fit to last validation position) "
                         "includes test positions, so a refit would train on them; set Fold.usable, as a split "
                         "with gaps must")
    return usable


def _refit(model, windows: np.ndarray, y: np.ndarray, grid: SampleGrid, fold: Fold,
           weights: np.ndarray | None) -> bool:
    """Refit ``model`` on the fold's whole usable window when it asks to and the fold has a
    validation tail; returns whether it did."""
    if not (len(fold.val) and getattr(model, "refits", False)):
        return False
    usable = refit_positions(fold)
    extra = {} if weights is None else {"sample_weight": weights[grid.rows(usable)]}
    model.refit_full(*_take(windows, y, grid, usable), **extra)
    return True


def _anchor_values(target_anchor: pd.Series | None, target: pd.Series) -> np.ndarray | None:
    if target_anchor is None:
        return None
    if not target_anchor.index.equals(target.index):
        raise ValueError("target_anchor must be indexed like the target; reindex it with .reindex(target.index)")
    anchor = target_anchor.to_numpy(dtype=np.float64)
    if not (anchor > 0).all():  # NaN fails too
        raise ValueError("target_anchor must be positive and finite on every row (a close price)")
    return anchor


def _weight_values(train_weight: pd.Series | None, target: pd.Series) -> np.ndarray | None:
    if train_weight is None:
        return None
    if not train_weight.index.equals(target.index):
        raise ValueError("train_weight must be indexed like the target; reindex it with .reindex(target.index)")
    return train_weight.to_numpy(dtype=np.float64)


def _fold_weight(weights: np.ndarray | None, grid: SampleGrid, fold: Fold) -> dict:
    """``{"sample_weight": ...}`` for the fold's training samples, or ``{}`` when unweighted."""
    if weights is None:
        return {}
    fit_weight = weights[grid.rows(fold.train)]
    if np.isfinite(fit_weight).all() and not (fit_weight > 0).any():  # NaN/inf: fit's own check names it
        raise needs_new_config(DataError(f"every training sample of fold {fold.index} has weight 0 (all inside the "
                                         "dead zone?); lower target.dead_zone"))
    return {"sample_weight": fit_weight}


def scaled_windows(features: pd.DataFrame, rows: np.ndarray, lookback: int) -> np.ndarray:
    """Every ``lookback``-row window of ``features``, standardised with statistics of ``rows`` only.

    The scaling ``walk_forward_predict`` applies per fold: each column's mean and standard
    deviation over the training ``rows`` (row numbers of ``features``, e.g. ``grid.rows(...)``).
    Returns a read-only float32 view of shape (T - L + 1, L, F); window i ends on row i + L - 1.
    """
    return sliding_windows(_standardize(features.to_numpy(dtype=np.float64), rows), lookback)


def scaled_matrix(features: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """The (T, F) float32 matrix behind ``scaled_windows``: each column standardised with the mean
    and standard deviation of ``rows`` only (a new array, safe to modify)."""
    return _standardize(features.to_numpy(dtype=np.float64), rows)


def _standardize(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    train = values[rows]
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0  # a constant column carries no information; leave it centred at 0
    return ((values - mean) / std).astype(np.float32)


def _fold_predictions(model, windows: np.ndarray, y_true: np.ndarray, grid: SampleGrid, fold: Fold,
                      anchor: np.ndarray | None = None) -> pd.DataFrame:
    """One fold's prediction rows, in position order. Each contiguous run of test positions is
    predicted on its own (a sequence-mode chunk never crosses a gap); a regressor fitted relative
    to ``anchor`` (per feature row) is mapped back to the target's units."""
    runs = [_take(windows, y_true, grid, run) for run in position_runs(fold.test)]
    if hasattr(model, "predict_proba"):
        p_up = np.concatenate([model.predict_proba(x)[:, list(model.classes_).index(1)] for x, _ in runs])
        y_pred = (p_up > 0.5).astype(np.float64)
    else:
        y_pred = np.concatenate([np.asarray(model.predict(x), dtype=np.float64) for x, _ in runs])
        y_pred = y_pred if anchor is None else relative_to_price(y_pred, anchor[grid.rows(fold.test)])
        p_up = np.full(len(y_pred), np.nan)
    return pd.DataFrame({"date": grid.dates[fold.test], "fold": fold.index,
                         "y_true": np.concatenate([y for _, y in runs]), "y_pred": y_pred, "p_up": p_up})


def _fold_span(fold: Fold, grid: SampleGrid) -> dict:
    """The fold-log fields the split fixes: dates and sizes of the fold's blocks."""
    dates = grid.dates
    return {
        "fold": fold.index,
        "fit_start": dates[fold.train[0]], "fit_end": dates[fold.train[-1]],
        "train_start": dates[fold.train[0]], "train_end": dates[fold.train[-1]],  # = fit_*, for older readers
        "val_start": dates[fold.val[0]] if len(fold.val) else pd.NaT,
        "val_end": dates[fold.val[-1]] if len(fold.val) else pd.NaT,
        "test_start": dates[fold.test[0]], "test_end": dates[fold.test[-1]],
        "n_train": len(fold.train), "n_val": len(fold.val), "n_test": len(fold.test),
    }


def _fold_entry(fold: Fold, grid: SampleGrid, model, seconds: float, refit: bool) -> dict:
    """One fold-log row. ``best_epoch`` counts from 1 (0: a warm fit kept the carried weights);
    ``refit_epochs``: epochs trained on the whole window (0 without a refit or for the linear
    baselines); ``train_steps`` includes the refit's."""
    log, refit_log = getattr(model, "log_", None), getattr(model, "refit_log_", None)
    return {
        **_fold_span(fold, grid),
        "warm": bool(getattr(model, "warm_started_", False)),
        "epochs": int(getattr(model, "n_epochs_", 0)),
        "best_epoch": int(getattr(model, "best_epoch_", 0)) + 1,
        "best_val_loss": float(getattr(model, "best_loss_", np.nan)),
        "refit": refit,
        "refit_epochs": int(getattr(model, "refit_epochs_", 0)) if refit else 0,
        "weights_changed": weights_changed(model),
        "fit_seconds": round(seconds, 3),
        "train_steps": int(getattr(log, "train_steps", 0)) + int(getattr(refit_log, "train_steps", 0) if refit else 0),
        "eval_steps": int(getattr(log, "eval_steps", 0)),
    }


def _frozen_entry(fold: Fold, grid: SampleGrid) -> dict:
    """The fold-log row of a frozen model's later fold: nothing trained, the weights unchanged."""
    return {**_fold_span(fold, grid), "warm": False, "epochs": 0, "best_epoch": 0, "best_val_loss": np.nan,
            "refit": False, "refit_epochs": 0, "weights_changed": False, "fit_seconds": 0.0, "train_steps": 0,
            "eval_steps": 0}


#: fold-log columns that count work done; for a seed ensemble they are summed over its seeds
_WORK_COLUMNS = ("fit_seconds", "train_steps", "eval_steps")


def combine_seeds(runs: dict[int, tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One model's predictions and fold log from its walk-forwards with several seeds ``{seed: (predictions, log)}``.

    ``y_pred``/``p_up`` become the mean over the seeds: the mean ``p_up`` for a classifier (its
    ``y_pred`` is then ``p_up > 0.5``, as for one seed), the mean predicted value for a regressor.
    Each seed's own values are kept as ``y_pred_seed<S>`` and ``p_up_seed<S>`` columns. The fold log
    keeps the first seed's rows, with the work columns (``fit_seconds``, ``train_steps``,
    ``eval_steps``) summed over the seeds and ``seeds`` counting them. One seed is returned as it is.
    """
    (first, log), *others = runs.values()
    if not others:
        return first, log
    frames = [frame for frame, _ in runs.values()]
    for frame in frames[1:]:
        if not (frame["date"].equals(first["date"]) and frame["fold"].equals(first["fold"])):
            raise ValueError("the seeds' walk-forwards predict different days; they must share the folds")
    out = first.copy()
    for seed, frame in zip(runs, frames):
        out[f"y_pred_seed{seed}"] = frame["y_pred"].to_numpy()
        out[f"p_up_seed{seed}"] = frame["p_up"].to_numpy()
    if first["p_up"].notna().any():
        out["p_up"] = np.mean([frame["p_up"].to_numpy() for frame in frames], axis=0)
        out["y_pred"] = (out["p_up"] > 0.5).astype(np.float64)
    else:
        out["y_pred"] = np.mean([frame["y_pred"].to_numpy() for frame in frames], axis=0)
    log = log.copy()
    for column in _WORK_COLUMNS:
        if column in log:
            log[column] = sum(other[column].to_numpy() for _, other in runs.values())
    log["seeds"] = len(runs)
    return out, log


class FoldProgress:
    """One stage's progress over the folds of its chains (a model's walk-forwards, the CPCV fits),
    fed from the threads that run them: ``report(name, done, total)`` after each fold, then
    ``governor.checkpoint()`` (``models.threads.ThreadGovernor``) so a busy machine is rechecked
    between folds and a failed chain stops the others."""

    def __init__(self, report: Callable[[str, int, int], None], name: str, total: int, governor: Any = None) -> None:
        self.report, self.name, self.total, self.governor = report, name, total, governor
        self.done = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self.report(self.name, 0, self.total)

    def fold_done(self, entry: Any = None) -> None:
        with self._lock:
            self.done += 1
            self.report(self.name, self.done, self.total)
        if self.governor is not None:
            self.governor.checkpoint()
