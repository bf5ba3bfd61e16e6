"""Folds whose positions are several runs (combinatorial purged CV): the fold loop equals a hand-written
fit on the gathered windows and a per-run predict, refits on ``Fold.usable``, and refuses what would leak.

The hand-written loop uses numpy only (no ``models.windows``, no ``backtest.walkforward`` helpers),
as ``test_walkforward`` does for walk-forward folds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.splits import Fold, WalkForwardSplit
from lstmbt.backtest.walkforward import make_sample_grid, walk_forward_predict
from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.linear import LogisticClassifier, RidgeRegressor
from lstmbt.models.specs import NetSpec, TrainSettings
from test_walkforward import make_case as walkforward_case

LOOKBACK = 5
SPEC = NetSpec(hidden_size=4, num_layers=1, dropout=0.0, head=())
SEQ = TrainSettings(max_epochs=3, mode="sequence", chunk_len=8, chunks_per_batch=2, patience=10)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_case(n_rows: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """``test_walkforward``'s case (features with a 3-row warm-up in one column, a return-like
    target and its direction), 200 rows long so two folds fit."""
    return walkforward_case(n_rows, seed)


def cpcv_folds() -> list[Fold]:
    """Two folds as combinatorial purged CV makes them: test groups not adjacent, training on both
    sides of them (purged and embargoed), so train, test and the refit window are several runs."""
    return [
        Fold(index=0, train=np.r_[0:37, 63:115], val=np.r_[143:165], test=np.r_[40:60, 120:140],
             usable=np.r_[0:37, 63:117, 143:165]),
        Fold(index=1, train=np.r_[0:20, 100:170], val=np.array([], dtype=int), test=np.r_[25:45, 70:90]),
    ]


def lstm(cls, settings: TrainSettings = SEQ):
    return lambda: cls(net=SPEC, train=settings, device="cpu", random_state=7)


def hand_loop(make, features: pd.DataFrame, target: pd.Series, folds: list[Fold]):
    """Per fold: scale on train + val rows, gather windows by hand, fit, refit on ``usable``, predict each test run."""
    values, y = features.to_numpy(dtype=np.float64), target.to_numpy(dtype=np.float64)
    first_row = int(np.flatnonzero(~np.isnan(values).any(axis=1))[0]) + LOOKBACK - 1
    dates, y_pred, p_up = [], [], []
    for fold in folds:
        fit_rows = first_row + np.concatenate([fold.train, fold.val])
        scaled = ((values - values[fit_rows].mean(axis=0)) / values[fit_rows].std(axis=0)).astype(np.float32)

        def windows(positions):
            return np.stack([scaled[r - LOOKBACK + 1 : r + 1] for r in first_row + positions])

        model = make()
        model.fit(windows(fold.train), y[first_row + fold.train],
                  *((windows(fold.val), y[first_row + fold.val]) if len(fold.val) else ()))
        if len(fold.val) and getattr(model, "refits", False):
            model.refit_full(windows(fold.usable), y[first_row + fold.usable])
        runs = np.split(fold.test, np.flatnonzero(np.diff(fold.test) > 1) + 1)
        assert len(runs) == 2  # the case really has two test runs
        for run in runs:
            if hasattr(model, "predict_proba"):
                p_up.append(model.predict_proba(windows(run))[:, 1])
                y_pred.append((p_up[-1] > 0.5).astype(float))
            else:
                y_pred.append(model.predict(windows(run)))
                p_up.append(np.full(len(run), np.nan))
        dates.append(features.index[first_row + fold.test])
    return dates[0].append(dates[1:]), np.concatenate(y_pred), np.concatenate(p_up)


CASES = {
    "ridge": (RidgeRegressor, False), "logistic": (LogisticClassifier, True),
    "ridge refit": (lambda: RidgeRegressor(alpha=1.0, refit=True), False),
    "lstm regressor": (lstm(LSTMRegressor), False), "lstm classifier": (lstm(LSTMClassifier), True),
    "lstm refit": (lstm(LSTMRegressor, TrainSettings(max_epochs=3, mode="sequence", chunk_len=8, refit=True)), False),
}


@pytest.mark.parametrize("case", CASES)
def test_fold_loop_equals_a_hand_written_gathered_fit_and_per_run_predict(case):
    make, classifies = CASES[case]
    features, ret, direction = make_case()
    target = direction if classifies else ret
    grid = make_sample_grid(features, target, LOOKBACK)
    folds = cpcv_folds()
    preds, log = walk_forward_predict(make(), features, target, grid, folds)
    dates, y_pred, p_up = hand_loop(make, features, target, folds)
    assert pd.DatetimeIndex(preds["date"]).equals(pd.DatetimeIndex(dates))
    assert preds["date"].is_monotonic_increasing is False  # fold 1 comes back after fold 0, each in date order
    np.testing.assert_array_equal(preds["fold"], np.repeat([0, 1], [40, 40]))
    np.testing.assert_array_equal(preds["y_true"], target.reindex(dates).to_numpy())
    np.testing.assert_array_equal(preds["y_pred"], y_pred)
    np.testing.assert_array_equal(preds["p_up"], p_up)
    assert np.unique(p_up if classifies else y_pred).size > 2  # not constants compared
    assert log["n_train"].tolist() == [89, 90] and log["n_test"].tolist() == [40, 40]
    assert log["test_start"].tolist() == [grid.dates[40], grid.dates[25]]
    assert log["test_end"].tolist() == [grid.dates[139], grid.dates[89]]
    assert log["refit"].tolist() == [case.endswith("refit"), False]  # fold 1 has no validation


def test_a_sequence_model_predicts_each_test_run_on_its_own():
    """Predicting both runs at once would not give the same numbers, so the per-run rule is seen."""
    features, ret, _ = make_case()
    grid = make_sample_grid(features, ret, LOOKBACK)
    fold = cpcv_folds()[1]
    preds, _ = walk_forward_predict(lstm(LSTMRegressor)(), features, ret, grid, [fold])
    joined = Fold(index=1, train=fold.train, val=fold.val, test=np.r_[25:45], usable=None)
    alone, _ = walk_forward_predict(lstm(LSTMRegressor)(), features, ret, grid, [joined])
    np.testing.assert_array_equal(preds["y_pred"].to_numpy()[:20], alone["y_pred"].to_numpy())


def test_walk_forward_folds_give_the_same_with_usable_spelled_out():
    features, ret, _ = make_case()
    grid = make_sample_grid(features, ret, LOOKBACK)
    folds = WalkForwardSplit(min_train=80, step=40, horizon=1).split(grid.n)
    spelled = [Fold(f.index, f.train, f.val, f.test, usable=np.arange(f.train[0], f.val[-1] + 1)) for f in folds]
    settings = TrainSettings(max_epochs=3, mode="sequence", chunk_len=8, refit=True)
    plain, plain_log = walk_forward_predict(lstm(LSTMRegressor, settings)(), features, ret, grid, folds)
    given, given_log = walk_forward_predict(lstm(LSTMRegressor, settings)(), features, ret, grid, spelled)
    pd.testing.assert_frame_equal(plain, given)
    assert plain_log["refit"].all() and (plain_log["refit_epochs"] > 0).any()
    shorter = [Fold(f.index, f.train, f.val, f.test, usable=np.concatenate([f.train, f.val])) for f in folds]
    other, _ = walk_forward_predict(lstm(LSTMRegressor, settings)(), features, ret, grid, shorter)
    assert not np.array_equal(other["y_pred"], plain["y_pred"])  # usable is what the refit reads


class _Spy(RidgeRegressor):
    """Records whether the windows each fit receives own their memory (a gather) or view the scaled matrix."""

    copies: list[bool] = []

    def fit(self, X, y, X_val=None, y_val=None, *, sample_weight=None):
        _Spy.copies.append(bool(X.flags.owndata))
        return super().fit(X, y, X_val, y_val, sample_weight=sample_weight)


def test_one_run_stays_a_view_and_several_runs_are_gathered():
    features, ret, _ = make_case()
    grid = make_sample_grid(features, ret, LOOKBACK)
    _Spy.copies = []
    walk_forward_predict(_Spy(), features, ret, grid, WalkForwardSplit(min_train=80, step=40).split(grid.n))
    walk_forward_predict(_Spy(), features, ret, grid, cpcv_folds())
    assert _Spy.copies == [False] * 3 + [True] * 2


def test_what_would_leak_or_misread_is_refused():
    features, ret, _ = make_case()
    grid = make_sample_grid(features, ret, LOOKBACK)
    warm = LSTMRegressor(net=SPEC, train=SEQ, device="cpu", warm_start=True)
    with pytest.raises(ValueError, match="warm_start=False"):
        walk_forward_predict(warm, features, ret, grid, cpcv_folds())  # training after the test runs
    backwards = WalkForwardSplit(min_train=80, step=40).split(grid.n)[::-1]
    with pytest.raises(ValueError, match="run forward in time"):
        walk_forward_predict(warm, features, ret, grid, backwards)
    spanning = Fold(index=0, train=np.r_[0:37, 63:115], val=np.r_[143:165], test=np.r_[40:60])  # no usable
    with pytest.raises(ValueError, match="set Fold.usable"):
        walk_forward_predict(RidgeRegressor(refit=True), features, ret, grid, [spanning])
    walk_forward_predict(RidgeRegressor(), features, ret, grid, [spanning])  # no refit: nothing to refuse
    leaky = Fold(index=0, train=np.r_[0:37], val=np.r_[63:80], test=np.r_[40:60], usable=np.r_[0:60])
    with pytest.raises(ValueError, match="usable positions include test"):
        walk_forward_predict(RidgeRegressor(refit=True), features, ret, grid, [leaky])
    for bad in (np.r_[50:60, 40:45], np.r_[40:50, 49:55], np.r_[grid.n - 5 : grid.n + 1]):
        with pytest.raises(ValueError, match="sorted, unique and within"):
            walk_forward_predict(RidgeRegressor(), features, ret, grid, [Fold(0, np.r_[0:30], np.r_[32:36], bad)])
