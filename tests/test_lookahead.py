"""The look-ahead alarm on positions (``backtest.lookahead``): a strategy whose positions call the
next day's move too well, or whose Sharpe ratio no honest daily strategy reaches, is named as
LOOK-AHEAD SUSPECTED in the console, the manifest and the report; honest strategies are not.

The rule that cheats reads tomorrow's close from the CSV on disk (``custom_rules.oracle``), which
the timing rule cannot stop; it goes through ``lstmbt run`` beside an honest rule and no rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.data import load_prices
from lstmbt.backtest.lookahead import (IMPLAUSIBLE_SHARPE, MIN_CALLED_DAYS, MIN_SHARPE_DAYS, SHARPE_MARGIN,
                                       implausible_sharpe, position_alarms, position_calls)
from lstmbt.models.key import BENCHMARK
from custom_rules import ORACLE_CSV
from helpers import LINEAR_VALUES, call_main, set_args
from test_pipeline import write_csv

ALARM = "LOOK-AHEAD SUSPECTED"


def _frames(position: np.ndarray, move: np.ndarray, name: str = "rule_model") -> tuple[pd.DataFrame, pd.DataFrame]:
    days = pd.bdate_range("2020-01-01", periods=len(move))
    positions = pd.DataFrame({name: position, BENCHMARK: 1.0}, index=days)
    return positions, pd.DataFrame({name: position * move, BENCHMARK: move}, index=days + pd.offsets.BDay())


def _metrics(sharpe: float, benchmark: float, name: str = "rule_model") -> dict:
    return {name: {"sharpe": sharpe}, BENCHMARK: {"sharpe": benchmark}}


def _moves(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.001, 0.01, n)  # up on about 54% of days


# --------------------------------------------------------------------------- the rule, on its own


def test_positions_are_calls_on_the_days_they_are_held_and_the_market_moved():
    position = np.array([1.0, -0.5, 0.0, 1.0, 0.2, np.nan])
    move = np.array([0.01, 0.02, -0.01, 0.0, -0.03, 0.01])
    hit, base, days = position_calls(position, move)
    assert (days, hit, base) == (3, pytest.approx(1 / 3), pytest.approx(2 / 3))  # long up, short up, long down
    assert position_calls(np.zeros(4), np.ones(4))[2] == 0


def test_a_strategy_that_knows_the_next_move_is_named_and_one_that_does_not_is_not():
    move = _moves(300)
    cheat = np.sign(move)
    assert np.mean(move > 0) > 0.5
    assert position_alarms(*_frames(cheat, move), _metrics(0.5, 0.5)) == [
        f"{ALARM}: the positions of rule_model: right on 100.0% of next-day moves over the 300 days held (always up: "
        f"{np.mean(move > 0):.1%}), too good to be true for daily prices; check every feature and the strategy for "
        "data from after the decision day."]
    honest = np.sign(np.random.default_rng(1).normal(size=300))
    assert position_alarms(*_frames(honest, move), _metrics(0.5, 0.5)) == []
    assert position_alarms(*_frames(np.ones(300), move), _metrics(0.5, 0.5)) == []  # always long is the base rate


def test_too_few_calls_and_an_always_rising_series_are_not_a_leak():
    move = _moves(300)
    few = np.where(np.arange(300) < MIN_CALLED_DAYS - 1, np.sign(move), 0.0)
    assert position_alarms(*_frames(few, move), _metrics(0.5, 0.5)) == []
    rising = np.abs(move)
    rising[::150] = -0.001  # a money-market-like series: up on all but two days
    held = np.ones(300)
    held[::150] = 0.0  # even flat on its two down days, it is right only as often as always-up is
    assert position_alarms(*_frames(held, rising), _metrics(60.0, 35.0)) == []  # nor is its Sharpe judged


def test_a_sharpe_no_honest_daily_strategy_reaches_is_named():
    move = _moves(MIN_SHARPE_DAYS)
    coin = np.sign(np.random.default_rng(2).normal(size=len(move)))  # its calls look like chance
    alarms = position_alarms(*_frames(coin, move), _metrics(6.2, 0.4))
    assert alarms == [f"{ALARM}: the positions of rule_model: a Sharpe ratio of 6.20 over {MIN_SHARPE_DAYS} days "
                      "(buy-and-hold 0.40; above 5, and 3 above buy-and-hold, is implausible for daily bars), too good "
                      "to be true for daily prices; check every feature and the strategy for data from after the "
                      "decision day."]
    assert implausible_sharpe(IMPLAUSIBLE_SHARPE + 0.01, 0.0, MIN_SHARPE_DAYS)
    assert not implausible_sharpe(IMPLAUSIBLE_SHARPE, 0.0, MIN_SHARPE_DAYS)  # strictly above
    assert not implausible_sharpe(9.0, 9.0 - SHARPE_MARGIN, MIN_SHARPE_DAYS)  # buy-and-hold is nearly as good
    assert not implausible_sharpe(9.0, 0.0, MIN_SHARPE_DAYS - 1)  # less than a year: too noisy to judge
    assert not implausible_sharpe(float("nan"), 0.0, MIN_SHARPE_DAYS)
    assert not implausible_sharpe(60.0, IMPLAUSIBLE_SHARPE + 0.01, MIN_SHARPE_DAYS)  # no ordinary market


def test_a_rule_is_named_once_with_every_strategy_it_flags_and_a_flagged_model_is_not_named_twice():
    move = _moves(100)
    days = pd.bdate_range("2020-01-01", periods=100)
    cheat = np.sign(move)
    positions = pd.DataFrame({"a": cheat, "b": cheat, "c": 0.0, BENCHMARK: 1.0}, index=days)
    returns = pd.DataFrame({"a": cheat * move, "b": cheat * move, "c": 0.0, BENCHMARK: move}, index=days)
    metrics = {name: {"sharpe": 1.0} for name in positions}
    [line] = position_alarms(positions, returns, metrics, rule="rules:peek")
    assert line.startswith(f"{ALARM}: strategy.custom rule rules:peek makes positions too good to be true for daily "
                           "prices (a and b: right on 100.0% of next-day moves over the 100 days held")
    assert line.endswith("check the rule for data from after the decision day (a file read from disk, a shifted "
                         "column).")
    assert "b:" not in position_alarms(positions, returns, metrics, rule="rules:peek", flagged=["b"])[0]


# --------------------------------------------------------------------------- through the command line


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[int, str, str, Path]]:
    """``lstmbt run`` of the linear twins on a CSV of the S&P 500 sample, under the rule that reads
    tomorrow's close from that CSV, under an honest rule, and with none: (status, stdout, stderr, out)."""
    folder = tmp_path_factory.mktemp("lookahead")
    source = write_csv(folder / "spx.csv", load_prices(RunConfig().data).loc["2016-06-01":])
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ORACLE_CSV, source.removeprefix("csv:"))
        for name, rule in (("oracle", "custom_rules:oracle"), ("band", "custom_rules:band"), ("none", None)):
            values = {**LINEAR_VALUES, "data.source": source, **({"strategy.custom": rule} if rule else {})}
            code, stdout, stderr = call_main(["run", *set_args(values), "--out", str(folder / name)])
            out[name] = (code, stdout, stderr, folder / name)
    return out


def test_a_rule_that_reads_tomorrows_close_from_disk_trips_the_alarm_everywhere(runs):
    code, stdout, stderr, out = runs["oracle"]
    assert code == 0, stderr
    expected = (f"{ALARM}: strategy.custom rule custom_rules:oracle makes positions too good to be true for daily "
                "prices (ridge_regression, logistic_classification, persistence and majority: right on 100.0% of "
                "next-day moves over the ")
    notes = [line for line in stdout.splitlines() if line.startswith(f"note: {ALARM}")]
    assert len(notes) == 1 and notes[0].startswith(f"note: {expected}"), stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["warnings"][0] == notes[0].removeprefix("note: ")  # the first thing the run says
    assert notes[0].removeprefix("note: ") in (out / "report.html").read_text()


@pytest.mark.parametrize("run", ["band", "none"])
def test_an_honest_rule_and_the_default_strategy_do_not(runs, run):
    code, stdout, stderr, out = runs[run]
    assert code == 0, stderr
    assert ALARM not in stdout and ALARM not in (out / "report.html").read_text()
    assert not [w for w in json.loads((out / "manifest.json").read_text())["warnings"] if "LOOK-AHEAD" in w]
