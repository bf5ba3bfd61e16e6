"""The run registry: an SQLite index over the run directories under a root (``lstmbt runs``).

The run directories stay the source of truth. The index (``<root>/.lstmbt-runs.sqlite``) holds
each run's key config and every metric of ``metrics.json``, and is brought up to date on every
call: new or changed runs (by the modification times of their files) are read, removed ones
dropped. The index is only a cache, so it never stops a listing:

- a damaged index ("database disk image is malformed", not a database at all) is rebuilt;
- one that cannot be used (a directory at its path, a read-only or full disk, another program's
  database, a lock held too long) is left as it is, and the runs are listed from a temporary
  in-memory index, with one ``DataWarning`` saying why;
- a run directory with a missing, malformed or misshapen ``metrics.json``, ``manifest.json`` or
  ``config.toml``, or with a value SQLite cannot hold (an integer beyond 64 bits, a name that is
  not UTF-8), is skipped with one warning naming the run and why (``runs show`` says why); the
  others are listed.

Runs are found at any depth below the root (a sweep's trials, a universe's tickers, runs kept in
sub-folders); a run's id is its path relative to the root, and ``part_of`` names the sweep or
universe that holds it. Runs with the same config (``config_digest``: the saved config filled as
``fill_saved`` fills it) on the same prices (the manifest's data hash) and the same results
(``twins.results_digest``) are duplicates: every one but the oldest gets ``duplicate_of``. The same
config and prices with other results is no duplicate but a ``DataWarning`` (``twins``). Dot-directories (``.NAME.partial``, ``.NAME.tmp-*``:
unfinished runs) are never listed, nor is anything below them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from lstmbt.backtest.config import RunConfig, fill_saved
from lstmbt.backtest.campaign.index_file import COLUMNS, damaged, open_index, problem, removed
from lstmbt.backtest.campaign.twins import differing_sentences, made_with, mark_twins, results_digest
from lstmbt.backtest.errors import ConfigError, DataError, DataWarning, shorten
from lstmbt.backtest.readback import DamagedFileError, read_json, read_metrics, read_toml
from lstmbt.models.key import BASELINES, BENCHMARK  # not from scoring, which takes 2 s to import

INDEX_NAME = ".lstmbt-runs.sqlite"
#: metrics shown per model by ``lstmbt runs list`` (beside ``bh_sharpe``, buy-and-hold's Sharpe in the same run)
LIST_METRICS = ("total_return", "sharpe", "hit_rate", "hit_rate_pvalue")
#: a universe's portfolios of its tickers' strategies: equal weight and cross-sectional top-k
_PORTFOLIO_PREFIXES = ("", "ew_", "xs_")
#: how deep below the root runs are looked for (root/sweep/trials/run is 3)
MAX_DEPTH = 6
#: config keys that change no figure of a run, left out of ``config_digest``
UNCOMPARED_KEYS = ("data.refresh",)
_RUN_FILES = ("manifest.json", "metrics.json", "config.toml")
_FIX = "restore the file, or move the run directory out of the root"
#: SQLite's integers are 64-bit: a larger one cannot be indexed
_INT_LIMIT = 2**63


def sync_index(root: str | Path) -> sqlite3.Connection:
    """The registry of ``root``, updated to the run directories there now; skipped runs are warned about."""
    db, skipped = _sync(root)
    _warn_skipped(root, skipped)
    return db


def _sync(root: str | Path) -> tuple[sqlite3.Connection, dict[str, str]]:
    """(the index, {run id: why it was skipped}) of the run directories under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"run root {root} does not exist; pass --root DIR where `lstmbt run` wrote its runs")
    on_disk = find_run_dirs(root)
    path = root / INDEX_NAME
    for attempt in (1, 2):
        db = None
        try:
            db = open_index(path)
            return db, _update(db, on_disk)
        except (sqlite3.DatabaseError, OSError) as exc:  # damage often shows only when a page is read
            if db is not None:
                db.close()
            if attempt == 1 and damaged(exc) and removed(path):
                continue  # a damaged index is only a cache: start it again
            why = problem(path, exc)
            break
    warnings.warn(f"run index {path} {why}; listing from a temporary in-memory index instead", DataWarning,
                  stacklevel=3)
    db = open_index(":memory:")
    return db, _update(db, on_disk)


def find_run_dirs(root: Path) -> dict[str, Path]:
    """{id: directory} of every run at most ``MAX_DEPTH`` levels below ``root``; the id is the path
    relative to the root. Dot-directories (unfinished runs) are not entered; a linked folder is,
    once (a link back up the tree is no loop)."""
    found: dict[str, Path] = {}
    level, seen = [root], {_real(root)}
    for _ in range(MAX_DEPTH):
        below = []
        for folder in level:
            try:
                with os.scandir(folder) as entries:
                    subdirs = sorted(Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir())
            except OSError:
                continue  # an unreadable folder holds no run lstmbt can list
            subdirs = [sub for sub in subdirs if _real(sub) not in seen]
            seen.update(map(_real, subdirs))
            for sub in subdirs:
                if _is_run_dir(sub):
                    found[sub.relative_to(root).as_posix()] = sub
            below.extend(subdirs)
        level = below
    return dict(sorted(found.items()))


def _real(path: Path) -> str:
    try:
        return os.path.realpath(path)
    except OSError:
        return str(path)


def _is_run_dir(path: Path) -> bool:
    """A finished run's directory: not a dot-directory (an unfinished run), and holding its manifest
    or metrics (a sweep's folder or a folder of notes holds neither)."""
    try:
        return (not path.name.startswith(".") and path.is_dir()
                and any((path / name).is_file() for name in _RUN_FILES[:2]))
    except OSError:
        return False


def _update(db: sqlite3.Connection, on_disk: dict[str, Path]) -> dict[str, str]:
    """Bring ``db`` up to date with ``on_disk``; returns the skipped runs and why."""
    known = dict(db.execute("SELECT id, stamp FROM runs").fetchall())
    for gone in set(known) - set(on_disk):
        _forget(db, gone)
    skipped = {}
    for run_id, run_dir in on_disk.items():
        if not _utf8(run_id):  # SQLite holds UTF-8 text only; os.scandir keeps other bytes as surrogates
            skipped[run_id] = f"{run_dir.name} is a folder name that is not UTF-8 text"
            continue
        stamp = _stamp(run_dir)
        if stamp is not None and known.get(run_id) == stamp:
            continue
        _forget(db, run_id)
        try:
            run, metrics = _read_run(run_id, run_dir, stamp)
        except DamagedFileError as exc:
            skipped[run_id] = f"{exc.path.name} {exc.problem}"
            continue
        db.execute(f"INSERT INTO runs VALUES ({', '.join('?' * len(run))})", run)
        db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", metrics)
    db.commit()
    return skipped


def _stamp(run_dir: Path) -> float | None:
    """The newest modification time of the run's files (None if one cannot be read)."""
    try:
        return max((run_dir / name).stat().st_mtime for name in _RUN_FILES)
    except OSError:
        return None


def _forget(db: sqlite3.Connection, run_id: str) -> None:
    db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    db.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))


def _read_run(run_id: str, run_dir: Path, stamp: float | None) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The index rows of one run: (its ``runs`` row, its ``metrics`` rows); ``DamagedFileError``
    for a file that is missing, malformed or of the wrong shape."""
    manifest = read_json(run_dir / "manifest.json")
    metrics = read_metrics(run_dir / "metrics.json")
    config = read_toml(run_dir / "config.toml")
    target = _table(config, "target", run_dir / "config.toml")
    data = _table(manifest, "data", run_dir / "manifest.json")
    oos = _table(manifest, "out_of_sample", run_dir / "manifest.json")
    source = data.get("source")
    if "universe" in manifest:  # a universe run: its rows are the portfolio strategies (ew_*, xs_*)
        universe = manifest["universe"]
        source = f"{source} (universe of {len(universe) if isinstance(universe, (list, dict)) else '?'} tickers)"
    row = (run_id, str(run_dir), stamp, manifest.get("created"), source, data.get("symbol"), target.get("task"),
           target.get("regression"), target.get("horizon"), oos.get("first_date"), oos.get("last_date"),
           oos.get("days"), _part_of(run_id, run_dir), _digest_of(config, run_dir / "config.toml", "universe" in manifest),
           data.get("sha256"), results_digest(metrics), made_with(manifest))
    for name, value in zip(COLUMNS["runs"][3:], row[3:]):
        path = run_dir / ("config.toml" if name in ("task", "regression", "horizon") else "manifest.json")
        if value is not None and not isinstance(value, (str, int, float)):
            raise DamagedFileError(path, f"has an unexpected shape ({name} is a {type(value).__name__})", _FIX)
        _check_storable(path, name, value)
    rows = [(run_id, strategy, key, value) for strategy, entry in metrics.items() for key, value in entry.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]
    for _, strategy, key, value in rows:
        for name, item in ((strategy, strategy), (f"{strategy}.{key}", key), (f"{strategy}.{key}", value)):
            _check_storable(run_dir / "metrics.json", name, item)
    return row, rows


def _check_storable(path: Path, name: str, value: Any) -> None:
    """``DamagedFileError`` for a value of ``path`` that SQLite cannot hold: an integer beyond 64
    bits, or text that is not UTF-8 (a lone surrogate, as ``\\udc80`` in JSON gives)."""
    if isinstance(value, int) and not -_INT_LIMIT <= value < _INT_LIMIT:
        raise DamagedFileError(path, f"has a number too large to index ({name} = {shorten(str(value), 40)})", _FIX)
    if isinstance(value, str) and not _utf8(value):
        raise DamagedFileError(path, f"has text that is not UTF-8 ({name})", _FIX)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def config_digest(cfg: RunConfig | dict[str, Any], universe: bool = False) -> str:
    """A hash of what a run computes from its config (a ``RunConfig`` or a saved ``config.toml``'s
    table): the values ``fill_saved`` gives, less ``UNCOMPARED_KEYS`` (and the ``portfolio`` keys,
    unless ``universe``: one ticker's run has no portfolio), so a config saved by an older version
    digests like the same config written today."""
    raw = cfg.to_dict() if isinstance(cfg, RunConfig) else cfg
    flat = {f"{section}.{key}": value for section, entries in raw.items() if isinstance(entries, dict)
            for key, value in entries.items()}
    values = {k: v for k, v in fill_saved(flat).items()
              if k not in UNCOMPARED_KEYS and (universe or not k.startswith("portfolio."))}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=repr).encode("utf-8")).hexdigest()


def _digest_of(config: dict[str, Any], path: Path, universe: bool) -> str:
    try:
        return config_digest(config, universe)
    except (TypeError, ValueError) as exc:  # a value of a type TOML cannot hold, or nesting gone wrong
        raise DamagedFileError(path, f"has an unexpected shape ({exc})", _FIX) from None


def _part_of(run_id: str, run_dir: Path) -> str | None:
    """The sweep or universe holding a nested run (``"sweep sweeps/spx"``), or None for a run on its own."""
    parts = run_id.split("/")
    for depth in range(len(parts) - 1, 0, -1):
        holder = run_dir.parents[len(parts) - 1 - depth]
        name = "/".join(parts[:depth])
        if (holder / "sweep.toml").is_file():
            return f"sweep {name}"
        if (holder / "tickers").is_dir() and _is_run_dir(holder):
            return f"universe {name}"
    return None


def _table(parent: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = parent.get(key, {})
    if not isinstance(value, dict):
        raise DamagedFileError(path, f"has an unexpected shape ({key} is not a table)", _FIX)
    return value


def _warn_skipped(root: str | Path, skipped: dict[str, str]) -> None:
    for run_id, why in skipped.items():
        warnings.warn(f"skipped {Path(root) / run_id}: {why}; {_FIX}", DataWarning, stacklevel=3)


def list_runs(root: str | Path, source: str | None = None, target: str | None = None, since: str | None = None,
              sort: str | None = None, recursive: bool = False) -> pd.DataFrame:
    """One row per run and model (every strategy but buy-and-hold and the naive baselines: each
    network family, LightGBM, the linear twins, plug-in models, a universe's ``ew_``/``xs_``
    portfolios): the run's key config, the model's ``LIST_METRICS`` and ``bh_sharpe``, buy-and-hold's
    Sharpe on the run's days (a universe's: equal-weight buy-and-hold of its tickers),
    ``part_of`` (the sweep or universe holding the run), ``duplicate_of`` (the oldest run with
    the same config, data and results, None for that one and for runs with no twin) and
    ``differs_from`` (the oldest run with the same config and data but other results, each such
    set warned about once with a ``DataWarning``: ``twins.differing_sentences``).

    ``source``: substring of the data source; ``target``: ``regression``, ``classification`` or a
    model name; ``since``: ISO date, runs created on or after it; ``sort``: any metric key,
    best first (lowest first for p-values and errors), else newest runs first; ``recursive``:
    also the runs inside sweeps, universes and sub-folders (else only the root's own runs; the
    frame's ``attrs["nested"]`` counts the others). A run directory that cannot be read is left
    out, with a ``DataWarning`` naming the file.
    """
    db, skipped = _sync(root)
    _warn_skipped(root, {k: v for k, v in skipped.items() if recursive or "/" not in k})
    runs = pd.read_sql_query("SELECT * FROM runs", db)
    others = [f"{prefix}{name}" for prefix in _PORTFOLIO_PREFIXES for name in (BENCHMARK, *BASELINES)]
    rows = pd.read_sql_query(f"SELECT * FROM metrics WHERE strategy NOT IN ({', '.join('?' * len(others))})", db,
                             params=others)
    bench = pd.read_sql_query("SELECT run_id, value AS bh_sharpe FROM metrics WHERE strategy IN (?, ?) "
                              "AND metric = 'sharpe'", db, params=(BENCHMARK, f"ew_{BENCHMARK}"))
    db.close()
    every = runs = mark_twins(runs)
    nested = runs["id"].str.contains("/", regex=False)
    if not recursive:
        runs = runs[~nested]
    for sentence in differing_sentences(every, runs["id"]):  # the sets that hold a listed run
        warnings.warn(sentence, DataWarning, stacklevel=2)
    wide = rows.pivot_table(index=["run_id", "strategy"], columns="metric", values="value").reset_index()
    if wide.empty:  # no runs (or none with a model): the right columns, no rows
        wide = pd.DataFrame(columns=["run_id", "strategy", *LIST_METRICS])
    wide = wide.merge(bench.drop_duplicates("run_id"), on="run_id", how="left")  # a universe has no buy_and_hold row
    frame = runs.merge(wide, left_on="id", right_on="run_id").drop(columns=["run_id", "stamp"])
    frame = _filter(frame, source, target, since)
    if sort is not None:
        if sort not in frame.columns:
            choices = ", ".join(sorted(set(rows["metric"]))) or "none (no runs)"
            raise ConfigError(f"cannot sort by {sort!r}: not a metric of these runs; choose from {choices}")
        ascending = sort.endswith(("pvalue", "pvalue_abs")) or sort in ("rmse", "mae", "mape", "log_loss", "brier")
        frame = frame.sort_values(sort, ascending=ascending, na_position="last").reset_index(drop=True)
    else:
        frame = frame.sort_values(["created", "id", "strategy"], ascending=[False, True, True]).reset_index(drop=True)
    frame.attrs["nested"] = 0 if recursive else int(nested.sum())
    return frame


def latest_matching_run(root: str | Path, cfg: RunConfig, data_sha256: str) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """The newest run under ``root`` (at any depth) with ``cfg``'s config digest on the prices of
    ``data_sha256``, as ``show_run`` gives it (its index record, its metrics table); None when
    there is none, or no root."""
    if not Path(root).is_dir():
        return None
    db, _ = _sync(root)
    found = db.execute("SELECT id FROM runs WHERE config_digest = ? AND data_sha256 = ? "
                       "ORDER BY created DESC, id DESC LIMIT 1", (config_digest(cfg), data_sha256)).fetchone()
    try:
        return None if found is None else _record(db, found[0])
    finally:
        db.close()


def _filter(frame: pd.DataFrame, source: str | None, target: str | None, since: str | None) -> pd.DataFrame:
    if source:
        frame = frame[frame["source"].fillna("").astype(str).str.contains(source, regex=False)]
    if target:
        frame = frame[frame["strategy"].str.contains(target, regex=False)]
    if since:
        try:
            day = pd.Timestamp(since, tz="UTC")
        except ValueError:
            raise ConfigError(f"--since {since!r} is not a date; use YYYY-MM-DD") from None
        # an unreadable creation time counts as not after the date
        frame = frame[pd.to_datetime(frame["created"], utc=True, errors="coerce", format="ISO8601") >= day]
    return frame


def show_run(root: str | Path, run_id: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run's index record and its full metrics table (metrics as rows, strategies as columns);
    a nested run's id is its path under the root (``sweep-x/trials/t000-ab12cd34``). The record's
    ``differing`` sentences (twins with other results) are also warned about (``DataWarning``)."""
    db, skipped = _sync(root)
    try:
        if run_id in skipped:
            raise DataError(f"run {run_id!r} under {root} cannot be shown: {skipped[run_id]}; {_FIX}")
        if not _utf8(run_id) or db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            ids = [r[0] for r in db.execute("SELECT id FROM runs ORDER BY created DESC LIMIT 5")]
            raise DataError(f"no run {run_id!r} under {root}; `lstmbt runs list --recursive` shows them"
                            + (f" (newest: {', '.join(ids)})" if ids else ""))
        info, table = _record(db, run_id)
    finally:
        db.close()
    for sentence in info["differing"]:
        warnings.warn(sentence, DataWarning, stacklevel=2)
    return info, table


def _record(db: sqlite3.Connection, run_id: str) -> tuple[dict[str, Any], pd.DataFrame]:
    cursor = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
    info = dict(zip([c[0] for c in cursor.description], cursor.fetchone()))
    runs = mark_twins(pd.read_sql_query("SELECT id, created, config_digest, data_sha256, results_digest, made_with "
                                        "FROM runs", db))
    mine = runs[runs["id"] == run_id].iloc[0]
    info.update(duplicate_of=mine["duplicate_of"], differs_from=mine["differs_from"],
                duplicates=sorted(runs.loc[runs["duplicate_of"] == run_id, "id"]),
                differing=differing_sentences(runs, [run_id]))
    rows = pd.read_sql_query("SELECT strategy, metric, value FROM metrics WHERE run_id = ?", db, params=(run_id,))
    return info, rows.pivot_table(index="metric", columns="strategy", values="value", sort=False)
