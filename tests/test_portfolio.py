"""run_backtest: the timing rule and the costs, checked value by value against hand formulas.

Tiny frame (8 business days, Mon 2024-01-01 .. Wed 2024-01-10), every Open and Close distinct:

    day   0    1    2    3    4    5    6    7
    Open  100  102  101  105  104  108  107  110
    Close 101  103  104  103  106  107  109  111

A position dated t is decided after the close of t and filled on bar t + 1 (its open for
``next_open``, its close for ``next_close``). The returns frame is indexed by bars 1..7: one row per
decision day (0..6), each shifted one bar later.

vectorbt semantics used for the cost formulas (``from_orders``, ``size_type="targetpercent"``,
valuation at the order price, no cash sharing): a buy of target 100% from flat with cash 1 asks for
1 / open shares, which would cost (1 + s)(1 + f) > 1, so the size is cut to what the cash pays for:
q = 1 / ((1 + f) * (1 + s) * open); the fee is q * open * (1 + s) * f = f / (1 + f). A sell fills at
price * (1 - s) and pays f on its proceeds. A short sell is not cash-limited.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig
from backtest.portfolio import run_backtest

IDX = pd.bdate_range("2024-01-01", periods=8)
O = np.array([100.0, 102.0, 101.0, 105.0, 104.0, 108.0, 107.0, 110.0])
C = np.array([101.0, 103.0, 104.0, 103.0, 106.0, 107.0, 109.0, 111.0])
FREE = BacktestConfig(fee_rate=0.0, slippage=0.0)
REL = 1e-12


def _prices(open_: np.ndarray = O, close: np.ndarray = C) -> pd.DataFrame:
    return pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) + 1.0,
                         "Low": np.minimum(open_, close) - 1.0, "Close": close, "Volume": 1e6}, index=IDX)


def _positions(**columns: list[float]) -> pd.DataFrame:
    """Target positions on decision days 0..6 (bar 7 is only there to execute on)."""
    return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in columns.items()}, index=IDX[:7])


# long decided on day 1, held, flat decided on day 4
LONG = [0, 1, 1, 1, 0, 0, 0]


def test_defaults_have_costs_on_and_next_open():
    cfg = BacktestConfig()
    assert cfg.fee_rate == 0.001 and cfg.slippage == 0.0005 and cfg.execution == "next_open"


def test_next_open_without_costs_every_value():
    res = run_backtest(_prices(), _positions(a=LONG), FREE)
    r = res.returns["a"]
    # one row per decision day, starting the bar after the first decision day
    assert list(res.returns.index) == list(IDX[1:])
    assert list(res.returns.columns) == ["a"]
    expected = [
        0.0,  # bar 1: the day-0 decision is flat
        C[2] / O[2] - 1,  # bar 2: bought at the open of 101, marked at the close of 104
        C[3] / C[2] - 1,  # bar 3: held, close to close
        C[4] / C[3] - 1,  # bar 4: held (the exit is decided after this close)
        O[5] / C[4] - 1,  # bar 5: sold at the open of 108 against yesterday's close of 106
        0.0,
        0.0,
    ]
    np.testing.assert_allclose(r.to_numpy(), expected, rtol=REL, atol=1e-15)
    assert res.n_trades == {"a": 1}
    assert res.fees_paid == {"a": 0.0} and res.slippage_paid == {"a": 0.0}


def test_next_close_without_costs_every_value():
    res = run_backtest(_prices(), _positions(a=LONG), BacktestConfig(fee_rate=0.0, slippage=0.0,
                                                                      execution="next_close"))
    expected = [
        0.0,
        0.0,  # bar 2: bought at its close, nothing earned yet
        C[3] / C[2] - 1,
        C[4] / C[3] - 1,
        C[5] / C[4] - 1,  # bar 5: sold at its close
        0.0,
        0.0,
    ]
    assert list(res.returns.index) == list(IDX[1:])
    np.testing.assert_allclose(res.returns["a"].to_numpy(), expected, rtol=REL, atol=1e-15)


def test_no_same_bar_fill():
    # a position decided on day 0 earns nothing on day 0 and the open-to-close move of day 1
    res = run_backtest(_prices(), _positions(a=[1, 1, 1, 1, 1, 1, 1]), FREE)
    assert res.returns.index[0] == IDX[1]
    assert res.returns["a"].iloc[0] == pytest.approx(C[1] / O[1] - 1, rel=REL)


def test_fees_next_open():
    f = 0.001
    res = run_backtest(_prices(), _positions(a=LONG), BacktestConfig(fee_rate=f, slippage=0.0))
    r = res.returns["a"].to_numpy()
    q = 1.0 / ((1 + f) * O[2])  # shares bought with cash 1 when the fee comes out of it
    assert r[1] == pytest.approx(C[2] / ((1 + f) * O[2]) - 1, rel=REL)  # = q * C[2] - 1
    assert r[2] == pytest.approx(C[3] / C[2] - 1, rel=REL)  # held days pay nothing
    assert r[3] == pytest.approx(C[4] / C[3] - 1, rel=REL)
    assert r[4] == pytest.approx(O[5] * (1 - f) / C[4] - 1, rel=REL)  # the exit fee on the proceeds
    assert r[0] == 0.0 and r[5] == 0.0 and r[6] == 0.0
    entry_fee = f / (1 + f)  # q * O[2] * f
    exit_fee = q * O[5] * f
    assert res.fees_paid["a"] == pytest.approx(entry_fee + exit_fee, rel=REL)
    # the equity at the end is what is left after both fees: (1 / (1 + f)) * (O5 / O2) * (1 - f)
    assert np.prod(1 + r) == pytest.approx(O[5] / O[2] * (1 - f) / (1 + f), rel=REL)
    assert res.slippage_paid["a"] == 0.0


def test_fees_next_close_entry_day_is_the_fee_drag():
    f = 0.001
    res = run_backtest(_prices(), _positions(a=LONG),
                       BacktestConfig(fee_rate=f, slippage=0.0, execution="next_close"))
    r = res.returns["a"].to_numpy()
    assert r[1] == pytest.approx(1 / (1 + f) - 1, rel=REL)  # bought at the close it is marked at
    assert r[4] == pytest.approx(C[5] * (1 - f) / C[4] - 1, rel=REL)
    q = 1.0 / ((1 + f) * C[2])
    assert res.fees_paid["a"] == pytest.approx(f / (1 + f) + q * C[5] * f, rel=REL)


def test_slippage_moves_the_fill_adversely():
    f, s = 0.001, 0.0005
    res = run_backtest(_prices(), _positions(a=LONG), BacktestConfig(fee_rate=f, slippage=s))
    r = res.returns["a"].to_numpy()
    buy_px, sell_px = O[2] * (1 + s), O[5] * (1 - s)  # pay up on the buy, get less on the sell
    q = 1.0 / ((1 + f) * buy_px)
    assert r[1] == pytest.approx(q * C[2] - 1, rel=REL)
    assert r[4] == pytest.approx(sell_px * (1 - f) / C[4] - 1, rel=REL)
    assert res.fees_paid["a"] == pytest.approx(q * buy_px * f + q * sell_px * f, rel=REL)
    assert res.slippage_paid["a"] == pytest.approx(q * O[2] * s + q * O[5] * s, rel=REL)
    # costs only ever lower the result
    free = run_backtest(_prices(), _positions(a=LONG), FREE).returns["a"].to_numpy()
    assert np.prod(1 + r) < np.prod(1 + free)


def test_slippage_alone():
    s = 0.001
    res = run_backtest(_prices(), _positions(a=LONG), BacktestConfig(fee_rate=0.0, slippage=s))
    r = res.returns["a"].to_numpy()
    assert r[1] == pytest.approx(C[2] / (O[2] * (1 + s)) - 1, rel=REL)
    assert r[4] == pytest.approx(O[5] * (1 - s) / C[4] - 1, rel=REL)
    assert res.fees_paid["a"] == 0.0
    q = 1.0 / (O[2] * (1 + s))
    assert res.slippage_paid["a"] == pytest.approx(q * O[2] * s + q * O[5] * s, rel=REL)


def test_short_earns_the_negative_of_the_move():
    res = run_backtest(_prices(), _positions(s=[0, -1, -1, -1, 0, 0, 0]), FREE)
    r = res.returns["s"].to_numpy()
    # short q = 1 / O2 shares at the open: cash 1 + q * O2 = 2, equity = 2 - q * price
    q = 1.0 / O[2]
    equity = [1.0, 2 - q * C[2], 2 - q * C[3], 2 - q * C[4], 2 - q * O[5]]
    expected = [0.0] + [equity[i + 1] / equity[i] - 1 for i in range(4)] + [0.0, 0.0]
    np.testing.assert_allclose(r, expected, rtol=REL, atol=1e-15)
    # the entry day is exactly the negative of the open-to-close move; later days close to it
    assert r[1] == pytest.approx(-(C[2] / O[2] - 1), rel=REL)
    long_r = run_backtest(_prices(), _positions(a=LONG), FREE).returns["a"].to_numpy()
    assert np.all(np.sign(r[1:5]) == -np.sign(long_r[1:5]))
    np.testing.assert_allclose(r[1:5], -long_r[1:5], rtol=0.15)
    assert res.n_trades == {"s": 1}


def test_short_fee_is_on_the_proceeds():
    f = 0.001
    res = run_backtest(_prices(), _positions(s=[0, -1, -1, -1, 0, 0, 0]), BacktestConfig(fee_rate=f, slippage=0.0))
    r = res.returns["s"].to_numpy()
    q = 1.0 / O[2]  # a short sale is not cut by the fee
    assert r[1] == pytest.approx((2 - f - q * C[2]) - 1, rel=REL)
    assert res.fees_paid["s"] == pytest.approx(f + q * O[5] * f, rel=REL)


def test_n_trades_counts_round_trips():
    pos = _positions(
        none=[0, 0, 0, 0, 0, 0, 0],
        one=[1, 1, 1, 1, 1, 1, 1],  # still open at the end: counts
        two=[1, 0, 1, 1, 0, 0, 0],
        flip=[1, 1, -1, -1, 0, 1, 1],  # long, short (the flip closes one and opens one), long
    )
    res = run_backtest(_prices(), pos, FREE)
    assert res.n_trades == {"none": 0, "one": 1, "two": 2, "flip": 3}
    assert (res.returns["none"] == 0.0).all()


def test_unchanged_positions_send_no_orders():
    f = 0.001
    res = run_backtest(_prices(), _positions(full=[1] * 7, half=[0.5] * 7), BacktestConfig(fee_rate=f, slippage=0.0))
    # one entry order each: full pays f / (1 + f); half has the cash, so it buys 0.5 / O1 shares and pays 0.5 f
    assert res.fees_paid["full"] == pytest.approx(f / (1 + f), rel=REL)
    assert res.fees_paid["half"] == pytest.approx(0.5 * f, rel=REL)
    full = res.returns["full"].to_numpy()
    np.testing.assert_allclose(full[1:], C[2:] / C[1:-1] - 1, rtol=REL)  # no rebalancing cost afterwards
    # half: q shares and 0.5 - 0.5 f cash, never rebalanced back to 50% (the weight drifts)
    q = 0.5 / O[1]
    equity = np.concatenate([[1.0], (0.5 - 0.5 * f) + q * C[1:]])
    np.testing.assert_allclose(res.returns["half"].to_numpy(), equity[1:] / equity[:-1] - 1, rtol=REL)


def test_columns_are_simulated_independently():
    cols = {"a": LONG, "b": [1, -1, 0, 0.5, 0.5, -0.5, 1], "c": [0, 0, 1, 1, 1, 1, 0]}
    cfg = BacktestConfig(fee_rate=0.001, slippage=0.0005)
    together = run_backtest(_prices(), _positions(**cols), cfg)
    assert list(together.returns.columns) == ["a", "b", "c"]
    for name, pos in cols.items():
        alone = run_backtest(_prices(), _positions(**{name: pos}), cfg)
        pd.testing.assert_series_equal(together.returns[name], alone.returns[name], check_exact=True)
        assert together.n_trades[name] == alone.n_trades[name]
        assert together.fees_paid[name] == alone.fees_paid[name]
        assert together.slippage_paid[name] == alone.slippage_paid[name]


@pytest.mark.parametrize("execution", ["next_open", "next_close"])
@pytest.mark.parametrize("day", [1, 3, 5])
def test_no_look_ahead(execution, day):
    """Changing every price strictly after day D leaves the returns on days <= D unchanged, bit for bit."""
    cfg = BacktestConfig(fee_rate=0.001, slippage=0.0005, execution=execution)
    pos = _positions(a=LONG, b=[1, -1, 0, 0.5, 0.5, -0.5, 1], c=[-1, 1, 1, -1, 0, 1, 0])
    rng = np.random.default_rng(day)
    later = np.arange(len(IDX)) > day
    shock_o, shock_c = rng.uniform(0.5, 1.5, len(IDX)), rng.uniform(0.5, 1.5, len(IDX))
    perturbed = _prices(np.where(later, O * shock_o, O), np.where(later, C * shock_c, C))
    base = run_backtest(_prices(), pos, cfg).returns
    moved = run_backtest(perturbed, pos, cfg).returns
    upto = base.index <= IDX[day]
    assert upto.sum() == day
    np.testing.assert_array_equal(base[upto].to_numpy(), moved[upto].to_numpy())
    assert not np.array_equal(base[~upto].to_numpy(), moved[~upto].to_numpy())  # the perturbation bites


@pytest.mark.parametrize("bad", [np.nan, 1.5, -1.01, np.inf])
def test_bad_positions_raise(bad):
    values = [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    values[2] = bad
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        run_backtest(_prices(), _positions(a=values), FREE)


def test_no_bar_after_the_last_decision_day_raises():
    pos = pd.DataFrame({"a": np.ones(8)}, index=IDX)
    with pytest.raises(ValueError, match="no bar after the last decision day 2024-01-10"):
        run_backtest(_prices(), pos, FREE)


def test_positions_with_a_gap_or_empty_raise():
    gappy = _positions(a=LONG).drop(IDX[3])
    with pytest.raises(ValueError, match="consecutive"):
        run_backtest(_prices(), gappy, FREE)
    with pytest.raises(ValueError, match="empty"):
        run_backtest(_prices(), _positions(a=LONG).iloc[:0], FREE)


def test_decision_days_may_start_late_and_end_early():
    # positions on days 2..5 use bars 2..6; bars before and after are ignored
    pos = pd.DataFrame({"a": [1.0, 1.0, 0.0, 0.0]}, index=IDX[2:6])
    res = run_backtest(_prices(), pos, FREE)
    assert list(res.returns.index) == list(IDX[3:7])
    np.testing.assert_allclose(res.returns["a"].to_numpy(),
                               [C[3] / O[3] - 1, C[4] / C[3] - 1, O[5] / C[4] - 1, 0.0], rtol=REL, atol=1e-15)


@pytest.mark.parametrize("column, day, value", [("Open", 5, np.nan), ("Close", 3, np.nan), ("Open", 2, 0.0)])
def test_missing_or_bad_fill_prices_raise(column, day, value):
    # vectorbt silently skips an order whose price is NaN: the exit on bar 5 would never happen
    prices = _prices()
    prices.loc[IDX[day], column] = value
    with pytest.raises(ValueError, match="finite and > 0"):
        run_backtest(prices, _positions(a=LONG), FREE)


def test_bad_prices_outside_the_traded_bars_are_ignored():
    prices = _prices()
    prices.loc[IDX[0], "Open"] = np.nan  # bar 0 comes before the first decision day (1)
    pos = pd.DataFrame({"a": [1.0, 1.0, 0.0]}, index=IDX[1:4])
    res = run_backtest(prices, pos, FREE)
    np.testing.assert_allclose(res.returns["a"].to_numpy(), [C[2] / O[2] - 1, C[3] / C[2] - 1, O[4] / C[3] - 1],
                               rtol=REL)


def test_all_flat_trades_nothing():
    res = run_backtest(_prices(), _positions(a=[0] * 7), BacktestConfig())
    assert (res.returns["a"] == 0.0).all()
    assert res.n_trades == {"a": 0} and res.fees_paid == {"a": 0.0} and res.slippage_paid == {"a": 0.0}


# --------------------------------------------------------------------------- trade records and the cost sweep


def test_trade_records_match_the_hand_computed_round_trip():
    res = run_backtest(_prices(), _positions(a=LONG, s=[0, -1, -1, -1, 0, 0, 0]), FREE)
    trades = res.trades
    assert list(trades["strategy"]) == ["a", "s"]
    long_, short = trades.iloc[0], trades.iloc[1]
    # decided day 1 -> bought at day 2's open 101; flat decided day 4 -> sold at day 5's open 108
    assert (long_["entry_date"], long_["exit_date"]) == (IDX[2], IDX[5])
    assert (long_["entry_price"], long_["exit_price"]) == (101.0, 108.0)
    assert long_["return"] == pytest.approx(108.0 / 101.0 - 1.0, rel=REL)
    assert long_["pnl"] == pytest.approx(108.0 / 101.0 - 1.0, rel=REL)  # all of the capital went in
    assert long_["holding_days"] == 3 and long_["direction"] == "long" and long_["status"] == "closed"
    assert short["direction"] == "short"
    assert short["return"] == pytest.approx(1.0 - 108.0 / 101.0, rel=REL)


def test_an_open_trade_is_marked_open_and_counted():
    res = run_backtest(_prices(), _positions(a=[0, 0, 0, 0, 0, 1, 1]), FREE)
    assert list(res.trades["status"]) == ["open"] and res.n_trades["a"] == 1
    assert res.trades["exit_date"].iloc[0] == IDX[7]


def test_cost_sweep_reproduces_run_backtest_at_each_fee_level():
    from backtest.metrics import total_return
    from backtest.portfolio import cost_sweep

    pos = _positions(a=LONG, s=[0, -1, -1, -1, 0, 0, 0], flat=[0] * 7)
    cfg = BacktestConfig(fee_rate=0.001, slippage=0.0005)
    sweep = cost_sweep(_prices(), pos, cfg, fee_levels_bps=(0, 10, 50))
    assert list(sweep["fee_bps"]) == [0, 0, 0, 10, 10, 10, 50, 50, 50]
    for bps in (0, 10, 50):
        alone = run_backtest(_prices(), pos, BacktestConfig(fee_rate=bps / 1e4, slippage=0.0005))
        part = sweep[sweep["fee_bps"] == bps].set_index("strategy")
        for name in pos.columns:
            assert part.loc[name, "total_return"] == pytest.approx(total_return(alone.returns[name]), abs=1e-13)
            assert part.loc[name, "fees_paid"] == pytest.approx(alone.fees_paid[name], abs=1e-13)
    assert (sweep[sweep["strategy"] == "flat"]["total_return"] == 0).all()
    a = sweep[sweep["strategy"] == "a"].set_index("fee_bps")["total_return"]
    assert a[0] > a[10] > a[50]
