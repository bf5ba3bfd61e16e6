"""Universe defaults and the universe report's Costs and Trades sections (issue 17, item 2).

``portfolio.top_k = 0`` (the default) holds a third of the universe; a long-only top_k that holds
every ticker is refused in one line; the report shows the cost sweep and the trades it saved, in
the single-ticker report's tables. The runs are linear models on synthetic random walks
(``test_universe.random_walks``): a universe in seconds.
"""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.campaign.executors import make_executor
from lstmbt.backtest.config import PortfolioConfig, RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.portfolio import FEE_LEVELS_BPS
from lstmbt.backtest.readback import read_config
from lstmbt.backtest.rundir import staged_dir
from lstmbt.backtest.sources import expand_source
from lstmbt.backtest.universe.io import load_universe_run, write_universe
from lstmbt.backtest.universe.running import EW_BENCHMARK, resolve_portfolio, run_universe
from lstmbt.reports import format_metric
from lstmbt.reports.universe import render_universe
from lstmbt.strategies.cross_section import default_top_k
from helpers import LINEAR_VALUES
from test_universe import random_walks

N_TICKERS = 3


# --------------------------------------------------------------------------- the default top_k


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 30, 31, 100, 500])
def test_default_top_k_is_the_nearest_whole_third_and_never_the_whole_universe(n):
    k = default_top_k(n)
    assert 1 <= k < n
    assert abs(k - n / 3) < 0.5  # the nearest integer to n / 3 (n / 3 is never halfway between two)
    assert resolve_portfolio(PortfolioConfig(), n).top_k == k  # what a universe of n tickers runs with


def test_default_top_k_by_hand():
    assert [default_top_k(n) for n in (2, 3, 4, 5, 6, 8, 9, 10, 30)] == [1, 1, 1, 2, 2, 3, 3, 3, 10]


@pytest.mark.parametrize("n, short", [(2, 1), (3, 1), (3, 2), (6, 2), (6, 5), (10, 3), (30, 20)])
def test_default_top_k_leaves_room_for_the_shorts(n, short):
    k = default_top_k(n, short)
    assert 1 <= k <= min(max(1, round(n / 3)), n - short)
    portfolio = resolve_portfolio(PortfolioConfig(bottom_k=short), n)
    assert (portfolio.top_k, portfolio.bottom_k) == (k, short)


def test_an_explicit_top_k_is_kept():
    for n, k in ((2, 1), (5, 4), (10, 1), (10, 9)):
        assert resolve_portfolio(PortfolioConfig(top_k=k), n).top_k == k
    assert resolve_portfolio(PortfolioConfig(top_k=2, bottom_k=2), 4).top_k == 2  # long-short over all: it ranks


@pytest.mark.parametrize("top_k, bottom_k, n, words", [
    (2, 0, 2, ["portfolio.top_k = 2 holds every one of the universe's 2 tickers", "repeat ew_buy_and_hold",
               "at most 1", "or to 0 (a third of the universe: 1 here)"]),
    (10, 0, 10, ["holds every one of the universe's 10 tickers", "at most 9", "3 here"]),
    (5, 0, 4, ["portfolio.top_k = 5 is larger than the universe (4 tickers)", "at most 3"]),
    (3, 2, 4, ["portfolio.top_k + portfolio.bottom_k = 3 + 2 is larger than the universe (4 tickers)",
               "at most 2", "lower portfolio.bottom_k"]),
    (0, 4, 4, ["portfolio.bottom_k = 4 leaves no ticker", "at most 3"]),
])
def test_a_top_k_that_ranks_nothing_is_refused_in_one_line(top_k, bottom_k, n, words):
    with pytest.raises(ConfigError) as refused:
        resolve_portfolio(PortfolioConfig(top_k=top_k, bottom_k=bottom_k), n)
    message = str(refused.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_a_saved_config_without_top_k_means_the_old_default_and_a_new_one_keeps_0():
    assert RunConfig.from_saved({"portfolio": {"bottom_k": 0}}).portfolio.top_k == 2  # what it ran with
    assert RunConfig.from_saved({}).portfolio.top_k == 2  # saved before [portfolio] existed
    assert RunConfig.from_saved(RunConfig().to_dict()).portfolio.top_k == 0  # 0 is written, not dropped
    assert "top_k = 0" in RunConfig().to_toml()
    with pytest.raises(ConfigError, match=r"portfolio.top_k = -1 is out of range; it must be >= 0"):
        RunConfig().with_values({"portfolio.top_k": -1})


# --------------------------------------------------------------------------- a run with the defaults


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    """A universe of three random walks (one starts late, one ends early) with the default
    portfolio, saved with its report as ``lstmbt run`` saves it (tickers' directories aside)."""
    folder = tmp_path_factory.mktemp("defaults")
    csv = folder / "u.csv"
    random_walks(N_TICKERS, 600, seed=4).to_csv(csv, index=False)
    config = RunConfig().with_values({"data.source": f"csv:{csv}", **LINEAR_VALUES,
                                      "target.task": "classification"})
    result = run_universe(config, expand_source(config.data), make_executor("local", workers=1))
    with staged_dir(folder / "run") as tmp:
        write_universe(result, tmp, pages={"report.html": render_universe(result)})
    return folder / "run"


def test_the_default_holds_a_third_and_records_it(saved_run):
    manifest = json.loads((saved_run / "manifest.json").read_text())
    k = default_top_k(N_TICKERS)
    weights = pd.read_parquet(saved_run / "weights.parquet")
    xs = weights[weights["strategy"] == "xs_logistic_classification"].pivot(index="date", columns="ticker",
                                                                               values="weight")
    bench = weights[weights["strategy"] == EW_BENCHMARK].pivot(index="date", columns="ticker", values="weight")
    active = (bench != 0).sum(axis=1)
    assert manifest["portfolio"] == {"top_k": k, "bottom_k": 0, "configured_top_k": 0,
                                     "ranking_days": int((active > k).sum()), "most_active": int(active.max())}
    held = (xs != 0).sum(axis=1)
    assert (held[active >= k] == k).all() and (held[active < k] == 0).all()
    np.testing.assert_allclose(xs.sum(axis=1)[active >= k], 1.0)
    returns = pd.read_parquet(saved_run / "returns.parquet")
    assert not np.allclose(returns["xs_logistic_classification"], returns[EW_BENCHMARK])  # it ranks: not B&H
    assert not any("holds every one" in note for note in manifest["warnings"])
    html = (saved_run / "report.html").read_text()
    assert f"xs_ holds the top {k} of {N_TICKERS} tickers: portfolio.top_k = 0, the default" in html
    assert f"long the {k} ticker{'s' if k != 1 else ''} with the highest prediction" in html


def test_the_cost_sweep_agrees_with_the_run(saved_run):
    costs = pd.read_parquet(saved_run / "costs.parquet")
    metrics = json.loads((saved_run / "metrics.json").read_text())
    config = read_config(saved_run / "config.toml")
    assert sorted(set(costs["fee_bps"])) == sorted(FEE_LEVELS_BPS)
    assert list(dict.fromkeys(costs["strategy"])) == list(metrics)
    own = costs[costs["fee_bps"] == round(config.backtest.fee_rate * 1e4)].set_index("strategy")
    for name, entry in metrics.items():  # re-simulated at the run's own fee: the run's figures
        for key in ("total_return", "sharpe", "max_drawdown", "fees_paid"):
            assert math.isclose(own.loc[name, key], entry[key], rel_tol=1e-9, abs_tol=1e-12), (name, key)
    free = costs[costs["fee_bps"] == 0]
    assert (free["fees_paid"] == 0).all()
    dear = costs[costs["fee_bps"] == max(FEE_LEVELS_BPS)].set_index("strategy")
    assert (dear["total_return"] < free.set_index("strategy")["total_return"]).all()  # fees cost something


def test_the_trades_agree_with_the_metrics(saved_run):
    trades = pd.read_parquet(saved_run / "trades.parquet")
    metrics = json.loads((saved_run / "metrics.json").read_text())
    manifest = json.loads((saved_run / "manifest.json").read_text())
    assert set(trades["ticker"]) <= set(manifest["universe"])
    for name, entry in metrics.items():
        own = trades[trades["strategy"] == name]
        assert len(own) == entry["n_trades"] > 0, name
        assert math.isclose(entry["win_rate"], float((own["return"] > 0).mean()), rel_tol=1e-12)
        assert math.isclose(entry["avg_holding_days"], float(own["holding_days"].mean()), rel_tol=1e-12)
    for ticker in manifest["tickers"]:  # no trade before a ticker's first decision can be filled
        first = pd.Timestamp(ticker["out_of_sample"]["first_date"])
        assert (trades.loc[trades["ticker"] == ticker["name"], "entry_date"] > first).all()


class _Cells(HTMLParser):
    """The text of every cell of one table (by id), row by row, as the browser shows it."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows = table_id, False, []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def _table(html: str, table_id: str) -> pd.DataFrame:
    """The table ``table_id`` of ``html`` as text: its first row is the header."""
    parser = _Cells(table_id)
    parser.feed(html)
    assert parser.rows, f"no table {table_id}"
    rows = [[cell.strip() for cell in row] for row in parser.rows]
    return pd.DataFrame(rows[1:], columns=rows[0])


def test_the_report_shows_the_saved_costs_and_trades(saved_run):
    html = (saved_run / "report.html").read_text()
    costs = pd.read_parquet(saved_run / "costs.parquet")
    trades = pd.read_parquet(saved_run / "trades.parquet")
    metrics = json.loads((saved_run / "metrics.json").read_text())
    for section in ("costs", "trades"):
        assert f'<section id="{section}">' in html and f'href="#{section}"' in html
    for table_id, value in (("costs-table", "total_return"), ("costs-sharpe-table", "sharpe")):
        shown = _table(html, table_id)
        assert list(shown.columns) == ["fee per side", *metrics]
        wide = costs.pivot(index="fee_bps", columns="strategy", values=value)
        assert list(shown["fee per side"]) == [f"{bps} bps" for bps in wide.index]
        for name in metrics:
            assert list(shown[name]) == [format_metric(value, v) for v in wide[name]], (table_id, name)
    summary = _table(html, "trade-summary-table")
    assert list(summary["strategy"]) == list(metrics)
    assert list(summary["trades"]) == [str(entry["n_trades"]) for entry in metrics.values()]
    assert list(summary["win rate"]) == [format_metric("win_rate", e["win_rate"]) for e in metrics.values()]
    listed = _table(html, "trades-table")
    assert f"of {len(trades)} trades (newest first)" in html
    newest = trades.sort_values("entry_date", ascending=False, kind="stable").head(len(listed))
    assert list(listed["ticker"]) == list(newest["ticker"]) and list(listed["strategy"]) == list(newest["strategy"])
    assert list(listed["entry_date"]) == [format_metric("entry_date", d) for d in newest["entry_date"]]
    assert 'id="costs-by-fee"' in html  # the single-ticker report's figure of return by fee level


def test_a_universe_saved_before_costs_and_trades_still_loads_and_renders(saved_run, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.toml", "metrics.json", "returns.parquet", "weights.parquet"):
        (old / name).write_bytes((saved_run / name).read_bytes())
    manifest = json.loads((saved_run / "manifest.json").read_text())
    del manifest["portfolio"]  # not recorded then: the config's explicit top_k is what it ran with
    (old / "manifest.json").write_text(json.dumps(manifest))
    config = (saved_run / "config.toml").read_text()
    (old / "config.toml").write_text(config.replace("top_k = 0\n", ""))  # older still: no top_k at all
    result = load_universe_run(old)
    assert result.costs.empty and result.trades.empty and result.config.portfolio.top_k == 2
    html = render_universe(result)
    assert 'id="costs"' not in html and 'id="trades"' not in html and 'href="#costs"' not in html
    assert "long the 2 tickers with the highest prediction" in html
    assert "xs_ holds the top 2 of 3 tickers (portfolio.top_k = 2)." in html


def test_an_old_universe_whose_top_k_held_every_ticker_gets_no_verdict_per_xs_row(saved_run, tmp_path):
    old = tmp_path / "covering"
    old.mkdir()
    for name in ("metrics.json", "returns.parquet", "weights.parquet"):
        (old / name).write_bytes((saved_run / name).read_bytes())
    manifest = json.loads((saved_run / "manifest.json").read_text())
    del manifest["portfolio"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    config = (saved_run / "config.toml").read_text()
    (old / "config.toml").write_text(config.replace("top_k = 0\n", f"top_k = {N_TICKERS}\n"))  # what it ran with
    html = render_universe(load_universe_run(old))
    metrics = json.loads((saved_run / "metrics.json").read_text())
    for name in metrics:
        said = f'<p class="verdict">{name}: ' in html
        assert said == (name.startswith("ew_") and name != EW_BENCHMARK), name  # the ew_ rows keep theirs
