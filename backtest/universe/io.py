"""Universes on disk: which tickers a source names, their prices, and the universe run directory.

A ``data.source`` names a universe (several tickers) in one of these forms:

- ``fdr:005930,000660,035420``, ``sample:sp500,nasdaq``, ``csv:a.csv,b.csv``: one scheme, then
  comma-separated tickers (a CSV path that exists as a file is never split);
- ``list:PATH``: a text file with one entry per line: a source (``fdr:005930``, ``sample:sp500``,
  ``csv:PATH``; each may itself name several tickers) or a bare FinanceDataReader ticker
  (``005930``, ``AAPL``). ``#`` starts a comment, blank lines are skipped, and relative CSV paths
  are read relative to the list file;
- ``csv:PATH`` of a long-format file (a symbol column) holding several symbols, with no
  ``data.symbol``: every symbol in it.

A source naming one ticker is a normal single-ticker run, unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lstmbt.backtest.config import DataConfig
from lstmbt.backtest.errors import ConfigError, DataError, LstmbtError

UNIVERSE_FILES = ("config.toml", "manifest.json", "metrics.json", "returns.parquet", "weights.parquet", "report.html")


@dataclass(frozen=True)
class Ticker:
    """One member of a universe: its unique ``name`` (the ticker code, the sample's name, the CSV
    symbol, or a wide CSV's file stem) and the ``data`` config of its own single-ticker run."""

    name: str
    data: DataConfig

    @property
    def slug(self) -> str:
        """The ticker's directory name under ``<run>/tickers/``."""
        return ticker_slug(self.name)


def ticker_slug(name: str) -> str:
    """``name`` made filename-safe (``USD/KRW`` -> ``USD-KRW``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "ticker"


# --------------------------------------------------------------------------- sources


def expand_source(data: DataConfig) -> list[Ticker]:
    """The tickers ``data.source`` names, in the order given; one ticker keeps ``data`` unchanged.

    Raises ConfigError for ``data.symbol`` with a multi-ticker source, a ticker named twice, or two
    names sharing a directory; DataError for a missing or empty list file or an unreadable CSV of
    a universe.
    """
    scheme, _, rest = data.source.partition(":")
    if scheme != "list":
        single = _single(scheme, rest, data)
        if single is not None:
            return [single]
        tickers = _entry_tickers(data.source, None, data)
    else:
        tickers = [t for entry, base in _list_entries(Path(rest)) for t in _entry_tickers(entry, base, data)]
    if data.symbol is not None:
        raise ConfigError(f"--symbol {data.symbol} cannot be combined with the universe source {data.source!r}; "
                          "drop --symbol to run every ticker it names, or pass one ticker as --source")
    _check_unique(tickers, data.source)
    return tickers


def _single(scheme: str, rest: str, data: DataConfig) -> Ticker | None:
    """The ticker of a one-ticker source, with ``data`` unchanged; None for a universe."""
    path = Path(rest)
    if scheme == "csv" and path.is_file():
        symbols = [] if data.symbol is not None else _csv_symbols(path)
        if len(symbols) > 1:
            return None
        return Ticker(name=data.symbol or (symbols[0] if symbols else path.stem), data=data)
    if "," in rest:
        return None
    # a missing CSV stays a single run too: load_prices reports it as it always has
    return Ticker(name=data.symbol or (path.stem if scheme == "csv" else rest), data=data)


def _entry_tickers(source: str, base: Path | None, data: DataConfig) -> list[Ticker]:
    """The tickers of a universe source or of one list-file entry (``base``: the list's folder)."""
    if ":" not in source:
        source = f"fdr:{source}"  # a bare entry of a list file is a FinanceDataReader ticker
    scheme, _, rest = source.partition(":")
    if scheme == "list":
        raise ConfigError(f"list file entry {source!r} is another list; list its tickers directly")
    if scheme == "csv" and base is not None and not Path(rest).is_absolute():
        rest = str(base / rest)
    parts = [rest] if scheme == "csv" and Path(rest).is_file() else [p.strip() for p in rest.split(",")]
    if not all(parts):
        raise ConfigError(f"source {source!r} has an empty ticker between commas; write e.g. fdr:005930,000660")
    if scheme == "csv":
        return [t for part in parts for t in _csv_tickers(Path(part), data)]
    return [Ticker(name=part, data=dataclasses.replace(data, source=f"{scheme}:{part}", symbol=None)) for part in parts]


def _csv_symbols(path: Path) -> list[str]:
    """The symbols of a long CSV; [] for a wide one or one that cannot be read (load_prices says why)."""
    from lstmbt.backtest.data import read_csv_frame

    try:
        frame, column = read_csv_frame(path)
    except DataError:
        return []
    return [] if column is None else sorted(frame[column].astype(str).str.strip().unique())


def _csv_tickers(path: Path, data: DataConfig) -> list[Ticker]:
    """One ticker per symbol of a long CSV, or the file itself (named by its stem) when wide."""
    from lstmbt.backtest.data import read_csv_frame

    frame, column = read_csv_frame(path)  # a universe's unreadable file is refused here, naming it
    source = f"csv:{path}"
    if column is None:
        return [Ticker(name=path.stem, data=dataclasses.replace(data, source=source, symbol=None))]
    symbols = sorted(frame[column].astype(str).str.strip().unique())
    return [Ticker(name=s, data=dataclasses.replace(data, source=source, symbol=s)) for s in symbols]


def _list_entries(path: Path) -> list[tuple[str, Path]]:
    """The entries of a list file with the folder relative CSV paths start from."""
    label = f"list:{path}"
    if not path.is_file():
        raise DataError(f"{label}: file not found; check the path (relative paths start at {Path.cwd()})")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{label} is not UTF-8 text; re-save it as UTF-8") from None
    entries = [line.split("#", 1)[0].strip() for line in lines]
    entries = [(entry, path.parent) for entry in entries if entry]
    if not entries:
        raise DataError(f"{label} names no tickers; write one source (fdr:005930, sample:sp500, csv:PATH) or "
                        "FinanceDataReader ticker per line, # starts a comment")
    return entries


def _check_unique(tickers: list[Ticker], source: str) -> None:
    seen: dict[str, Ticker] = {}
    for ticker in tickers:
        other = seen.setdefault(ticker.slug, ticker)
        if other is ticker:
            continue
        if other.name == ticker.name:
            raise ConfigError(f"{source!r} names ticker {ticker.name} twice; list each ticker once")
        raise ConfigError(f"tickers {other.name} and {ticker.name} of {source!r} would share the directory "
                          f"tickers/{ticker.slug}; drop or rename one")


# --------------------------------------------------------------------------- prices


def load_universe(tickers: list[Ticker]) -> dict[str, pd.DataFrame]:
    """Every ticker's validated prices by name; the first unusable one raises, its name first.

    A long CSV is read once for all its symbols.
    """
    from lstmbt.backtest.data import load_prices, read_csv_frame

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
    from lstmbt.backtest.data import normalize_ohlcv

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


# --------------------------------------------------------------------------- run directory


def write_universe(result: Any, folder: Path) -> None:
    """Write a ``backtest.universe.UniverseResult``'s files (UNIVERSE_FILES) into ``folder``."""
    from lstmbt.backtest.pipeline import write_json as _write_json
    from lstmbt.reports.universe import render_universe

    (folder / "config.toml").write_text(result.config.to_toml(), encoding="utf-8")
    _write_json(folder / "manifest.json", result.manifest)
    _write_json(folder / "metrics.json", result.metrics)
    result.returns.rename_axis("date").to_parquet(folder / "returns.parquet")
    result.weights.to_parquet(folder / "weights.parquet", index=False)
    (folder / "report.html").write_text(render_universe(result), encoding="utf-8")


def is_universe_dir(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a universe run (its manifest lists the tickers)."""
    path = Path(run_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # a damaged manifest is named by whichever loader reads it next
        return False
    return isinstance(manifest, dict) and "universe" in manifest


def load_universe_run(run_dir: str | Path) -> Any:
    """A ``backtest.universe.UniverseResult`` read back from a universe run directory.

    A missing, truncated or misshapen file is refused with one ``DataError`` line naming it.
    """
    from lstmbt.backtest.readback import DamagedFileError, read_config, read_json, read_metrics, read_parquet
    from lstmbt.backtest.universe.running import UniverseResult

    run_dir = Path(run_dir)
    missing = [name for name in UNIVERSE_FILES[:-1] if not (run_dir / name).is_file()]
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
    return UniverseResult(
        config=read_config(run_dir / "config.toml"),
        returns=read_parquet(run_dir / "returns.parquet"),
        weights=read_parquet(run_dir / "weights.parquet"),
        metrics=read_metrics(run_dir / "metrics.json"),
        ticker_metrics=ticker_metrics, manifest=manifest,
    )
