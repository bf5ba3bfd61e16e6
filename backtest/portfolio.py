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


@dataclass(frozen=True)
class BacktestResult:
    """Daily net returns per strategy plus trade counts and costs.

    ``returns``: index = the bars on which positions are held (decision day + 1 onward), one
    column per strategy; each value is that bar's net return as a fraction.
    ``n_trades``: round trips per strategy (a position still open at the end counts).
    ``fees_paid``/``slippage_paid``: fees and the value lost to slippage, each as a fraction of
    the initial capital.
    """

    returns: pd.DataFrame
    n_trades: dict[str, int]
    fees_paid: dict[str, float]
    slippage_paid: dict[str, float]


def run_backtest(prices: pd.DataFrame, positions: pd.DataFrame, cfg: BacktestConfig) -> BacktestResult:
    """Simulate each column of ``positions`` (target exposure in [-1, 1] per decision day).

    ``prices`` must contain every decision day and the bar after the last one.
    """
    import vectorbt as vbt

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
    executed = positions.reindex(bars.index).shift(1)  # the one-bar lag: decided at t, filled at t + 1
    size = executed.where(executed.ne(executed.shift(1)))  # trade only when the target changes
    fill = bars["Open"] if cfg.execution == "next_open" else bars["Close"]
    columns = positions.columns
    close = _broadcast(bars["Close"], columns)
    pf = vbt.Portfolio.from_orders(
        close=close,
        size=size,
        size_type="targetpercent",
        price=_broadcast(fill, columns),
        fees=cfg.fee_rate,
        slippage=cfg.slippage,
        init_cash=INIT_CASH,
        freq="1D",
    )
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
    )


def _broadcast(series: pd.Series, columns: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(np.repeat(series.to_numpy()[:, None], len(columns), axis=1), index=series.index,
                        columns=columns)


def _slippage_cost(orders: np.ndarray, quoted: np.ndarray, n_columns: int) -> np.ndarray:
    """Value lost to slippage per column: |fill price - quoted price| * size, summed.

    ``orders``: vectorbt order records; ``quoted``: the fill price before slippage, per bar.
    """
    lost = np.abs(orders["price"] - quoted[orders["idx"]]) * orders["size"]
    return np.bincount(orders["col"], weights=lost, minlength=n_columns)
