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
from reports import METRIC_HELP, SECTIONS, format_metric, render_report
from reports.embed import plotly_bundle, unpack_figures
from reports.tables import FOLD_COLUMNS

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


def blob(text: str, element_id: str) -> str:
    found = re.findall(rf'<script type="application/octet-stream" id="{element_id}">(.*?)</script>', text, re.S)
    assert len(found) == 1, element_id
    return found[0]


def figure_specs(text: str) -> dict[str, dict]:
    return unpack_figures(blob(text, "figures-gz"))["figures"]


def without_blobs(text: str) -> str:
    """The page without its two base64 blocks (plotly.js and the figure data)."""
    return text.replace(blob(text, "plotly-gz"), "").replace(blob(text, "figures-gz"), "")


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


def test_report_has_every_section(tiny):
    text = tiny[2]
    for section in SECTIONS:
        assert text.count(f'<section id="{section}">') == 1, section
        assert f'href="#{section}"' in text


def test_summary_has_one_verdict_per_model_against_buy_and_hold(tiny):
    result, _, text = tiny
    models = [name for name in result.metrics if name not in ("persistence", "majority", "buy_and_hold")]
    verdicts = [html.unescape(v) for v in re.findall(r'<p class="verdict">(.*?)</p>', text)]
    assert len(verdicts) == len(models) == 4
    bench = result.metrics["buy_and_hold"]
    for name, line in zip(models, verdicts):
        assert line.startswith(name) and "buy-and-hold" in line and "base rate" in line and "p = " in line
        m = result.metrics[name]
        # the margins are the metrics' differences, signed
        assert f"({m['sharpe'] - bench['sharpe']:+.2f})" in line
        assert f"({100 * (m['total_return'] - bench['total_return']):+.1f} pp)" in line
        base = max(bench["hit_rate"], 1 - bench["hit_rate"])
        assert f"({100 * (m['hit_rate'] - base):+.1f} pp, p = " in line
        assert line.startswith(f"{name} beat buy-and-hold") == (m["sharpe"] > bench["sharpe"])
    for warning in result.manifest["warnings"]:
        assert str(markupsafe.escape(warning)) in text  # escaped the way Jinja2 escapes


def test_figures_cover_every_diagnostic_and_sit_in_their_sections(tiny):
    result, _, text = tiny
    specs = figure_specs(text)
    assert list(specs) == [
        "perf-equity", "perf-drawdown", "perf-monthly-lstm_regression", "perf-monthly-lstm_classification",
        "perf-monthly-ridge_regression", "perf-monthly-logistic_classification", "perf-monthly-buy_and_hold",
        "perf-yearly", "perf-rolling-sharpe", "pred-reg-price", "pred-reg-return",
        "pred-confusion", "pred-calibration", "pred-p-up-histogram", "pred-rolling-hit", "folds-hit-rate",
        "costs-by-fee"]
    sections = {m.group(1): m.group(2) for m in re.finditer(r'<section id="(\w+)">(.*?)</section>', text, re.S)}
    prefix = {"perf": "performance", "pred": "predictions", "folds": "folds", "costs": "costs"}
    for key in specs:
        assert f'<div class="figure" id="{key}"></div>' in sections[prefix[key.split("-")[0]]], key
    assert text.count('<div class="figure"') == len(specs)
    names = [trace["name"] for trace in specs["perf-equity"]["data"]]
    assert names == list(result.returns.columns)
    assert [t["name"] for t in specs["pred-reg-price"]["data"]] == ["actual", "lstm_regression", "ridge_regression",
                                                                     "persistence"]
    assert [t["name"] for t in specs["pred-calibration"]["data"]] == ["lstm_classification", "logistic_classification",
                                                                       "perfect calibration"]
    # every day is drawn: no decimation that could hide a drawdown
    n_days = len(result.returns)
    assert all(len(_values(trace["x"])) == n_days for trace in specs["perf-drawdown"]["data"])
    drawn = _values(specs["perf-drawdown"]["data"][0]["y"])
    assert min(drawn) == pytest.approx(result.metrics[specs["perf-drawdown"]["data"][0]["name"]]["max_drawdown"])
    assert "template" not in specs["perf-equity"]["layout"]  # sent once for the page


def test_confusion_matrix_counts_the_saved_predictions(tiny):
    result, _, text = tiny
    clf = result.predictions[result.predictions["model"] == "lstm_classification"]
    pred, real = (clf["p_up"] > 0.5).to_numpy(), (clf["y_true"] > 0).to_numpy()
    values = np.asarray(_values(figure_specs(text)["pred-confusion"]["data"][0]["z"])).reshape(2, 2)
    assert values.tolist() == [[int((~real & ~pred).sum()), int((~real & pred).sum())],
                               [int((real & ~pred).sum()), int((real & pred).sum())]]


def _values(spec):
    """A plotly array from figure JSON: a list, or a {"dtype", "bdata"(, "shape")} typed array."""
    import base64

    if isinstance(spec, dict):
        return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype(spec["dtype"])).tolist()
    return list(np.ravel(spec))


# --------------------------------------------------------------------------- offline


def test_plotlyjs_is_embedded_exactly_once(tiny):
    import base64
    import gzip

    from plotly.offline import get_plotlyjs

    text = tiny[2]
    assert text.count(plotly_bundle()) == 1
    assert gzip.decompress(base64.b64decode(blob(text, "plotly-gz"))).decode() == get_plotlyjs()
    assert "plotly.js v" not in without_blobs(text)


def test_nothing_is_loaded_from_the_network(tiny):
    text = tiny[2]
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert not re.search(r"<link\b", text, re.I)
    assert "@import" not in without_blobs(text)
    # outside the embedded library, the page and its figure data hold no URL at all
    assert not re.search(r"https?://", without_blobs(text))
    assert not re.search(r"https?://", json.dumps(figure_specs(text)))
    assert len(re.findall(r"<script\b[^>]*>", text)) == 3  # plotly.js, the figure data, the loader


# --------------------------------------------------------------------------- folds and provenance


def test_fold_table_has_one_row_per_fold(tiny):
    _, run_dir, text = tiny
    folds = pd.read_parquet(run_dir / "folds.parquet")
    header, *rows = tables(text)["folds-table"]
    assert header == [c for c in FOLD_COLUMNS if c in folds.columns]
    assert {"hit_rate", "base_rate", "strategy_return", "buy_and_hold_return", "epochs", "best_val_loss"} <= set(header)
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
    assert "<script>alert" not in text
    escaped = str(markupsafe.escape(EVIL))
    assert f"csv:{escaped}.csv" in text                      # title, data provenance, config
    assert f"<dt>symbol</dt><dd>{escaped}</dd>" in text       # provenance
    assert f"<th>{escaped}</th>" in text                     # strategy column
    assert f'<td class="metric">{escaped}</td>' in text      # metric name
    assert f"note {escaped}" in text                         # warnings
    assert f"<td>{escaped}</td>" in text                     # fold table
    assert text.count("<script") == 3
    # the figure data (base64, so it cannot end its block early) carries the name unchanged for plotly
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", blob(text, "figures-gz").strip())
    names = [trace["name"] for trace in figure_specs(text)["perf-equity"]["data"]]
    assert EVIL in names


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


# --------------------------------------------------------------------------- baselines, best cells, costs, trades


def test_baselines_sit_beside_the_models(tiny):
    result, _, text = tiny
    assert list(result.metrics) == ["lstm_regression", "lstm_classification", "ridge_regression",
                                    "logistic_classification", "persistence", "majority", "buy_and_hold"]
    persistence, majority = result.metrics["persistence"], result.metrics["majority"]
    assert persistence["total_return"] == 0.0 and persistence["n_trades"] == 0
    assert persistence["rmse"] == result.metrics["lstm_regression"]["persistence_rmse"]
    assert math.isnan(persistence["hit_rate"])  # no direction called
    assert {"log_loss", "brier", "accuracy"} <= set(majority)
    assert tables(text)["metrics-table"][0][1:-1] == list(result.metrics)


def test_best_value_per_row_is_highlighted(tiny):
    result, _, text = tiny
    strategies = list(result.metrics)
    rows = re.findall(r'<tr><td class="metric">(\w+)</td>(.*?)<td class="help">', text)
    checked = 0
    for name, cells in rows:
        marked = [i for i, c in enumerate(re.findall(r"<td( class=\"best\")?>", cells)) if c]
        values = [result.metrics[s].get(name) for s in strategies]
        ranked = [i for i, s in enumerate(strategies)
                  if name in ("rmse", "log_loss") or result.metrics[s]["exposure"] != 0]
        finite = [(i, v) for i, v in enumerate(values)
                  if i in ranked and isinstance(v, (int, float)) and math.isfinite(v)]
        if name in ("sharpe", "total_return", "rmse", "log_loss") and len(finite) > 1:
            pick = min if name in ("rmse", "log_loss") else max
            best = pick(v for _, v in finite)
            assert marked == [i for i, v in finite if v == best], name
            checked += 1
        if name in ("n_days", "n_trades", "exposure", "ann_volatility", "fees_paid"):
            assert marked == [], name
        if name == "max_drawdown":  # persistence never holds a position: its 0% is not ranked
            assert strategies.index("persistence") not in marked
    assert checked == 4


def test_cost_and_trade_tables_come_from_the_saved_run(tiny, tmp_path):
    result, run_dir, text = tiny
    costs = pd.read_parquet(run_dir / "costs.parquet")
    assert sorted(set(costs["fee_bps"])) == [0, 5, 10, 20, 50]
    assert set(costs["strategy"]) == set(result.metrics)
    # the configured fee level reproduces the run's own backtest
    own = costs[costs["fee_bps"] == round(result.config.backtest.fee_rate * 1e4)].set_index("strategy")
    for name, entry in result.metrics.items():
        assert own.loc[name, "total_return"] == pytest.approx(entry["total_return"], abs=1e-12), name
    # higher fees never help a strategy that trades
    for name, group in costs.groupby("strategy"):
        if result.metrics[name]["n_trades"]:
            assert group.sort_values("fee_bps")["total_return"].is_monotonic_decreasing, name

    saved = save_run(result, tmp_path / "run")
    edited = pd.read_parquet(saved / "costs.parquet")
    edited.loc[(edited["fee_bps"] == 50) & (edited["strategy"] == "lstm_regression"), "total_return"] = 12.3456
    edited.to_parquet(saved / "costs.parquet", index=False)
    trades = pd.read_parquet(saved / "trades.parquet")
    trades.loc[trades["entry_date"].idxmax(), "direction"] = "sideways"
    trades.to_parquet(saved / "trades.parquet", index=False)
    outcome = CliRunner().invoke(cli.app, ["report", str(saved)])
    assert outcome.exit_code == 0, outcome.output
    page = (saved / "report.html").read_text(encoding="utf-8")
    header, *rows = tables(page)["costs-table"]
    row50 = next(r for r in rows if r[0] == "50 bps")
    assert row50[header.index("lstm_regression")] == "1234.56%"
    newest = tables(page)["trades-table"][1]
    assert "sideways" in newest


def test_trade_table_lists_the_newest_fifty(tiny):
    result, _, text = tiny
    header, *rows = tables(text)["trades-table"]
    assert len(rows) == min(50, len(result.trades))
    newest = result.trades.sort_values("entry_date", ascending=False, kind="stable").head(len(rows))
    assert [r[header.index("entry_date")] for r in rows] == newest["entry_date"].dt.strftime("%Y-%m-%d").tolist()
    summary = {r[0]: r for r in tables(text)["trade-summary-table"][1:]}
    for name, entry in result.metrics.items():
        assert summary[name][1] == format_metric("n_trades", entry["n_trades"])
        assert summary[name][2] == format_metric("win_rate", entry["win_rate"])
