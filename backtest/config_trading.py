"""The trading sections of a run's config: ``[strategy]``, ``[backtest]`` and ``[portfolio]`` (``backtest.config``)."""

from __future__ import annotations

from dataclasses import dataclass

from lstmbt.backtest.checks import check_choice, check_range
from lstmbt.backtest.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """Predictions to target positions (see ``strategies``).

    ``sizing``: ``threshold`` (all-or-nothing positions) or ``confidence`` (positions that scale
    with the model's edge, capped at 1; ``threshold`` and ``cutoff`` are then unused).
    ``threshold``: go long when the predicted log return is above it. ``cutoff``: go long when
    p_up is above it. ``long_short``: take the opposite side short (below -threshold, or
    p_up below 1 - cutoff; under confidence sizing, down to -1) instead of staying flat.
    ``confidence_gain``: classification position per unit of p_up - 0.5 (10: full at p_up 0.6).
    ``return_gain``: regression position per forecast sigma, the predicted h-day log return over
    trailing daily volatility times sqrt(h) (1: full at a one-sigma forecast). ``vol_window``:
    daily log returns in that trailing volatility. ``drawdown_limit``: with the ``max_drawdown``
    target, stay long unless the predicted worst drop over the next h days is deeper than this
    fraction (0.02 = 2%), then go flat; sizing and long_short do not apply to it.
    ``custom``: a rule of your own, ``"pkg.mod:function"`` or a name given to
    ``lstmbt.register_strategy``, that replaces the built-in sizing for every model and for the
    persistence and majority baselines (``backtest.plugins`` has the protocol); the built-in
    sizing keys must then stay at their defaults. Its syntax is checked here, its import only by a
    command that trains (``RunConfig.check_plugins``), so a saved config imports nothing.
    ``vol_target``: scale every strategy's position but buy-and-hold's by vol_target / (trailing
    ``vol_window``-day volatility, annualised with 252 days), at most 1
    (``strategies.vol_target_positions``); an annual fraction, 0.10 = 10% a year; 0 = off.
    """

    sizing: str = "threshold"
    threshold: float = 0.0
    cutoff: float = 0.5
    long_short: bool = False
    confidence_gain: float = 10.0
    return_gain: float = 1.0
    vol_window: int = 21
    drawdown_limit: float = 0.02
    custom: str | None = None
    vol_target: float = 0.0

    def __post_init__(self) -> None:
        check_choice("strategy.sizing", self.sizing, ("threshold", "confidence"))
        check_range("strategy.threshold", self.threshold, 0.0)
        check_range("strategy.cutoff", self.cutoff, 0.5, 1.0, high_open=True)
        check_range("strategy.confidence_gain", self.confidence_gain, 0.0, low_open=True)
        check_range("strategy.return_gain", self.return_gain, 0.0, low_open=True)
        check_range("strategy.vol_window", self.vol_window, 2, 2520)
        check_range("strategy.drawdown_limit", self.drawdown_limit, 0.0, 1.0, low_open=True, high_open=True)
        try:
            check_range("strategy.vol_target", self.vol_target, 0.0, 1.0)
        except ConfigError as exc:  # the likely slip is a percent: say the unit
            raise ConfigError(f"{exc} (an annual fraction: 0.10 is 10% a year; 0 = off)") from None
        if self.custom is not None:
            self._check_custom()

    def _check_custom(self) -> None:
        """``custom`` is well formed, and no built-in sizing key it would silently replace is set."""
        from lstmbt.backtest.plugins import check_custom_syntax  # pandas only when a custom rule is named

        check_custom_syntax(self.custom)
        default = StrategyConfig()
        for key in ("sizing", "threshold", "cutoff", "long_short", "confidence_gain", "return_gain", "drawdown_limit"):
            if getattr(self, key) != getattr(default, key):
                raise ConfigError(f"strategy.custom replaces the built-in sizing, so strategy.{key} = "
                                  f"{getattr(self, key)!r} would be ignored; remove it or remove strategy.custom")


@dataclass(frozen=True, kw_only=True)
class BacktestConfig:
    """Execution and costs (see ``backtest.portfolio``).

    ``fee_rate``: fraction of traded value paid per side. ``slippage``: fraction of price lost
    per fill. ``execution``: ``next_open`` or ``next_close``, the fill for a position decided at
    the close of day t. ``cash_rate``: annual interest (fraction, 0.02 = 2%/yr) earned on capital
    not held long; ``borrow_rate``: annual fee (fraction) paid on the market value of shorts; both
    accrue per bar at rate / 252 (``backtest.portfolio.add_carry``), 0 = no interest, no fee.
    ``pairs``: extra head-to-head pairs for ``comparisons.json``, each ``"a:b"`` naming two
    strategies of the run (``backtest.headtohead``; the names are checked when the run's
    strategies are known). ``rebalance_band``: the largest drift of a held position from its
    target, in units of equity (0.05 = five percentage points: a 50% target is restored once it
    has drifted below 45% or above 55%), before an order restores it at the next bar's fill, with
    fees and slippage (``backtest.rebalance``); 0 = restore every bar, 1 = never (positions then
    drift between target changes). A 0/1 long-flat position cannot drift, so it is unaffected.
    Single-ticker backtests only: a universe book's weights drift between target changes.
    """

    fee_rate: float = 0.001
    slippage: float = 0.0005
    execution: str = "next_open"
    cash_rate: float = 0.0
    borrow_rate: float = 0.0
    pairs: tuple[str, ...] = ()
    rebalance_band: float = 0.05

    def __post_init__(self) -> None:
        _check_pairs(self.pairs)
        check_range("backtest.rebalance_band", self.rebalance_band, 0.0, 1.0)
        check_range("backtest.fee_rate", self.fee_rate, 0.0, 0.5)
        check_range("backtest.slippage", self.slippage, 0.0, 0.5)
        check_choice("backtest.execution", self.execution, ("next_open", "next_close"))
        for key in ("cash_rate", "borrow_rate"):
            try:
                check_range(f"backtest.{key}", getattr(self, key), 0.0, 1.0, high_open=True)
            except ConfigError as exc:  # the likely slip is a percent: say the unit
                raise ConfigError(f"{exc} (an annual fraction: 0.02 is 2%/yr)") from None


def _check_pairs(pairs: tuple[str, ...]) -> None:
    """Each ``backtest.pairs`` entry is ``"a:b"``: two different, non-empty strategy names."""
    for item in pairs:
        parts = [part.strip() for part in str(item).split(":")]
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise ConfigError(f"backtest.pairs entry {item!r} is not two different strategy names as 'a:b'; "
                              "write it like \"lstm_regression:ridge_regression\"")


@dataclass(frozen=True, kw_only=True)
class PortfolioConfig:
    """Universe runs (a source naming several tickers; see ``backtest.universe``).

    ``top_k``: tickers the cross-sectional strategy holds long each day, those with the highest
    p_up (classification) or predicted return (regression). 0 (the default) = a third of the
    universe, rounded, at least 1 and fewer than all its tickers (at most N - bottom_k with shorts;
    ``strategies.cross_section.default_top_k``); the run records the k it used. An explicit k
    that holds every ticker long (``top_k >= N`` with ``bottom_k = 0``) ranks nothing and is refused.
    ``bottom_k``: tickers it shorts, the lowest (0 = long only; no fraction default, since shorting
    is a choice). Each held ticker gets ``1 / (top_k + bottom_k)`` of the portfolio;
    ``top_k + bottom_k`` may not exceed the number of tickers in the universe.
    """

    top_k: int = 0
    bottom_k: int = 0

    def __post_init__(self) -> None:
        check_range("portfolio.top_k", self.top_k, 0, 10_000)
        check_range("portfolio.bottom_k", self.bottom_k, 0, 10_000)
