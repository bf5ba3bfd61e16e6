"""``train.refit``: after early stopping picks the epochs, train on the whole usable window for that many.

What is proved: the refit runs exactly the chosen epochs over every usable sample (fit, purge gap,
validation tail) and nothing past the purge; it changes the predictions, repeatably; a warm chain
continues the selection weights, so its selection is the same with and without refit; an
interrupted walk-forward with refit resumes bit for bit; the linear baselines refit on the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.linear_model import Ridge

from lstmbt.backtest.splits import WalkForwardSplit
from lstmbt.backtest.walkforward import make_sample_grid, scaled_matrix, walk_forward_predict
from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.linear import RidgeRegressor
from lstmbt.models.specs import NetSpec, TrainSettings

LOOKBACK = 4
pytestmark = pytest.mark.usefixtures("one_torch_thread")
NET = NetSpec(hidden_size=4, num_layers=1, dropout=0.0, head=())
#: a high learning rate on a clear signal: the validation loss turns within a few epochs, so
#: early stopping picks fewer epochs than it ran, and warm fits both continue and keep weights
TRAIN = dict(lr=0.02, max_epochs=4, warm_epochs=2, patience=2, chunk_len=16, batch_size=16)


def signal_case(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Two features and a target that is mostly today's first feature (learnable in a few epochs)."""
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2020-01-01", periods=n)
    features = pd.DataFrame(rng.normal(size=(n, 2)), index=index, columns=["a", "b"])
    target = pd.Series(0.01 * features["a"].to_numpy() + 0.004 * rng.normal(size=n), index=index)
    return features, target


def lstm(refit: bool, mode: str = "window", warm: bool = False, cls=LSTMRegressor, **train):
    return cls(net=NET, train=TrainSettings(refit=refit, mode=mode, **TRAIN, **train), device="cpu", random_state=7,
               warm_start=warm)


def walk(estimator, val_fraction: float = 0.25, **kwargs):
    features, target = signal_case()
    grid = make_sample_grid(features, target, LOOKBACK)
    folds = WalkForwardSplit(min_train=80, step=20, horizon=1, val_fraction=val_fraction).split(grid.n)
    return walk_forward_predict(estimator, features, target, grid, folds, **kwargs)


def windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive windows of one series, as the walk-forward passes them, and a learnable target."""
    rng = np.random.default_rng(seed)
    series = rng.normal(size=(n + LOOKBACK - 1, 2)).astype(np.float32)
    X = np.lib.stride_tricks.sliding_window_view(series, LOOKBACK, axis=0).transpose(0, 2, 1)
    return np.ascontiguousarray(X), 0.01 * X[:, -1, 0] + 0.004 * rng.normal(size=n)


# --------------------------------------------------------------------------- the estimator


@pytest.mark.parametrize("cls", [LSTMRegressor, LSTMClassifier])
def test_refit_full_runs_the_chosen_epochs_over_every_sample(cls):
    X, y = windows(160, 1)
    y = y if cls is LSTMRegressor else (y > 0).astype(float)
    fit, val = slice(0, 100), slice(101, 160)  # one purged sample between them, as the split leaves
    settings = TrainSettings(refit=True, mode="window", **{**TRAIN, "max_epochs": 12, "patience": 1, "lr": 0.05})
    est = cls(net=NET, train=settings, device="cpu", random_state=7).fit(X[fit], y[fit], X[val], y[val])
    assert est.log_.stopped_early and est.best_epoch_ + 1 < est.n_epochs_  # so the two counts differ
    before = est.predict(X)
    est.refit_full(X, y)
    assert est.refit_epochs_ == est.best_epoch_ + 1 == est.refit_log_.n_epochs
    assert est.refit_n_samples_ == len(X)
    # window mode: every epoch runs every one of the N windows of L steps once
    assert est.refit_log_.train_steps == est.refit_epochs_ * len(X) * LOOKBACK
    assert est.refit_log_.lr == est.log_.lr[: est.best_epoch_ + 1]  # the selection run's schedule
    assert not np.array_equal(est.predict(X), before)


def test_refit_full_is_refused_without_a_selection_fit():
    X, y = windows(80, 2)
    with pytest.raises(ValueError, match="train.refit=True"):
        lstm(False).fit(X[:50], y[:50], X[51:], y[51:]).refit_full(X, y)
    with pytest.raises(ValueError, match="validation data"):
        lstm(True).fit(X, y).refit_full(X, y)  # no validation: no epochs were chosen
    once = lstm(True).fit(X[:50], y[:50], X[51:], y[51:]).refit_full(X, y)
    with pytest.raises(ValueError, match="right before"):
        once.refit_full(X, y)  # a second refit would start from the refitted weights


# --------------------------------------------------------------------------- the fold loop


class Recorder(RegressorMixin, BaseEstimator):
    """Records the labels (here: row numbers) and weights each call trains on; predicts 0."""

    calls: list[tuple[str, np.ndarray, np.ndarray | None]] = []

    def __init__(self, refit: bool = True) -> None:
        self.refit = refit

    @property
    def refits(self) -> bool:
        return self.refit

    def fit(self, X, y, X_val=None, y_val=None, *, sample_weight=None):
        Recorder.calls.append(("fit", np.asarray(y).copy(), sample_weight))
        return self

    def refit_full(self, X, y, *, sample_weight=None):
        assert X.shape == (len(y), LOOKBACK, 1)
        Recorder.calls.append(("refit", np.asarray(y).copy(), sample_weight))
        return self

    def predict(self, X):
        return np.zeros(len(X))


@pytest.mark.parametrize("horizon, embargo", [(1, 0), (3, 2)])
def test_the_refit_trains_on_every_usable_row_and_none_past_the_purge(horizon, embargo):
    n = 260
    index = pd.bdate_range("2020-01-01", periods=n)
    features = pd.DataFrame({"x": np.arange(n, dtype=float)}, index=index)
    target = pd.Series(np.arange(n, dtype=float), index=index)  # each label names its row
    weight = pd.Series(np.linspace(0.5, 1.5, n), index=index)
    grid = make_sample_grid(features, target, LOOKBACK)
    folds = WalkForwardSplit(min_train=90, step=30, horizon=horizon, embargo=embargo,
                             val_fraction=0.2).split(grid.n)
    Recorder.calls = []
    _, log = walk_forward_predict(Recorder(), features, target, grid, folds, train_weight=weight)
    refits = [(rows, w) for kind, rows, w in Recorder.calls if kind == "refit"]
    assert len(refits) == len(folds) and log["refit"].all() and (log["refit_epochs"] == 0).all()
    for fold, (rows, w) in zip(folds, refits):
        test_row = grid.rows(fold.test)[0]
        # the label of row t is realised at t + horizon; retraining happens at the close of test_row - 1
        assert rows.max() + horizon + embargo == test_row - 1
        np.testing.assert_array_equal(rows, np.arange(grid.rows(fold.train)[0], rows.max() + 1))
        np.testing.assert_array_equal(w, weight.to_numpy()[rows.astype(int)])
    # the fold log names the fitted range apart from the validation tail (train_* are the old names)
    dates = grid.dates
    assert list(log["fit_end"]) == [dates[f.train[-1]] for f in folds] == list(log["train_end"])
    assert list(log["fit_start"]) == list(log["train_start"])
    assert (log["fit_end"] < log["val_start"]).all() and (log["val_end"] < log["test_start"]).all()


def test_no_refit_without_validation_or_when_off():
    features, target = signal_case(120)
    grid = make_sample_grid(features, target, LOOKBACK)
    for refit, val_fraction in [(True, 0.0), (False, 0.2)]:
        folds = WalkForwardSplit(min_train=60, step=30, val_fraction=val_fraction).split(grid.n)
        Recorder.calls = []
        _, log = walk_forward_predict(Recorder(refit=refit), features, target, grid, folds)
        assert [kind for kind, *_ in Recorder.calls] == ["fit"] * len(folds)
        assert not log["refit"].any() and (log["refit_epochs"] == 0).all()


@pytest.mark.parametrize("mode, warm", [("window", False), ("sequence", True)])
def test_refit_changes_predictions_and_repeats_them(mode, warm):
    off, off_log = walk(lstm(False, mode, warm))
    on, on_log = walk(lstm(True, mode, warm))
    again, again_log = walk(lstm(True, mode, warm))
    pd.testing.assert_frame_equal(on, again, check_exact=True)
    drop = ["fit_seconds"]
    pd.testing.assert_frame_equal(on_log.drop(columns=drop), again_log.drop(columns=drop), check_exact=True)
    assert (on_log["refit_epochs"] == on_log["best_epoch"]).all() and on_log["refit"].all()
    changed = [not np.array_equal(on.loc[on["fold"] == k, "y_pred"], off.loc[off["fold"] == k, "y_pred"])
               for k in on_log["fold"]]
    assert changed == list(on_log["refit_epochs"] > 0) and any(changed)


@pytest.mark.parametrize("mode", ["sequence", "window"])
def test_a_warm_refit_chain_continues_the_selection_weights(mode):
    """Refit or not, each fold's early stopping sees the same carried weights: the selection is the same;
    where a warm fit kept the carried weights there is nothing to refit and the predictions are equal."""
    strict = {"warm_accept_z": 2.0}  # so that some warm fits keep the carried weights and some do not
    off, off_log = walk(lstm(False, mode, warm=True, **strict))
    on, on_log = walk(lstm(True, mode, warm=True, **strict))
    same = ["fold", "warm", "epochs", "best_epoch", "best_val_loss"]
    pd.testing.assert_frame_equal(on_log[same], off_log[same], check_exact=True)
    assert on_log["warm"].iloc[1:].any()  # the chain did continue
    kept = on_log["best_epoch"] == 0
    assert kept.any() and (~kept).any()
    for fold, refit_epochs in zip(on_log["fold"], on_log["refit_epochs"]):
        a, b = (frame.loc[frame["fold"] == fold, "y_pred"].to_numpy() for frame in (on, off))
        assert np.array_equal(a, b) == (refit_epochs == 0)


def test_an_interrupted_warm_refit_chain_resumes_bit_for_bit(tmp_path):
    est = lstm(True, "sequence", warm=True)
    expected, expected_log = walk(est)

    def stop_after_three(entry):
        if entry["fold"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        walk(est, on_fold=stop_after_three, checkpoint_dir=tmp_path)
    got, log = walk(est, checkpoint_dir=tmp_path)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    pd.testing.assert_frame_equal(log.drop(columns="fit_seconds"), expected_log.drop(columns="fit_seconds"))
    # the chain crossed the stop after a fold whose refitted weights differ from its selected ones,
    # so the resumed fold 4 matches only if the saved state holds the chain as well
    assert log.loc[3, "refit_epochs"] > 0 and log.loc[4, "warm"]


def test_the_refit_weights_and_the_chain_survive_a_checkpoint():
    X, y = windows(200, 3)
    est = lstm(True, warm=True).fit(X[:100], y[:100], X[101:140], y[101:140]).refit_full(X[:140], y[:140])
    restored = clone(est).set_checkpoint(est.get_checkpoint())
    np.testing.assert_array_equal(restored.predict(X), est.predict(X))
    assert restored.refit_epochs_ == est.refit_epochs_ and restored.refit_n_samples_ == 140
    for model in (est, restored):
        model.fit(X[:140], y[:140], X[141:], y[141:])
    assert est.warm_started_ and restored.warm_started_
    np.testing.assert_array_equal(restored.predict(X), est.predict(X))


def test_linear_baselines_refit_on_the_whole_usable_window():
    features, target = signal_case()
    grid = make_sample_grid(features, target, LOOKBACK)
    folds = WalkForwardSplit(min_train=80, step=40, horizon=2, val_fraction=0.25).split(grid.n)
    off, _ = walk_forward_predict(RidgeRegressor(alpha=1.0), features, target, grid, folds)
    on, log = walk_forward_predict(RidgeRegressor(alpha=1.0, refit=True), features, target, grid, folds)
    assert log["refit"].all()
    fold = folds[-1]
    matrix = scaled_matrix(features, grid.rows(np.concatenate([fold.train, fold.val]))).astype(np.float64)
    usable = grid.rows(np.arange(fold.train[0], fold.val[-1] + 1))
    hand = Ridge(alpha=1.0).fit(matrix[usable], target.to_numpy()[usable])
    expected = hand.predict(matrix[grid.rows(fold.test)])
    np.testing.assert_allclose(on.loc[on["fold"] == fold.index, "y_pred"], expected, rtol=1e-9)
    assert not np.allclose(off.loc[off["fold"] == fold.index, "y_pred"], expected, rtol=1e-3, atol=0)
