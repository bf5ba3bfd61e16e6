"""User-facing errors: each carries one line that names the problem and the fix; and how any
text is made fit for a terminal line (``printable``, ``shorten``, ``terminal_line``)."""

from __future__ import annotations

import errno
import os
import re


class LstmbtError(Exception):
    """A problem with the user's input. The CLI prints its message as one line, no traceback.

    ``resumable``: whether work saved before it (``lstmbt run --resume``) can go on once the problem
    is fixed; False for a problem that only a config change fixes (``needs_new_config``), since a
    resumed run keeps the config it started with.
    """

    resumable: bool = True


class ConfigError(LstmbtError):
    """A config file, ``--set`` override or CLI option that cannot be used as given."""


class DataError(LstmbtError):
    """Price data that is missing, malformed or too short for the requested run."""


def needs_new_config(exc: LstmbtError) -> LstmbtError:
    """``exc``, marked as fixed only by a config change: the work saved before it cannot be resumed."""
    exc.resumable = False
    return exc


class DataWarning(UserWarning):
    """Price data that is usable but suspect (stale closes, weekend bars, opens copied from the
    previous close); each message names the date and the fix, and the run's manifest keeps it."""


#: a path (or any other word without spaces) longer than this is shown as its head, "...", its tail;
#: paths of deep real folders stay whole, so a path a message asks you to delete can be copied
PATH_LIMIT = 400
#: the longest one-line message printed whole; a longer one keeps its head and tail (the fix is at its end)
LINE_LIMIT = 1000
#: what a terminal acts on instead of showing: C0 and C1 controls and DEL (escape sequences, bell,
#: carriage return), line and paragraph separators, bidi controls (text shown reordered) and lone
#: surrogates (a file name that is not valid UTF-8, which no stream could print)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_BLANKS = re.compile(r"(?:\r?\n|[ \t])+")
_LONG_WORD = re.compile(r"\S{%d,}" % (PATH_LIMIT + 1))


def printable(text: object) -> str:
    """``text`` with every control character shown as a visible escape (ESC as ``\\x1b``, a bidi
    override as ``\\u202e``, the byte 0xff of a name that is not UTF-8 as ``\\xff``), so a name
    printed to a terminal is seen as it is and never drives the terminal (clears it, retitles it)."""
    return _CONTROLS.sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode keeps it
        code -= 0xDC00
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shorten(text: str, limit: int = PATH_LIMIT) -> str:
    """``text`` whole when at most ``limit`` characters, else its head, ``...`` and its tail (the
    file name), ``limit`` characters in all."""
    if len(text) <= limit:
        return text
    tail = (limit - 3) // 2
    return f"{text[:limit - 3 - tail]}...{text[len(text) - tail:]}"


def terminal_line(text: object, limit: int = LINE_LIMIT) -> str:
    """``text`` as one bounded terminal line: its lines joined and runs of spaces and tabs made one
    space, other control characters escaped (``printable``: a carriage return in a name shows as
    ``\\x0d``), each word (a path) over ``PATH_LIMIT`` characters shortened in its middle, and the
    whole at most ``limit`` characters, its head and tail kept."""
    return shorten(_short_words(printable(_BLANKS.sub(" ", str(text)).strip(" "))), limit)


def _short_words(text: str) -> str:
    """``text`` with each word (a path) over ``PATH_LIMIT`` characters shortened in its middle."""
    return _LONG_WORD.sub(lambda match: shorten(match.group()), text)


def os_error_line(exc: OSError, has_out: bool = True, writing: str | None = None) -> str:
    """One line naming the file, the problem (by errno) and the fix, for an ``OSError`` that
    stopped a command. ``has_out``: the command has an ``--out`` to point elsewhere. ``writing``:
    what was being written (``"the run runs/x"``), named before the file itself."""
    where = _where(exc)
    if writing:
        writing = _short_words(printable(writing))
        where = f"{writing} ({where})" if where and where not in writing else writing
    other_out = ", or choose another --out" if has_out else ""
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on the device" if code == errno.ENOSPC else "the disk quota is used up"
        return f"cannot write {where or 'a file'}: {what}; free some space there{other_out}"
    if code == errno.EFBIG:
        return (f"cannot write {where or 'a file'}: it grew past the file-size limit (no space for it); "
                f"raise the limit (ulimit -f){other_out}")
    if code == errno.EROFS:
        fix = "choose another --out, on a writable disk" if has_out else "use a writable disk"
        return f"{where or 'the output'} is on a read-only file system (not writable); {fix}"
    if code in (errno.EACCES, errno.EPERM):
        return (f"{where or 'a file'} is read-only or not yours (permission denied); "
                f"fix its permissions{other_out}")
    fixes = {
        errno.ENOENT: ("does not exist (a missing folder, or a link to nothing)", "check the path"),
        errno.ENOTDIR: ("has a file where a folder should be", "check the path"),
        errno.EISDIR: ("is a folder where a file was expected", "give a file name"),
        errno.EEXIST: ("already exists (a file where a folder is needed, or another lstmbt process's output)",
                       f"move it away{other_out}"),
        errno.ENOTEMPTY: ("already exists and is not empty (another lstmbt process may be writing it)",
                          f"wait for it to finish{other_out}"),
        errno.ENAMETOOLONG: ("has too long a name", "choose a shorter path"),
        errno.ELOOP: ("goes through a loop of symbolic links", "fix the links"),
        errno.EMFILE: ("could not be opened: too many open files", "raise the limit (ulimit -n) or run fewer jobs"),
        errno.ENFILE: ("could not be opened: too many open files", "raise the limit (ulimit -n) or run fewer jobs"),
        errno.EIO: ("could not be read or written (input/output error: a failing disk or network drive)",
                    "check the disk and retry"),
        errno.ENOMEM: ("could not be handled: out of memory", "free memory or use a smaller run"),
    }
    reason = " ".join(str(exc.strerror or exc).split())
    what, fix = fixes.get(code, (f"failed ({reason})", "check the path and retry"))
    return f"{where or 'a file'} {what}; {fix}"


def _where(exc: OSError) -> str:
    if exc.filename is None:
        return ""
    if exc.filename2 is not None:  # a rename: the target is what is in the way
        return f"{_file_name(exc.filename2)} (moving {_file_name(exc.filename)} there)"
    return _file_name(exc.filename)


def _file_name(name: object) -> str:
    """A file name of an ``OSError`` as it may be printed: escaped and at most ``PATH_LIMIT`` characters."""
    text = os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name)
    return shorten(printable(text))
