"""CPCV in a run (split.scheme = "cpcv"): a planted signal beats buy-and-hold on every path, a random
walk shows no skill, the timing rule holds for each test block's own dates, and the results save,
load and render."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.cpcv import cpcv_folds, cpcv_splitter, predict_cpcv
from lstmbt.backtest.cpcv_paths import CPCV_METRICS
from lstmbt.backtest.design import make_design
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.rundir import load_run
from lstmbt.backtest.scoring import BENCHMARK, model_plan
from helpers import LINEAR_VALUES, TINY_VALUES, save_with_report
from test_pipeline import learn_config, planted_prices, write_csv

pytestmark = pytest.mark.filterwarnings("ignore::lstmbt.models.threads.ContentionWarning")  # the machine may be busy

#: 4 blocks, 2 tested per split: 6 splits, 3 paths
CPCV = {"split.scheme": "cpcv", "split.groups": 4, "split.test_groups": 2}


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    source = write_csv(tmp_path_factory.mktemp("cpcv") / "planted.csv", planted_prices(700, signal=True))
    return run(learn_config(source).with_values(CPCV), threads=2)


def test_a_planted_signal_beats_buy_and_hold_on_every_path(planted_run):
    cpcv = planted_run.cpcv
    assert (cpcv["settings"]["splits"], cpcv["settings"]["paths"]) == (6, 3)
    for name in ("lstm_classification", "logistic_classification"):
        bench = cpcv["paths"][BENCHMARK]["sharpe"]
        assert all(mine > theirs + 1.0 for mine, theirs in zip(cpcv["paths"][name]["sharpe"], bench))
        assert min(cpcv["paths"][name]["hit_rate"]) > 0.8
        assert cpcv["summary"][name]["cpcv_beats_bh_share"] == 1.0
        assert cpcv["verdicts"][name]["verdict"] == "beats"
    for name in CPCV_METRICS:  # metrics.json carries the CPCV figures of every strategy scored on the paths
        assert all(name in planted_run.metrics[s] for s in cpcv["summary"])


def test_paths_take_each_block_from_the_split_the_book_assigns(planted_run):
    design = make_design(_prices(planted_run), planted_run.config)
    splitter = cpcv_splitter(design, planted_run.config)
    blocks = splitter.group_positions(design.grid.n)
    preds = planted_run.cpcv_predictions
    mine = preds[preds["model"] == "logistic_classification"]
    for split, fold in enumerate(cpcv_folds(design, planted_run.config)):
        days = mine.loc[mine["fold"] == split, "date"]
        assert pd.DatetimeIndex(days).equals(design.grid.dates[fold.test])  # each split predicts its test blocks
    # every sample is predicted by C(N-1, k-1) = 3 splits, one per path
    assert (mine.groupby("date").size() == splitter.n_paths).all()
    assert len(mine["date"].unique()) == sum(len(b) for b in blocks) == design.grid.n


def _prices(result):
    from lstmbt.backtest.data import load_prices

    return load_prices(result.config.data)


def test_a_random_walk_shows_no_skill_across_paths(tmp_path):
    source = write_csv(tmp_path / "walk.csv", planted_prices(2000, signal=False, seed=11))
    config = RunConfig.resolve(flags={**LINEAR_VALUES, "data.source": source, "features.groups": ["volume", "returns"],
                                      "split.min_train": 300, "backtest.fee_rate": 0.0, "backtest.slippage": 0.0,
                                      **CPCV})
    result = run(config, threads=1)
    days = result.cpcv["settings"]
    n_days = len(result.cpcv_returns) / days["paths"]
    se = math.sqrt(252 / n_days)  # a skill-less Sharpe's standard error over these days
    for name in ("ridge_regression", "logistic_classification"):
        median = result.cpcv["summary"][name]["cpcv_sharpe_median"]
        assert abs(median) < 3 * se  # centred where no skill puts it: zero before costs
        assert result.cpcv["verdicts"][name]["verdict"] != "beats"
    out = save_with_report(result, tmp_path / "run")
    html = (out / "report.html").read_text()
    assert "logistic_classification: no evidence of skill across the paths" in html


def _perturb_dates(prices: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
    out = prices.copy()
    factor = np.exp(np.random.default_rng(5).normal(0.0, 0.05, len(dates)))
    for name in ("Open", "High", "Low", "Close"):
        out.loc[dates, name] = out.loc[dates, name] * factor
    out.loc[dates, "Volume"] = out.loc[dates, "Volume"] * factor[::-1] * 3
    return out


@pytest.mark.parametrize("values", [LINEAR_VALUES, TINY_VALUES], ids=["linear", "lstm"])
def test_perturbing_a_test_block_after_day_d_leaves_its_predictions_up_to_d(tmp_path, values):
    prices = planted_prices(700, signal=True)
    source = write_csv(tmp_path / "p.csv", prices)
    config = RunConfig.resolve(flags={**values, "data.source": source, "features.groups": ["volume", "returns"],
                                      "split.min_train": 300, **CPCV})
    design = make_design(prices, config)
    blocks = cpcv_splitter(design, config).group_positions(design.grid.n)
    block = design.grid.dates[blocks[1]]  # block 1 is tested by splits 0, 3 and 4
    day = block[len(block) // 2]
    later = block[block > day]
    changed = make_design(_perturb_dates(prices, later), config)
    plan = model_plan(config)
    before, _, _ = predict_cpcv(design, config, plan)
    after, _, _ = predict_cpcv(changed, config, plan)
    for split in (0, 3, 4):
        for name in before["model"].unique():
            one = before[(before["fold"] == split) & (before["model"] == name)].set_index("date")
            two = after[(after["fold"] == split) & (after["model"] == name)].set_index("date")
            upto = one.index <= day
            pd.testing.assert_frame_equal(one.loc[upto, ["y_pred", "p_up"]], two.loc[upto, ["y_pred", "p_up"]],
                                          check_exact=True)
            # the perturbation is real: predictions on the perturbed days move
            assert not np.allclose(one.loc[later, ["y_pred", "p_up"]].fillna(0),
                                   two.loc[later, ["y_pred", "p_up"]].fillna(0))


def test_cpcv_saves_loads_and_renders(planted_run, tmp_path):
    out = save_with_report(planted_run, tmp_path / "run")
    assert json.loads((out / "cpcv.json").read_text())["settings"]["paths"] == 3
    back = load_run(out)
    assert back.cpcv == json.loads((out / "cpcv.json").read_text())
    pd.testing.assert_frame_equal(back.cpcv_returns, planted_run.cpcv_returns, check_dtype=False)
    html = (out / "report.html").read_text()
    assert 'id="cpcv"' in html and 'id="cpcv-table"' in html and "cpcv-sharpe" in html
    assert "lstm_classification: beats buy-and-hold on 3 of 3 paths" in html
    assert "On the walk-forward&#39;s own days" in html or "On the walk-forward's own days" in html
    for key in CPCV_METRICS:
        assert key in html


def test_path_figures_come_from_the_saved_path_returns(planted_run):
    from lstmbt.backtest import metrics as m

    returns, cpcv = planted_run.cpcv_returns, planted_run.cpcv
    first = pd.Timestamp(cpcv["settings"]["walk_forward_first_date"])
    assert first == planted_run.positions.index[0]  # the walk-forward's first decision day
    for j, path in returns.groupby("path"):
        for name in ("lstm_classification", BENCHMARK):
            r = path[name].to_numpy()
            assert cpcv["paths"][name]["sharpe"][j] == pytest.approx(m.sharpe(r), rel=1e-12)
            assert cpcv["paths"][name]["total_return"][j] == pytest.approx(m.total_return(r), rel=1e-12)
            late = path.loc[path["date"] >= first, name].to_numpy()
            assert cpcv["paths"][name]["sharpe_wf_days"][j] == pytest.approx(m.sharpe(late), rel=1e-12)


def test_too_little_data_for_cpcv_is_one_line(tmp_path):
    source = write_csv(tmp_path / "p.csv", planted_prices(700, signal=True))
    config = RunConfig.resolve(flags={**LINEAR_VALUES, "data.source": source, "features.groups": ["volume", "returns"],
                                      "split.min_train": 300, "split.scheme": "cpcv", "split.groups": 8,
                                      "split.test_groups": 4, "split.embargo": 90})
    with pytest.raises(ConfigError, match=r"split.scheme = 'cpcv': split \d+ .* fits on 0 of 675 samples .*; use "
                                          r"split.test_groups = 3 or split.embargo = 75"):
        run(config)


def test_ray_fits_the_splits_as_the_local_run_does(tmp_path):
    ray = pytest.importorskip("ray")
    from lstmbt.backtest.campaign.executors import make_executor

    source = write_csv(tmp_path / "p.csv", planted_prices(500, signal=True))
    config = RunConfig.resolve(flags={**LINEAR_VALUES, "data.source": source, "features.groups": ["volume", "returns"],
                                      "split.min_train": 200, **CPCV})
    local = run(config, threads=1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = run(config, threads=1, executor=make_executor("ray"))
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(local.cpcv_predictions, remote.cpcv_predictions, check_exact=True)
    assert local.cpcv["summary"] == remote.cpcv["summary"]


def test_the_python_api_refuses_an_unknown_executor_in_one_line():
    import lstmbt

    with pytest.raises(ConfigError, match="--executor 'dask' is not known; use one of: local, ray"):
        lstmbt.run(quick=True, set={"split.scheme": "cpcv"}, executor="dask")


def test_pbo_ranks_the_models_only_and_says_it_is_no_search(planted_run):
    from lstmbt.backtest.pbo import probability_of_backtest_overfitting
    from lstmbt.reports.cpcv import cpcv_block

    cpcv, models = planted_run.cpcv, list(planted_run.cpcv["verdicts"])
    pbo = cpcv["pbo"]
    assert pbo["models"] == models and len(models) == 4 and BENCHMARK not in models
    expected = [probability_of_backtest_overfitting(np.nan_to_num(path[models].to_numpy()), pbo["n_blocks"]).pbo
                for _, path in planted_run.cpcv_returns.groupby("path", sort=True)]
    assert pbo["per_path"] == expected
    sentence = cpcv_block(cpcv, models)["pbo"]
    assert sentence.startswith("PBO over the 4 models (CSCV with 16 blocks on each path; buy-and-hold and the naive "
                               "baselines left out): median ")
    assert "not a search over settings" in sentence


def test_a_pbo_over_every_strategy_or_one_model_never_reads_as_low_overfitting():
    from lstmbt.reports.cpcv import pbo_sentence

    old = {"per_path": [0.17, 0.18], "median": 0.18, "min": 0.17, "max": 0.18, "n_blocks": 16,
           "strategies": ["a", "b", "persistence", "majority", "buy_and_hold"]}
    assert pbo_sentence(old) == ("PBO over the 5 strategies, buy-and-hold and the naive baselines included (CSCV with "
                                 "16 blocks on each path): median 0.18, range 0.17 to 0.18. That set is not a search, "
                                 "so a low value is no sign of low overfitting.")
    one = {"per_path": [], "median": math.nan, "min": math.nan, "max": math.nan, "n_blocks": 16, "models": ["a"]}
    assert pbo_sentence(one) == ("PBO not computed: it needs at least 2 models to pick the best of (this run has 1 "
                                 "model).")
