"""examples/ are executed as a user runs them, so they cannot rot: the scripts in a fresh Python (the
custom strategy also through the ``lstmbt`` command), the notebook cell by cell in a Jupyter kernel
(nbclient)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(script: str, report: Path) -> list[str]:
    """``python examples/<script> REPORT`` in a fresh process; its stdout lines (it must exit 0 and
    end by printing the report path)."""
    done = subprocess.run([sys.executable, str(EXAMPLES / script), str(report)], cwd=report.parent,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == f"report: {report.resolve()}"
    return lines


def test_quickstart_script(tmp_path):
    report = tmp_path / "report.html"
    lines = run_example("quickstart.py", report)
    assert any(line.startswith("buy_and_hold") for line in lines)  # the metrics frame was printed
    assert "sharpe" in lines[0] and "verdict" in lines[0]
    assert report.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_quickstart_notebook(tmp_path):
    import nbclient  # dev extras
    import nbformat

    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed clean
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    shown = [output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    summaries = [data["text/html"] for data in shown if "lstmbt-summary" in data.get("text/html", "")]
    assert len(summaries) == 3  # the run, the crossover's backtest and its tear sheet show their scorecards
    assert "ma_20_100" in summaries[1] and "ma_20_100" in summaries[2]
    for name in ("quickstart-report.html", "ma-tear-sheet.html"):
        assert (tmp_path / name).read_text(encoding="utf-8").startswith("<!DOCTYPE html>"), name


def test_custom_model_example(tmp_path):
    report = tmp_path / "custom.html"
    lines = run_example("custom_model.py", report)
    assert any(line.startswith("flatboost_classification") for line in lines)
    assert "flatboost_classification" in report.read_text(encoding="utf-8")


@pytest.mark.slow  # a second process start; test_families covers dotted-path plug-ins in-process
def test_custom_model_by_dotted_path_on_the_command_line(tmp_path):
    """The README's command: the example module's folder named by --plugin-path, the class in model.custom."""
    done = subprocess.run([sys.executable, "-m", "lstmbt", "run", "--quick", "--out", str(tmp_path / "run"),
                           "--plugin-path", str(EXAMPLES), "--set", "data.start=2014-01-01",
                           "--set", "model.lstm=false", "--set", 'model.custom=["custom_model:FlatBoost"]'],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"flatboost_classification", "logistic_classification", "buy_and_hold"} <= set(metrics)


def test_custom_strategy_script(tmp_path):
    report = tmp_path / "custom.html"
    lines = run_example("custom_strategy.py", report)
    assert lines[-2] == "rule: custom_strategy:p_up_band"
    assert any(line.startswith("lstm_classification") for line in lines)
    assert "positions by the custom rule custom_strategy:p_up_band" in report.read_text(encoding="utf-8").lower()


@pytest.mark.slow  # a second process start and vectorbt cold start; test_custom_strategy covers the lookup in-process
def test_custom_strategy_from_the_command_line_in_its_folder(tmp_path):
    """As its docstring says: the ``lstmbt`` script, run in examples/ and naming it, finds the module there."""
    lstmbt_script = Path(sys.executable).with_name("lstmbt")
    argv = [str(lstmbt_script), "run", "--quick", "--plugin-path", ".",
            "--set", "strategy.custom=custom_strategy:p_up_band",
            "--set", "model.lstm=false", "--set", "data.start=2014-01-01", "--out", str(tmp_path / "run")]
    done = subprocess.run(argv, cwd=EXAMPLES, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'custom = "custom_strategy:p_up_band"' in (tmp_path / "run" / "config.toml").read_text()
    assert not (EXAMPLES / "runs").exists()  # the run went to --out, nothing into the repository
