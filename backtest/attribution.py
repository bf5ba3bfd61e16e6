"""SHAP attribution of every model's out-of-sample predictions, per feature and feature group.

Each model of ``model_plan(config)`` is walked forward on the folds, scaling, seed, training
weights and refits of ``lstmbt run`` (``backtest.importance.fitted_folds``). In every fold,
after fitting, a seeded sample of at most ``max_explained`` test-block samples is explained
against a background of at most ``max_background`` samples drawn from the fold's **fit samples
only** (``fold.train``: no validation, purge or test day), both drawn by
``np.random.default_rng([seed, fold])`` and shared by every model of the fold. The explained
quantity and its unit:

- regression models: the prediction, in target units (a network's standardised output is
  multiplied by its ``y_scale_``, so SHAP values add up to ``predict``'s units); for a price
  target fitted relative to the decision day's close (``target.price_scale = "relative"``) that
  is the forecast log(close[t+h] / close[t]), before it is mapped back to a price;
- classifiers: the log-odds of up, ``log(p_up / (1 - p_up))`` (nats).

Explainers:

- **LightGBM**: ``shap.TreeExplainer`` with ``feature_perturbation="interventional"`` and the
  background's decision-day rows (exact SHAP values of the trees the model predicts with,
  those up to ``best_iteration_``), on the explained samples' decision-day rows.
- **linear twins**: ``shap.LinearExplainer`` (interventional, the background's rows): exactly
  ``coef * (x - mean of the background rows)``. A logistic model fitted on one class is a
  constant and gets zeros.
- **networks** (every ``model.families`` member): ``shap.GradientExplainer`` (expected
  gradients) on a CPU copy of ``net_`` in eval mode at one torch thread, ``n_gradient_samples``
  background/interpolation draws per explained window, seeded from ``seed`` and the fold. It
  explains the network on each ``lookback``-day window from a zero state (window read-out);
  in ``train.mode = "sequence"`` the run's predictions may carry up to ``chunk_len - 1`` more
  days of context, which this does not attribute. Expected gradients add up to the output
  minus the background mean only on average over draws, not exactly per sample.
- **plug-ins** (``model.custom``): skipped; SHAP needs a model's internals, and a model-agnostic
  KernelExplainer would cost hundreds of predictions per explained sample.

Aggregation. SHAP values are additive, so the signed values of everything that belongs
together are summed first, then the absolute value is averaged over the explained samples:

- feature f of model m in fold k: ``mean over explained samples |sum over the window's days of
  phi(day, f)|`` (trees and linear models see only the decision day, one term);
- group g: ``mean over explained samples |sum over g's features f of phi_f|`` (the group's own
  SHAP value), which is at most the sum of its features' values.

``summarize_shap`` averages each across folds, with the standard error across folds.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.importance import block_predictions, block_truth, fitted_folds, group_columns, load_design
from lstmbt.backtest.pipeline import Design, Progress, estimator_for, target_anchor, training_weights
from lstmbt.backtest.scoring import model_plan
from lstmbt.models.key import CUSTOM_FAMILY
from lstmbt.models.linear import LogisticClassifier, RidgeRegressor, last_rows
from lstmbt.models.threads import torch_threads
from lstmbt.models.trees import LightGBMClassifier, LightGBMRegressor
from lstmbt.models.windows import sliding_windows

#: test samples explained per fold (a seeded sample when the test block is longer)
MAX_EXPLAINED = 100
#: fit samples per fold in the background (a seeded sample when the fit window is longer)
MAX_BACKGROUND = 100
#: expected-gradient draws per explained window (networks)
GRADIENT_SAMPLES = 50
#: ``level`` of the rows about one feature and about one feature group
FEATURE, GROUP = "feature", "group"
#: one row per model, fold and feature (``level="feature"``) or group (``level="group"``, ``feature=""``)
SHAP_COLUMNS = ("model", "level", "group", "feature", "fold", "mean_abs_shap", "n_explained", "n_background",
                "explainer")
EXPLAINERS = {"tree": "TreeExplainer, interventional", "linear": "LinearExplainer, interventional",
              "gradient": "GradientExplainer (expected gradients)"}


def shap_frame(config: RunConfig, seed: int | None = None, *, design: Design | None = None,
               progress: Progress | None = None, max_explained: int = MAX_EXPLAINED,
               max_background: int = MAX_BACKGROUND, n_gradient_samples: int = GRADIENT_SAMPLES,
               oos: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Mean |SHAP| per model, fold, feature and feature group on each fold's test samples.

    Parameters
    ----------
    config : the run's config; every model of ``model_plan(config)`` but the plug-ins is explained.
    seed : seeds the samples and the expected-gradient draws (default ``config.train.run_seed``).
    design : a ``load_design(config)`` to reuse (loaded when None).
    progress : ``progress(stage, done, total)`` after each fold.
    max_explained, max_background : caps on explained test samples and background fit samples per fold.
    n_gradient_samples : expected-gradient draws per explained window (networks only).
    oos : filled per model not in it yet with the fitted models' test-block predictions, as
        ``backtest.importance.permutation_importance`` fills it.

    Returns
    -------
    ``SHAP_COLUMNS``; ``mean_abs_shap`` in target units (regression) or log-odds of up (classifiers).
    """
    check_explainable(config)
    seed = config.train.run_seed if seed is None else seed
    _check_whole(seed, "seed", 0)
    for value, name in ((max_explained, "max_explained"), (max_background, "max_background"),
                        (n_gradient_samples, "n_gradient_samples")):
        _check_whole(value, name, 1)
    design = design if design is not None else load_design(config)
    columns, names = group_columns(design, config), list(design.features.columns)
    report, rows = progress or _quiet, []
    with torch_threads(1):  # one torch thread, as importance's fits; the caller's count is back afterwards
        for key in (k for k in model_plan(config) if k.family != CUSTOM_FAMILY):
            stage = f"shap {key.name}"
            report(stage, 0, len(design.folds))
            weights = training_weights(design, key.task, key.horizon, config)
            folds = fitted_folds(estimator_for(key, config), design, key.task, weights,
                                 target_anchor(design, key.task, config))
            blocks = []
            for done, (fold, model, matrix) in enumerate(folds, 1):
                blocks.append(block_predictions(model, matrix, design, fold, block_truth(design, key.task, fold.test),
                                                config))
                background, explained = sample_positions(fold, seed, max_background, max_explained)
                values, kind = explain(model, windows_at(matrix, design.grid, background),
                                       windows_at(matrix, design.grid, explained), seed=int(seed) + fold.index,
                                       n_samples=n_gradient_samples)
                extra = {"n_explained": len(explained), "n_background": len(background), "explainer": EXPLAINERS[kind]}
                rows += shap_rows(key.name, fold.index, values, names, columns, extra)
                report(stage, done, len(design.folds))
            if oos is not None:
                oos.setdefault(key.name, pd.concat(blocks, ignore_index=True))
    return pd.DataFrame(rows, columns=list(SHAP_COLUMNS))


def check_explainable(config: RunConfig) -> None:
    """Refuse SHAP, in one ``ConfigError`` line, for a config whose every model is a plug-in: SHAP
    reads a model's internals (``explain``), which only lstmbt's own models expose to it."""
    plan = model_plan(config)
    if any(key.family != CUSTOM_FAMILY for key in plan):
        return
    raise ConfigError(f"--method shap has nothing to explain: the only models are plug-ins "
                      f"({', '.join(k.name for k in plan) or 'none'}), and SHAP explains lstmbt's own models only "
                      "(the networks of model.families, the linear twins, LightGBM); use --method permutation (or "
                      "both), which scores any model, or add one of them (e.g. --set model.linear=true)")


def summarize_shap(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model, level, group and feature (in order of appearance): mean |SHAP| across folds.

    Columns: ``model, level, group, feature, mean_abs_shap, se_abs_shap, n_folds, share``.
    ``se_abs_shap``: sample std (ddof 1) / sqrt(n_folds) across folds, NaN with one fold;
    ``share``: ``mean_abs_shap`` over the sum of the model's values at that level (a fraction).
    """
    missing = [c for c in SHAP_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"SHAP frame lacks column(s) {missing}; build it with shap_frame")
    grouped = frame.groupby(["model", "level", "group", "feature"], sort=False)["mean_abs_shap"]
    summary = grouped.agg(mean_abs_shap="mean", se_abs_shap=_standard_error).reset_index()
    summary["n_folds"] = grouped.count().to_numpy()
    total = summary.groupby(["model", "level"], sort=False)["mean_abs_shap"].transform("sum")
    summary["share"] = summary["mean_abs_shap"] / total.where(total > 0)
    return summary


# --------------------------------------------------------------------------- building blocks


def sample_positions(fold: Any, seed: int, max_background: int, max_explained: int) -> tuple[np.ndarray, np.ndarray]:
    """(background, explained) sample positions of ``fold``, sorted, drawn without replacement.

    Background: from ``fold.train`` (the fit samples) only; explained: from ``fold.test``. One
    ``np.random.default_rng([seed, fold.index])`` draws both, so every model of a fold gets the same.
    """
    rng = np.random.default_rng([int(seed), int(fold.index)])
    background = rng.choice(fold.train, size=min(max_background, len(fold.train)), replace=False)
    explained = rng.choice(fold.test, size=min(max_explained, len(fold.test)), replace=False)
    return np.sort(background), np.sort(explained)


def windows_at(matrix: np.ndarray, grid: Any, positions: np.ndarray) -> np.ndarray:
    """A copy of the (N, lookback, F) windows of the sample ``positions``; window i ends on
    feature row ``grid.first_row + positions[i]``, the sample's decision day."""
    return sliding_windows(matrix, grid.lookback)[grid.first_row + np.asarray(positions) - grid.lookback + 1]


def explain(model: Any, background: np.ndarray, explained: np.ndarray, *, seed: int,
            n_samples: int = GRADIENT_SAMPLES) -> tuple[np.ndarray, str]:
    """SHAP values (N, F) of a fitted model's output on ``explained`` windows (N, L, F), and the
    ``EXPLAINERS`` key used. Networks' values are summed over the window's days."""
    if hasattr(model, "net_"):
        return gradient_values(model, background, explained, seed, n_samples).sum(axis=1), "gradient"
    if isinstance(model, (LightGBMRegressor, LightGBMClassifier)):
        return tree_values(model, last_rows(background), last_rows(explained)), "tree"
    if isinstance(model, (RidgeRegressor, LogisticClassifier)):
        return linear_values(model, last_rows(background), last_rows(explained)), "linear"
    raise TypeError(f"no SHAP explainer for {type(model).__name__}")


def tree_values(model: Any, background: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """TreeExplainer (interventional on ``background`` rows) values (N, F) of a LightGBM baseline:
    target units for the regressor, log-odds of class 1 for the classifier."""
    import shap  # heavy (numba, sklearn extras): only when SHAP is asked for

    explainer = shap.TreeExplainer(model.model_, data=background, feature_perturbation="interventional",
                                   model_output="raw")
    return _class_one(np.asarray(explainer.shap_values(rows)), model)


def linear_values(model: Any, background: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """LinearExplainer (interventional on ``background`` rows) values (N, F) of a linear twin:
    target units for ridge, log-odds of class 1 for the logistic model (zeros when it is a constant)."""
    import shap  # heavy (numba, sklearn extras): only when SHAP is asked for

    if getattr(model, "model_", None) is None:  # a logistic model fitted on one class predicts a constant
        return np.zeros(rows.shape, dtype=np.float64)
    explainer = shap.LinearExplainer(model.model_, background)
    return _class_one(np.asarray(explainer.shap_values(rows)), model)


def gradient_values(model: Any, background: np.ndarray, explained: np.ndarray, seed: int,
                    n_samples: int = GRADIENT_SAMPLES) -> np.ndarray:
    """Expected-gradient SHAP values (N, L, F) of a network estimator's prediction (target units)
    or log-odds of class 1, on a CPU copy of ``net_`` in eval mode.

    shap seeds NumPy's global generator with ``seed``; the caller's global state is restored.
    """
    import shap  # heavy (numba, sklearn extras): only when SHAP is asked for
    import torch  # heavy: only when a network is explained

    data = torch.as_tensor(background, dtype=torch.float32)
    state = np.random.get_state()
    try:
        explainer = shap.GradientExplainer(output_module(model), data, batch_size=n_samples)
        values = explainer.shap_values(torch.as_tensor(explained, dtype=torch.float32), nsamples=n_samples, rseed=seed)
    finally:
        np.random.set_state(state)
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(explained.shape)  # drops the single output's axis


def output_module(model: Any) -> Any:
    """A CPU copy of a network estimator's ``net_`` in eval mode, followed by a fixed linear map to
    one output: ``predict - y_mean_`` (target units) for a regressor, the log-odds of class 1
    (``logit(class 1) - logit(class 0)``) for a classifier. Input (N, L, F) float32, output (N, 1)."""
    import torch  # heavy: only when a network is explained

    head = torch.nn.Linear(2 if hasattr(model, "classes_") else 1, 1, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([_output_weights(model)], dtype=torch.float32))
    head.weight.requires_grad_(False)
    return torch.nn.Sequential(copy.deepcopy(model.net_).to("cpu"), head).eval()


def shap_rows(model: str, fold: int, values: np.ndarray, names: list[str], columns: dict[str, np.ndarray],
              extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Frame rows of one model and fold from SHAP ``values`` (N, F): one per feature (mean over
    samples of |value|) and one per group of ``columns`` (mean over samples of |sum of its features' values|)."""
    by_feature = np.abs(values).mean(axis=0)
    group_of = {int(c): g for g, cols in columns.items() for c in cols}
    rows = [{"model": model, "level": FEATURE, "group": group_of[i], "feature": name, "fold": int(fold),
             "mean_abs_shap": float(by_feature[i]), **extra} for i, name in enumerate(names)]
    rows += [{"model": model, "level": GROUP, "group": g, "feature": "", "fold": int(fold),
              "mean_abs_shap": float(np.abs(values[:, cols].sum(axis=1)).mean()), **extra}
             for g, cols in columns.items()]
    return rows


def _output_weights(model: Any) -> list[float]:
    """Weights that turn the network's outputs into the explained quantity: ``[y_scale_]`` for a
    regressor (target units), ``logit(class 1) - logit(class 0)`` (the log-odds) for a classifier."""
    if not hasattr(model, "classes_"):
        return [float(model.y_scale_)]
    up = list(model.classes_).index(1)
    return [1.0 if i == up else -1.0 for i in range(2)]


def _class_one(values: np.ndarray, model: Any) -> np.ndarray:
    """The (N, F) values of class 1 when an explainer returns one set per class, (N, F, 2) or (2, N, F)."""
    if values.ndim == 2:
        return values.astype(np.float64)
    up = list(model.classes_).index(1)
    return (values[..., up] if values.shape[-1] == 2 else values[up]).astype(np.float64)


def _check_whole(value: Any, name: str, low: int) -> None:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low):
        raise ConfigError(f"{name} {value!r} must be a whole number >= {low}")


def _standard_error(values: pd.Series) -> float:
    n = int(values.count())
    return float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def _quiet(stage: str, done: int, total: int) -> None:
    return None


__all__ = ["shap_frame", "check_explainable", "summarize_shap", "sample_positions", "windows_at", "explain",
           "tree_values",
           "linear_values", "gradient_values", "output_module", "shap_rows", "SHAP_COLUMNS", "MAX_EXPLAINED", "MAX_BACKGROUND",
           "GRADIENT_SAMPLES", "EXPLAINERS", "FEATURE", "GROUP"]
