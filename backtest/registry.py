"""The run registry: an SQLite index over the run directories under a root (``lstmbt runs``).

The run directories stay the source of truth. The index (``<root>/.lstmbt-runs.sqlite``) holds
each run's key config and every metric of ``metrics.json``, and is brought up to date on every
call: new or changed runs (by the modification time of their ``metrics.json``) are read,
removed ones dropped, and a missing or unreadable index is rebuilt from scratch.
"""

from __future__ import annotations

import json
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from backtest.errors import ConfigError, DataError

INDEX_NAME = ".lstmbt-runs.sqlite"
#: metrics shown per model by ``lstmbt runs list``
LIST_METRICS = ("total_return", "sharpe", "hit_rate", "hit_rate_pvalue")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, path TEXT, stamp REAL, created TEXT, source TEXT,
    symbol TEXT, task TEXT, regression TEXT, horizon INTEGER, first_date TEXT, last_date TEXT, days INTEGER);
CREATE TABLE IF NOT EXISTS metrics (run_id TEXT, strategy TEXT, metric TEXT, value REAL);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id);
"""


def sync_index(root: str | Path) -> sqlite3.Connection:
    """The registry of ``root``, updated to the run directories there now."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"run root {root} does not exist; pass --root DIR where `lstmbt run` wrote its runs")
    path = root / INDEX_NAME
    try:
        db = _connect(path)
    except sqlite3.DatabaseError:  # a damaged index is only a cache: start it again
        path.unlink(missing_ok=True)
        db = _connect(path)
    on_disk = {d.name: d for d in root.iterdir() if (d / "metrics.json").is_file() and (d / "manifest.json").is_file()}
    known = dict(db.execute("SELECT id, stamp FROM runs").fetchall())
    for gone in set(known) - set(on_disk):
        _forget(db, gone)
    for run_id, run_dir in on_disk.items():
        stamp = (run_dir / "metrics.json").stat().st_mtime
        if known.get(run_id) != stamp:
            _forget(db, run_id)
            _remember(db, run_id, run_dir, stamp)
    db.commit()
    return db


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.executescript(_SCHEMA)
    return db


def _forget(db: sqlite3.Connection, run_id: str) -> None:
    db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))


def _remember(db: sqlite3.Connection, run_id: str, run_dir: Path, stamp: float) -> None:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        config = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not a finished run directory: left out of the index
    target, data, oos = config.get("target", {}), manifest.get("data", {}), manifest.get("out_of_sample", {})
    source = data.get("source")
    if "universe" in manifest:  # a universe run: its rows are the portfolio strategies (ew_*, xs_*)
        source = f"{source} (universe of {len(manifest['universe'])} tickers)"
    db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
        run_id, str(run_dir), stamp, manifest.get("created"), source, data.get("symbol"),
        target.get("task"), target.get("regression"), target.get("horizon"), oos.get("first_date"),
        oos.get("last_date"), oos.get("days")))
    db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", [
        (run_id, strategy, key, value) for strategy, entry in metrics.items() for key, value in entry.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)])


def list_runs(root: str | Path, source: str | None = None, target: str | None = None, since: str | None = None,
              sort: str | None = None) -> pd.DataFrame:
    """One row per run and model: the run's key config and the model's ``LIST_METRICS``.

    ``source``: substring of the data source; ``target``: ``regression``, ``classification`` or a
    model name; ``since``: ISO date, runs created on or after it; ``sort``: any metric key,
    best first (lowest first for p-values and errors), else newest runs first.
    """
    db = sync_index(root)
    runs = pd.read_sql_query("SELECT * FROM runs", db)
    models = " OR ".join(f"strategy LIKE '{prefix}{model}_%'" for prefix in ("", "ew_", "xs_")
                         for model in ("lstm", "ridge", "logistic"))
    rows = pd.read_sql_query(f"SELECT * FROM metrics WHERE {models}", db)
    db.close()
    wide = rows.pivot_table(index=["run_id", "strategy"], columns="metric", values="value").reset_index()
    frame = runs.merge(wide, left_on="id", right_on="run_id").drop(columns=["run_id", "stamp"])
    frame = _filter(frame, source, target, since)
    if sort is not None:
        if sort not in frame.columns:
            choices = ", ".join(sorted(set(rows["metric"]))) or "none (no runs)"
            raise ConfigError(f"cannot sort by {sort!r}: not a metric of these runs; choose from {choices}")
        ascending = sort.endswith(("pvalue", "pvalue_abs")) or sort in ("rmse", "mae", "mape", "log_loss", "brier")
        return frame.sort_values(sort, ascending=ascending, na_position="last").reset_index(drop=True)
    return frame.sort_values(["created", "id", "strategy"], ascending=[False, True, True]).reset_index(drop=True)


def _filter(frame: pd.DataFrame, source: str | None, target: str | None, since: str | None) -> pd.DataFrame:
    if source:
        frame = frame[frame["source"].fillna("").str.contains(source, regex=False)]
    if target:
        frame = frame[frame["strategy"].str.contains(target, regex=False)]
    if since:
        try:
            day = pd.Timestamp(since, tz="UTC")
        except ValueError:
            raise ConfigError(f"--since {since!r} is not a date; use YYYY-MM-DD") from None
        frame = frame[pd.to_datetime(frame["created"], utc=True) >= day]
    return frame


def show_run(root: str | Path, run_id: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run's index record and its full metrics table (metrics as rows, strategies as columns)."""
    db = sync_index(root)
    cursor = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
    record = cursor.fetchone()
    if record is None:
        ids = [r[0] for r in db.execute("SELECT id FROM runs ORDER BY created DESC LIMIT 5")]
        db.close()
        raise DataError(f"no run {run_id!r} under {root}; `lstmbt runs list` shows them"
                        + (f" (newest: {', '.join(ids)})" if ids else ""))
    info = dict(zip([c[0] for c in cursor.description], record))
    rows = pd.read_sql_query("SELECT strategy, metric, value FROM metrics WHERE run_id = ?", db, params=(run_id,))
    db.close()
    table = rows.pivot_table(index="metric", columns="strategy", values="value", sort=False)
    return info, table
