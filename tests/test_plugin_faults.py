"""Plug-ins and rules are blamed by name: whatever a model plug-in (``model.custom``) or a strategy
rule (``strategy.custom``) does ends in one line naming it, what it did or returned and what was
expected, with exit status 2, and the folds saved before it wait for ``--resume``.

Every case goes through the real entry point (``helpers.call_main`` in-process, via ``run_cli``)
and checks the exit status, the last stderr line, that no traceback is printed, what is left in
the run's parent folder, and that a file already there is byte-identical. The plug-ins are in
``plugin_models.py``, the rules in ``custom_rules.py`` (tests/ is on ``sys.path``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

import custom_rules
import plugin_models
from lstmbt.backtest.attribution import shap_frame
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.forecast import forecast_next
from lstmbt.backtest.importance import importance_frame
from lstmbt.backtest.partial import partial_dir
from lstmbt.backtest.plugins import PREDICTION_COLUMNS, custom_positions
from helpers import LINEAR_VALUES, set_args
from test_faults import _failed, _files, _names

#: the linear twins on ~650 rows of the S&P 500 sample: four folds in seconds
TWINS = {**LINEAR_VALUES, "data.source": "sample:sp500", "data.start": "2016-06-01"}
#: the same with the plug-in as the only model, so it fails before any fold is saved
ALONE = {**TWINS, "model.linear": False}
BYSTANDER = b"a file that was here before the run\n"

#: plug-in -> words of its line after "error: plug-in model <name> (plugin_models:<Class>)"
MODEL_FAULTS = {
    "ColumnPredict": ("'s predict returned an array of shape (", ", 1) and dtype float",
                      "expected one finite number per sample, shape ("),
    "ThreeColumns": ("'s predict returned an array of shape (", ", 3) and dtype float"),
    "StringPredict": ("'s predict returned an array of shape (", "and dtype <U9", "expected one finite number"),
    "DictPredict": ("'s predict returned a dict for ", "expected one finite number per sample"),
    "NaNPredict": ("'s predict returned ", "non-finite values (NaN or inf)",),
    "ProbaSumsOver": ("'s predict_proba returned ", "rows that do not sum to 1 (one sums to 1.8; tolerance 1e-06)",
                      "each row summing to 1"),
    "Unclonable": (" failed in clone (RuntimeError: Cannot clone object", "store every __init__ parameter unchanged"),
    "ExitsInFit": (" called sys.exit(0) in fit; a plug-in must return or raise, never exit the process",),
    "ExitsInPredict": (" called sys.exit(3) in predict; a plug-in must return or raise",),
}


def _name(cls: str, task: str) -> str:
    return f"{cls.lower()}_{task}"


def _task(cls: str) -> str:
    return "classification" if issubclass(getattr(plugin_models, cls), plugin_models.RowLogit) else "regression"


def _argv(command: str, values: dict, *extra: str) -> list[str]:
    return [command, *set_args(values), *extra]


def _runs_folder(tmp_path: Path) -> Path:
    """``tmp_path/runs`` holding one file that no failure may touch."""
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "notes.txt").write_bytes(BYSTANDER)
    return runs


# --------------------------------------------------------------------------- model plug-ins in a run


@pytest.mark.parametrize("cls", MODEL_FAULTS)
def test_a_plugin_fault_is_one_line_naming_it_and_leaves_nothing(cls, tmp_path, run_cli):
    runs = _runs_folder(tmp_path)
    values = {**ALONE, "model.custom": [f"plugin_models:{cls}"]}
    line = _failed(*run_cli(_argv("run", values, "--out", str(runs / "run")))[::2])
    assert line.startswith(f"error: plug-in model {_name(cls, _task(cls))} (plugin_models:{cls})"), line
    assert all(words in line for words in MODEL_FAULTS[cls]), line
    assert _names(runs) == ["notes.txt"] and (runs / "notes.txt").read_bytes() == BYSTANDER


def test_ctrl_c_inside_a_plugin_is_an_interrupt_not_its_fault(tmp_path, run_cli):
    runs = _runs_folder(tmp_path)
    values = {**ALONE, "model.custom": ["plugin_models:InterruptsInFit"]}
    code, _, err = run_cli(_argv("run", values, "--out", str(runs / "run")))
    assert code == 130 and "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted: nothing was written"
    assert _names(runs) == ["notes.txt"]


def test_a_plugin_that_exits_keeps_the_saved_folds_and_resumes_once_fixed(tmp_path, run_cli, monkeypatch):
    """The linear twins' folds are saved before the plug-in exits; fixed in place, the same config
    resumes to the run a fresh start makes."""
    runs = _runs_folder(tmp_path)
    out, values = runs / "run", {**TWINS, "model.custom": ["plugin_models:Fragile"]}
    line = _failed(*run_cli(_argv("run", values, "--out", str(out)))[::2])
    assert line.startswith("error: plug-in model fragile_regression (plugin_models:Fragile) called sys.exit(0) in "
                           "predict"), line
    assert f"saved in {partial_dir(out)}: continue with `lstmbt run --resume {out}` once that is fixed" in line
    saved = _files(partial_dir(out) / "folds")
    assert any(name.startswith("ridge_regression/fold-") for name in saved) and not out.exists()
    monkeypatch.setattr(plugin_models.Fragile, "broken", False)  # the fix
    code, _, err = run_cli(["run", "--resume", str(out)])
    assert code == 0, err
    fresh = runs / "fresh"
    assert run_cli(_argv("run", values, "--out", str(fresh)))[0] == 0
    read = lambda run: pd.read_parquet(run / "predictions.parquet")  # noqa: E731
    pd.testing.assert_frame_equal(read(out), read(fresh))
    assert "fragile_regression" in set(read(out)["model"])
    assert (runs / "notes.txt").read_bytes() == BYSTANDER


# --------------------------------------------------------------------------- strategy rules in a run


@pytest.mark.parametrize("rule, words", [
    ("exits", "called sys.exit(3) for ridge_regression on {day}; a rule must return positions or raise, never exit"),
    ("strings", "returned '0.5', not a number, for ridge_regression on {day}; return positions as floats"),
])
def test_a_rule_fault_is_one_line_naming_it_and_keeps_every_fold(rule, words, tmp_path, run_cli):
    runs = _runs_folder(tmp_path)
    out = runs / "run"
    line = _failed(*run_cli(_argv("run", {**TWINS, "strategy.custom": f"custom_rules:{rule}"}, "--out", str(out)))[::2])
    day = line.split(" on ")[1][:10]
    assert line.startswith(f"error: strategy.custom rule custom_rules:{rule} ") and words.format(day=day) in line, line
    assert re.search(rf"; (\d+) of \1 folds saved in {re.escape(str(partial_dir(out)))}: continue with "
                     rf"`lstmbt run --resume {re.escape(str(out))}` once that is fixed$", line), line
    assert _names(runs) == [partial_dir(out).name, "notes.txt"] and (runs / "notes.txt").read_bytes() == BYSTANDER


def test_ctrl_c_inside_a_rule_is_an_interrupt(tmp_path, run_cli):
    runs = _runs_folder(tmp_path)
    out = runs / "run"
    code, _, err = run_cli(_argv("run", {**TWINS, "strategy.custom": "custom_rules:interrupts"}, "--out", str(out)))
    assert code == 130 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    resume = f"continue with: lstmbt run --resume {re.escape(str(out))}"
    assert re.fullmatch(rf"interrupted: (\d+) of \1 folds saved; {resume}", last), err


def test_a_rule_fixed_in_place_resumes_from_the_saved_folds(tmp_path, run_cli, monkeypatch):
    runs = _runs_folder(tmp_path)
    out = runs / "run"
    line = _failed(*run_cli(_argv("run", {**TWINS, "strategy.custom": "custom_rules:fixable"}, "--out", str(out)))[::2])
    assert "custom_rules:fixable called sys.exit(3)" in line and "--resume" in line
    monkeypatch.setitem(custom_rules.BROKEN, "fixable", False)  # the fix
    code, _, err = run_cli(["run", "--resume", str(out)])
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed"]["folds_restored"] > 0  # the models were not trained again
    positions = pd.read_parquet(out / "positions.parquet")
    assert (positions.drop(columns="buy_and_hold") == 0.5).all().all()


# --------------------------------------------------------------------------- importance, predict, SHAP


@pytest.mark.parametrize("command, cls, words", [
    ("importance", "ExitsInFit", " called sys.exit(0) in fit"),
    ("importance", "ProbaSumsOver", "'s predict_proba returned "),
    ("predict", "ColumnPredict", "'s predict returned an array of shape (1, 1)"),
])
def test_importance_and_predict_blame_the_plugin_too(command, cls, words, tmp_path, run_cli):
    runs = _runs_folder(tmp_path)
    extra = ["--method", "permutation", "--out", str(runs / "importance.html")] if command == "importance" else []
    values = {**ALONE, "model.custom": [f"plugin_models:{cls}"]}
    line = _failed(*run_cli(_argv(command, values, *extra))[::2])
    assert line.startswith(f"error: plug-in model {_name(cls, _task(cls))} (plugin_models:{cls})") and words in line
    assert _names(runs) == ["notes.txt"]


@pytest.mark.parametrize("method", ["shap", "all"])
def test_shap_with_only_plugins_says_so_before_loading_anything(method, tmp_path, run_cli, monkeypatch):
    import lstmbt.backtest.importance as importance

    monkeypatch.setattr(importance, "load_checked", _never)
    runs = _runs_folder(tmp_path)
    values = {**ALONE, "model.custom": ["plugin_models:RowLogit"]}
    line = _failed(*run_cli(_argv("importance", values, "--method", method, "--out", str(runs / "i.html")))[::2])
    assert line == ("error: --method shap has nothing to explain: the only models are plug-ins "
                    "(rowlogit_classification), and SHAP explains lstmbt's own models only (the networks of "
                    "model.families, the linear twins, LightGBM); use --method permutation (or both), which scores "
                    "any model, or add one of them (e.g. --set model.linear=true)")
    assert _names(runs) == ["notes.txt"]


def _never(*args, **kwargs):
    raise AssertionError("data were loaded although the command should have been refused first")


def test_from_python_a_plugin_fault_is_a_config_error():
    config = RunConfig().with_values({**ALONE, "model.custom": ["plugin_models:ExitsInFit"]})
    for call in (lambda: importance_frame(config, "permutation"), lambda: forecast_next(config, threads=1)):
        with pytest.raises(ConfigError, match=r"exitsinfit_classification \(plugin_models:ExitsInFit\) called "
                                              r"sys\.exit\(0\) in fit"):
            call()
    only_plugins = RunConfig().with_values({**ALONE, "model.custom": ["plugin_models:RowLogit"]})
    with pytest.raises(ConfigError, match="--method shap has nothing to explain"):
        shap_frame(only_plugins)


def test_an_exit_in_a_rule_called_from_python_is_the_rules_fault():
    days = pd.bdate_range("2020-01-01", periods=3)
    predictions = pd.DataFrame({c: 0.0 for c in PREDICTION_COLUMNS}, index=days).assign(model="m")
    prices = pd.DataFrame({"Close": [1.0, 2.0, 3.0]}, index=days)
    with pytest.raises(ConfigError, match=r"rule t:user called sys.exit\(143\) for m on 2020-01-01"):
        custom_positions(lambda *args: sys.exit(143), "t:user", predictions, prices)
