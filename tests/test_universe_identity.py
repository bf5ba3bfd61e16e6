"""Universes keep their identity: ``--resume`` refuses a ticker list edited since the run started,
``xs_`` strategies that could rank nothing (tickers whose days never overlap) are left out with a
note, and portfolios over a 7-day and a 5-day ticker annualise on their joint calendar, and say so.

All through ``lstmbt run``, with linear models on small synthetic CSVs (one per ticker, or one long
CSV); the local pool runs in this process (one core's worth of workers).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import LINEAR_VALUES, set_args

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::lstmbt.models.threads.ContentionWarning")]

#: a linear classification run on 400-600 bars per ticker
VALUES = {**LINEAR_VALUES, "target.task": "classification", "split.min_train": 150, "split.step": 100}


def walk(days: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    """OHLCV bars (lower-case columns, a ``date`` column) of a random walk on ``days``."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(3e-4, 0.012, len(days))))
    opens = close * np.exp(rng.normal(0, 0.003, len(days)))
    return pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "open": opens, "high": np.maximum(opens, close) * 1.004,
                         "low": np.minimum(opens, close) * 0.996, "close": close,
                         "volume": rng.integers(1_000, 5_000, len(days)).astype(float)})


def long_csv(path: Path, tickers: dict[str, pd.DatetimeIndex]) -> Path:
    frames = [walk(days, seed).assign(symbol=name) for seed, (name, days) in enumerate(tickers.items())]
    pd.concat(frames).to_csv(path, index=False)
    return path


def run_long(run_cli, folder: Path, tickers: dict[str, pd.DatetimeIndex]) -> tuple[Path, str, dict]:
    """The universe of ``tickers`` (one long CSV) through ``lstmbt run``: (run directory, stdout, manifest)."""
    out = folder / "run"
    printed, _ = _run(run_cli, f"csv:{long_csv(folder / 'prices.csv', tickers)}", out)
    return out, printed, json.loads((out / "manifest.json").read_text())


@pytest.fixture
def one_core(monkeypatch) -> None:
    monkeypatch.setattr("lstmbt.backtest.campaign.executors._cores", lambda: 1)


def _run(run_cli, source: str, out: Path) -> tuple[str, str]:
    code, printed, err = run_cli(["run", "--source", source, *set_args(VALUES), "--out", str(out)])
    assert code == 0, err
    return printed, err


# --------------------------------------------------------------------------- resume


def test_resume_refuses_a_universe_whose_ticker_list_changed(tmp_path, monkeypatch, one_core, run_cli):
    import lstmbt.backtest.universe.running as universe

    for seed, name in enumerate(("AAA", "BBB", "CCC", "DDD")):
        walk(pd.bdate_range("2015-01-01", periods=400), seed).to_csv(tmp_path / f"{name}.csv", index=False)
    listing, out = tmp_path / "tickers.txt", tmp_path / "run"
    listing.write_text("csv:AAA.csv\ncsv:BBB.csv\ncsv:CCC.csv\n")
    real = universe._run_ticker
    monkeypatch.setattr(universe, "_run_ticker", lambda job: real(job) if job[0].data.source.endswith("AAA.csv") else (
        _ for _ in ()).throw(KeyboardInterrupt))
    code, _, err = run_cli(["run", "--source", f"list:{listing}", *set_args(VALUES), "--out", str(out)])
    assert code == 130 and err.strip().splitlines()[-1].startswith("interrupted: 1 of 3 tickers saved")
    partial = tmp_path / ".run.partial"
    kept = {p: p.read_bytes() for p in sorted(partial.rglob("*")) if p.is_file() and p.name != "lock"}

    listing.write_text("csv:AAA.csv\ncsv:DDD.csv\ncsv:BBB.csv\n")  # CCC swapped for DDD
    monkeypatch.setattr(universe, "_run_ticker", lambda job: pytest.fail("trained a ticker of another universe"))
    code, printed, err = run_cli(["run", "--resume", str(out)])
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in printed + err
    assert err.strip() == ("error: the universe's tickers changed since the interrupted run started (3 tickers: AAA, "
                           "BBB, CCC): added DDD; removed CCC; restore the list it started with and resume, or start "
                           "a new run (another --out)")
    assert not out.exists()
    assert {p: p.read_bytes() for p in sorted(partial.rglob("*")) if p.is_file() and p.name != "lock"} == kept

    listing.write_text("csv:CCC.csv\ncsv:AAA.csv\ncsv:BBB.csv\n")  # the same tickers, in another order, resume
    monkeypatch.setattr(universe, "_run_ticker", real)
    code, _, err = run_cli(["run", "--resume", str(out)])
    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text())["universe"] == ["CCC", "AAA", "BBB"]


# --------------------------------------------------------------------------- xs_ that cannot rank


def test_ranking_days_need_more_tickers_than_are_held():
    from lstmbt.strategies.cross_section import ranking_days

    counts = np.array([0, 1, 2, 3, 4])
    assert ranking_days(counts, 1).tolist() == [False, False, True, True, True]
    assert ranking_days(counts, 2).tolist() == [False, False, False, True, True]
    assert ranking_days(counts, 1, 1).tolist() == [False, False, True, True, True]  # who goes short is a choice


def test_xs_strategies_of_tickers_that_never_overlap_are_left_out(tmp_path, one_core, run_cli):
    out, printed, manifest = run_long(run_cli, tmp_path, {"EARLY": pd.bdate_range("2015-01-01", periods=420),
                                                          "LATE": pd.bdate_range("2017-01-02", periods=420)})
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["ew_logistic_classification", "ew_buy_and_hold"]  # no xs_ row, no verdict for one
    assert manifest["portfolio"]["ranking_days"] == 0 and manifest["portfolio"]["most_active"] == 1
    note = ("xs_ strategies left out: at most 1 ticker is active on any decision day (the tickers' out-of-sample days "
            "never overlap), and ranking needs more than portfolio.top_k = 1, so each would only repeat "
            "ew_buy_and_hold with a verdict and a family-wise slot of its own; the ew_ strategies and every ticker's "
            "own run remain.")
    assert note in manifest["warnings"] and f"note: {note}" in printed.splitlines()
    assert "No xs_ strategies: xs_ would hold the top 1 of 2 tickers, but no decision day has more active tickers " \
           "than that to rank (see the notes)." in printed
    assert "xs_logistic" not in (out / "report.html").read_text()
    weights = pd.read_parquet(out / "weights.parquet")
    assert set(weights["strategy"]) == set(metrics)


# --------------------------------------------------------------------------- mixed calendars


def test_portfolios_over_a_7_day_and_a_5_day_ticker_annualise_on_their_joint_calendar(tmp_path, one_core, run_cli):
    out, printed, manifest = run_long(run_cli, tmp_path, {"COIN": pd.date_range("2015-01-01", periods=600),
                                                          "STOCK": pd.bdate_range("2015-01-01", periods=430)})
    assert manifest["periods_per_year"] == 365
    returns = pd.read_parquet(out / "returns.parquet")
    days = pd.DatetimeIndex(returns.index)
    assert days.day_of_week.isin([5, 6]).any() and len(days) / ((days[-1] - days[0]).days / 365.25) > 350
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("ew_buy_and_hold", "xs_logistic_classification"):  # recomputed by hand on 365 bars a year
        r = returns[name].to_numpy()
        assert metrics[name]["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365), rel=1e-12)
        years = len(r) / 365
        assert metrics[name]["cagr"] == pytest.approx(np.prod(1 + r) ** (1 / years) - 1, rel=1e-12)
    note = next(w for w in manifest["warnings"] if w.startswith("The portfolios annualise on their joint calendar"))
    assert "come to about 365 a year (a 7-day calendar)" in note and "use 365 bars a year" in note
    assert f"note: {note}" in printed.splitlines() and "joint calendar" in (out / "report.html").read_text()
    coin = json.loads((out / "tickers" / "COIN" / "manifest.json").read_text())
    assert coin["periods_per_year"] == 365  # the ticker's own run: its own 7-day calendar, and says so
    assert any(w.startswith("Annualised with 365 bars a year") for w in coin["warnings"])
