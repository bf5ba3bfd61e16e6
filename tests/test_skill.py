"""One definition of skill for ``predict``, ``importance`` and the console: a hit-rate p-value
adjusted over the models tested together (Bonferroni, as the scorecard's verdict intervals), or a
family-wise verdict of "beats buy-and-hold"; never a bare p < 0.05.

The GOOG case: ridge at p = 0.046 among 4 models is 0.184 adjusted, and is no skill. The CLI tests
hand ``predict`` and ``importance`` a run's metrics with chosen p-values, and otherwise run the
linear models on a few hundred bars (seconds).
"""

from __future__ import annotations

import json

import pytest

from lstmbt.backtest.seeds import family_hit_pvalues
from lstmbt.backtest.skill import model_skill, skill_line
from helpers import PLANTED_FLAGS, set_args
from test_pipeline import planted_prices, write_csv
from test_predict_decision import SPX, predict

BENCH = {"hit_rate": 0.53, "sharpe": 0.24}


def entry(p: float, verdict: str = "inconclusive", hit: float = 0.52) -> dict:
    return {"hit_rate": hit, "base_rate": 0.494, "hit_rate_pvalue": p, "sharpe": 0.13, "verdict": verdict}


#: the GOOG daily file's four models: ridge's bare p is below 0.05, its adjusted one is not
GOOG = {"lstm_regression": entry(0.62), "lstm_classification": entry(0.31), "ridge_regression": entry(0.046),
        "logistic_classification": entry(0.58), "buy_and_hold": BENCH}


def test_p_0046_among_four_models_is_0184_and_no_skill():
    skills = {s.model: s for s in model_skill(GOOG, [m for m in GOOG if m != "buy_and_hold"])}
    ridge = skills["ridge_regression"]
    assert ridge.hit_rate_pvalue_adjusted == pytest.approx(0.184) and ridge.n_tested == 4
    assert not ridge.skilled and not any(s.skilled for s in skills.values())
    assert skill_line(ridge).startswith("ridge_regression: no evidence of skill - hit rate 52.0% vs base rate 50.6% "
                                        "(p 0.046, 0.184 adjusted over 4 models), Sharpe 0.13 vs buy-and-hold 0.24")


def test_a_p_value_significant_after_adjustment_is_skill_and_so_is_a_beating_verdict():
    metrics = {**GOOG, "ridge_regression": entry(0.001), "lstm_regression": entry(0.9, verdict="beats")}
    skills = {s.model: s for s in model_skill(metrics, [m for m in metrics if m != "buy_and_hold"])}
    assert skills["ridge_regression"].hit_rate_pvalue_adjusted == pytest.approx(0.004)
    assert skills["ridge_regression"].skilled and skills["lstm_regression"].skilled
    assert not skills["lstm_classification"].skilled


def test_a_model_without_a_direction_call_is_not_in_the_family():
    metrics = {**GOOG, "lstm_regression": {"sharpe": 0.1, "verdict": "inconclusive"}}
    assert set(family_hit_pvalues(metrics, list(GOOG))) == {"lstm_classification", "ridge_regression",
                                                           "logistic_classification"}
    assert family_hit_pvalues(metrics, list(GOOG))["ridge_regression"] == pytest.approx(0.138)


def chosen_metrics(ridge_p: float, logistic_p: float) -> dict:
    return {"ridge_regression": entry(ridge_p, hit=0.51), "logistic_classification": entry(logistic_p, hit=0.56),
            "buy_and_hold": BENCH}


def test_predict_calls_skill_only_after_adjusting_over_its_models(run_cli, tmp_path, monkeypatch):
    record = {"id": "run-1", "path": str(tmp_path / "runs" / "spx"), "created": "2026-12-07T00:00:00+00:00"}
    monkeypatch.setattr("lstmbt.backtest.campaign.forecast_skill.matching_run_metrics",
                        lambda root, cfg, sha: (record, chosen_metrics(0.03, 0.001)))
    out, _ = predict(run_cli, SPX, "--root", str(tmp_path / "runs"))
    assert "evidence of skill: logistic_classification (1 of 2); none for the rest" in out
    assert ("  ridge_regression: no evidence of skill - hit rate 51.0% vs base rate 50.6% (p 0.030, 0.060 adjusted "
            "over 2 models)") in out
    assert ("  logistic_classification: evidence of skill - hit rate 56.0% vs base rate 50.6% (p 0.001, 0.002 adjusted "
            "over 2 models)") in out
    payload = json.loads(predict(run_cli, SPX, "--root", str(tmp_path / "runs"), "--json")[0])
    ridge, logistic = payload["skill"]["models"]
    assert (ridge["skilled"], ridge["hit_rate_pvalue_adjusted"], ridge["n_tested"]) == (False, 0.06, 2)
    assert logistic["skilled"] is True


def test_importance_calls_skill_only_after_adjusting_over_its_models(run_cli, tmp_path, monkeypatch):
    source = write_csv(tmp_path / "prices.csv", planted_prices(700, signal=False))
    monkeypatch.setattr("lstmbt.backtest.skill.oos_metrics", lambda design, oos, config: chosen_metrics(0.03, 0.04))
    page = tmp_path / "page.html"
    code, out, err = run_cli(["importance", "--source", source, "--method", "permutation", "--repeats", "1",
                              "--out", str(page), *set_args(PLANTED_FLAGS)])
    assert code == 0, err
    assert "  ridge_regression: no evidence of skill - hit rate 51.0% vs base rate 50.6% (p 0.030, 0.060" in out
    assert "  logistic_classification: no evidence of skill - hit rate 56.0% vs base rate 50.6% (p 0.040, 0.080" in out
    assert "No model shows evidence of skill" in out
    html = page.read_text(encoding="utf-8")
    assert "<th>adjusted p</th>" in html and "<td>0.060</td>" in html and "<td>0.080</td>" in html
