"""Several label horizons in one run: separate models, their own purge, the same test days, overlapping positions."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.scoring import horizon_plan, overlapping
from lstmbt.strategies import classification_positions
from test_pipeline import planted_prices, write_csv
from helpers import PLANTED_FLAGS

FLAGS = {**PLANTED_FLAGS, "target.horizons": [1, 5, 10]}


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    prices = planted_prices(800, signal=False, drift=0.0005)
    source = write_csv(tmp_path_factory.mktemp("h") / "p.csv", prices)
    return prices, run(RunConfig.resolve(flags={"data.source": source, **FLAGS}))


def test_horizons_are_validated():
    with pytest.raises(ConfigError, match="set target.horizon = 5"):
        RunConfig().with_values({"target.horizons": [5, 10]})
    with pytest.raises(ConfigError, match="repeats a horizon"):
        RunConfig().with_values({"target.horizons": [1, 5, 5]})
    with pytest.raises(ConfigError, match="week_mean"):
        RunConfig().with_values({"target.regression": "week_mean", "target.horizon": 5, "target.horizons": [5, 10]})
    assert RunConfig().target.all_horizons == (1,)


def test_names_tasks_and_horizons():
    cfg = RunConfig().with_values({"target.horizons": [1, 5]})
    plan = horizon_plan(cfg)
    assert [k.name for k in plan] == ["lstm_regression", "lstm_classification", "ridge_regression",
                                      "logistic_classification", "lstm_regression_h5", "lstm_classification_h5",
                                      "ridge_regression_h5", "logistic_classification_h5"]
    assert [k.horizon for k in plan] == [1, 1, 1, 1, 5, 5, 5, 5]
    assert [k.task for k in plan] == ["regression", "classification"] * 4
    assert [(k.family, k.baseline) for k in plan[:4]] == [("lstm", False)] * 2 + [("linear", True)] * 2


def test_overlapping_positions_are_the_mean_of_the_last_h_signals():
    signal = pd.Series([1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    assert overlapping(signal, 1).tolist() == signal.tolist()
    assert overlapping(signal, 3).tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1 / 3, 1 / 3, 2 / 3, 1.0])


def test_every_horizon_is_a_model_on_the_same_days_with_its_own_purge(multi):
    prices, result = multi
    models = list(result.predictions["model"].unique())
    assert models == ["ridge_regression", "logistic_classification", "ridge_regression_h5",
                      "logistic_classification_h5", "ridge_regression_h10", "logistic_classification_h10"]
    days = {m: tuple(g["date"]) for m, g in result.predictions.groupby("model")}
    assert len(set(days.values())) == 1  # identical test days
    index = prices.index
    for model, g in result.folds.groupby("model"):
        h = 1 if not model.rpartition("_h")[2].isdigit() else int(model.rpartition("_h")[2])
        last_label = g["val_end"].fillna(g["train_end"])
        gaps = [index.get_loc(t) - index.get_loc(e) for e, t in zip(last_label, g["test_start"])]
        assert min(gaps) == h + 1, model  # the label of the last fitted day is known the day before the test


def test_longer_horizons_hold_overlapping_positions_and_are_scored_on_their_own_moves(multi):
    prices, result = multi
    clf5 = result.predictions[result.predictions["model"] == "logistic_classification_h5"].set_index("date")
    raw = classification_positions(clf5["p_up"], 0.5, False)
    expected = raw.rolling(5, min_periods=1).sum() / 5
    np.testing.assert_allclose(result.positions["logistic_classification_h5"].to_numpy(), expected.to_numpy())
    assert set(np.round(result.positions["logistic_classification_h5"] * 5, 9)) <= {0, 1, 2, 3, 4, 5}
    up5 = np.log(prices["Close"].shift(-5) / prices["Close"]).reindex(result.positions.index) > 0
    m5 = result.metrics["logistic_classification_h5"]
    assert m5["base_rate"] == pytest.approx(up5.mean())
    assert m5["hit_rate"] == pytest.approx(np.mean((clf5["p_up"] > 0.5).to_numpy() == up5.to_numpy()))
    assert result.metrics["logistic_classification"]["base_rate"] != m5["base_rate"]
    assert "dm_pvalue" in result.metrics["ridge_regression_h10"]


def test_the_report_renders_every_horizon_with_its_own_base_rate(multi):
    from lstmbt.reports import render_report

    _, result = multi
    text = render_report(result)
    card = text.split('<table id="scorecard">')[1].split("</table>")[0]
    rows = dict(re.findall(r'<tr class="model" data-strategy="([^"]+)">(.*?)</tr>', card, re.S))
    assert len(rows) == 6
    for name, entry in result.metrics.items():
        assert f"<th>{name}</th>" in text
    line = rows["logistic_classification_h5"]
    base = result.metrics["logistic_classification_h5"]["base_rate"]
    assert f"base {100 * max(base, 1 - base):.1f}%" in line


def test_max_drawdown_target_by_hand_and_as_a_risk_filter(tmp_path):
    import math

    from lstmbt.models.targets import make_target
    from lstmbt.strategies import drawdown_positions

    close = pd.Series([100.0, 110.0, 99.0, 99.0, 120.0, 60.0], index=pd.bdate_range("2024-01-01", periods=6))
    dd = make_target(pd.DataFrame({"Close": close}), "max_drawdown", 2)
    expected = [min(0.0, math.log(99 / 100)), min(0.0, math.log(99 / 110)), 0.0, min(0.0, math.log(60 / 99))]
    np.testing.assert_allclose(dd.iloc[:4].to_numpy(), expected)
    assert dd.iloc[4:].isna().all() and (dd.dropna() <= 0).all()
    assert drawdown_positions(pd.Series([-0.001, -0.05, np.nan]), 0.02).tolist() == [1.0, 0.0, 0.0]

    prices = planted_prices(700, signal=False)
    flags = {"data.source": write_csv(tmp_path / "p.csv", prices), **FLAGS, "target.horizons": [],
             "target.horizon": 5, "target.regression": "max_drawdown", "target.task": "regression"}
    result = run(RunConfig.resolve(flags=flags))
    ridge = result.metrics["ridge_regression"]
    assert math.isnan(ridge["hit_rate"]) and "pt_pvalue" not in ridge
    assert {"dm_pvalue", "sharpe_diff_ci_low", "psr", "rmse", "persistence_rmse"} <= set(ridge)
    preds = result.predictions.set_index("date")["y_pred"]
    raw = (preds > -0.02).astype(float)
    np.testing.assert_allclose(result.positions["ridge_regression"], raw.rolling(5, min_periods=1).sum() / 5)
    from lstmbt.reports import render_report

    text = render_report(result)
    assert "ridge_regression" in text and "no direction call" in text
