"""The up/down label's dead zone: sample weights in every estimator, the fold loop and the config.

A training sample of weight 0 must not move the fit at all (its label can be anything), weights
must scale the loss and be normalised by their sum, validation and test days are never
weighted, and the dead-zone weight of day t uses closes t and t + h only.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge

from lstmbt.backtest.config import RunConfig, TargetConfig
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.backtest.splits import WalkForwardSplit
from lstmbt.backtest.walkforward import make_sample_grid, walk_forward_predict
from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.linear import LogisticClassifier, RidgeRegressor
from lstmbt.models.networks import NetSpec
from lstmbt.models.targets import dead_zone_weights, make_target
from lstmbt.models.training import Feed, TrainSettings
from lstmbt.models.windows import sliding_windows

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPEC = NetSpec(hidden_size=4, num_layers=1, dropout=0.0, head=())
MODES = {
    "window": TrainSettings(max_epochs=3, batch_size=16, mode="window"),
    "sequence": TrainSettings(max_epochs=3, mode="sequence", chunk_len=8, chunks_per_batch=2),
}



def series_windows(n: int = 60, lookback: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive windows (n, L, 3) of one series (so sequence mode can chunk them) and a 0/1 label."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n + lookback - 1, 3)).astype(np.float32)
    windows = sliding_windows(values, lookback)
    label = (windows[:, -1, 0] + 0.3 * rng.normal(size=n) > 0).astype(np.float64)
    return windows, label


def lstm(cls, mode: str):
    return cls(net=SPEC, train=MODES[mode], device="cpu", random_state=3)


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------ LSTM weights


@pytest.mark.parametrize("mode", MODES)
def test_a_weight_zero_sample_does_not_move_the_classifier_whatever_its_label(mode):
    X, y = series_windows()
    weight = np.ones(len(y))
    dropped = np.arange(3, len(y), 4)  # inside chunks and at their edges in sequence mode
    weight[dropped] = 0.0
    flipped = y.copy()
    flipped[dropped] = 1.0 - flipped[dropped]
    val = series_windows(20, seed=1)
    a = lstm(LSTMClassifier, mode).fit(X, y, *val, sample_weight=weight)
    b = lstm(LSTMClassifier, mode).fit(X, flipped, *val, sample_weight=weight)
    assert state_equal(a.net_, b.net_)
    assert a.log_.val_loss == b.log_.val_loss
    # the same flip on weight-1 samples does change the fit, so the check above can fail
    c = lstm(LSTMClassifier, mode).fit(X, flipped, *val, sample_weight=np.ones(len(y)))
    assert not state_equal(a.net_, c.net_)


@pytest.mark.parametrize("mode", MODES)
def test_a_weight_zero_sample_does_not_move_the_regressor_or_its_target_scaling(mode):
    X, y = series_windows()
    target = X[:, -1, 0].astype(np.float64)
    weight = np.ones(len(y))
    weight[[5, 17, 40]] = 0.0
    absurd = target.copy()
    absurd[[5, 17, 40]] = 1e6
    a = lstm(LSTMRegressor, mode).fit(X, target, sample_weight=weight)
    b = lstm(LSTMRegressor, mode).fit(X, absurd, sample_weight=weight)
    assert (a.y_mean_, a.y_scale_) == (b.y_mean_, b.y_scale_)
    assert state_equal(a.net_, b.net_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.parametrize("mode", MODES)
def test_the_loss_is_normalised_by_the_weight_sum_and_weights_matter(mode):
    X, y = series_windows()
    plain = lstm(LSTMClassifier, mode).fit(X, y)
    ones = lstm(LSTMClassifier, mode).fit(X, y, sample_weight=np.ones(len(y)))
    twos = lstm(LSTMClassifier, mode).fit(X, y, sample_weight=np.full(len(y), 2.0))
    assert state_equal(plain.net_, ones.net_) and state_equal(plain.net_, twos.net_)
    assert plain.log_.train_loss == twos.log_.train_loss
    uneven = np.where(np.arange(len(y)) % 3 == 0, 5.0, 0.5)
    assert not state_equal(plain.net_, lstm(LSTMClassifier, mode).fit(X, y, sample_weight=uneven).net_)


def test_the_sequence_feed_folds_weights_into_the_chunk_mask_and_skips_weightless_units():
    X, y = series_windows(20)
    weight = np.linspace(0.0, 1.9, 20)
    feed = Feed(X, y.astype(np.int64), "sequence", 8, CPU, weight=weight)
    plain = Feed(X, y.astype(np.int64), "sequence", 8, CPU)
    expected = plain.mask.numpy() * np.stack([weight[s : s + 8] for s in feed.starts]).astype(np.float32)
    np.testing.assert_array_equal(feed.mask.numpy(), expected)
    assert feed.active is None and plain.active is None
    window = Feed(X, y.astype(np.int64), "window", 8, CPU, weight=np.r_[np.zeros(3), np.ones(17)])
    assert window.active.tolist() == [False] * 3 + [True] * 17


@pytest.mark.parametrize("make", [LSTMClassifier, LSTMRegressor, LogisticClassifier, RidgeRegressor])
@pytest.mark.parametrize("weight, message", [
    (np.ones(7), "shape"), (np.r_[np.ones(59), np.nan], "NaN"), (np.r_[np.ones(59), -1.0], "negative"),
    (np.zeros(60), "zero for every sample"),
])
def test_bad_sample_weights_are_refused(make, weight, message):
    X, y = series_windows()
    with pytest.raises(ValueError, match=message):
        make().fit(X, y, sample_weight=weight)


# ---------------------------------------------------------------------------------- linear weights


def test_linear_models_pass_sample_weight_to_sklearn():
    X, y = series_windows(200)
    X = X.astype(np.float64)  # the linear models fit in float64
    rng = np.random.default_rng(4)
    weight = rng.uniform(0.0, 2.0, size=len(y))
    weight[::7] = 0.0
    target = X[:, -1, 0] * 0.5 + 0.1 * rng.normal(size=len(y))
    ridge = RidgeRegressor(alpha=0.5).fit(X, target, sample_weight=weight)
    ref = Ridge(alpha=0.5).fit(X[:, -1, :], target, sample_weight=weight)
    np.testing.assert_allclose(ridge.predict(X), ref.predict(X[:, -1, :]), rtol=0, atol=1e-12)
    logit = LogisticClassifier(C=2.0).fit(X, y, sample_weight=weight)
    ref = LogisticRegression(C=2.0, max_iter=1000).fit(X[:, -1, :], y.astype(int), sample_weight=weight)
    np.testing.assert_allclose(logit.predict_proba(X)[:, 1], ref.predict_proba(X[:, -1, :])[:, 1], atol=1e-10)
    unweighted = LogisticClassifier(C=2.0).fit(X, y)
    assert not np.allclose(unweighted.predict_proba(X), logit.predict_proba(X), atol=1e-6)


def test_logistic_with_all_weight_on_one_class_predicts_that_class():
    X, y = series_windows()
    only_up = LogisticClassifier().fit(X, y, sample_weight=(y == 1).astype(float))
    assert only_up.model_ is None and (only_up.predict_proba(X)[:, 1] == 1.0).all()
    only_down = LogisticClassifier().fit(X, y, sample_weight=(y == 0).astype(float))
    assert (only_down.predict_proba(X)[:, 1] == 0.0).all()


# ------------------------------------------------------------------------------------ walk-forward


def fold_case(n_rows: int = 140, seed: int = 0):
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2020-01-01", periods=n_rows, name="Date")
    features = pd.DataFrame(rng.normal(size=(n_rows, 3)), index=index, columns=["a", "b", "c"])
    ret = pd.Series(0.01 * features["a"].to_numpy() + 0.01 * rng.normal(size=n_rows), index=index)
    ret.iloc[-1] = np.nan
    direction = (ret > 0).astype(float).where(ret.notna())
    grid = make_sample_grid(features, direction, 5)
    folds = WalkForwardSplit(min_train=60, step=25, horizon=1, val_fraction=0.25).split(grid.n)
    return features, ret, direction, grid, folds


@pytest.mark.parametrize("cls", [LSTMClassifier, LogisticClassifier])
def test_all_ones_weights_give_the_unweighted_walk_forward_bit_for_bit(cls):
    features, _, direction, grid, folds = fold_case()
    make = (lambda: lstm(cls, "window")) if cls is LSTMClassifier else cls
    plain, plain_log = walk_forward_predict(make(), features, direction, grid, folds)
    ones = pd.Series(1.0, index=direction.index).where(direction.notna())
    weighted, weighted_log = walk_forward_predict(make(), features, direction, grid, folds, train_weight=ones)
    pd.testing.assert_frame_equal(plain, weighted, check_exact=True)
    pd.testing.assert_frame_equal(plain_log.drop(columns="fit_seconds"), weighted_log.drop(columns="fit_seconds"))


class _Recorder(LogisticClassifier):
    calls: list = []

    def fit(self, X, y, X_val=None, y_val=None, *, sample_weight=None):
        _Recorder.calls.append((len(X), None if X_val is None else len(X_val), sample_weight))
        return super().fit(X, y, X_val, y_val, sample_weight=sample_weight)


def test_each_fold_fits_with_its_training_rows_weights_and_no_validation_weights():
    features, _, direction, grid, folds = fold_case()
    weight = pd.Series(np.arange(len(direction), dtype=float) % 5, index=direction.index)
    _Recorder.calls = []
    walk_forward_predict(_Recorder(), features, direction, grid, folds, train_weight=weight)
    assert len(_Recorder.calls) == len(folds)
    for fold, (n_fit, n_val, got) in zip(folds, _Recorder.calls):
        assert (n_fit, n_val) == (len(fold.train), len(fold.val))
        np.testing.assert_array_equal(got, weight.to_numpy()[grid.rows(fold.train)])


def test_walk_forward_refuses_misaligned_or_weightless_train_weights():
    features, _, direction, grid, folds = fold_case()
    with pytest.raises(ValueError, match="indexed like the target"):
        walk_forward_predict(LogisticClassifier(), features, direction, grid, folds,
                             train_weight=pd.Series(1.0, index=direction.index[1:]))
    with pytest.raises(DataError, match="lower target.dead_zone"):
        walk_forward_predict(LogisticClassifier(), features, direction, grid, folds,
                             train_weight=pd.Series(0.0, index=direction.index))


# ------------------------------------------------------------------------------- dead-zone weights


def closes(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"Close": values}, index=pd.bdate_range("2021-01-04", periods=len(values)))


def test_dead_zone_weights_by_hand():
    prices = closes([100.0, 100.05, 101.0, 100.9, 100.9, 99.0])
    # 1-day log returns: +0.0005, +0.0094, -0.00099, 0.0, -0.0190, unknown
    one = dead_zone_weights(prices, 1, 0.001)
    np.testing.assert_array_equal(one.to_numpy(), [0.0, 1.0, 0.0, 0.0, 1.0, np.nan])
    # 2-day: log(101/100) = 0.00995, log(100.9/100.05) = 0.0085, log(100.9/101) = -0.00099,
    # log(99/100.9) = -0.019, then unknown twice
    two = dead_zone_weights(prices, 2, 0.009)
    np.testing.assert_array_equal(two.to_numpy(), [1.0, 0.0, 0.0, 1.0, np.nan, np.nan])
    every = dead_zone_weights(prices, 1, 0.0)  # no dead zone: every labelled day, a flat one too
    np.testing.assert_array_equal(every.to_numpy(), [1.0] * 5 + [np.nan])
    np.testing.assert_array_equal(every.isna(), make_target(prices, "direction", 1).isna())
    edge = dead_zone_weights(closes([100.0, 100.0 * math.exp(0.002)]), 1, 0.002)
    assert edge.iloc[0] == 1.0  # |r| == dead_zone is outside the zone


@pytest.mark.parametrize("horizon", [1, 3])
def test_dead_zone_weight_at_t_uses_closes_t_to_t_plus_h_only(horizon):
    rng = np.random.default_rng(0)
    prices = closes((100 * np.exp(np.cumsum(0.003 * rng.normal(size=40)))).tolist())
    base = dead_zone_weights(prices, horizon, 0.002)
    day = 20
    later = prices.copy()
    later.iloc[day + 1 :, 0] = 100.0  # every close after day D: flat, so no move leaves the zone
    moved = dead_zone_weights(later, horizon, 0.002)
    pd.testing.assert_series_equal(base.iloc[: day + 1 - horizon], moved.iloc[: day + 1 - horizon])
    assert not base.iloc[day + 1 - horizon :].equals(moved.iloc[day + 1 - horizon :])


def test_dead_zone_weights_refuse_bad_arguments():
    with pytest.raises(ValueError, match="horizon"):
        dead_zone_weights(closes([1.0, 2.0]), 0, 0.001)
    with pytest.raises(ValueError, match="dead_zone"):
        dead_zone_weights(closes([1.0, 2.0]), 1, 0.5)


# ------------------------------------------------------------------------------------------ config


def test_config_dead_zone_default_override_and_range():
    assert TargetConfig().dead_zone == 0.0
    assert RunConfig.resolve(overrides={"target.dead_zone": 0.001}).target.dead_zone == 0.001
    assert RunConfig.resolve(overrides={"target.dead_zone": 0}).target.dead_zone == 0
    for bad in (-0.001, 0.5, 2.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match=r"target\.dead_zone = .* fraction of price >= 0 and < 0\.5"):
            TargetConfig(dead_zone=bad)
    with pytest.raises(ConfigError, match="target.dead_zone"):
        RunConfig.resolve(overrides={"target.dead_zone": "wide"})


def test_a_run_and_a_forecast_with_a_dead_zone_train_on_fewer_days(tmp_path):
    """End to end: the classifier is fitted without the days inside the zone, the regressor on all."""
    from lstmbt.backtest.config import RunConfig
    from lstmbt.backtest.forecast import forecast_next
    from lstmbt.backtest.pipeline import run
    from test_pipeline import planted_prices, write_csv

    source = write_csv(tmp_path / "p.csv", planted_prices(700, signal=True))
    flags = {"data.source": source, "features.groups": ["volume", "returns"], "split.min_train": 300,
             "split.step": 100, "model.lookback": 5, "model.lstm": False}
    plain = run(RunConfig.resolve(flags=flags))
    zoned = run(RunConfig.resolve(flags={**flags, "target.dead_zone": 0.008}))
    p_plain = plain.predictions.query("model == 'logistic_classification'")["p_up"].to_numpy()
    p_zoned = zoned.predictions.query("model == 'logistic_classification'")["p_up"].to_numpy()
    assert not np.allclose(p_plain, p_zoned)  # the zone changed what the classifier learned from
    r_plain = plain.predictions.query("model == 'ridge_regression'")["y_pred"].to_numpy()
    r_zoned = zoned.predictions.query("model == 'ridge_regression'")["y_pred"].to_numpy()
    np.testing.assert_array_equal(r_plain, r_zoned)  # regressors are never weighted
    assert len(p_zoned) == len(p_plain)  # every test day is still predicted and scored
    f_plain = forecast_next(RunConfig.resolve(flags=flags)).classification.p_up
    f_zoned = forecast_next(RunConfig.resolve(flags={**flags, "target.dead_zone": 0.008})).classification.p_up
    assert f_plain != f_zoned
