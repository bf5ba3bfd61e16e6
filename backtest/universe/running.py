"""One run over a universe of tickers: a model per ticker, then portfolios across them.

The driver (this process) does every read and write; jobs only compute::

    tickers = expand_source(config.data)                    # backtest.sources
    prices  = load_universe(tickers) + check_length         # every ticker checked before any training
    results = executor.map(_run_ticker, ...)                # pipeline.run per ticker, local pool or Ray
              or, with model.pooled, backtest.pooled + pipeline.score_run per ticker
    weights = ew_<strategy>: every per-ticker strategy at 1 / (active tickers) each
              xs_<model>: long the top_k, short the bottom_k tickers by prediction (strategies.cross_section)
    returns = run_group_backtest(prices, weights)           # one cash pool per strategy, costs on, trades
    costs   = the same at every fee level (universe_cost_sweep)
    metrics = per strategy, with Sharpe intervals against ew_buy_and_hold

A ticker counts on a day only inside its own out-of-sample span (first to last decision day),
so nothing is held before a ticker's data and predictions exist or after they end.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from lstmbt.backtest import metrics as m, significance as sig
from lstmbt.backtest.checkpoint import check_universe_space
from lstmbt.backtest.config import BacktestConfig, PortfolioConfig, RunConfig
from lstmbt.backtest.data import describe_prices
from lstmbt.backtest.annualise import run_periods
from lstmbt.backtest.datacheck import bars_per_year
from lstmbt.backtest.errors import ConfigError, DataError, DataWarning
from lstmbt.backtest.pipeline import check_length, make_design, run, score_run
from lstmbt.backtest.metrics import PERIODS_PER_YEAR
from lstmbt.backtest.portfolio import FEE_LEVELS_BPS, cost_row, run_group_backtest
from lstmbt.backtest.relative import family_verdict
from lstmbt.backtest.scoring import BENCHMARK, horizon_plan
from lstmbt.backtest.sources import Ticker
from lstmbt.backtest.universe.io import UniverseResult, checked, load_universe
from lstmbt.backtest.universe.pooled import pooled_predict
from lstmbt.models.key import keys_from_frame
from lstmbt.strategies import predicted_log_return
from lstmbt.strategies.cross_section import default_top_k, equal_weights, life_panel, ranking_days, top_k_weights

EW_BENCHMARK = f"ew_{BENCHMARK}"
_PROVENANCE = ("lstmbt_version", "python", "platform", "packages", "seed", "device")

#: progress(stage, done, total): stage is "data", "tickers" or "portfolio".
Progress = Callable[[str, int, int], None]
#: on_ticker(ticker, result): called in the driver as each ticker's RunResult arrives, e.g. to save it.
OnTicker = Callable[[Ticker, Any], None]


@dataclass(frozen=True)
class _Leg:
    """What the portfolios need from one ticker's run."""

    positions: pd.DataFrame
    scores: dict[str, pd.Series]
    metrics: dict[str, dict[str, Any]]
    manifest: dict[str, Any]
    models: tuple[str, ...]  # the model strategies (the names of the run's model keys)


def resolve_portfolio(portfolio: PortfolioConfig, n_tickers: int) -> PortfolioConfig:
    """``portfolio`` with the ``top_k`` a universe of ``n_tickers`` uses: ``top_k = 0`` becomes
    ``default_top_k`` (a third of the universe), an explicit one is kept after its checks.

    Refused with one line: shorts that leave no ticker to hold long, more tickers held than the
    universe has, and a long-only top_k that holds every ticker (its xs_ would rank nothing and
    only repeat ew_buy_and_hold, adding a duplicate to the family the verdicts correct for).
    """
    k, short = portfolio.top_k, portfolio.bottom_k
    auto = default_top_k(n_tickers, short)
    if short and not k and auto < 1:
        raise ConfigError(f"portfolio.bottom_k = {short} leaves no ticker of the universe ({n_tickers} tickers) to "
                          f"hold long; lower portfolio.bottom_k to at most {n_tickers - 1}")
    if short and k + short > n_tickers:
        raise ConfigError(f"portfolio.top_k + portfolio.bottom_k = {k} + {short} is larger than the universe "
                          f"({n_tickers} tickers); set portfolio.top_k to at most {max(1, n_tickers - short)} or "
                          "lower portfolio.bottom_k")
    if not short and k >= n_tickers:
        size = (f"is larger than the universe ({n_tickers} tickers)" if k > n_tickers
                else f"holds every one of the universe's {n_tickers} tickers")
        raise ConfigError(f"portfolio.top_k = {k} {size}, so the xs_ strategies would rank nothing and repeat "
                          f"{EW_BENCHMARK}; set portfolio.top_k to at most {n_tickers - 1}, or to 0 (a third of "
                          f"the universe: {auto} here)")
    return dataclasses.replace(portfolio, top_k=k or auto)


def run_universe(config: RunConfig, tickers: list[Ticker], executor: Any, progress: Progress | None = None,
                 on_ticker: OnTicker | None = None, finished: dict[str, Any] | None = None,
                 space_in: Path | None = None) -> UniverseResult:
    """Train and backtest every ticker, then the equal-weight and cross-sectional portfolios.

    ``executor``: from ``backtest.executors.make_executor`` (unused with ``model.pooled``).
    ``on_ticker``: called in this process with each ticker's ``RunResult`` as it finishes.
    ``finished``: ``{ticker name: RunResult}`` saved by an interrupted run (``--resume``); those
    tickers are not retrained, after a check that their data are the prices loaded now.
    ``space_in``: a directory whose disk must hold the tickers' runs and the universe's files
    (checked once the prices are loaded, before any training).
    """
    report = progress or (lambda stage, done, total: None)
    clock = time.perf_counter()
    if config.split.cpcv:  # a universe saves and reports no CPCV paths: refuse rather than drop them
        raise ConfigError("split.scheme = 'cpcv' runs one ticker at a time; run each ticker with its own "
                          "`lstmbt run --source ...`, or use split.scheme = 'expanding' for the universe")
    portfolio = resolve_portfolio(config.portfolio, len(tickers))
    configs = {t.name: dataclasses.replace(config, data=t.data) for t in tickers}
    report("data", 0, len(tickers))
    prices = load_universe(tickers)
    _check_lengths(tickers, prices, configs)
    if space_in is not None:

        todo_rows = {t.name: len(prices[t.name]) for t in tickers if t.name not in (finished or {})}
        check_universe_space(space_in, config, todo_rows, [key.name for key in horizon_plan(config)])
    timings = {"data": time.perf_counter() - clock}
    legs: dict[str, _Leg] = {}
    finished = finished or {}
    for ticker in tickers:
        if ticker.name in finished:
            _check_same_data(ticker, finished[ticker.name], prices[ticker.name])
            legs[ticker.name] = _leg(finished[ticker.name], configs[ticker.name])
    todo = [t for t in tickers if t.name not in finished]
    report("tickers", len(legs), len(tickers))

    def done(index: int, result: Any) -> None:
        if on_ticker:
            on_ticker(todo[index], result)
        legs[todo[index].name] = _leg(result, configs[todo[index].name])
        report("tickers", len(legs), len(tickers))

    if config.model.pooled:  # one model across all tickers: the CLI resumes it from scratch
        if finished:
            raise ValueError("a pooled universe cannot reuse finished tickers; pass finished=None")
        _pooled(tickers, prices, configs, config, done, report)
    else:
        executor.map(_run_ticker, [(configs[t.name], prices[t.name]) for t in todo], on_done=done)
    timings["tickers"] = time.perf_counter() - clock - timings["data"]
    report("portfolio", 0, 1)
    legs = {t.name: legs[t.name] for t in tickers}
    result = _portfolios(config, portfolio, prices, legs)
    timings["total"] = time.perf_counter() - clock
    result.manifest = {**_manifest(config, tickers, legs, result, executor, timings, portfolio), **result.manifest}
    return result


def _run_ticker(job: tuple[RunConfig, pd.DataFrame]) -> Any:
    """One ticker's single-ticker run (a job: module-level, so process pools and Ray can ship it)."""
    import warnings

    config, prices = job
    with warnings.catch_warnings():  # the driver showed them when it loaded the prices; the manifest keeps them
        warnings.simplefilter("ignore", DataWarning)
        return run(config, prices=prices)


def _pooled(tickers: list[Ticker], prices: dict[str, pd.DataFrame], configs: dict[str, RunConfig],
            config: RunConfig, done: Callable[[int, Any], None], progress: Progress) -> None:
    """One model across the tickers (``backtest.pooled``), then each ticker scored on its own."""
    designs = {t.name: make_design(prices[t.name], configs[t.name]) for t in tickers}
    predicted = pooled_predict(designs, config, progress=progress)
    for index, ticker in enumerate(tickers):
        predictions, folds = predicted[ticker.name]
        done(index, score_run(designs[ticker.name], predictions, folds, configs[ticker.name]))


def _check_same_data(ticker: Ticker, result: Any, prices: pd.DataFrame) -> None:

    if result.manifest["data"]["sha256"] != describe_prices(prices, ticker.data.source)["sha256"]:
        raise DataError(f"ticker {ticker.name}: its prices changed since the interrupted run saved it; start a "
                        "new run (another --out) instead of --resume")


def _check_lengths(tickers: list[Ticker], prices: dict[str, pd.DataFrame], configs: dict[str, RunConfig]) -> None:

    for ticker in tickers:
        checked(ticker, check_length, prices[ticker.name], configs[ticker.name])


def _leg(result: Any, config: RunConfig) -> _Leg:
    """The positions and the cross-sectional scores of one ticker's models."""
    return _Leg(positions=result.positions, scores=ranking_scores(result.predictions, config),
                metrics=result.metrics, manifest=result.manifest, models=tuple(keys_from_frame(result.predictions)))


def ranking_scores(predictions: pd.DataFrame, config: RunConfig) -> dict[str, pd.Series]:
    """Per model that calls a direction at the primary horizon, its score per decision day:
    p_up for a classifier, the predicted log return for a regression (prices converted)."""
    target, keys = config.target.regression, keys_from_frame(predictions)
    scores = {}
    for name, group in predictions.groupby("model", sort=False):
        group = group.set_index("date")
        if keys[name].horizon != config.target.horizon:
            continue
        if keys[name].task == "classification":
            scores[name] = group["p_up"].astype("float64")
        elif keys[name].task == "regression" and target != "max_drawdown":  # a drawdown forecast ranks no returns
            # a non-positive price forecast comes back as -inf ("down"): the lowest rank, not a missing one
            scores[name] = predicted_log_return(group["y_pred"], group["close"], target).clip(lower=-1e300)
    return scores


def decision_calendar(prices: dict[str, pd.DataFrame], legs: dict[str, _Leg]) -> pd.DatetimeIndex:
    """Every day any ticker trades, from the first ticker's first decision day to the last one's last."""
    first = min(leg.positions.index[0] for leg in legs.values())
    last = max(leg.positions.index[-1] for leg in legs.values())
    joint = pd.DatetimeIndex(sorted(set().union(*(frame.index for frame in prices.values()))))
    return joint[(joint >= first) & (joint <= last)].rename("date")


def calendar_periods(calendar: pd.DatetimeIndex) -> int:
    """Bars a year the portfolios annualise with, from their joint ``calendar`` (every day any of
    their tickers trades): 365 for a 7-day calendar, else 252, by the rule of a single ticker's run
    (``backtest.annualise.run_periods``)."""
    return run_periods(calendar)


def portfolio_weights(legs: dict[str, _Leg], calendar: pd.DatetimeIndex, portfolio: PortfolioConfig,
                      ranks: bool = True) -> dict[str, pd.DataFrame]:
    """Target weights (calendar x tickers) of every portfolio strategy, the benchmark last:
    ``ew_<s>`` for each per-ticker model strategy s, ``xs_<m>`` for each model m with scores
    (none when ``ranks`` is false: no day has tickers to rank)."""
    first = next(iter(legs.values()))
    out = {}
    for name in [c for c in first.positions.columns if c in first.models]:
        out[f"ew_{name}"] = equal_weights(life_panel({t: leg.positions[name] for t, leg in legs.items()}, calendar))
        if name in first.scores and ranks:
            scores = life_panel({t: leg.scores[name] for t, leg in legs.items()}, calendar)
            out[f"xs_{name}"] = top_k_weights(scores, portfolio.top_k, portfolio.bottom_k)
    out[EW_BENCHMARK] = equal_weights(life_panel({t: leg.positions[BENCHMARK] for t, leg in legs.items()}, calendar))
    return out


def _portfolios(config: RunConfig, portfolio: PortfolioConfig, prices: dict[str, pd.DataFrame],
                legs: dict[str, _Leg]) -> UniverseResult:
    """The portfolios of ``portfolio`` (resolved: ``top_k`` >= 1), backtested at the run's costs and
    at every fee level."""
    calendar = decision_calendar(prices, legs)
    living = life_panel({t: leg.positions[BENCHMARK] for t, leg in legs.items()}, calendar).notna().sum(axis=1)
    ranking = int(ranking_days(living.to_numpy(), portfolio.top_k, portfolio.bottom_k).sum())
    weights = portfolio_weights(legs, calendar, portfolio, ranks=ranking > 0)
    wide, periods = pd.concat(weights, axis=1), calendar_periods(calendar)
    backtest = run_group_backtest(prices, wide, config.backtest)
    metrics = portfolio_metrics(backtest, weights, seed=config.train.run_seed, periods_per_year=periods)
    frame = pd.concat([w.rename_axis(index="date", columns="ticker").reset_index()
                       .melt(id_vars="date", var_name="ticker", value_name="weight").assign(strategy=name)
                       for name, w in weights.items()], ignore_index=True)[["date", "strategy", "ticker", "weight"]]
    active = pd.concat({t: leg.positions[BENCHMARK] for t, leg in legs.items()}, axis=1).reindex(calendar)
    counts = active.notna().sum(axis=1)
    return UniverseResult(config=config, returns=backtest.returns, weights=frame, metrics=metrics,
                          ticker_metrics={t: leg.metrics for t, leg in legs.items()},
                          manifest={"active_tickers": {"min": int(counts.min()), "mean": float(counts.mean()),
                                                       "max": int(counts.max())},
                                    "portfolio": {"top_k": portfolio.top_k, "bottom_k": portfolio.bottom_k,
                                                  "configured_top_k": config.portfolio.top_k,
                                                  "ranking_days": ranking, "most_active": int(living.max())},
                                    "periods_per_year": periods},
                          costs=universe_cost_sweep(prices, wide, config.backtest, periods_per_year=periods),
                          trades=backtest.trades)


def universe_cost_sweep(prices: dict[str, pd.DataFrame], weights: pd.DataFrame, cfg: BacktestConfig,
                        fee_levels_bps: tuple[int, ...] = FEE_LEVELS_BPS,
                        periods_per_year: int = PERIODS_PER_YEAR) -> pd.DataFrame:
    """Every portfolio strategy re-run at each fee level (bps per side), slippage, fill and carry as
    configured: ``backtest.portfolio.cost_sweep`` for ``run_group_backtest``'s weights (the same
    long frame: fee_bps, strategy, total_return, cagr, sharpe, max_drawdown, fees_paid), annualised
    with ``periods_per_year`` bars a year (``calendar_periods``)."""
    rows = []
    for bps in fee_levels_bps:
        run = run_group_backtest(prices, weights, dataclasses.replace(cfg, fee_rate=bps / 1e4))
        rows.extend(cost_row(bps, name, run.returns[name].to_numpy(), run.fees_paid[name], periods_per_year)
                    for name in run.returns.columns)
    return pd.DataFrame(rows)


def portfolio_metrics(backtest: Any, weights: dict[str, pd.DataFrame], seed: int = 0,
                      periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, dict[str, Any]]:
    """``{strategy: {metric: value}}`` of the portfolio strategies (``backtest.metrics`` units),
    annualised with ``periods_per_year`` bars a year (``calendar_periods``).

    ``exposure``: mean gross weight (sum of |weights|); ``time_invested``: share of days with any
    position; ``turnover``: sum over tickers of the annual |change| of target weights;
    ``avg_holdings``: mean number of tickers held per day. Every
    strategy gets its Sharpe interval and PSR, and all but the benchmark the interval of its
    Sharpe minus ``ew_buy_and_hold``'s (stationary block bootstrap on the same days) and the
    ``verdict`` of that difference at the family-wise level over those strategies
    (``backtest.relative``: Bonferroni), with its interval ``verdict_ci_low``/``verdict_ci_high``.
    """
    bench, ppy = backtest.returns[EW_BENCHMARK].to_numpy(), periods_per_year
    n_tested = len([name for name in weights if name != EW_BENCHMARK])
    out = {}
    for name, w in weights.items():
        r = backtest.returns[name].to_numpy()
        entry = m.performance_metrics(r, w.abs().sum(axis=1).to_numpy(), ppy)
        entry["turnover"] = float(sum(m.turnover(w[c].to_numpy(), ppy) for c in w.columns))
        trades = backtest.trades[backtest.trades["strategy"] == name]
        entry.update(avg_holdings=float((w != 0).sum(axis=1).mean()), n_trades=backtest.n_trades[name],
                     **m.trade_stats(trades["return"].to_numpy(), trades["holding_days"].to_numpy()),
                     n_orders=backtest.n_orders[name], fees_paid=backtest.fees_paid[name],
                     slippage_paid=backtest.slippage_paid[name], n_days=len(r))
        entry.update(sig.sharpe_figures(r, seed=seed, periods_per_year=ppy))  # psr before the difference, as always
        if name != EW_BENCHMARK:
            entry["sharpe_diff_ci_low"], entry["sharpe_diff_ci_high"] = sig.sharpe_diff_ci(r, bench, seed=seed,
                                                                                          periods_per_year=ppy)
            entry.update(family_verdict(r, bench, n_tested, seed, ppy))
        out[name] = entry
    return out


def _manifest(config: RunConfig, tickers: list[Ticker], legs: dict[str, _Leg], result: UniverseResult,
              executor: Any, timings: dict[str, float], portfolio: PortfolioConfig) -> dict[str, Any]:
    first = next(iter(legs.values())).manifest
    data = [legs[t.name].manifest["data"] for t in tickers]
    days = pd.DatetimeIndex(result.weights["date"].unique())  # the decision days
    return {
        **{key: first.get(key) for key in _PROVENANCE},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "data": {"source": config.data.source, "symbol": None, "tickers": len(tickers),
                 "first_date": min(d["first_date"] for d in data), "last_date": max(d["last_date"] for d in data)},
        "universe": [t.name for t in tickers],
        "tickers": [{"name": t.name, "run_dir": f"tickers/{t.slug}", "source": t.data.source, "symbol": t.data.symbol,
                     "data": legs[t.name].manifest["data"], "out_of_sample": legs[t.name].manifest["out_of_sample"]}
                    for t in tickers],
        "out_of_sample": {"first_date": days.min().date().isoformat(), "last_date": days.max().date().isoformat(),
                          "days": int(len(days))},
        "executor": "pooled" if config.model.pooled else getattr(executor, "kind", None),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "data_checks": universe_data_checks(legs),
        "warnings": universe_warnings(result.metrics, legs, portfolio, int(len(days))) + portfolio_notes(
            result.manifest, portfolio, days),
    }


def portfolio_notes(held: dict[str, Any], portfolio: PortfolioConfig, days: pd.DatetimeIndex) -> list[str]:
    """What the portfolios did otherwise than configured or than a single ticker's run: no xs_
    strategies when no decision day has tickers to rank (``held["portfolio"]["ranking_days"]`` 0),
    and annualisation on a 7-day joint calendar (``held["periods_per_year"]``). ``days``: the
    joint calendar's decision days."""
    notes, ranked = [], held["portfolio"]
    if ranked["ranking_days"] == 0:
        k, short, most = portfolio.top_k, portfolio.bottom_k, ranked["most_active"]
        need = f"portfolio.top_k + portfolio.bottom_k = {k + short}" if short else f"more than portfolio.top_k = {k}"
        overlap = "1 ticker is active on any decision day (the tickers' out-of-sample days never overlap)" \
            if most == 1 else f"{most} tickers are active on any decision day"
        notes.append(f"xs_ strategies left out: at most {overlap}, and ranking needs {need}, so each would only "
                     f"repeat {EW_BENCHMARK} with a verdict and a family-wise slot of its own; the ew_ strategies "
                     "and every ticker's own run remain.")
    if held["periods_per_year"] != PERIODS_PER_YEAR:
        notes.append(f"The portfolios annualise on their joint calendar: the {len(days)} days any of their tickers "
                     f"trades, {days[0].date()} to {days[-1].date()}, come to about {bars_per_year(days):.0f} a "
                     "year (a 7-day calendar), so their CAGR, volatility, Sharpe, Sortino, turnover and Sharpe "
                     f"intervals use {held['periods_per_year']} bars a year; each ticker's own run annualises on "
                     "its own calendar (365 bars a year for a 7-day one, else 252).")
    return notes


def universe_data_checks(legs: dict[str, _Leg]) -> list[str]:
    """Every ticker's data-check warnings (``backtest.datacheck``), each prefixed with its ticker."""
    return [f"ticker {t}: {w}" for t, leg in legs.items() for w in leg.manifest.get("data_checks", [])]


def universe_warnings(metrics: dict[str, dict[str, Any]], legs: dict[str, _Leg], portfolio: PortfolioConfig,
                      n_days: int) -> list[str]:
    """Plain-language cautions for the universe report: the tickers' look-ahead alarms first."""
    notes = [f"ticker {t}: {w}" for t, leg in legs.items() for w in leg.manifest.get("warnings", [])
             if w.startswith("LOOK-AHEAD")]
    notes += universe_data_checks(legs)
    if n_days < 252:
        notes.append(f"The out-of-sample period is {n_days} days, shorter than one year.")
    for name, entry in metrics.items():  # the verdict column says whether each beats the benchmark
        if name.startswith("xs_") and entry["time_invested"] < 1.0:
            flat = int(round((1.0 - entry["time_invested"]) * n_days))
            notes.append(f"{name} held nothing on {flat} days with fewer than "
                         f"{portfolio.top_k + portfolio.bottom_k} tickers to rank.")
    return notes
