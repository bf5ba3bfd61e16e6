"""The fold loop equals a hand-written per-fold scale/window/fit/predict, and it never looks ahead.

Modelled on darts' ``test_historical_forecasts_with_scaler``: the engine's output is compared with
a loop written out in the test using numpy only (no ``models.windows``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.errors import DataError
from lstmbt.backtest.splits import WalkForwardSplit
from lstmbt.backtest.walkforward import make_sample_grid, walk_forward_predict
from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.networks import NetSpec
from lstmbt.models.training import TrainSettings

LOOKBACK = 5
SPEC = NetSpec(hidden_size=4, num_layers=1, dropout=0.0, head=())
SETTINGS = TrainSettings(max_epochs=3, batch_size=16, mode="window")
SEED = 7
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_case(n_rows: int = 150, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Features with a 3-row warm-up in one column, a return-like target and its direction."""
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2020-01-01", periods=n_rows, name="Date")
    values = rng.normal(size=(n_rows, 3)) * [1.0, 5.0, 0.1] + [0.0, 3.0, -1.0]
    features = pd.DataFrame(values, index=index, columns=["a", "b", "c"])
    features.iloc[:3, 1] = np.nan  # column b warms up for 3 rows
    ret = pd.Series(0.01 * values[:, 0] + 0.01 * rng.normal(size=n_rows), index=index)
    ret.iloc[-1] = np.nan  # the last day has no realised label (h = 1)
    direction = (ret > 0).astype(float).where(ret.notna())
    return features, ret, direction


def estimator(cls):
    return cls(net=SPEC, train=SETTINGS, device="cpu", random_state=SEED)


def hand_loop(cls, features: pd.DataFrame, target: pd.Series, splitter: WalkForwardSplit):
    """Walk forward written out by hand: rows, scaler, windows, fit and predict per fold."""
    values = features.to_numpy(dtype=np.float64)
    y = target.to_numpy(dtype=np.float64)
    first_valid = int(np.flatnonzero(~np.isnan(values).any(axis=1))[0])
    first_row = first_valid + LOOKBACK - 1
    last_row = int(np.flatnonzero(~np.isnan(y))[-1])
    n = last_row - first_row + 1
    dates, folds, y_true, y_pred, p_up = [], [], [], [], []
    for fold in splitter.split(n):
        fit_rows = first_row + np.concatenate([fold.train, fold.val])
        mean = values[fit_rows].mean(axis=0)
        std = values[fit_rows].std(axis=0)
        scaled = ((values - mean) / std).astype(np.float32)

        def windows(positions):
            rows = first_row + positions
            return np.stack([scaled[r - LOOKBACK + 1 : r + 1] for r in rows])

        model = estimator(cls)
        model.fit(windows(fold.train), y[first_row + fold.train], windows(fold.val), y[first_row + fold.val])
        x_test = windows(fold.test)
        if cls is LSTMClassifier:
            prob = model.predict_proba(x_test)[:, 1]
            y_pred.append((prob > 0.5).astype(float))
            p_up.append(prob)
        else:
            y_pred.append(model.predict(x_test))
            p_up.append(np.full(len(fold.test), np.nan))
        dates.append(features.index[first_row + fold.test])
        folds.append(np.full(len(fold.test), fold.index))
        y_true.append(y[first_row + fold.test])
    return (dates[0].append(dates[1:]), np.concatenate(folds), np.concatenate(y_true),
            np.concatenate(y_pred), np.concatenate(p_up))


def engine(cls, features, target, splitter, grid_target=None):
    grid = make_sample_grid(features, target if grid_target is None else grid_target, LOOKBACK)
    return walk_forward_predict(estimator(cls), features, target, grid, splitter.split(grid.n))


@pytest.mark.parametrize("cls", [LSTMRegressor, LSTMClassifier])
def test_engine_equals_hand_written_loop(cls):
    features, ret, direction = make_case()
    target = ret if cls is LSTMRegressor else direction
    splitter = WalkForwardSplit(min_train=80, step=20, horizon=1)
    preds, log = engine(cls, features, target, splitter)
    dates, folds, y_true, y_pred, p_up = hand_loop(cls, features, target, splitter)

    assert list(preds.columns) == ["date", "fold", "y_true", "y_pred", "p_up"]
    assert len(preds) == len(dates) == 150 - 1 - (3 + LOOKBACK - 1) - 80  # every test day once
    assert pd.DatetimeIndex(preds["date"]).equals(pd.DatetimeIndex(dates))
    np.testing.assert_array_equal(preds["fold"].to_numpy(), folds)
    np.testing.assert_array_equal(preds["y_true"].to_numpy(), y_true)
    np.testing.assert_array_equal(preds["y_pred"].to_numpy(), y_pred)
    np.testing.assert_array_equal(preds["p_up"].to_numpy(), p_up)
    assert np.isnan(p_up).all() == (cls is LSTMRegressor)
    assert np.unique(y_pred if cls is LSTMRegressor else p_up).size > 1  # not two constants compared

    assert list(log["fold"]) == [0, 1, 2, 3]
    assert list(log["n_test"]) == [20, 20, 20, 2]
    assert (log["n_train"] + log["n_val"] < 80 + 20 * log["fold"]).all()  # the purge removed samples
    assert (log["train_end"] < log["val_start"]).all() and (log["val_end"] < log["test_start"]).all()


def test_make_sample_grid_finds_first_and_last_rows():
    features, ret, _ = make_case()
    features.iloc[:9, 0] = np.nan  # column a now warms up longest: 9 rows
    h = 5
    target = ret.copy()
    target.iloc[-h:] = np.nan
    grid = make_sample_grid(features, target, LOOKBACK)
    assert grid.first_row == 9 + LOOKBACK - 1
    last_row = len(features) - h - 1
    assert grid.n == last_row - grid.first_row + 1
    assert grid.lookback == LOOKBACK
    assert grid.dates.equals(features.index[grid.first_row : last_row + 1])
    np.testing.assert_array_equal(grid.rows(np.array([0, grid.n - 1])), [grid.first_row, last_row])
    # the first sample's window starts on the first fully valid row
    assert features.iloc[grid.first_row - LOOKBACK + 1 :].notna().all().all()
    assert features.iloc[grid.first_row - LOOKBACK].isna().any()


def test_make_sample_grid_rejects_an_all_nan_feature():
    features, ret, _ = make_case()
    features["dead"] = np.nan
    with pytest.raises(DataError, match="dead"):
        make_sample_grid(features, ret, LOOKBACK)


def test_make_sample_grid_rejects_gaps():
    features, ret, _ = make_case()
    gappy = features.copy()
    gappy.iloc[50, 2] = np.nan
    with pytest.raises(ValueError, match="gaps"):
        make_sample_grid(gappy, ret, LOOKBACK)
    holed = ret.copy()
    holed.iloc[60] = np.nan
    with pytest.raises(ValueError, match="gaps"):
        make_sample_grid(features, holed, LOOKBACK)


@pytest.mark.parametrize("cls", [LSTMRegressor, LSTMClassifier])
def test_rows_after_a_fold_never_shape_it(cls):
    """Scaler, windows and fit of a fold see nothing dated after its last training row.

    Blow up every feature value after test day j of fold 1: all predictions up to that day,
    and the fitted models of folds 0 and 1, must be unchanged bit for bit.
    """
    features, ret, direction = make_case()
    target = ret if cls is LSTMRegressor else direction
    splitter = WalkForwardSplit(min_train=80, step=20, horizon=1)
    base_preds, base_log = engine(cls, features, target, splitter)

    grid = make_sample_grid(features, target, LOOKBACK)
    fold1 = splitter.split(grid.n)[1]
    cut_row = int(grid.rows(fold1.test[4]))  # last row left alone
    perturbed = features.copy()
    perturbed.iloc[cut_row + 1 :] = perturbed.iloc[cut_row + 1 :] * 1000.0 + 50.0
    # the labels stay; they are only read through the sample positions of each fold
    preds, log = engine(cls, perturbed, target, splitter)

    cut_date = features.index[cut_row]
    before = (base_preds["date"] <= cut_date).to_numpy()
    assert before.sum() == 20 + 5
    pd.testing.assert_frame_equal(preds[before], base_preds[before], check_exact=True)
    for col in ("epochs", "best_epoch", "best_val_loss"):
        np.testing.assert_array_equal(log[col].to_numpy()[:2], base_log[col].to_numpy()[:2])
    # and the perturbation is not a no-op for what comes after
    assert not np.array_equal(preds.loc[~before, "p_up" if cls is LSTMClassifier else "y_pred"],
                              base_preds.loc[~before, "p_up" if cls is LSTMClassifier else "y_pred"])


def test_on_fold_reports_every_fold():
    features, ret, _ = make_case()
    grid = make_sample_grid(features, ret, LOOKBACK)
    folds = WalkForwardSplit(min_train=80, step=20).split(grid.n)
    seen = []
    _, log = walk_forward_predict(estimator(LSTMRegressor), features, ret, grid, folds, on_fold=seen.append)
    assert [entry["fold"] for entry in seen] == [0, 1, 2, 3]
    assert seen == log.to_dict("records")
