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

from lstmbt.backtest.config import BacktestConfig
from lstmbt.backtest.portfolio import run_backtest

IDX = pd.bdate_range("2024-01-01", periods=8)
O = np.array([100.0, 102.0, 101.0, 105.0, 104.0, 108.0, 107.0, 110.0])
C = np.array([101.0, 103.0, 104.0, 103.0, 106.0, 107.0, 109.0, 111.0])
FREE = BacktestConfig(fee_rate=0.0, slippage=0.0)
#: no rebalancing: a held position drifts with the price until its target changes (vectorbt's own semantics)
DRIFT = BacktestConfig(fee_rate=0.0, slippage=0.0, rebalance_band=1.0)
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
    res = run_backtest(_prices(), _positions(s=[0, -1, -1, -1, 0, 0, 0]), DRIFT)
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
    res = run_backtest(_prices(), _positions(s=[0, -1, -1, -1, 0, 0, 0]),
                       BacktestConfig(fee_rate=f, slippage=0.0, rebalance_band=1.0))
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


def test_unchanged_positions_send_no_orders_without_rebalancing():
    f = 0.001
    res = run_backtest(_prices(), _positions(full=[1] * 7, half=[0.5] * 7),
                       BacktestConfig(fee_rate=f, slippage=0.0, rebalance_band=1.0))
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
    res = run_backtest(_prices(), _positions(a=LONG, s=[0, -1, -1, -1, 0, 0, 0]), DRIFT)
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
    from lstmbt.backtest.metrics import total_return
    from lstmbt.backtest.portfolio import cost_sweep

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


# --------------------------------------------------------------------------- carry: cash interest and borrow fees

CASH, BORROW = 0.05, 0.04  # annual fractions
CARRY_COLUMNS = {"flat": [0] * 7, "long": LONG, "short": [0, -1, -1, -1, 0, 0, 0], "half": [0.5] * 7,
                 "flip": [1, 1, -1, -1, 0, 0.5, -0.5]}


def _resimulate(targets: list[float], cash_rate: float, borrow_rate: float,
                band: float = BacktestConfig().rebalance_band) -> np.ndarray:
    """Net returns without fees or slippage, next_open, by hand: the carry and rebalancing rules, independently.

    On each bar whose executed target (the previous day's decision) changed, or whose holding weighed
    more than ``band`` away from it at the previous close, the book is set at the open to that fraction
    of its value; at the close, capital not held long (cash less short proceeds, i.e. value - long
    value) earns cash_rate / 252 and the short value pays borrow_rate / 252, credited then. Returns
    are measured on the previous close's carry-free value (weights as simulated).
    """
    shares, cash, before, out = 0.0, 1.0, 1.0, []
    for bar in range(1, 8):
        target = targets[bar - 1]
        held_before = shares * C[bar - 1]
        drifted = bar > 1 and abs(held_before / (cash + held_before) - target) > band
        if bar == 1 or target != targets[bar - 2] or drifted:
            wanted = target * (cash + shares * O[bar]) / O[bar]
            cash, shares = cash - (wanted - shares) * O[bar], wanted
        held = shares * C[bar]
        value = cash + held
        interest = (cash_rate * (value - max(held, 0.0)) - borrow_rate * max(-held, 0.0)) / 252
        out.append((value + interest) / before - 1.0)
        before = value
    return np.asarray(out)


def test_defaults_charge_no_carry():
    cfg = BacktestConfig()
    assert cfg.cash_rate == 0.0 and cfg.borrow_rate == 0.0


def test_carry_matches_an_independent_resimulation():
    cfg = BacktestConfig(fee_rate=0.0, slippage=0.0, cash_rate=CASH, borrow_rate=BORROW)
    res = run_backtest(_prices(), _positions(**CARRY_COLUMNS), cfg)
    for name, targets in CARRY_COLUMNS.items():
        np.testing.assert_allclose(res.returns[name].to_numpy(), _resimulate(targets, CASH, BORROW),
                                   rtol=1e-12, atol=1e-15, err_msg=name)
    # the re-simulation bites: with rates 0 it is vectorbt's own result, and it differs from the carried one
    free = run_backtest(_prices(), _positions(**CARRY_COLUMNS), FREE).returns
    for name, targets in CARRY_COLUMNS.items():
        np.testing.assert_allclose(free[name].to_numpy(), _resimulate(targets, 0.0, 0.0), rtol=1e-12, atol=1e-15)
        assert not np.allclose(res.returns[name].to_numpy(), free[name].to_numpy(), rtol=0, atol=1e-7)


def test_flat_book_compounds_at_the_cash_rate():
    res = run_backtest(_prices(), _positions(flat=[0] * 7), BacktestConfig(cash_rate=CASH))  # default fees
    r = res.returns["flat"].to_numpy()
    np.testing.assert_allclose(r, CASH / 252, rtol=1e-15)
    assert np.prod(1 + r) - 1 == pytest.approx((1 + CASH / 252) ** 7 - 1, rel=1e-12)


def test_fully_invested_book_earns_no_cash():
    for cfg in (BacktestConfig(cash_rate=CASH), BacktestConfig(fee_rate=0.0, slippage=0.0, cash_rate=CASH)):
        carried = run_backtest(_prices(), _positions(bh=[1] * 7), cfg).returns["bh"].to_numpy()
        plain = run_backtest(_prices(), _positions(bh=[1] * 7),
                             BacktestConfig(fee_rate=cfg.fee_rate, slippage=cfg.slippage)).returns["bh"].to_numpy()
        np.testing.assert_allclose(carried, plain, rtol=0, atol=1e-18)


def test_short_pays_borrow_on_its_market_value_and_its_collateral_earns_cash():
    short = [0, -1, -1, -1, 0, 0, 0]  # not rebalanced, so the short's value follows the price
    plain = run_backtest(_prices(), _positions(s=short), DRIFT).returns["s"].to_numpy()
    borrow = run_backtest(_prices(), _positions(s=short), BacktestConfig(
        fee_rate=0.0, slippage=0.0, borrow_rate=BORROW, rebalance_band=1.0)).returns["s"].to_numpy()
    q = 1.0 / O[2]  # shorted at the open of bar 2; equity at the close 2 - q * C, the short worth q * C
    equity = np.array([1.0, 1.0] + [2 - q * C[b] for b in (2, 3, 4)] + [2 - q * O[5]] * 3)
    for bar in (2, 3, 4):  # held through these closes: the fee is borrow/252 of the short value
        i = bar - 1
        assert borrow[i] == pytest.approx(plain[i] - BORROW / 252 * q * C[bar] / equity[bar - 1], rel=1e-12)
    np.testing.assert_array_equal(borrow[[0, 4, 5, 6]], plain[[0, 4, 5, 6]])  # flat: no fee, no cash
    # equal rates: the collateral's interest (on the equity) and the fee (on the short value) differ only by the P&L
    both = run_backtest(_prices(), _positions(s=short), BacktestConfig(
        fee_rate=0.0, slippage=0.0, cash_rate=0.03, borrow_rate=0.03, rebalance_band=1.0)).returns["s"].to_numpy()
    for bar in (2, 3, 4):
        expected = plain[bar - 1] + 0.03 / 252 * (equity[bar] - q * C[bar]) / equity[bar - 1]
        assert both[bar - 1] == pytest.approx(expected, rel=1e-12)


def test_half_long_earns_cash_on_the_idle_half():
    res = run_backtest(_prices(), _positions(h=[0.5] * 7), BacktestConfig(fee_rate=0.0, slippage=0.0, cash_rate=CASH))
    q = 0.5 / O[1]  # bought at the open of bar 1 with half the capital; 0.5 cash stays idle
    value = np.concatenate([[1.0], 0.5 + q * C[1:]])
    expected = (value[1:] + CASH / 252 * 0.5) / value[:-1] - 1
    np.testing.assert_allclose(res.returns["h"].to_numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("execution", ["next_open", "next_close"])
def test_rates_zero_are_bit_identical_to_the_defaults_and_to_vectorbt(execution):
    from lstmbt.backtest.portfolio import _execution_bars, _simulate

    pos = _positions(**CARRY_COLUMNS)
    default = run_backtest(_prices(), pos, BacktestConfig(execution=execution))
    explicit = run_backtest(_prices(), pos, BacktestConfig(execution=execution, cash_rate=0.0, borrow_rate=0.0))
    pd.testing.assert_frame_equal(default.returns, explicit.returns, check_exact=True)
    bars = _execution_bars(_prices(), pos)
    fill = bars["Open"] if execution == "next_open" else bars["Close"]
    band = BacktestConfig().rebalance_band
    raw = _simulate(bars, pos, fill, np.full(pos.shape[1], 0.001), 0.0005, band).returns().iloc[1:]
    assert default.returns.to_numpy().tobytes() == raw.to_numpy().tobytes()  # bit for bit, signs of 0 too


def test_carry_leaves_trades_and_costs_alone():
    pos = _positions(**CARRY_COLUMNS)
    plain = run_backtest(_prices(), pos, BacktestConfig())
    carried = run_backtest(_prices(), pos, BacktestConfig(cash_rate=CASH, borrow_rate=BORROW))
    assert carried.n_trades == plain.n_trades and carried.fees_paid == plain.fees_paid
    assert carried.slippage_paid == plain.slippage_paid
    pd.testing.assert_frame_equal(carried.trades, plain.trades, check_exact=True)


def test_add_carry_by_hand():
    from lstmbt.backtest.portfolio import add_carry

    r = pd.DataFrame({"a": [0.01, -0.02], "b": [0.0, 0.03], "c": [0.5, 0.5]})
    long_ = np.array([[0.6, 0.0, 1.0], [0.0, 1.0, 1.0]])
    short = np.array([[0.0, 0.5, 0.0], [0.7, 0.0, 0.0]])
    equity = np.array([[1.0, 1.2, 0.0], [0.8, 1.5, 1.0]])  # c's equity 0 on bar 0: no carry there
    out = add_carry(r, long_, short, equity, np.array([0.02, 0.02, 0.0]), np.array([0.1, 0.1, 0.0]))
    # r + c * (1 + r), c = (cash * (equity - long) - borrow * short) / (252 * equity)
    expected_a = [0.01 + 0.02 * 0.4 / 252 * 1.01, -0.02 + (0.02 * 0.8 - 0.1 * 0.7) / (252 * 0.8) * 0.98]
    expected_b = [0.0 + (0.02 * 1.2 - 0.1 * 0.5) / (252 * 1.2), 0.03 + 0.02 * 0.5 / (252 * 1.5) * 1.03]
    np.testing.assert_allclose(out["a"], expected_a, rtol=1e-14)
    np.testing.assert_allclose(out["b"], expected_b, rtol=1e-14)
    assert out["c"].to_numpy().tobytes() == r["c"].to_numpy().tobytes()  # rates 0: untouched
    assert add_carry(r, long_, short, equity, 0.0, 0.0) is r


def test_cost_sweep_carries_the_rates_at_every_fee_level():
    from lstmbt.backtest.metrics import total_return
    from lstmbt.backtest.portfolio import cost_sweep

    pos = _positions(**CARRY_COLUMNS)
    cfg = BacktestConfig(fee_rate=0.001, slippage=0.0005, cash_rate=CASH, borrow_rate=BORROW)
    sweep = cost_sweep(_prices(), pos, cfg, fee_levels_bps=(0, 10, 50))
    plain = cost_sweep(_prices(), pos, BacktestConfig(fee_rate=0.001, slippage=0.0005), fee_levels_bps=(0, 10, 50))
    for bps in (0, 10, 50):
        alone = run_backtest(_prices(), pos, BacktestConfig(fee_rate=bps / 1e4, slippage=0.0005, cash_rate=CASH,
                                                            borrow_rate=BORROW))
        part = sweep[sweep["fee_bps"] == bps].set_index("strategy")
        for name in pos.columns:
            assert part.loc[name, "total_return"] == pytest.approx(total_return(alone.returns[name]), abs=1e-13)
        assert part.loc["flat", "total_return"] == pytest.approx((1 + CASH / 252) ** 7 - 1, rel=1e-12)
    np.testing.assert_array_equal(sweep["fees_paid"], plain["fees_paid"])
    assert (sweep.set_index(["fee_bps", "strategy"])["total_return"]
            != plain.set_index(["fee_bps", "strategy"])["total_return"]).all()


def test_variants_take_per_column_rates():
    from lstmbt.backtest.portfolio import run_backtest_variants

    pos = _positions(a=LONG, b=[0, -1, -1, -1, 0, 0, 0], c=[0.5] * 7)
    cash, borrow = np.array([CASH, 0.0, 0.01]), np.array([0.0, BORROW, 0.0])
    res = run_backtest_variants(_prices(), pos, np.full(3, 0.001), np.full(3, 0.0005), ["next_open"] * 3,
                                cash_rates=cash, borrow_rates=borrow)
    for i, name in enumerate(pos.columns):
        cfg = BacktestConfig(fee_rate=0.001, slippage=0.0005, cash_rate=cash[i], borrow_rate=borrow[i])
        alone = run_backtest(_prices(), pos[[name]], cfg).returns[name]
        np.testing.assert_allclose(res.returns[name], alone, rtol=1e-13, atol=1e-16)
    default = run_backtest_variants(_prices(), pos, np.full(3, 0.001), np.full(3, 0.0005), ["next_open"] * 3)
    np.testing.assert_array_equal(default.returns.to_numpy(), run_backtest(_prices(), pos, BacktestConfig()).returns)


def _group_weights(**books: dict[str, list[float]]) -> pd.DataFrame:
    frames = {(s, t): pd.Series(v, index=IDX[:7], dtype=float) for s, book in books.items() for t, v in book.items()}
    return pd.DataFrame(frames)


def test_group_book_carry_by_hand():
    from lstmbt.backtest.portfolio import run_group_backtest

    o2, c2 = O[::-1].copy(), C[::-1].copy()  # a second ticker, falling where the first rises
    prices = {"X": _prices(), "Y": _prices(o2, c2)}
    weights = _group_weights(ls={"X": [0.5] * 7, "Y": [-0.5] * 7}, flat={"X": [0] * 7, "Y": [0] * 7})
    cfg = BacktestConfig(fee_rate=0.0, slippage=0.0, cash_rate=CASH, borrow_rate=BORROW)
    res = run_group_backtest(prices, weights, cfg).returns
    qx, qy = 0.5 / O[1], 0.5 / o2[1]  # both legs set at the open of bar 1; cash 1 - 0.5 + 0.5 = 1
    long_, short = qx * C[1:], qy * c2[1:]
    value = np.concatenate([[1.0], 1.0 + long_ - short])
    interest = (CASH * (value[1:] - long_) - BORROW * short) / 252
    np.testing.assert_allclose(res["ls"].to_numpy(), (value[1:] + interest) / value[:-1] - 1, rtol=1e-12)
    np.testing.assert_allclose(res["flat"].to_numpy(), CASH / 252, rtol=1e-15)
    plain = run_group_backtest(prices, weights, FREE).returns
    assert (plain["flat"] == 0.0).all() and not np.allclose(plain["ls"], res["ls"], rtol=0, atol=1e-7)


def test_group_of_one_ticker_carries_like_the_single_backtest():
    from lstmbt.backtest.portfolio import run_group_backtest

    cols = {"b": [1, -1, 0, 0.5, 0.5, -0.5, 1]}
    cfg = BacktestConfig(fee_rate=0.001, slippage=0.0005, cash_rate=CASH, borrow_rate=BORROW)
    single = run_backtest(_prices(), _positions(**cols), cfg).returns["b"]
    group = run_group_backtest({"X": _prices()}, _group_weights(b={"X": cols["b"]}), cfg).returns["b"]
    np.testing.assert_allclose(group.to_numpy(), single.to_numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("key, value", [("cash_rate", 2), ("borrow_rate", -0.01), ("cash_rate", 1.0)])
def test_rate_out_of_range_is_one_line(key, value):
    from lstmbt.backtest.config import RunConfig
    from lstmbt.backtest.errors import ConfigError

    with pytest.raises(ConfigError) as excinfo:
        RunConfig.resolve(overrides={f"backtest.{key}": value})
    message = str(excinfo.value)
    assert "\n" not in message and f"backtest.{key}" in message and "< 1.0" in message and "0.02 is 2%/yr" in message
    assert BacktestConfig(cash_rate=0.99, borrow_rate=0.0).cash_rate == 0.99  # just below the bound is fine


@pytest.mark.parametrize("setting, words", [
    ("backtest.cash_rate=2", ("backtest.cash_rate", "out of range", "2%/yr")),
    ("backtest.borrow_rate=-0.01", ("backtest.borrow_rate", "out of range", "2%/yr")),
    ("backtest.rebalance_band=1.5", ("backtest.rebalance_band = 1.5 is out of range",)),
    ("backtest.rebalance_band=-0.1", ("backtest.rebalance_band", "must be >= 0.0 and <= 1.0")),
    ("backtest.rebalance_bnd=0.1", ("did you mean 'backtest.rebalance_band'",)),
])
def test_bad_backtest_key_through_the_cli_is_one_error_line(setting, words, tmp_path, run_cli):
    parent = tmp_path / "runs"
    parent.mkdir()
    (parent / "keep.txt").write_text("keep me")
    code, out, err = run_cli(["run", "--set", setting, "--out", str(parent / "out")])
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(word in last for word in words), last
    assert [p.name for p in parent.iterdir()] == ["keep.txt"] and (parent / "keep.txt").read_text() == "keep me"
