"""Price targets and lagged closes relative to the decision day's close (``target.price_scale``,
``features.lag_scale``): the RevIN-style default that lets a model fitted on one price range
predict another, the ``level`` option, its warnings, and configs saved before the keys existed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lstmbt.backtest.checkpoint import open_checkpoint
from lstmbt.backtest.config import RunConfig, fill_saved
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.scoring import scale_warnings
from lstmbt.backtest.splits import WalkForwardSplit
from lstmbt.backtest.walkforward import make_sample_grid, walk_forward_predict
from lstmbt.models.estimators import LSTMRegressor
from lstmbt.models.features import make_features
from lstmbt.models.linear import RidgeRegressor
from lstmbt.models.specs import NetSpec, TrainSettings
from lstmbt.models.targets import make_target, price_to_relative, relative_to_price
from lstmbt.models.windows import sliding_windows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trending_prices(n: int = 700, seed: int = 3) -> pd.DataFrame:
    """A geometric random walk with a strong drift (100 -> about 400), Open = previous close."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.002, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) * 1.002,
                         "Low": np.minimum(open_, close) * 0.998, "Close": close, "Volume": np.full(n, 1e6)},
                        index=pd.bdate_range("2005-01-03", periods=n))


def test_relative_and_back_is_the_identity_and_is_the_log_return():
    prices = trending_prices(50)
    close, price = prices["Close"].to_numpy(), make_target(prices, "price", 2).to_numpy()
    rel = price_to_relative(price, close)
    np.testing.assert_allclose(rel, make_target(prices, "return", 2).to_numpy(), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(relative_to_price(rel, close), price, rtol=1e-12, equal_nan=True)


def test_walk_forward_with_an_anchor_equals_a_hand_written_relative_fit():
    """Each fold fits log(price / close) and reports close * exp(prediction); y_true stays the price."""
    prices = trending_prices(400)
    features = make_features(prices, ("lags",), n_lags=5)
    target = make_target(prices, "price", 1)
    grid = make_sample_grid(features, target, 1)
    folds = WalkForwardSplit(min_train=200, step=60, horizon=1, val_fraction=0.0).split(grid.n)
    preds, _ = walk_forward_predict(RidgeRegressor(), features, target, grid, folds, target_anchor=prices["Close"])
    values, close = features.to_numpy(), prices["Close"].to_numpy()
    rel = np.log(target.to_numpy() / close)
    for fold in folds:
        train, test = grid.rows(fold.train), grid.rows(fold.test)
        mean, std = values[train].mean(axis=0), values[train].std(axis=0)
        scaled = ((values - mean) / std).astype(np.float32)[:, None, :]  # lookback 1
        model = RidgeRegressor().fit(scaled[train], rel[train])
        block = preds[preds["fold"] == fold.index]
        np.testing.assert_allclose(block["y_pred"], close[test] * np.exp(model.predict(scaled[test])), rtol=1e-9)
        np.testing.assert_array_equal(block["y_true"], target.to_numpy()[test])
    with pytest.raises(ValueError, match="positive"):
        walk_forward_predict(RidgeRegressor(), features, target, grid, folds, target_anchor=-prices["Close"])


def _fit_then_score(scale: str, factors: tuple[float, ...]) -> list[tuple[float, float]]:
    """Fit a small LSTM on the first 400 samples of ``trending_prices`` at ``scale``, then predict
    the rest of the same series multiplied by each of ``factors`` (scaler and label encoding from
    the fit). Returns per factor (RMSE in price units, RMSE of the relative error)."""
    prices = trending_prices()
    lookback, relative = 5, scale == "relative"
    features = make_features(prices, ("lags",), n_lags=5, lag_scale=scale).to_numpy()
    target, close = make_target(prices, "price", 1).to_numpy(), prices["Close"].to_numpy()
    rows = np.arange(5 + lookback - 1, len(prices) - 1)  # the relative lags need 5 rows
    fit, test = rows[:400], rows[400:]
    mean, std = features[fit].mean(axis=0), features[fit].std(axis=0)
    y = price_to_relative(target, close) if relative else target
    est = LSTMRegressor(net=NetSpec(hidden_size=8, num_layers=1, dropout=0.0, head=()),
                        train=TrainSettings(max_epochs=8, lr=0.01, mode="window"), device="cpu", random_state=0)
    est.fit(sliding_windows(((features - mean) / std).astype(np.float32), lookback)[fit - lookback + 1], y[fit])
    out = []
    for factor in factors:
        x_new = make_features(prices * factor, ("lags",), n_lags=5, lag_scale=scale).to_numpy()
        pred = est.predict(sliding_windows(((x_new - mean) / std).astype(np.float32), lookback)[test - lookback + 1])
        new_close, truth = close[test] * factor, target[test] * factor
        pred = relative_to_price(pred, new_close) if relative else pred
        out.append((float(np.sqrt(np.mean((pred - truth) ** 2))), float(np.sqrt(np.mean((pred / truth - 1) ** 2)))))
    return out


def test_a_model_fitted_on_one_price_range_predicts_the_series_times_3_as_well():
    """Relative: the x3 series' RMSE is 3 times the original's and the relative error is unchanged.
    Level: the test prices already lie above the training range (the series trends up), so the
    model is off by far more than a day's move, and x3 makes it worse still."""
    (rmse, rel_err), (rmse3, rel_err3) = _fit_then_score("relative", (1.0, 3.0))
    assert rmse3 == pytest.approx(3 * rmse, rel=1e-4)
    assert rel_err3 == pytest.approx(rel_err, rel=1e-4)
    assert rel_err < 0.02  # about one day's move (1%): as good as persistence, not a broken model
    (level, level_err), (level3, level_err3) = _fit_then_score("level", (1.0, 3.0))
    assert level_err > 10 * rel_err and level_err3 > level_err
    assert level3 > 3.5 * level


def test_price_and_lag_scale_default_to_relative_and_refuse_other_words():
    config = RunConfig()
    assert config.target.price_scale == "relative" and config.features.lag_scale == "relative"
    for key, bad in (("target.price_scale", "levels"), ("features.lag_scale", "raw")):
        with pytest.raises(ConfigError) as info:
            config.with_values({key: bad})
        assert f"{key} = {bad!r} is not allowed" in str(info.value) and "relative, level" in str(info.value)


def test_the_level_options_warn_only_where_they_act():
    price = RunConfig().with_values({"target.regression": "price", "features.groups": ["lags"]})
    assert scale_warnings(price) == []  # the defaults are relative
    both = price.with_values({"target.price_scale": "level", "features.lag_scale": "level"})
    notes = scale_warnings(both)
    assert len(notes) == 2 and "target.price_scale = 'level'" in notes[0] and "features.lag_scale" in notes[1]
    assert scale_warnings(both.with_values({"target.task": "classification"})) == [notes[1]]  # no price model
    assert scale_warnings(RunConfig().with_values({"target.price_scale": "level", "features.lag_scale": "level"})) == []


def test_a_config_saved_before_the_scales_existed_reads_as_level():
    raw = RunConfig().with_values({"target.regression": "price", "features.groups": ["lags"]}).to_dict()
    del raw["target"]["price_scale"], raw["features"]["lag_scale"], raw["train"]["warmup_steps"]
    old = RunConfig.from_saved(raw)
    assert old.target.price_scale == "level" and old.features.lag_scale == "level"  # what that version did
    assert old.train.warmup_steps == 0  # a knob whose default is the old behaviour
    assert RunConfig.from_saved(RunConfig().to_dict()) == RunConfig()  # a config of this version, as it is
    # where the key does not act (a return target, no lags group) the old and new versions agree: the default
    assert fill_saved({"target.regression": "return"})["target.price_scale"] == "relative"
    assert fill_saved({"target.regression": "price", "target.task": "classification"})["target.price_scale"] == "relative"
    assert fill_saved({"features.groups": ["returns"]})["features.lag_scale"] == "relative"
    assert fill_saved({"features.groups": ["returns", "lags"]})["features.lag_scale"] == "level"


def _old_plan(directory, config: RunConfig, data: dict, drop: list[str]) -> None:
    """Rewrite the checkpoint plan as a version without the keys ``drop`` (dotted) would have written it."""
    path = directory / "checkpoint.json"
    plan = json.loads(path.read_text())
    for dotted in drop:
        section, key = dotted.split(".")
        del plan["config"][section][key]
    path.write_text(json.dumps(plan))


def test_a_checkpoint_written_before_the_new_keys_resumes_unless_it_ran_otherwise(tmp_path):
    data = {"source": "sample:sp500", "symbol": None, "first_date": "2014-01-02", "last_date": "2016-06-30",
            "rows": 630, "sha256": "a" * 64}
    new_keys = ["train.warmup_steps", "train.lr_scaling", "target.price_scale", "features.lag_scale"]
    config = RunConfig()  # a return target: the old and the new version run it the same way
    open_checkpoint(tmp_path / "a", config, data, ["lstm_regression"], 9)
    _old_plan(tmp_path / "a", config, data, new_keys)
    assert open_checkpoint(tmp_path / "a", config, data, ["lstm_regression"], 9) == 0
    # a price run of the old version fitted levels: resuming it with relative prices would splice two models
    price = config.with_values({"target.regression": "price"})
    open_checkpoint(tmp_path / "b", price, data, ["lstm_regression"], 9)
    _old_plan(tmp_path / "b", price, data, new_keys)
    with pytest.raises(ConfigError, match=r"another config \(target.price_scale\)"):
        open_checkpoint(tmp_path / "b", price, data, ["lstm_regression"], 9)
    level = price.with_values({"target.price_scale": "level"})
    assert open_checkpoint(tmp_path / "b", level, data, ["lstm_regression"], 9) == 0
