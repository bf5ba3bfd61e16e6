"""Regime labels are known at the decision close; per-regime figures equal hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lstmbt.backtest.errors import DataError
from lstmbt.backtest.regimes import (MIN_INVESTED_DAYS, REGIME_KINDS, REGIME_STATES, TABLE_COLUMNS, VOL_MIN_HISTORY,
                                     VOL_WINDOW, drawdown_labels, expanding_terciles, regime_labels, regime_table,
                                     trailing_volatility, trend_labels)
from lstmbt.backtest import significance as sig
from lstmbt.backtest.relative import family_confidence, family_verdicts
from lstmbt.backtest.significance import sharpe_ci
from lstmbt.reports.sections import regime_sentences

FIRST_VOL_LABEL = VOL_WINDOW + VOL_MIN_HISTORY - 1  # position of the first close with a volatility label


@pytest.fixture(scope="module")
def sp500_close() -> pd.Series:
    from arch.data import sp500

    return sp500.load()["Close"]


# ----------------------------------------------------------------------------------------- causality


@pytest.mark.parametrize("cut", [5, 150, 199, 300, FIRST_VOL_LABEL, FIRST_VOL_LABEL + 1, 1000, 2200, 4500])
def test_labels_up_to_d_do_not_move_when_prices_after_d_change(sp500_close, cut):
    close = sp500_close
    dates = close.index[::2]  # decision days: a subset of the days with closes
    before = regime_labels(close, dates)
    rng = np.random.default_rng(cut)
    wild = close.copy()
    wild.iloc[cut + 1:] *= rng.uniform(0.05, 20.0, len(close) - cut - 1)  # every later close, wildly
    after = regime_labels(wild, dates)
    day = close.index[cut]
    pd.testing.assert_frame_equal(before.loc[:day], after.loc[:day])
    later = (before.loc[day:].iloc[1:] != after.loc[day:].iloc[1:]) & before.loc[day:].iloc[1:].notna()
    assert later[["volatility", "drawdown", "trend"]].to_numpy().any()  # the perturbation did move later labels


def test_labels_of_a_truncated_history_equal_the_full_ones(sp500_close):
    full = regime_labels(sp500_close, sp500_close.index)
    for cut in (400, 2000):
        short = sp500_close.iloc[:cut + 1]
        pd.testing.assert_frame_equal(regime_labels(short, short.index), full.iloc[:cut + 1])


# ------------------------------------------------------------------------------------ volatility


def test_trailing_volatility_is_the_annualised_std_of_the_last_window_log_returns():
    close = np.array([100.0, 101.0, 99.0, 102.0, 102.5, 98.0])
    vol = trailing_volatility(close, window=3)
    log_ret = np.log(close[1:] / close[:-1])
    assert np.isnan(vol[:3]).all()
    for t in range(3, 6):
        window = log_ret[t - 3:t]  # returns into closes t-2, t-1, t
        mean = window.sum() / 3
        hand = math.sqrt(((window - mean) ** 2).sum() / 2) * math.sqrt(252)
        assert vol[t] == pytest.approx(hand, rel=1e-12)


def test_expanding_terciles_by_hand():
    values = np.array([np.nan, 4, 1, 7, 4, 2, 9, 5, 3])
    # cuts (1/3, 2/3 quantiles, linear) of the values so far: t3 {1,4,7} -> (3, 5): 7 high;
    # t4 {1,4,4,7} -> (4, 4): 4 low; t5 {1,2,4,4,7} -> (2.67, 4): 2 low; t6 {..,9} -> (3.33, 5): 9 high;
    # t7 {1,2,4,4,5,7,9} -> (4, 5): 5 mid; t8 {1,2,3,4,4,5,7,9} -> (3.33, 4.67): 3 low.
    # Cut on the full sample instead, t4's 4 would be "mid": the test sees a look-ahead.
    expected = [None, None, None, "high", "low", "low", "high", "mid", "low"]
    assert list(expanding_terciles(values, min_history=3)) == expected


def test_expanding_terciles_equal_a_loop_over_np_quantile():
    rng = np.random.default_rng(3)
    values = np.concatenate([[np.nan] * 5, rng.lognormal(size=400)])
    labels = expanding_terciles(values, min_history=30)
    for t in range(len(values)):
        seen = values[:t + 1][np.isfinite(values[:t + 1])]
        if len(seen) < 30:
            assert labels[t] is None
            continue
        low, high = np.quantile(seen, [1 / 3, 2 / 3])
        assert labels[t] == ("low" if values[t] <= low else "high" if values[t] > high else "mid")


def test_a_permanent_volatility_jump_is_high_from_the_day_after_it():
    rng = np.random.default_rng(0)
    jump = 600
    log_ret = np.concatenate([rng.normal(0, 0.005, jump), rng.normal(0, 0.03, 250)])
    close = pd.Series(100 * np.exp(np.cumsum(np.concatenate([[0.0], log_ret]))),
                      index=pd.bdate_range("2001-01-01", periods=len(log_ret) + 1))
    labels = regime_labels(close, close.index)["volatility"]
    assert labels.iloc[:FIRST_VOL_LABEL].isna().all() and labels.iloc[FIRST_VOL_LABEL:].notna().all()
    assert set(labels.iloc[FIRST_VOL_LABEL:jump]) == {"low", "mid", "high"}  # calm days spread over all three
    # close ``jump + 1`` is the first after a wide return: high at once, and for the rest of the series
    assert (labels.iloc[jump + 1:] == "high").all()


# ----------------------------------------------------------------------------------- drawdown, trend


def test_drawdown_and_trend_labels_by_hand():
    close = np.array([100.0, 110, 100, 98, 105, 120, 107, 109])
    # running peak 100 110 110 110 110 120 120 120; below it by 0, 0, 9.1%, 10.9%, 4.5%, 0, 10.8%, 9.2%
    assert list(drawdown_labels(close)) == ["shallow", "shallow", "shallow", "deep", "shallow", "shallow", "deep",
                                            "shallow"]
    # 3-day means from t2: 103.3, 102.7, 101, 107.7, 110.7, 112
    assert list(trend_labels(close, window=3)) == [None, None, "below", "below", "above", "above", "below", "below"]


def test_regime_labels_columns_trend_warm_up_and_year():
    index = pd.bdate_range("2010-12-01", periods=260)
    close = pd.Series(np.linspace(100, 200, 260), index=index)  # always rising: above its average
    labels = regime_labels(close, index[150:])
    assert list(labels.columns) == ["volatility", "drawdown", "trend", "year"] == list(REGIME_KINDS)
    assert labels.index.equals(index[150:])
    assert labels["trend"].loc[:index[198]].isna().all() and (labels["trend"].loc[index[199]:] == "above").all()
    assert (labels["drawdown"] == "shallow").all() and labels["volatility"].isna().all()
    assert labels["year"].tolist() == [str(d.year) for d in index[150:]]
    for kind, states in REGIME_STATES.items():
        assert set(labels[kind].dropna()) <= set(states) or not states


def test_regime_labels_refuse_a_decision_day_without_a_close():
    close = pd.Series([1.0, 2.0, 3.0], index=pd.bdate_range("2020-01-01", periods=3))
    with pytest.raises(DataError, match="not a day of the closes"):
        regime_labels(close, pd.DatetimeIndex(["2020-02-03"]))
    with pytest.raises(DataError, match="positive, finite"):
        regime_labels(close.where(close > 1), close.index)


# ------------------------------------------------------------------------------------------- table


def _fixture(n: int = 300):
    """Returns, calls and labels with a known split: ``timer`` holds the market on "high" days only."""
    rng = np.random.default_rng(7)
    index = pd.bdate_range("2019-06-03", periods=n)
    bench = rng.normal(0.0004, 0.01, n)
    vol = np.array(["low", "mid", "high"], dtype=object)[rng.integers(0, 3, n)]
    high = vol == "high"
    returns = pd.DataFrame({"timer": np.where(high, bench, 0.0), "plus_one": np.where(high, 0.01, 0.0),
                            "noise": rng.normal(0, 0.01, n), "buy_and_hold": bench}, index=index)
    dd = np.where(np.arange(n) < n - 7, "shallow", "deep").astype(object)  # 7 deep days: under min_days
    labels = pd.DataFrame({"volatility": vol, "drawdown": dd, "year": index.year.astype(str)}, index=index)
    labels.iloc[:4, 0] = None  # four unlabelled days belong to no volatility state
    real_up = bench > 0
    calls = {"timer": high | real_up & (rng.random(n) < 0.5), "noise": rng.random(n) < 0.5, "plus_one": None}
    return returns, calls, real_up, labels


def _hand_sharpe(r):
    return r.mean() / r.std(ddof=1) * math.sqrt(252)


def _hand_wilson(hits, n, z=1.959963984540054):
    p = hits / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def test_regime_table_equals_hand_computations():
    returns, calls, real_up, labels = _fixture()
    table = regime_table(returns, calls, real_up, labels, seed=3, n_boot=200)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert len(table) == 4 * (3 + 2 + 2)  # strategies x (vol states + drawdown states + two years)
    row = table.set_index(["strategy", "kind", "state"])
    for state in ("low", "mid", "high"):
        mask = (labels["volatility"] == state).to_numpy()
        bench = returns["buy_and_hold"].to_numpy()[mask]
        for name in ("timer", "noise", "buy_and_hold"):
            r, got = returns[name].to_numpy()[mask], row.loc[(name, "volatility", state)]
            assert got["n_days"] == mask.sum()
            if not (name == "timer" and state != "high"):  # timer is flat there: no Sharpe
                assert got["sharpe"] == pytest.approx(_hand_sharpe(r), rel=1e-9)
                assert (got["sharpe_ci_low"], got["sharpe_ci_high"]) == pytest.approx(sharpe_ci(r, n_boot=200, seed=3))
            assert got["total_return"] == pytest.approx(np.prod(1 + r) - 1, rel=1e-9, abs=1e-15)
            assert got["ann_return"] == pytest.approx(r.mean() * 252, rel=1e-9, abs=1e-15)
            assert got["bh_sharpe"] == pytest.approx(_hand_sharpe(bench), rel=1e-9)
            assert got["bh_total_return"] == pytest.approx(np.prod(1 + bench) - 1, rel=1e-9)
            assert got["bh_ann_return"] == pytest.approx(bench.mean() * 252, rel=1e-9)
    n_high = int((labels["volatility"] == "high").sum())
    plus = row.loc[("plus_one", "volatility", "high")]
    assert plus["total_return"] == pytest.approx(1.01 ** n_high - 1) and plus["ann_return"] == pytest.approx(2.52)
    assert math.isnan(plus["sharpe"])  # a constant return has no Sharpe ratio
    timer = row.loc[("timer", "volatility", "high")]
    assert timer["sharpe"] == timer["bh_sharpe"] and timer["total_return"] == timer["bh_total_return"]
    assert row.loc[("timer", "volatility", "low"), "total_return"] == 0.0
    assert row.loc[("timer", "volatility", ["low", "mid", "high"]), "n_days"].sum() == len(returns) - 4


def test_regime_table_hit_rate_base_rate_and_wilson_interval():
    returns, calls, real_up, labels = _fixture()
    table = regime_table(returns, calls, real_up, labels, n_boot=50).set_index(["strategy", "kind", "state"])
    for state in ("low", "mid", "high"):
        mask = (labels["volatility"] == state).to_numpy()
        hits = int((calls["noise"][mask] == real_up[mask]).sum())
        got = table.loc[("noise", "volatility", state)]
        assert got["n_calls"] == mask.sum() and got["hit_rate"] == pytest.approx(hits / mask.sum())
        assert (got["hit_rate_ci_low"], got["hit_rate_ci_high"]) == pytest.approx(_hand_wilson(hits, mask.sum()))
        assert got["base_rate"] == pytest.approx(real_up[mask].mean())
    high = table.loc[("timer", "volatility", "high")]  # timer calls "up" on every high day
    assert high["hit_rate"] == pytest.approx(high["base_rate"])
    for name in ("plus_one", "buy_and_hold"):  # no calls given: no direction
        got = table.loc[(name, "volatility", "high")]
        assert got["n_calls"] == 0 and np.isnan(got[["hit_rate", "hit_rate_ci_low", "base_rate"]].astype(float)).all()


def test_regime_table_leaves_undecided_days_out_of_the_hit_rate_only():
    returns, calls, real_up, labels = _fixture()
    decided = np.ones(len(returns), dtype=bool)
    decided[::3] = False
    plain = regime_table(returns, calls, real_up, labels, n_boot=50).set_index(["strategy", "kind", "state"])
    table = regime_table(returns, calls, real_up, labels, n_boot=50, decided={"noise": decided})
    got = table.set_index(["strategy", "kind", "state"]).loc[("noise", "drawdown", "shallow")]
    keep = (labels["drawdown"] == "shallow").to_numpy() & decided
    assert got["n_calls"] == keep.sum() and got["n_days"] == (labels["drawdown"] == "shallow").sum()
    assert got["hit_rate"] == pytest.approx(np.mean(calls["noise"][keep] == real_up[keep]))
    assert got["base_rate"] == pytest.approx(real_up[keep].mean())
    assert got["sharpe"] == plain.loc[("noise", "drawdown", "shallow"), "sharpe"]


def test_regime_table_min_days_and_per_strategy_realised_directions():
    returns, calls, real_up, labels = _fixture()
    flipped = {name: ~real_up for name in returns.columns}
    table = regime_table(returns, calls, flipped, labels, min_days=7, n_boot=50)
    strict = regime_table(returns, calls, real_up, labels, min_days=8, n_boot=50)
    deep = table[(table["kind"] == "drawdown") & (table["state"] == "deep")].set_index("strategy")
    assert (deep["n_days"] == 7).all() and np.isfinite(deep.loc["noise", "total_return"])  # 7 >= 7
    assert np.isnan(deep.loc["noise", "sharpe"])  # but 7 invested days are too few for a Sharpe ratio
    assert deep.loc["noise", "base_rate"] == pytest.approx(1 - real_up[-7:].mean())
    short = strict[(strict["kind"] == "drawdown") & (strict["state"] == "deep")]
    assert (short["n_days"] == 7).all()
    figures = [c for c in TABLE_COLUMNS
               if c not in ("strategy", "kind", "state", "n_days", "n_calls", "n_invested", "verdict_confidence",
                            "tested")]
    assert short[figures].isna().all().all()  # 7 < 8 days: every figure NaN, the day count kept


def test_regime_table_refuses_misaligned_returns_and_labels():
    returns, calls, real_up, labels = _fixture()
    with pytest.raises(ValueError, match="share their index"):
        regime_table(returns.iloc[1:], calls, real_up, labels)


# ------------------------------------------------------------------------- invested days and verdicts


def test_a_strategy_invested_on_too_few_days_of_a_regime_has_no_sharpe_interval_or_verdict():
    returns, calls, real_up, labels = _fixture()
    index, bench = returns.index, returns["buy_and_hold"].to_numpy()
    sparse = np.zeros(len(index))
    sparse[[10, 200]] = 1.0  # invested on one day of 2019 and one of 2020, flat on the rest
    positions = pd.DataFrame({"noise": 1.0, "sparse": sparse, "buy_and_hold": 1.0}, index=index)
    frame = pd.DataFrame({"noise": returns["noise"], "sparse": sparse * bench, "buy_and_hold": bench})
    table = regime_table(frame, calls, real_up, labels, n_boot=50, positions=positions).set_index(
        ["strategy", "kind", "state"])
    for year, day in (("2019", 10), ("2020", 200)):
        got = table.loc[("sparse", "year", year)]
        assert got["n_invested"] == 1 and got["n_days"] == (labels["year"] == year).sum()
        assert np.isnan(got[["sharpe", "sharpe_ci_low", "sharpe_ci_high", "sharpe_diff", "verdict_ci_low",
                             "verdict_ci_high"]].astype(float)).all()
        assert pd.isna(got["verdict"])
        assert got["total_return"] == pytest.approx(bench[day])  # the returns it earned are still told
    noise = table.loc[("noise", "year", "2019")]
    assert noise["n_invested"] == noise["n_days"] and np.isfinite(noise["sharpe_ci_low"])
    assert noise["verdict"] in ("beats", "inconclusive", "worse")
    assert MIN_INVESTED_DAYS == 20


def test_invested_days_default_to_days_with_a_non_zero_return():
    returns, calls, real_up, labels = _fixture()
    table = regime_table(returns, calls, real_up, labels, n_boot=50).set_index(["strategy", "kind", "state"])
    high = (labels["volatility"] == "high").to_numpy()
    assert table.loc[("timer", "volatility", "high"), "n_invested"] == high.sum()
    assert table.loc[("timer", "volatility", "low"), "n_invested"] == 0  # flat on low days
    assert np.isnan(table.loc[("timer", "volatility", "low"), "sharpe"])


def _edge_fixture(n: int = 600):
    """``edge`` times the market perfectly on "high" days and holds it elsewhere; ``lucky`` is the
    market plus noise and a small drift: a higher Sharpe than the market, well inside the noise."""
    rng = np.random.default_rng(11)
    index = pd.bdate_range("2015-01-05", periods=n)
    bench = rng.normal(0.0003, 0.01, n)
    vol = np.array(["low", "mid", "high"], dtype=object)[np.arange(n) % 3]
    edge = np.where(vol == "high", np.abs(bench), bench)
    noise = rng.normal(0.0, 0.01, n)
    lucky = bench + noise - noise.mean() + 0.0007  # a higher mean than the market's, within its noise
    returns = pd.DataFrame({"edge": edge, "lucky": lucky, "buy_and_hold": bench}, index=index)
    labels = pd.DataFrame({"volatility": vol, "year": index.year.astype(str)}, index=index)
    return returns, labels, bench > 0


def test_regime_verdicts_are_the_scorecards_family_verdict_over_every_tested_cell():
    returns, labels, real_up = _edge_fixture()
    table = regime_table(returns, {}, real_up, labels, seed=5, n_boot=50)
    cells = table[table["tested"] & table["verdict"].notna()]
    n_tested = 2 * (3 + labels["year"].nunique())  # both strategies in every state of both kinds
    assert len(cells) == n_tested and (table["verdict_confidence"] == family_confidence(n_tested)).all()
    for row in cells.to_dict("records"):
        mask = (labels[row["kind"]] == row["state"]).to_numpy()
        r, b = returns[row["strategy"]].to_numpy()[mask], returns["buy_and_hold"].to_numpy()[mask]
        others = [returns[name].to_numpy()[mask] for name in ("edge", "lucky")]
        alone = sig.sharpe_diff_interval(r, b, family_confidence(n_tested), seed=5,
                                         block=sig.default_block_length(b, *others))  # drawn for this strategy alone
        assert (row["verdict_ci_low"], row["verdict_ci_high"], row["verdict_n_boot"]) == (
            alone.low, alone.high, alone.n_boot)
        shared = family_verdicts({"edge": others[0], "lucky": others[1]}, b, n_tested, seed=5)[row["strategy"]]
        assert {k: row[k] for k in shared} == shared
        assert row["sharpe_diff"] == pytest.approx(_hand_sharpe(r) - _hand_sharpe(b), rel=1e-9)
    bench_rows = table[table["strategy"] == "buy_and_hold"]
    assert bench_rows["verdict"].isna().all() and bench_rows["sharpe_diff"].isna().all()


def test_a_clear_regime_win_is_called_one_and_a_higher_point_estimate_alone_is_not():
    returns, labels, real_up = _edge_fixture()
    table = regime_table(returns, {}, real_up, labels, seed=5, n_boot=50)
    row = table.set_index(["strategy", "kind", "state"])
    win = row.loc[("edge", "volatility", "high")]
    assert win["verdict"] == "beats" and win["verdict_ci_low"] > 0
    lucky = row.loc[("lucky", "volatility", "low")]
    assert lucky["sharpe"] > lucky["bh_sharpe"]  # the point estimate is higher ...
    assert lucky["verdict"] == "inconclusive" and lucky["verdict_ci_low"] < 0 < lucky["verdict_ci_high"]  # ... only
    lines = regime_sentences(table)
    beats = [line for line in lines if line.startswith("Beats")]
    assert len(beats) == 1 and "edge in volatility high" in beats[0] and "lucky" not in beats[0]
    assert not any("lucky" in line for line in lines)
    assert lines[-1] == "Every other tested cell cannot be told apart from buy-and-hold."
    assert f"{100 * family_confidence(len(table[table['verdict'].notna()])):.4g}%" in lines[0]


def test_no_regime_sentence_claims_a_win_without_an_interval_above_zero():
    returns, labels, real_up = _edge_fixture()
    returns["edge"] = returns["buy_and_hold"]  # no edge anywhere
    table = regime_table(returns, {}, real_up, labels, seed=5, n_boot=50)
    assert not table["verdict"].isin(["beats", "worse"]).any()
    assert regime_sentences(table)[1] == ("No model beats buy-and-hold or falls behind it in any regime: every "
                                          "tested cell cannot be told apart from buy-and-hold.")
    assert regime_sentences(table.drop(columns=["verdict"])) == []  # a table saved before verdicts: no sentence


def test_one_invested_day_in_a_year_is_a_dash_in_the_saved_table_and_the_report(sp500_close, tmp_path, run_cli):
    import lstmbt

    close = sp500_close.loc["2014-01-01":"2018-12-31"]
    days = close.loc["2016-01-01":].index
    one_day = pd.Series(np.where(days.year == 2017, 0.0, 1.0), index=days)
    one_day[days[days.year == 2017][100]] = 1.0  # one invested day in 2017, flat on the others
    out = lstmbt.backtest(close, pd.DataFrame({"one_day": one_day})).save(tmp_path / "run")
    saved = pd.read_parquet(out / "regimes.parquet").set_index(["strategy", "kind", "state"])
    cell = saved.loc[("one_day", "year", "2017")]
    assert cell["n_invested"] == 1 and pd.isna(cell["verdict"])
    assert np.isnan(cell[["sharpe", "sharpe_ci_low", "sharpe_ci_high", "verdict_ci_low"]].astype(float)).all()
    assert np.isfinite(saved.loc[("one_day", "year", "2016"), "sharpe_ci_low"])  # a year it held has its interval
    (out / "report.html").unlink()
    code, _, err = run_cli(["report", str(out)])
    assert code == 0, err
    html = (out / "report.html").read_text()
    table = html[html.index('id="regimes-year"'):]
    table = table[:table.index("</table>")]
    row = table[table.index("<td>one_day</td>"):]
    cells = row[:row.index("</tr>")].split("<td>")[1:]
    years = table[table.index("<thead>"):table.index("</thead>")]
    col = [th.split("</th>")[0] for th in years.split("<th>")[2:]].index("2017")
    n_days = int(cell["n_days"])
    assert cells[col + 1].startswith(f'\u2013<span class="sub">too few invested days (1 of {n_days})')
    assert "[" not in cells[col + 1] and "[" in cells[col]  # 2016: an interval
