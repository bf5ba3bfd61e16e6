"""``lstmbt compare``: saved runs side by side, built from disk only, refusing what cannot be compared.

Three tiny real runs (a couple of seconds each): ``a``; ``b`` with another model size and a price
regression target (so it has metric keys ``a`` lacks); ``old`` on 2012-2014 data, whose
out-of-sample period does not overlap the others. Other cases copy and edit saved run directories.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.backtest.pipeline import run

from lstmbt.reports import format_metric
from lstmbt.reports.compare import COMMON_METRICS, compare_runs, run_labels, write_compare
from lstmbt.reports.embed import unpack_figures
from helpers import TINY_SPX, call_main, save_with_report

CONFIGS = {
    "a": TINY_SPX,
    "b": {**TINY_SPX, "model.hidden_size": 8, "target.regression": "price"},
    "old": {**TINY_SPX, "data.start": "2012-01-01", "data.end": "2014-06-30"},
}
DASH = "\u2013"


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """``{name: saved run directory}`` for the three CONFIGS."""
    root = tmp_path_factory.mktemp("compare")
    return {name: save_with_report(run(RunConfig().with_values(values)), root / name) for name, values in CONFIGS.items()}


@pytest.fixture(scope="module")
def page_ab(runs, tmp_path_factory) -> str:
    """The page for runs a and b, written through the CLI."""
    out = tmp_path_factory.mktemp("page") / "ab.html"
    code, stdout, err = call_main(["compare", str(runs["a"]), str(runs["b"]), "--out", str(out)])
    assert code == 0, err
    assert stdout.strip().splitlines()[-1] == f"compare: {out.resolve()}"
    return out.read_text(encoding="utf-8")


class _Grid(HTMLParser):
    """Every <table id=...> as rows of (part, [(cell text, colspan)]); part is "thead" or the tbody class."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[tuple[str, list[tuple[str, int]]]]] = {}
        self._table: str | None = None
        self._part = ""
        self._cell: list[str] | None = None
        self._span = 1

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag in ("thead", "tbody"):
            self._part = "thead" if tag == "thead" else attrs.get("class") or "tbody"
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append((self._part, []))
        elif tag in ("td", "th") and self._table is not None:
            self._cell, self._span = [], int(attrs.get("colspan") or 1)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1][1].append(("".join(self._cell).strip(), self._span))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def table(text: str, table_id: str) -> list[tuple[str, list[tuple[str, int]]]]:
    parser = _Grid()
    parser.feed(text)
    return parser.tables[table_id]


def columns(text: str, table_id: str) -> list[tuple[str, str]]:
    """(run label, strategy) of every data column, from the two header rows."""
    (_, runs_row), (_, strategy_row) = [row for row in table(text, table_id) if row[0] == "thead"]
    labels = [label for label, span in runs_row[1:-1] for _ in range(span)]
    return list(zip(labels, [s for s, _ in strategy_row]))


def cells(text: str, table_id: str, part: str = "tbody") -> dict[str, list[str]]:
    """{row name: [data cell texts]} of one table part (the meaning column dropped)."""
    return {row[0][0]: [c for c, _ in row[1:-1]] for p, row in table(text, table_id) if p == part}


def figures(text: str) -> dict:
    blob = re.search(r'<script type="application/octet-stream" id="figures-gz">(.*?)</script>', text, re.S)
    assert blob is not None
    return unpack_figures(blob.group(1).strip())["figures"]


def values(spec) -> np.ndarray:
    """A plotly array from figure JSON: a list, or a ``{"dtype", "bdata"}`` typed array."""
    if isinstance(spec, dict):
        return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.dtype(spec["dtype"]))
    return np.asarray(spec)


def metrics_of(run_dir: Path) -> dict[str, dict]:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def returns_of(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "returns.parquet")




def one_error_line(code: int, out: str, err: str) -> str:
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    return lines[0]


# --------------------------------------------------------------------------- the page


def test_saved_table_shows_every_metric_of_every_run(runs, page_ab):
    expected = [(name, strategy) for name in ("a", "b") for strategy in metrics_of(runs[name])]
    assert columns(page_ab, "saved-table") == expected
    shown = cells(page_ab, "saved-table")
    for column, (name, strategy) in enumerate(expected):
        entry = metrics_of(runs[name])[strategy]
        for key in set().union(*(e.keys() for n in ("a", "b") for e in metrics_of(runs[n]).values())):
            assert shown[key][column] == format_metric(key, entry.get(key)), (name, strategy, key)
    # b's price target adds MAPE, which a's return target lacks
    assert shown["mape"][expected.index(("a", "lstm_regression"))] == DASH
    assert shown["mape"][expected.index(("b", "lstm_regression"))] != DASH


def test_settings_block_shows_source_targets_period_and_differences(runs, page_ab):
    settings = cells(page_ab, "saved-table", "settings")
    assert settings["source"] == ["sample:sp500", "sample:sp500"]
    assert settings["regression target"] == ["return", "price"]
    assert settings["model.hidden_size"] == ["4", "8"]
    assert "model.lookback" not in settings  # equal in both runs
    for column, name in enumerate(("a", "b")):
        oos = json.loads((runs[name] / "manifest.json").read_text())["out_of_sample"]
        assert settings["out of sample"][column] == f"{oos['first_date']} to {oos['last_date']}"
        assert settings["days"][column] == str(oos["days"])
    spans = [span for _, span in table(page_ab, "saved-table")[2][1][1:-1]]
    assert spans == [len(metrics_of(runs["a"])), len(metrics_of(runs["b"]))]  # one cell across each run


def test_equity_figure_has_every_run_and_strategy_once(runs, page_ab):
    figs = figures(page_ab)
    assert list(figs) == ["fig-equity", "fig-drawdown"]
    for key in figs:
        assert f'<div class="figure" id="{key}"></div>' in page_ab
    traces = figs["fig-equity"]["data"]
    members = [tuple(k) for trace in traces for k in trace["meta"]]
    expected = [(name, s) for name in ("a", "b") for s in returns_of(runs[name]).columns]
    assert sorted(members) == sorted(expected)  # every run/strategy drawn, none twice
    # identical series are one curve: a and b share data and period, so buy-and-hold is drawn once
    series = {k: returns_of(runs[k[0]])[k[1]].to_numpy() for k in expected}
    groups = [[tuple(k) for k in trace["meta"]] for trace in traces]
    for group in groups:
        assert all(np.array_equal(series[group[0]], series[k]) for k in group), group
    for one, other in itertools.combinations(groups, 2):
        assert not np.array_equal(series[one[0]], series[other[0]]), (one, other)
    shared = next(i for i, group in enumerate(groups) if ("a", "buy_and_hold") in group)
    assert ("b", "buy_and_hold") in groups[shared]
    assert "a, b / buy_and_hold" in traces[shared]["name"]
    assert ("a", "lstm_regression") in groups[0] and ("b", "lstm_regression") not in groups[0]


def test_curves_are_growth_of_one_from_the_common_start(runs, page_ab):
    ret = returns_of(runs["a"])
    for trace in figures(page_ab)["fig-equity"]["data"]:
        name, strategy = trace["meta"][0]
        series = returns_of(runs[name])[strategy]
        assert trace["x"][0] == series.index[0].strftime("%Y-%m-%d") == ret.index[0].strftime("%Y-%m-%d")
        assert np.allclose(values(trace["y"]), np.cumprod(1 + series.to_numpy()))


def test_one_run_alone_recomputes_its_saved_figures(runs):
    text = compare_runs([runs["a"]])
    assert [s for _, s in columns(text, "common-table")] == list(returns_of(runs["a"]).columns)
    common, saved = cells(text, "common-table"), cells(text, "saved-table")
    assert list(common) == list(COMMON_METRICS)
    for key in ("total_return", "cagr", "ann_volatility", "sharpe", "sortino", "max_drawdown", "calmar", "n_days"):
        assert common[key] == saved[key], key


def test_common_period_is_the_overlap(runs, tmp_path):
    late = shutil.copytree(runs["a"], tmp_path / "late")
    returns_of(late).iloc[60:].to_parquet(late / "returns.parquet")
    text = compare_runs([runs["a"], late])
    start = returns_of(late).index[0]
    assert re.search(rf"Common period: {start:%Y-%m-%d} to ", text)
    kept = returns_of(runs["a"]).loc[start:]
    common = cells(text, "common-table")
    column = columns(text, "common-table").index(("a", "lstm_classification"))
    r = kept["lstm_classification"].to_numpy()
    assert common["total_return"][column] == format_metric("total_return", np.prod(1 + r) - 1)
    assert common["n_days"][column] == format_metric("n_days", len(kept))


def test_page_is_built_from_the_saved_files(runs, tmp_path):
    edited = shutil.copytree(runs["a"], tmp_path / "edited")
    metrics = metrics_of(edited)
    metrics["lstm_regression"]["sharpe"] = 7.654321
    (edited / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    returns = returns_of(edited)
    before = compare_runs([edited])
    returns.iloc[10, returns.columns.get_loc("lstm_classification")] = 0.25
    returns.to_parquet(edited / "returns.parquet")

    text = compare_runs([edited])
    column = columns(text, "saved-table").index(("edited", "lstm_regression"))
    assert cells(text, "saved-table")["sharpe"][column] == "7.65"
    column = columns(text, "common-table").index(("edited", "lstm_classification"))
    total = np.prod(1 + returns["lstm_classification"].to_numpy()) - 1
    assert cells(text, "common-table")["total_return"][column] == format_metric("total_return", total)
    assert cells(before, "common-table")["total_return"][column] != format_metric("total_return", total)
    trace = next(t for t in figures(text)["fig-equity"]["data"] if t["meta"] == [["edited", "lstm_classification"]])
    y = values(trace["y"])
    assert y[10] / y[9] == pytest.approx(1.25)


# --------------------------------------------------------------------------- refusals


def test_runs_that_do_not_overlap_are_refused(runs, tmp_path, run_cli):
    out = tmp_path / "out.html"
    code, stdout, err = run_cli(["compare", str(runs["a"]), str(runs["old"]), "--out", str(out)])
    line = one_error_line(code, stdout, err)
    assert "overlap" in line and " a (" in line and " old (" in line
    assert list(tmp_path.iterdir()) == []  # no page, no temporary file


@pytest.mark.parametrize("make", ["empty_dir", "missing", "duplicate"])
def test_bad_run_directories_are_refused(make, runs, tmp_path, run_cli):
    bad = {"empty_dir": [str(tmp_path)], "missing": [str(tmp_path / "nope")],
           "duplicate": [str(runs["a"]), str(runs["a"].parent / "b" / ".." / "a")]}[make]
    out = tmp_path / "out.html"
    code, stdout, err = run_cli(["compare", str(runs["b"]), *bad, "--out", str(out)])
    line = one_error_line(code, stdout, err)
    assert ("twice" if make == "duplicate" else "lstmbt run") in line
    assert not out.exists()


def test_zero_runs_are_refused(run_cli):
    with pytest.raises(ConfigError, match="no run directory"):
        compare_runs([])
    assert run_cli(["compare"])[0] == 2  # typer: missing argument


def test_out_that_is_a_directory_is_refused(runs, tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        write_compare([runs["a"]], tmp_path)


def test_non_overlap_raises_data_error(runs):
    with pytest.raises(DataError, match="overlap"):
        compare_runs([runs["old"], runs["b"]])


# --------------------------------------------------------------------------- labels and escaping


def test_hostile_directory_name_is_escaped(runs, tmp_path):
    name = '<b title="q">x&y'
    hostile = shutil.copytree(runs["a"], tmp_path / name)
    text = compare_runs([hostile, runs["b"]])
    escaped = str(markupsafe.escape(name))
    assert name not in text and "<b title" not in text
    assert f'<th class="run run-first" colspan="{len(metrics_of(runs["a"]))}">{escaped}</th>' in text
    assert escaped in re.search(r"<title>(.*?)</title>", text).group(1)
    assert columns(text, "saved-table")[0] == (name, "lstm_regression")  # reads back unchanged
    names = [t["name"] for t in figures(text)["fig-equity"]["data"]]
    assert f"{name} / lstm_regression" in names


def test_equal_directory_names_get_unique_labels(tmp_path):
    assert run_labels([tmp_path / "p1" / "run", tmp_path / "p2" / "run", tmp_path / "x"]) == ["p1/run", "p2/run", "x"]
    assert run_labels([tmp_path / "a" / "x" / "run", tmp_path / "b" / "x" / "run"]) == ["x/run", "x/run #2"]


def test_default_out_is_under_runs(runs, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(["compare", str(runs["a"])])
    assert code == 0, err
    written = list((tmp_path / "runs").glob("compare-*.html"))
    assert len(written) == 1 and stdout.strip().endswith(f"compare: {written[0].resolve()}")
    assert "<title>lstmbt compare - a</title>" in written[0].read_text(encoding="utf-8")


def test_head_to_head_across_runs_on_their_common_days(runs):
    """Each model of run a against each of run b: the paired interval equals significance.sharpe_diff_ci
    on the days both decided, at the Bonferroni level over the pairs shown, and agreement is the
    share of equal calls on those days."""
    from lstmbt.backtest.crossruns import cross_run_pairs
    from lstmbt.backtest.relative import family_confidence
    from lstmbt.backtest.rundir import load_run
    from lstmbt.backtest.significance import sharpe_diff_ci

    a, b = load_run(runs["a"]), load_run(runs["b"])
    pairs = cross_run_pairs([("a", a), ("b", b)])
    models_a = [s for s in a.metrics if s.startswith(("lstm_", "ridge_", "logistic_"))]
    models_b = [s for s in b.metrics if s.startswith(("lstm_", "ridge_", "logistic_"))]
    assert [(p["a"], p["b"]) for p in pairs] == [(f"a: {x}", f"b: {y}") for x in models_a for y in models_b]
    pair = next(p for p in pairs if p["a"] == "a: lstm_classification" and p["b"] == "b: lstm_classification")
    days = a.positions.index.intersection(b.positions.index)
    ra = a.returns.set_axis(a.positions.index)["lstm_classification"].reindex(days).to_numpy()
    rb = b.returns.set_axis(b.positions.index)["lstm_classification"].reindex(days).to_numpy()
    level = family_confidence(len(pairs))
    assert pair["confidence"] == level and len(pairs) == 16
    assert (pair["sharpe_diff_ci_low"], pair["sharpe_diff_ci_high"]) == pytest.approx(sharpe_diff_ci(ra, rb, level))
    assert pair["same_data"] is True and pair["n_days"] == len(days)
    up = lambda r: r.predictions.query("model == 'lstm_classification'").set_index("date")["p_up"].reindex(days) > 0.5
    assert pair["agreement"] == pytest.approx(float(np.mean(up(a).to_numpy() == up(b).to_numpy())))


def test_compare_page_shows_the_head_to_head(runs, page_ab):
    rows = cells(page_ab, "pairs-table")
    assert "a: lstm_regression vs b: lstm_classification" in rows
    assert 'id="head-to-head"' in page_ab
    sentences = re.findall(r'<p class="verdict">(.*?)</p>', page_ab)
    assert len(sentences) == len(rows) and all(" vs " not in s for s in sentences)
    assert all(("cannot be told apart" in s) != (" beats " in s) for s in sentences)
