"""Reading a saved run's files back (``lstmbt report``, ``compare``, ``runs``).

A file that is missing, truncated, not valid JSON/TOML/parquet, or of the wrong shape becomes one
``DamagedFileError`` that names the file, what is wrong with it and the fix, never a parser's
traceback. The run directory is only read, so nothing in it is changed or lost.
"""

from __future__ import annotations

import errno
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import DataError, LstmbtError

#: what to do about a damaged file of a run directory
RESTORE = "restore it from a backup, or re-run `lstmbt run` to write the run directory again"


class DamagedFileError(DataError):
    """A saved file that cannot be read back.

    ``path``: the file; ``problem``: what is wrong with it, worded to follow the file name
    ("is not valid JSON (...)"); the message adds ``fix``.
    """

    def __init__(self, path: str | Path, problem: str, fix: str = RESTORE) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path} {problem}; {fix}")


def read_text(path: str | Path) -> str:
    """The UTF-8 text of ``path``."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DamagedFileError(path, _os_problem(exc)) from None
    except UnicodeDecodeError as exc:
        raise DamagedFileError(path, f"is not UTF-8 text (byte {exc.start}); it is damaged") from None


def read_json(path: str | Path, kind: type = dict) -> Any:
    """The JSON value in ``path``, which must be a ``kind`` (an object by default)."""
    try:
        value = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DamagedFileError(path, f"is not valid JSON (truncated or damaged: {exc.msg} at line {exc.lineno}, "
                                     f"column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # a number of over 4300 digits, or nesting too deep to parse
        raise DamagedFileError(path, f"is not a JSON file lstmbt wrote ({_first_line(str(exc).split(';')[0])})") from None
    if not isinstance(value, kind):
        raise DamagedFileError(path, f"has an unexpected shape (a JSON {_json_kind(value)}, not "
                                     f"a JSON {_json_kind(kind())})")
    return value


def read_metrics(path: str | Path) -> dict[str, dict[str, Any]]:
    """A ``metrics.json``: ``{strategy: {metric: value}}``."""
    metrics = read_json(path)
    for strategy, entry in metrics.items():
        if not isinstance(entry, dict):
            raise DamagedFileError(path, f"has an unexpected shape ({strategy!r} holds a JSON {_json_kind(entry)}, "
                                         "not an object of metrics)")
    return metrics


def read_toml(path: str | Path) -> dict[str, Any]:
    """The table of the TOML file ``path``."""
    try:
        return tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise DamagedFileError(path, f"is not valid TOML (truncated or damaged: {exc})") from None
    except (ValueError, RecursionError) as exc:  # a number of over 4300 digits, or nesting too deep to parse
        raise DamagedFileError(path, f"is not a TOML file lstmbt wrote ({_first_line(str(exc).split(';')[0])})") from None


def read_config(path: str | Path) -> RunConfig:
    """The run config saved as ``config.toml``; keys an earlier version did not write take the value
    that version ran with (``RunConfig.from_saved``)."""
    table = read_toml(path)
    try:
        return RunConfig.from_saved(table)
    except (LstmbtError, TypeError, AttributeError, ValueError) as exc:
        raise DamagedFileError(path, f"is not a valid run config ({exc})") from None


def read_parquet(path: str | Path) -> pd.DataFrame:
    """The frame saved in the parquet file ``path``."""
    import pyarrow  # already loaded by pandas' parquet reader; named here for its error type

    try:
        return pd.read_parquet(path)
    except OSError as exc:
        if exc.errno is not None:  # the file system's problem (missing, unreadable), not the bytes'
            raise DamagedFileError(path, _os_problem(exc)) from None
        problem = exc
    except (ValueError, pyarrow.ArrowException) as exc:
        problem = exc
    # pyarrow's text repeats the path and ends in advice; its first sentence is the news
    text = re.sub(r"Could not open Parquet input source '.*?':\s*", "", str(problem)).split(". ")[0]
    raise DamagedFileError(path, f"is not a readable parquet file (truncated or damaged: {_first_line(text)})")


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "is missing"
    if exc.errno == errno.EISDIR:
        return "is a directory, not a file"
    return f"cannot be read ({exc.strerror or exc})"


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _json_kind(value: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return next((name for kind, name in kinds.items() if type(value) is kind), "number")
