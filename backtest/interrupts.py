"""How the ``lstmbt`` command stops on Ctrl-C (SIGINT) or SIGTERM: whenever the signal lands, with
one line on stderr and status 128 + the signal (130 for SIGINT, 143 for SIGTERM).

``install()`` runs at the command's first import (``lstmbt/__init__.py``, only when this process is
the ``lstmbt`` command: a program that imports lstmbt keeps its own handlers). From then on:

- the first SIGINT or SIGTERM raises ``KeyboardInterrupt`` in the main thread, so SIGTERM takes
  Ctrl-C's paths, which keep saved work and say what they kept; later signals are only recorded,
  so the clean-up the first one started is never cut short. One that something swallowed is
  raised again at the work's next step (``check``);
- a ``KeyboardInterrupt`` that nothing caught (one that landed while the modules were loading)
  prints the line instead of a traceback;
- once the command has ended (``finish``), signals are only recorded, so the exit callbacks of
  libraries (torch's) never see a ``KeyboardInterrupt``. The exit callback ``install`` registers
  first runs last of all: it answers a signal that no line has answered yet, flushes the output
  and ends the process with its status (``os._exit``), so no later moment can lose the signal or
  change the status.

Child processes started inside ``spawning()`` begin with SIGINT blocked: a Ctrl-C at a terminal,
which reaches every process of the group, is answered by this process alone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from lstmbt.backtest.errors import terminal_line

NOTHING_WRITTEN = "interrupted: nothing was written"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: the process-wide state: ``signal`` (the first one received), ``raised`` (a KeyboardInterrupt was
#: raised for it), ``finished``/``status`` (the command's end), ``line`` (what an interrupt says
#: that no interrupted work describes), ``answered`` (a line was printed)
_state: dict[str, Any] = {"installed": False, "signal": None, "raised": False, "finished": False, "status": None,
                          "line": NOTHING_WRITTEN, "answered": False}


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C or SIGTERM, with the line that says what the interrupted work left (``line``)."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


def is_command() -> bool:
    """Whether this process is the ``lstmbt`` command: its console script, or ``python -m lstmbt``
    (whose package loads while ``sys.argv[0]`` is still ``-m``)."""
    if Path(getattr(sys.modules.get("__main__"), "__file__", None) or "").name == "lstmbt":
        return True
    argv = list(getattr(sys, "orig_argv", ()))
    return sys.argv[:1] == ["-m"] and "-m" in argv and argv[argv.index("-m") + 1:][:1] == ["lstmbt"]


def install() -> None:
    """Take over SIGINT and SIGTERM, uncaught ``KeyboardInterrupt`` and the process's exit (see the
    module); called once, by the command, before anything else of it loads."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    _state["installed"] = True
    for signum in _SIGNALS:
        signal.signal(signum, _on_signal)
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            say(getattr(value, "line", None) or _state["line"])
        else:
            previous(kind, value, traceback)

    sys.excepthook = excepthook
    atexit.register(_at_exit)  # registered first, so it runs after every library's exit callback


def reclaim() -> None:
    """Take SIGINT and SIGTERM back from a library that set its own handler (``ray.init`` sets one for
    SIGTERM that exits with status 15 and no line)."""
    if _state["installed"] and threading.current_thread() is threading.main_thread():
        for signum in _SIGNALS:
            if signal.getsignal(signum) is not _on_signal:
                signal.signal(signum, _on_signal)


def begin() -> None:
    """A command starts: nothing is answered or finished yet (the signal a process received stays)."""
    _state.update(finished=False, status=None, line=NOTHING_WRITTEN, answered=False)


def status() -> int:
    """The exit status of an interrupted command: 128 + the signal received (SIGINT when none was,
    as for a ``KeyboardInterrupt`` raised by other means)."""
    return 128 + int(_state["signal"] or signal.SIGINT)


def check() -> None:
    """Raise ``KeyboardInterrupt`` again when a signal came while the command still runs, in the main
    thread: its first one was swallowed (raised inside a finalizer or an exit hook, which Python
    only prints). Called between steps of the work (a run's progress), where stopping is safe."""
    if (_state["raised"] and not _state["finished"] and _state["signal"] is not None
            and threading.current_thread() is threading.main_thread()):
        raise KeyboardInterrupt


def line() -> str:
    """What an interrupt says that no interrupted work describes: that nothing was written, or what
    the command has saved (``set_line``)."""
    return str(_state["line"])


def set_line(text: str) -> None:
    """What an interrupt that no interrupted work describes says from now on (e.g. once a run is saved)."""
    _state["line"] = text


def say(text: str) -> None:
    """Print the line of an interrupt on stderr, unless one has answered it already."""
    if _state["answered"]:
        return
    _state["answered"] = True
    with contextlib.suppress(Exception):  # a closed stderr: the status still tells
        sys.stderr.write(terminal_line(text) + "\n")
        sys.stderr.flush()


def finish(exit_status: int) -> None:
    """The command has ended with ``exit_status`` and printed its lines (a failure's line answers any
    interrupt too): from now on a signal is only recorded, and the process's exit decides (a signal
    after a success says ``line()``)."""
    _state.update(finished=True, status=exit_status, answered=_state["answered"] or bool(exit_status))


@contextlib.contextmanager
def spawning() -> Iterator[None]:
    """Start child processes in the block with SIGINT blocked, so a Ctrl-C at a terminal (which
    reaches the whole process group) reaches only this process, which stops the children itself.
    This process still receives one: by another thread, or when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: Ctrl-C reaches only the console's process
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _on_signal(signum: int, frame: Any) -> None:
    """The handler of SIGINT and SIGTERM: record; raise ``KeyboardInterrupt`` for the first signal
    only, and only until the command has ended."""
    if _state["signal"] is None:
        _state["signal"] = signum
    if _state["raised"] or _state["finished"]:
        return
    _state["raised"] = True
    raise KeyboardInterrupt


def _at_exit() -> None:
    """The last exit callback: decide the status and end the process with it (see the module)."""
    exit_status = _state["status"]
    try:
        with contextlib.suppress(Exception):  # a closed stdout (`| head`) is no failure of the command
            sys.stdout.flush()
        if hasattr(signal, "pthread_sigmask"):  # from here on a signal waits in sigpending()
            signal.pthread_sigmask(signal.SIG_BLOCK, set(_SIGNALS))
        exit_status = _decided(exit_status)
        if exit_status is None:  # the command never ended (a traceback under --debug): Python decides
            return
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        exit_status = _decided(exit_status)  # a signal that came while the output was flushed
    except BaseException:  # noqa: BLE001 - an exit callback's error would only be printed and lost
        exit_status = exit_status or 1
    os._exit(exit_status)


def _decided(exit_status: int | None) -> int | None:
    """The exit status once any signal received is counted: a signal that no failure's line has
    answered (after a success, or before the command ended) is answered now, 128 + the signal."""
    pending = sorted(set(signal.sigpending()) & set(_SIGNALS)) if hasattr(signal, "sigpending") else []
    if _state["signal"] is None and pending:
        _state["signal"] = pending[0]
    if _state["signal"] is None or exit_status:
        return exit_status
    say(_state["line"])
    return status()
