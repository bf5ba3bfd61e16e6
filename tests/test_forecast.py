"""``lstmbt predict`` / ``forecast_next``: honest timing, equal to a hand-written fit, and its CLI.

Each fit is a tiny network for one epoch on ~650 rows cut from the embedded S&P 500 sample, so
it takes about a second. The hand-written fit derives the rows, the purge, the validation tail
and the scaler with numpy alone, as ``tests/test_walkforward.py`` does for the fold loop.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.data import load_prices
from lstmbt.backtest.forecast import Forecast, forecast_next
from lstmbt.backtest.pipeline import build_estimator
from lstmbt.models.features import make_features
from lstmbt.models.targets import make_target
from helpers import TINY, TINY_VALUES

FIRST_DAY = "2016-06-01"
pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(autouse=True)
def cli_one_thread(monkeypatch):
    monkeypatch.setattr("lstmbt.backtest.cli.core.torch_threads", lambda: 1)


@pytest.fixture(scope="module")
def spx() -> pd.DataFrame:
    return load_prices(RunConfig().data).loc[FIRST_DAY:]


def write_csv(path: Path, prices: pd.DataFrame) -> str:
    prices.rename_axis("Date").to_csv(path)
    return f"csv:{path}"


def config(source: str, **extra) -> RunConfig:
    return RunConfig.resolve(flags={"data.source": source, **TINY_VALUES, **extra})




# --------------------------------------------------------------------------- the command line


def test_predict_prints_the_last_bar_and_both_forecasts(tmp_path, spx, run_cli):
    code, out, err = run_cli(["predict", "--source", write_csv(tmp_path / "a.csv", spx), *TINY])
    assert code == 0, err
    lines = out.strip().splitlines()
    last = spx.index[-1].date().isoformat()
    assert last == "2018-12-31"
    assert lines[0].startswith(f"last bar used: {last} (close {spx['Close'].iloc[-1]:.2f})")
    assert lines[1] == f"next trading day after {last} (horizon 1 day), per model:"
    assert lines[2].startswith("  lstm_regression ") and " close " in lines[2] and "%)" in lines[2]
    assert lines[3].startswith("  lstm_classification ") and " p_up 0." in lines[3]
    assert any(line.startswith("  persistence ") and "naive baseline" in line for line in lines)
    assert any(line.startswith("  majority ") and "training share of up days" in line for line in lines)
    assert lines[-1].startswith("fitted on 2016-") and "..2018-12-28 (" in lines[-1]
    assert "only picked the epoch count (early stopping), so the weights were fitted on no later sample" in lines[-1]
    assert "Traceback" not in out + err


def test_predict_json_parses_and_holds_only_the_asked_task(tmp_path, spx, run_cli):
    source = write_csv(tmp_path / "a.csv", spx)
    code, out, err = run_cli(["predict", "--source", source, "--target", "classification", "--json", *TINY])
    assert code == 0, err
    payload = json.loads(out)
    assert payload["last_date"] == "2018-12-31" and payload["horizon"] == 1
    assert payload["last_close"] == pytest.approx(spx["Close"].iloc[-1])
    assert payload["train_end"] == "2018-12-28"
    assert set(payload) >= {"source", "train_start", "n_train", "n_val", "classification"}
    assert "regression" not in payload
    assert 0.0 < payload["classification"]["p_up"] < 1.0
    assert 0.0 < payload["classification"]["base_rate"] < 1.0


def test_predict_target_regression_prints_only_regression(tmp_path, spx, run_cli):
    source = write_csv(tmp_path / "a.csv", spx)
    code, text, err = run_cli(["predict", "--source", source, "--target", "regression", "--end", "2018-06-29",
                               *TINY])
    assert code == 0, err
    assert text.startswith("last bar used: 2018-06-29 ")
    assert "  lstm_regression " in text and " close " in text
    assert "classification" not in text and "p_up" not in text and "majority" not in text


def test_predict_help_lists_its_options(run_cli):
    code, text, err = run_cli(["predict", "--help"])
    assert code == 0, err
    for option in ("--config", "--source", "--symbol", "--start", "--end", "--target", "--set", "--quick",
                   "--refresh", "--json"):
        assert option in text, option
    assert "--out" not in text


@pytest.mark.parametrize("argv, words", [
    (["--source", "sample:dow"], ["unknown sample 'dow'"]),
    (["--set", "model.hiden_size=4"], ["unknown config key 'model.hiden_size'", "did you mean"]),
    (["--target", "clasification"], ["did you mean 'classification'"]),
    ("short", ["has 200 rows", "needs at least", "min_train"]),
])
def test_bad_input_is_one_error_line(argv, words, tmp_path, spx, run_cli):
    if argv == "short":
        argv = ["--source", write_csv(tmp_path / "short.csv", spx.iloc[:200])]
    code, out, err = run_cli(["predict", *argv])
    assert code == 2, (code, out, err)
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


# --------------------------------------------------------------------------- timing


@pytest.mark.parametrize("horizon", [1, 3])
def test_training_labels_are_realised_by_the_last_bar(tmp_path, spx, horizon):
    forecast = forecast_next(config(write_csv(tmp_path / "a.csv", spx), **{"target.horizon": horizon,
                                                                          "target.task": "classification"}))
    position = {day: i for i, day in enumerate(spx.index)}
    assert forecast.last_date == spx.index[-1]
    # the last training label is realised exactly on the last bar: purged, and no more than that
    assert position[forecast.train_end] + horizon == position[forecast.last_date]
    assert forecast.horizon == horizon


def test_data_after_end_is_ignored_and_the_last_bar_matters(tmp_path, spx):
    end = pd.Timestamp("2018-06-29")
    base = forecast_next(config(write_csv(tmp_path / "a.csv", spx), **{"data.end": "2018-06-29"}))
    later = spx.copy()
    after = later.index > end
    later.loc[after, ["Open", "High", "Low", "Close"]] *= 1.3
    later.loc[after, "Volume"] *= 5
    same = forecast_next(config(write_csv(tmp_path / "b.csv", later), **{"data.end": "2018-06-29"}))
    assert base.last_date == end
    assert dataclass_values(same) == dataclass_values(base)  # bit for bit, every field

    moved = spx.copy()
    moved.loc[end, ["Open", "High", "Low", "Close"]] *= 1.02
    other = forecast_next(config(write_csv(tmp_path / "c.csv", moved), **{"data.end": "2018-06-29"}))
    assert other.regression.close != base.regression.close
    assert other.classification.p_up != base.classification.p_up


def dataclass_values(forecast: Forecast) -> dict:
    values = {k: v for k, v in forecast.to_dict().items() if k != "source"}
    values["data"] = {k: v for k, v in values["data"].items() if k != "source"}  # the file's path, not its prices
    return values


# --------------------------------------------------------------------------- equal to a hand-written fit


def hand_forecast(cfg: RunConfig, task: str) -> tuple[float, pd.Timestamp, pd.Timestamp, int]:
    """The forecast written out with numpy: rows, purge, validation tail, scaler, windows, fit."""
    prices = load_prices(cfg.data)
    f = cfg.features
    values = make_features(prices, f.groups, f.n_lags, f.lag_scale).to_numpy(dtype=np.float64)
    kind = cfg.target.regression if task == "regression" else "direction"
    h, lookback, split = cfg.target.horizon, cfg.model.lookback, cfg.split
    y = make_target(prices, kind, h).to_numpy(dtype=np.float64)
    close = prices["Close"].to_numpy(dtype=np.float64)
    relative = kind == "price" and cfg.target.price_scale == "relative"
    if relative:  # the model fits log(close[t+h] / close[t]); its forecast is last close * exp(output)
        y = np.log(y / close)
    first_row = int(np.flatnonzero(~np.isnan(values).any(axis=1))[0]) + lookback - 1
    last_row = len(prices) - 1
    next_pos = last_row - first_row + 1  # the next trading day, in sample positions
    window_start = 0 if split.scheme == "expanding" else next_pos - split.min_train
    last_usable = last_row - h - split.embargo - first_row  # label realised by the last bar
    n_val = max(1, int(round(split.val_fraction * (last_usable - window_start + 1))))
    val = np.arange(last_usable - n_val + 1, last_usable + 1) + first_row
    fit = np.arange(window_start, val[0] - first_row - h - split.embargo) + first_row
    assert not np.isnan(y[val]).any() and np.isnan(y[last_row])
    train_rows = np.concatenate([fit, val])
    mean, std = values[train_rows].mean(axis=0), values[train_rows].std(axis=0)
    scaled = ((values - mean) / std).astype(np.float32)

    def windows(rows):
        return np.stack([scaled[r - lookback + 1 : r + 1] for r in rows])

    model = build_estimator(task, cfg).fit(windows(fit), y[fit], windows(val), y[val])
    x_last = windows([last_row])
    value = model.predict_proba(x_last)[0, 1] if task == "classification" else model.predict(x_last)[0]
    value = close[last_row] * np.exp(value) if relative else value
    return float(value), prices.index[fit[0]], prices.index[val[-1]], len(fit)


@pytest.mark.parametrize("extra", [
    {},
    {"split.scheme": "rolling", "split.embargo": 2, "target.horizon": 2, "target.regression": "price",
     "features.groups": ["returns", "lags"]},
    {"target.regression": "price", "target.price_scale": "level", "features.groups": ["returns", "lags"],
     "features.lag_scale": "level"},
])
def test_forecast_equals_a_hand_written_fit(tmp_path, spx, extra):
    cfg = config(write_csv(tmp_path / "a.csv", spx), **extra)
    forecast = forecast_next(cfg)
    y_reg, start, end, n_fit = hand_forecast(cfg, "regression")
    p_up, *_ = hand_forecast(cfg, "classification")
    assert (forecast.train_start, forecast.train_end, forecast.n_train) == (start, end, n_fit)
    last_close = float(spx["Close"].iloc[-1])
    if cfg.target.regression == "price":
        assert forecast.regression.close == y_reg
        assert forecast.regression.log_return == pytest.approx(np.log(y_reg / last_close), rel=1e-12)
    else:
        assert forecast.regression.log_return == y_reg
        assert forecast.regression.close == pytest.approx(last_close * np.exp(y_reg), rel=1e-12)
    assert forecast.regression.simple_return == pytest.approx(forecast.regression.close / last_close - 1, rel=1e-9)
    assert (forecast.regression.persistence_close, forecast.regression.persistence_return) == (last_close, 0.0)
    assert forecast.classification.p_up == p_up
    assert forecast.regression.epochs == forecast.classification.epochs == 1


# --------------------------------------------------------------------------- it learns what can be learned


def planted(n: int, seed: int = 3) -> pd.DataFrame:
    """Bars whose volume today (high or low) reveals tomorrow's direction (up or down)."""
    rng = np.random.default_rng(seed)
    z = rng.choice([-1.0, 1.0], n)
    move = 0.01 * np.roll(z, 1) + rng.normal(0.0, 0.002, n)
    move[0] = 0.0
    close = 100.0 * np.exp(np.cumsum(move))
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) * 1.002,
                         "Low": np.minimum(open_, close) * 0.998, "Close": close,
                         "Volume": 1e6 * (1.0 + 0.5 * z) * np.exp(rng.normal(0.0, 0.05, n))},
                        index=pd.bdate_range("2010-01-04", periods=n, name="Date"))


def test_planted_signal_points_p_up_the_right_way(tmp_path):
    prices = planted(620)
    source = write_csv(tmp_path / "planted.csv", prices)
    went_up = prices["Close"].diff().shift(-1) > 0  # realised next-day direction, known to the test only
    tail = went_up.iloc[-20:-1]
    for day, up in ((tail[tail].index[-1], True), (tail[~tail].index[-1], False)):
        cfg = RunConfig.resolve(flags={
            "data.source": source, "data.end": day.date().isoformat(), "target.task": "classification",
            "features.groups": ["volume", "returns"], "split.min_train": 300, "model.lookback": 5,
            "model.hidden_size": 8, "model.num_layers": 1, "model.dropout": 0.0, "model.head": [],
            "train.max_epochs": 15, "train.patience": 4, "train.lr": 0.01, "train.device": "cpu"})
        forecast = forecast_next(cfg)
        assert forecast.last_date == day
        p_up = forecast.classification.p_up
        assert (p_up > 0.8) if up else (p_up < 0.2), (day, up, p_up)
