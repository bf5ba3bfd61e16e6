"""models.key: a model's identity is read from the key columns of its frames, never from its name.

A tiny two-horizon run checks that ``horizon_plan`` keys are the keys its predictions and fold log
carry; hand-made frames check that a name's ``_h<h>`` means nothing once a ``horizon`` column
says otherwise; the run's frames with columns dropped stand in for a run saved by an earlier
version, which ``with_key_columns`` must restore exactly.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import numpy as np
import pandas as pd
import pytest
from helpers import TINY_SPX

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.scoring import horizon_plan, make_positions, strategy_horizon
from lstmbt.models.key import (FOLD_KEY_COLUMNS, KEY_COLUMNS, ModelKey, insert_key_columns, keys_from_frame,
                               own_key, with_key_columns)
from lstmbt.strategies import classification_positions

PREDICTION_COLUMNS = ["date", "target", "model", "horizon", "family", "baseline", "fold", "y_true", "y_pred", "p_up",
                      "close"]


@pytest.fixture(scope="module")
def tiny(one_torch_thread):
    config = RunConfig.resolve(flags={**TINY_SPX, "target.horizons": [1, 2]})
    return config, run(config)


def test_horizon_plan_keys_are_the_keys_a_run_stores(tiny):
    config, result = tiny
    plan = horizon_plan(config)
    assert [(k.name, k.task, k.horizon, k.family, k.baseline) for k in plan[:4]] == [
        ("lstm_regression", "regression", 1, "lstm", False),
        ("lstm_classification", "classification", 1, "lstm", False),
        ("ridge_regression", "regression", 1, "linear", True),
        ("logistic_classification", "classification", 1, "linear", True)]
    assert [k.name for k in plan[4:]] == [f"{k.name}_h2" for k in plan[:4]] and {k.horizon for k in plan[4:]} == {2}
    assert list(keys_from_frame(result.predictions).values()) == plan  # same keys, same order
    assert list(keys_from_frame(result.folds).values()) == plan
    # metrics.json keeps its strategy names: the models' names, then the baselines
    assert list(result.metrics)[:8] == [k.name for k in plan]


def test_the_run_frames_carry_the_key_columns_in_place(tiny, tmp_path):
    _, result = tiny
    preds, folds = result.predictions, result.folds
    assert list(preds.columns) == PREDICTION_COLUMNS
    assert list(folds.columns[:5]) == list(FOLD_KEY_COLUMNS) and folds.columns[5] == "fold"
    for frame in (preds, folds):
        assert frame["horizon"].dtype == np.int64 and frame["baseline"].dtype == bool
        assert frame["family"].dtype == frame["model"].dtype  # text, as the name
    assert set(map(tuple, folds[list(FOLD_KEY_COLUMNS)].drop_duplicates().to_numpy())) == set(
        map(tuple, preds[list(FOLD_KEY_COLUMNS)].drop_duplicates().to_numpy()))
    preds.to_parquet(tmp_path / "p.parquet", index=False)  # as save_run writes it
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"), preds)


def test_an_earlier_versions_frames_get_their_keys_back_exactly(tiny):
    config, result = tiny
    preds, folds = result.predictions, result.folds
    # before the key: no family or baseline; before several horizons: no horizon column either
    for dropped in (["family", "baseline"], ["horizon", "family", "baseline"]):
        old_preds = preds.drop(columns=dropped)
        old_folds = folds.drop(columns=[c for c in FOLD_KEY_COLUMNS if c != "model"])
        with pytest.raises(ValueError, match="lacks the model key column"):
            keys_from_frame(old_preds)
        new_preds, new_folds = with_key_columns(old_preds, old_folds, config.target.horizon)
        pd.testing.assert_frame_equal(new_preds, preds)
        pd.testing.assert_frame_equal(new_folds, folds)
    same = with_key_columns(preds, folds, config.target.horizon)  # nothing to fill: the frames themselves
    assert same[0] is preds and same[1] is folds


def _frame(name: str, task: str, horizon: int, p_up: np.ndarray, dates: pd.DatetimeIndex) -> pd.DataFrame:
    key = ModelKey(name=name, task=task, horizon=horizon, family="lstm", baseline=False)
    frame = pd.DataFrame({"date": dates, "fold": 0, "y_true": 1.0, "y_pred": (p_up > 0.5).astype(float),
                          "p_up": p_up, "close": 100.0})
    return insert_key_columns(frame, key, 1)


def test_a_model_is_scored_at_its_horizon_column_not_its_name():
    dates = pd.bdate_range("2024-01-01", periods=30)
    p_up = np.random.default_rng(4).uniform(0.2, 0.8, len(dates))
    config = RunConfig().with_values({"target.task": "classification"})
    # named like a 5-day model, keyed as a 1-day one: held one day, no overlapping tranches
    preds = _frame("lstm_classification_h5", "classification", 1, p_up, dates)
    keys = keys_from_frame(preds)
    assert keys["lstm_classification_h5"].horizon == 1 and strategy_horizon("lstm_classification_h5", keys, config) == 1
    plain = classification_positions(pd.Series(p_up, index=dates), config.strategy.cutoff, False)
    positions = make_positions(preds, dates, config)
    np.testing.assert_array_equal(positions["lstm_classification_h5"].to_numpy(), plain.to_numpy())
    # and a plain name keyed at 3 days is held as three overlapping tranches
    three = make_positions(_frame("lstm_classification", "classification", 3, p_up, dates), dates, config)
    np.testing.assert_allclose(three["lstm_classification"].to_numpy(),
                               plain.rolling(3, min_periods=1).sum().to_numpy() / 3)
    # the task comes from the target column: a classifier of any name calls by p_up
    odd = make_positions(_frame("my_model", "classification", 1, p_up, dates), dates, config)
    np.testing.assert_array_equal(odd["my_model"].to_numpy(), plain.to_numpy())


def test_backfill_reads_suffixes_only_of_its_own_names_and_refuses_strangers():
    dates = pd.bdate_range("2024-01-01", periods=3)
    old = pd.DataFrame({"date": list(dates) * 2, "target": "classification",
                        "model": ["logistic_classification_h5"] * 3 + ["lstm_classification"] * 3, "fold": 0})
    folds = pd.DataFrame({"model": ["logistic_classification_h5", "lstm_classification"], "fold": [0, 0]})
    preds, folds = with_key_columns(old, folds, primary_horizon=2)
    assert list(preds.columns) == ["date", *KEY_COLUMNS, "fold"] and list(folds.columns) == [*FOLD_KEY_COLUMNS, "fold"]
    keys = keys_from_frame(preds)
    assert keys["logistic_classification_h5"] == own_key("linear", "classification", 5, 2)
    assert keys["lstm_classification"] == own_key("lstm", "classification", 2, 2)  # plain name: the primary horizon
    assert keys_from_frame(folds) == keys
    with pytest.raises(ValueError, match="'gru_h5' of a run saved by an earlier version is none of lstmbt's own"):
        with_key_columns(old.assign(model="gru_h5"), folds.iloc[:0], primary_horizon=1)


def test_keys_are_checked_and_frozen():
    frame = _frame("m", "classification", 1, np.array([0.6, 0.4]), pd.bdate_range("2024-01-01", periods=2))
    clash = pd.concat([frame, frame.assign(horizon=2)], ignore_index=True)
    with pytest.raises(ValueError, match="'m' has rows with different key columns"):
        keys_from_frame(clash)
    with pytest.raises(ValueError, match="task 'direction'"):
        ModelKey(name="m", task="direction", horizon=1, family="lstm", baseline=False)
    with pytest.raises(ValueError, match="at least 1 day"):
        ModelKey(name="m", task="regression", horizon=0, family="lstm", baseline=False)
    with pytest.raises(FrozenInstanceError):
        keys_from_frame(frame)["m"].horizon = 5
    assert own_key("linear", "regression", 3, 1).name == "ridge_regression_h3"
