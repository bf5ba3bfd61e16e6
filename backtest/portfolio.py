"""Backtests with vectorbt: the only module that imports it, and the one place the execution lag lives.

A target position dated t (decided after the close of t) is filled on bar t + 1: at its open
(``next_open``, the default) or at its close (``next_close``). Same-bar fills are not offered.
Orders are sent when the target changes, and again when the holding has drifted from its target by
more than ``backtest.rebalance_band`` (``backtest.rebalance``); fees and slippage apply to every fill.
Interest on idle cash and the fee to borrow shorts are added to vectorbt's returns (``add_carry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lstmbt.backtest import metrics as m
from lstmbt.backtest.config import BacktestConfig
from lstmbt.backtest.metrics import PERIODS_PER_YEAR
from lstmbt.backtest.rebalance import rebalance_bars

INIT_CASH = 1.0


#: fee levels of the cost table, in basis points per side
FEE_LEVELS_BPS = (0, 5, 10, 20, 50)
TRADE_COLUMNS = ("strategy", "direction", "entry_date", "exit_date", "entry_price", "exit_price", "return",
                 "pnl", "holding_days", "status")


@dataclass(frozen=True)
class BacktestResult:
    """Daily net returns per strategy plus trades and costs.

    ``returns``: index = the bars on which positions are held (decision day + 1 onward), one
    column per strategy; each value is that bar's net return as a fraction, carry included
    (``add_carry``: interest on idle cash, less the fee to borrow shorts).
    ``n_trades``: round trips per strategy (a position still open at the end counts; a
    rebalancing sale closes part of a position as a trade of its own).
    ``fees_paid``/``slippage_paid``: fees and the value lost to slippage, each as a fraction of
    the initial capital.
    ``trades``: one row per trade (TRADE_COLUMNS): fill dates, fill prices after slippage, net
    ``return`` as a fraction of the entry value, ``pnl`` as a fraction of initial capital,
    ``holding_days`` in bars, ``status`` open or closed (an open trade is valued at the last close).
    """

    returns: pd.DataFrame
    n_trades: dict[str, int]
    fees_paid: dict[str, float]
    slippage_paid: dict[str, float]
    trades: pd.DataFrame


def run_backtest(prices: pd.DataFrame, positions: pd.DataFrame, cfg: BacktestConfig) -> BacktestResult:
    """Simulate each column of ``positions`` (target exposure in [-1, 1] per decision day).

    ``prices`` must contain every decision day and the bar after the last one.
    """
    bars = _execution_bars(prices, positions)
    columns = positions.columns
    fill = bars["Open"] if cfg.execution == "next_open" else bars["Close"]
    pf = _simulate(bars, positions, fill, np.full(len(columns), cfg.fee_rate), cfg.slippage, cfg.rebalance_band)
    returns = _carried(pf, pf.returns().iloc[1:], cfg.cash_rate, cfg.borrow_rate)  # bar `first` holds nothing yet
    orders = pf.orders.values  # raw records (col, idx, size, price, fees); records_readable warns on pandas 3
    fees = np.bincount(orders["col"], weights=orders["fees"], minlength=len(columns))
    slip = _slippage_cost(orders, fill.to_numpy(), len(columns))
    trades = pf.trades.count()
    return BacktestResult(
        returns=returns,
        n_trades={c: int(trades[c]) for c in columns},
        fees_paid={c: float(fees[i]) / INIT_CASH for i, c in enumerate(columns)},
        slippage_paid={c: float(slip[i]) / INIT_CASH for i, c in enumerate(columns)},
        trades=_trade_frame(pf.trades.values, bars.index, columns),
    )


def cost_sweep(prices: pd.DataFrame, positions: pd.DataFrame, cfg: BacktestConfig,
               fee_levels_bps: tuple[int, ...] = FEE_LEVELS_BPS,
               periods_per_year: int = PERIODS_PER_YEAR) -> pd.DataFrame:
    """Each strategy re-simulated at every fee level (bps per side), slippage and carry as configured,
    annualised with ``periods_per_year`` bars a year.

    One vectorbt call over (fee level x strategy) columns. Returns a long frame with columns
    fee_bps, strategy, total_return, cagr, sharpe, max_drawdown, fees_paid (fractions).
    """
    bars = _execution_bars(prices, positions)
    wide = pd.concat({bps: positions for bps in fee_levels_bps}, axis=1)
    fees = np.repeat(np.asarray(fee_levels_bps, dtype=np.float64) / 1e4, positions.shape[1])
    fill = bars["Open"] if cfg.execution == "next_open" else bars["Close"]
    pf = _simulate(bars, wide.set_axis(range(wide.shape[1]), axis=1), fill, fees, cfg.slippage, cfg.rebalance_band)
    returns = _carried(pf, pf.returns().iloc[1:], cfg.cash_rate, cfg.borrow_rate).to_numpy()
    orders = pf.orders.values
    paid = np.bincount(orders["col"], weights=orders["fees"], minlength=wide.shape[1]) / INIT_CASH
    return pd.DataFrame([cost_row(bps, strategy, returns[:, i], paid[i], periods_per_year)
                         for i, (bps, strategy) in enumerate(wide.columns)])


def cost_row(bps: int, strategy: str, returns: np.ndarray, fees_paid: float,
             periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, Any]:
    """One row of a cost sweep: a strategy's daily ``returns`` at ``bps`` per side, summarised
    (annualised with ``periods_per_year`` bars a year)."""
    return {"fee_bps": int(bps), "strategy": strategy, "total_return": m.total_return(returns),
            "cagr": m.cagr(returns, periods_per_year), "sharpe": m.sharpe(returns, periods_per_year),
            "max_drawdown": m.max_drawdown(returns), "fees_paid": float(fees_paid)}


def run_backtest_variants(prices: pd.DataFrame, positions: pd.DataFrame, fee_rates: np.ndarray,
                          slippages: np.ndarray, executions: list[str], *, cash_rates: np.ndarray | None = None,
                          borrow_rates: np.ndarray | None = None,
                          rebalance_bands: np.ndarray | None = None) -> BacktestResult:
    """``run_backtest`` of every column with its own costs and fill, in one vectorbt call.

    Column i pays ``fee_rates[i]`` (fraction of traded value per side), loses ``slippages[i]``
    (fraction of price per fill), fills at ``executions[i]`` (``next_open`` or ``next_close``) and
    earns ``cash_rates[i]`` and pays ``borrow_rates[i]`` (annual fractions; None = 0 everywhere)
    and rebalances beyond ``rebalance_bands[i]`` (None = the ``BacktestConfig`` default), so it
    equals ``run_backtest(prices, positions.iloc[:, [i]], BacktestConfig(...))`` of those
    settings. Column names must be unique. This is how ``lstmbt sweep`` scores signal-only trials.
    """
    import vectorbt as vbt

    bars = _execution_bars(prices, positions)
    columns, n = positions.columns, positions.shape[1]
    at_open = np.asarray([e == "next_open" for e in executions], dtype=bool)
    quoted = np.where(at_open[None, :], bars["Open"].to_numpy()[:, None], bars["Close"].to_numpy()[:, None])

    def per_column(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(np.tile(np.asarray(values, dtype=np.float64), (len(bars), 1)), index=bars.index,
                            columns=columns)

    bands = np.full(n, BacktestConfig().rebalance_band) if rebalance_bands is None else rebalance_bands
    pf = vbt.Portfolio.from_orders(
        close=_broadcast(bars["Close"], columns), size=held_orders(positions, bars, quoted, bands),
        size_type="targetpercent", price=pd.DataFrame(quoted, index=bars.index, columns=columns),
        fees=per_column(fee_rates), slippage=per_column(slippages), init_cash=INIT_CASH, freq="1D",
    )
    orders = pf.orders.values
    fees = np.bincount(orders["col"], weights=orders["fees"], minlength=n)
    lost = np.abs(orders["price"] - quoted[orders["idx"], orders["col"]]) * orders["size"]
    slip = np.bincount(orders["col"], weights=lost, minlength=n)
    trades = pf.trades.count().to_numpy()
    return BacktestResult(
        returns=_carried(pf, pf.returns().iloc[1:],  # bar `first` holds nothing yet
                         0.0 if cash_rates is None else cash_rates, 0.0 if borrow_rates is None else borrow_rates),
        n_trades={c: int(trades[i]) for i, c in enumerate(columns)},
        fees_paid={c: float(fees[i]) / INIT_CASH for i, c in enumerate(columns)},
        slippage_paid={c: float(slip[i]) / INIT_CASH for i, c in enumerate(columns)},
        trades=_trade_frame(pf.trades.values, bars.index, columns),
    )


@dataclass(frozen=True)
class GroupBacktestResult:
    """Daily net returns of portfolios over several tickers, and what they paid.

    ``returns``: index = the bars after the first decision day up to the bar after the last, one
    column per strategy: the net return of that strategy's whole book (its tickers share one pool
    of cash), carry included (``add_carry`` on the whole book). ``n_orders``: fills per strategy.
    ``n_trades``: round trips over all its tickers (a position still open at the end counts).
    ``fees_paid``/``slippage_paid``: fractions of the initial capital. ``trades``: one row per
    trade of one ticker (TRADE_COLUMNS with ``ticker`` after ``strategy``), as ``BacktestResult``'s;
    ``pnl`` is a fraction of the strategy's initial capital, ``holding_days`` counts bars of the
    tickers' joint calendar, and a rebalancing sale closes part of a position as a trade of its own.
    """

    returns: pd.DataFrame
    n_orders: dict[str, int]
    n_trades: dict[str, int]
    fees_paid: dict[str, float]
    slippage_paid: dict[str, float]
    trades: pd.DataFrame


def run_group_backtest(prices: dict[str, pd.DataFrame], weights: pd.DataFrame,
                       cfg: BacktestConfig) -> GroupBacktestResult:
    """One portfolio per strategy over several tickers (vectorbt ``group_by``, ``cash_sharing=True``).

    Parameters
    ----------
    prices : dict[str, pd.DataFrame]
        OHLCV per ticker, each on its own trading days.
    weights : pd.DataFrame
        Target weights decided after the close of each day: index = every day of the tickers'
        joint calendar from the first decision day to the last; columns = (strategy, ticker)
        MultiIndex, each strategy's columns together; values = fractions of the strategy's
        portfolio value (negative = short).
    cfg : BacktestConfig
        Fees and slippage per fill, the fill (``next_open`` or ``next_close``), and the carry rates.

    Notes
    -----
    A ticker trades on its own bars only: a weight decided at t is filled at the ticker's next bar
    after t (``lagged_orders``), and only when its target changed; it is then brought to exactly
    that fraction of the portfolio's value, sells before buys. In between, holdings drift with
    prices: ``backtest.rebalance_band`` applies to single-ticker backtests only. A ticker still
    held when its prices end is sold at its last close on the next day of the calendar. Every
    fill pays ``fee_rate`` and loses ``slippage``.
    """
    import vectorbt as vbt

    bars = _joint_bars(prices, weights.index)
    close, fill, tradeable = _ticker_panels(prices, bars, cfg.execution)
    tickers, strategies = weights.columns.get_level_values(1), weights.columns.get_level_values(0)

    def wide(panel: pd.DataFrame) -> pd.DataFrame:
        return panel[tickers].set_axis(weights.columns, axis=1)

    pf = vbt.Portfolio.from_orders(
        close=wide(close), size=lagged_orders(weights, bars, wide(tradeable)), size_type="targetpercent",
        price=wide(fill), fees=cfg.fee_rate, slippage=cfg.slippage, init_cash=INIT_CASH,
        group_by=strategies, cash_sharing=True, call_seq="auto", freq="1D",
    )
    names = list(dict.fromkeys(strategies))
    group = pd.Index(names).get_indexer(strategies)  # column -> its strategy's position in names
    orders, trades = pf.orders.values, pf.trades.values
    lost = np.abs(orders["price"] - wide(fill).to_numpy()[orders["idx"], orders["col"]]) * orders["size"]

    def total(cols: np.ndarray, values: np.ndarray | None = None) -> dict[str, float]:
        return dict(zip(names, np.bincount(group[cols], weights=values, minlength=len(names)).tolist()))

    returns = _by_name(pf.returns(), names).iloc[1:]  # bar `first` holds nothing yet
    returns = _carried(pf, returns, cfg.cash_rate, cfg.borrow_rate, names, group)
    return GroupBacktestResult(
        returns=returns,
        n_orders={n: int(v) for n, v in total(orders["col"]).items()},
        n_trades={n: int(v) for n, v in total(trades["col"]).items()},
        fees_paid={n: v / INIT_CASH for n, v in total(orders["col"], orders["fees"]).items()},
        slippage_paid={n: v / INIT_CASH for n, v in total(orders["col"], lost).items()},
        trades=_trade_frame(trades, bars, strategies, tickers=tickers),
    )


def add_carry(returns: pd.DataFrame, long_value: np.ndarray, short_value: np.ndarray, equity: np.ndarray,
              cash_rate: float | np.ndarray, borrow_rate: float | np.ndarray) -> pd.DataFrame:
    """Net returns plus interest on capital not held long, less the fee to borrow shorts.

    Per bar and column, with ``c = (cash_rate * (equity - long_value) - borrow_rate * short_value)
    / (252 * equity)``: ``r + c * (1 + r)``. That is, a year is 252 bars, and the carry accrues on
    the end-of-day book and is credited at the bar's close (so it is ``c`` of the close's equity).
    The book's weights stay those of the simulation, as if the carry were reinvested pro rata.

    Parameters
    ----------
    returns : pd.DataFrame
        Net returns per bar (fractions), bars x columns.
    long_value, short_value, equity : np.ndarray
        Shaped like ``returns``: the market value of the long holdings, of the short holdings
        (>= 0), and the equity, each at the bar's close after that bar's fill.
    cash_rate, borrow_rate : float or np.ndarray
        Annual rates as fractions (0.02 = 2%/yr): one for every column, or one per column.

    Returns
    -------
    pd.DataFrame
        ``returns`` with the carry added. Capital not held long (``equity - long_value``: idle
        cash and the collateral of shorts) earns ``cash_rate``; short-sale proceeds earn nothing;
        the market value of shorts pays ``borrow_rate``. A bar whose equity is <= 0 gets none.
        A column whose two rates are 0 is returned bit for bit.
    """
    shape = (returns.shape[1],)
    cash = np.broadcast_to(np.asarray(cash_rate, dtype=np.float64), shape)
    borrow = np.broadcast_to(np.asarray(borrow_rate, dtype=np.float64), shape)
    charged = (cash != 0.0) | (borrow != 0.0)
    if not charged.any():
        return returns

    carry = np.divide(cash * (equity - long_value) - borrow * short_value, PERIODS_PER_YEAR * equity,
                      out=np.zeros(returns.shape), where=equity > 0)  # a fraction of the close's equity
    values = returns.to_numpy(dtype=np.float64, copy=True)
    values[:, charged] += carry[:, charged] * (1.0 + values[:, charged])  # per unit of the previous close
    return pd.DataFrame(values, index=returns.index, columns=returns.columns)


def _carried(pf, returns: pd.DataFrame, cash_rate: float | np.ndarray, borrow_rate: float | np.ndarray,
             names: list[str] | None = None, group: np.ndarray | None = None) -> pd.DataFrame:
    """``add_carry`` of the portfolio ``pf``'s book; with both rates 0, ``returns`` untouched (no book read)."""
    if not (np.any(np.asarray(cash_rate) != 0.0) or np.any(np.asarray(borrow_rate) != 0.0)):
        return returns
    return add_carry(returns, *_book(pf, names, group), cash_rate, borrow_rate)


def _book(pf, names: list[str] | None = None,
          group: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Long value, short value (>= 0) and equity at each bar's close after its fill, bar 1 on.

    Per column of an ungrouped portfolio; for a grouped one (``names``: the strategies, ``group``:
    each column's position in ``names``), summed over each strategy's tickers, with its book's equity.
    """
    held = pf.asset_value(group_by=False).to_numpy()[1:]
    long_, short = np.maximum(held, 0.0), np.maximum(-held, 0.0)
    if names is None:
        return long_, short, np.asarray(pf.value(), dtype=np.float64).reshape(len(held) + 1, -1)[1:]
    books = [group == i for i in range(len(names))]
    return (np.stack([long_[:, book].sum(axis=1) for book in books], axis=1),
            np.stack([short[:, book].sum(axis=1) for book in books], axis=1),
            _by_name(pf.value(), names).to_numpy()[1:])


def _by_name(frame: pd.DataFrame | pd.Series, names: list[str]) -> pd.DataFrame:
    """A grouped vectorbt result with one column per name, in ``names`` order."""
    if isinstance(frame, pd.Series):  # vectorbt squeezes a single group to a Series
        frame = frame.to_frame(names[0])
    return frame[names]


def _joint_bars(prices: dict[str, pd.DataFrame], days: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The tickers' joint calendar from the first decision day to the bar after the last."""
    calendar = pd.DatetimeIndex(sorted(set().union(*(frame.index for frame in prices.values()))))
    start, after = calendar.searchsorted(days[0]), calendar.searchsorted(days[-1], side="right")
    if after >= len(calendar):
        raise ValueError(f"no bar after the last decision day {days[-1].date()} to execute on")
    bars = calendar[start:after + 1]
    if not bars[:-1].equals(pd.DatetimeIndex(days)):
        raise ValueError("weights must be dated on every day of the tickers' joint calendar from the first "
                         "decision day to the last")
    return bars


def _ticker_panels(prices: dict[str, pd.DataFrame], bars: pd.DatetimeIndex,
                   execution: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per ticker on ``bars``: the close to value holdings at, the fill price, and whether it can trade.

    A ticker trades on its own bars at its own quote, and after its last bar at its last close
    (to sell what it still holds). Before its first bar it holds nothing, so its placeholder
    close of 1.0 values nothing and brings no later price forward.
    """
    close, fill, tradeable = {}, {}, {}
    for name, frame in prices.items():
        has_bar = bars.isin(frame.index)
        ended = bars > frame.index[-1]
        last_close = frame["Close"].reindex(bars, method="ffill")  # the latest close known at each bar
        quote = frame["Open" if execution == "next_open" else "Close"].reindex(bars)
        fill[name] = quote.where(has_bar, last_close.where(ended))
        tradeable[name] = pd.Series(has_bar | ended, index=bars)
        close[name] = last_close.fillna(1.0)
    return pd.DataFrame(close), pd.DataFrame(fill), pd.DataFrame(tradeable)


def _execution_bars(prices: pd.DataFrame, positions: pd.DataFrame) -> pd.DataFrame:
    """The bars from the first decision day to the one after the last, checked for fills."""
    if positions.empty:
        raise ValueError("positions is empty: there are no decision days to backtest")
    if ((positions.abs() > 1.0 + 1e-12) | positions.isna()).any().any():
        raise ValueError("positions must be finite target exposures in [-1, 1]")
    first, last = positions.index[0], positions.index[-1]
    after = prices.index.searchsorted(last, side="right")
    if after >= len(prices):
        raise ValueError(f"no bar after the last decision day {last.date()} to execute on")
    bars = prices.loc[first : prices.index[after]]
    if not positions.index.isin(bars.index).all() or len(bars) != len(positions) + 1:
        raise ValueError("positions must be dated on consecutive price bars")
    quotes = bars[["Open", "Close"]]
    if not (np.isfinite(quotes.to_numpy()) & (quotes.to_numpy() > 0)).all():  # vectorbt skips such fills
        raise ValueError("Open and Close must be finite and > 0 on every bar from the first decision day "
                         "to the bar after the last; clean the prices (backtest.data.load_prices checks them)")
    return bars


def _simulate(bars: pd.DataFrame, positions: pd.DataFrame, fill: pd.Series, fees: np.ndarray, slippage: float,
              band: float):
    """The vectorbt portfolio of ``positions`` with one fee rate per column, rebalanced beyond ``band``."""
    import vectorbt as vbt

    columns = positions.columns
    return vbt.Portfolio.from_orders(
        close=_broadcast(bars["Close"], columns),
        size=held_orders(positions, bars, fill.to_numpy()[:, None], band),
        size_type="targetpercent",
        price=_broadcast(fill, columns),
        fees=pd.DataFrame(np.tile(fees, (len(bars), 1)), index=bars.index, columns=columns),
        slippage=slippage,
        init_cash=INIT_CASH,
        freq="1D",
    )


def lagged_orders(targets: pd.DataFrame, bars: pd.DatetimeIndex, tradeable: pd.DataFrame | None = None) -> pd.DataFrame:
    """Order sizes per bar and column (NaN = no order): the one-bar execution lag, in one place.

    A target dated t (decided after the close of t) is executed on the first bar after t on which
    its column can trade (``tradeable``, bars x columns; every bar when None), and an order is sent
    only when that executed target differs from the column's previous executed target.
    """
    executed = targets.reindex(bars).shift(1)  # the one-bar lag: decided at t, filled at t + 1
    if tradeable is not None:
        executed = executed.where(tradeable)  # no bar to trade on: the latest target waits for the next one
    return executed.where(executed.ne(executed.ffill().shift(1)))  # trade only when the target changes


def held_orders(targets: pd.DataFrame, bars: pd.DataFrame, fill: np.ndarray, band: np.ndarray | float) -> pd.DataFrame:
    """``lagged_orders`` of one ticker's ``targets``, plus the orders that restore a target whose
    holding drifted beyond ``band`` (``backtest.rebalance.rebalance_bars``; ``fill``: the fill
    price per bar, bars x 1 or bars x columns)."""
    orders = lagged_orders(targets, bars.index)
    again = rebalance_bars(orders.to_numpy(), fill, bars["Close"].to_numpy()[:, None], band)
    return orders.mask(again, orders.ffill()) if again.any() else orders


def _trade_frame(records: np.ndarray, dates: pd.DatetimeIndex, columns: pd.Index,
                 tickers: pd.Index | None = None) -> pd.DataFrame:
    """vectorbt trade records as TRADE_COLUMNS, in entry order; with ``tickers`` (each column's
    ticker, for a grouped portfolio), a ``ticker`` column after ``strategy``."""
    frame = pd.DataFrame({
        "strategy": np.asarray(columns, dtype=object)[records["col"]],
        **({} if tickers is None else {"ticker": np.asarray(tickers, dtype=object)[records["col"]]}),
        "direction": np.where(records["direction"] == 0, "long", "short"),
        "entry_date": dates[records["entry_idx"]],
        "exit_date": dates[records["exit_idx"]],
        "entry_price": records["entry_price"],
        "exit_price": records["exit_price"],
        "return": records["return"],
        "pnl": records["pnl"] / INIT_CASH,
        "holding_days": (records["exit_idx"] - records["entry_idx"]).astype(np.int64),
        "status": np.where(records["status"] == 0, "open", "closed"),
    })
    return frame.sort_values(["entry_date", "strategy"], kind="stable").reset_index(drop=True)


def _broadcast(series: pd.Series, columns: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(np.repeat(series.to_numpy()[:, None], len(columns), axis=1), index=series.index,
                        columns=columns)


def _slippage_cost(orders: np.ndarray, quoted: np.ndarray, n_columns: int) -> np.ndarray:
    """Value lost to slippage per column: |fill price - quoted price| * size, summed.

    ``orders``: vectorbt order records; ``quoted``: the fill price before slippage, per bar.
    """
    lost = np.abs(orders["price"] - quoted[orders["idx"]]) * orders["size"]
    return np.bincount(orders["col"], weights=lost, minlength=n_columns)
