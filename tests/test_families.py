"""Network families (GRU, transformer, TCN), the LightGBM baseline and plug-in models, on the same
folds as the LSTM: they learn a planted signal, keep the timing rule, repeat bit for bit on
threads, and a plug-in that breaks the protocol is refused with one line."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import lstmbt
import plugin_models
import test_pipeline
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.headtohead import default_pairs
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.scoring import horizon_plan
from lstmbt.models.encoders import TCN_KERNEL, tcn_levels
from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.key import own_key
from lstmbt.models.networks import build_network
from lstmbt.models.specs import NETWORK_FAMILIES, NetSpec, TrainSettings
from lstmbt.models.trees import LightGBMClassifier, LightGBMRegressor
from test_pipeline import learn_config, planted_prices, sp500_slice, write_csv  # noqa: F401  (sp500_slice: a fixture)

NEW = ("gru", "transformer", "tcn")
SPEC = NetSpec(hidden_size=8, num_layers=2, dropout=0.2, head=(4,))
SETTINGS = TrainSettings(max_epochs=3, patience=2, chunk_len=16)


def toy(n: int = 260, lookback: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive windows of a random series whose label is the sign of the last day's first feature."""
    series = np.random.default_rng(seed).normal(size=(n + lookback - 1, 3)).astype(np.float32)
    X = np.lib.stride_tricks.sliding_window_view(series, (lookback, 3))[:, 0].copy()
    return X, (X[:, -1, 0] > 0).astype(np.int64)


def classifier(family: str, **extra) -> LSTMClassifier:
    return LSTMClassifier(family=family, net=SPEC, train=SETTINGS, device="cpu", random_state=5, **extra)


# --------------------------------------------------------------------------- the networks


@pytest.mark.parametrize("family", NETWORK_FAMILIES)
def test_every_family_fits_predicts_and_restores_from_its_checkpoint(family):
    X, y = toy()
    model = classifier(family).fit(X[:200], y[:200], X[200:230], y[200:230])
    proba = model.predict_proba(X[230:])
    assert proba.shape == (len(X) - 230, 2) and np.allclose(proba.sum(axis=1), 1.0)
    restored = classifier(family).set_checkpoint(model.get_checkpoint())
    np.testing.assert_array_equal(restored.predict_proba(X[230:]), proba)
    if family in ("lstm", "gru"):  # the recurrent layer's weights are named after its cell
        assert any(k.startswith(f"{family}.") for k in model.net_.state_dict())


@pytest.mark.parametrize("family", NEW)
def test_a_checkpoint_of_one_family_is_refused_by_another(family):
    X, y = toy()
    state = classifier(family).fit(X[:100], y[:100]).get_checkpoint()
    with pytest.raises(ValueError, match="does not fit"):
        classifier("lstm").set_checkpoint(state)


@pytest.mark.parametrize("family", NEW)
def test_fits_side_by_side_on_threads_equal_fits_in_turn_and_leave_the_global_rng_alone(family):
    X, y = toy()
    alone = classifier(family).fit(X[:200], y[:200], X[200:230], y[200:230]).predict_proba(X[230:])
    state = torch.get_rng_state()
    out: dict[int, np.ndarray] = {}

    def fit(i: int) -> None:
        out[i] = classifier(family).fit(X[:200], y[:200], X[200:230], y[200:230]).predict_proba(X[230:])

    threads = [threading.Thread(target=fit, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(out[i], alone) for i in range(3))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("lookback", [5, 12, 60])
def test_a_tcn_step_of_a_long_series_equals_the_window_ending_there(lookback):
    """Its receptive field fits in the window, so sequence mode is window mode at a fraction of the cost."""
    net = build_network("tcn", 3, 2, SPEC, lookback).eval()
    assert net.receptive_field() == TCN_KERNEL ** tcn_levels(lookback) <= lookback < 2 * net.receptive_field()
    series = torch.randn(1, lookback + 40, 3)
    windows = series.unfold(1, lookback, 1)[0].permute(0, 2, 1)  # (41, L, 3)
    with torch.no_grad():
        steps = net.forward_sequence(series, skip=lookback - 1)[0]
        torch.testing.assert_close(steps, net(windows), rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["transformer", "tcn"])
def test_the_encoders_are_causal(family):
    net = build_network(family, 3, 2, SPEC, 20).eval()
    x = torch.randn(4, 20, 3)
    later = x.clone()
    later[:, 11:] += torch.randn(4, 9, 3)
    with torch.no_grad():
        a, b = net.encode(x), net.encode(later)
    torch.testing.assert_close(a[:, :11], b[:, :11], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 11:], b[:, 11:])


def test_the_transformer_trains_in_window_mode_and_the_others_keep_sequence_mode():
    modes = {f: classifier(f)._settings().mode for f in NETWORK_FAMILIES}
    assert modes == {"lstm": "sequence", "gru": "sequence", "transformer": "window", "tcn": "sequence"}


def test_family_settings_are_checked_when_the_config_is_read():
    base = RunConfig()
    with pytest.raises(ConfigError, match="did you mean 'gru'"):
        base.with_values({"model.families": ["gur"]})
    with pytest.raises(ConfigError, match="lists a family twice"):
        base.with_values({"model.families": ["gru", "gru"]})
    with pytest.raises(ConfigError, match="does not divide model.hidden_size"):
        base.with_values({"model.families": ["transformer"], "model.heads": 5})
    with pytest.raises(ConfigError, match="bidirectional applies to the lstm and gru"):
        base.with_values({"model.families": ["tcn"], "model.bidirectional": True, "train.mode": "window"})
    assert base.with_values({"model.families": ["tcn"], "model.lstm": False}).model.networks == ()


def test_every_family_is_keyed_and_paired_in_both_targets():
    config = RunConfig().with_values({"model.families": ["lstm", "gru"], "model.lightgbm": True})
    names = [key.name for key in horizon_plan(config)]
    assert names == ["lstm_regression", "lstm_classification", "gru_regression", "gru_classification",
                     "ridge_regression", "logistic_classification", "lightgbm_regression", "lightgbm_classification"]
    assert default_pairs(horizon_plan(config)) == [
        ("lstm_regression", "lstm_classification"), ("gru_regression", "gru_classification"),
        ("lstm_regression", "ridge_regression"), ("lstm_classification", "logistic_classification"),
        ("gru_regression", "ridge_regression"), ("gru_classification", "logistic_classification")]
    no_linear = [own_key(f, t, 1, 1) for f in ("lstm", "lightgbm") for t in ("regression", "classification")]
    assert ("lstm_regression", "lightgbm_regression") in default_pairs(no_linear)


# --------------------------------------------------------------------------- LightGBM


def test_lightgbm_stops_early_on_the_validation_tail_and_refits_with_the_trees_it_chose():
    X, _ = toy(600)
    y = np.random.default_rng(1).normal(size=len(X))  # noise: early stopping must cut the trees short
    model = LightGBMRegressor(refit=True).fit(X[:400], y[:400], X[400:500], y[400:500])
    assert 1 <= model.best_iteration_ < model.n_estimators
    again = LightGBMRegressor(refit=True).fit(X[:400], y[:400], X[400:500], y[400:500])
    np.testing.assert_array_equal(model.predict(X[500:]), again.predict(X[500:]))  # deterministic
    model.refit_full(X[:500], y[:500])
    assert model.model_.n_estimators == model.best_iteration_


def test_lightgbm_reads_the_decision_days_row_only():
    X, y = toy(400)
    model = LightGBMClassifier().fit(X[:300], y[:300], X[300:350], y[300:350])
    shuffled = X.copy()
    shuffled[:, :-1, :] = np.random.default_rng(2).normal(size=shuffled[:, :-1, :].shape)
    np.testing.assert_array_equal(model.predict_proba(X[350:]), model.predict_proba(shuffled[350:]))
    assert (model.predict(X[350:]) == y[350:]).mean() > 0.9  # the label is that row's first feature's sign


# --------------------------------------------------------------------------- on a run


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """Every family, LightGBM and two plug-ins on the planted series (volume today -> tomorrow's move)."""
    source = write_csv(tmp_path_factory.mktemp("fam") / "planted.csv", planted_prices(700, signal=True))
    config = learn_config(source).with_values({
        "model.families": list(NETWORK_FAMILIES), "model.lightgbm": True,
        "model.custom": ["plugin_models:WindowRidge", "plugin_models:RowLogit"]})
    plugin_models.SEEN.clear()
    return run(config)


def test_every_family_lightgbm_and_the_plugins_learn_the_planted_signal(planted_run):
    names = [k.name for k in horizon_plan(planted_run.config)]
    assert {"transformer_classification", "tcn_regression", "lightgbm_classification", "windowridge_regression",
            "rowlogit_classification"} <= set(names)
    hit = {name: planted_run.metrics[name]["hit_rate"] for name in names}
    assert all(rate > 0.75 for rate in hit.values()), hit
    assert set(planted_run.predictions["model"]) == set(names)


def test_plugins_get_the_input_they_declare(planted_run):
    lookback = planted_run.config.model.lookback
    shapes = {name: {shape[1:] for n, shape in plugin_models.SEEN if n == name} for name in ("WindowRidge", "RowLogit")}
    n_features = next(iter(shapes["RowLogit"]))[0]
    assert shapes == {"WindowRidge": {(lookback, n_features)}, "RowLogit": {(n_features,)}}


def test_perturbing_the_future_changes_no_family_lightgbm_or_plugin_prediction(tmp_path, sp500_slice, monkeypatch):
    """The timing rule for every new kind of model, through the whole pipeline."""
    families = {"model.families": ["gru", "transformer", "tcn"], "model.lightgbm": True, "model.heads": 2,
                "model.custom": ["plugin_models:WindowRidge", "plugin_models:RowLogit"], "train.max_epochs": 2}
    monkeypatch.setitem(test_pipeline.MODES, "families", {**test_pipeline.MODES["sequence+warm"], **families})
    test_pipeline.test_perturbing_the_future_changes_nothing_up_to_that_day(tmp_path, sp500_slice, "return", "families")


# --------------------------------------------------------------------------- plug-in errors


@pytest.mark.parametrize("entry, words", [
    ("nosuch_module:X", "module nosuch_module cannot be imported (ModuleNotFoundError"),
    ("plugin_models:Missing", "plugin_models has no attribute 'Missing'"),
    ("plugin_models:not_a_class", "not a class"),
    ("plugin_models", "not a dotted path"),
    ("plugin_models:NoProba", "lacks predict_proba"),
    ("plugin_models:Cube", "lstmbt_input = 'cubes'"),
    ("plugin_models:NeedsArgs", "cannot be built without arguments"),
    ("Bad-Name=plugin_models:RowLogit", "names its model 'Bad-Name'"),
    ("ridge=plugin_models:WindowRidge", "would be named 'ridge_regression'"),
])
def test_a_broken_plugin_is_refused_when_a_config_to_train_is_read(entry, words):
    with pytest.raises(ConfigError, match=None) as caught:
        RunConfig.resolve(overrides={"model.custom": [entry]})
    message = str(caught.value)
    assert words in message and "\n" not in message, message


def test_a_plugin_can_be_named_in_the_entry_or_registered_from_python():
    config = RunConfig().with_values({"model.custom": ["wr=plugin_models:WindowRidge"]})
    assert [p.name for p in config.model.plugins] == ["wr_regression"]
    lstmbt.register_model("logit", plugin_models.RowLogit)
    config = RunConfig().with_values({"model.custom": ["logit"]})
    assert [(p.name, p.input) for p in config.model.plugins] == [("logit_classification", "rows")]
    with pytest.raises(lstmbt.ConfigError, match="not a class"):
        lstmbt.register_model("bad", len)
    with pytest.raises(lstmbt.ConfigError, match="lower case"):
        lstmbt.register_model("Bad Name", plugin_models.RowLogit)


@pytest.mark.parametrize("entry, words", [
    ("plugin_models:Raises", "plug-in model raises_classification (plugin_models:Raises) failed in fit (RuntimeError: "
                             "singular matrix)"),
    ("plugin_models:ShortPredict", "shortpredict_regression (plugin_models:ShortPredict)'s predict returned an "
                                   "array of shape (149,)"),
])
def test_a_plugin_that_fails_mid_run_ends_it_with_one_line_and_keeps_the_finished_folds(entry, words, tmp_path,
                                                                                        run_cli):
    out = tmp_path / "runs" / "new"
    argv = ["run", "--source", "sample:sp500", "--out", str(out), "--set", "data.start=2014-01-01",
            "--set", "split.min_train=300", "--set", "split.step=150", "--set", "model.lstm=false",
            "--set", f'model.custom=["{entry}"]']
    code, _, err = run_cli(argv)
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err and line.startswith("error: ") and words in line, err
    assert "--resume" in line and not out.exists()  # no half-written run; the linear twins' folds wait for --resume
    assert any((tmp_path / "runs" / ".new.partial" / "folds").rglob("fold-*.predictions.parquet"))


def test_a_fixed_plugin_resumes_the_run_it_broke_to_the_uninterrupted_result(tmp_path, run_cli, monkeypatch):
    """Finished folds of the baselines and the plug-in's own are kept; --resume redoes only the rest."""
    import pandas as pd

    sets = ["--set", "data.start=2014-01-01", "--set", "split.min_train=300", "--set", "split.step=150",
            "--set", "model.lstm=false", "--set", 'model.custom=["plugin_models:ShortPredict"]']
    broken = tmp_path / "broken"
    code, _, err = run_cli(["run", "--source", "sample:sp500", "--out", str(broken), *sets])
    assert code == 2 and "--resume" in err
    monkeypatch.setattr(plugin_models.ShortPredict, "predict", plugin_models.WindowRidge.predict)  # the fix
    code, _, err = run_cli(["run", "--resume", str(broken)])
    assert code == 0, err
    code, _, err = run_cli(["run", "--source", "sample:sp500", "--out", str(tmp_path / "fresh"), *sets])
    assert code == 0, err
    read = lambda run: pd.read_parquet(run / "predictions.parquet")  # noqa: E731
    pd.testing.assert_frame_equal(read(broken), read(tmp_path / "fresh"))
    assert "shortpredict_regression" in set(read(broken)["model"])
