"""``lstmbt predict`` as a decision aid (issue 17, item 3): every model and naive baseline, the
strategy's next position and the order from the position held now, the agreement line, and the
skill the walk-forward run of the same config found.

Fast: the linear models on ~650 rows of the embedded S&P 500 sample, plug-ins with a fixed call
(tests/forecast_models.py) where the test chooses whether the models agree, and one test that
trains tiny networks of two families.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from lstmbt.strategies import classification_positions, regression_positions
from lstmbt.reports import format_metric
from helpers import LINEAR_VALUES, PLANTED_FLAGS, TINY_VALUES, set_args
from test_pipeline import planted_prices, write_csv

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the linear models on the S&P 500 sample from mid-2016 (about 650 bars, 4 folds)
SPX = {**LINEAR_VALUES, "data.source": "sample:sp500", "data.start": "2016-06-01"}


@pytest.fixture(autouse=True)
def cli_one_thread(monkeypatch):
    monkeypatch.setattr("lstmbt.backtest.cli.core.torch_threads", lambda: 1)


def predict(run_cli, values: dict, *extra: str) -> tuple[str, str]:
    code, out, err = run_cli(["predict", *set_args(values), *extra])
    assert code == 0, err
    assert "Traceback" not in out + err
    return out, err


def predict_json(run_cli, values: dict, *extra: str) -> dict:
    out, _ = predict(run_cli, values, "--json", *extra)
    return json.loads(out)  # stdout is the JSON object and nothing else


def previous_day(values: dict) -> str:
    """The bar before the last one of ``values``' data (the decision day of the position held now)."""
    from lstmbt.backtest.config import RunConfig
    from lstmbt.backtest.data import load_prices

    return load_prices(RunConfig.resolve(flags=values).data).index[-2].date().isoformat()


# --------------------------------------------------------------------------- every model


def test_every_family_baseline_and_naive_baseline_forecasts(run_cli):
    values = {**TINY_VALUES, "data.source": "sample:sp500", "data.start": "2016-06-01",
              "model.families": ["lstm", "gru"], "model.lightgbm": True}
    out, _ = predict(run_cli, values)
    names = [f"{family}_{task}" for family in ("lstm", "gru", "lightgbm") for task in ("regression", "classification")]
    names += ["ridge_regression", "logistic_classification", "persistence", "majority"]
    for name in names:
        line = re.search(rf"^  {name} +(up|down|-) +(close \d+\.\d\d \([+-]\d+\.\d\d%\)|p_up 0\.\d{{3}})", out, re.M)
        assert line, (name, out)
        assert (line.group(2).startswith("p_up")) == name.endswith(("classification", "majority")), line.group(0)
    assert re.search(r"^  persistence +- +close [\d.]+ \(\+0\.00%\)", out, re.M)
    assert re.search(r"^models (agree: all 8 (up|down)|disagree: \d up \(.+\), \d down \(.+\))$", out, re.M), out
    for name in names + ["buy_and_hold"]:
        assert re.search(rf"^  {name}: target [+-]\d\.\d\d \((long|short|flat)\) from [+-]\d\.\d\d -> ", out, re.M), name


def test_json_carries_every_model_the_actions_the_agreement_and_the_skill(run_cli, tmp_path):
    payload = predict_json(run_cli, SPX, "--root", str(tmp_path / "none"))
    models = {m["model"]: m for m in payload["models"]}
    assert list(models) == ["ridge_regression", "logistic_classification", "persistence", "majority"]
    ridge = models["ridge_regression"]
    assert ridge["direction"] == ("up" if ridge["log_return"] > 0 else "down")
    assert models["logistic_classification"]["direction"] == ("up" if models["logistic_classification"]["p_up"] > 0.5
                                                               else "down")
    assert models["majority"]["p_up"] == payload["classification"]["base_rate"]
    assert payload["classification"]["p_up"] == models["logistic_classification"]["p_up"]  # the first of its task
    assert [a["strategy"] for a in payload["actions"]] == [*models, "buy_and_hold"]
    calls = payload["agreement"]
    assert sorted(calls["up"] + calls["down"] + calls["none"]) == ["logistic_classification", "ridge_regression"]
    assert calls["disagree"] == bool(calls["up"] and calls["down"])
    assert payload["skill"]["run"] is None and payload["skill"]["lines"][0].startswith("skill: no walk-forward run")
    assert payload["current_date"] == previous_day(SPX) and payload["execution"] == "next_open"
    assert len(payload["data"]["sha256"]) == 64


# --------------------------------------------------------------------------- the strategy's next step


def rule(model: dict, values: dict) -> float:
    """The configured strategy's position for one model's forecast, from the strategy functions."""
    long_short = values.get("strategy.long_short", False)
    if model["model"] == "persistence":
        return 0.0
    if model["task"] == "classification":
        return float(classification_positions(pd.Series([model["p_up"]]), 0.5, long_short).iloc[0])
    return float(regression_positions(pd.Series([model["log_return"]]), 0.0, long_short).iloc[0])


@pytest.fixture(scope="module")
def planted_source(tmp_path_factory) -> tuple[str, str]:
    """(a source of bars whose volume reveals tomorrow's direction, the last day whose volume calls
    the other direction than the day before's): there the planted models' positions flip."""
    prices = planted_prices(700, signal=True)
    calls = (prices["Volume"] > 1e6).to_numpy()
    last = max(i for i in range(1, len(calls)) if calls[i] != calls[i - 1])
    source = write_csv(tmp_path_factory.mktemp("planted") / "planted.csv", prices)
    return source, prices.index[last].date().isoformat()


@pytest.mark.parametrize("horizon", [1, 2])
def test_action_is_the_strategy_on_todays_forecast_from_yesterdays_position(run_cli, planted_source, horizon):
    source, end = planted_source
    values = {**PLANTED_FLAGS, "data.source": source, "data.end": end, "strategy.long_short": True,
              "target.horizon": horizon}
    today = predict_json(run_cli, values)
    yesterday = predict_json(run_cli, {**values, "data.end": previous_day(values)})
    before = {a["strategy"]: a for a in yesterday["actions"]}
    then = {m["model"]: m for m in yesterday["models"]}
    # the forecasts behind the position held now are yesterday's, from models retrained after yesterday's close
    assert today["decisions"][-2] == yesterday["decisions"][-1]
    assert any(a["order"] != "HOLD" for a in today["actions"])  # the case exercises an order
    for action in today["actions"]:
        name = action["strategy"]
        assert action["current"] == before[name]["target"], name  # the position held now: yesterday's decision
        if name == "buy_and_hold":
            assert action["target"] == 1.0
            continue
        signal = rule(next(m for m in today["models"] if m["model"] == name), values)
        if horizon == 2:  # two overlapping tranches: the mean of yesterday's and today's signals
            signal = (rule(then[name], values) + signal) / 2
        assert action["target"] == pytest.approx(signal, abs=1e-12), name
        change = action["target"] - action["current"]
        assert action["order"] == ("BUY" if change > 1e-9 else "SELL" if change < -1e-9 else "HOLD")
        assert action["size"] == pytest.approx(abs(change), abs=1e-9)
    text, _ = predict(run_cli, values)
    for a in today["actions"]:
        side = "long" if a["target"] > 0 else "short" if a["target"] < 0 else "flat"
        step = "HOLD" if a["order"] == "HOLD" else f"{a['order']} {a['size']:.2f} at the next open"
        assert f"  {a['strategy']}: target {a['target']:+.2f} ({side}) from {a['current']:+.2f} -> {step}\n" in text


def test_next_close_execution_is_named_in_the_order(run_cli):
    values = {**{k: v for k, v in SPX.items()}, "model.linear": False, "target.task": "classification",
              "model.custom": ["forecast_models:Up"], "strategy.long_short": True,
              "backtest.execution": "next_close"}
    out, _ = predict(run_cli, values)
    assert "  up_classification: target +1.00 (long) from +1.00 -> HOLD\n" in out
    assert "filled at the next close:" in out


# --------------------------------------------------------------------------- agreement


PLUGINS = {**SPX, "model.linear": False, "target.task": "classification"}


def test_models_that_disagree_are_named_in_one_line(run_cli):
    out, _ = predict(run_cli, {**PLUGINS, "model.custom": ["forecast_models:Up", "forecast_models:Down"],
                               "strategy.long_short": True})
    lines = [line for line in out.splitlines() if line.startswith("models ")]
    assert lines == ["models disagree: 1 up (up_classification), 1 down (down_classification)"]
    assert "  down_classification: target -1.00 (short) from -1.00 -> HOLD" in out


def test_models_across_tasks_disagree_too(run_cli):
    payload = predict_json(run_cli, {**PLUGINS, "target.task": "both",
                                     "model.custom": ["forecast_models:Up", "forecast_models:Fall"]})
    assert payload["agreement"] == {"up": ["up_classification"], "down": ["fall_regression"], "none": [],
                                    "disagree": True}


def test_models_that_agree_say_so_without_a_disagreement(run_cli):
    out, _ = predict(run_cli, {**PLUGINS, "model.custom": ["a=forecast_models:Up", "b=forecast_models:Up"]})
    assert "models agree: all 2 up\n" in out
    assert "disagree" not in out
    out, _ = predict(run_cli, {**PLUGINS, "model.custom": ["forecast_models:Down"]})
    assert "one model calls a direction: down (down_classification)\n" in out
    assert "disagree" not in out and "agree:" not in out


# --------------------------------------------------------------------------- skill from the run index


def run_saved(run_cli, values: dict, out: Path) -> dict:
    code, _, err = run_cli(["run", *set_args(values), "--out", str(out)])
    assert code == 0, err
    return json.loads((out / "metrics.json").read_text())


def test_no_matching_run_says_how_to_test_the_skill(run_cli, tmp_path):
    root = tmp_path / "runs"
    run_saved(run_cli, {**SPX, "model.linear_alpha": 3.0}, root / "other-config")  # another config: no match
    out, _ = predict(run_cli, SPX, "--root", str(root))
    assert (f"skill: no walk-forward run of this config and data in {root}/; run `lstmbt run` with the same "
            "options to test its skill") in out


def test_a_matching_run_without_skill_is_named_with_its_figures(run_cli, tmp_path):
    root = tmp_path / "runs"
    metrics = run_saved(run_cli, SPX, root / "spx")
    out, _ = predict(run_cli, SPX, "--root", str(root))
    assert re.search(r"^skill in walk-forward run .*spx \(.+\): no evidence of skill in any of its 2 models; these "
                     r"forecasts describe models without demonstrated skill$", out, re.M), out
    for name in ("ridge_regression", "logistic_classification"):
        m = metrics[name]
        share = m["base_rate"]
        p = format_metric("hit_rate_pvalue", m["hit_rate_pvalue"])  # as the report writes it
        adjusted = format_metric("hit_rate_pvalue", min(1.0, 2 * m["hit_rate_pvalue"]))  # over the 2 models
        assert (f"  {name}: no evidence of skill - hit rate {m['hit_rate']:.1%} vs base rate "
                f"{max(share, 1 - share):.1%} (p {p}, {adjusted} adjusted over 2 models), Sharpe {m['sharpe']:.2f} vs "
                f"buy-and-hold {metrics['buy_and_hold']['sharpe']:.2f}") in out
        assert 2 * m["hit_rate_pvalue"] >= 0.05 and m["verdict"] != "beats"  # what the words claim
    payload = predict_json(run_cli, SPX, "--root", str(root))
    assert payload["skill"]["any_skill"] is False
    assert [s["model"] for s in payload["skill"]["models"]] == ["ridge_regression", "logistic_classification"]
    assert payload["skill"]["models"][0]["hit_rate"] == metrics["ridge_regression"]["hit_rate"]


def test_a_matching_run_with_planted_skill_claims_no_lack_of_it(run_cli, tmp_path):
    values = {**LINEAR_VALUES, "data.source": write_csv(tmp_path / "planted.csv", planted_prices(700, signal=True)),
              "features.groups": ["volume", "returns"], "split.min_train": 300}
    metrics = run_saved(run_cli, values, tmp_path / "runs" / "planted")
    out, _ = predict(run_cli, values, "--root", str(tmp_path / "runs"))
    assert metrics["logistic_classification"]["hit_rate_pvalue"] < 0.05
    assert re.search(r"^skill in walk-forward run .*: evidence of skill: .*logistic_classification", out, re.M), out
    assert "  logistic_classification: evidence of skill - " in out
    assert "no evidence of skill in any" not in out
