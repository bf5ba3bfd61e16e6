"""The look-ahead alarm: the second line of defence behind the timing rule (pure functions).

The timing rule keeps lstmbt's own features, models and strategies from seeing past the decision
day, but a user's feature, plug-in or strategy rule (``strategy.custom``) can still read the
future from somewhere else, say the CSV on disk. What it gains then is too good to be true for
daily prices, and the run says so first, as a line starting ``LOOK-AHEAD SUSPECTED``:

- a model whose calls are right on more than ``TOO_GOOD_HIT_RATE`` of days, and
  ``LOOKAHEAD_MARGIN`` more than the better constant guess (``scoring.run_warnings``);
- a strategy whose positions do the same with the next day's move (``position_calls``: a long
  position calls "up", a short one "down", flat calls nothing), over at least
  ``MIN_CALLED_DAYS`` days;
- a strategy whose returns are implausible for daily bars (``implausible_sharpe``): an
  annualised Sharpe ratio above ``IMPLAUSIBLE_SHARPE`` and ``SHARPE_MARGIN`` above buy-and-hold's,
  over at least ``MIN_SHARPE_DAYS`` out-of-sample days, on a series whose buy-and-hold is not
  itself above ``IMPLAUSIBLE_SHARPE``.
"""

from __future__ import annotations

import math
from typing import Any, Collection

import numpy as np
import pandas as pd

from lstmbt.models.key import BENCHMARK

#: a daily hit rate above this is treated as a sign of look-ahead, not of skill ...
TOO_GOOD_HIT_RATE = 0.9
#: ... when it is also at least this far above the better constant guess, max(base, 1 - base):
#: a series that rises on 99.9% of days is called right by always-up without any look-ahead
LOOKAHEAD_MARGIN = 0.10
#: a strategy's positions are judged as calls once they call this many days (held, and the price
#: moved): an honest 60% caller is right on 28 of 30 days with probability below 1 in 20,000
MIN_CALLED_DAYS = 30
#: an annualised Sharpe ratio no honest strategy sustains on one instrument's daily bars net of
#: costs: published daily strategies report 1 to 2, the famous outliers about 3 ...
IMPLAUSIBLE_SHARPE = 5.0
#: ... when it is also this far above buy-and-hold's, which a calm bull year (S&P 500 in 2017:
#: about 4) or a money-market-like series (tens) can reach by holding alone ...
SHARPE_MARGIN = 3.0
#: ... over at least a year of days: the annualised Sharpe of n days has a standard error of about
#: sqrt(252 / n), 1 over a year, so an honest Sharpe of 1.5 passes 5 by chance about once in 4,000
MIN_SHARPE_DAYS = 252


def lookahead_suspected(hit_rate: float, base_rate: float) -> bool:
    """Whether a hit rate is too good to be true: above ``TOO_GOOD_HIT_RATE`` and at least
    ``LOOKAHEAD_MARGIN`` above the better constant guess on the same days."""
    best = max(base_rate, 1.0 - base_rate)
    return hit_rate > TOO_GOOD_HIT_RATE and hit_rate - best >= LOOKAHEAD_MARGIN - 1e-12  # 0.95 - 0.85 is 0.0999...


def position_calls(position: np.ndarray, move: np.ndarray) -> tuple[float, float, int]:
    """(hit rate, base rate, days) of positions read as calls of the next day's direction.

    ``position[k]``: the target position decided after the close of day k; ``move[k]``: the
    market's return over the bar that position is held (buy-and-hold's row k of ``returns``,
    close k to close k+1). Only days with a position and a move count; the hit rate is the share
    on which the position's sign is the move's, the base rate the share of up moves among them.
    """
    position, move = np.asarray(position, dtype=np.float64), np.asarray(move, dtype=np.float64)
    called = (position != 0) & (move != 0) & np.isfinite(position) & np.isfinite(move)
    days = int(called.sum())
    if not days:
        return math.nan, math.nan, 0
    hit = float(np.mean(np.sign(position[called]) == np.sign(move[called])))
    return hit, float(np.mean(move[called] > 0)), days


def implausible_sharpe(sharpe: float, benchmark_sharpe: float, days: int) -> bool:
    """Whether an annualised Sharpe ratio of daily returns is implausible (see the module's constants).

    Not judged where buy-and-hold itself is above ``IMPLAUSIBLE_SHARPE``: such a series (a
    money-market fund, a smooth synthetic one) is no ordinary market, and a strategy that is flat
    on one of its few down days multiplies its Sharpe without seeing anything.
    """
    ordinary = not math.isfinite(benchmark_sharpe) or benchmark_sharpe <= IMPLAUSIBLE_SHARPE
    return (days >= MIN_SHARPE_DAYS and ordinary and math.isfinite(sharpe) and sharpe > IMPLAUSIBLE_SHARPE
            and (not math.isfinite(benchmark_sharpe) or sharpe - benchmark_sharpe > SHARPE_MARGIN))


def position_alarms(positions: pd.DataFrame, returns: pd.DataFrame, metrics: dict[str, dict[str, Any]],
                    rule: str | None = None, flagged: Collection[str] = ()) -> list[str]:
    """``LOOK-AHEAD SUSPECTED`` lines for the strategies whose positions or returns are too good.

    ``positions``/``returns``: a run's, row k of ``returns`` being the bar held after decision day
    k; ``metrics``: its ``metrics.json`` (the Sharpe ratios). ``rule``: the ``strategy.custom``
    value, which made every position but buy-and-hold's: one line then names it and every
    strategy it flags; without one, a line per strategy. ``flagged``: strategies already named by
    the models' hit-rate alarm, not named twice.
    """
    move = returns[BENCHMARK].to_numpy()
    findings = {}
    for name in positions.columns:
        if name == BENCHMARK or name in flagged:
            continue
        finding = _finding(positions[name].to_numpy(), move, metrics.get(name, {}), metrics.get(BENCHMARK, {}),
                           len(positions))
        if finding:
            findings[name] = finding
    if not findings:
        return []
    if rule is not None:
        named = {finding: _and([n for n, f in findings.items() if f == finding]) for finding in findings.values()}
        return [f"LOOK-AHEAD SUSPECTED: strategy.custom rule {rule} makes positions too good to be true for daily "
                f"prices ({'; '.join(f'{names}: {finding}' for finding, names in named.items())}); check the rule for "
                "data from after the decision day (a file read from disk, a shifted column)."]
    return [f"LOOK-AHEAD SUSPECTED: the positions of {name}: {finding}, too good to be true for daily prices; check "
            "every feature and the strategy for data from after the decision day."
            for name, finding in findings.items()]


def _finding(position: np.ndarray, move: np.ndarray, entry: dict[str, Any], benchmark: dict[str, Any],
             days: int) -> str:
    """What is too good about one strategy, in words ("" when nothing is)."""
    hit, base, called = position_calls(position, move)
    if called >= MIN_CALLED_DAYS and lookahead_suspected(hit, base):
        return (f"right on {hit:.1%} of next-day moves over the {called} days held (always "
                f"{'up' if base >= 0.5 else 'down'}: {max(base, 1 - base):.1%})")
    sharpe, bench = _number(entry.get("sharpe")), _number(benchmark.get("sharpe"))
    if implausible_sharpe(sharpe, bench, days):
        return (f"a Sharpe ratio of {sharpe:.2f} over {days} days (buy-and-hold {bench:.2f}; above "
                f"{IMPLAUSIBLE_SHARPE:g}, and {SHARPE_MARGIN:g} above buy-and-hold, is implausible for daily bars)")
    return ""


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _number(value: Any) -> float:
    """A metric as a float; NaN for a missing one (a flat strategy's Sharpe is None once saved)."""
    return math.nan if value is None else float(value)
