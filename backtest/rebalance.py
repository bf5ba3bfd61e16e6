"""When a held target position has drifted far enough to be restored (pure numpy, no vectorbt).

Between orders a position drifts with the price: a 50% long in a rising market becomes 55%, a
100% short becomes more than 100% short. ``rebalance_bars`` says on which bars an order must go
out again to bring the holding back to its target, so the position held is the one decided.
"""

from __future__ import annotations

import numpy as np

NEVER = 1.0
"""A band of this or more turns rebalancing off: orders go out only when the target changes."""


def rebalance_bars(orders: np.ndarray, fill: np.ndarray, close: np.ndarray, band: np.ndarray | float) -> np.ndarray:
    """Bars on which a target whose holding drifted beyond ``band`` is re-sent as an order.

    Parameters
    ----------
    orders : np.ndarray
        Bars x columns: the target fraction of equity ordered on each bar, NaN where no order
        goes out (``backtest.portfolio.lagged_orders``). An order brings the holding to exactly
        its target at that bar's fill price.
    fill, close : np.ndarray
        Bars x columns (or bars x 1): the price each bar's order fills at, and the bar's close.
    band : np.ndarray or float
        Per column (or one for all): the largest allowed |held weight - target|, in units of
        equity (0.05 = five percentage points). ``NEVER`` or more: no rebalancing.

    Returns
    -------
    np.ndarray
        Bars x columns, bool: True on bar j + 1 when, at the close of bar j, the weight of a
        holding bought at its target (valued at that close, with the rest of the equity in
        cash, costs ignored) differs from the target by more than ``band``, and no order goes
        out on bar j + 1 anyway. The decision uses closes up to bar j only; the order fills at
        bar j + 1's fill price and restores the target there.
    """
    orders = np.asarray(orders, dtype=np.float64)
    shape = orders.shape
    fill, close = np.broadcast_to(fill, shape), np.broadcast_to(close, shape)
    bands = np.broadcast_to(np.asarray(band, dtype=np.float64), (shape[1],))
    out = np.zeros(shape, dtype=bool)
    for col in range(shape[1]):
        if bands[col] < NEVER:
            _column(orders[:, col], fill[:, col], close[:, col], bands[col], out[:, col])
    return out


def _column(orders: np.ndarray, fill: np.ndarray, close: np.ndarray, band: float, out: np.ndarray) -> None:
    """``rebalance_bars`` of one column, written into ``out``."""
    placed = list(np.flatnonzero(~np.isnan(orders))) + [len(orders)]
    for start, end in zip(placed[:-1], placed[1:]):
        anchor, target = start, orders[start]
        while target != 0.0 and end - anchor >= 2:  # a flat book cannot drift; a 1-bar hold has no bar to fix
            j = _first_breach(target, fill[anchor], close[anchor:end - 1], band)
            if j is None:
                break
            anchor += j + 1
            out[anchor] = True


def _first_breach(target: float, fill_price: float, closes: np.ndarray, band: float) -> int | None:
    """Index of the first close at which a holding set to ``target`` at ``fill_price`` weighs more
    than ``band`` away from it; None if none does. A book whose equity is gone is left alone."""
    held = target * closes / fill_price  # the holding's value per unit of equity at the fill
    equity = held + (1.0 - target)  # cash: what was not invested, or the short sale's proceeds on top
    with np.errstate(divide="ignore", invalid="ignore"):
        drift = np.abs(held / equity - target)
    beyond = np.flatnonzero((equity > 0) & (drift > band))
    return int(beyond[0]) if len(beyond) else None
