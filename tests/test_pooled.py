"""The pooled model of a universe (``backtest.pooled``): the per-ticker timing rule, look-ahead,
the output contract of ``pipeline._predict_all``, learnability, and one ticker == walk-forward."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import ModelConfig, RunConfig
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.backtest.pipeline import _predict_all, make_design, score_run
from lstmbt.backtest.universe.pooled import (FoldDates, label_known_dates, pooled_config, pooled_folds, pooled_predict,
                             select_samples, union_calendar)
from lstmbt.backtest.scoring import horizon_plan
from test_pipeline import perturb_after, planted_prices
from helpers import TINY_VALUES

#: the tiny config on two feature groups, with more folds and a network that can learn
TINY_POOLED = {**TINY_VALUES, "features.groups": ["volume", "returns"], "split.step": 40, "model.hidden_size": 6,
               "model.dropout": 0.0, "train.max_epochs": 3, "train.patience": 2}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**extra) -> RunConfig:
    return RunConfig.resolve(flags={**TINY_POOLED, **extra})


def _no_report(*args) -> None:
    return None


# --------------------------------------------------------------------------- the timing rule, directly


def _brute_force(bars: pd.DatetimeIndex, samples: pd.DatetimeIndex, gap: int, block: FoldDates) -> tuple:
    """The rule written out sample by sample on the ticker's own bar list, independently of the module."""
    fit, val, test = [], [], []
    fit_until = block.val_start if block.val_start is not None else block.test_start
    for i, day in enumerate(samples):
        own = bars.get_loc(day) + gap
        known = bars[own] if own < len(bars) else None
        if known is not None and day >= block.window_start and known < fit_until:
            fit.append(i)
        if known is not None and block.val_start is not None and day >= block.val_start and known < block.test_start:
            val.append(i)
        if block.test_start <= day <= block.test_end:
            test.append(i)
    return fit, val, test


def test_a_ticker_with_missing_days_is_purged_on_its_own_bars():
    union = pd.bdate_range("2020-01-01", periods=60)
    s, v = union[40], union[30]
    # late start, and no bars on the three union days before the test block nor on the two before val
    bars = union[5:].delete([union[5:].get_loc(d) for d in (union[28], union[29], union[37], union[38], union[39])])
    samples = bars[:-2]  # h = 2: the last two bars have no label
    block = FoldDates(index=0, window_start=union[0], val_start=v, test_start=s, test_end=union[49])
    known = label_known_dates(bars, np.arange(len(samples)), gap=2)
    fold = select_samples(samples, known, block)
    fit, val, test = _brute_force(bars, samples, 2, block)
    assert fold.train.tolist() == fit and fold.val.tolist() == val and fold.test.tolist() == test
    usable = np.concatenate([fold.train, fold.val])
    assert (known[usable] < np.datetime64(s)).all()
    # Its samples dated union[35] and union[36] have labels realised only at union[40] and union[41], on or
    # after the test start, although union day t + 2 lies before it: a union-calendar purge would use them.
    union_purge = [i for i, d in enumerate(samples) if d >= v and union.get_loc(d) + 2 < union.get_loc(s)]
    leaked = sorted(set(union_purge) - set(usable.tolist()))
    assert [samples[i] for i in leaked] == [union[35], union[36]]
    # the same before the validation tail: union[26] and union[27] are purged from the fit set
    assert samples.get_loc(union[27]) not in fold.train and samples.get_loc(union[25]) in fold.train
    assert fold.train[0] == 0 and samples[fold.test[0]] == s  # the late start simply contributes less


@pytest.mark.parametrize("scheme, val_fraction, embargo, h", [("expanding", 0.2, 0, 1), ("rolling", 0.25, 2, 3),
                                                               ("expanding", 0.0, 1, 5)])
def test_selection_matches_the_rule_on_random_calendars(scheme, val_fraction, embargo, h):
    rng = np.random.default_rng(h)
    union = pd.bdate_range("2015-01-01", periods=400)
    split = tiny(**{"split.scheme": scheme, "split.val_fraction": val_fraction, "split.embargo": embargo}).split
    blocks = pooled_folds(union, split, h)
    assert blocks[0].test_start == union[split.min_train] and blocks[-1].test_end == union[-1]
    for seed in range(4):
        keep = np.random.default_rng([seed, h]).random(len(union)) > 0.15  # ~15% of days missing
        bars = union[keep][int(rng.integers(0, 60)):]  # and a late start
        samples = bars[: len(bars) - h]
        known = label_known_dates(bars, np.arange(len(samples)), gap=h + embargo)
        for block in blocks:
            fold = select_samples(samples, known, block)
            fit, val, test = _brute_force(bars, samples, h + embargo, block)
            assert (fold.train.tolist(), fold.val.tolist(), fold.test.tolist()) == (fit, val, test)


# --------------------------------------------------------------------------- a small universe


@pytest.fixture(scope="module")
def universe() -> tuple[dict[str, pd.DataFrame], pd.Timestamp]:
    """Three tickers sharing a planted signal; BBB trades at 40x the price, starts 40 bars late and has
    no bars on the three union days up to the test start of pooled fold 2 (returned as the cut day)."""
    prices = {t: planted_prices(360, signal=True, seed=seed) for t, seed in (("AAA", 1), ("BBB", 2), ("CCC", 3))}
    calendar = make_design(prices["AAA"], tiny()).grid.dates
    cut = pooled_folds(calendar, tiny().split, 1)[2].test_start
    i = calendar.get_loc(cut)
    bbb = prices["BBB"].assign(**{c: prices["BBB"][c] * 40 for c in ("Open", "High", "Low", "Close")})
    prices["BBB"] = bbb.iloc[40:].drop(calendar[i - 2 : i + 1])
    return prices, cut


def designs_of(prices: dict[str, pd.DataFrame], config: RunConfig) -> dict:
    return {t: make_design(p, config) for t, p in prices.items()}


@pytest.fixture(scope="module")
def pooled3(universe):
    config = tiny()  # train.mode = "sequence" (the default): pooled fits switch to window mode
    designs = designs_of(universe[0], config)
    return designs, config, pooled_predict(designs, config)


@pytest.fixture(scope="module")
def single(universe):
    """AAA alone, pooled and through the plain walk-forward of ``pipeline._predict_all`` on the same folds."""
    config = tiny()
    design = make_design(universe[0]["AAA"], config)
    pooled = pooled_predict({"AAA": design}, config)["AAA"]
    return pooled, _predict_all(design, pooled_config(config), _no_report, {})


# --------------------------------------------------------------------------- look-ahead


def test_perturbing_one_ticker_after_a_day_changes_no_prediction_up_to_it(universe, pooled3):
    prices, cut = universe
    config = tiny(**{"split.val_fraction": 0.0})  # BBB's sample dated cut - 3 would be fitted if it leaked
    base = pooled_predict(designs_of(prices, config), config)
    changed = dict(prices, BBB=perturb_after(prices["BBB"], cut))
    other = pooled_predict(designs_of(changed, config), config)
    decided = ["date", "target", "model", "horizon", "fold", "y_pred", "p_up", "close"]
    for ticker in prices:
        a, b = base[ticker][0], other[ticker][0]
        assert len(a) == len(b) and (a["date"] <= cut).any()
        pd.testing.assert_frame_equal(a.loc[a["date"] <= cut, decided], b.loc[b["date"] <= cut, decided],
                                      check_exact=True)
        # a label dated t is realised at the ticker's own next bar: fixed if dated before its last bar <= cut
        last_bar = prices[ticker].index[prices[ticker].index <= cut][-1]
        pd.testing.assert_series_equal(a.loc[a["date"] < last_bar, "y_true"], b.loc[b["date"] < last_bar, "y_true"],
                                       check_exact=True)
        # ...and the perturbation reached every ticker's later predictions through the pooled fits
        for name in ("ridge_regression", "lstm_classification"):
            later_a, later_b = (f.loc[(f["date"] > cut) & (f["model"] == name), "y_pred" if "reg" in name else "p_up"]
                                for f in (a, b))
            assert not np.array_equal(later_a.to_numpy(), later_b.to_numpy()), (ticker, name)
    assert cut not in set(prices["BBB"].index)  # BBB has no bar on the cut day: the purge had work to do


# --------------------------------------------------------------------------- the output contract


def test_outputs_have_the_walk_forward_columns_and_score_unchanged(pooled3, single):
    designs, config, out = pooled3
    reference_preds, reference_log = single[1]
    assert set(out) == set(designs)
    for ticker, (preds, log) in out.items():
        pd.testing.assert_series_equal(preds.dtypes, reference_preds.dtypes)
        assert list(log.columns[: len(reference_log.columns)]) == list(reference_log.columns)
        pd.testing.assert_series_equal(log.dtypes[reference_log.columns], reference_log.dtypes)
        assert list(preds["model"].unique()) == [key.name for key in horizon_plan(config)]
        design = designs[ticker]
        scored = design.grid.dates[design.folds[0].test[0]:]
        for name, group in preds.groupby("model", sort=False):
            assert group["date"].tolist() == scored.tolist(), (ticker, name)  # every scored day, once
            assert group[["y_pred", "y_true", "close"]].notna().all().all()
        assert (log["train_mode"] == "window").all() and log["n_tickers"].max() == 3
        assert (log.groupby("model")["n_test"].sum() == len(scored)).all()
    late = out["BBB"][1]
    assert late["fold"].min() > 0 and (late["n_train_ticker"] < late["n_train"] / 2).all()
    result = score_run(designs["BBB"], *out["BBB"], config)
    assert set(result.metrics) >= {key.name for key in horizon_plan(config)} | {"buy_and_hold"}
    assert result.positions.index.equals(designs["BBB"].grid.dates[designs["BBB"].folds[0].test[0]:])
    assert result.folds["hit_rate"].notna().all()


def test_one_ticker_pooled_equals_its_walk_forward_on_the_same_folds(single):
    """The date-based folds and own-day purge reduce to the sample splitter for one ticker; LSTMs too
    (window mode, the mode pooled fits run in), bit for bit on the CPU."""
    (pooled, pooled_log), (reference, reference_log) = single
    pd.testing.assert_frame_equal(pooled, reference, check_exact=True)
    same = [c for c in reference_log.columns if c != "fit_seconds"]
    pd.testing.assert_frame_equal(pooled_log[same], reference_log[same], check_exact=True)


@pytest.mark.parametrize("extra", [
    {"split.scheme": "rolling", "split.embargo": 2, "target.horizons": [1, 3]},
    {"split.val_fraction": 0.0, "target.dead_zone": 0.003, "target.regression": "week_mean", "target.horizon": 5},
])
def test_one_ticker_pooled_equals_walk_forward_for_the_linear_baselines(universe, extra):
    config = tiny(**{"model.lstm": False, **extra})
    design = make_design(universe[0]["BBB"], config)  # the ticker with missing days
    pooled, pooled_log = pooled_predict({"BBB": design}, config)["BBB"]
    reference, reference_log = _predict_all(design, config, _no_report, {})
    pd.testing.assert_frame_equal(pooled, reference, check_exact=True)
    pd.testing.assert_series_equal(pooled_log["n_train"], reference_log["n_train"])


# --------------------------------------------------------------------------- learnability and targets


def test_pooled_logistic_learns_a_shared_planted_signal(universe):
    config = tiny(**{"model.lstm": False, "target.task": "classification"})
    out = pooled_predict(designs_of(universe[0], config), config)
    for ticker, (preds, _) in out.items():
        hit = float(np.mean((preds["p_up"] > 0.5) == (preds["y_true"] > 0)))
        assert hit > 0.75, (ticker, hit)


def test_price_target_is_pooled_scale_free_and_reported_in_each_tickers_prices(universe):
    config = tiny(**{"model.lstm": False, "target.task": "regression", "target.regression": "price"})
    out = pooled_predict(designs_of(universe[0], config), config)
    for ticker, (preds, _) in out.items():  # BBB trades at 40x the others' price
        ratio = preds["y_pred"] / preds["close"]
        assert ratio.between(0.9, 1.1).all(), (ticker, ratio.describe())
        assert np.allclose(preds["y_true"] / preds["close"], ratio, atol=0.1)
        # the pooled regressor still calls directions: its implied return has the planted sign
        assert np.mean((ratio > 1) == (preds["y_true"] > preds["close"])) > 0.7


# --------------------------------------------------------------------------- config


def test_model_pooled_is_a_validated_config_key():
    assert RunConfig().model.pooled is False
    config = RunConfig.resolve(overrides={"model.pooled": True})
    assert config.model.pooled is True
    assert RunConfig.from_dict(config.to_dict()).model.pooled is True
    with pytest.raises(ConfigError, match="model.pooled must be true or false"):
        RunConfig.resolve(overrides={"model.pooled": "yes"})
    with pytest.raises(ConfigError, match="model.pooled must be true or false"):
        ModelConfig(pooled=1)
    assert pooled_config(config).train.mode == "window" and config.train.mode == "sequence"


def test_union_calendar_is_every_tickers_sample_dates(pooled3):
    designs = pooled3[0]
    calendar = union_calendar(designs)
    assert calendar.is_monotonic_increasing and calendar.is_unique
    assert set(calendar) == set().union(*(set(d.grid.dates) for d in designs.values()))


@pytest.mark.parametrize("samples_before", [0, 2])
def test_a_ticker_starting_just_before_a_retrain(universe, samples_before):
    """With split.step > split.min_train a late ticker can be due for predictions before it has two
    samples: refused with one line; with two it is scaled with its rows dated before the block."""
    config = tiny(**{"model.lstm": False, "split.min_train": 20, "split.step": 60})
    aaa = universe[0]["AAA"]
    design = make_design(aaa, config)
    s = pooled_folds(design.grid.dates, config.split, 1)[1].test_start
    start = aaa.index.get_loc(s) - design.grid.first_row - samples_before  # its first sample falls on s - k
    prices = {"AAA": aaa, "LATE": planted_prices(360, signal=True, seed=4).iloc[start:]}
    designs = designs_of(prices, config)
    assert designs["LATE"].grid.dates[samples_before] == s
    if samples_before < 2:
        with pytest.raises(DataError, match=r"^LATE has fewer than 2 samples before pooled fold 1 .*split.step \+ 2$"):
            pooled_predict(designs, config)
        return
    preds, log = pooled_predict(designs, config)["LATE"]
    scored = designs["LATE"].grid.dates[designs["LATE"].folds[0].test[0]:]
    assert (preds.groupby("model")["date"].count() == len(scored)).all() and preds["y_pred"].notna().all()
    assert log.loc[log["fold"] == 1, "n_train_ticker"].eq(0).all()
