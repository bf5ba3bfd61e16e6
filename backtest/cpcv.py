"""Combinatorial purged cross-validation in a run (``split.scheme = "cpcv"``): every model of the
primary horizon trained on each CPCV split (``backtest.combinatorial``), the splits assembled into
backtest paths, and each path backtested through the run's own positions and portfolio code.

Training: a split starts from fresh weights (warm starts do not carry across splits, which are not
in time order), seeded with ``train.run_seed`` (each seed of ``train.seeds`` for an ensemble, whose
mean is taken per split as in the walk-forward). The fits are independent jobs: side by side on
the run's thread slots (one torch thread each), or as Ray tasks when the caller hands an executor
(``backtest.campaign.executors``), with identical results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import pandas as pd

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.design import (Design, estimator_for, feature_warmup, plugin_faults, target_anchor,
                                    training_weights)
from lstmbt.backtest.errors import ConfigError, needs_new_config
from lstmbt.backtest.scoring import majority_p_up
from lstmbt.backtest.splits import Fold
from lstmbt.backtest.walkforward import FoldProgress, SampleGrid, combine_seeds, walk_forward_predict
from lstmbt.models.key import FOLD_KEY_COLUMNS, ModelKey, insert_key_columns
from lstmbt.models.specs import NETWORK_FAMILIES
from lstmbt.models.threads import ThreadGovernor, run_side_by_side

#: progress(stage, done, total), as ``backtest.pipeline.Progress``
Progress = Callable[[str, int, int], None]


def cpcv_splitter(design: Design, config: RunConfig):
    """The run's ``CombinatorialPurgedSplit``: purged by the primary horizon, embargoed by at least
    the lookback plus the feature warm-up (the bars a sample's inputs read)."""
    reach = config.model.lookback - 1 + feature_warmup(config)
    return config.split.cpcv_splitter(config.target.horizon, reach)


def cpcv_folds(design: Design, config: RunConfig) -> list[Fold]:
    """Every CPCV split of the run's samples; a split too small to fit on is a one-line ConfigError
    (``backtest.preflight.check_cpcv`` refuses it before training; this guards a design it did not foresee)."""
    try:
        return cpcv_splitter(design, config).split(design.grid.n)
    except ValueError as exc:
        raise needs_new_config(ConfigError(f"split.scheme = 'cpcv': {exc}")) from None


@dataclass(frozen=True)
class SplitJob:
    """One model, seed and split: everything its fit needs, so it pickles to a Ray worker."""

    key: ModelKey
    seed: int | None
    fold: Fold
    config: RunConfig
    features: pd.DataFrame
    target: pd.Series
    grid: SampleGrid
    weight: pd.Series | None
    anchor: pd.Series | None


def fit_split(job: SplitJob) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The predictions and fold-log row of one job (``walk_forward_predict`` on its one split)."""
    with plugin_faults():  # a user's model broke the protocol: one line, exit 2
        return walk_forward_predict(estimator_for(job.key, job.config, job.seed), job.features, job.target,
                                    job.grid, [job.fold], train_weight=job.weight, target_anchor=job.anchor)


def split_jobs(design: Design, config: RunConfig, plan: list[ModelKey]) -> list[SplitJob]:
    """One job per model of ``plan``, seed (networks: every seed of ``train.seeds``) and CPCV split."""
    cold = config.with_values({"train.warm_start": False})
    folds = cpcv_folds(design, config)
    jobs = []
    for key in plan:
        target = design.targets[key.task]
        weight, anchor = training_weights(design, key.task, key.horizon, config), target_anchor(design, key.task, config)
        for seed in config.train.members if key.family in NETWORK_FAMILIES else (None,):
            jobs += [SplitJob(key=key, seed=seed, fold=fold, config=cold, features=design.features, target=target,
                              grid=design.grid, weight=weight, anchor=anchor) for fold in folds]
    return jobs


def predict_cpcv(design: Design, config: RunConfig, plan: list[ModelKey], report: Progress | None = None,
                 governor: ThreadGovernor | None = None, executor: Any = None) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Every model's out-of-sample predictions on every split, the split log, and the wall seconds.

    ``plan``: the models (the run's primary-horizon keys). ``executor``: None runs the jobs side by
    side on ``governor``'s slots; else its ``map(fn, items, on_done)`` runs them (a Ray executor).
    Predictions have the run's layout with ``fold`` = the split; a day appears once per split that
    tests it. Seeds of an ensemble are averaged per split (``combine_seeds``).
    """
    jobs = split_jobs(design, config, plan)
    report = report or (lambda stage, done, total: None)
    # the executor's callbacks run in this process, where no fit holds a thread slot to recheck
    counter = FoldProgress(report, "cpcv", len(jobs), governor if executor is None else None)
    counter.start()
    started = time.perf_counter()
    if executor is None:
        results = run_side_by_side([lambda job=job: _counted(fit_split(job), counter) for job in jobs], governor)
    else:
        results = executor.map(fit_split, jobs, on_done=lambda index, result: counter.fold_done())
    seconds = time.perf_counter() - started
    frames, logs = [], []
    for key in plan:
        mine = [(job, result) for job, result in zip(jobs, results) if job.key == key]
        for split in sorted({job.fold.index for job, _ in mine}):
            preds, log = combine_seeds({job.seed: result for job, result in mine if job.fold.index == split})
            frames.append(insert_key_columns(preds, key, 1))
            logs.append(insert_key_columns(log, key, 0, FOLD_KEY_COLUMNS))
    predictions = pd.concat(frames, ignore_index=True)
    predictions["close"] = design.prices["Close"].reindex(predictions["date"]).to_numpy()
    return predictions, pd.concat(logs, ignore_index=True), seconds


#: the fold-log columns ``cpcv.json`` keeps per model and split
SPLIT_LOG_COLUMNS = ("model", "fold", "n_train", "n_val", "n_test", "epochs", "best_epoch", "best_val_loss",
                     "refit", "fit_seconds")


def split_log(log: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per model and split (``fold`` = the split): sizes, epochs, validation loss, fit seconds."""
    records = log[[c for c in SPLIT_LOG_COLUMNS if c in log]].to_dict("records")
    return [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()} for r in records]  # numpy -> Python


def _counted(result: Any, counter: FoldProgress) -> Any:
    counter.fold_done()
    return result


def path_predictions(predictions: pd.DataFrame, path: list[int], blocks: list[np.ndarray],
                     dates: pd.DatetimeIndex) -> pd.DataFrame:
    """One path's predictions: for each block g, the rows of split ``path[g]`` dated in block g."""
    parts = []
    for g, split in enumerate(path):
        days = dates[blocks[g]]
        rows = predictions[(predictions["fold"] == split) & predictions["date"].isin(days)]
        parts.append(rows)
    return pd.concat(parts).sort_values(["date"], kind="stable").reset_index(drop=True)


def path_majority(direction: pd.Series, grid: SampleGrid, folds: list[Fold], path: list[int],
                  blocks: list[np.ndarray]) -> pd.Series:
    """The majority baseline's p_up on one path: per block, the share of up labels its split
    trained on (``scoring.majority_p_up`` of the splits with their test narrowed to that block)."""
    return majority_p_up(direction, grid, [replace(folds[split], test=blocks[g]) for g, split in enumerate(path)])