"""Backtests with vectorbt: the only module that imports it, and the one place the execution lag lives.

A target position dated t (decided after the close of t) is filled on bar t + 1: at its open
(``next_open``, the default) or at its close (``next_close``). Same-bar fills are not offered.
Orders are sent only when the target changes; fees and slippage apply to every fill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig

INIT_CASH = 1.0


#: fee levels of the cost table, in basis points per side
FEE_LEVELS_BPS = (0, 5, 10, 20, 50)
TRADE_COLUMNS = ("strategy", "direction", "entry_date", "exit_date", "entry_price", "exit_price", "return",
                 "pnl", "holding_days", "status")


@dataclass(frozen=True)
class BacktestResult:
    """Daily net returns per strategy plus trades and costs.

    ``returns``: index = the bars on which positions are held (decision day + 1 onward), one
    column per strategy; each value is that bar's net return as a fraction.
    ``n_trades``: round trips per strategy (a position still open at the end counts).
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
    pf = _simulate(bars, positions, fill, np.full(len(columns), cfg.fee_rate), cfg.slippage)
    returns = pf.returns().iloc[1:]  # bar `first` holds nothing yet
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
               fee_levels_bps: tuple[int, ...] = FEE_LEVELS_BPS) -> pd.DataFrame:
    """Each strategy re-simulated at every fee level (bps per side), slippage as configured.

    One vectorbt call over (fee level x strategy) columns. Returns a long frame with columns
    fee_bps, strategy, total_return, cagr, sharpe, max_drawdown, fees_paid (fractions).
    """
    from backtest import metrics as m

    bars = _execution_bars(prices, positions)
    wide = pd.concat({bps: positions for bps in fee_levels_bps}, axis=1)
    fees = np.repeat(np.asarray(fee_levels_bps, dtype=np.float64) / 1e4, positions.shape[1])
    fill = bars["Open"] if cfg.execution == "next_open" else bars["Close"]
    pf = _simulate(bars, wide.set_axis(range(wide.shape[1]), axis=1), fill, fees, cfg.slippage)
    returns = pf.returns().iloc[1:].to_numpy()
    orders = pf.orders.values
    paid = np.bincount(orders["col"], weights=orders["fees"], minlength=wide.shape[1]) / INIT_CASH
    rows = []
    for i, (bps, strategy) in enumerate(wide.columns):
        r = returns[:, i]
        rows.append({"fee_bps": int(bps), "strategy": strategy, "total_return": m.total_return(r),
                     "cagr": m.cagr(r), "sharpe": m.sharpe(r), "max_drawdown": m.max_drawdown(r),
                     "fees_paid": float(paid[i])})
    return pd.DataFrame(rows)


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


def _simulate(bars: pd.DataFrame, positions: pd.DataFrame, fill: pd.Series, fees: np.ndarray, slippage: float):
    """The vectorbt portfolio of ``positions`` with one fee rate per column."""
    import vectorbt as vbt

    executed = positions.reindex(bars.index).shift(1)  # the one-bar lag: decided at t, filled at t + 1
    size = executed.where(executed.ne(executed.shift(1)))  # trade only when the target changes
    columns = positions.columns
    return vbt.Portfolio.from_orders(
        close=_broadcast(bars["Close"], columns),
        size=size,
        size_type="targetpercent",
        price=_broadcast(fill, columns),
        fees=pd.DataFrame(np.tile(fees, (len(bars), 1)), index=bars.index, columns=columns),
        slippage=slippage,
        init_cash=INIT_CASH,
        freq="1D",
    )


def _trade_frame(records: np.ndarray, dates: pd.DatetimeIndex, columns: pd.Index) -> pd.DataFrame:
    """vectorbt trade records as TRADE_COLUMNS, in entry order."""
    frame = pd.DataFrame({
        "strategy": np.asarray(columns, dtype=object)[records["col"]],
        "direction": np.where(records["direction"] == 0, "long", "short"),
        "entry_date": dates[records["entry_idx"]],
        "exit_date": dates[records["exit_idx"]],
        "entry_price": records["entry_price"],
        "exit_price": records["exit_price"],
        "return": records["return"],
        "pnl": records["pnl"] / INIT_CASH,
        "holding_days": (records["exit_idx"] - records["entry_idx"]).astype(np.int64),
        "status": np.where(records["status"] == 0, "open", "closed"),
    }, columns=list(TRADE_COLUMNS))
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
