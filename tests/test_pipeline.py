"""End-to-end properties of ``backtest.pipeline.run``: the timing rule, learnability, identical folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.data import load_prices
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.scoring import BENCHMARK, MODEL_NAMES
from lstmbt.backtest.rundir import load_run
from lstmbt.models.features import make_features
from helpers import TINY_VALUES, save_with_report

#: the tiny config with more folds and a network that can learn: a head, three epochs, early stopping
TINY_PIPELINE = {**TINY_VALUES, "split.step": 40, "model.lookback": 8, "model.hidden_size": 6, "model.head": [4],
                 "train.max_epochs": 3, "train.patience": 2}


def write_csv(path, prices: pd.DataFrame) -> str:
    prices.rename_axis("Date").to_csv(path)
    return f"csv:{path}"


def tiny_config(source: str, **extra) -> RunConfig:
    return RunConfig.resolve(flags={"data.source": source, **TINY_PIPELINE, **extra})


@pytest.fixture(scope="module")
def sp500_slice() -> pd.DataFrame:
    return load_prices(RunConfig().data).loc["2014-01-01":"2015-06-30"]


def perturb_after(prices: pd.DataFrame, day: pd.Timestamp, seed: int = 1) -> pd.DataFrame:
    """Scramble every price and volume strictly after ``day``, keeping the bars valid."""
    out = prices.copy()
    later = out.index > day
    factor = np.exp(np.random.default_rng(seed).normal(0.0, 0.05, later.sum()))
    for name in ("Open", "High", "Low", "Close"):
        out.loc[later, name] = out.loc[later, name] * factor
    out.loc[later, "Volume"] = out.loc[later, "Volume"] * factor[::-1] * 3
    return out


MODES = {
    "sequence+warm": {"train.mode": "sequence", "train.warm_start": True},
    "window": {"train.mode": "window", "train.warm_start": False},
}


@pytest.mark.parametrize("regression, mode", [("return", "sequence+warm"), ("price", "sequence+warm"),
                                              ("return", "window")])
def test_perturbing_the_future_changes_nothing_up_to_that_day(tmp_path, sp500_slice, regression, mode):
    """The timing rule, carried from features through predictions to positions and returns."""
    extra = {"target.regression": regression, **MODES[mode]}
    if regression == "price":  # the defaults fit log(close[t+1] / close[t]) on lags relative to close[t]
        extra["features.groups"] = ["lags", "returns"]
        defaults = tiny_config("sample:sp500", **extra)
        assert (defaults.target.price_scale, defaults.features.lag_scale) == ("relative", "relative")
    base = run(tiny_config(write_csv(tmp_path / "a.csv", sp500_slice), **extra))
    oos = base.positions.index
    cut = oos[len(oos) // 2 + 7]  # inside a test block, so one fold straddles the cut
    changed = perturb_after(sp500_slice, cut)
    other = run(tiny_config(write_csv(tmp_path / "b.csv", changed), **extra))

    groups = tiny_config("sample:sp500", **extra).features
    f_base = make_features(sp500_slice, groups.groups, groups.n_lags, groups.lag_scale)
    f_other = make_features(changed, groups.groups, groups.n_lags, groups.lag_scale)
    pd.testing.assert_frame_equal(f_base.loc[:cut], f_other.loc[:cut], check_exact=True)

    upto = lambda frame: frame[frame["date"] <= cut].reset_index(drop=True)  # noqa: E731
    decided = ["date", "target", "fold", "y_pred", "p_up", "close"]
    pd.testing.assert_frame_equal(upto(base.predictions)[decided], upto(other.predictions)[decided],
                                  check_exact=True)
    # A label dated t is realised at t + 1, so only labels dated before the cut are fixed.
    realised = lambda frame: frame.loc[frame["date"] < cut, "y_true"].to_numpy()  # noqa: E731
    np.testing.assert_array_equal(realised(base.predictions), realised(other.predictions))
    pd.testing.assert_frame_equal(base.positions.loc[:cut], other.positions.loc[:cut], check_exact=True)
    pd.testing.assert_frame_equal(base.returns.loc[:cut], other.returns.loc[:cut], check_exact=True)
    # ...and the perturbation really reached the model: later predictions and features moved.
    assert not upto(base.predictions).shape[0] == base.predictions.shape[0]
    later = base.predictions["date"] > cut
    assert not np.array_equal(base.predictions.loc[later, "y_pred"], other.predictions.loc[later, "y_pred"])
    assert not f_base.loc[cut:].iloc[1:].equals(f_other.loc[cut:].iloc[1:])


def planted_prices(n: int, signal: bool, drift: float = 0.0, seed: int = 7) -> pd.DataFrame:
    """Daily bars whose volume today reveals tomorrow's direction when ``signal`` is True.

    Without the signal the closes are a random walk with ``drift`` per day and the volume is
    unrelated noise. Tomorrow's open equals today's close, so the whole move happens between the
    next bar's open and close: a strategy filled at the next open can capture it.
    """
    rng = np.random.default_rng(seed)
    z = rng.choice([-1.0, 1.0], n)
    noise = rng.normal(0.0, 0.004, n)
    move = np.where(signal, 0.01 * np.roll(z, 1), 0.01 * rng.choice([-1.0, 1.0], n)) + noise + drift
    move[0] = 0.0
    close = 100.0 * np.exp(np.cumsum(move))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame({
        "Open": open_,
        "High": np.maximum(open_, close) * 1.002,
        "Low": np.minimum(open_, close) * 0.998,
        "Close": close,
        "Volume": 1e6 * (1.0 + 0.5 * z) * np.exp(rng.normal(0.0, 0.05, n)),
    }, index=pd.bdate_range("2010-01-04", periods=n, name="Date"))


def learn_config(source: str, step: int = 100) -> RunConfig:
    return RunConfig.resolve(flags={
        "data.source": source, "features.groups": ["volume", "returns"],
        "split.min_train": 300, "split.step": step, "model.lookback": 5, "model.hidden_size": 8,
        "model.num_layers": 1, "model.dropout": 0.0, "model.head": [], "train.max_epochs": 15,
        "train.patience": 4, "train.lr": 0.01, "train.device": "cpu",
    })


def test_planted_signal_is_learned_and_traded(tmp_path):
    result = run(learn_config(write_csv(tmp_path / "planted.csv", planted_prices(700, signal=True))))
    clf, bench = result.metrics[MODEL_NAMES["classification"]], result.metrics[BENCHMARK]
    base = max(bench["hit_rate"], 1 - bench["hit_rate"])
    assert clf["hit_rate"] > base + 0.25
    assert clf["hit_rate_pvalue"] < 1e-6
    assert clf["total_return"] > bench["total_return"] + 0.5
    assert clf["sharpe"] > bench["sharpe"] + 1.0
    assert result.metrics[MODEL_NAMES["regression"]]["hit_rate"] > base + 0.15


def test_random_walk_shows_no_skill(tmp_path):
    # An upward drift, as equities have: a no-skill long/flat strategy pays costs and misses
    # the drift on its flat days, so it should trail buy-and-hold by far more than the noise.
    walk = planted_prices(1500, signal=False, drift=0.0008)
    result = run(learn_config(write_csv(tmp_path / "walk.csv", walk), step=300))
    bench = result.metrics[BENCHMARK]
    base = max(bench["hit_rate"], 1 - bench["hit_rate"])
    for name in MODEL_NAMES.values():
        model = result.metrics[name]
        assert model["hit_rate"] < base + 0.05
        assert model["hit_rate_pvalue"] > 0.05
        assert model["total_return"] < bench["total_return"]
        assert model["verdict"] in ("inconclusive", "worse")  # never "beats buy-and-hold"
    assert not any("not above the base rate" in w for w in result.manifest["warnings"])  # a scorecard cell


def test_every_model_shares_folds_and_days(tmp_path, sp500_slice):
    result = run(tiny_config(write_csv(tmp_path / "a.csv", sp500_slice)))
    frames = {name: g.reset_index(drop=True) for name, g in result.predictions.groupby("model", sort=False)}
    assert list(frames) == ["lstm_regression", "lstm_classification", "ridge_regression", "logistic_classification"]
    reg = frames["lstm_regression"]
    for frame in frames.values():
        pd.testing.assert_series_equal(reg["date"], frame["date"])
        pd.testing.assert_series_equal(reg["fold"], frame["fold"])
    assert list(result.positions.index) == list(reg["date"])
    assert len(result.returns) == len(result.positions)
    assert (result.returns.index > result.positions.index).all()  # each return is earned one bar later
    by_model = [g.reset_index(drop=True) for _, g in result.folds.groupby("model")[["test_start", "test_end",
                                                                                    "train_end"]]]
    assert len(by_model) == 4
    for other in by_model[1:]:
        pd.testing.assert_frame_equal(by_model[0], other)


def test_same_seed_same_predictions_and_saved_run_round_trips(tmp_path, sp500_slice):
    cfg = tiny_config(write_csv(tmp_path / "a.csv", sp500_slice))
    first, second = run(cfg), run(cfg)
    pd.testing.assert_frame_equal(first.predictions, second.predictions, check_exact=True)
    loaded = load_run(save_with_report(first, tmp_path / "run"))
    assert loaded.config == first.config
    pd.testing.assert_frame_equal(loaded.predictions, first.predictions, check_exact=True)
    pd.testing.assert_frame_equal(loaded.positions, first.positions, check_exact=True, check_freq=False)
    pd.testing.assert_frame_equal(loaded.returns, first.returns, check_exact=True, check_freq=False,
                                  check_names=False)
    assert loaded.metrics[BENCHMARK]["sharpe"] == pytest.approx(first.metrics[BENCHMARK]["sharpe"], rel=0, abs=0)
