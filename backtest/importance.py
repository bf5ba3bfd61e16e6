"""Feature-group importance on the out-of-sample folds of a run: permutation and ablation.

Both methods use the folds, estimators and seed that ``lstmbt run`` uses for the same config,
and score each fold's test block: the **hit rate** (share of days whose predicted direction
was the realised one, as in ``metrics.json``) and the **loss** (mean squared error in target
units for regression models, log loss in nats for classifiers).

- **permutation**: every model is walked forward once. In each fold, after the model is fitted
  on the unaltered training windows, the feature matrix (already standardised with the
  training rows' statistics) has the rows of the test block's decision days shuffled, in the
  columns of one group only, with one permutation shared by those columns (so the group's
  columns stay together on each day); the other groups' columns and every row outside the test
  block are untouched. The test windows are then rebuilt from that matrix, so a window that
  reaches back before the block keeps its unshuffled training-period rows. Repeated
  ``n_repeats`` times per fold and group (the fold's score is their mean).
- **ablation**: every model is retrained fold by fold without one group's columns, with the
  same folds and seed. The sample grid and the folds are those of the full feature set (a
  group with a long warm-up delays the first sample, so the reduced set could otherwise start
  earlier and shift every fold); the other groups' columns are unchanged by dropping one group.

A third method, **shap** (``backtest.attribution``), explains the fitted models' test
predictions instead of scoring altered ones; it has its own frame (``attribution.SHAP_COLUMNS``).

Groups are ``features.groups``, plus ``exog`` (all exogenous columns together) when
``data.exog`` is set.

The unaltered models' out-of-sample predictions, which every method makes, can be collected
(``oos=``) and scored as ``lstmbt run`` scores them (``backtest.skill.importance_skill``), so the
importance of a model is read beside its skill.

Signs: ``d_hit_rate`` = altered - original (negative: the model relies on the group);
``d_loss`` = altered - original (positive: the model relies on the group).
"""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import clone

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.design import plugin_faults
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.metrics import hit_rate
from lstmbt.backtest.pipeline import (Design, Progress, estimator_for, load_checked, make_design, target_anchor,
                                      training_weights)
from lstmbt.backtest.scoring import model_plan
from lstmbt.backtest.walkforward import refit_positions, scaled_matrix, walk_forward_predict
from lstmbt.models.features import GROUPS, make_features
from lstmbt.models.targets import price_to_relative, relative_to_price
from lstmbt.models.threads import torch_threads
from lstmbt.models.windows import sliding_windows
from lstmbt.strategies import predicted_log_return

#: every ``--method``; ``both`` means the two that score altered models, ``all`` all three
METHODS = ("permutation", "ablation", "shap")
#: the methods whose rows are ``FRAME_COLUMNS`` (``shap``'s frame is ``backtest.attribution.SHAP_COLUMNS``)
SCORE_METHODS = ("permutation", "ablation")
METHOD_SETS = {"both": SCORE_METHODS, "all": METHODS}
#: the group of the exogenous columns (``data.exog``), which ``make_design`` joins after the feature groups
EXOG_GROUP = "exog"
#: one row per model, feature group, method and fold; ``hit_rate``/``loss`` are the unaltered model's
FRAME_COLUMNS = ("model", "group", "method", "fold", "d_hit_rate", "d_loss", "hit_rate", "loss")


class BlockTruth(NamedTuple):
    """What a test block's predictions are scored against, one entry per decision day."""

    y_true: np.ndarray  # the model's own target (regression value or 0/1 label)
    real_up: np.ndarray  # realised direction over the label horizon (bool)
    close: np.ndarray  # close on the decision day (for price targets)


def importance_frame(config: RunConfig, method: str = "both", n_repeats: int = 3, seed: int | None = None,
                     progress: Progress | None = None, *, threads: int | None = None,
                     design: Design | None = None, oos: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per-fold importance of every feature group by the score methods of ``method`` (``parse_method``).

    Loads the data once (unless ``design`` is given) and concatenates the methods' frames
    (``FRAME_COLUMNS``); ``shap`` is left to ``backtest.attribution.shap_frame``, so for
    ``method="shap"`` the frame is empty. The fits run one after another on one torch thread
    each, as in a run (``threads`` is accepted for the callers' symmetry with ``run`` and
    changes nothing); torch's count is restored afterwards. ``oos``: filled as
    ``permutation_importance`` fills it (by the first method that walks each model forward).
    """
    methods = parse_method(method)
    _check_repeats(n_repeats)
    if "ablation" in methods:
        _ablation_groups(feature_groups(config), None)  # refused before any model is trained
    if not set(methods) & set(SCORE_METHODS):
        return pd.DataFrame(columns=list(FRAME_COLUMNS))
    design = design if design is not None else load_design(config)
    parts = []
    with torch_threads(1):  # one torch thread per fit, as in a run; the caller's count is back afterwards
        if "permutation" in methods:
            parts.append(permutation_importance(config, n_repeats, seed, design=design, progress=progress, oos=oos))
        if "ablation" in methods:
            parts.append(ablation_importance(config, design=design, progress=progress, oos=oos))
    return pd.concat(parts, ignore_index=True)


def parse_method(method: str) -> tuple[str, ...]:
    """One of ``METHODS`` as a 1-tuple, ``SCORE_METHODS`` for ``"both"``, ``METHODS`` for ``"all"``;
    anything else is refused."""
    if method in METHOD_SETS:
        return METHOD_SETS[method]
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is not known; use permutation, ablation, shap, "
                          "both (permutation and ablation) or all")
    return (method,)


def load_design(config: RunConfig) -> Design:
    """Prices, features, targets, grid and folds exactly as ``backtest.pipeline.run`` builds them."""
    return make_design(load_checked(config, positions=False), config)  # folds trained, no positions


@plugin_faults()  # a plug-in model's fault is one ConfigError line
def permutation_importance(config: RunConfig, n_repeats: int = 3, seed: int | None = None, *,
                           design: Design | None = None, progress: Progress | None = None,
                           oos: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Change in hit rate and loss when one group's test-block rows are shuffled, per model and fold.

    Parameters
    ----------
    config : the run's config; every model of ``model_plan(config)`` is walked forward once.
    n_repeats : shuffles per fold and group; the fold's scores are their mean.
    seed : seeds the shuffles (default ``config.train.run_seed``); fold f and group g always get
        ``np.random.default_rng([seed, f, position of g in models.features.GROUPS, then exog])``.
    design : a ``load_design(config)`` to reuse (loaded when None).
    progress : ``progress(stage, done, total)`` after each fold.
    oos : a dict that receives, per model not in it yet, the unaltered models' out-of-sample
        predictions in ``walk_forward_predict``'s layout (date, fold, y_true, y_pred, p_up), the
        predictions ``lstmbt run`` makes for the same config (``backtest.skill.oos_metrics``).

    Returns
    -------
    One row per model, group and fold (``FRAME_COLUMNS``), ``method`` = ``"permutation"``.
    """
    _check_repeats(n_repeats)
    seed = config.train.run_seed if seed is None else seed
    if not (isinstance(seed, (int, np.integer)) and seed >= 0):
        raise ConfigError(f"seed {seed!r} must be a whole number >= 0")
    design = design if design is not None else load_design(config)
    columns = group_columns(design, config)
    report = progress or _quiet
    rows = []
    for key in model_plan(config):
        name, task, stage = key.name, key.task, f"permutation {key.name}"
        report(stage, 0, len(design.folds))
        estimator = estimator_for(key, config)
        weights, anchor = training_weights(design, task, key.horizon, config), target_anchor(design, task, config)
        blocks_seen = []
        for done, (fold, model, matrix) in enumerate(fitted_folds(estimator, design, task, weights, anchor), 1):
            truth = block_truth(design, task, fold.test)
            blocks_seen.append(block_predictions(model, matrix, design, fold, truth, config))
            base = _scores(model, matrix, design, fold.test, truth, config)
            for group, cols in columns.items():
                rng = np.random.default_rng([seed, fold.index, [*GROUPS, EXOG_GROUP].index(group)])
                blocks = (permute_block(matrix, design.grid.rows(fold.test), cols, rng) for _ in range(n_repeats))
                altered = np.mean([_scores(model, m, design, fold.test, truth, config) for m in blocks], axis=0)
                rows.append(_row(name, group, "permutation", fold.index, altered, base))
            report(stage, done, len(design.folds))
        if oos is not None:
            oos.setdefault(name, pd.concat(blocks_seen, ignore_index=True))
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


@plugin_faults()  # a plug-in model's fault is one ConfigError line
def ablation_importance(config: RunConfig, groups: list[str] | tuple[str, ...] | None = None, *,
                        design: Design | None = None, progress: Progress | None = None,
                        oos: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Change in hit rate and loss when every model is retrained without one group, per fold.

    Parameters
    ----------
    config : the run's config; needs at least two feature groups (``feature_groups(config)``).
    groups : the groups to drop one at a time (default all of ``feature_groups(config)``).
    design : a ``load_design(config)`` to reuse; its grid and folds (from the full feature set)
        serve every reduced model, so all of them predict the same days.
    progress : ``progress(stage, done, total)`` after each walk-forward.
    oos : filled with the full feature set's predictions, as ``permutation_importance`` fills it.

    Returns
    -------
    One row per model, group and fold (``FRAME_COLUMNS``), ``method`` = ``"ablation"``.
    """
    dropped = _ablation_groups(feature_groups(config), groups)
    design = design if design is not None else load_design(config)
    columns = group_columns(design, config)
    report = progress or _quiet
    rows = []
    for key in model_plan(config):
        name, task, stage = key.name, key.task, f"ablation {key.name}"
        report(stage, 0, len(dropped) + 1)
        estimator = estimator_for(key, config)
        full = _walk_scores(estimator, design.features, design, task, config, keep=oos, name=name)
        report(stage, 1, len(dropped) + 1)
        for done, group in enumerate(dropped, 2):
            reduced = design.features.drop(columns=design.features.columns[columns[group]])
            scores = _walk_scores(estimator, reduced, design, task, config)
            rows += [_row(name, group, "ablation", f, scores[f], full[f]) for f in full]
            report(stage, done, len(dropped) + 1)
    return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))


def summarize_importance(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model, group and method (in order of appearance): means across folds and their errors.

    Columns: ``model, group, method, mean_d_hit_rate, se_d_hit_rate, mean_d_loss, se_d_loss,
    n_folds, hit_rate, loss``. ``se_*`` is the standard error of the mean across folds,
    sample std (ddof 1) / sqrt(n_folds), NaN with one fold; ``hit_rate`` and ``loss`` are the
    unaltered model's means across folds.
    """
    missing = [c for c in FRAME_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"importance frame lacks column(s) {missing}; build it with importance_frame")
    grouped = frame.groupby(["model", "group", "method"], sort=False)
    summary = grouped.agg(mean_d_hit_rate=("d_hit_rate", "mean"), se_d_hit_rate=("d_hit_rate", _standard_error),
                          mean_d_loss=("d_loss", "mean"), se_d_loss=("d_loss", _standard_error),
                          n_folds=("fold", "nunique"), hit_rate=("hit_rate", "mean"), loss=("loss", "mean"))
    return summary.reset_index()


# --------------------------------------------------------------------------- building blocks


def feature_groups(config: RunConfig) -> tuple[str, ...]:
    """The groups whose importance is measured: ``features.groups``, then ``exog`` when ``data.exog`` is set."""
    return tuple(config.features.groups) + ((EXOG_GROUP,) if getattr(config.data, "exog", ()) else ())


def group_columns(design: Design, config: RunConfig) -> dict[str, np.ndarray]:
    """``{group: positions of its columns in design.features}``, in ``feature_groups(config)`` order.

    Derived by building each group alone with ``make_features``, which lays groups side by side
    in the order given; the columns after them, if ``data.exog`` is set, form the ``exog`` group.
    """
    n_lags, lag_scale = config.features.n_lags, config.features.lag_scale
    names = {g: make_features(design.prices, (g,), n_lags, lag_scale).columns for g in config.features.groups}
    positions = {g: design.features.columns.get_indexer(cols) for g, cols in names.items()}
    used = sum(len(p) for p in positions.values())
    if EXOG_GROUP in feature_groups(config):
        positions[EXOG_GROUP] = np.arange(used, design.features.shape[1])
    flat = np.concatenate(list(positions.values()))
    if not np.array_equal(flat, np.arange(design.features.shape[1])):
        raise ValueError("feature columns do not split into the configured groups; rebuild the design "
                         "from the same config")
    return positions


def permute_block(matrix: np.ndarray, rows: np.ndarray, columns: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """A copy of ``matrix`` (T, F) whose ``columns`` have ``rows`` shuffled among themselves.

    One permutation moves every column of ``columns`` alike, so a row's values in those columns
    stay together; other columns and rows outside ``rows`` are unchanged.
    """
    rows, columns = np.asarray(rows), np.asarray(columns)
    out = matrix.copy()
    out[np.ix_(rows, columns)] = matrix[np.ix_(rows[rng.permutation(len(rows))], columns)]
    return out


def fitted_folds(estimator: Any, design: Design, task: str,
                 weights: pd.Series | None = None, anchor: pd.Series | None = None
                 ) -> Iterator[tuple[Any, Any, np.ndarray]]:
    """Yield ``(fold, fitted model, scaled (T, F) matrix)`` per fold, fitted as ``walk_forward_predict`` fits.

    A clone per fold, or with ``warm_start`` one clone refitted fold after fold; the matrix is
    standardised with the fold's training and validation rows; ``weights`` (the run's
    ``pipeline.training_weights``, indexed like the target, or None) weight the training
    samples; a model whose ``refits`` is true is refitted on the fold's whole usable window
    (``train.refit``). ``anchor``: as ``walk_forward_predict``'s ``target_anchor``
    (``pipeline.target_anchor``); the models then fit log(target / anchor). Use each model before
    the next step: a warm-starting one is refitted in place.
    """
    grid, target = design.grid, design.targets[task]
    y = target.to_numpy(dtype=np.float64)
    if anchor is not None:
        y = price_to_relative(y, anchor.reindex(target.index).to_numpy(dtype=np.float64))
    w = None if weights is None else weights.reindex(target.index).to_numpy(dtype=np.float64)
    model = None
    for fold in design.folds:
        matrix = scaled_matrix(design.features, grid.rows(np.concatenate([fold.train, fold.val])))
        windows = sliding_windows(matrix, grid.lookback)
        if model is None or not getattr(estimator, "warm_start", False):
            model = clone(estimator)
        val = _samples(windows, y, grid, fold.val) if len(fold.val) else ()
        model.fit(*_samples(windows, y, grid, fold.train), *val, **_weight(w, grid, fold.train))
        if len(fold.val) and getattr(model, "refits", False):  # as walk_forward_predict refits
            usable = refit_positions(fold)  # fit, purge gap, validation tail (or the split's own)
            model.refit_full(*_samples(windows, y, grid, usable), **_weight(w, grid, usable))
        yield fold, model, matrix


def block_truth(design: Design, task: str, positions: np.ndarray) -> BlockTruth:
    """The targets, realised directions and closes of the sample ``positions`` of ``design.grid``."""
    dates = design.grid.dates[positions]
    return BlockTruth(y_true=design.targets[task].reindex(dates).to_numpy(dtype=np.float64),
                      real_up=design.targets["classification"].reindex(dates).to_numpy() > 0,
                      close=design.prices["Close"].reindex(dates).to_numpy(dtype=np.float64))


def prediction_scores(y_pred: np.ndarray, p_up: np.ndarray | None, truth: BlockTruth,
                      regression: str = "return") -> tuple[float, float]:
    """(hit rate, loss) of one block: log loss (nats) of ``p_up`` when given, else MSE of ``y_pred``.

    A regression's direction is its predicted log return from the decision day's close
    (``regression``: ``return`` or ``price``), as ``metrics.json`` scores it.
    """
    from sklearn.metrics import log_loss

    if p_up is not None:
        p = np.asarray(p_up, dtype=np.float64)
        return hit_rate(p > 0.5, truth.real_up), float(log_loss(truth.y_true.astype(int), p, labels=[0, 1]))
    y_pred = np.asarray(y_pred, dtype=np.float64)
    pred_ret = predicted_log_return(pd.Series(y_pred), pd.Series(truth.close), regression).to_numpy()
    return hit_rate(pred_ret > 0, truth.real_up), float(np.mean((y_pred - truth.y_true) ** 2))


def _scores(model: Any, matrix: np.ndarray, design: Design, positions: np.ndarray, truth: BlockTruth,
            config: RunConfig) -> tuple[float, float]:
    """(hit rate, loss) of ``model`` on the test windows of ``positions`` built from ``matrix``."""
    y_pred, p_up = _predict(model, matrix, design, positions, truth, config)
    if p_up is not None:
        return prediction_scores(p_up > 0.5, p_up, truth)
    return prediction_scores(y_pred, None, truth, config.target.regression)


def block_predictions(model: Any, matrix: np.ndarray, design: Design, fold: Any, truth: BlockTruth,
                      config: RunConfig) -> pd.DataFrame:
    """The fold's test-block predictions of the fitted ``model`` on the unaltered ``matrix``, as
    ``walk_forward_predict`` returns them: date, fold, y_true, y_pred (a classifier's: p_up > 0.5)
    and p_up (NaN for regressors)."""
    y_pred, p_up = _predict(model, matrix, design, fold.test, truth, config)
    if p_up is not None:
        y_pred = (p_up > 0.5).astype(np.float64)
    return pd.DataFrame({"date": design.grid.dates[fold.test], "fold": fold.index, "y_true": truth.y_true,
                         "y_pred": np.asarray(y_pred, dtype=np.float64),
                         "p_up": np.full(len(fold.test), np.nan) if p_up is None else p_up})


def _predict(model: Any, matrix: np.ndarray, design: Design, positions: np.ndarray, truth: BlockTruth,
             config: RunConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """(y_pred in the target's units, p_up or None for a regressor) on the test windows of ``positions``."""
    x_test = sliding_windows(matrix, design.grid.lookback)[_window_slice(design.grid, positions)]
    if hasattr(model, "predict_proba"):
        return None, model.predict_proba(x_test)[:, list(model.classes_).index(1)]
    y_pred = model.predict(x_test)
    if target_anchor(design, "regression", config) is not None:  # fitted relative to the decision day's close
        y_pred = relative_to_price(y_pred, truth.close)
    return y_pred, None


def _walk_scores(estimator: Any, features: pd.DataFrame, design: Design, task: str, config: RunConfig,
                 keep: dict[str, pd.DataFrame] | None = None, name: str = "") -> dict[int, tuple[float, float]]:
    """``{fold: (hit rate, loss)}`` of ``walk_forward_predict`` on ``features`` with the design's folds;
    its predictions go to ``keep[name]`` unless ``keep`` is None or has them already."""
    weights = training_weights(design, task, config.target.horizon, config)
    preds, _ = walk_forward_predict(estimator, features, design.targets[task], design.grid, design.folds,
                                    train_weight=None if weights is None else weights.reindex(design.targets[task].index),
                                    target_anchor=target_anchor(design, task, config))
    if keep is not None:
        keep.setdefault(name, preds)
    out = {}
    for fold in design.folds:
        block = preds[preds["fold"] == fold.index]
        p_up = block["p_up"].to_numpy() if task == "classification" else None
        out[fold.index] = prediction_scores(block["y_pred"].to_numpy(), p_up, block_truth(design, task, fold.test),
                                            config.target.regression)
    return out


def _samples(windows: np.ndarray, y: np.ndarray, grid: Any, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windows (a view) and targets (``y`` aligned with the feature rows) of the sample ``positions``."""
    first = grid.first_row + int(positions[0])
    return windows[_window_slice(grid, positions)], y[first:first + len(positions)]


def _weight(weights: np.ndarray | None, grid: Any, positions: np.ndarray) -> dict[str, np.ndarray]:
    """``{"sample_weight": ...}`` of the sample ``positions``, or ``{}`` when unweighted."""
    return {} if weights is None else {"sample_weight": weights[grid.rows(positions)]}


def _window_slice(grid: Any, positions: np.ndarray) -> slice:
    """The windows of the contiguous sample ``positions``: window i ends on feature row i + lookback - 1."""
    if len(positions) > 1 and not (np.diff(positions) == 1).all():
        raise ValueError("fold positions are not one contiguous range")
    start = grid.first_row + int(positions[0]) - grid.lookback + 1
    return slice(start, start + len(positions))


def _row(model: str, group: str, method: str, fold: int, altered: Any, base: Any) -> dict[str, Any]:
    return {"model": model, "group": group, "method": method, "fold": int(fold),
            "d_hit_rate": float(altered[0] - base[0]), "d_loss": float(altered[1] - base[1]),
            "hit_rate": float(base[0]), "loss": float(base[1])}


def _ablation_groups(present: tuple[str, ...], groups: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    if len(present) < 2:
        raise ConfigError(f"ablation drops one feature group at a time, but there is one ({list(present)}); "
                          "add groups to features.groups or use --method permutation")
    chosen = present if groups is None else tuple(groups)
    unknown = [g for g in chosen if g not in present]
    if unknown or not chosen:
        raise ConfigError(f"cannot ablate {unknown or 'no groups'}: choose among the feature groups {list(present)}")
    return chosen


def _check_repeats(n_repeats: int) -> None:
    if not (isinstance(n_repeats, (int, np.integer)) and not isinstance(n_repeats, bool) and n_repeats >= 1):
        raise ConfigError(f"--repeats {n_repeats!r} must be a whole number >= 1 (shuffles per fold and group)")


def _standard_error(values: pd.Series) -> float:
    n = int(values.count())
    return float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def _quiet(stage: str, done: int, total: int) -> None:
    return None


__all__ = ["importance_frame", "permutation_importance", "ablation_importance", "summarize_importance",
           "parse_method", "load_design", "feature_groups", "group_columns", "permute_block", "fitted_folds", "block_truth",
           "prediction_scores", "block_predictions", "BlockTruth",
           "METHODS", "SCORE_METHODS", "METHOD_SETS", "EXOG_GROUP",
           "FRAME_COLUMNS"]
