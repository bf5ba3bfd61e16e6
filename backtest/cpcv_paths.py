"""CPCV's evidence: each path backtested with the run's costs and next-bar fills, the distribution
of Sharpe, return and hit rate over the paths, the share of paths that beat buy-and-hold, the
verdict on the path-averaged returns, and the PBO of the models on each path.

Buy-and-hold holds on the same days on every path, so its figures do not vary across paths. The
paths share their training data, so they are not independent draws: the spread says how much the
answer depends on which split predicted which block, and the significance figure comes from the
path-averaged returns (equal capital on every path), one series on the run's days.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from lstmbt.backtest import metrics as m
from lstmbt.backtest.annualise import run_periods
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.cpcv import cpcv_folds, cpcv_splitter, path_majority, path_predictions
from lstmbt.backtest.design import Design
from lstmbt.backtest.pbo import DEFAULT_BLOCKS, probability_of_backtest_overfitting
from lstmbt.backtest.portfolio import run_backtest
from lstmbt.backtest.relative import family_verdict
from lstmbt.backtest.scoring import BENCHMARK, by_model, make_positions, predicted_up, undecided
from lstmbt.models.key import keys_from_frame

#: the figures kept per strategy and path; ``sharpe_wf_days``: the Sharpe ratio over the walk-forward's
#: out-of-sample days only, to set beside the walk-forward's own on the same days
PATH_FIGURES = ("sharpe", "total_return", "hit_rate", "sharpe_wf_days")
#: the ``metrics.json`` keys CPCV adds to every strategy
CPCV_METRICS = ("cpcv_sharpe_median", "cpcv_sharpe_p05", "cpcv_sharpe_p95", "cpcv_beats_bh_share")


def score_cpcv(design: Design, predictions: pd.DataFrame, config: RunConfig) -> tuple[dict[str, Any], pd.DataFrame]:
    """The CPCV summary (``cpcv.json``) and the daily returns of every strategy on every path.

    Returns ``(summary, returns)``: ``summary`` holds ``settings``, ``paths`` ({strategy: {figure:
    [one value per path]}}), ``summary`` ({strategy: {figure: value}}: the ``CPCV_METRICS`` and the
    median, 5th and 95th percentiles of each figure), ``verdicts`` (per model, on the path-averaged
    returns) and ``pbo``. ``returns``: long frame ``date, path`` and one column per strategy.
    """
    splitter = cpcv_splitter(design, config)
    folds, dates = cpcv_folds(design, config), design.grid.dates
    blocks = splitter.group_positions(design.grid.n)
    realised = (design.targets["classification"].reindex(dates) > 0).to_numpy()
    walk_days = dates >= design.grid.dates[design.folds[0].test[0]]
    ppy = run_periods(design.prices.index)  # 365 on a 7-day calendar, as the run's metrics
    figures: dict[str, dict[str, list[float]]] = {}
    path_returns = []
    for j, path in enumerate(splitter.paths()):
        preds = path_predictions(predictions, path, blocks, dates)
        majority = path_majority(design.targets["classification"], design.grid, folds, path, blocks)
        positions = make_positions(preds, dates, config, majority, prices=design.prices)
        returns = run_backtest(design.prices, positions, config.backtest).returns
        for name, values in _path_figures(preds, positions, returns, majority, realised, config, design,
                                          walk_days, ppy).items():
            for figure, value in values.items():
                figures.setdefault(name, {}).setdefault(figure, []).append(value)
        path_returns.append(returns.set_axis(dates).rename_axis("date").reset_index().assign(path=j))
    returns = pd.concat(path_returns, ignore_index=True)
    models = list(keys_from_frame(predictions))
    return {
        "settings": {**_settings(splitter, config, len(folds)),
                     "walk_forward_first_date": str(dates[walk_days][0].date())},
        "paths": figures,
        "summary": {name: _summary(values, figures[BENCHMARK]) for name, values in figures.items()},
        "verdicts": _verdicts(returns, models, config, ppy),
        "pbo": _pbo(returns, models),
    }, returns


def _path_figures(preds: pd.DataFrame, positions: pd.DataFrame, returns: pd.DataFrame, majority: pd.Series,
                  realised: np.ndarray, config: RunConfig, design: Design,
                  walk_days: np.ndarray, ppy: int) -> dict[str, dict[str, float]]:
    """Sharpe, total return and hit rate of every strategy on one path, and its Sharpe on the
    ``walk_days`` (the walk-forward's out-of-sample days); a model's hit rate leaves out the days it
    could not decide on, as the run's does. Sharpe ratios are annualised with ``ppy`` bars a year."""
    dates, keys = positions.index, keys_from_frame(preds)
    models = by_model(preds, dates)
    out = {}
    for name in positions.columns:
        r = returns[name].to_numpy()
        up = predicted_up(name, models, majority, config, dates, keys=keys)
        real = realised
        if up is not None and name in keys:
            decided = ~undecided(keys[name], models, config, design.prices["Close"])
            up, real = up[decided], realised[decided]
        out[name] = {"sharpe": m.sharpe(r, ppy), "total_return": m.total_return(r),
                     "hit_rate": m.hit_rate(up, real) if up is not None else math.nan,
                     "sharpe_wf_days": m.sharpe(r[walk_days], ppy)}
    return out


def _summary(values: dict[str, list[float]], bench: dict[str, list[float]]) -> dict[str, float]:
    """Median, 5th and 95th percentiles of each figure over the paths, and the share of paths whose
    Sharpe beats buy-and-hold's on the same days."""
    out: dict[str, float] = {}
    for figure, series in values.items():
        x = np.asarray(series, dtype=np.float64)
        finite = x[np.isfinite(x)]
        for label, q in (("median", 50), ("p05", 5), ("p95", 95)):
            out[f"cpcv_{figure}_{label}"] = float(np.percentile(finite, q)) if len(finite) else math.nan
        out[f"cpcv_{figure}_min"] = float(finite.min()) if len(finite) else math.nan
        out[f"cpcv_{figure}_max"] = float(finite.max()) if len(finite) else math.nan
    mine, theirs = np.asarray(values["sharpe"]), np.asarray(bench["sharpe"])
    out["cpcv_beats_bh_share"] = float(np.mean(np.nan_to_num(mine, nan=-np.inf) > theirs))
    out["cpcv_paths"] = len(mine)
    return out


def _verdicts(returns: pd.DataFrame, models: list[str], config: RunConfig, ppy: int) -> dict[str, dict[str, Any]]:
    """Per model, the Sharpe of the path-averaged daily returns and its family-wise verdict against
    buy-and-hold (``relative.family_verdict``, Bonferroni over the run's models), annualised with
    ``ppy`` bars a year."""
    mean = returns.drop(columns="path").groupby("date", sort=True).mean()
    bench = mean[BENCHMARK].to_numpy()
    out = {}
    for name in models:
        r = mean[name].to_numpy()
        out[name] = {"mean_path_sharpe": m.sharpe(r, ppy), "bench_sharpe": m.sharpe(bench, ppy),
                     **family_verdict(r, bench, len(models), config.train.run_seed, ppy)}
    return out


def _pbo(returns: pd.DataFrame, models: list[str]) -> dict[str, Any]:
    """The PBO of the ``models`` on each path (CSCV, ``backtest.pbo``): the candidates a user picks
    the best of. Buy-and-hold and the naive baselines are no candidates, and a never-invested one
    would only pad the ranking, so they are left out; fewer than 2 models leave nothing to pick."""
    out = {"per_path": [], "median": math.nan, "min": math.nan, "max": math.nan, "n_blocks": DEFAULT_BLOCKS,
           "models": list(models)}
    values = []
    for _, path in returns.groupby("path", sort=True):
        matrix = path[list(models)].to_numpy(dtype=np.float64)
        if matrix.shape[1] < 2 or len(matrix) < 2 * DEFAULT_BLOCKS:
            return out
        values.append(probability_of_backtest_overfitting(np.nan_to_num(matrix), DEFAULT_BLOCKS).pbo)
    return {**out, "per_path": values, "median": float(np.median(values)), "min": float(min(values)),
            "max": float(max(values))}


def _settings(splitter: Any, config: RunConfig, n_splits: int) -> dict[str, Any]:
    return {"groups": splitter.groups, "test_groups": splitter.test_groups, "splits": n_splits,
            "paths": splitter.n_paths, "purge": splitter.horizon, "embargo": splitter.embargo_after,
            "reach": splitter.reach, "seeds": list(config.train.members), "warm_start": False,
            "rule": ("training samples before a test block end their label before it (t + h < a); those after "
                     f"it start {splitter.horizon} + {splitter.embargo_after} samples later, so no input window "
                     "reads a test day or a close behind a test label")}


def cpcv_metrics(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{strategy: {key: value}}`` of the ``CPCV_METRICS`` keys, for ``metrics.json``."""
    return {name: {key: values[key] for key in CPCV_METRICS} for name, values in summary["summary"].items()}
