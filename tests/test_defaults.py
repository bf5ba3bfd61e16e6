"""One definition per default: estimators built without settings train as the default run
configures them, the run builds its walk-forward splitter in one place, and the metric keys
shared by several builders come from one builder each."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lstmbt.backtest import metrics as m
from lstmbt.backtest import significance as sig
from lstmbt.backtest.config import RunConfig, SplitConfig, TrainConfig, narrow
from lstmbt.backtest.pipeline import build_estimator
from lstmbt.backtest.splits import WalkForwardSplit
from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.linear import LogisticClassifier, RidgeRegressor
from lstmbt.models.specs import NetSpec, TrainSettings
from lstmbt.reports.compare import period_metrics


@pytest.mark.parametrize("cls", [LSTMRegressor, LSTMClassifier])
def test_an_estimator_without_settings_trains_as_the_default_run(cls):
    config, est = RunConfig(), cls()
    assert (est.net or NetSpec()) == narrow(config.model, NetSpec)
    assert (est.train or TrainSettings()) == narrow(config.train, TrainSettings)
    assert TrainSettings().mode == config.train.mode == "sequence"  # the one train.mode default
    assert (est.device, est.random_state) == (config.train.device, config.train.seed)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_the_default_runs_estimator_differs_from_a_bare_one_only_in_warm_start(task):
    """A run warm-starts its folds (train.warm_start); a bare estimator starts every fit cold."""
    run_params = build_estimator(task, RunConfig()).get_params(deep=False)
    bare = (LSTMRegressor if task == "regression" else LSTMClassifier)().get_params(deep=False)
    assert run_params.pop("warm_start") is True and bare.pop("warm_start") is False
    bare.update(net=bare["net"] or NetSpec(), train=bare["train"] or TrainSettings())
    assert run_params == bare


@pytest.mark.parametrize("task, cls", [("regression", RidgeRegressor), ("classification", LogisticClassifier)])
def test_a_bare_linear_baseline_is_the_default_runs(task, cls):
    assert build_estimator(task, RunConfig(), linear=True).get_params() == cls().get_params()


def test_no_config_section_redefines_a_default_of_the_settings_it_extends():
    for section, base in ((TrainConfig, TrainSettings), (type(RunConfig().model), NetSpec)):
        own = {f.name: f.default for f in dataclasses.fields(section)}
        for field in dataclasses.fields(base):
            assert own[field.name] == field.default, f"{section.__name__}.{field.name} redefines its default"


def test_the_split_config_builds_the_splitter_with_its_defaults():
    split = SplitConfig()
    plain = WalkForwardSplit(min_train=split.min_train, step=split.step, horizon=3)
    assert split.splitter(3) == plain  # scheme, val_fraction and embargo: one default each
    custom = SplitConfig(scheme="rolling", min_train=200, step=30, val_fraction=0.1, embargo=2)
    built = custom.splitter(2, step=7)
    assert built == WalkForwardSplit(min_train=200, step=7, horizon=2, scheme="rolling", val_fraction=0.1, embargo=2)
    assert custom.splitter(2).step == 30


# --------------------------------------------------------------------------- metric builders


def daily_returns(n: int = 300, seed: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0004, 0.01, n)


def test_return_metrics_is_the_return_part_of_every_builder():
    r, pos = daily_returns(), np.sign(daily_returns(seed=5))
    figures = m.return_metrics(r)
    assert list(figures) == ["total_return", "cagr", "ann_volatility", "sharpe", "sortino", "max_drawdown", "calmar"]
    assert figures["sharpe"] == m.sharpe(r) and figures["max_drawdown"] == m.max_drawdown(r)
    assert m.performance_metrics(r, pos) == {**figures, "exposure": m.exposure(pos),
                                             "time_invested": m.time_invested(pos), "turnover": m.turnover(pos)}
    assert period_metrics(r) == {**figures, "n_days": len(r)}


def test_sharpe_figures_equal_the_separate_tests_bit_for_bit():
    r, bench = daily_returns(), daily_returns(seed=9)
    alone = sig.sharpe_figures(r, seed=3, n_boot=200)
    assert list(alone) == ["sharpe_ci_low", "sharpe_ci_high", "psr"]
    assert (alone["sharpe_ci_low"], alone["sharpe_ci_high"]) == sig.sharpe_ci(r, n_boot=200, seed=3)
    paired = sig.sharpe_figures(r, bench, seed=3, n_boot=200)
    assert list(paired) == ["sharpe_ci_low", "sharpe_ci_high", "sharpe_diff_ci_low", "sharpe_diff_ci_high", "psr"]
    assert (paired["sharpe_diff_ci_low"], paired["sharpe_diff_ci_high"]) == sig.sharpe_diff_ci(r, bench, n_boot=200,
                                                                                               seed=3)
    assert paired["psr"] == sig.probabilistic_sharpe_ratio(r)
    full = sig.significance_metrics(r, bench, r > 0, bench > 0, n_boot=200, seed=3)
    assert {k: full[k] for k in paired} == paired
