"""``lstmbt importance`` says first whether the models it explains have skill (issue 17, item 4).

The skill comes from the command's own out-of-sample predictions, scored by the run's own code,
so its figures must equal a ``lstmbt run`` of the same config. Fast: the linear models on ~700
bars of ``test_pipeline.planted_prices``, with (today's volume reveals tomorrow's direction) and
without a signal.
"""

from __future__ import annotations

import json
import math

import pytest

import lstmbt.backtest.importance as imp
from lstmbt.backtest.attribution import shap_frame
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.skill import oos_metrics
from lstmbt.reports import format_metric
from helpers import PLANTED_FLAGS, set_args
from test_pipeline import planted_prices, write_csv

SCORED = ("hit_rate", "base_rate", "hit_rate_pvalue", "sharpe", "verdict", "verdict_ci_low", "verdict_ci_high",
          "total_return", "n_trades")
STATEMENT = "No model shows evidence of skill: the importances below describe models without demonstrated skill"


@pytest.fixture(scope="module", params=[True, False], ids=["signal", "noise"])
def planted(request, tmp_path_factory) -> tuple[str, bool]:
    """(a CSV source, whether its volume reveals tomorrow's direction)."""
    folder = tmp_path_factory.mktemp("skill")
    return write_csv(folder / "prices.csv", planted_prices(700, signal=request.param)), request.param


@pytest.fixture(scope="module")
def source(planted) -> str:
    return planted[0]


def config_of(source: str) -> RunConfig:
    return RunConfig.resolve(flags={"data.source": source, **PLANTED_FLAGS})


@pytest.mark.parametrize("method", ["permutation", "ablation", "shap"])
def test_skill_equals_a_run_of_the_same_config(source, method):
    config = config_of(source)
    design, oos = imp.load_design(config), {}
    if method == "shap":
        shap_frame(config, design=design, oos=oos)
    else:
        imp.importance_frame(config, method, 1, design=design, oos=oos)
    mine, ran = oos_metrics(design, oos, config), run(config).metrics
    assert set(mine) == set(ran)
    for name in ran:
        for key in SCORED:
            if key in ran[name]:
                a, b = mine[name][key], ran[name][key]
                assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (method, name, key)


def skill_of(metrics: dict) -> dict[str, bool]:
    """Skill as every page defines it: the hit-rate p-value adjusted over the 2 models (Bonferroni), or "beats"."""
    return {name: 2 * metrics[name]["hit_rate_pvalue"] < 0.05 or metrics[name]["verdict"] == "beats"
            for name in ("ridge_regression", "logistic_classification")}


def test_cli_prints_the_skill_above_the_tables_and_says_when_there_is_none(planted, tmp_path, run_cli):
    source, signal = planted
    code, _, err = run_cli(["run", "--source", source, *set_args(PLANTED_FLAGS), "--out", str(tmp_path / "run")])
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    out = tmp_path / "page.html"
    code, stdout, err = run_cli(["importance", "--source", source, "--method", "permutation", "--repeats", "1",
                                 "--out", str(out), *set_args(PLANTED_FLAGS)])
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].startswith("walk-forward skill, computed from this command's own walk-forward")
    assert stdout.index("walk-forward skill") < stdout.index("permutation: change when")
    bench = metrics["buy_and_hold"]["sharpe"]
    skilled = skill_of(metrics)
    for name, shows in skilled.items():
        m = metrics[name]
        base = max(m["base_rate"], 1 - m["base_rate"])
        words = "evidence of skill" if shows else "no evidence of skill"
        p = format_metric("hit_rate_pvalue", m["hit_rate_pvalue"])  # as the report writes it
        adjusted = format_metric("hit_rate_pvalue", min(1.0, 2 * m["hit_rate_pvalue"]))
        expected = (f"  {name}: {words} - hit rate {m['hit_rate']:.1%} vs base rate {base:.1%} (p {p}, "
                    f"{adjusted} adjusted over 2 models), "
                    f"Sharpe {m['sharpe']:.2f} vs buy-and-hold {bench:.2f} (")
        assert any(line.startswith(expected) for line in lines), (expected, stdout)
    page = out.read_text(encoding="utf-8")
    assert page.index('id="skill"') < page.index('id="reading"') < page.index('id="permutation"')
    for name in skilled:
        assert f'<td class="text">{name}</td><td>{100 * metrics[name]["hit_rate"]:.1f}%</td>' in page
    if not any(skilled.values()):
        assert any(line.startswith(STATEMENT) for line in lines)
        assert 'id="no-skill"' in page and STATEMENT in page
    else:
        assert STATEMENT not in stdout and STATEMENT not in page
        without = [name for name, shows in skilled.items() if not shows]
        partial = [line for line in lines if line.startswith("The importances of ")]
        assert partial == ([f"The importances of {', '.join(without)} describe models without demonstrated skill "
                            "(what they fit, which may be noise), not what drives returns."] if without else [])
    # the planted signal is learnt; on noise neither model may claim skill, so the statement is made
    assert skilled["logistic_classification"] is signal and (signal or not any(skilled.values()))
