"""Feature-group importance (``backtest.importance``, ``reports.importance``, ``lstmbt importance``).

Fast: only the linear baselines (``model.lstm=false``, milliseconds per fold) on ~700 synthetic
bars where today's volume reveals tomorrow's direction (``planted_prices`` of test_pipeline), so
the ``volume`` group must matter and ``returns`` must not.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import lstmbt.backtest.importance as imp
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.splits import WalkForwardSplit
from lstmbt.backtest.walkforward import SampleGrid
from lstmbt.reports.embed import unpack_figures
from test_pipeline import planted_prices, write_csv
from helpers import PLANTED_FLAGS, set_args


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    return write_csv(tmp_path_factory.mktemp("importance") / "planted.csv", planted_prices(700, signal=True))


@pytest.fixture(scope="module")
def config(source) -> RunConfig:
    return RunConfig.resolve(flags={"data.source": source, **PLANTED_FLAGS})


@pytest.fixture(scope="module")
def design(config):
    return imp.load_design(config)


@pytest.fixture(scope="module")
def frame(config, design) -> pd.DataFrame:
    parts = [imp.permutation_importance(config, design=design), imp.ablation_importance(config, design=design)]
    return pd.concat(parts, ignore_index=True)


def summary_of(frame: pd.DataFrame, method: str) -> pd.DataFrame:
    summary = imp.summarize_importance(frame)
    return summary[summary["method"] == method].set_index(["model", "group"])


# --------------------------------------------------------------------------- what is permuted


def test_permute_block_keeps_rows_inside_each_test_block():
    n_rows, lookback = 400, 3
    matrix = np.arange(n_rows)[:, None] * 100.0 + np.arange(4)[None, :]  # value = row * 100 + column
    grid = SampleGrid(first_row=7, n=380, lookback=lookback, dates=pd.bdate_range("2001-01-01", periods=380))
    folds = WalkForwardSplit(min_train=100, step=60, horizon=1).split(grid.n)
    group = np.array([1, 2])
    assert len(folds) >= 4
    for fold in folds:
        block = grid.rows(fold.test)
        out = imp.permute_block(matrix, block, group, np.random.default_rng(fold.index))
        source_rows = (out[:, group] // 100).astype(int)
        outside = np.setdiff1d(np.arange(n_rows), block)
        np.testing.assert_array_equal(out[outside], matrix[outside])  # nothing outside the block moves
        np.testing.assert_array_equal(out[:, [0, 3]], matrix[:, [0, 3]])  # other groups untouched
        assert sorted(source_rows[block, 0]) == list(block)  # the block's multiset of rows is kept
        np.testing.assert_array_equal(source_rows[:, 0], source_rows[:, 1])  # the group's columns move together
        assert (source_rows[block, 0] != block).mean() > 0.9  # and it really is shuffled
    assert (matrix == np.arange(n_rows)[:, None] * 100.0 + np.arange(4)[None, :]).all()  # input not modified


def test_permutation_shuffles_exactly_each_folds_test_rows_and_group_columns(config, design, monkeypatch):
    calls = []

    def spy(matrix, rows, columns, rng):
        calls.append((np.array(rows), np.array(columns)))
        return original(matrix, rows, columns, rng)

    original = imp.permute_block
    monkeypatch.setattr(imp, "permute_block", spy)
    imp.permutation_importance(config, n_repeats=2, design=design)
    columns = imp.group_columns(design, config)
    expected = [(design.grid.rows(f.test), columns[g]) for _model in range(2) for f in design.folds
                for g in ("volume", "returns") for _repeat in range(2)]
    assert len(calls) == len(expected)
    for (rows, cols), (want_rows, want_cols) in zip(calls, expected):
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(cols, want_cols)


def test_group_columns_map_every_column_to_its_group(config, design):
    columns = imp.group_columns(design, config)
    names = {g: list(design.features.columns[c]) for g, c in columns.items()}
    assert names == {"volume": ["volume_z20"], "returns": ["ret_1d", "ret_5d", "ret_10d", "ret_20d"]}


def test_exogenous_columns_form_one_more_group(source, tmp_path):
    pytest.importorskip("lstmbt.models.exog")
    prices = planted_prices(700, signal=True)
    walk = 50 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, len(prices))))
    pd.DataFrame({"Date": prices.index, "Close": walk}).to_csv(tmp_path / "side.csv", index=False)
    config = RunConfig.resolve(flags={"data.source": source, "data.exog": [f"csv:{tmp_path / 'side.csv'}"],
                                      **PLANTED_FLAGS})
    design = imp.load_design(config)
    columns = imp.group_columns(design, config)
    assert list(columns) == ["volume", "returns", "exog"] == list(imp.feature_groups(config))
    assert all(name.startswith("exog_") for name in design.features.columns[columns["exog"]])
    summary = summary_of(imp.permutation_importance(config, n_repeats=1, design=design), "permutation")
    assert abs(summary.loc[("logistic_classification", "exog"), "mean_d_hit_rate"]) < 0.05


# --------------------------------------------------------------------------- the planted signal


@pytest.mark.parametrize("method", ["permutation", "ablation"])
def test_volume_matters_and_returns_do_not(frame, method):
    summary = summary_of(frame, method)
    for model in ("ridge_regression", "logistic_classification"):
        volume, returns = summary.loc[(model, "volume")], summary.loc[(model, "returns")]
        assert volume["mean_d_hit_rate"] < -0.2, (model, volume)
        assert volume["mean_d_loss"] > 0
        assert abs(returns["mean_d_hit_rate"]) < 0.05, (model, returns)
        assert volume["mean_d_loss"] > 5 * abs(returns["mean_d_loss"])
        assert volume["n_folds"] == 4 and volume["se_d_hit_rate"] > 0


def test_both_methods_score_the_same_unaltered_models_on_the_same_folds(frame, design):
    # permutation's own fold loop must fit exactly what walk_forward_predict (used by ablation) fits
    per_method = {m: g.drop_duplicates(["model", "fold"]).set_index(["model", "fold"])[["hit_rate", "loss"]]
                  for m, g in frame.groupby("method")}
    pd.testing.assert_frame_equal(per_method["permutation"], per_method["ablation"], rtol=1e-12)
    assert sorted(frame["fold"].unique()) == [f.index for f in design.folds]


def test_same_seed_same_frame_other_seed_other_shuffles(config, design):
    first = imp.permutation_importance(config, n_repeats=2, seed=5, design=design)
    again = imp.permutation_importance(config, n_repeats=2, seed=5, design=design)
    other = imp.permutation_importance(config, n_repeats=2, seed=6, design=design)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    assert not np.array_equal(first["d_loss"], other["d_loss"])
    pd.testing.assert_frame_equal(first[["hit_rate", "loss"]], other[["hit_rate", "loss"]], check_exact=True)


def test_summary_means_and_standard_errors_by_hand():
    frame = pd.DataFrame({"model": "m", "group": "g", "method": "permutation", "fold": [0, 1, 2],
                          "d_hit_rate": [-0.1, -0.2, -0.3], "d_loss": [0.5, 0.5, 0.5],
                          "hit_rate": [0.6, 0.7, 0.8], "loss": [1.0, 2.0, 3.0]})
    row = imp.summarize_importance(frame).iloc[0]
    assert row["mean_d_hit_rate"] == pytest.approx(-0.2)
    assert row["se_d_hit_rate"] == pytest.approx(0.1 / np.sqrt(3))  # sample std 0.1 over sqrt(3 folds)
    assert row["se_d_loss"] == 0.0 and row["n_folds"] == 3
    assert (row["hit_rate"], row["loss"]) == (pytest.approx(0.7), pytest.approx(2.0))
    assert np.isnan(imp.summarize_importance(frame.iloc[:1])["se_d_hit_rate"].iloc[0])


def test_bad_arguments_are_refused(config, design):
    with pytest.raises(ConfigError, match="permutation, ablation, shap, both .* or all"):
        imp.parse_method("lime")
    assert imp.parse_method("both") == ("permutation", "ablation") and imp.parse_method("shap") == ("shap",)
    assert imp.parse_method("all") == ("permutation", "ablation", "shap")
    assert len(imp.importance_frame(config, "shap", design=design)) == 0  # shap has its own frame
    with pytest.raises(ConfigError, match="--repeats"):
        imp.permutation_importance(config, n_repeats=0, design=design)
    with pytest.raises(ConfigError, match="choose among"):
        imp.ablation_importance(config, groups=["rsi"], design=design)
    single = config.with_values({"features.groups": ["volume"]})
    with pytest.raises(ConfigError, match="use --method permutation"):
        imp.ablation_importance(single, design=design)


# --------------------------------------------------------------------------- command line and page




def test_cli_writes_an_escaped_page_whose_figures_decode(tmp_path, run_cli):
    folder = tmp_path / "odd <i>&name"
    folder.mkdir()
    source = write_csv(folder / "planted.csv", planted_prices(700, signal=True))
    out = tmp_path / "page.html"
    args = ["importance", "--source", source, "--repeats", "2", "--out", str(out)]
    code, stdout, err = run_cli(args + set_args(PLANTED_FLAGS))
    assert code == 0, err
    assert stdout.strip().splitlines()[-1] == f"importance: {out.resolve()}"
    assert "volume" in stdout and "ablation" in stdout
    text = out.read_text(encoding="utf-8")
    assert "odd &lt;i&gt;&amp;name" in text and "<i>&name" not in text
    for word in ("volume", "returns", "ridge_regression", "logistic_classification", 'id="fig-permutation"',
                 'id="fig-ablation"'):
        assert word in text
    blob = re.search(r'<script type="application/octet-stream" id="figures-gz">(.*?)</script>', text, re.S)
    figures = unpack_figures(blob.group(1).strip())["figures"]
    assert list(figures) == ["fig-permutation", "fig-ablation"]
    bars = figures["fig-permutation"]["data"]
    assert len(bars) == 4 and all(b["type"] == "bar" and b["error_y"]["visible"] for b in bars)
    assert list(bars[0]["x"]) == ["volume", "returns"]
    assert not list(tmp_path.glob(".page.html.tmp*"))


@pytest.mark.parametrize("argv, words", [(["--method", "lime"], ["--method", "permutation, ablation, shap"]),
                                         (["--repeats", "0"], ["--repeats", ">= 1"])])
def test_cli_bad_input_is_one_line_and_exit_2(argv, words, source, tmp_path, run_cli):
    out = tmp_path / "never.html"
    code, stdout, err = run_cli(["importance", "--source", source, "--out", str(out), *argv,
                                 *set_args(PLANTED_FLAGS)])
    assert code == 2, (code, stdout, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert all(w in lines[0] for w in words)
    assert not out.exists()


@pytest.mark.parametrize("values", [{"train.refit": True, "split.val_fraction": 0.2},
                                    {"target.dead_zone": 0.005, "target.task": "classification"}])
def test_fitted_folds_refit_and_weight_as_the_run_does(source, values):
    # fitted_folds (permutation, SHAP) must fit what the run's walk-forward fits, also when
    # train.refit refits on the whole window or the dead zone weights the training samples
    from lstmbt.backtest.pipeline import estimator_for, training_weights
    from lstmbt.backtest.scoring import model_plan
    from lstmbt.backtest.walkforward import walk_forward_predict
    from lstmbt.models.windows import sliding_windows

    config = RunConfig.resolve(flags={"data.source": source, **PLANTED_FLAGS, **values})
    design = imp.load_design(config)
    for key in model_plan(config):
        target, weights = design.targets[key.task], training_weights(design, key.task, key.horizon, config)
        assert (weights is not None) == ("target.dead_zone" in values)
        run_preds, _ = walk_forward_predict(estimator_for(key, config), design.features, target, design.grid,
                                            design.folds, train_weight=weights)
        for fold, model, matrix in imp.fitted_folds(estimator_for(key, config), design, key.task, weights):
            start = design.grid.first_row + int(fold.test[0]) - design.grid.lookback + 1
            windows = sliding_windows(matrix, design.grid.lookback)[start:start + len(fold.test)]
            mine = model.predict_proba(windows)[:, 1] if key.task == "classification" else model.predict(windows)
            column = "p_up" if key.task == "classification" else "y_pred"
            np.testing.assert_allclose(mine, run_preds.loc[run_preds["fold"] == fold.index, column], rtol=1e-12)
