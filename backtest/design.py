"""What every model of a run shares (``Design``: prices, features, targets, the sample grid and
the folds) and the estimator each model key names. The run (``backtest.pipeline``), CPCV
(``backtest.cpcv``), forecasts and importance all build their models here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import pandas as pd

from lstmbt.backtest.config import RunConfig, narrow
from lstmbt.backtest.data import load_exogs
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.walkforward import make_sample_grid
from lstmbt.models.adapters import plugin_estimator
from lstmbt.models.exog import exog_features, exog_warmup_rows
from lstmbt.models.features import make_features, warmup_rows
from lstmbt.models.key import CUSTOM_FAMILY, ModelKey
from lstmbt.models.plugins import PluginError
from lstmbt.models.linear import LogisticClassifier, RidgeRegressor
from lstmbt.models.specs import NetSpec, TrainSettings
from lstmbt.models.targets import dead_zone_weights, make_target
from lstmbt.models.trees import LightGBMClassifier, LightGBMRegressor


@dataclass(frozen=True)
class Design:
    """What every model of a run shares: prices, features, targets, the sample grid and the folds.

    ``targets``/``folds`` are the primary horizon's; ``horizon_targets``/``horizon_folds`` hold
    every horizon of ``target.horizons`` (each purged by its own h, all with the same test days).
    """

    prices: pd.DataFrame
    features: pd.DataFrame
    targets: dict[str, pd.Series]
    grid: Any
    folds: list
    horizon_targets: dict[int, dict[str, pd.Series]] = field(default_factory=dict)
    horizon_folds: dict[int, list] = field(default_factory=dict)


def make_design(prices: pd.DataFrame, config: RunConfig) -> Design:
    """Features, targets, the sample grid and the walk-forward folds that every model of a run shares."""
    features = make_features(prices, config.features.groups, config.features.n_lags, config.features.lag_scale)
    if config.data.exog:  # as-of joined: day t sees only values stamped <= t - exog_lag_days (models.exog)

        features = features.join(exog_features(prices.index, load_exogs(config.data, prices.index),
                                               lag_days=config.data.exog_lag_days))
    split, horizons = config.target, config.target.all_horizons
    targets = {h: {"regression": make_target(prices, split.regression, h),
                   "classification": make_target(prices, "direction", h)} for h in horizons}
    # the longest horizon's labels end first: its grid gives every horizon the same sample days
    grid = make_sample_grid(features, targets[max(horizons)]["classification"], config.model.lookback)
    folds = {h: config.split.splitter(h).split(grid.n) for h in horizons}
    primary = split.horizon
    return Design(prices=prices, features=features, targets=targets[primary], grid=grid, folds=folds[primary],
                  horizon_targets=targets, horizon_folds=folds)


def feature_warmup(config: RunConfig) -> int:
    """Rows before a feature row that its value reads: the longest warm-up of the feature groups and
    of the exogenous series (also the leading rows left undefined)."""
    f = config.features
    return max(warmup_rows(f.groups, f.n_lags, f.lag_scale), exog_warmup_rows(len(config.data.exog)))


def training_weights(design: Design, task: str, horizon: int, config: RunConfig) -> pd.Series | None:
    """Training weights of a classifier with a dead zone (``target.dead_zone``), else None."""
    if task != "classification" or config.target.dead_zone <= 0:
        return None

    return dead_zone_weights(design.prices, horizon, config.target.dead_zone)


def estimator_for(key: ModelKey, config: RunConfig, seed: int | None = None):
    """The unfitted estimator of the model ``key`` names: a network of its family (seeded with
    ``seed``, default ``train.run_seed``), a baseline, or a plug-in of ``model.custom`` behind its adapter."""
    if key.family != CUSTOM_FAMILY:
        return build_estimator(key.task, config, seed=seed, family=key.family)
    plugin = next(p for p in config.model.plugins if key.name in (p.name, f"{p.name}_h{key.horizon}"))
    return plugin_estimator(plugin)


@contextlib.contextmanager
def plugin_faults() -> Iterator[None]:
    """Within the block, a plug-in model's fault (``models.plugins.PluginError``: it raised, exited
    or broke the protocol; ``models.adapters``) is a ``ConfigError`` with the same one line, so
    the CLI ends it with exit status 2 and Python callers catch an ``LstmbtError``."""
    try:
        yield
    except PluginError as exc:
        raise ConfigError(str(exc)) from None


def target_anchor(design: Design, task: str, config: RunConfig) -> pd.Series | None:
    """The close of each decision day when ``task``'s models fit a price relative to it
    (``target.price_scale = "relative"``, see ``walk_forward_predict``), else None."""
    t = config.target
    if task != "regression" or t.regression != "price" or t.price_scale != "relative":
        return None
    return design.prices["Close"]


def build_estimator(task: str, config: RunConfig, linear: bool = False, seed: int | None = None,
                    family: str = "lstm"):
    """The unfitted estimator for ``task`` (``regression`` or ``classification``) of ``family``: a
    network (seeded with ``seed``, default ``train.run_seed``), ``lightgbm``, or ``linear`` (also
    ``linear=True``) for the ridge/logistic baseline."""
    seed = config.train.run_seed if seed is None else seed
    refit = config.train.refit  # with early-stopped networks refitted on fit + validation, the baselines are too
    if linear or family == "linear":
        alpha = config.model.linear_alpha
        return (RidgeRegressor(alpha=alpha, refit=refit) if task == "regression"
                else LogisticClassifier(C=1.0 / alpha, refit=refit))
    if family == "lightgbm":
        return (LightGBMRegressor if task == "regression" else LightGBMClassifier)(random_state=seed, refit=refit)
    from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor  # loads torch: only when called

    cls = LSTMRegressor if task == "regression" else LSTMClassifier
    return cls(net=narrow(config.model, NetSpec), train=narrow(config.train, TrainSettings),
               device=config.train.device, random_state=seed, warm_start=config.train.warm_start, family=family)
