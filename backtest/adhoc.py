"""Backtests and tear sheets of signals and returns made outside lstmbt's models.

``backtest_positions`` takes prices and target positions a user computed, runs them through
``backtest.portfolio`` (its one execution-lag rule, costs on by default) beside buy-and-hold, and
scores them with the same functions a run uses (``backtest.metrics``, ``backtest.significance``,
``backtest.relative``, ``backtest.regimes``). ``returns_result`` does the same for daily returns
alone. Both return a ``RunResult`` whose ``manifest["kind"]`` says which (``"backtest"`` or
``"returns"``); it has no predictions and no folds, so a report of it has no such sections.
Both annualise with the bars a year of the dates they get (``backtest.annualise``: daily, 7-day
daily, weekly or monthly) or the caller's ``periods_per_year``, and say which in the manifest
(``periods_per_year`` and a note among its ``warnings``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from lstmbt.backtest import __version__, metrics as m, significance as sig
from lstmbt.backtest.annualise import EXCHANGE_PERIODS, Annualisation, given_periods, infer_periods
from lstmbt.backtest.config import BacktestConfig, RunConfig
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.backtest.portfolio import cost_sweep, run_backtest
from lstmbt.backtest.regimes import regime_labels, regime_table
from lstmbt.backtest.relative import benchmark_relative, family_verdict
from lstmbt.backtest.rundir import RunResult
from lstmbt.backtest.scoring import BENCHMARK

#: the keyword arguments ``backtest_positions`` takes: the ``[backtest]`` config keys of a run
COST_KEYS = ("fee_rate", "slippage", "execution", "cash_rate", "borrow_rate", "rebalance_band")
#: the figures of a returns series that need no positions (``backtest.metrics.performance_metrics``)
RETURN_METRICS = ("total_return", "cagr", "ann_volatility", "sharpe", "sortino", "max_drawdown", "calmar")


def backtest_positions(prices: pd.DataFrame | pd.Series, positions: pd.DataFrame | pd.Series,
                       periods_per_year: int | None = None, **costs: Any) -> RunResult:
    """Backtest target positions on prices with costs, beside buy-and-hold, and score them as a run does.

    Parameters
    ----------
    prices : pd.DataFrame or pd.Series
        Bars on a DatetimeIndex, oldest first (daily, 7-day daily, weekly or monthly): a frame
        with ``Open`` and ``Close`` columns (names case-insensitive), or a Series of closes, which
        fills at the next close
        (``execution="next_close"``; ``"next_open"`` is refused, there are no opens).
    positions : pd.DataFrame or pd.Series
        Target exposure per decision day in [-1, 1] (1 = all capital long, -1 = all short, 0 = flat),
        decided after that day's close: one column per strategy (a Series is one strategy, named
        after the Series or ``"strategy"``). Dated on consecutive price bars; NaN is refused (drop
        the warm-up days, or fill them with 0). A position dated on the last price bar has no bar
        to be filled on and is dropped.
    periods_per_year : int, optional
        Bars a year to annualise with; by default inferred from the price dates (252 daily exchange
        bars, 365 a 7-day calendar, 52 weekly, 12 monthly; anything else is refused with a
        ``DataError`` asking for this argument).
    **costs
        ``fee_rate`` (fraction of traded value per side, default 0.001), ``slippage`` (fraction of
        price per fill, default 0.0005), ``execution`` (``"next_open"`` default, or
        ``"next_close"``), ``cash_rate`` and ``borrow_rate`` (annual fractions, default 0),
        ``rebalance_band`` (drift from the target, in units of equity, that triggers a rebalancing
        order; default 0.05, 1 = never): the ``[backtest]`` keys of a run, checked the same way.

    Returns
    -------
    RunResult
        ``positions`` (with ``buy_and_hold``), ``returns`` (daily net returns dated on the bar
        they are earned), ``trades``, ``costs`` (every strategy at 0/5/10/20/50 bp per side),
        ``regimes`` and ``metrics`` (``{strategy: {metric: value}}``: the run's return, trade
        and significance figures; a strategy's call is "up" on days its position is > 0, so its
        hit rate is the share of days that call was right). ``predictions`` and ``folds`` are
        empty; ``manifest["kind"]`` is ``"backtest"``; ``manifest["periods_per_year"]`` the bars a
        year used. The regime table (``regimes``) needs daily exchange bars, and is empty for others.
    """
    cfg = cost_config(costs, closes_only=isinstance(prices, pd.Series))
    bars = price_bars(prices)
    year = annualisation(bars.index, "prices", periods_per_year)
    targets = checked_positions(positions, bars.index)
    targets[BENCHMARK] = 1.0  # buy-and-hold: fully long on every decision day, as in a run
    seed, ppy = RunConfig().train.seed, year.periods_per_year
    result = run_backtest(bars, targets, cfg)
    real_up = realised_up(bars["Close"], targets.index)
    metrics = position_metrics(targets, result, real_up, seed, ppy, cfg.cash_rate)
    manifest = _manifest("backtest", "prices and positions given to lstmbt.backtest", bars.index, targets.index,
                         seed, year)
    daily = ppy == EXCHANGE_PERIODS  # regimes are windows of exchange days, their figures annualised with 252
    return RunResult(config=RunConfig(backtest=cfg), predictions=pd.DataFrame(), positions=targets,
                     returns=result.returns, folds=pd.DataFrame(), metrics=metrics, trades=result.trades,
                     costs=cost_sweep(bars, targets, cfg, periods_per_year=ppy), manifest=manifest,
                     comparisons=no_comparisons(),
                     regimes=position_regimes(bars["Close"], targets, result.returns, real_up, seed) if daily
                     else pd.DataFrame())


def returns_result(returns: pd.DataFrame | pd.Series, benchmark: pd.Series | None = None,
                   periods_per_year: int | None = None) -> RunResult:
    """Score returns made elsewhere: the run's return figures and significance, and with a
    benchmark the Sharpe-difference interval, verdict, alpha, beta and information ratio.

    Parameters
    ----------
    returns : pd.DataFrame or pd.Series
        Net returns per bar as fractions (0.01 = +1%) on a DatetimeIndex, one column per strategy
        (a Series is one strategy). Every value must be finite: drop or fill missing days first.
    benchmark : pd.Series, optional
        Returns of the benchmark (typically buy-and-hold of the market) on every date of
        ``returns``; kept as the ``buy_and_hold`` strategy, which every verdict is measured against.
    periods_per_year : int, optional
        Bars a year to annualise with; by default inferred from the dates (252 daily exchange bars,
        365 a 7-day calendar, 52 weekly, 12 monthly; anything else is refused with a ``DataError``
        asking for this argument).

    Returns
    -------
    RunResult
        ``returns`` (with ``buy_and_hold`` when a benchmark is given) and ``metrics``; no costs
        are applied (the returns are taken as net), and predictions, positions, folds, trades and
        costs are empty. ``manifest["kind"]`` is ``"returns"``; ``manifest["periods_per_year"]``
        the bars a year used.
    """
    frame = checked_returns(returns, "returns")
    year = annualisation(frame.index, "returns", periods_per_year)
    if BENCHMARK in frame.columns:
        raise ConfigError(f"a returns column is named {BENCHMARK!r}, the name lstmbt gives the benchmark; "
                          "rename it, or pass it as benchmark=")
    if benchmark is not None:
        frame[BENCHMARK] = aligned_benchmark(benchmark, frame.index)
    seed = RunConfig().train.seed
    metrics = {name: return_metrics(frame, name, seed, year.periods_per_year) for name in frame.columns}
    manifest = _manifest("returns", "returns given to lstmbt.tear_sheet", frame.index, frame.index, seed, year)
    return RunResult(config=RunConfig(), predictions=pd.DataFrame(), positions=pd.DataFrame(), returns=frame,
                     folds=pd.DataFrame(), metrics=metrics, manifest=manifest, comparisons=no_comparisons())


# ----------------------------------------------------------------------------------- checks


def annualisation(index: pd.DatetimeIndex, label: str, periods_per_year: Any = None) -> Annualisation:
    """The bars a year of ``index``: ``periods_per_year`` checked when given, else inferred from the dates."""
    return infer_periods(index, label) if periods_per_year is None else given_periods(periods_per_year)


def cost_config(costs: dict[str, Any], closes_only: bool = False) -> BacktestConfig:
    """The ``BacktestConfig`` of ``costs`` (``COST_KEYS``), checked as a run's ``[backtest]`` keys are."""
    unknown = sorted(set(costs) - set(COST_KEYS))
    if unknown:
        raise ConfigError(f"unknown cost setting(s) {', '.join(unknown)}; "
                          f"lstmbt.backtest takes: {', '.join(COST_KEYS)}")
    if closes_only:
        if costs.get("execution", "next_close") != "next_close":
            raise ConfigError("prices given as a Series of closes can only fill at the next close; pass a frame with "
                              "Open and Close columns for execution='next_open', or use execution='next_close'")
        costs = {**costs, "execution": "next_close"}
    return RunConfig().with_values({f"backtest.{key}": value for key, value in costs.items()}).backtest


def price_bars(prices: pd.DataFrame | pd.Series) -> pd.DataFrame:
    """``Open`` and ``Close`` per bar (a Series of closes serves as both), checked: a sorted, unique
    DatetimeIndex and finite, positive quotes."""
    if isinstance(prices, pd.Series):
        bars = pd.DataFrame({"Open": prices, "Close": prices})
    elif isinstance(prices, pd.DataFrame):
        lookup = {str(c).strip().lower(): c for c in prices.columns}
        missing = [name for name in ("Open", "Close") if name.lower() not in lookup]
        if missing:
            found = ", ".join(map(str, prices.columns)) or "none"
            raise DataError(f"prices lack column(s) {', '.join(missing)} (found: {found}); "
                            "pass Open and Close columns, or a Series of closes")
        bars = pd.DataFrame({name: prices[lookup[name.lower()]] for name in ("Open", "Close")})
    else:
        raise DataError(f"prices must be a pandas DataFrame or Series, not {type(prices).__name__}")
    _check_index(bars.index, "prices")
    values = bars.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~(np.isfinite(values) & (values > 0)).all(axis=1)
    if bad.any():
        raise DataError(f"prices have {int(bad.sum())} day(s) with a missing or non-positive Open or Close, first "
                        f"{bars.index[bad][0].date()}; drop or fill those days")
    return bars.astype(np.float64)


def checked_positions(positions: pd.DataFrame | pd.Series, bars: pd.DatetimeIndex) -> pd.DataFrame:
    """``positions`` as a float frame on consecutive ``bars``, the last bar's decision dropped."""
    frame = _as_frame(positions, "positions")
    _check_index(frame.index, "positions")
    if BENCHMARK in frame.columns:
        raise ConfigError(f"a positions column is named {BENCHMARK!r}, which lstmbt adds itself; rename it")
    outside = frame.index.difference(bars)
    if len(outside):
        raise DataError(f"positions are dated on {len(outside)} day(s) without a price bar, first "
                        f"{outside[0].date()}; date positions on the price index")
    frame = frame.loc[frame.index < bars[-1]]  # decided on the last bar: nothing to fill it on
    if frame.empty:
        raise DataError("positions hold no decision day before the last price bar; nothing can be filled")
    span = bars[bars.get_loc(frame.index[0]):bars.get_loc(frame.index[-1]) + 1]
    if len(span) != len(frame):
        gap = span.difference(frame.index)[0]
        raise DataError(f"positions skip the price bar {gap.date()}; give a position on every bar from the first "
                        "decision day to the last (0 = flat)")
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) | (np.abs(values) > 1.0)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise DataError(f"position {values[row, col]!r} of {frame.columns[col]!r} on {frame.index[row].date()} is not "
                        "in [-1, 1]; positions are target exposures (drop the NaN warm-up, or fill it with 0)")
    return frame.astype(np.float64)


def checked_returns(returns: pd.DataFrame | pd.Series, label: str) -> pd.DataFrame:
    """``returns`` as a float frame on a sorted, unique DatetimeIndex with finite values."""
    frame = _as_frame(returns, label)
    _check_index(frame.index, label)
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise DataError(f"{label} of {frame.columns[col]!r} are missing or not finite on {frame.index[row].date()} "
                        f"({int(bad.sum())} value(s)); drop those days (.dropna()) or fill them")
    if (values <= -1.0).any():
        raise DataError(f"{label} hold a daily return of -100% or less; pass simple returns as fractions "
                        "(0.01 = +1%), not prices or percents")
    return frame.astype(np.float64)


def aligned_benchmark(benchmark: pd.Series, dates: pd.DatetimeIndex) -> pd.Series:
    """The benchmark's returns on ``dates``; every one of them must have a value."""
    if not isinstance(benchmark, pd.Series):
        raise DataError(f"benchmark must be a pandas Series of daily returns, not {type(benchmark).__name__}")
    bench = checked_returns(benchmark, "benchmark returns").iloc[:, 0]
    missing = dates.difference(bench.index)
    if len(missing):
        raise DataError(f"benchmark returns lack {len(missing)} day(s) of the returns, first {missing[0].date()}; "
                        "pass a benchmark that covers every day")
    return bench.reindex(dates)


def _as_frame(data: pd.DataFrame | pd.Series, label: str) -> pd.DataFrame:
    if isinstance(data, pd.Series):
        return data.to_frame(str(data.name) if data.name is not None else "strategy")
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"{label} must be a pandas DataFrame or Series, not {type(data).__name__}")
    if data.empty:
        raise DataError(f"{label} are empty; pass at least one column with dated rows")
    if not data.columns.is_unique:
        raise DataError(f"{label} have duplicate column names; give each strategy its own name")
    return data.rename(columns=str)


def _check_index(index: pd.Index, label: str) -> None:
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(f"{label} need a DatetimeIndex of days, not {type(index).__name__}; "
                        "set one with .set_index(pd.to_datetime(...))")
    if len(index) == 0:
        raise DataError(f"{label} hold no rows; pass dated rows")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise DataError(f"{label} dates must be unique and oldest first; sort_index() and drop duplicate days")


# ----------------------------------------------------------------------------------- scoring


def realised_up(close: pd.Series, dates: pd.DatetimeIndex) -> np.ndarray:
    """Whether the close rose from each decision day to the next bar: the direction a day's call is judged on."""
    after = close.shift(-1)
    return (np.log(after / close) > 0).reindex(dates).to_numpy(dtype=bool)


def position_metrics(positions: pd.DataFrame, result: Any, real_up: np.ndarray, seed: int,
                     periods_per_year: int = EXCHANGE_PERIODS, cash_rate: float = 0.0) -> dict[str, dict]:
    """``{strategy: {metric: value}}`` of backtested positions (``result``: a ``BacktestResult``),
    annualised with ``periods_per_year`` bars a year (``cash_rate``: what the cash of each
    beta-matched buy-and-hold earns, as ``backtest.cash_rate``)."""
    bench = result.returns[BENCHMARK].to_numpy()
    tested = [name for name in positions.columns if name != BENCHMARK]
    out: dict[str, dict[str, Any]] = {}
    ppy = periods_per_year
    for name in positions.columns:
        pos, r = positions[name].to_numpy(), result.returns[name].to_numpy()
        calls = pos > 0 if name != BENCHMARK else np.ones(len(pos), dtype=bool)
        entry: dict[str, Any] = {**m.performance_metrics(r, pos, ppy), "hit_rate": m.hit_rate(calls, real_up)}
        if name == BENCHMARK:
            low, high = sig.sharpe_ci(r, seed=seed, periods_per_year=ppy)
            entry.update(sharpe_ci_low=low, sharpe_ci_high=high, psr=sig.probabilistic_sharpe_ratio(r))
        else:
            entry["base_rate"] = float(np.mean(real_up))
            entry.update(sig.significance_metrics(r, bench, calls, real_up, seed=seed, periods_per_year=ppy))
        trades = result.trades[result.trades["strategy"] == name]
        entry.update(n_trades=result.n_trades[name], fees_paid=result.fees_paid[name],
                     slippage_paid=result.slippage_paid[name], n_days=len(pos),
                     **m.trade_stats(trades["return"].to_numpy(), trades["holding_days"].to_numpy()))
        if name != BENCHMARK:
            entry.update(benchmark_relative(r, bench, periods_per_year=ppy, cash_rate=cash_rate))
            entry.update(family_verdict(r, bench, len(tested), seed, ppy))
        out[name] = entry
    return {name: out[name] for name in tested + [BENCHMARK]}


def return_metrics(returns: pd.DataFrame, name: str, seed: int,
                   periods_per_year: int = EXCHANGE_PERIODS) -> dict[str, Any]:
    """The figures of one returns column that need no positions; against ``buy_and_hold`` when present;
    annualised with ``periods_per_year`` bars a year."""
    r, ppy = returns[name].to_numpy(), periods_per_year
    figures = m.return_metrics(r, ppy)
    entry: dict[str, Any] = {key: figures[key] for key in RETURN_METRICS}
    low, high = sig.sharpe_ci(r, seed=seed, periods_per_year=ppy)
    entry.update(sharpe_ci_low=low, sharpe_ci_high=high, psr=sig.probabilistic_sharpe_ratio(r), n_days=len(r))
    if BENCHMARK in returns.columns and name != BENCHMARK:
        bench = returns[BENCHMARK].to_numpy()
        entry["sharpe_diff_ci_low"], entry["sharpe_diff_ci_high"] = sig.sharpe_diff_ci(r, bench, seed=seed,
                                                                                        periods_per_year=ppy)
        entry.update(benchmark_relative(r, bench, periods_per_year=ppy))
        entry.update(family_verdict(r, bench, returns.shape[1] - 1, seed, ppy))
    return entry


def position_regimes(close: pd.Series, positions: pd.DataFrame, returns: pd.DataFrame, real_up: np.ndarray,
                     seed: int) -> pd.DataFrame:
    """Each strategy's figures per market regime known at the decision close (``backtest.regimes``)."""
    dates = positions.index
    calls = {name: positions[name].to_numpy() > 0 for name in positions.columns if name != BENCHMARK}
    return regime_table(returns.set_axis(dates), calls, real_up, regime_labels(close, dates), seed=seed,
                        positions=positions)


def no_comparisons() -> dict[str, Any]:
    """The ``comparisons.json`` of an ad-hoc result: no head-to-head pairs, SPA or MCS, which
    compare models' calls and returns within a run; in the shape ``load_run`` checks."""
    return {"pairs": [], "spa": {}, "mcs": {}}


def _manifest(kind: str, source: str, data_dates: pd.DatetimeIndex, dates: pd.DatetimeIndex,
              seed: int, year: Annualisation) -> dict[str, Any]:
    """What the report's summary and Run sections show of an ad-hoc result."""
    day = lambda stamp: stamp.date().isoformat()  # noqa: E731
    return {
        "kind": kind,
        "lstmbt_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "data": {"source": source, "first_date": day(data_dates[0]), "last_date": day(data_dates[-1]),
                 "rows": int(len(data_dates))},
        "out_of_sample": {"first_date": day(dates[0]), "last_date": day(dates[-1]), "days": int(len(dates))},
        "periods_per_year": year.periods_per_year,
        "warnings": [year.note()],
    }


__all__ = ["COST_KEYS", "RETURN_METRICS", "backtest_positions", "returns_result", "annualisation", "cost_config",
           "price_bars",
           "checked_positions", "checked_returns", "aligned_benchmark", "realised_up", "position_metrics",
           "return_metrics", "position_regimes", "no_comparisons"]
