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
from typing import Any

import markupsafe
import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.rundir import RunResult, load_run
from lstmbt.reports import METRIC_HELP, SECTIONS, format_metric, render_report
from lstmbt.reports.embed import plotly_bundle, unpack_figures
from lstmbt.reports.tables import FOLD_COLUMNS
from helpers import TINY_SPX, save_with_report

EVIL = "<script>alert(1)</script>"
DASH = "\u2013"


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[RunResult, Path, str]:
    """One tiny real run: (in-memory result, its saved run directory, the saved report.html text)."""
    result = run(RunConfig().with_values(TINY_SPX))
    run_dir = save_with_report(result, tmp_path_factory.mktemp("reports") / "run")
    return result, run_dir, (run_dir / "report.html").read_text(encoding="utf-8")


class _Tables(HTMLParser):
    """Every <table id=...>, row by row (header row included): cell texts, and per cell its first
    text (a metric's name, before the help text inside its cell) and its class."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.heads: dict[str, list[list[str]]] = {}
        self.classes: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id", "")
            for store in (self.tables, self.heads, self.classes):
                store[self._table] = []
        elif tag == "tr" and self._table is not None:
            for store in (self.tables, self.heads, self.classes):
                store[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
            self.classes[self._table][-1].append(attrs.get("class") or "")

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self.heads[self._table][-1].append(self._cell[0].strip() if self._cell else "")
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(text: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(text)
    return parser.tables


def _metrics_table(text: str) -> tuple[list[str], list[str], list[list[str]], list[list[str]]]:
    """(strategies, metric names, cell texts, cell classes) of the metrics table, any help column dropped."""
    parser = _Tables()
    parser.feed(text)
    header, *rows = parser.tables["metrics-table"]
    end = -1 if header[-1] == "meaning" else None
    names = [row[0] for row in parser.heads["metrics-table"][1:]]
    return (header[1:end], names, [row[1:end] for row in rows],
            [row[1:end] for row in parser.classes["metrics-table"][1:]])


def metric_cells(text: str) -> dict[str, list[str]]:
    """{metric: [cell per strategy]} from the metrics table (help text dropped)."""
    _, names, cells, _ = _metrics_table(text)
    return dict(zip(names, cells))


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
    assert _metrics_table(text)[0] == list(metrics)  # one column per strategy, in metrics.json order
    for name, entry in metrics.items():
        column = list(metrics).index(name)
        for key, value in entry.items():
            assert f'<td class="metric">{key}' in text, key
            assert cells[key][column] == format_metric(key, value), (name, key)
    # every key shown has an explanation next to it
    assert set(cells) <= set(METRIC_HELP)


def test_report_has_every_section(tiny):
    text = tiny[2]
    for section in SECTIONS:
        if section == "cpcv":  # only a run with split.scheme = "cpcv" has it (tests/test_cpcv_run.py)
            assert '<section id="cpcv">' not in text and 'href="#cpcv"' not in text
            continue
        assert text.count(f'<section id="{section}">') == 1, section
        assert f'href="#{section}"' in text


def test_scorecard_has_one_row_per_strategy_with_its_saved_verdict(tiny):
    """Models first, then baselines, buy-and-hold last; each model's verdict word and family-wise
    interval are those of metrics.json, and the family sentence counts them."""
    from lstmbt.reports.scorecard import VERDICTS

    result, _, text = tiny
    models = [name for name in result.metrics if name not in ("persistence", "majority", "buy_and_hold")]
    card = text.split('<table id="scorecard">')[1].split("</table>")[0]
    names = re.findall(r'data-strategy="([^"]+)"', card)
    rows = [html.unescape(re.sub(r"<[^>]+>", " ", r)) for r in card.split("data-strategy=")[1:]]
    assert names == models + ["persistence", "majority", "buy_and_hold"]
    for name, row in zip(models, rows):
        m = result.metrics[name]
        assert VERDICTS[m["verdict"]][0] in row
        assert f"[{m['verdict_ci_low']:+.2f}, {m['verdict_ci_high']:+.2f}]" in row
        assert format_metric("sharpe", m["sharpe"]) in row and format_metric("alpha", m["alpha"]) in row
    family = next(html.unescape(v) for v in re.findall(r'<p class="verdict">(.*?)</p>', text) if "tested" in v)
    worse = [n for n in models if result.metrics[n]["verdict"] == "worse"]
    assert f"{len(models)} models tested against buy-and-hold" in family
    assert f"Significantly worse: {', '.join(worse) or 'none'}." in family
    for warning in result.manifest["warnings"]:
        assert str(markupsafe.escape(warning)) in text  # escaped the way Jinja2 escapes


def test_figures_cover_every_diagnostic_and_sit_in_their_sections(tiny):
    result, _, text = tiny
    specs = figure_specs(text)
    assert list(specs) == [
        "perf-equity", "perf-drawdown", "perf-monthly-lstm_regression", "perf-monthly-lstm_classification",
        "perf-monthly-ridge_regression", "perf-monthly-logistic_classification", "perf-monthly-buy_and_hold",
        "perf-yearly", "perf-rolling-sharpe", "pred-reg-lstm_regression", "pred-reg-ridge_regression",
        "pred-confusion", "pred-calibration", "pred-p-up-histogram", "pred-rolling-hit", "folds-hit-rate",
        "costs-by-fee"]
    sections = {m.group(1): m.group(2) for m in re.finditer(r'<section id="(\w+)">(.*?)</section>', text, re.S)}
    prefix = {"perf": "performance", "pred": "predictions", "folds": "folds", "costs": "costs"}
    for key in specs:
        assert f'<div class="figure" id="{key}"></div>' in sections[prefix[key.split("-")[0]]], key
    assert text.count('<div class="figure"') == len(specs)
    names = [trace["name"] for trace in specs["perf-equity"]["data"]]
    assert names == list(result.returns.columns)
    for model in ("lstm_regression", "ridge_regression"):
        assert [(t["type"], t["name"]) for t in specs[f"pred-reg-{model}"]["data"]] == [
            ("scatter", model), ("scatter", "perfect forecast (y = x)"), ("histogram", f"{model} residual"),
            ("histogram", "persistence residual")]
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


def test_monthly_heatmaps_share_one_colour_scale(tiny):
    result, _, text = tiny
    heat = {k: v["data"][0] for k, v in figure_specs(text).items() if k.startswith("perf-monthly-")}
    assert len(heat) == 5
    from lstmbt.backtest.metrics import monthly_return_table

    largest = max(np.nanmax(np.abs(monthly_return_table(result.returns[k.removeprefix("perf-monthly-")]).to_numpy()))
                  for k in heat)
    for key, trace in heat.items():
        assert (trace["zmin"], trace["zmax"]) == (pytest.approx(-largest), pytest.approx(largest)), key
        assert trace["colorscale"] == heat["perf-monthly-buy_and_hold"]["colorscale"]
        assert "%" in trace["colorbar"]["tickformat"] and "%" in trace["hovertemplate"]


def test_monthly_heatmaps_scale_is_the_largest_month_of_any_strategy():
    from lstmbt.reports.figures import monthly_heatmaps

    days = pd.bdate_range("2020-01-01", "2020-12-31")
    calm = pd.Series(0.0001, index=days)
    wild = pd.Series(0.0, index=days)
    wild[days.month == 3] = -0.01  # March compounds to 0.99^n - 1
    march = 0.99 ** int((days.month == 3).sum()) - 1
    figs = monthly_heatmaps(pd.DataFrame({"calm": calm, "wild": wild}), ["calm", "wild"])
    assert list(figs) == ["perf-monthly-calm", "perf-monthly-wild"]
    for fig in figs.values():
        trace = fig.data[0]
        assert trace.zmin == pytest.approx(march) and trace.zmax == pytest.approx(-march)
    # drawn alone, the calm one would get a scale 1/100 as wide: not here
    alone = monthly_heatmaps(pd.DataFrame({"calm": calm}), ["calm"])["perf-monthly-calm"].data[0]
    assert alone.zmax < abs(march) / 50


def _regression_frame(target: str) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 300
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    real = rng.normal(0, 0.01, n)
    pred = 0.3 * real + rng.normal(0, 0.002, n)
    if target == "price":  # closes one day ahead, predicted and realised
        real, pred = close * np.exp(real), close * np.exp(pred)
    return pd.DataFrame({"date": pd.bdate_range("2021-01-01", periods=n), "horizon": 1, "y_true": real,
                         "y_pred": pred, "close": close})


@pytest.mark.parametrize("target", ["return", "price"])
def test_regression_figure_is_a_scatter_with_the_45_degree_line_and_residuals(target):
    from lstmbt.reports.figures import regression_figures

    frame = _regression_frame(target)
    figs = regression_figures({"lstm_regression": frame, "ridge_regression": frame}, target)
    assert list(figs) == ["pred-reg-lstm_regression", "pred-reg-ridge_regression"]
    scatter, diagonal, residual, persistence = figs["pred-reg-lstm_regression"].data
    if target == "price":  # returns from the decision day's close, so the axes compare
        real, pred = frame["y_true"] / frame["close"] - 1, frame["y_pred"] / frame["close"] - 1
    else:
        real, pred = frame["y_true"], frame["y_pred"]
    assert scatter.type == "scatter" and scatter.mode == "markers"
    np.testing.assert_allclose(scatter.x, pred)
    np.testing.assert_allclose(scatter.y, real)
    assert diagonal.mode == "lines" and list(diagonal.x) == list(diagonal.y) and diagonal.x[0] < diagonal.x[1]
    assert diagonal.xaxis == scatter.xaxis in (None, "x") and diagonal.yaxis == scatter.yaxis in (None, "y")
    assert pred.min() <= diagonal.x[0] and diagonal.x[1] <= pred.max()  # drawn where the forecasts are
    assert residual.type == persistence.type == "histogram"
    np.testing.assert_allclose(residual.x, real - pred)
    np.testing.assert_allclose(persistence.x, real)  # persistence predicts no change


def test_calibration_figure_shows_quantile_bins_with_their_counts():
    from lstmbt.backtest.metrics import calibration_curve
    from lstmbt.reports.figures import calibration_figure

    rng = np.random.default_rng(8)
    p = rng.uniform(0.50, 0.56, 1000)
    frame = pd.DataFrame({"y_true": (rng.random(1000) < 0.54).astype(int), "p_up": p})
    fig = calibration_figure({"lstm_classification": frame})
    curve, ideal = fig.data
    table = calibration_curve(frame["y_true"], frame["p_up"])
    counts = [row[0] for row in curve.customdata]
    assert sum(counts) == 1000 and counts == table["count"].tolist() and len(counts) == 10
    assert "%{customdata[0]} days" in curve.hovertemplate and "100 days each" in fig.layout.title.text
    np.testing.assert_allclose(curve.x, table["mean_p"])
    np.testing.assert_allclose(curve.error_y.array, 1.96 * table["realised_se"])
    # zoomed to the p_up used, not [0, 1]; the perfect-calibration line spans that view
    low, high = fig.layout.xaxis.range
    assert 0.49 < low < table["mean_p"].min() and table["mean_p"].max() < high < 0.57
    assert list(ideal.x) == list(ideal.y) == [low, high]


#: every drawn figure: the boxes of its toolbar and of its titles (main title, subplot titles above the plot)
_TITLE_BOXES = """
return Array.from(document.querySelectorAll('.js-plotly-plot')).map(function (el) {
  function box(node) { var r = node.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }
  var bar = el.querySelector('.modebar');
  var titles = Array.from(el.querySelectorAll('.gtitle, .annotation-text')).filter(function (t) {
    return t.textContent.trim() && t.getBoundingClientRect().bottom <= el.getBoundingClientRect().top + 120; });
  return {id: el.id, bar: bar ? box(bar) : null, titles: titles.map(function (t) { return [t.textContent, box(t)]; })};
});"""


@pytest.mark.timeout(300)
def test_plotly_toolbar_covers_no_title_in_a_browser(tiny):
    """Headless Chromium: no figure's toolbar box meets its title's (skips without a browser)."""
    from test_report_browser import find_browser, open_page, start_chromium

    driver = start_chromium(*find_browser())
    try:
        page = open_page(driver, tiny[1] / "report.html")
        assert page.error is None and page.ready is not None
        figures = driver.execute_script(_TITLE_BOXES)
    finally:
        driver.quit()
    assert len(figures) == int(page.ready) > 10
    checked = 0
    for fig in figures:
        assert fig["bar"] is not None and fig["bar"][2] > fig["bar"][0], fig["id"]
        for title, (left, top, right, bottom) in fig["titles"]:
            bar_left, bar_top, bar_right, bar_bottom = fig["bar"]
            apart = right <= bar_left or bar_right <= left or bottom <= bar_top or bar_bottom <= top
            assert apart, (fig["id"], title, fig["bar"], (left, top, right, bottom))
            checked += 1
    assert checked >= len(figures)  # every figure has a title


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
    # percent, one decimal: returns, rates, shares, hit rates and their interval bounds
    ("total_return", 0.1234, "12.3%"),
    ("total_return", 12.3456, "1,234.6%"),
    ("max_drawdown", -0.5712, "-57.1%"),
    ("cagr", 0.0, "0.0%"),
    ("cagr", 0.05862, "5.9%"),
    ("hit_rate", 0.5, "50.0%"),
    ("hit_rate", 0.53649, "53.6%"),
    ("base_rate", 0.5461, "54.6%"),
    ("hit_rate_ci_low", 0.51234, "51.2%"),
    ("exposure", 1.0, "100.0%"),
    ("fees_paid", 0.00123, "0.1%"),
    ("accuracy", 0.52, "52.0%"),
    ("alpha", -0.0069, "-0.7%"),
    ("beta_matched_bh_cagr", 0.033, "3.3%"),
    ("agreement", 0.3, "30.0%"),
    # ratios, two decimals, interval bounds too
    ("sharpe", 1.23456, "1.23"),
    ("sharpe", -0.5, "-0.50"),
    ("sortino", 2, "2.00"),
    ("psr", 0.9466, "0.95"),
    ("information_ratio", -0.123, "-0.12"),
    ("beta", 0.281, "0.28"),
    ("sharpe_ci_low", -0.31, "-0.31"),
    ("sharpe_diff_ci_high", 0.666, "0.67"),
    ("verdict_ci_low", -1.754, "-1.75"),
    ("turnover", 11.4833, "11.48"),
    # p-values: three decimals, "<0.001" below 0.001, by the "pvalue" part of any key
    ("hit_rate_pvalue", 0.000123456, "<0.001"),
    ("hit_rate_pvalue", 0.000999, "<0.001"),
    ("hit_rate_pvalue", 0.001, "0.001"),
    ("hit_rate_pvalue", 0.5, "0.500"),
    ("hit_rate_pvalue", 1.0, "1.000"),
    ("hit_rate_pvalue", 0.9999999552989295, "1.000"),
    ("pt_pvalue", 0.04567, "0.046"),
    ("dm_pvalue_abs", 0.17182, "0.172"),
    ("alpha_pvalue", 0.61, "0.610"),
    ("mcnemar_pvalue", 0.0081, "0.008"),
    ("spa_pvalue", 0.0, "<0.001"),
    ("mcs_pvalue", 0.25, "0.250"),
    ("some_new_pvalue", 0.02, "0.020"),
    # forecast errors and scores: 4 significant figures, so a model and its baseline differ
    ("rmse", 0.009539847680285847, "0.009540"),
    ("persistence_rmse", 0.009542863357963586, "0.009543"),
    ("mae", 0.006579616369328978, "0.006580"),
    ("rmse", 0.000123456, "0.0001235"),
    ("rmse", 23.4567, "23.46"),
    ("rmse", 12345.6, "12,346"),
    ("log_loss", 0.6909805506394792, "0.6910"),
    ("brier", 0.25, "0.2500"),
    ("best_val_loss", 1.0, "1.000"),
    ("roc_auc", 0.48413, "0.4841"),
    ("mape", 0.012345, "1.234%"),
    # counts, text, missing
    ("n_trades", 12, "12"),
    ("n_trades", 1234, "1,234"),
    ("n_trades", np.int64(7), "7"),
    ("n_days", 2520.0, "2,520"),
    ("n_strategies", 4, "4"),
    ("verdict", "inconclusive", "inconclusive"),
    ("verdict", None, DASH),
    ("sharpe", None, DASH),
    ("sharpe", float("nan"), DASH),
    ("total_return", float("nan"), DASH),
    ("hit_rate_pvalue", None, DASH),
    ("alpha_pvalue", float("nan"), DASH),
    ("n_trades", None, DASH),
    ("calmar", float("inf"), DASH),
    ("sortino", -math.inf, DASH),
    ("sharpe", np.float64("nan"), DASH),
    ("sharpe", np.float32("nan"), DASH),
    # a key no kind knows: 4 significant figures
    ("unheard_of", 0.000123456, "0.0001235"),
    # no minus sign on a figure that rounds to zero; flags stay words
    ("calmar", -0.001, "0.00"),
    ("total_return", -0.0004, "0.0%"),
    ("total_return", -0.004, "-0.4%"),
    ("warm", True, "True"),
    ("warm", np.bool_(False), "False"),
])
def test_format_metric(name, value, shown):
    assert format_metric(name, value) == shown


# --------------------------------------------------------------------------- re-rendering from disk


def test_saved_report_is_the_in_memory_render(tiny):
    result, _, text = tiny
    assert render_report(result) == text


def test_lstmbt_report_on_a_loaded_run_shows_the_same_cells(tiny, tmp_path, run_cli):
    result, run_dir, _ = tiny
    nan_result = dataclasses.replace(result, metrics=copy.deepcopy(result.metrics))
    nan_result.metrics["lstm_regression"]["calmar"] = float("nan")   # null in metrics.json, None when loaded
    nan_result.metrics["buy_and_hold"]["sortino"] = np.float64("inf")
    saved = save_with_report(nan_result, tmp_path / "run")
    assert json.loads((saved / "metrics.json").read_text())["lstm_regression"]["calmar"] is None
    assert load_run(saved).metrics["lstm_regression"]["calmar"] is None

    (saved / "report.html").unlink()
    code, _, err = run_cli(["report", str(saved)])
    assert code == 0, err
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
    assert _metrics_table(text)[0] == list(result.metrics)


def test_best_value_per_row_is_highlighted_among_models_only(tiny):
    result, _, text = tiny
    strategies, names, cells, classes = _metrics_table(text)
    models = ["lstm_regression", "lstm_classification", "ridge_regression", "logistic_classification"]
    checked = 0
    for name, row in zip(names, classes):
        marked = [strategies[i] for i, c in enumerate(row) if "best" in c.split()]
        assert not set(marked) - set(models), (name, marked)  # never a baseline or buy-and-hold
        if name == "base_rate" or name.endswith(("_ci_low", "_ci_high")) or name.startswith("n_"):
            assert marked == [], name
        ranked = [s for s in models if name in ("rmse", "log_loss") or result.metrics[s]["exposure"] != 0]
        finite = {s: result.metrics[s].get(name) for s in ranked
                  if isinstance(result.metrics[s].get(name), (int, float)) and math.isfinite(result.metrics[s][name])}
        if name in ("sharpe", "total_return", "rmse", "log_loss", "hit_rate_pvalue") and len(finite) > 1:
            pick = min if name in ("rmse", "log_loss", "hit_rate_pvalue") else max
            best = pick(finite.values())
            assert marked == [s for s in ranked if finite.get(s) == best], name
            checked += 1
        if name in ("exposure", "ann_volatility", "fees_paid", "turnover"):
            assert marked == [], name
    assert checked == 5


def _metric_fixture() -> dict[str, dict[str, Any]]:
    """Two models, one flat model, and baselines holding every row's best value."""
    return {
        "lstm_regression": {"sharpe": 0.4, "total_return": 0.5, "base_rate": 0.54, "sharpe_diff_ci_low": -0.2,
                            "sharpe_ci_high": 1.1, "rmse": 0.0101, "hit_rate_pvalue": 0.2, "verdict": "inconclusive",
                            "verdict_ci_low": -0.3, "n_trades": 40, "exposure": 0.3, "psr": 0.7},
        "ridge_regression": {"sharpe": 0.6, "total_return": 0.4, "base_rate": 0.54, "sharpe_diff_ci_low": -0.1,
                             "sharpe_ci_high": 1.3, "rmse": 0.0102, "hit_rate_pvalue": 0.04, "verdict": "inconclusive",
                             "verdict_ci_low": -0.2, "n_trades": 90, "exposure": 0.6, "psr": None},
        "logistic_classification_h5": {"sharpe": None, "total_return": 0.0, "exposure": 0.0, "log_loss": 0.69,
                                       "max_drawdown": 0.0},
        "persistence": {"sharpe": None, "total_return": 0.0, "rmse": 0.0100, "exposure": 0.0, "max_drawdown": 0.0},
        "majority": {"sharpe": 0.9, "total_return": 0.9, "base_rate": 0.55, "sharpe_diff_ci_low": 0.0,
                     "hit_rate_pvalue": 0.5, "log_loss": 0.68, "exposure": 1.0, "psr": 0.99},
        "buy_and_hold": {"sharpe": 0.9, "total_return": 0.9, "exposure": 1.0, "psr": 0.99, "max_drawdown": -0.3},
    }


def test_highlights_never_mark_baselines_base_rates_bounds_or_verdicts():
    from lstmbt.reports.tables import best_columns, metric_rows

    metrics = _metric_fixture()
    strategies = list(metrics)
    models = ["lstm_regression", "ridge_regression", "logistic_classification_h5"]  # the run's model keys
    rows = {row["name"]: [strategies[i] for i, c in enumerate(row["cells"]) if c["best"]]
            for row in metric_rows(metrics, strategies, {}, models)}
    assert rows["sharpe"] == ["ridge_regression"]           # not majority's or buy-and-hold's 0.9
    assert rows["total_return"] == ["lstm_regression"]      # the flat model's 0 is not ranked either
    assert rows["rmse"] == ["lstm_regression"]              # lower is better; persistence's 0.0100 is a baseline
    assert rows["hit_rate_pvalue"] == ["ridge_regression"]  # lower is better for every p-value
    for name in ("base_rate", "sharpe_diff_ci_low", "sharpe_ci_high", "verdict", "verdict_ci_low", "n_trades",
                 "exposure"):
        assert rows[name] == [], name
    assert rows["psr"] == []           # one model with a value: nothing to rank it against
    assert rows["log_loss"] == []      # one model (majority is a baseline)
    assert rows["max_drawdown"] == []  # only the flat model among the models
    # the same row with a baseline column skipped or not: the unit itself
    assert best_columns("sharpe", [0.4, 0.6, 0.9]) == {2}
    assert best_columns("sharpe", [0.4, 0.6, 0.9], skip={2}) == {1}
    assert best_columns("base_rate", [0.5, 0.6]) == set()
    assert best_columns("alpha_pvalue", [0.3, 0.01]) == {1}


def test_cost_tables_highlight_models_only():
    from lstmbt.reports.tables import cost_rows

    costs = pd.DataFrame([{"fee_bps": bps, "strategy": s, "total_return": value - bps / 100, "sharpe": value}
                          for bps in (0, 10)
                          for s, value in (("lstm_classification", 0.2), ("logistic_classification", 0.3),
                                           ("majority", 0.5), ("buy_and_hold", 0.9))])
    models = ["lstm_classification", "logistic_classification"]
    strategies, rows = cost_rows(costs, "total_return", models)
    assert strategies == ["lstm_classification", "logistic_classification", "majority", "buy_and_hold"]
    for row in rows:
        assert [c["best"] for c in row[1:]] == [False, True, False, False]
    assert rows[1][2]["text"] == "20.0%"  # 0.3 - 0.1
    one = costs[costs["strategy"] != "logistic_classification"]
    assert all(not c["best"] for row in cost_rows(one, "sharpe", models)[1] for c in row)  # one model: no highlight


def test_cost_and_trade_tables_come_from_the_saved_run(tiny, tmp_path, run_cli):
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

    saved = save_with_report(result, tmp_path / "run")
    edited = pd.read_parquet(saved / "costs.parquet")
    edited.loc[(edited["fee_bps"] == 50) & (edited["strategy"] == "lstm_regression"), "total_return"] = 12.3456
    edited.to_parquet(saved / "costs.parquet", index=False)
    trades = pd.read_parquet(saved / "trades.parquet")
    trades.loc[trades["entry_date"].idxmax(), "direction"] = "sideways"
    trades.to_parquet(saved / "trades.parquet", index=False)
    code, _, err = run_cli(["report", str(saved)])
    assert code == 0, err
    page = (saved / "report.html").read_text(encoding="utf-8")
    header, *rows = tables(page)["costs-table"]
    row50 = next(r for r in rows if r[0] == "50 bps")
    assert row50[header.index("lstm_regression")] == "1,234.6%"
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
