"""Universes on disk: the prices of a universe's tickers and the universe run directory.

Which tickers a source names, and in what forms, is ``backtest.sources``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lstmbt.backtest.config import DataConfig, RunConfig
from lstmbt.backtest.data import load_prices, normalize_ohlcv, read_csv_frame
from lstmbt.backtest.errors import DataError, LstmbtError
from lstmbt.backtest.readback import DamagedFileError, read_config, read_json, read_metrics, read_parquet
from lstmbt.backtest.rundir import write_atomic, write_json, write_parquet
from lstmbt.backtest.sources import Ticker

UNIVERSE_FILES = ("config.toml", "manifest.json", "metrics.json", "returns.parquet", "weights.parquet", "costs.parquet",
                  "trades.parquet", "report.html")
#: the columns of ``weights.parquet`` (long format: one row per decision day, strategy and ticker)
WEIGHT_COLUMNS = ("date", "strategy", "ticker", "weight")
#: what every version wrote; the cost sweep and the trades came later, so a run without them still loads
_REQUIRED = ("config.toml", "manifest.json", "metrics.json", "returns.parquet", "weights.parquet")
_OPTIONAL_FRAMES = ("costs", "trades")


@dataclass
class UniverseResult:
    """A universe run's portfolio results; the tickers' own results live in their run directories.

    ``returns``: daily net returns per portfolio strategy (bars after each decision day).
    ``weights``: long frame (date, strategy, ticker, weight): target weights per decision day.
    ``metrics``: ``{strategy: {metric: value}}``. ``ticker_metrics``: each ticker's metrics.json.
    ``manifest``: provenance, ``universe`` (ticker names), ``tickers`` (one entry each), ``portfolio``
    (the top_k the run used) and more. ``costs``: every portfolio strategy re-simulated per fee level
    (``backtest.universe.running.universe_cost_sweep``; a single run's ``costs``). ``trades``: one
    row per trade of one ticker and strategy (``backtest.portfolio.GroupBacktestResult.trades``).
    Both are empty for a run saved before they existed.
    """

    config: RunConfig
    returns: pd.DataFrame
    weights: pd.DataFrame
    metrics: dict[str, dict[str, Any]]
    ticker_metrics: dict[str, dict[str, dict[str, Any]]]
    manifest: dict[str, Any]
    costs: pd.DataFrame = field(default_factory=pd.DataFrame)
    trades: pd.DataFrame = field(default_factory=pd.DataFrame)


# --------------------------------------------------------------------------- prices


def load_universe(tickers: list[Ticker]) -> dict[str, pd.DataFrame]:
    """Every ticker's validated prices by name; the first unusable one raises, its name first.

    A long CSV is read once for all its symbols.
    """
    by_symbol: dict[Path, dict[str, pd.DataFrame]] = {}
    out = {}
    for ticker in tickers:
        with _naming(ticker):
            scheme, _, rest = ticker.data.source.partition(":")
            if scheme == "csv" and ticker.data.symbol is not None:
                if Path(rest) not in by_symbol:
                    frame, column = read_csv_frame(Path(rest))
                    names = frame[column].astype(str).str.strip()
                    by_symbol[Path(rest)] = {s: g.drop(columns=[column]) for s, g in frame.groupby(names, sort=False)}
                out[ticker.name] = _csv_symbol(by_symbol[Path(rest)][ticker.data.symbol], ticker.data)
            else:
                out[ticker.name] = load_prices(ticker.data)
    return out


def _csv_symbol(raw: pd.DataFrame, data: DataConfig) -> pd.DataFrame:
    label = f"{data.source} symbol {data.symbol}"
    return normalize_ohlcv(raw, label=label, max_move=data.max_move, start=data.start, end=data.end)


@contextlib.contextmanager
def _naming(ticker: Ticker) -> Iterator[None]:
    """Re-raise a user-input error with the ticker's name in front, so the one line names it."""
    try:
        yield
    except LstmbtError as exc:
        raise type(exc)(f"ticker {ticker.name}: {exc}") from None


def checked(ticker: Ticker, check: Any, *args: Any) -> Any:
    """``check(*args)``, with a user-input error naming ``ticker``."""
    with _naming(ticker):
        return check(*args)


# --------------------------------------------------------------------------- an interrupted universe

#: the tickers a universe run started with, kept in its partial directory for ``--resume``
TICKER_LIST = "universe.json"


def keep_ticker_list(partial: Path, tickers: list[Ticker], resumed: bool) -> None:
    """Record the tickers a new universe run starts with in its ``partial`` directory; refuse a
    resumed one whose source now names other tickers (a list file edited since), naming those
    added and removed.

    A partial directory written before the list was kept shows only its finished tickers' folders:
    one of them no longer named counts as removed.
    """
    path, names = partial / TICKER_LIST, [t.name for t in tickers]
    if not resumed:
        write_atomic(path, json.dumps(names) + "\n")
        return
    if path.is_file():
        started = [str(name) for name in read_json(path, list)]
        removed, added = [n for n in started if n not in names], [n for n in names if n not in started]
    else:
        slugs = {t.slug for t in tickers}
        started, added = [], []
        removed = sorted(p.name for p in (partial / "tickers").glob("*") if p.is_dir() and p.name not in slugs)
    if removed or added:
        change = "; ".join(f"{what} {', '.join(which)}" for what, which in (("added", added), ("removed", removed))
                           if which)
        begun = f" ({len(started)} tickers: {', '.join(started)})" if started else ""
        raise DataError(f"the universe's tickers changed since the interrupted run started{begun}: {change}; "
                        "restore the list it started with and resume, or start a new run (another --out)")


# --------------------------------------------------------------------------- run directory


def write_universe(result: UniverseResult, folder: Path, pages: Mapping[str, str] | None = None) -> None:
    """Write a universe result's files (UNIVERSE_FILES) into ``folder``; ``pages`` (``{name: text}``,
    e.g. ``report.html`` from ``lstmbt.reports.universe.render_universe``) are rendered by the caller."""
    write_atomic(folder / "config.toml", result.config.to_toml())
    write_json(folder / "manifest.json", result.manifest)
    write_json(folder / "metrics.json", result.metrics)
    write_parquet(folder / "returns.parquet", result.returns.rename_axis("date"), index=None)
    write_parquet(folder / "weights.parquet", result.weights)
    for name in _OPTIONAL_FRAMES:
        write_parquet(folder / f"{name}.parquet", getattr(result, name))
    for name, text in (pages or {}).items():
        write_atomic(folder / name, text)


def is_universe_dir(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a universe run (its manifest lists the tickers)."""
    path = Path(run_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # a damaged manifest is named by whichever loader reads it next
        return False
    return isinstance(manifest, dict) and "universe" in manifest


def load_universe_run(run_dir: str | Path) -> UniverseResult:
    """A ``UniverseResult`` read back from a universe run directory.

    A missing, truncated or misshapen file is refused with one ``DataError`` line naming it.
    """
    run_dir = Path(run_dir)
    missing = [name for name in _REQUIRED if not (run_dir / name).is_file()]
    if missing:
        raise DataError(f"{run_dir} lacks {', '.join(missing)}; pass a directory written by `lstmbt run`")
    manifest = read_json(run_dir / "manifest.json")
    tickers = manifest.get("tickers")
    if not isinstance(tickers, list) or not all(isinstance(t, dict) and {"name", "run_dir"} <= set(t) for t in tickers):
        raise DamagedFileError(run_dir / "manifest.json", "has an unexpected shape (no list of tickers, each "
                                                          "with a name and a run_dir)")
    ticker_metrics = {}
    for entry in tickers:
        path = run_dir / str(entry["run_dir"]) / "metrics.json"
        ticker_metrics[entry["name"]] = read_metrics(path) if path.is_file() else {}
    weights = read_parquet(run_dir / "weights.parquet")
    lacking = [c for c in WEIGHT_COLUMNS if c not in weights.columns]
    if lacking:
        raise DamagedFileError(run_dir / "weights.parquet", f"has an unexpected shape (no {', '.join(lacking)} "
                                                            f"column; a universe's weights have {', '.join(WEIGHT_COLUMNS)})")
    return UniverseResult(
        config=read_config(run_dir / "config.toml"),
        returns=read_parquet(run_dir / "returns.parquet"),
        weights=weights,
        metrics=read_metrics(run_dir / "metrics.json"),
        ticker_metrics=ticker_metrics, manifest=manifest,
        **{name: _optional_frame(run_dir / f"{name}.parquet") for name in _OPTIONAL_FRAMES},
    )


def _optional_frame(path: Path) -> pd.DataFrame:
    """The frame saved at ``path``; empty when a run saved before it existed lacks the file."""
    return read_parquet(path) if path.is_file() else pd.DataFrame()
