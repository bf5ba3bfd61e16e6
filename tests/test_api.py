"""The public Python API: lstmbt.run / load / backtest / tear_sheet and the RunResult they return."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import lstmbt
from lstmbt.backtest.config import QUICK_PRESET, RunConfig
from lstmbt.backtest.errors import ConfigError, DataError, LstmbtError

#: quick preset on a short range, smaller still: two yearly folds in a few seconds
QUICK_SHORT = {"data.start": "2014-01-01", "model.hidden_size": 4, "train.max_epochs": 2}


@pytest.fixture(scope="module")
def quick_run(one_torch_thread, tmp_path_factory):
    """(result, run directory it saved, torch threads before the call, torch threads after it)."""
    import torch

    out = tmp_path_factory.mktemp("api") / "run"
    before = torch.get_num_threads()
    result = lstmbt.run(quick=True, set=QUICK_SHORT, out=out)
    return result, out, before, torch.get_num_threads()


def _same(a, b) -> bool:
    """Equal values, with JSON null and NaN the same (an undefined metric)."""
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return a == b


# ----------------------------------------------------------------------------------- lstmbt.run


def test_run_metrics_frame_is_metrics_json(quick_run):
    result, out, _, _ = quick_run
    saved = json.loads((out / "metrics.json").read_text())
    frame = result.metrics
    keys = list(dict.fromkeys(k for entry in saved.values() for k in entry))
    assert list(frame.index) == list(saved) and list(frame.columns) == keys
    assert frame.shape == (len(saved), len(keys))
    assert frame.index.name == "strategy" and "buy_and_hold" == frame.index[-1]
    for strategy, entry in saved.items():
        for key in keys:
            assert _same(frame.at[strategy, key], entry.get(key)), (strategy, key)
    assert frame["sharpe"].dtype == np.float64  # nulls became NaN, so numeric columns stay numeric


def test_run_used_quick_preset_and_overrides(quick_run):
    result, _, _, _ = quick_run
    assert result.config.split.step == QUICK_PRESET["split.step"]
    assert result.config.model.hidden_size == 4 and result.config.data.start == "2014-01-01"
    assert set(result.predictions["model"]) >= {"lstm_regression", "lstm_classification"}
    assert result.folds["model"].nunique() >= 2 and len(result.trades) > 0
    assert list(result.returns.columns) == list(result.positions.columns) == list(result.raw.metrics)


def test_run_restores_torch_threads(quick_run):
    _, _, before, after = quick_run
    assert after == before


def test_report_text_equals_written_file(quick_run, tmp_path):
    result, _, _, _ = quick_run
    text = result.report()
    written = result.report(tmp_path / "sub" / "report.html")
    assert written == tmp_path / "sub" / "report.html"
    assert written.read_text(encoding="utf-8") == text
    assert text.startswith("<!DOCTYPE html>") and 'id="predictions"' in text and 'id="folds"' in text
    assert not list((tmp_path / "sub").glob(".*tmp*"))  # written atomically, nothing left beside it


def test_repr_html_is_the_scorecard(quick_run):
    result, _, _, _ = quick_run
    html = result._repr_html_()
    assert "lstmbt-summary" in html and "<table" in html and "<script" not in html
    for strategy in result.raw.metrics:
        assert f">{strategy}<" in html
    assert result.manifest["out_of_sample"]["first_date"] in html
    assert result.manifest["out_of_sample"]["last_date"] in html
    assert "RunResult" in repr(result)


def test_load_round_trip(quick_run):
    result, out, _, _ = quick_run
    assert (out / "report.html").is_file()
    back = lstmbt.load(out)
    assert isinstance(back, lstmbt.RunResult)
    pd.testing.assert_frame_equal(back.metrics, result.metrics)
    pd.testing.assert_frame_equal(back.returns, result.returns, check_freq=False, check_names=False)
    assert back.config == result.config
    assert len(back.predictions) == len(result.predictions)


def test_save_refuses_existing_directory(quick_run):
    result, out, _, _ = quick_run
    with pytest.raises(ConfigError, match="already exists"):
        result.save(out)


def test_config_layers_as_the_cli(tmp_path):
    from lstmbt.api import resolve_config

    path = tmp_path / "c.toml"
    path.write_text('[model]\nlookback = 30\nhidden_size = 32\n[data]\nsource = "sample:nasdaq"\n', encoding="utf-8")
    cfg = resolve_config(path, source="sample:sp500", quick=True, overrides=["model.hidden_size=8"])
    assert cfg.split.step == QUICK_PRESET["split.step"]  # the preset, under the file
    assert cfg.model.lookback == 30  # the file, over the preset
    assert cfg.data.source == "sample:sp500"  # source, over the file
    assert cfg.model.hidden_size == 8  # set, over everything
    given = RunConfig.resolve(flags={"model.lookback": 40})
    layered = resolve_config(given, quick=True, overrides={"train.seed": 7})
    assert (layered.model.lookback, layered.split.step, layered.train.seed) == (40, QUICK_PRESET["split.step"], 7)
    assert resolve_config(RunConfig()) == RunConfig()


# ------------------------------------------------------------------------------ lstmbt.backtest


def _synthetic_prices(n: int = 260) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    days = pd.bdate_range("2020-01-01", periods=n)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({"open": close * np.exp(rng.normal(0, 0.004, n)), "close": close}, index=days)


def _hand_positions(prices: pd.DataFrame) -> pd.Series:
    pos = pd.Series(0.0, index=prices.index[20:200], name="hand")
    pos.iloc[10:40] = 1.0
    pos.iloc[60:80] = -0.5
    return pos


def test_backtest_day_returns_match_hand_computation():
    prices, fee, slip = _synthetic_prices(), 0.002, 0.001
    pos = _hand_positions(prices)
    result = lstmbt.backtest(prices, pos, fee_rate=fee, slippage=slip)
    r, days = result.returns["hand"], prices.index
    enter = days[days.get_loc(pos.index[10]) + 1]  # long decided at the close of day 10, filled at the next open
    expected = prices["close"][enter] / (prices["open"][enter] * (1 + slip) * (1 + fee)) - 1
    assert r[enter] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    decided = pos.index[40]  # back to flat: sold at the next open
    leave = days[days.get_loc(decided) + 1]
    expected = prices["open"][leave] * (1 - slip) * (1 - fee) / prices["close"][decided] - 1
    assert r[leave] == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert r.index[0] == days[days.get_loc(pos.index[0]) + 1]  # dated on the bar the return is earned


def test_backtest_metrics_as_a_run_scores_them():
    prices = _synthetic_prices()
    pos = _hand_positions(prices)
    result = lstmbt.backtest(prices, pos)
    m = result.metrics
    assert list(m.index) == ["hand", "buy_and_hold"]
    up = (prices["close"].shift(-1) > prices["close"]).reindex(pos.index).to_numpy()
    assert m.at["hand", "hit_rate"] == pytest.approx(np.mean((pos.to_numpy() > 0) == up))
    assert m.at["buy_and_hold", "hit_rate"] == pytest.approx(np.mean(up))
    r = result.returns["hand"].to_numpy()
    assert m.at["hand", "total_return"] == pytest.approx(np.prod(1 + r) - 1)
    assert m.at["hand", "sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252))
    assert m.at["hand", "n_trades"] == 2 and m.at["hand", "fees_paid"] > 0  # costs on by default
    assert m.at["hand", "verdict"] in ("beats", "inconclusive", "worse")
    for key in ("sharpe_ci_low", "sharpe_diff_ci_high", "psr", "alpha", "beta", "pt_pvalue", "hit_rate_pvalue"):
        assert np.isfinite(m.at["hand", key]), key
    assert m.at["hand", "sharpe_ci_low"] < m.at["hand", "sharpe"] < m.at["hand", "sharpe_ci_high"]
    assert result.config.backtest.fee_rate == 0.001


def test_backtest_report_has_the_sections_that_apply():
    prices = _synthetic_prices()
    result = lstmbt.backtest(prices, _hand_positions(prices).to_frame())
    html = result.report()
    for present in ("summary", "performance", "costs", "trades", "details", "run"):
        assert f'<section id="{present}">' in html, present
    for absent in ("predictions", "folds", "head-to-head"):
        assert f'id="{absent}"' not in html and f'href="#{absent}"' not in html, absent
    assert "1 model tested against buy-and-hold" in html and "folds)" not in html


def test_backtest_and_tear_sheet_save_and_load(tmp_path):
    prices = _synthetic_prices()
    result = lstmbt.backtest(prices, _hand_positions(prices))
    sheet = lstmbt.tear_sheet(result.returns[["hand"]])
    for name, saved in (("backtest", result), ("sheet", sheet)):
        back = lstmbt.load(saved.save(tmp_path / name))
        pd.testing.assert_frame_equal(back.metrics, saved.metrics)
        assert back.manifest["kind"] == saved.manifest["kind"]
        assert (tmp_path / name / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert back.report().count("<section") == sheet.report().count("<section")  # the same sections, read back


def test_backtest_drops_the_undecidable_last_day_and_reads_closes():
    prices = _synthetic_prices()
    pos = pd.Series(1.0, index=prices.index[150:], name="long")  # up to the last bar, which nothing can fill
    result = lstmbt.backtest(prices["close"], pos)  # closes only: filled at the next close
    assert result.positions.index[-1] == prices.index[-2]
    assert result.config.backtest.execution == "next_close"
    np.testing.assert_allclose(result.returns["long"].to_numpy()[1:], result.returns["buy_and_hold"].to_numpy()[1:])


# ---------------------------------------------------------------------------- lstmbt.tear_sheet


def _returns() -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(5)
    days = pd.bdate_range("2019-01-01", periods=500)
    bench = pd.Series(rng.normal(0.0004, 0.01, len(days)), index=days, name="market")
    mine = pd.Series(0.0002 + 0.6 * bench.to_numpy() + rng.normal(0, 0.004, len(days)), index=days, name="mine")
    return mine, bench


def test_tear_sheet_without_benchmark(tmp_path):
    mine, _ = _returns()
    sheet = lstmbt.tear_sheet(mine, path=tmp_path / "sheet.html")
    m = sheet.metrics
    assert list(m.index) == ["mine"]
    r = mine.to_numpy()
    assert m.at["mine", "total_return"] == pytest.approx(np.prod(1 + r) - 1)
    assert m.at["mine", "sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(252))
    assert m.at["mine", "sharpe_ci_low"] < m.at["mine", "sharpe"] < m.at["mine", "sharpe_ci_high"]
    assert 0 <= m.at["mine", "psr"] <= 1
    assert not {"verdict", "alpha", "beta", "exposure", "n_trades"} & set(m.columns)
    html = (tmp_path / "sheet.html").read_text(encoding="utf-8")
    assert '<section id="performance">' in html
    for absent in ("predictions", "folds", "costs", "trades"):
        assert f'id="{absent}"' not in html, absent
    assert "lstmbt applied no costs" in html


def test_tear_sheet_with_benchmark():
    mine, bench = _returns()
    sheet = lstmbt.tear_sheet(pd.DataFrame({"mine": mine, "other": mine * 0.5}), benchmark=bench)
    m = sheet.metrics
    assert list(m.index) == ["mine", "other", "buy_and_hold"]
    slope = np.polyfit(bench.to_numpy(), mine.to_numpy(), 1)
    assert m.at["mine", "beta"] == pytest.approx(slope[0])
    assert m.at["mine", "alpha"] == pytest.approx(slope[1] * 252)
    assert m.at["mine", "verdict"] in ("beats", "inconclusive", "worse")
    # two strategies tested: the family-wise interval is wider than the 95% one
    assert m.at["mine", "verdict_ci_low"] < m.at["mine", "sharpe_diff_ci_low"]
    assert m.at["mine", "verdict_ci_high"] > m.at["mine", "sharpe_diff_ci_high"]
    assert np.isnan(m.at["buy_and_hold", "beta"])
    assert "2 models tested against buy-and-hold" in sheet.report()


# -------------------------------------------------------------------------------------- errors


def _bad_calls():
    prices = _synthetic_prices()
    pos = _hand_positions(prices)
    mine, bench = _returns()
    return {
        "unknown cost": (lambda: lstmbt.backtest(prices, pos, fee=0.1), ConfigError, "fee_rate"),
        "bad cost": (lambda: lstmbt.backtest(prices, pos, fee_rate=-1), ConfigError, "backtest.fee_rate"),
        "NaN position": (lambda: lstmbt.backtest(prices, pos.where(pos.index > pos.index[3])), DataError, "fill"),
        "position > 1": (lambda: lstmbt.backtest(prices, pos * 2), DataError, "[-1, 1]"),
        "off the calendar": (lambda: lstmbt.backtest(prices, pos.set_axis(pos.index + pd.Timedelta(hours=1))),
                             DataError, "without a price bar"),
        "gap": (lambda: lstmbt.backtest(prices, pos.drop(pos.index[50])), DataError, "skip the price bar"),
        "no open": (lambda: lstmbt.backtest(prices[["close"]], pos), DataError, "Open"),
        "closes at the open": (lambda: lstmbt.backtest(prices["close"], pos, execution="next_open"), ConfigError,
                               "next close"),
        "list of positions": (lambda: lstmbt.backtest(prices, list(pos)), DataError, "DataFrame or Series"),
        "NaN return": (lambda: lstmbt.tear_sheet(mine.where(mine.index > mine.index[2])), DataError, "dropna"),
        "percent returns": (lambda: lstmbt.tear_sheet(mine * 100), DataError, "fractions"),
        "short benchmark": (lambda: lstmbt.tear_sheet(mine, benchmark=bench.iloc[10:]), DataError, "covers every day"),
        "no dates": (lambda: lstmbt.tear_sheet(mine.reset_index(drop=True)), DataError, "DatetimeIndex"),
        "config type": (lambda: lstmbt.run(config=3), ConfigError, "RunConfig"),
        "set type": (lambda: lstmbt.run(set=[1]), ConfigError, "key=value"),
        "set key": (lambda: lstmbt.run(set={"model.hiden_size": 4}), ConfigError, "did you mean"),
        "missing run": (lambda: lstmbt.load("/nonexistent/run"), DataError, "does not exist"),
    }


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_bad_input_is_one_line(case):
    call, error, words = _bad_calls()[case]
    with pytest.raises(error) as info:
        call()
    assert isinstance(info.value, LstmbtError)
    message = str(info.value)
    assert "\n" not in message and words in message, message
