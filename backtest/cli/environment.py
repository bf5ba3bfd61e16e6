"""What the command line tidies in its environment before a library reads it, each with one note.

- ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` set to what is no thread count (``abc``, ``0``,
  ``-1``): OpenMP would print "libgomp: Invalid value ..." once for each library that loads it,
  and MKL would quietly run torch on one thread. The variable is dropped, so lstmbt chooses the
  count as if it were unset.
- a matplotlib folder that cannot be written (a read-only HOME, or a file in the way): matplotlib
  (loaded by ``arch``) would warn on import. ``MPLCONFIGDIR`` then names a temporary folder,
  removed when the command ends.

Worker processes (sweeps, universes) inherit the tidied environment. Only the CLI calls this: a
library call never changes the environment of the program that made it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import MutableMapping

from lstmbt.models.threads import invalid_thread_vars


def tidy_environment(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Drop thread counts that are no numbers and point matplotlib to a writable folder, in
    ``environ``; returns one note per change (nothing when the environment is fine)."""
    notes = []
    for name, value in invalid_thread_vars(environ).items():
        del environ[name]  # unset before torch or scikit-learn loads OpenMP, which reads it once
        notes.append(f"{name}={value!r} is not a thread count (a whole number from 1), so it is ignored and "
                     f"lstmbt chooses the count; set it to a number such as 2, or unset it")
    blocked = _unwritable_matplotlib_dir(environ)
    if blocked is not None:
        try:
            temporary = tempfile.mkdtemp(prefix="lstmbt-matplotlib-")
        except OSError:
            return notes  # no writable temporary folder either: matplotlib's own warning says as much
        atexit.register(shutil.rmtree, temporary, ignore_errors=True)
        environ["MPLCONFIGDIR"] = temporary
        notes.append(f"matplotlib cannot write {blocked}, so it uses a temporary folder for this command; set "
                     "MPLCONFIGDIR (or HOME) to a writable folder to keep its font cache between commands")
    return notes


def _unwritable_matplotlib_dir(environ: MutableMapping[str, str]) -> str | None:
    """The first folder matplotlib would keep its settings or cache in that it cannot create or
    write (as ``matplotlib._get_config_or_cache_dir`` looks for them), else None."""
    if environ.get("MPLCONFIGDIR"):
        folders = [Path(environ["MPLCONFIGDIR"])]
    elif sys.platform == "win32":
        return None  # matplotlib looks in several places there, and they are seldom read-only
    else:
        try:
            home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
        except RuntimeError:  # no HOME and no home folder in the user database
            return "its folder (there is no home folder)"
        folders = ([Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib",
                    Path(environ.get("XDG_CACHE_HOME") or home / ".cache") / "matplotlib"]
                   if sys.platform.startswith(("linux", "freebsd")) else [home / ".matplotlib"])
    return next((str(folder) for folder in folders if not _writable(folder)), None)


def _writable(folder: Path) -> bool:
    """Whether ``folder`` is a folder this process may write, or could be created as one (its
    nearest existing parent is), without creating anything."""
    try:
        path = folder.resolve()
        while not path.exists() and path != path.parent:
            path = path.parent
        return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
    except OSError:
        return False


__all__ = ["tidy_environment"]
