"""The functions of the public API: ``run``, ``load``, ``tear_sheet`` and ``register_strategy``
(``lstmbt.backtest`` is the callable core package; see ``lstmbt``).

Config layering is the command line's: defaults < the quick preset < a TOML file or a ``RunConfig``
< ``source`` < ``set`` overrides. Models train side by side on the cores, one torch thread each;
torch's thread count is restored afterwards.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from lstmbt.backtest.adhoc import returns_result
from lstmbt.backtest.config import QUICK_PRESET, RunConfig, parse_overrides
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.frames import frame_prices
from lstmbt.backtest.pipeline import run as run_pipeline
from lstmbt.backtest.plugins import Folders, plugin_folders, register_strategy
from lstmbt.backtest.rundir import load_run
from lstmbt.models.threads import caller_threads
from lstmbt.result import RunResult

ConfigLike = RunConfig | str | os.PathLike | None
Overrides = Mapping[str, Any] | Sequence[str] | str | None
#: longest ``name=`` of a ``prices=`` frame
MAX_NAME_CHARS = 100


def run(config: ConfigLike = None, *, source: str | None = None, quick: bool = False, set: Overrides = None,
        prices: pd.DataFrame | None = None, name: str | None = None, out: str | Path | None = None,
        executor: str = "local", address: str | None = None, plugin_path: Folders = None) -> RunResult:
    """Walk forward every model, backtest with costs and score, as ``lstmbt run`` does.

    Parameters
    ----------
    config : RunConfig, str or path-like, optional
        A ``RunConfig``, or the path of a TOML config file with ``[section]`` tables (as
        ``lstmbt run --config``). Keys it sets override the quick preset.
    source : str, optional
        The price source: ``sample:sp500`` (the default), ``sample:nasdaq``, ``csv:PATH`` or
        ``fdr:TICKER``; as ``--source``. Not with ``prices``.
    quick : bool
        Start from the quick preset (``lstmbt.backtest.config.QUICK_PRESET``: a small model on
        yearly folds, seconds instead of minutes), as ``--quick``.
    set : dict or list of str, optional
        Config overrides, the last word: ``{"model.hidden_size": 64}`` or
        ``["model.hidden_size=64", "data.start=2010-01-01"]`` (as ``--set``).
    prices : pd.DataFrame, optional
        Daily OHLCV bars to use instead of loading ``data.source``: ``Open High Low Close
        Volume`` (any case; an ``Adj Close`` column adjusts them) on a DatetimeIndex or beside a
        ``Date`` column, or yfinance's two-level columns of one ticker. Normalised and checked
        exactly as ``csv:`` rows are (``backtest.frames.normalize_ohlcv``), with the same
        refusals and warnings, and trimmed by ``data.start``/``data.end``.
    name : str, optional
        What the run calls ``prices``: in its messages, the manifest, the report and ``lstmbt
        runs list`` (default ``"DataFrame"``). The config records ``data.source = "frame:NAME"``.
    out : str or path-like, optional
        Also save the run directory there (with ``report.html``), as ``lstmbt run --out``; it
        must not exist yet.
    executor, address : str, optional
        With ``split.scheme = "cpcv"``, where the CPCV splits are fitted: ``"local"`` (side by side
        in this process) or ``"ray"`` (Ray tasks on the cluster at ``address``, e.g.
        ``ray://head:10001`` or ``auto``; a local Ray instance without it), as ``--executor``.
    plugin_path : str, path-like or a list of them, optional
        Folders to import plug-ins (``model.custom``, ``strategy.custom`` dotted paths) from,
        besides the environment, as ``--plugin-path``; the working directory only when named.

    Returns
    -------
    RunResult
        Metrics (a strategy x metric DataFrame), returns, positions, predictions, folds, trades,
        the config, ``report()`` and ``save()``.

    Raises
    ------
    lstmbt.ConfigError, lstmbt.DataError
        Bad input, with one line naming the problem and the fix (the line the CLI prints).
    """
    with plugin_folders(plugin_path):  # plug-ins import from the environment and these folders only
        cfg = resolve_config(config, source=source, quick=quick, overrides=set)
        if prices is not None:
            cfg, prices = _with_frame(cfg, prices, name, source)
        elif name is not None:
            raise ConfigError("name= names a DataFrame given as prices=; pass prices= too, or drop name=")
        # every core available, fewer while other processes use some; a count the caller chose is kept
        pool = None
        if executor != "local" or address is not None:
            from lstmbt.backtest.campaign.executors import make_executor  # Ray loads on use only

            pool = make_executor(executor, address=address)  # an unknown name is one ConfigError line
        result = RunResult(run_pipeline(cfg, threads=caller_threads(), prices=prices,
                                        executor=pool if cfg.split.cpcv else None))
    if out is not None:
        result.save(out)
    return result


def load(run_dir: str | Path) -> RunResult:
    """Read a run directory written by ``lstmbt run``, ``lstmbt.run(out=...)`` or ``RunResult.save``.

    Parameters
    ----------
    run_dir : str or path-like
        The run directory.

    Returns
    -------
    RunResult
        The saved run; ``report()`` renders its page again.

    Raises
    ------
    lstmbt.DataError
        A missing, truncated or damaged file, named in one line.
    """
    return RunResult(load_run(run_dir))


def tear_sheet(returns: pd.Series | pd.DataFrame, benchmark: pd.Series | None = None,
               path: str | Path | None = None, periods_per_year: int | None = None) -> RunResult:
    """The figures and report of returns you made yourself, scored as a run's strategies are.

    Parameters
    ----------
    returns : pd.Series or pd.DataFrame
        Net returns per bar as fractions (0.01 = +1%) on a DatetimeIndex of daily, 7-day daily,
        weekly or monthly bars, one column per strategy (a Series is one strategy, named after the
        Series). Every value must be finite.
    benchmark : pd.Series, optional
        Returns of the benchmark (typically buy-and-hold of the market) covering every day
        of ``returns``. It appears as ``buy_and_hold``; with it each strategy gets the
        Sharpe-difference interval, the family-wise verdict, alpha, beta and the information ratio.
    path : str or path-like, optional
        Also write the HTML report there (atomically).
    periods_per_year : int, optional
        Bars a year to annualise with. By default inferred from the dates: 252 for daily exchange
        bars, 365 for a 7-day calendar, 52 weekly, 12 monthly; too few bars (under 20), an
        irregular index or another spacing raise ``lstmbt.DataError`` asking for this argument.

    Returns
    -------
    RunResult
        ``metrics`` (total return, CAGR, volatility, Sharpe with its bootstrap interval, Sortino,
        drawdown, Calmar, PSR, and the benchmark-relative figures), ``returns`` and ``report()``.
        No costs are applied: the returns are taken as net. ``manifest["periods_per_year"]`` is
        the bars a year used, and the first of ``manifest["warnings"]`` says so in words.
    """
    result = RunResult(returns_result(returns, benchmark, periods_per_year))
    if path is not None:
        result.report(path)
    return result


def resolve_config(config: ConfigLike = None, *, source: str | None = None, quick: bool = False,
                   overrides: Overrides = None) -> RunConfig:
    """The run config, layered as the CLI layers it: defaults < quick preset < ``config`` < ``source``
    < ``overrides``. Of a ``RunConfig`` given as ``config``, the keys that differ from the defaults count."""
    path, given = None, {}
    if isinstance(config, RunConfig):
        given = _changed_keys(config)
    elif isinstance(config, (str, os.PathLike)):
        path = config
    elif config is not None:
        raise ConfigError(f"config must be a RunConfig or the path of a TOML file, not {type(config).__name__}; "
                          "pass lstmbt.backtest.config.RunConfig(...) or 'config.toml'")
    flags = {**given, **({"data.source": source} if source is not None else {})}
    return RunConfig.resolve(path=path, preset=QUICK_PRESET if quick else None, flags=flags,
                             overrides=_overrides(overrides))


def _with_frame(cfg: RunConfig, prices: Any, name: str | None, source: str | None) -> tuple[RunConfig, pd.DataFrame]:
    """``cfg`` recording ``prices`` as ``data.source = "frame:NAME"``, and the prices normalised and
    checked as the rows of a ``csv:`` file are. ``name`` defaults to the name a ``frame:`` config
    already has, else ``"DataFrame"``."""
    if source is not None:
        raise ConfigError(f"source={source!r} and prices= both say where the prices come from; pass one of them")
    if name is None:
        scheme, _, before = cfg.data.source.partition(":")
        name = before if scheme == "frame" and before else "DataFrame"
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise ConfigError(f"name={_brief(name)} is not a usable name for prices=; give up to {MAX_NAME_CHARS} "
                          "printable characters, e.g. name='SPY daily'")
    data = dataclasses.replace(cfg.data, source=f"frame:{name.strip()}")
    return dataclasses.replace(cfg, data=data), frame_prices(prices, data)


def _changed_keys(config: RunConfig) -> dict[str, Any]:
    """``{"section.key": value}`` of every key where ``config`` differs from the defaults."""
    default = RunConfig()
    out = {}
    for field in dataclasses.fields(RunConfig):
        ours, theirs = dataclasses.asdict(getattr(config, field.name)), dataclasses.asdict(getattr(default, field.name))
        out.update({f"{field.name}.{key}": value for key, value in ours.items() if value != theirs[key]})
    return out


def _overrides(items: Overrides) -> dict[str, Any]:
    """``set=`` as ``{"section.key": value}``: a mapping as it is, ``"key=value"`` strings parsed as ``--set``."""
    if items is None:
        return {}
    wrong = ConfigError(f"set must be a dict like {{'model.hidden_size': 64}} or a list of 'key=value' strings, "
                        f"not {_brief(items)}")
    if isinstance(items, Mapping):
        if not all(isinstance(key, str) for key in items):
            raise wrong
        return dict(items)
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, Sequence) or isinstance(items, bytes) or not all(isinstance(item, str) for item in items):
        raise wrong
    return parse_overrides(list(items))


def _brief(value: Any) -> str:
    """``value`` as a message shows it: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = ["run", "load", "tear_sheet", "register_strategy", "resolve_config", "RunResult"]
