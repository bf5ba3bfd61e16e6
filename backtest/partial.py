"""The partial directory of a CLI run, and the lock that lets one process at a time work on it.

``lstmbt run --out OUT`` keeps its finished work in ``<OUT.parent>/.<OUT.name>.partial/`` until the
run directory is saved: ``config.toml`` (the resolved config), ``lock`` (the pid of the process
working on it, ``flock``-ed for that process's lifetime: the OS releases it however the process
ends, so a lock left by a killed run is simply taken over), and ``folds/`` (``backtest.checkpoint``)
or, for a universe, ``tickers/``. ``claim_run`` holds it for one command; nothing is left behind
but saved work, which ``lstmbt run --resume OUT`` continues, and an interrupt says which of the
three it left: nothing, saved folds (or tickers), or the saved run. A partial directory, lock or
work folder that is a symbolic link is refused: nothing is written through a link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

from lstmbt.backtest.checkpoint import saved_folds
from lstmbt.backtest.config import RunConfig, read_toml
from lstmbt.backtest.errors import ConfigError, DataError, LstmbtError, os_error_line
from lstmbt.backtest.interrupts import NOTHING_WRITTEN, Interrupted
from lstmbt.backtest.rundir import remove_stale_tmp, write_atomic

LOCK_FILE = "lock"
#: OSError numbers that mean the run cannot be written where --out points
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def partial_dir(out_dir: str | Path) -> Path:
    """``<out.parent>/.<out.name>.partial``: where ``lstmbt run`` keeps a run until it is saved."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.partial")


@contextlib.contextmanager
def claim_run(out_dir: str | Path, config: RunConfig, resumed: bool, tickers: int | None = None) -> Iterator[Path]:
    """Hold the partial directory of the run saved to ``out_dir`` for the block; yields it.

    A new run (``resumed`` false) refuses an ``out_dir`` that exists or is a dangling link, and
    creates the partial directory with ``config`` (which also proves the parent is writable),
    taking over one that a killed run left before its first fold. Either way the lock is taken,
    or the run refused with one line naming the process that holds it, and what killed runs left
    while saving (``.OUT.tmp-PID``) is removed. When the block fails, a new run with nothing saved
    removes its partial directory and the folders it made for ``out_dir``; saved work is kept for
    ``--resume`` and the error says so; an OSError such as a full disk becomes a one-line DataError.
    An interrupt (``KeyboardInterrupt``) becomes ``Interrupted``, whose line says what is on disk
    (``tickers``: how many a universe has, for that line).
    """
    out_dir = Path(out_dir)
    partial = partial_dir(out_dir)
    held: dict[str, Any] = {"fd": None, "made": [], "claimed": resumed, "ready": False}
    try:
        _claim(out_dir, config, resumed, held)
        held["ready"] = True
        remove_stale_tmp(out_dir)
        yield partial
    except KeyboardInterrupt:
        raise Interrupted(_interrupted_line(out_dir, resumed, tickers, held)) from None
    except Exception as exc:
        if not held["ready"]:  # refused: nothing of this run is left, but a folder it made for --out
            _remove_empty(held["made"])
            if isinstance(exc, OSError):
                raise write_failure(exc, out_dir) from exc
            raise
        failure = _failure(exc, partial, out_dir, resumed)
        if not partial.exists():
            _remove_empty(held["made"])
        if failure is exc:
            raise
        raise failure from exc
    finally:
        _unlock(held["fd"])


def _claim(out_dir: Path, config: RunConfig, resumed: bool, held: dict[str, Any]) -> None:
    """Lock the partial directory (a new run's: made first) into ``held``, step by step, so that
    an interrupt at any step leaves ``held`` saying what is this run's to remove."""
    if resumed:
        held["fd"] = _lock(partial_dir(out_dir), out_dir)
        return
    _check_out_dir(out_dir)
    held["made"] = _missing_folders(out_dir.parent)
    held["claimed"] = True  # from here on a directory at out_dir is this run's
    held["fd"] = _create_partial(out_dir, config)[1]


def start_partial(out_dir: str | Path, config: RunConfig) -> Path:
    """Create the partial directory of a new run with its resolved ``config.toml``; returns it
    (unlocked: ``claim_run`` is what a command uses)."""
    partial, fd = _create_partial(Path(out_dir), config)
    _unlock(fd)
    return partial


def resume_paths(path: str | Path) -> tuple[Path, Path]:
    """(run directory, partial directory) for ``--resume PATH``; PATH may name either of them."""
    path = Path(path)
    name = path.name
    if name.startswith(".") and name.endswith(".partial") and len(name) > len("..partial"):
        path = path.with_name(name[1 : -len(".partial")])
    partial = partial_dir(path)
    if path.exists():
        leftover = f" (remove the leftover {partial})" if partial.exists() else ""
        raise ConfigError(f"{path} already exists: that run finished and needs no resume{leftover}; "
                          "start a new run with another --out")
    _refuse_links(partial)
    if not partial.is_dir():
        raise ConfigError(f"nothing to resume for {path}: no interrupted run in {partial} (a finished run "
                          "needs no resume); pass the --out of an interrupted `lstmbt run`")
    return path, partial


def load_partial_config(partial: str | Path) -> RunConfig:
    """The config an interrupted run was started with, reading data from the cache (no ``--refresh``:
    the first session's download is in the cache, newer bars would only be refused as other data)."""
    path = Path(partial) / "config.toml"
    if not path.is_file():
        raise DataError(f"{partial} holds no config.toml (the run stopped before it began); "
                        f"remove {partial} and start the run again")
    try:
        # keys an earlier version did not write take what it ran with, so its folds resume as they were made
        return RunConfig.from_saved(read_toml(path)).with_values({"data.refresh": False})
    except ConfigError as exc:
        raise ConfigError(f"the interrupted run's config is damaged: {exc}; or remove {partial} and start "
                          "the run again") from None


def saved_work(partial: str | Path, tickers: int | None = None) -> tuple[int, str]:
    """(units saved, "3 of 9 folds"): a single run's folds, or a universe's finished tickers
    (``tickers``: how many the universe has, when known)."""
    partial = Path(partial)
    if tickers is not None or (partial / "tickers").is_dir():
        done = sum(1 for _ in (partial / "tickers").glob("*/report.html"))
        return done, f"{done} of {tickers} tickers" if tickers is not None else f"{done} tickers"
    done, total = saved_folds(partial / "folds")
    return done, f"{done} of {total} folds" if total is not None else f"{done} folds"


def _interrupted_line(out_dir: Path, resumed: bool, tickers: int | None, held: dict[str, Any]) -> str:
    """The line of an interrupt of the run ``claim_run`` holds, true of what is on disk: the run saved
    (the interrupt came while its partial directory was removed, which is finished now), the folds
    or tickers kept for ``--resume``, or nothing (a new run's empty partial directory removed)."""
    partial = partial_dir(out_dir)
    if not held["claimed"]:
        return NOTHING_WRITTEN
    if out_dir.is_dir():
        discard_partial(partial)
        return f"interrupted while cleaning up: the run was saved at {out_dir}"
    done, what = saved_work(partial, tickers)
    if resumed or (done and _locked_by_us(partial)):
        return f"interrupted: {what} saved; continue with: lstmbt run --resume {out_dir}"
    if _locked_by_us(partial) or not partial.exists():
        discard_partial(partial)
        _remove_empty(held["made"])
    return NOTHING_WRITTEN


def discard_partial(partial: str | Path) -> None:
    """Remove a partial directory (the run was saved, or its input was refused): renamed aside in
    one step first, so no interrupt or kill leaves half of it under its name for ``--resume`` to
    refuse; the aside copy is removed now, or by the next run of the name (``remove_stale_tmp``).
    Calling it again finishes what an interrupted call began. A link is never followed."""
    partial = Path(partial)
    aside = partial.with_name(f"{partial.name}.tmp-{os.getpid()}")
    if partial.is_symlink() or aside.is_symlink():
        return
    with contextlib.suppress(FileNotFoundError):
        os.rename(partial, aside)
    shutil.rmtree(aside, ignore_errors=True)


def write_failure(exc: OSError, out_dir: str | Path) -> DataError:
    """One line for an OSError met while writing the run ``out_dir``: the file, why, and the fix."""
    return DataError(os_error_line(exc, writing=f"the run {out_dir}"))


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.is_symlink() and not out_dir.exists():
        raise ConfigError(f"--out {out_dir} is a symbolic link to {os.readlink(out_dir)}, which does not exist; "
                          "remove the link or choose another --out")
    if out_dir.exists():
        raise ConfigError(f"output directory {out_dir} already exists; choose another --out or remove it")


def _create_partial(out_dir: Path, config: RunConfig) -> tuple[Path, int | None]:
    """The new run's partial directory, locked: built aside and renamed into place with the lock
    held, so no other process ever sees it unlocked or without its config."""
    partial = partial_dir(out_dir)
    if partial.exists() or partial.is_symlink():
        _take_over_empty(partial, out_dir)
    staging = partial.with_name(f"{partial.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    fd = None
    try:
        write_atomic(staging / "config.toml", config.to_toml())
        fd = _lock(staging, out_dir)
        os.rename(staging, partial)
    except BaseException as exc:
        _unlock(fd)
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            _take_over_empty(partial, out_dir)  # another process made it meanwhile: say which
        raise
    return partial, fd


def _take_over_empty(partial: Path, out_dir: Path) -> None:
    """Remove a partial directory that a run killed before its first fold left (no lock holder,
    nothing saved); refuse one a live process holds or that holds saved work."""
    _refuse_links(partial)
    if not partial.is_dir():
        raise ConfigError(f"{partial} is in the way of the run's working directory; remove it")
    fd = _lock(partial, out_dir)
    try:
        remove_stale_tmp(out_dir)  # safe while holding the lock: no live run of this name can be saving
        if saved_work(partial)[0] or any(partial.glob("folds/**/fold-*")):  # uncommitted or older-format folds too
            raise ConfigError(f"an interrupted run of {out_dir} is waiting in {partial}; continue it with "
                              f"`lstmbt run --resume {out_dir}` or remove {partial}")
        discard_partial(partial)
    finally:
        _unlock(fd)


def _refuse_links(partial: Path) -> None:
    """Refuse a partial directory, lock or work folder that is a symbolic link: writing there would
    write into whatever the link points at."""
    for path in (partial, partial / LOCK_FILE, partial / "folds", partial / "tickers"):
        if path.is_symlink():
            raise ConfigError(f"{path} is a symbolic link to {os.readlink(path)}, and lstmbt never writes through a "
                              "link; put the folder itself there, or remove the link")


def _locked_by_us(partial: Path) -> bool:
    """Whether ``partial`` is this process's: its lock file holds our pid."""
    if partial.is_symlink():
        return False
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return (partial / LOCK_FILE).read_text().strip() == str(os.getpid())
    return False


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first: what making it makes."""
    missing = []
    while not (folder.exists() or folder.is_symlink()) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) that are still empty: those a refused run made for ``--out``."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _lock(partial: Path, out_dir: Path) -> int | None:
    """Lock ``partial`` for this process's lifetime (or until ``_unlock``) and write our pid in it;
    refuse with one line when a live process holds it."""
    _refuse_links(partial)
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs of the same name are not guarded
        return None
    try:  # O_NOFOLLOW: a link put in place since the check above is refused, never written through
        fd = os.open(partial / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        _refuse_links(partial)
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"another lstmbt process (pid {pid}) is running this run; wait for it to finish, "
                          f"or stop it and continue with `lstmbt run --resume {out_dir}`") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the last descriptor releases the flock


def _failure(exc: Exception, partial: Path, out_dir: Path, resumed: bool) -> Exception:
    """The error a failed run ends with: a new run's empty partial directory is gone; saved work
    is kept and named (in a new run's refusal, a disk error, or as a note on a bug). A problem only a
    config change fixes (``LstmbtError.resumable`` false) discards the saved work: ``--resume``
    keeps the config, so it could never continue it."""
    done, what = saved_work(partial)
    if isinstance(exc, LstmbtError) and not exc.resumable:
        discard_partial(partial)
        return type(exc)(f"{exc} (the {what} saved before it were discarded: --resume keeps the config, so they "
                         "could not be continued)") if done else exc
    keep = ""
    if done or resumed:
        keep = f"; {what} saved in {partial}: continue with `lstmbt run --resume {out_dir}` once that is fixed"
    else:
        discard_partial(partial)
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS:
        return DataError(f"{write_failure(exc, out_dir)}{keep}")
    if not isinstance(exc, LstmbtError):
        if keep:
            exc.add_note(keep[2:])
        return exc
    if resumed or not keep or partial.name in str(exc):  # refusals on resume name their own fix
        return exc
    return type(exc)(f"{exc}{keep}")
