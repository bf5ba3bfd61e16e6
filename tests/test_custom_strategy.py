"""``strategy.custom``: a rule of your own sizes every model, sees nothing after the day it decides,
and every way it can fail is one ConfigError line; ``strategy.vol_target`` scales its positions.

The rules are in ``custom_rules.py`` (tests/ is on ``sys.path``). One linear-only run gives the
predictions; positions are remade from them under each config (``make_positions``).
"""

from __future__ import annotations

import hashlib
import inspect
import sys

import numpy as np
import pandas as pd
import pytest

import custom_rules
import lstmbt
import lstmbt.backtest.plugins as plugins
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.data import load_prices
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.plugins import PREDICTION_COLUMNS
from lstmbt.backtest.scoring import BENCHMARK, by_model, make_positions
from lstmbt.reports import render_report
from lstmbt.strategies import vol_target_positions
from helpers import LINEAR_FLAGS

MAJORITY_P_UP = 0.53
#: decision days the positions are remade on (the last of the run's): enough, and quick
DAYS = 300


@pytest.fixture(scope="module")
def base() -> tuple[object, pd.DataFrame]:
    config = RunConfig().with_values(LINEAR_FLAGS)
    return run(config), load_prices(config.data)


def positions(base, custom: str | None, **extra) -> pd.DataFrame:
    """The positions of ``base``'s predictions on its last ``DAYS`` decision days under
    ``strategy.custom = custom`` (and ``extra`` keys); the rule is called once per day and model."""
    result, prices = base
    config = RunConfig().with_values({**LINEAR_FLAGS, "strategy.custom": custom, **extra})
    dates = result.positions.index[-DAYS:]
    predictions = result.predictions[result.predictions["date"] >= dates[0]]
    return make_positions(predictions, dates, config, pd.Series(MAJORITY_P_UP, index=dates), prices=prices)


def test_the_rule_sizes_every_model_and_both_baselines_but_not_buy_and_hold(base):
    out = positions(base, "custom_rules:half")
    assert list(out.columns) == ["ridge_regression", "logistic_classification", "persistence", "majority", BENCHMARK]
    assert (out.drop(columns=BENCHMARK) == 0.5).all().all() and (out[BENCHMARK] == 1.0).all()


@pytest.mark.parametrize("rule", ["band", "momentum_vol"])
def test_a_causal_rule_called_day_by_day_equals_one_call_on_the_whole_history(base, rule):
    """The protocol's meaning: the position on t is what the rule says on t given the rows up to t,
    which for a rule that looks only backwards is its own vectorised answer on the full frames."""
    result, prices = base
    out = positions(base, f"custom_rules:{rule}")
    dates = out.index
    frames = by_model(result.predictions, dates)
    for name, frame in frames.items():
        expected = getattr(custom_rules, rule)(frame[list(PREDICTION_COLUMNS)], prices.loc[:dates[-1]])
        np.testing.assert_array_equal(out[name].to_numpy(), expected.to_numpy(dtype="float64"), err_msg=name)
    assert set(np.unique(out["logistic_classification"])) <= {-1.0, 0.0, 1.0}
    if rule == "band":  # majority's p_up 0.53 sits inside the band; persistence forecasts 0: both flat
        assert (out["majority"] == 0).all() and (out["persistence"] == 0).all()


def test_a_rule_that_reads_tomorrows_close_gets_nothing(base):
    """Given the whole history at once the cheat is right on every day the market moves; given the
    rows up to each decision day, tomorrow's close is not there and it holds flat throughout."""
    result, prices = base
    out = positions(base, "custom_rules:peek")
    assert (out.drop(columns=BENCHMARK) == 0.0).all().all()
    dates = out.index
    cheat = custom_rules.peek(by_model(result.predictions, dates)["ridge_regression"], prices.loc[:dates[-1]])
    later = prices["Close"].shift(-1).reindex(dates)
    moved = cheat != 0
    assert moved.mean() > 0.9 and (np.sign(later - prices["Close"].reindex(dates))[moved] == cheat[moved]).all()


def test_the_rule_sees_only_rows_up_to_the_decision_day_and_cannot_change_them(base):
    result, prices = base
    saved_prices, saved_predictions = prices.copy(), result.predictions.copy()
    custom_rules.CALLS.clear()
    out = positions(base, "custom_rules:spy")
    dates = out.index
    assert len(custom_rules.CALLS) == 4 * len(dates)  # once per day for each of the 4 sized strategies
    for day, last_prediction, last_price, columns, n_prices in custom_rules.CALLS:
        assert last_prediction == day and last_price == day
        assert columns == PREDICTION_COLUMNS  # y_true, the realised label, is never passed
        assert n_prices == prices.index.get_loc(day) + 1
    assert [c[0] for c in custom_rules.CALLS[: len(dates)]] == list(dates)
    pd.testing.assert_frame_equal(prices, saved_prices)  # its writes went to its own copies
    pd.testing.assert_frame_equal(result.predictions, saved_predictions)
    assert (out.drop(columns=BENCHMARK) == 0.25).all().all()


@pytest.mark.parametrize("rule, words", [
    ("raises", ("strategy.custom rule custom_rules:raises raised KeyError", "for ridge_regression on {first}",
                "fix the rule")),
    ("too_big", ("returned 1.5 for ridge_regression on {first}, outside [-1, 1]", "clip them")),
    ("nan", ("returned NaN for ridge_regression on {first}", "p_up NaN", "0 for flat")),
    ("a_list", ("returned a list, not a pandas Series", "index=predictions.index")),
    ("reset_index", ("not on predictions.index (1 rows, up to {first})",)),
])
def test_a_rule_that_breaks_the_protocol_is_one_line_naming_it(base, rule, words):
    first = base[0].positions.index[-DAYS].date().isoformat()  # the first day: each rule fails at once
    with pytest.raises(ConfigError) as caught:
        positions(base, f"custom_rules:{rule}")
    line = str(caught.value)
    assert "\n" not in line and all(w.format(first=first) in line for w in words), line


@pytest.mark.parametrize("value, words", [
    ("custom_rules:bandd", ("custom_rules has no attribute 'bandd'", "did you mean 'band'?")),
    ("no_such_module_xyz:rule", ("module no_such_module_xyz cannot be imported", "ModuleNotFoundError",
                                 "install it, or name the folder that holds no_such_module_xyz.py with --plugin-path")),
    ("custom_rules:THRESHOLD", ("custom_rules:THRESHOLD' is a float, not a function", "rule(predictions, prices)")),
    ("custom_rules:one_argument", ("cannot be called with two arguments", "(predictions: 'pd.DataFrame')")),
    ("not_registered", ("'not_registered' is not a registered strategy", "lstmbt.register_strategy")),
    ("my rules:x", ("neither a dotted path nor a strategy name", "mypkg.rules:my_rule")),
])
def test_a_rule_that_cannot_be_used_is_refused_when_the_config_is_read(value, words):
    with pytest.raises(ConfigError) as caught:
        RunConfig.resolve(overrides={"strategy.custom": value})
    line = str(caught.value)
    assert "\n" not in line and all(w in line for w in words), line


def test_a_custom_rule_with_a_built_in_sizing_key_is_refused():
    with pytest.raises(ConfigError, match="strategy.custom replaces the built-in sizing, so strategy.long_short"):
        RunConfig.resolve(overrides={"strategy.custom": "custom_rules:band", "strategy.long_short": True})
    with pytest.raises(ConfigError, match=r"strategy.vol_target = 10.0 is out of range.*0.10 is 10% a year"):
        RunConfig.resolve(overrides={"strategy.vol_target": 10})


def test_a_module_in_the_working_directory_is_found_only_in_a_named_folder(tmp_path, monkeypatch):
    """Plug-ins come from the environment and the folders the user names (``--plugin-path``), never
    implicitly from the working directory, even where Python put it on sys.path (``python -m``, ``-c``)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", str(tmp_path), *sys.path])
    (tmp_path / "here_rules.py").write_text("def rule(predictions, prices):\n    return predictions['p_up'] * 0\n")
    (tmp_path / "broken_rules.py").write_text("raise RuntimeError('boom at import')\n")
    path = list(sys.path)
    with pytest.raises(ConfigError, match=r"module here_rules cannot be imported \(ModuleNotFoundError: No module "
                                          r"named 'here_rules'\); check the spelling, install it, or name the folder "
                                          r"that holds here_rules.py with --plugin-path DIR"):
        RunConfig.resolve(overrides={"strategy.custom": "here_rules:rule"})
    with plugins.plugin_folders("."):
        config = RunConfig.resolve(overrides={"strategy.custom": "here_rules:rule"})
        with pytest.raises(ConfigError, match=r"module broken_rules cannot be imported \(RuntimeError: boom at "
                                              r"import\); fix broken_rules so that it imports"):
            RunConfig.resolve(overrides={"strategy.custom": "broken_rules:rule"})
    assert config.strategy.custom == "here_rules:rule" and sys.path == path  # the path is restored
    assert sys.modules.pop("here_rules").__file__ == str(tmp_path / "here_rules.py")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # naming it there is naming it too
    assert RunConfig.resolve(overrides={"strategy.custom": "here_rules:rule"}).strategy.custom == "here_rules:rule"
    assert sys.modules.pop("here_rules").__file__ == str(tmp_path / "here_rules.py") and sys.path == path
    with pytest.raises(ConfigError, match=r"--plugin-path nowhere is not a folder; name the folder that holds"):
        with plugins.plugin_folders(["nowhere"]):
            pass


def test_a_saved_config_reads_back_without_importing_the_rule():
    """A saved run's report needs no plug-in: only reading a config to run it imports the rule."""
    config = RunConfig.from_dict({"strategy": {"custom": "gone_away_module:rule"}})
    assert config.strategy.custom == "gone_away_module:rule"
    assert "custom = \"gone_away_module:rule\"" in config.to_toml()
    with pytest.raises(ConfigError, match="gone_away_module cannot be imported"):
        RunConfig.resolve(overrides={"strategy.custom": "gone_away_module:rule"})


def test_register_strategy_from_python(base, monkeypatch):
    monkeypatch.setattr(plugins, "_REGISTERED", {})
    lstmbt.register_strategy("halfway", custom_rules.half)
    assert RunConfig.resolve(overrides={"strategy.custom": "halfway"}).strategy.custom == "halfway"
    assert (positions(base, "halfway").drop(columns=BENCHMARK) == 0.5).all().all()
    with pytest.raises(ConfigError, match="strategy name 'a:b' is not a plain name"):
        lstmbt.register_strategy("a:b", custom_rules.half)
    with pytest.raises(ConfigError, match=r"register_strategy\('x', ...\) is a float, not a function"):
        lstmbt.register_strategy("x", 0.5)


def test_vol_target_scales_the_custom_rule_and_every_strategy_but_buy_and_hold(base):
    result, prices = base
    plain = positions(base, "custom_rules:band")
    scaled = positions(base, "custom_rules:band", **{"strategy.vol_target": 0.08, "strategy.vol_window": 42})
    for name in plain.columns.drop(BENCHMARK):
        expected = vol_target_positions(plain[name], prices["Close"], 0.08, 42)
        pd.testing.assert_series_equal(scaled[name], expected.rename(name), check_exact=True)
    assert (scaled[BENCHMARK] == 1.0).all()
    size = scaled["logistic_classification"].abs()
    assert ((size > 0) & (size < 1)).mean() > 0.3  # scaled down in volatile stretches...
    assert size.max() == 1.0  # ...and capped at a full position in calm late 2017, volatility below 8%


def test_the_run_records_the_rule_and_the_report_names_it(base):
    config = RunConfig.resolve(overrides={**LINEAR_FLAGS, "strategy.custom": "custom_rules:band",
                                          "strategy.vol_target": 0.1})
    result = run(config)
    recorded = result.manifest["strategy"]
    source = inspect.getsource(custom_rules.band)
    assert recorded == {"custom": "custom_rules:band", "function": "custom_rules:band",
                        "file": inspect.getsourcefile(custom_rules.band),
                        "source_sha256": hashlib.sha256(source.encode()).hexdigest(),
                        "vol_target": 0.1, "vol_window": 21, "max_leverage": 1.0}
    html = render_report(result)
    assert "positions by the custom rule custom_rules:band (strategy.custom)" in html.lower()
    assert "scaled to 10% annual volatility" in html
    assert "strategy" not in base[0].manifest and 'id="strategy-rule"' not in render_report(base[0])  # the default


def test_a_sweep_over_rules_imports_each_when_it_is_read(tmp_path):
    """``strategy.custom`` is a signal-only sweep key (no retraining); each listed rule is checked up front."""
    from lstmbt.backtest.campaign.sweep_file import is_signal_key, read_sweep

    path = tmp_path / "s.toml"
    path.write_text('[params]\n"strategy.custom" = ["custom_rules:band", "custom_rules:THRESHOLD"]\n')
    with pytest.raises(ConfigError, match="custom_rules:THRESHOLD' is a float, not a function"):
        read_sweep(path)
    path.write_text('[params]\n"strategy.custom" = ["custom_rules:band", "custom_rules:half"]\n')
    assert is_signal_key("strategy.custom") and len(read_sweep(path).params) == 1
