"""SHAP attribution (``backtest.attribution``, the SHAP part of ``reports.importance``, ``--method shap``).

On ~700 synthetic bars where today's volume reveals tomorrow's direction (``planted_prices`` of
test_pipeline), the ``volume`` group (its one feature ``volume_z20``) must carry the largest mean
|SHAP| for LightGBM (TreeExplainer), the linear twins (LinearExplainer) and an LSTM (expected
gradients); backgrounds come from each fold's fit samples only; the aggregation is checked by hand.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import lstmbt.backtest.attribution as att
import lstmbt.backtest.importance as imp
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.pipeline import estimator_for
from lstmbt.backtest.scoring import model_plan
from lstmbt.backtest.walkforward import scaled_matrix
from lstmbt.models.threads import torch_threads
from lstmbt.reports.embed import unpack_figures
from helpers import PLANTED_FLAGS, set_args
from test_pipeline import learn_config, planted_prices, write_csv

#: LightGBM and the linear twins only: seconds
TREE_FLAGS = {**PLANTED_FLAGS, "model.lightgbm": True}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    return write_csv(tmp_path_factory.mktemp("attribution") / "planted.csv", planted_prices(700, signal=True))


@pytest.fixture(scope="module")
def config(source) -> RunConfig:
    return RunConfig.resolve(flags={"data.source": source, **TREE_FLAGS})


@pytest.fixture(scope="module")
def design(config):
    return imp.load_design(config)


@pytest.fixture(scope="module")
def frame(config, design) -> pd.DataFrame:
    return att.shap_frame(config, design=design)


def ranked(frame: pd.DataFrame, model: str, level: str) -> pd.DataFrame:
    summary = att.summarize_shap(frame)
    part = summary[(summary["model"] == model) & (summary["level"] == level)]
    return part.sort_values("mean_abs_shap", ascending=False)


def assert_volume_first(frame: pd.DataFrame, model: str) -> None:
    groups, features = ranked(frame, model, att.GROUP), ranked(frame, model, att.FEATURE)
    assert list(groups["group"]) == ["volume", "returns"], groups
    assert features["feature"].iloc[0] == "volume_z20", features
    assert groups["mean_abs_shap"].iloc[0] > 3 * groups["mean_abs_shap"].iloc[1], groups
    assert features["mean_abs_shap"].iloc[0] > 3 * features["mean_abs_shap"].iloc[1], features


# --------------------------------------------------------------------------- the planted signal


@pytest.mark.parametrize("model", ["lightgbm_regression", "lightgbm_classification", "ridge_regression",
                                   "logistic_classification"])
def test_planted_feature_ranks_first_for_trees_and_linear_models(frame, design, model):
    assert_volume_first(frame, model)
    rows = frame[frame["model"] == model]
    assert sorted(rows["fold"].unique()) == [f.index for f in design.folds]
    assert set(rows["explainer"]) == {att.EXPLAINERS["tree" if model.startswith("lightgbm") else "linear"]}


def test_planted_feature_ranks_first_for_an_lstm(source):
    config = learn_config(source).with_values({"model.linear": False, "target.task": "classification"})
    state = np.random.get_state()
    frame = att.shap_frame(config, max_explained=40, max_background=50, n_gradient_samples=20)
    assert np.array_equal(np.random.get_state()[1], state[1])  # shap seeds NumPy's global RNG; the caller's is back
    assert set(frame["model"]) == {"lstm_classification"}
    assert set(frame["explainer"]) == {att.EXPLAINERS["gradient"]}
    assert (frame["n_explained"] == 40).all() and (frame["n_background"] == 50).all()
    assert_volume_first(frame, "lstm_classification")


# --------------------------------------------------------------------------- what is explained, against what


def test_backgrounds_are_fit_samples_and_explained_samples_test_days(config, design, monkeypatch):
    import shap

    backgrounds, explained = [], []
    for name in ("TreeExplainer", "LinearExplainer"):
        original = getattr(shap, name)

        def spy(model, data, *args, _original=original, **kwargs):
            backgrounds.append(np.array(data))
            return _original(model, data, *args, **kwargs)

        monkeypatch.setattr(shap, name, spy)
    real_explain = att.explain
    monkeypatch.setattr(att, "explain", lambda model, bg, ex, **kw: (explained.append(ex), real_explain(model, bg, ex, **kw))[1])
    att.shap_frame(config, design=design, max_explained=30, max_background=40)
    calls = [(key, fold) for key in model_plan(config) for fold in design.folds]
    assert len(backgrounds) == len(explained) == len(calls)
    grid = design.grid
    for rows, windows, (key, fold) in zip(backgrounds, explained, calls):
        matrix = scaled_matrix(design.features, grid.rows(np.concatenate([fold.train, fold.val])))
        positions = [int(np.flatnonzero((matrix == row).all(axis=1))[0]) - grid.first_row for row in rows]
        assert len(rows) == 40 and set(positions) <= set(fold.train), key.name
        dates = grid.dates[positions]
        assert dates.max() < grid.dates[fold.val[0]] and dates.min() >= grid.dates[fold.train[0]]
        ends = [int(np.flatnonzero((matrix == w[-1]).all(axis=1))[0]) - grid.first_row for w in windows]
        assert len(ends) == 30 and set(ends) <= set(fold.test)


def test_network_background_windows_are_fit_samples(source, monkeypatch):
    import shap

    config = learn_config(source).with_values({"model.linear": False, "target.task": "regression",
                                               "train.max_epochs": 1})
    design = imp.load_design(config)
    seen = []
    original = shap.GradientExplainer

    def spy(model, data, *args, **kwargs):
        seen.append(data.detach().numpy().copy())
        return original(model, data, *args, **kwargs)

    monkeypatch.setattr(shap, "GradientExplainer", spy)
    att.shap_frame(config, design=design, max_explained=5, max_background=30, n_gradient_samples=4)
    assert len(seen) == len(design.folds)
    grid = design.grid
    for windows, fold in zip(seen, design.folds):
        matrix = scaled_matrix(design.features, grid.rows(np.concatenate([fold.train, fold.val]))).astype(np.float32)
        assert windows.shape == (30, grid.lookback, matrix.shape[1])
        ends = [int(np.nanargmin(np.abs(matrix - w[-1]).sum(axis=1))) for w in windows]  # NaN: warm-up rows
        np.testing.assert_allclose(matrix[ends], windows[:, -1], rtol=0, atol=1e-6)
        np.testing.assert_allclose(matrix[[e - grid.lookback + 1 for e in ends]], windows[:, 0], atol=1e-6)
        assert set(np.array(ends) - grid.first_row) <= set(fold.train)


def test_sample_positions_are_seeded_capped_and_inside_their_blocks(design):
    fold = design.folds[1]
    background, explained = att.sample_positions(fold, 0, 50, 30)
    again = att.sample_positions(fold, 0, 50, 30)
    other = att.sample_positions(fold, 1, 50, 30)
    assert len(background) == 50 and len(np.unique(background)) == 50 and set(background) <= set(fold.train)
    assert len(explained) == 30 and set(explained) <= set(fold.test)
    assert all(np.array_equal(a, b) for a, b in zip((background, explained), again))
    assert not np.array_equal(background, other[0])
    whole = att.sample_positions(fold, 0, 10**6, 10**6)  # caps above the block sizes take every sample
    assert np.array_equal(whole[0], fold.train) and np.array_equal(whole[1], fold.test)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_tree_and_linear_values_explain_the_models_own_predictions(config, design, task):
    # SHAP values are additive: the difference of two days' sums equals the difference of the
    # model's outputs (target units, or log-odds of up), whatever the base value
    for key in (k for k in model_plan(config) if k.task == task):
        fold, model, matrix = next(imp.fitted_folds(estimator_for(key, config), design, task))
        background, explained = att.sample_positions(fold, 0, 60, 40)
        windows = att.windows_at(matrix, design.grid, explained)
        values, _ = att.explain(model, att.windows_at(matrix, design.grid, background), windows, seed=0)
        if task == "classification":
            p = model.predict_proba(windows)[:, 1]
            output = np.log(p / (1 - p))
        else:
            output = model.predict(windows)
        totals = values.sum(axis=1)
        np.testing.assert_allclose(totals - totals[0], output - output[0], rtol=1e-6, atol=1e-7 * np.ptp(output))


@pytest.mark.parametrize("family", ["lstm", "gru", "transformer", "tcn"])
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_network_output_module_is_the_prediction_in_its_unit(source, family, task):
    config = learn_config(source).with_values({"model.families": [family], "train.max_epochs": 1})
    key = next(k for k in model_plan(config) if k.task == task)
    design = imp.load_design(config)
    with torch_threads(1):
        fold, model, matrix = next(imp.fitted_folds(estimator_for(key, config), design, task))
    # every other test day: windows that are not consecutive are predicted one by one from a zero
    # state (window read-out), which is what the module computes, whatever train.mode is
    windows = att.windows_at(matrix, design.grid, fold.test[:32:2])
    import torch

    with torch.no_grad():
        output = att.output_module(model)(torch.as_tensor(windows, dtype=torch.float32)).numpy()[:, 0]
    if task == "classification":
        p = model.predict_proba(windows)[:, 1]
        expected = np.log(p / (1 - p))
    else:
        expected = model.predict(windows) - model.y_mean_
    np.testing.assert_allclose(output, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


# --------------------------------------------------------------------------- aggregation by hand


def test_rows_average_absolute_values_per_feature_and_absolute_sums_per_group():
    values = np.array([[1.0, -2.0, 3.0], [-3.0, 2.0, 1.0]])  # (samples, features)
    columns = {"a": np.array([0, 1]), "b": np.array([2])}
    rows = pd.DataFrame(att.shap_rows("m", 4, values, ["x", "y", "z"], columns, {"n_explained": 2}))
    features = rows[rows["level"] == att.FEATURE].set_index("feature")
    assert features["mean_abs_shap"].to_dict() == {"x": 2.0, "y": 2.0, "z": 2.0}
    assert features["group"].to_dict() == {"x": "a", "y": "a", "z": "b"}
    groups = rows[rows["level"] == att.GROUP].set_index("group")
    assert groups["mean_abs_shap"].to_dict() == {"a": 1.0, "b": 2.0}  # |1-2| and |-3+2| -> 1; |3|, |1| -> 2
    assert (rows["fold"] == 4).all() and (groups["feature"] == "").all() and (rows["n_explained"] == 2).all()


def test_network_values_are_summed_over_the_windows_days(monkeypatch):
    per_day = np.arange(2 * 3 * 2, dtype=np.float64).reshape(2, 3, 2) - 5.0  # (samples, days, features)

    class Net:
        net_ = object()

    monkeypatch.setattr(att, "gradient_values", lambda *args, **kwargs: per_day)
    values, kind = att.explain(Net(), per_day, per_day, seed=0)
    assert kind == "gradient"
    np.testing.assert_array_equal(values, per_day.sum(axis=1))


def test_summary_means_standard_errors_and_shares_by_hand():
    base = {"model": "m", "n_explained": 10, "n_background": 20, "explainer": "e"}
    frame = pd.DataFrame([{**base, "level": att.GROUP, "group": "g", "feature": "", "fold": f, "mean_abs_shap": v}
                          for f, v in enumerate([1.0, 2.0, 3.0])]
                         + [{**base, "level": att.GROUP, "group": "h", "feature": "", "fold": f, "mean_abs_shap": 2.0}
                            for f in range(3)])
    summary = att.summarize_shap(frame).set_index("group")
    assert summary.loc["g", "mean_abs_shap"] == pytest.approx(2.0)
    assert summary.loc["g", "se_abs_shap"] == pytest.approx(1.0 / np.sqrt(3))  # sample std 1 over sqrt(3 folds)
    assert summary.loc["h", "se_abs_shap"] == 0.0 and summary.loc["g", "n_folds"] == 3
    assert summary.loc["g", "share"] == pytest.approx(0.5) and summary.loc["h", "share"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shap_frame"):
        att.summarize_shap(frame.drop(columns="explainer"))


def test_bad_arguments_are_refused(config, design):
    with pytest.raises(imp.ConfigError, match="max_explained"):
        att.shap_frame(config, design=design, max_explained=0)
    with pytest.raises(imp.ConfigError, match="seed"):
        att.shap_frame(config, design=design, seed=-1)


# --------------------------------------------------------------------------- command line and page


def test_cli_method_shap_writes_the_page(source, tmp_path, run_cli):
    out = tmp_path / "page.html"
    code, stdout, err = run_cli(["importance", "--source", source, "--method", "shap", "--out", str(out),
                                 *set_args(TREE_FLAGS)])
    assert code == 0, err
    assert stdout.strip().splitlines()[-1] == f"importance: {out.resolve()}"
    assert "mean |SHAP|" in stdout and "permutation:" not in stdout
    text = out.read_text(encoding="utf-8")
    for word in ('id="table-shap"', 'id="table-shap-features"', "volume_z20", "lightgbm_classification",
                 "log-odds of up", "TreeExplainer"):
        assert word in text, word
    assert 'id="table-permutation"' not in text
    table = text[text.index('id="table-shap"'):text.index("</table>", text.index('id="table-shap"'))]
    first = re.findall(r'<td class="text">([^<]*)</td><td class="text">([^<]*)</td>', table)[0]
    assert first == ("ridge_regression", "volume")
    blob = re.search(r'<script type="application/octet-stream" id="figures-gz">(.*?)</script>', text, re.S)
    figures = unpack_figures(blob.group(1).strip())["figures"]
    assert list(figures) == ["fig-shap"]
    bars = figures["fig-shap"]["data"]
    assert len(bars) == 4 and all(list(b["x"]) == ["volume", "returns"] and b["error_y"]["visible"] for b in bars)
    assert all(b["y"][0] > b["y"][1] for b in bars)


def test_cli_method_all_shows_every_method(source, tmp_path, run_cli):
    out = tmp_path / "all.html"
    flags = {**PLANTED_FLAGS, "target.task": "classification"}
    code, stdout, err = run_cli(["importance", "--source", source, "--method", "all", "--repeats", "1",
                                 "--out", str(out), *set_args(flags)])
    assert code == 0, err
    assert all(w in stdout for w in ("permutation:", "ablation:", "shap:"))
    text = out.read_text(encoding="utf-8")
    assert all(f'id="table-{m}"' in text for m in ("permutation", "ablation", "shap"))
