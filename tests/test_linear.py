"""Linear baselines: the sklearn contract, the decision day's features, and runs with the LSTM switched off."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, Ridge

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.pipeline import run
from lstmbt.models.linear import LogisticClassifier, RidgeRegressor
from test_pipeline import planted_prices, write_csv


def _windows(n: int = 200, lookback: int = 5, features: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, lookback, features))
    y = X[:, -1, 0] * 2.0 - X[:, -1, 2] + 0.1 * rng.normal(size=n)
    return X, y


def test_ridge_fits_the_last_row_of_each_window_exactly_like_sklearn():
    X, y = _windows()
    ours = RidgeRegressor(alpha=0.5).fit(X, y, X[:10], y[:10])  # validation is accepted and ignored
    ref = Ridge(alpha=0.5).fit(X[:, -1, :], y)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X[:, -1, :]), rtol=0, atol=1e-12)
    X_other = X.copy()
    X_other[:, :-1, :] = 99.0  # earlier rows of the window do not matter
    np.testing.assert_allclose(RidgeRegressor(alpha=0.5).fit(X_other, y).predict(X_other), ours.predict(X), atol=1e-12)


def test_logistic_probabilities_match_sklearn_and_single_class_windows_are_handled():
    X, y = _windows()
    labels = (y > 0).astype(int)
    ours = LogisticClassifier(C=2.0).fit(X, labels)
    ref = LogisticRegression(C=2.0, max_iter=1000).fit(X[:, -1, :], labels)
    np.testing.assert_allclose(ours.predict_proba(X)[:, 1], ref.predict_proba(X[:, -1, :])[:, 1], atol=1e-10)
    assert list(ours.classes_) == [0, 1]
    assert ((ours.predict(X) == 1) == (ours.predict_proba(X)[:, 1] > 0.5)).all()
    only_up = LogisticClassifier().fit(X, np.ones(len(X), dtype=int))
    assert (only_up.predict_proba(X)[:, 1] == 1.0).all()
    assert clone(ours).get_params() == {"C": 2.0, "refit": False}


def test_unfitted_and_malformed_inputs_are_refused():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        RidgeRegressor().predict(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="windows of shape"):
        RidgeRegressor().fit(np.zeros((5, 4)), np.zeros(5))


def test_lstm_can_be_switched_off_and_baselines_still_learn_a_planted_signal(tmp_path):
    source = write_csv(tmp_path / "planted.csv", planted_prices(700, signal=True))
    cfg = RunConfig.resolve(flags={"data.source": source, "features.groups": ["volume", "returns"],
                                   "split.min_train": 300, "split.step": 100, "model.lookback": 5,
                                   "model.lstm": False})
    result = run(cfg)
    assert set(result.predictions["model"]) == {"ridge_regression", "logistic_classification"}
    assert list(result.metrics) == ["ridge_regression", "logistic_classification", "persistence", "majority",
                                    "buy_and_hold"]
    base = max(result.metrics["buy_and_hold"]["hit_rate"], 1 - result.metrics["buy_and_hold"]["hit_rate"])
    assert result.metrics["logistic_classification"]["hit_rate"] > base + 0.25
    assert result.metrics["logistic_classification"]["hit_rate_pvalue"] < 0.01
    assert not any(k.startswith("walkforward_lstm") for k in result.manifest["timings_s"])


def test_a_run_needs_at_least_one_kind_of_model():
    with pytest.raises(ConfigError, match="model.lstm, model.linear and model.lightgbm are false"):
        RunConfig().with_values({"model.lstm": False, "model.linear": False})


def test_week_mean_runs_end_to_end_with_a_five_day_purge(tmp_path):
    prices = planted_prices(700, signal=False)
    source = write_csv(tmp_path / "planted.csv", prices)
    flags = {"data.source": source, "features.groups": ["volume", "returns"], "split.min_train": 300,
             "split.step": 100, "model.lookback": 5, "model.lstm": False, "target.regression": "week_mean"}
    with pytest.raises(ConfigError, match="set target.horizon = 5"):
        RunConfig.resolve(flags=flags)
    result = run(RunConfig.resolve(flags={**flags, "target.horizon": 5}))
    ridge = result.metrics["ridge_regression"]
    assert {"rmse", "persistence_rmse", "dm_pvalue"} <= set(ridge)
    folds = result.folds[result.folds["model"] == "ridge_regression"]
    days = prices.index
    # the last training label needs the 5 closes after train_end, all known by the close before the test block
    last_label = folds["val_end"].fillna(folds["train_end"])  # the validation tail comes after the fitted rows
    gaps = [days.get_loc(test) - days.get_loc(end) for end, test in zip(last_label, folds["test_start"])]
    assert len(gaps) >= 3 and min(gaps) == 6
