"""Which tickers a ``data.source`` names.

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

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from lstmbt.backtest.config import DataConfig
from lstmbt.backtest.data import read_csv_frame
from lstmbt.backtest.errors import ConfigError, DataError


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
    if scheme == "frame":  # a DataFrame's name, commas and all: one series (which load_prices cannot load again)
        return Ticker(name=rest, data=data)
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
    try:
        frame, column = read_csv_frame(path)
    except DataError:
        return []
    return [] if column is None else sorted(frame[column].astype(str).str.strip().unique())


def _csv_tickers(path: Path, data: DataConfig) -> list[Ticker]:
    """One ticker per symbol of a long CSV, or the file itself (named by its stem) when wide."""
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
