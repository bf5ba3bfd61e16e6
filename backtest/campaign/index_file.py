"""The run registry's SQLite file: its layout, opening and checking it, and why it cannot be used.

The index is only a cache of the run directories (``registry``): a file of an older layout is
emptied and filled again, a damaged one is deleted and rebuilt, and one that is not lstmbt's
(``PRAGMA application_id``) is never changed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

#: ``PRAGMA application_id`` of an lstmbt index ("lsbt"), so another program's database is never changed
APPLICATION_ID = 0x6C736274
#: ``PRAGMA user_version`` of the index layout; an index of an older layout is only a cache, so it is rebuilt
SCHEMA_VERSION = 3
#: the tables' columns; ``results_digest`` and ``made_with`` (``twins``) tell duplicates from runs that differ
COLUMNS = {"runs": ("id", "path", "stamp", "created", "source", "symbol", "task", "regression", "horizon",
                    "first_date", "last_date", "days", "part_of", "config_digest", "data_sha256", "results_digest",
                    "made_with"),
           "metrics": ("run_id", "strategy", "metric", "value")}
#: the layout of the first indexes (before ``SCHEMA_VERSION``), still claimed as lstmbt's and rebuilt
OLD_COLUMNS = {"runs": COLUMNS["runs"][:12], "metrics": COLUMNS["metrics"]}
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, path TEXT, stamp REAL, created TEXT, source TEXT,
    symbol TEXT, task TEXT, regression TEXT, horizon INTEGER, first_date TEXT, last_date TEXT, days INTEGER,
    part_of TEXT, config_digest TEXT, data_sha256 TEXT, results_digest TEXT, made_with TEXT);
CREATE TABLE IF NOT EXISTS metrics (run_id TEXT, strategy TEXT, metric TEXT, value REAL);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id);
"""


class Unusable(sqlite3.DatabaseError):
    """An index file that lstmbt must not touch (another program's database) or found damaged."""


def open_index(path: str | Path) -> sqlite3.Connection:
    """A checked connection to the index at ``path``; ``Unusable`` for a damaged or foreign one."""
    db = sqlite3.connect(path, timeout=10)
    try:
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise Unusable("database disk image is malformed (quick_check)")
        if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            claim(db)
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            db.executescript("DROP TABLE IF EXISTS runs; DROP TABLE IF EXISTS metrics;")  # an older layout
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.executescript(SCHEMA)
    except BaseException:
        db.close()
        raise
    return db


def claim(db: sqlite3.Connection) -> None:
    """Mark a new index, or one written before indexes were marked, as lstmbt's; refuse any other."""
    tables = {name: tuple(row[1] for row in db.execute(f"PRAGMA table_info({name!r})"))
              for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and tables not in (COLUMNS, OLD_COLUMNS):
        raise Unusable(f"is not an lstmbt run index (it holds the table(s) {', '.join(sorted(tables))} "
                        "with other columns); move it away so lstmbt can keep its index there")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def damaged(exc: BaseException) -> bool:
    """Whether ``exc`` says the index file itself is damaged (so rebuilding it is the cure)."""
    if isinstance(exc, Unusable):
        return "malformed" in str(exc)
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or any(
        words in str(exc) for words in ("malformed", "not a database"))


def removed(path: Path) -> bool:
    """Delete a damaged index file and the journal files SQLite may have left beside it; False if
    it is no file or cannot be deleted (a read-only root)."""
    try:
        if not path.is_file():
            return False
        for name in (path.name, f"{path.name}-journal", f"{path.name}-wal", f"{path.name}-shm"):
            path.with_name(name).unlink(missing_ok=True)
    except OSError:
        return False
    return True


def problem(path: Path, exc: BaseException) -> str:
    """Why the index at ``path`` cannot be used, worded to follow its name, with the fix."""
    text = " ".join(str(exc).split())
    if path.is_dir():
        return "is a directory, not an index file; move it away to keep an index between calls"
    if isinstance(exc, Unusable):
        return text
    if damaged(exc):
        return f"is damaged and cannot be replaced ({text}); delete it to have it rebuilt"
    if "locked" in text or "busy" in text:
        return f"is locked by another process ({text}); retry when the other `lstmbt runs` has finished"
    return f"cannot be opened or written ({text}); make the run root writable to keep an index"


__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "COLUMNS", "OLD_COLUMNS", "Unusable", "open_index", "damaged",
           "removed", "problem"]
