"""How the ``lstmbt`` command line ends a failed command: one line on stderr, never a traceback.

- ``LstmbtError`` (bad input, a damaged file): ``error: <message>``, exit status 2;
- ``OSError`` (a full or read-only disk, a missing path, a concurrent writer): one line naming the
  file, the problem (by errno) and the fix, exit status 2;
- running out of memory, or asking for a GPU that is not there: one line with the fix, exit status 2;
- Ctrl-C or SIGTERM: one ``interrupted...`` line that says what was kept, exit status 130 or 143,
  whatever the command and whenever it lands (``backtest.interrupts``);
- anything else is a bug in lstmbt: one ``error: internal error (...)`` line and exit status 1;
  ``LSTMBT_DEBUG=1`` or ``lstmbt --debug`` re-raises it (and any OSError or resource failure),
  so the full traceback shows.

Data-check warnings (``DataWarning``) print as one ``warning: <message>`` line each, once.
``backtest.cli.main`` runs the app through ``run_with_one_line_errors``; only the CLI imports
this module, and it imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from lstmbt.backtest import interrupts
from lstmbt.backtest.errors import DataWarning, LstmbtError, os_error_line, terminal_line
from lstmbt.models.threads import ContentionWarning

try:  # typer vendors click from 0.22 on; its exceptions are what the app raises
    from typer._click import exceptions as _usage
except ImportError:  # pragma: no cover - an older typer on plain click
    from click import exceptions as _usage  # type: ignore[no-redef]

DEBUG_ENV = "LSTMBT_DEBUG"
#: commands with an --out option, so "choose another --out" is a fix they offer
OUT_COMMANDS = ("run", "sweep", "report", "compare", "importance")
#: what the global options of this invocation asked for (set by the app callback, reset by main)
session: dict[str, Any] = {"debug": False, "command": None}
_CUDA_MISSING = re.compile(r"not compiled with cuda|no cuda gpu|sees no cuda|nvidia driver|cuda driver|"
                           r"cuda (is )?(not |un)available|no gpu", re.IGNORECASE)


def debugging() -> bool:
    """Whether internal errors should show their traceback (``--debug`` or ``LSTMBT_DEBUG=1``)."""
    return session["debug"] or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def interrupt_line() -> Iterator[None]:
    """Print the line of a Ctrl-C (or SIGTERM) that escapes a command (typer then exits 130 silently)."""
    try:
        yield
    except KeyboardInterrupt as exc:
        say_interrupted(exc)
        raise


def say_interrupted(exc: BaseException | None = None) -> None:
    """The one line of an interrupt, printed once per command: what the interrupted work left
    (``interrupts.Interrupted.line``), else what the command had saved (``saved``), else that nothing
    was written."""
    interrupts.say(getattr(exc, "line", None) or interrupts.line())


def saved(what: str) -> None:
    """The command's output is complete (``what``: "the run was saved at OUT"): an interrupt from now
    on, however late, says so rather than that nothing was written."""
    interrupts.set_line(f"interrupted while cleaning up: {what}")


def nothing_saved() -> bool:
    """Whether the command has not recorded complete output yet (``saved``)."""
    return interrupts.line() == interrupts.NOTHING_WRITTEN


@contextlib.contextmanager
def writing(target: Path, what: str) -> Iterator[None]:
    """Write the command's output file ``target`` in the block, then record it (``saved(what)``); an
    interrupt in the block that came after the file was replaced says it was written."""
    before = _identity(target)
    try:
        yield
        saved(what)
    except KeyboardInterrupt:
        if nothing_saved() and _identity(target) != before:  # the new file is in place (a new inode)
            saved(what)
        raise


def _identity(path: Path) -> tuple[int, int, int] | None:
    with contextlib.suppress(OSError):
        stat = os.stat(path)
        return stat.st_ino, stat.st_mtime_ns, stat.st_size
    return None


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within the block, each distinct ``DataWarning`` prints once as ``warning: <message>`` on
    stderr, and a ``ContentionWarning`` (fewer threads while other processes use cores) as
    ``note: <message>``; other warnings keep Python's format. Filters and hook are restored afterwards."""
    shown: set[str] = set()
    with warnings.catch_warnings():
        previous = warnings.showwarning
        warnings.simplefilter("always", DataWarning)  # deduplicated here, by message

        def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                 line: str | None = None) -> None:
            if not issubclass(category, (DataWarning, ContentionWarning)):
                previous(message, category, filename, lineno, file, line)
                return
            text = terminal_line(message)
            if text not in shown:
                shown.add(text)
                typer.echo(f"{'note' if issubclass(category, ContentionWarning) else 'warning'}: {text}", err=True)

        warnings.showwarning = show
        yield


def run_with_one_line_errors(app: Any) -> None:
    """Run the typer ``app`` as the console entry point: every failure ends in one line on stderr
    and ``sys.exit`` with its status; an internal error is re-raised when ``debugging()``. An
    interrupt ends in 128 + its signal, wherever it lands, and the process's exit keeps that status
    (``interrupts.finish``)."""
    session.update(debug=False, command=None)
    interrupts.begin()
    code: Any = 1  # what an exception that escapes (an internal error under --debug) ends with
    try:
        _run_app(app)
        code = 0
    except SystemExit as exc:
        code = exc.code
        if code == 130:  # a command's or typer's exit after an interrupt
            say_interrupted()
            code = interrupts.status()
        raise SystemExit(code) from None
    except KeyboardInterrupt:  # landed outside the command, or while a failure's line was printed
        say_interrupted()
        code = interrupts.status()
        sys.exit(code)
    finally:
        interrupts.finish(code if isinstance(code, int) else int(code is not None))


def _run_app(app: Any) -> None:
    """The app, with every failure turned into its line and ``sys.exit(status)``."""
    with one_line_warnings():
        try:
            status = app(prog_name="lstmbt", standalone_mode=False)  # usage errors come back here, not as a box
            if status:  # a command's typer.Exit(code), e.g. 130 after its own "interrupted" line
                sys.exit(status)
        except _usage.UsageError as exc:
            if not isinstance(exc, _usage.NoArgsIsHelpError):  # that one has printed the help already
                typer.echo("error: " + terminal_line(usage_message(exc)), err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            say_interrupted()
            sys.exit(130)
        except LstmbtError as exc:
            typer.echo("error: " + terminal_line(exc), err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:  # outside any command (typer turns one inside into exit 130)
            say_interrupted(exc)
            sys.exit(130)
        except Exception as exc:
            if debugging():
                raise
            status, line = failure_line(exc)
            typer.echo(line, err=True)
            sys.exit(status)


def usage_message(exc: Any) -> str:
    """A command-line usage error (unknown option or command, missing argument) as one line with
    the closest valid name and where the help is."""
    choices = getattr(exc, "possibilities", None) or []
    if isinstance(exc, _usage.NoSuchOption) and choices:  # click lists every near option; name the nearest
        close = difflib.get_close_matches(exc.option_name, choices, n=1)
        text = exc.message + (f" (did you mean {close[0]}?)" if close else f" (options: {', '.join(sorted(choices))})")
    else:
        text = " ".join(exc.format_message().split()).rstrip(".")
    path = exc.ctx.command_path if exc.ctx is not None else "lstmbt"
    return f"{text}{' See' if text.endswith('?') else '; see'} `{path} --help`"


def failure_line(exc: Exception) -> tuple[int, str]:
    """(exit status, the one ``error: ...`` line) for an exception that escaped a command."""
    if isinstance(exc, OSError) and not _is_network(exc):
        return 2, "error: " + terminal_line(os_error_line(exc, session["command"] in OUT_COMMANDS))
    resource = _resource_message(exc)
    if resource is not None:
        return 2, "error: " + resource
    if isinstance(exc, OSError):
        return 2, f"error: {terminal_line(exc)}; check the network connection (or the path) and retry"
    return 1, (f"error: internal error ({type(exc).__name__}: {_one_line(exc)}); this is a bug in lstmbt - rerun "
               f"with {DEBUG_ENV}=1 (or --debug) for the traceback and report it")


def _is_network(exc: OSError) -> bool:
    """A connection failure (requests' errors are OSErrors with no errno and no file)."""
    return isinstance(exc, (ConnectionError, TimeoutError)) or (exc.errno is None and exc.filename is None)


def _resource_message(exc: Exception) -> str | None:
    """The line for running out of memory or asking for a GPU that is not there, else None."""
    if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM):
        return ("out of memory; use a smaller model (model.hidden_size, model.lookback, train.batch_size), "
                "fewer tickers, or a machine with more memory")
    if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
        return "the GPU ran out of memory; lower train.batch_size or model.hidden_size, or use --set train.device=cpu"
    if isinstance(exc, (RuntimeError, AssertionError, ValueError)) and _CUDA_MISSING.search(str(exc)):
        return f"no usable GPU ({_one_line(exc)}); use --set train.device=cpu (or auto, which falls back to the CPU)"
    return None


def _one_line(value: Any, limit: int = 300) -> str:
    """``value`` as part of one terminal line: escaped, and at most ``limit`` characters."""
    text = " ".join(str(value).split()) or type(value).__name__
    return terminal_line(text if len(text) <= limit else text[:limit - 3] + "...")
