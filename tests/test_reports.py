"""The HTML report: complete (every metric key), offline (plotly.js once, no CDN), escaped, faithful."""

from __future__ import annotations

import copy
import dataclasses
import html
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import backtest.cli as cli
from backtest.config import RunConfig
from backtest.pipeline import RunResult, load_run, run, save_run
from reports import METRIC_HELP, format_metric, render_report

SECTIONS = ("summary", "performance", "predictions", "folds", "run")
EVIL = "<script>alert(1)</script>"
DASH = "\u2013"
TINY = {"data.source": "sample:sp500", "data.start": "2016-06-01", "split.min_train": 150, "split.step": 100,
        "model.lookback": 5, "model.hidden_size": 4, "model.num_layers": 1, "model.head": [],
        "train.max_epochs": 1, "train.device": "cpu"}


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[RunResult, Path, str]:
    """One tiny real run: (in-memory result, its saved run directory, the saved report.html text)."""
    result = run(RunConfig().with_values(TINY))
    run_dir = save_run(result, tmp_path_factory.mktemp("reports") / "run")
    return result, run_dir, (run_dir / "report.html").read_text(encoding="utf-8")


class _Tables(HTMLParser):
    """Cell texts of every <table id=...>, row by row (header row included)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(text: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(text)
    return parser.tables


def metric_cells(text: str) -> dict[str, list[str]]:
    """{metric: [cell per strategy]} from the summary table (the help column dropped)."""
    header, *rows = tables(text)["metrics-table"]
    return {row[0]: row[1:-1] for row in rows}


def figure_specs(text: str) -> dict[str, dict]:
    found = re.findall(r'<script type="application/json" id="([\w-]+)-data">(.*?)</script>', text, re.S)
    return {key: json.loads(body) for key, body in found}


def without_plotlyjs(text: str) -> str:
    from plotly.offline import get_plotlyjs

    return text.replace(get_plotlyjs(), "")


# --------------------------------------------------------------------------- completeness


def test_every_metric_key_appears_for_every_strategy(tiny):
    _, run_dir, text = tiny
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cells = metric_cells(text)
    header = tables(text)["metrics-table"][0]
    assert header[1:-1] == list(metrics)  # one column per strategy, in metrics.json order
    for name, entry in metrics.items():
        column = list(metrics).index(name)
        for key, value in entry.items():
            assert f'<td class="metric">{key}</td>' in text, key
            assert cells[key][column] == format_metric(key, value), (name, key)
    # every key shown has an explanation next to it
    assert set(cells) <= set(METRIC_HELP)


def test_report_has_the_five_sections(tiny):
    text = tiny[2]
    for section in SECTIONS:
        assert text.count(f'<section id="{section}">') == 1, section
        assert f'href="#{section}"' in text


def test_summary_has_one_verdict_per_model_against_buy_and_hold(tiny):
    result, _, text = tiny
    models = [name for name in result.metrics if name != "buy_and_hold"]
    verdicts = re.findall(r'<p class="verdict">(.*?)</p>', text)
    assert len(verdicts) == len(models) == 2
    for name, line in zip(models, verdicts):
        assert line.startswith(name) and "buy-and-hold" in line and "base rate" in line and "p = " in line
    for warning in result.manifest["warnings"]:
        assert str(markupsafe.escape(warning)) in text  # escaped the way Jinja2 escapes


def test_figures_cover_equity_drawdown_and_both_models(tiny):
    result, _, text = tiny
    specs = figure_specs(text)
    assert list(specs) == ["fig-equity", "fig-drawdown", "fig-regression", "fig-probability"]
    for key in specs:
        assert f'<div class="figure" id="{key}"></div>' in text
    names = [trace["name"] for trace in specs["fig-equity"]["data"]]
    assert names == list(result.returns.columns)
    assert [t["name"] for t in specs["fig-regression"]["data"]] == ["actual", "lstm_regression", "persistence"]
    n_days = len(result.returns)
    assert all(len(trace["x"]) == n_days for trace in specs["fig-drawdown"]["data"])


# --------------------------------------------------------------------------- offline


def test_plotlyjs_is_embedded_exactly_once(tiny):
    from plotly.offline import get_plotlyjs

    text = tiny[2]
    assert text.count(get_plotlyjs()) == 1
    assert len(re.findall(r"plotly\.js v\d", text)) == 1


def test_nothing_is_loaded_from_the_network(tiny):
    text = tiny[2]
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert not re.search(r"<link\b", text, re.I)
    assert "@import" not in without_plotlyjs(text)
    # outside the embedded library, the page holds no URL at all
    assert not re.search(r"https?://", without_plotlyjs(text))
    scripts = re.findall(r"<script\b[^>]*>", text)
    assert len(scripts) == len(figure_specs(text)) + 2  # one JSON block per figure, plotly.js, the loader


# --------------------------------------------------------------------------- folds and provenance


def test_fold_table_has_one_row_per_fold(tiny):
    _, run_dir, text = tiny
    folds = pd.read_parquet(run_dir / "folds.parquet")
    header, *rows = tables(text)["folds-table"]
    assert header == list(folds.columns)
    assert len(rows) == len(folds) and len(folds) >= 4  # two models x at least two folds
    assert [row[0] for row in rows] == folds["model"].tolist()
    assert [row[header.index("test_start")] for row in rows] == folds["test_start"].dt.strftime("%Y-%m-%d").tolist()


def test_resolved_config_and_data_provenance_appear(tiny):
    result, run_dir, text = tiny
    pre = re.search(r"<pre>(.*?)</pre>", text, re.S)
    assert pre is not None
    shown = html.unescape(pre.group(1))
    assert shown == (run_dir / "config.toml").read_text() == result.config.to_toml()
    data = json.loads((run_dir / "manifest.json").read_text())["data"]
    assert len(data["sha256"]) == 64 and data["sha256"] in text
    for key in ("source", "first_date", "last_date", "rows"):
        assert f"<dt>{key}</dt><dd>{data[key]}</dd>" in text, key
    oos = result.manifest["out_of_sample"]
    assert f"Out of sample {oos['first_date']} to {oos['last_date']}" in text


# --------------------------------------------------------------------------- escaping


def _evil_result(result: RunResult) -> RunResult:
    """The tiny run with hostile text in every string the report shows."""
    config = result.config.with_values({"data.source": f"csv:{EVIL}.csv", "data.symbol": EVIL})
    manifest = copy.deepcopy(result.manifest)
    manifest["data"].update(source=config.data.source, symbol=EVIL)
    manifest["warnings"] = [f"note {EVIL}"]
    manifest["platform"] = EVIL
    metrics = {(EVIL if name == "lstm_classification" else name): dict(entry) for name, entry in result.metrics.items()}
    metrics["buy_and_hold"][EVIL] = 0.5  # an unknown metric key
    returns = result.returns.rename(columns={"lstm_classification": EVIL})
    folds = result.folds.assign(model=result.folds["model"].replace({"lstm_classification": EVIL}))
    return dataclasses.replace(result, config=config, manifest=manifest, metrics=metrics, returns=returns,
                               folds=folds)


def test_hostile_text_is_escaped_everywhere(tiny):
    text = render_report(_evil_result(tiny[0]))
    assert EVIL not in text
    assert "<script>alert" not in text  # not even inside the JSON blocks
    escaped = str(markupsafe.escape(EVIL))
    assert f"csv:{escaped}.csv" in text                      # title, data provenance, config
    assert f"<dt>symbol</dt><dd>{escaped}</dd>" in text       # provenance
    assert f"<th>{escaped}</th>" in text                     # strategy column
    assert f'<td class="metric">{escaped}</td>' in text      # metric name
    assert f"note {escaped}" in text                         # warnings
    assert f"<td>{escaped}</td>" in text                     # fold table
    assert text.count("<script") == len(figure_specs(text)) + 2
    # the figure data still carries the name unchanged for plotly
    names = [trace["name"] for trace in figure_specs(text)["fig-equity"]["data"]]
    assert EVIL in names


def test_json_blocks_cannot_end_early():
    """A name holding </script> or <!-- stays inside its JSON block and reads back unchanged."""
    from reports import _figure_json
    import plotly.graph_objects as go

    name = "</script><!--<script>&"
    body = _figure_json(go.Figure([go.Scatter(x=[1], y=[2], name=name)]))
    assert "<" not in body and ">" not in body and "&" not in body
    assert json.loads(body)["data"][0]["name"] == name


# --------------------------------------------------------------------------- format_metric


@pytest.mark.parametrize("name, value, shown", [
    ("total_return", 0.1234, "12.34%"),
    ("max_drawdown", -0.5712, "-57.12%"),
    ("cagr", 0.0, "0.00%"),
    ("hit_rate", 0.5, "50.00%"),
    ("exposure", 1.0, "100.00%"),
    ("fees_paid", 0.00123, "0.12%"),
    ("accuracy", 0.52, "52.00%"),
    ("n_trades", 12, "12"),
    ("n_trades", 1234, "1,234"),
    ("n_trades", np.int64(7), "7"),
    ("n_days", 2520.0, "2,520"),
    ("sharpe", 1.23456, "1.235"),
    ("sharpe", -0.5, "-0.5"),
    ("rmse", 0.000123456, "0.0001235"),
    ("hit_rate_pvalue", 0.000123456, "0.000123"),
    ("hit_rate_pvalue", 0.5, "0.5"),
    ("sharpe", None, DASH),
    ("sharpe", float("nan"), DASH),
    ("total_return", float("nan"), DASH),
    ("n_trades", None, DASH),
    ("calmar", float("inf"), DASH),
    ("sortino", -math.inf, DASH),
    ("sharpe", np.float64("nan"), DASH),
    ("sharpe", np.float32("nan"), DASH),
])
def test_format_metric(name, value, shown):
    assert format_metric(name, value) == shown


# --------------------------------------------------------------------------- re-rendering from disk


def test_saved_report_is_the_in_memory_render(tiny):
    result, _, text = tiny
    assert render_report(result) == text


def test_lstmbt_report_on_a_loaded_run_shows_the_same_cells(tiny, tmp_path):
    result, run_dir, _ = tiny
    nan_result = dataclasses.replace(result, metrics=copy.deepcopy(result.metrics))
    nan_result.metrics["lstm_regression"]["calmar"] = float("nan")   # null in metrics.json, None when loaded
    nan_result.metrics["buy_and_hold"]["sortino"] = np.float64("inf")
    saved = save_run(nan_result, tmp_path / "run")
    assert json.loads((saved / "metrics.json").read_text())["lstm_regression"]["calmar"] is None
    assert load_run(saved).metrics["lstm_regression"]["calmar"] is None

    (saved / "report.html").unlink()
    outcome = CliRunner().invoke(cli.app, ["report", str(saved)])
    assert outcome.exit_code == 0, (outcome.output, outcome.exception)
    from_disk = (saved / "report.html").read_text(encoding="utf-8")
    in_memory = render_report(nan_result)

    assert metric_cells(from_disk) == metric_cells(in_memory)
    cells = metric_cells(from_disk)
    strategies = list(nan_result.metrics)
    assert cells["calmar"][strategies.index("lstm_regression")] == DASH
    assert cells["sortino"][strategies.index("buy_and_hold")] == DASH
    assert cells["hit_rate_pvalue"][strategies.index("buy_and_hold")] == DASH  # not computed for the baseline
    assert tables(from_disk)["folds-table"] == tables(in_memory)["folds-table"]
    assert figure_specs(from_disk) == figure_specs(in_memory)
    assert re.findall(r'<p class="verdict">.*?</p>', from_disk) == re.findall(r'<p class="verdict">.*?</p>', in_memory)
