"""Universes: multi-ticker sources, per-ticker runs, the equal-weight and top-k portfolios.

The universes are synthetic random walks written as one long-format CSV: one ticker starts late
and one ends early, so survivorship is tested on real runs. Portfolio mechanics are checked by
hand on tiny frames; the end-to-end runs use tiny models (linear ones where the model does not
matter). The 10-ticker acceptance run under both executors is marked slow.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.config import BacktestConfig, DataConfig, PortfolioConfig, RunConfig
from lstmbt.backtest.data import load_prices
from lstmbt.backtest.errors import DataError
from lstmbt.backtest.campaign.executors import make_executor
from lstmbt.backtest.rundir import RUN_FILES, load_run
from lstmbt.backtest.portfolio import lagged_orders, run_backtest, run_group_backtest
from lstmbt.backtest.universe.running import EW_BENCHMARK, run_universe
from lstmbt.backtest.sources import expand_source
from lstmbt.backtest.universe.io import UNIVERSE_FILES
from helpers import LINEAR_VALUES, TINY, call_main
from lstmbt.strategies.cross_section import equal_weights, life_panel, top_k_weights

NO_COSTS = BacktestConfig(fee_rate=0.0, slippage=0.0)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- synthetic data


def random_walks(n_tickers: int, n_days: int, seed: int = 0) -> pd.DataFrame:
    """Long-format OHLCV (date, symbol, open, high, low, close, volume) of ``n_tickers`` random walks
    on business days from 2015-01-01; T01 starts 130 days late and T02 ends 100 days early."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_tickers):
        days = pd.bdate_range("2015-01-01", periods=n_days)
        if i == 1:
            days = days[130:]
        elif i == 2:
            days = days[:-100]
        n = len(days)
        close = 100 * np.exp(np.cumsum(rng.normal(rng.uniform(-3e-4, 8e-4), rng.uniform(0.008, 0.02), n)))
        opens = close * np.exp(rng.normal(0, 0.003, n))
        frames.append(pd.DataFrame({
            "date": days.strftime("%Y-%m-%d"), "symbol": f"T{i:02d}", "open": opens,
            "high": np.maximum(opens, close) * 1.004, "low": np.minimum(opens, close) * 0.996, "close": close,
            "volume": rng.integers(1_000, 5_000, n).astype(float)}))
    return pd.concat(frames).sort_values(["date", "symbol"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def universe_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("universe") / "universe.csv"
    random_walks(4, 640).to_csv(path, index=False)
    return path


def _bars(opens: list[float], closes: list[float], index: pd.DatetimeIndex) -> pd.DataFrame:
    opens, closes = np.asarray(opens, float), np.asarray(closes, float)
    return pd.DataFrame({"Open": opens, "High": np.maximum(opens, closes), "Low": np.minimum(opens, closes),
                         "Close": closes, "Volume": 1.0}, index=index)


def _weights(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, axis=1)


# --------------------------------------------------------------------------- sources


def test_sources_naming_several_tickers(tmp_path, universe_csv):
    base = DataConfig(source="fdr:005930, 000660,035420", start="2020-01-01")
    tickers = expand_source(base)
    assert [t.name for t in tickers] == ["005930", "000660", "035420"]
    assert [t.data.source for t in tickers] == ["fdr:005930", "fdr:000660", "fdr:035420"]
    assert all(t.data.start == "2020-01-01" for t in tickers)
    assert [t.name for t in expand_source(DataConfig(source="sample:sp500,nasdaq"))] == ["sp500", "nasdaq"]
    long = expand_source(DataConfig(source=f"csv:{universe_csv}"))
    assert [(t.name, t.data.symbol) for t in long] == [(f"T0{i}", f"T0{i}") for i in range(4)]

    (tmp_path / "sub").mkdir()
    shutil.copy(universe_csv, tmp_path / "sub" / "u.csv")
    listing = tmp_path / "universe.txt"
    listing.write_text("# my universe\n005930   # Samsung, a bare FinanceDataReader ticker\n\nsample:nasdaq\n"
                       "csv:sub/u.csv\n")
    names = [t.name for t in expand_source(DataConfig(source=f"list:{listing}"))]
    assert names == ["005930", "nasdaq", "T00", "T01", "T02", "T03"]  # csv paths relative to the list file


def test_one_ticker_sources_stay_single_runs(tmp_path, universe_csv):
    for data in (DataConfig(source="fdr:005930"), DataConfig(source=f"csv:{universe_csv}", symbol="T01"),
                 DataConfig(source=f"csv:{tmp_path / 'missing.csv'}")):
        assert [t.data for t in expand_source(data)] == [data]  # unchanged: the single-run behaviour
    one = tmp_path / "one.txt"
    one.write_text("sample:nasdaq  # the only line\n")
    assert [t.data.source for t in expand_source(DataConfig(source=f"list:{one}"))] == ["sample:nasdaq"]


def test_load_prices_refuses_a_universe_with_one_line():
    with pytest.raises(DataError, match=r"names several tickers, which only `lstmbt run` takes.*sample:sp500"):
        load_prices(DataConfig(source="sample:sp500,nasdaq"))


# --------------------------------------------------------------------------- weights


def test_life_panel_is_empty_before_a_ticker_starts_and_after_it_ends():
    days = pd.bdate_range("2021-01-04", periods=6)
    late = pd.Series([0.7, 0.8], index=days[[2, 4]])  # day 3 missing: a holiday of its market
    panel = life_panel({"A": pd.Series(1.0, index=days), "B": late}, days)
    assert panel["B"].isna().tolist() == [True, True, False, False, False, True]
    assert panel["B"].iloc[3] == 0.7  # its last decision carries over its own holiday
    weights = equal_weights(panel)
    np.testing.assert_allclose(weights["A"], [1, 1, 0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(weights["B"], [0, 0, 0.35, 0.35, 0.4, 0])


def test_top_k_weights_by_hand():
    scores = pd.DataFrame({"A": [0.9, 0.2, np.nan, 0.5], "B": [0.1, 0.8, 0.6, 0.5], "C": [0.5, 0.4, 0.7, 0.5],
                           "D": [0.3, np.nan, np.nan, 0.5]})
    long_only = top_k_weights(scores, top_k=2)
    np.testing.assert_allclose(long_only.to_numpy(), [[0.5, 0, 0.5, 0], [0, 0.5, 0.5, 0], [0, 0.5, 0.5, 0],
                                                      [0.5, 0.5, 0, 0]])  # ties go to the earlier column
    long_short = top_k_weights(scores, top_k=1, bottom_k=1)
    np.testing.assert_allclose(long_short.to_numpy(), [[0.5, -0.5, 0, 0], [-0.5, 0.5, 0, 0], [0, -0.5, 0.5, 0],
                                                       [0.5, 0, 0, -0.5]])
    thin = top_k_weights(scores, top_k=2, bottom_k=1)
    assert (thin.iloc[2] == 0).all()  # two tickers cannot fill three slots: flat, not a guess
    assert np.isclose(thin.abs().sum(axis=1).iloc[0], 1.0)


# --------------------------------------------------------------------------- group backtest


def test_group_backtest_of_one_ticker_equals_the_single_ticker_backtest():
    days = pd.bdate_range("2020-01-01", periods=12)
    rng = np.random.default_rng(3)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
    prices = _bars(close * np.exp(rng.normal(0, 0.005, len(days))), close, days)
    positions = pd.DataFrame({"s": [1, 1, 0, 0, 1, -1, -1, 0.5, 0.5, 1, 0]}, index=days[:-1], dtype=float)
    cfg = BacktestConfig(fee_rate=0.002, slippage=0.001)
    single = run_backtest(prices, positions, cfg)
    group = run_group_backtest({"X": prices}, _weights({"s": positions.rename(columns={"s": "X"})}), cfg)
    np.testing.assert_allclose(group.returns["s"], single.returns["s"], rtol=0, atol=1e-12)
    assert math.isclose(group.fees_paid["s"], single.fees_paid["s"], rel_tol=1e-12)
    assert math.isclose(group.slippage_paid["s"], single.slippage_paid["s"], rel_tol=1e-12)


def test_equal_weight_buy_and_hold_drifts_by_hand_and_pays_for_rebalancing():
    days = pd.bdate_range("2020-01-01", periods=6)
    a = _bars([10, 11, 12, 13, 12, 11], [10.5, 11.5, 12.5, 12.5, 11.5, 11.5], days)
    b = _bars([20, 21, 19, 18, 20, 22], [20.5, 19.5, 18.5, 19.5, 21.5, 21.5], days)
    half = pd.DataFrame({"A": 0.5, "B": 0.5}, index=days[:-1])
    result = run_group_backtest({"A": a, "B": b}, _weights({"ew": half}), NO_COSTS)
    value = 0.5 / 11 * a["Close"] + 0.5 / 21 * b["Close"]  # bought at day 1's open, then left to drift
    expected = value.iloc[1:].pct_change().fillna(value.iloc[1] - 1.0)
    np.testing.assert_allclose(result.returns["ew"], expected, rtol=0, atol=1e-12)
    assert result.n_orders["ew"] == 2  # no rebalancing while the targets stand still
    costly = run_group_backtest({"A": a, "B": b}, _weights({"ew": half}), BacktestConfig(fee_rate=0.01, slippage=0))
    assert 0.0099 < costly.fees_paid["ew"] <= 0.01  # 1% of the ~1.0 bought


def test_a_ticker_whose_prices_end_is_sold_at_its_last_close_and_never_traded_before_it_starts():
    days = pd.bdate_range("2020-01-01", periods=7)
    a = _bars([10, 11, 12, 13, 12, 11, 12], [10.5, 11.5, 12.5, 12.5, 11.5, 11.5, 12.5], days)
    b = _bars([20, 21, 19, 18], [20.5, 19.5, 18.5, 19.5], days[:4])  # ends on day 3
    c = _bars([30, 31, 32], [30.5, 31.5, 32.5], days[4:])  # starts on day 4
    weights = pd.DataFrame({"A": [0.5, 0.5, 0.5, 1, 1, 1], "B": [0.5, 0.5, 0.5, 0, 0, 0], "C": 0.0}, index=days[:-1])
    result = run_group_backtest({"A": a, "B": b, "C": c}, _weights({"s": weights}), NO_COSTS)
    shares_a, shares_b = 0.5 / 11, 0.5 / 21  # bought at day 1's open
    shares_a_4 = (shares_a * 12 + shares_b * 19.5) / 12  # day 4: B sold at its last close, then all in A
    equity = [shares_a * 11.5 + shares_b * 19.5, shares_a * 12.5 + shares_b * 18.5, shares_a * 12.5 + shares_b * 19.5,
              shares_a_4 * 11.5, shares_a_4 * 11.5, shares_a_4 * 12.5]
    expected = pd.Series(equity, index=days[1:]).pct_change().fillna(equity[0] - 1.0)
    np.testing.assert_allclose(result.returns["s"], expected, rtol=0, atol=1e-12)
    assert result.n_orders["s"] == 4  # buy A, buy B, sell B at its last close, top up A: none in C


def test_lagged_orders_wait_for_the_next_bar_a_ticker_can_trade_on():
    days = pd.bdate_range("2020-01-01", periods=5)
    targets = pd.DataFrame({"X": [1.0, 1.0, 0.0, 0.0]}, index=days[:-1])
    tradeable = pd.DataFrame({"X": [True, True, True, False, True]}, index=days)
    orders = lagged_orders(targets, days, tradeable)  # day 3's decision waits out day 4 (no bar) for day 5
    np.testing.assert_array_equal(orders["X"].to_numpy(), [np.nan, 1.0, np.nan, np.nan, 0.0])


# --------------------------------------------------------------------------- universe runs


def _linear_universe(source: str, **values) -> tuple:
    config = RunConfig().with_values({"data.source": source, **LINEAR_VALUES, **values})
    tickers = expand_source(config.data)
    return run_universe(config, tickers, make_executor("local", workers=1)), tickers


#: continuous positions and a long-short ranking, so a leak of any size would show in the weights
SENSITIVE = {"strategy.sizing": "confidence", "strategy.long_short": True, "strategy.confidence_gain": 2.0,
             "portfolio.top_k": 1, "portfolio.bottom_k": 1}


@pytest.fixture(scope="module")
def linear_run(universe_csv):
    return _linear_universe(f"csv:{universe_csv}", **SENSITIVE)[0]


def test_no_ticker_is_weighted_outside_its_own_data(linear_run, universe_csv):
    raw = pd.read_csv(universe_csv, parse_dates=["date"])
    weights = linear_run.weights
    assert set(weights["strategy"]) == set(linear_run.metrics) and list(linear_run.metrics)[-1] == EW_BENCHMARK
    for entry in linear_run.manifest["tickers"]:
        first, last = (pd.Timestamp(entry["out_of_sample"][k]) for k in ("first_date", "last_date"))
        bars = raw.loc[raw["symbol"] == entry["name"], "date"]
        assert bars.min() < first and last < bars.max()  # decisions need history before and a bar after
        own = weights[weights["ticker"] == entry["name"]]
        outside = own[(own["date"] < first) | (own["date"] > last)]
        assert (outside["weight"] == 0).all()
    late = pd.Timestamp(linear_run.manifest["tickers"][1]["out_of_sample"]["first_date"])
    early = pd.Timestamp(linear_run.manifest["tickers"][2]["out_of_sample"]["last_date"])
    bench = weights[weights["strategy"] == EW_BENCHMARK].pivot(index="date", columns="ticker", values="weight")
    assert late > bench.index[0] and early < bench.index[-1]  # the run covers days without T01 / T02
    held = (bench != 0).sum(axis=1)
    np.testing.assert_allclose(bench.sum(axis=1), 1.0)  # 1 / (active tickers) each
    assert held[bench.index < late].max() == 3 and held[bench.index > early].max() == 3 and held.max() == 4


def test_perturbing_one_tickers_future_leaves_every_earlier_weight_unchanged(linear_run, universe_csv, tmp_path):
    raw = pd.read_csv(universe_csv, dtype={"symbol": str})
    cut = sorted(linear_run.weights["date"].unique())[200]
    later = (raw["symbol"] == "T03") & (pd.to_datetime(raw["date"]) > cut)
    factor = 1.5 * np.exp(np.random.default_rng(9).normal(0, 0.05, int(later.sum())))  # a jump, then noise
    for column in ("open", "high", "low", "close"):
        raw.loc[later, column] *= factor
    path = tmp_path / "perturbed.csv"
    raw.to_csv(path, index=False)
    # the 1.5x jump is a one-day move beyond the default data.max_move (0.4), which would refuse it
    perturbed = _linear_universe(f"csv:{path}", **SENSITIVE, **{"data.max_move": 2.0})[0]
    before, after = (r.weights[r.weights["date"] <= cut].reset_index(drop=True) for r in (linear_run, perturbed))
    pd.testing.assert_frame_equal(before, after)
    pd.testing.assert_frame_equal(linear_run.returns.loc[:cut], perturbed.returns.loc[:cut])
    assert not linear_run.returns.loc[cut:].equals(perturbed.returns.loc[cut:])  # the perturbation did land


def test_pooled_models_feed_the_same_portfolios(universe_csv):
    pytest.importorskip("lstmbt.backtest.universe.pooled")
    pooled, _ = _linear_universe(f"csv:{universe_csv}", **{"model.pooled": True, "target.task": "classification"})
    assert pooled.manifest["executor"] == "pooled"
    assert set(pooled.metrics) == {"ew_logistic_classification", "xs_logistic_classification", EW_BENCHMARK}


# --------------------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def cli_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "u3.csv"
    random_walks(3, 560, seed=1).to_csv(path, index=False)
    return path


def _cli_universe(csv: Path, executor: str) -> Path:
    """A tiny LSTM universe of 3 tickers through the CLI. The local pool runs in this process here
    (one core's worth of workers, no spawn start-up); the slow test below runs the real pool."""
    out = csv.parent / "runs" / executor
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lstmbt.backtest.campaign.executors._cores", lambda: 1)
        code, printed, err = call_main(["run", "--source", f"csv:{csv}", "--target", "classification", *TINY,
                                        "--set", "model.linear=false", "--executor", executor, "--out", str(out)])
    assert code == 0, err
    assert "xs_ holds the top 1 of 3 tickers: portfolio.top_k = 0, the default" in printed  # a third of 3
    return out


@pytest.fixture(scope="module")
def local_run(cli_csv) -> Path:
    return _cli_universe(cli_csv, "local")


@pytest.fixture(scope="module")
def ray_run(cli_csv) -> Path:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        return _cli_universe(cli_csv, "ray")
    finally:
        ray.shutdown()


def test_universe_run_directory(local_run):
    local = local_run
    assert sorted(p.name for p in local.iterdir()) == sorted([*UNIVERSE_FILES, "tickers"])
    manifest = json.loads((local / "manifest.json").read_text())
    assert manifest["universe"] == ["T00", "T01", "T02"] and manifest["executor"] == "local"
    assert manifest["data_checks"] == []  # random walks with their own opens: nothing to flag
    assert manifest["out_of_sample"]["days"] == len(pd.read_parquet(local / "returns.parquet"))
    metrics = json.loads((local / "metrics.json").read_text())
    assert list(metrics) == ["ew_lstm_classification", "xs_lstm_classification", EW_BENCHMARK]
    for name in list(metrics)[:2]:  # the significance figure beside each claim, against EW buy-and-hold
        assert metrics[name]["sharpe_diff_ci_low"] < metrics[name]["sharpe_diff_ci_high"]
    assert "sharpe_diff_ci_low" not in metrics[EW_BENCHMARK]
    for name in manifest["universe"]:
        assert sorted(p.name for p in (local / "tickers" / name).iterdir()) == sorted(RUN_FILES)


def test_ray_and_local_executors_agree_bit_for_bit(local_run, ray_run):
    local, ray = local_run, ray_run
    manifest = json.loads((local / "manifest.json").read_text())
    assert json.loads((ray / "manifest.json").read_text())["executor"] == "ray"
    assert (ray / "metrics.json").read_text() == (local / "metrics.json").read_text()
    for name in manifest["universe"]:
        pd.testing.assert_frame_equal(pd.read_parquet(ray / "tickers" / name / "predictions.parquet"),
                                      pd.read_parquet(local / "tickers" / name / "predictions.parquet"))
        assert (ray / "tickers" / name / "metrics.json").read_text() == \
            (local / "tickers" / name / "metrics.json").read_text()


def test_a_universe_whose_weights_lost_a_column_is_refused_in_one_line(local_run, tmp_path):
    run = tmp_path / "uni"
    shutil.copytree(local_run, run)
    pd.read_parquet(run / "weights.parquet").drop(columns="strategy").to_parquet(run / "weights.parquet")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, out, err = call_main(["report", str(run)])
    assert code == 2 and out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "weights.parquet" in err and "no strategy column" in err, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_universe_report_shows_every_metric_and_links_every_ticker(local_run, run_cli):
    local = local_run
    html = (local / "report.html").read_text()
    metrics = json.loads((local / "metrics.json").read_text())
    for strategy, entry in metrics.items():
        assert f">{strategy}<" in html
        for key in entry:
            assert f">{key}<" in html, key
    for name in ("T00", "T01", "T02"):
        assert f'href="tickers/{name}/report.html"' in html
    assert "Sharpe &minus; ew_buy_and_hold, 95% CI" in html
    # each portfolio's verdict rests on its family-wise interval and is worded as the single-ticker scorecard
    from lstmbt.backtest.relative import verdict
    from lstmbt.reports.scorecard import VERDICTS

    for strategy, entry in metrics.items():
        if strategy == "ew_buy_and_hold":
            continue
        assert entry["verdict"] == verdict(entry["verdict_ci_low"], entry["verdict_ci_high"])
        assert entry["verdict_ci_low"] <= entry["sharpe_diff_ci_low"] and entry["verdict_ci_high"] >= entry["sharpe_diff_ci_high"]
        words = VERDICTS[entry["verdict"]][0].replace("buy-and-hold", "ew_buy_and_hold")
        assert f"{strategy}: {words}." in html.replace("&amp;", "&")
    # both kinds of run directory re-render, and the universe is listed by the registry
    for target in (local, local / "tickers" / "T01"):
        code, out, err = run_cli(["report", str(target)])
        assert code == 0 and "report:" in out, err
    assert load_run(local / "tickers" / "T01").config.data.symbol == "T01"
    code, out, err = run_cli(["compare", str(local), "--out", str(local.parent / "c.html")])
    assert code == 2 and "is a universe run; compare its tickers' run directories" in err
    code, out, err = run_cli(["runs", "list", "--root", str(local.parent)])
    assert code == 0 and "(universe of 3 tickers)" in out and "xs_lstm_classification" in out, out + err


# --------------------------------------------------------------------------- bad input


def _refused(argv: list[str], words: list[str], tmp_path: Path, run_cli) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    code, out, err = run_cli(["run", *argv, *TINY, "--out", str(parent / "out")])
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), (code, out, err)
    assert "Traceback" not in err + out
    for word in words:
        assert word in err, (word, err)
    assert list(parent.iterdir()) == []  # no run directory, no temp directory


def _fake_fdr(monkeypatch, known: set[str], cache: Path) -> None:
    """FinanceDataReader that knows only ``known`` (like the real one, it raises for other codes)."""
    def reader(ticker, start, end):
        if ticker not in known:
            raise ValueError(f"{ticker} not found")
        frame = random_walks(1, 400).drop(columns=["symbol"])
        return frame.set_index(pd.DatetimeIndex(frame.pop("date"), name="Date"))

    monkeypatch.setattr("lstmbt.backtest.data._fdr_datareader", lambda: reader)
    monkeypatch.setenv("LSTMBT_CACHE_DIR", str(cache))


CASES = ("unknown_sample", "unknown_fdr_in_list", "empty_list", "duplicate", "top_k", "top_k_covers",
         "symbol_with_universe", "unknown_executor", "cpcv")


@pytest.mark.parametrize("case", CASES)
def test_bad_universe_input_is_one_line(case, tmp_path, monkeypatch, universe_csv, run_cli):
    listing = tmp_path / "tickers.txt"
    assert case in CASES
    if case == "unknown_sample":
        _refused(["--source", "sample:sp500,dax"], ["ticker dax", "unknown sample 'dax'"], tmp_path, run_cli)
    elif case == "unknown_fdr_in_list":
        _fake_fdr(monkeypatch, {"005930"}, tmp_path / "cache")
        listing.write_text("005930\nfdr:NOPE1  # a typo\n")
        _refused(["--source", f"list:{listing}"], ["ticker NOPE1", "could not read this ticker"], tmp_path,
                 run_cli)
    elif case == "empty_list":
        listing.write_text("# nothing yet\n\n")
        _refused(["--source", f"list:{listing}"], ["names no tickers", "one source"], tmp_path, run_cli)
    elif case == "duplicate":
        _refused(["--source", "fdr:005930,000660,005930"], ["ticker 005930 twice"], tmp_path, run_cli)
    elif case == "top_k":
        _refused(["--source", f"csv:{universe_csv}", "--set", "portfolio.top_k=5"],
                 ["portfolio.top_k = 5", "larger than the universe (4 tickers)", "at most 3"], tmp_path, run_cli)
    elif case == "top_k_covers":  # xs_ would hold every ticker: ew_buy_and_hold again, refused before training
        _refused(["--source", "sample:sp500,nasdaq", "--set", "portfolio.top_k=2"],
                 ["portfolio.top_k = 2 holds every one of the universe's 2 tickers", "at most 1", "or to 0"],
                 tmp_path, run_cli)
    elif case == "symbol_with_universe":
        _refused(["--source", "sample:sp500,nasdaq", "--symbol", "AAA"], ["--symbol AAA", "universe source"],
                 tmp_path, run_cli)
    elif case == "cpcv":
        _refused(["--source", "sample:sp500,nasdaq", "--set", 'split.scheme="cpcv"'],
                 ["split.scheme = 'cpcv' runs one ticker at a time"], tmp_path, run_cli)
    else:
        _refused(["--source", "sample:sp500,nasdaq", "--executor", "dask"], ["--executor 'dask'"], tmp_path,
                 run_cli)


def test_a_bad_ticker_fails_before_any_training(tmp_path, monkeypatch, universe_csv, run_cli):
    raw = pd.read_csv(universe_csv, dtype={"symbol": str})
    raw.loc[raw.index[raw["symbol"] == "T03"][50], "close"] = -1.0
    path = tmp_path / "bad.csv"
    raw.to_csv(path, index=False)
    monkeypatch.setattr("lstmbt.backtest.universe.running._run_ticker", lambda job: pytest.fail("trained before checking"))
    _refused(["--source", f"csv:{path}"], ["ticker T03", "Close has non-positive"], tmp_path, run_cli)


# --------------------------------------------------------------------------- acceptance (slow)


@pytest.mark.slow
def test_ten_tickers_under_both_executors(tmp_path):
    """The acceptance run: 10 random walks of different lengths, per-ticker LSTMs, both targets, the
    real local process pool and Ray; metrics.json and every prediction identical."""
    import subprocess
    import sys

    csv = tmp_path / "u10.csv"
    random_walks(10, 900, seed=2).to_csv(csv, index=False)
    args = ["run", "--source", f"csv:{csv}", "--quick", "--set", "split.min_train=300", "--set", "split.step=126",
            "--set", "train.device=cpu"]
    seconds = {}
    for executor in ("local", "ray"):
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "lstmbt", *args, "--executor", executor,
                               "--out", str(tmp_path / executor)], capture_output=True, text=True, timeout=1800)
        seconds[executor] = time.perf_counter() - started
        assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"10-ticker universe wall time: {seconds}")
    local, ray = tmp_path / "local", tmp_path / "ray"
    assert (local / "metrics.json").read_text() == (ray / "metrics.json").read_text()
    names = json.loads((local / "manifest.json").read_text())["universe"]
    assert len(names) == 10
    for name in names:
        pd.testing.assert_frame_equal(pd.read_parquet(local / "tickers" / name / "predictions.parquet"),
                                      pd.read_parquet(ray / "tickers" / name / "predictions.parquet"))


def test_interrupted_universe_resumes_to_the_uninterrupted_result(cli_csv, local_run, monkeypatch, run_cli):
    import lstmbt.backtest.universe.running as universe

    out = cli_csv.parent / "runs" / "resumed"
    argv = ["--source", f"csv:{cli_csv}", "--target", "classification", *TINY, "--set", "model.linear=false",
            "--out", str(out)]
    real, trained = universe._run_ticker, []

    def stop_at_the_second(job):
        if trained:
            raise KeyboardInterrupt
        trained.append(job[0].data.symbol)
        return real(job)

    monkeypatch.setattr("lstmbt.backtest.campaign.executors._cores", lambda: 1)
    monkeypatch.setattr(universe, "_run_ticker", stop_at_the_second)
    code, _, err = run_cli(["run", *argv])
    assert code == 130 and err.strip().splitlines()[-1] == \
        f"interrupted: 1 of 3 tickers saved; continue with: lstmbt run --resume {out}"
    assert not out.exists() and trained == ["T00"]

    resumed: list[str] = []
    monkeypatch.setattr(universe, "_run_ticker", lambda job: resumed.append(job[0].data.symbol) or real(job))
    code, stdout, err = run_cli(["run", "--resume", str(out)])
    assert code == 0, err
    assert resumed == ["T01", "T02"]  # the saved ticker is not retrained
    assert (out / "metrics.json").read_text() == (local_run / "metrics.json").read_text()
    pd.testing.assert_frame_equal(pd.read_parquet(out / "returns.parquet"), pd.read_parquet(local_run / "returns.parquet"))
    assert sorted(p.name for p in (out / "tickers").iterdir()) == ["T00", "T01", "T02"]
    assert not any(p.name.endswith(".partial") for p in out.parent.iterdir())


def test_resume_refuses_a_ticker_whose_prices_changed(cli_csv, tmp_path, monkeypatch, run_cli):
    import lstmbt.backtest.universe.running as universe

    csv, out = tmp_path / "u3.csv", tmp_path / "run"
    csv.write_bytes(cli_csv.read_bytes())
    real = universe._run_ticker
    monkeypatch.setattr("lstmbt.backtest.campaign.executors._cores", lambda: 1)
    monkeypatch.setattr(universe, "_run_ticker", lambda job: real(job) if job[0].data.symbol == "T00" else (
        _ for _ in ()).throw(KeyboardInterrupt))
    argv = ["run", "--source", f"csv:{csv}", "--target", "classification", *TINY, "--set", "model.linear=false",
            "--out", str(out)]
    assert run_cli(argv)[0] == 130
    frame = pd.read_csv(csv)
    frame.loc[frame.index[frame["symbol"] == "T00"][5], "close"] *= 1.01
    frame.to_csv(csv, index=False)
    code, _, err = run_cli(["run", "--resume", str(out)])
    assert code == 2 and err.strip() == ("error: ticker T00: its prices changed since the interrupted run saved it; "
                                         "start a new run (another --out) instead of --resume")
    assert (tmp_path / ".run.partial" / "tickers" / "T00").is_dir()  # the saved ticker is kept


def test_universe_gathers_every_tickers_data_checks_first_among_its_notes():
    from types import SimpleNamespace

    from lstmbt.backtest.universe.running import universe_data_checks, universe_warnings

    legs = {"AAA": SimpleNamespace(manifest={"data_checks": ["csv:a.csv: Close is unchanged for 6 bars"],
                                             "warnings": ["csv:a.csv: Close is unchanged for 6 bars"]}),
            "BBB": SimpleNamespace(manifest={"data_checks": [], "warnings": []})}
    assert universe_data_checks(legs) == ["ticker AAA: csv:a.csv: Close is unchanged for 6 bars"]
    metrics = {EW_BENCHMARK: {"sharpe": 1.0}}
    notes = universe_warnings(metrics, legs, PortfolioConfig(top_k=1), 300)
    assert notes == ["ticker AAA: csv:a.csv: Close is unchanged for 6 bars"]


def test_ticker_jobs_keep_their_data_checks_without_warning_again(universe_csv):
    """The driver warns once when it loads a ticker; the job that trains it (in a worker process,
    whose warnings would print in Python's own format) only records them in the manifest."""
    import warnings

    from lstmbt.backtest.errors import DataWarning
    from lstmbt.backtest.campaign.sweep import TrainJob, train_trial
    from lstmbt.backtest.universe.running import _run_ticker

    config = RunConfig.resolve(flags={"data.source": f"csv:{universe_csv}", "data.symbol": "T00", **LINEAR_VALUES})
    prices = load_prices(config.data).copy()
    prices.iloc[300:306, :4] = prices["Close"].iloc[300]
    for job in (lambda: _run_ticker((config, prices)), lambda: train_trial(TrainJob(config, prices))):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = job()
        assert [w for w in caught if issubclass(w.category, DataWarning)] == []
        assert any("Close is unchanged for 6 bars" in line and "symbol T00:" in line
                   for line in result.manifest["data_checks"])
