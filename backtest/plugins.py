"""A strategy of your own (``strategy.custom``): resolved and checked before a command trains, run
one decision day at a time so it cannot see past the day it decides.

The protocol::

    def rule(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series: ...

``predictions``: one model's out-of-sample rows up to and including the decision day t, indexed by
date (ascending), with the columns ``PREDICTION_COLUMNS``; ``y_true`` (the realised label, known
only h days later) is never passed. ``prices``: the OHLCV bars (``Open High Low Close Volume``)
from the first loaded bar up to and including t. The rule returns target positions in [-1, 1]
(fraction of equity, + long) on ``predictions.index``; the value on t (the last row) is the
position decided after the close of t, which ``backtest.portfolio`` fills on the next bar. Both
frames are fresh copies holding nothing after t, so a rule can neither read nor change later rows.

A value is either a dotted path ``pkg.mod:name`` or a name given to ``register_strategy`` in this
Python process. A dotted path is imported from the environment and from the folders the user
names (``plugin_folders``: ``--plugin-path``, ``plugin_path=``), never from the working directory
or a run folder; reading a saved config imports nothing (``check_custom_syntax``).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from lstmbt.backtest.errors import ConfigError
from lstmbt.models.plugins import DOTTED, PluginError, import_object, plugin_search

#: the columns of the ``predictions`` frame a rule receives, in order (its index is the date)
PREDICTION_COLUMNS = ("target", "model", "horizon", "family", "baseline", "fold", "y_pred", "p_up", "close")
#: the protocol in words, for messages
PROTOCOL = "rule(predictions, prices) -> pd.Series of positions in [-1, 1]"

_NAME = re.compile(r"^[A-Za-z_][\w.-]*$")
_REGISTERED: dict[str, Callable[..., Any]] = {}

Rule = Callable[[pd.DataFrame, pd.DataFrame], pd.Series]


def register_strategy(name: str, rule: Rule) -> None:
    """Make ``rule`` available as ``strategy.custom = name`` in this Python process.

    ``name``: letters, digits, ``_ . -``, no colon (a colon marks a dotted path). Registering a
    name again replaces its rule. A registered name lives in this process only: a universe run
    on a process pool or Ray needs a dotted path its workers can import.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"strategy name {name!r} is not a plain name; use letters, digits and _ . - "
                          "(no colon), e.g. 'p_up_band'")
    _check_protocol(rule, f"register_strategy({name!r}, ...)")
    _REGISTERED[name] = rule


def check_custom_syntax(value: str) -> None:
    """``strategy.custom`` is a dotted path ``pkg.mod:name`` or a plain registered name (no import)."""
    if not (DOTTED.match(value) or _NAME.match(value)):
        raise ConfigError(f"strategy.custom = {value!r} is neither a dotted path nor a strategy name; write it "
                          "like \"mypkg.rules:my_rule\" (module:function)")


Folders = Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None


@contextmanager
def plugin_folders(folders: Folders) -> Iterator[tuple[str, ...]]:
    """While the block runs, plug-ins (``model.custom``, ``strategy.custom``) are also imported from
    ``folders`` (one path or several; None: none), as ``--plugin-path`` asks; process pools and Ray
    workers search them too. Yields the folders searched. Raises ``ConfigError`` for a path that
    is not a folder, before anything is imported."""
    given = [] if folders is None else [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
    for folder in given:
        if not isinstance(folder, (str, os.PathLike)) or not Path(folder).is_dir():
            shown = os.fspath(folder) if isinstance(folder, (str, os.PathLike)) else repr(folder)
            raise ConfigError(f"--plugin-path {shown} is not a folder; name the folder that holds your plug-in "
                              "module (the one with mymod.py for 'mymod:Name')")
    with plugin_search(given) as searched:
        yield searched


def resolve_strategy(value: str) -> Rule:
    """The rule ``strategy.custom = value`` names, imported and checked against the protocol.

    Raises ``ConfigError`` (one line naming ``value`` and the fix) when the module cannot be
    imported, lacks the name, or the name is not a function of two positional arguments.
    """
    check_custom_syntax(value)
    if ":" not in value:
        if value not in _REGISTERED:
            known = ", ".join(sorted(_REGISTERED)) or "none"
            raise ConfigError(f"strategy.custom = {value!r} is not a registered strategy (registered here: {known}); "
                              f"call lstmbt.register_strategy({value!r}, fn) first in this process, or give a dotted "
                              "path like \"mypkg.rules:my_rule\"")
        return _REGISTERED[value]
    try:
        obj = import_object(value, f"strategy.custom = {value!r}")
    except PluginError as exc:
        raise ConfigError(str(exc)) from None
    _check_protocol(obj, f"strategy.custom = {value!r}")
    return obj


def rule_provenance(value: str, rule: Rule) -> dict[str, Any]:
    """What the manifest keeps about a custom rule: the value, the function's ``module:qualname``,
    its source file and the sha256 of its source text (None where Python cannot tell)."""
    module, name = getattr(rule, "__module__", None), getattr(rule, "__qualname__", type(rule).__qualname__)
    try:
        source, path = inspect.getsource(rule), inspect.getsourcefile(rule)
    except (OSError, TypeError):
        source, path = None, None
    return {"custom": value, "function": f"{module}:{name}", "file": path,
            "source_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest() if source is not None else None}


def custom_positions(rule: Rule, label: str, predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    """Target positions of one model under ``rule``, decided one day at a time.

    For each decision day t of ``predictions`` (one model's rows indexed by date), the rule gets
    copies of the rows of ``predictions`` and ``prices`` dated <= t and its value on t is kept.
    ``label``: the rule's name in messages. ``prices``: OHLCV bars whose index contains every
    decision day. Returns the positions on ``predictions.index``, named ``position``.

    Raises ``ConfigError`` naming the rule, the model and the day when the rule raises or exits
    (``SystemExit``; only ``KeyboardInterrupt``, an interrupt, passes), returns something other than a Series on
    the index it was given, or a position that is not a number (text included), NaN or outside [-1, 1].
    """
    frame = predictions.loc[:, list(PREDICTION_COLUMNS)]
    model = str(frame["model"].dropna().iloc[0]) if frame["model"].notna().any() else "?"
    ends = prices.index.searchsorted(frame.index, side="right")
    if len(frame) and prices.index[ends - 1].tolist() != frame.index.tolist():
        raise ValueError("prices lack a decision day of predictions; pass the full price frame")
    out = np.empty(len(frame))
    for i, day in enumerate(frame.index):
        seen = frame.iloc[: i + 1].copy()
        try:
            result = rule(seen, prices.iloc[: ends[i]].copy())
        except SystemExit as exc:  # an exit inside the rule is its fault too; only an interrupt passes
            raise ConfigError(f"strategy.custom rule {label} called sys.exit({exc.code!r}) for {model} on "
                              f"{day.date()}; a rule must return positions or raise, never exit the process") from None
        except Exception as exc:  # the user's code: any failure is one line, never a traceback
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise ConfigError(f"strategy.custom rule {label} raised {detail[:300]} for {model} on {day.date()}; "
                              "fix the rule (call it on result.predictions and the prices to debug)") from None
        out[i] = _checked_position(result, seen.index, label, model, day)
    return pd.Series(out, index=frame.index, name="position")


def _checked_position(result: Any, index: pd.Index, label: str, model: str, day: pd.Timestamp) -> float:
    """The rule's position on ``day`` (the last row of ``index``), or a ConfigError saying what is wrong."""
    where = f"for {model} on {day.date()}"
    if not isinstance(result, pd.Series):
        raise ConfigError(f"strategy.custom rule {label} returned a {type(result).__name__}, not a pandas Series, "
                          f"{where}; return pd.Series(positions, index=predictions.index) ({PROTOCOL})")
    if not result.index.equals(index):
        raise ConfigError(f"strategy.custom rule {label} returned a Series of {len(result)} rows not on "
                          f"predictions.index ({len(index)} rows, up to {day.date()}) {where}; return one position "
                          "per row of predictions, on its index")
    value = result.iloc[-1]
    try:
        if isinstance(value, (str, bytes)):  # float("0.5") would pass a rule that returns text
            raise TypeError(value)
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"strategy.custom rule {label} returned {value!r}, not a number, {where}; "
                          "return positions as floats in [-1, 1]") from None
    if math.isnan(value):
        raise ConfigError(f"strategy.custom rule {label} returned NaN {where} (regression models have p_up NaN, "
                          "classifiers y_pred 0/1); return a number in [-1, 1], 0 for flat")
    if not -1.0 <= value <= 1.0:
        raise ConfigError(f"strategy.custom rule {label} returned {value:g} {where}, outside [-1, 1]; positions are "
                          "fractions of equity: clip them to [-1, 1] (strategy.vol_target scales them afterwards)")
    return value


def _check_protocol(obj: Any, what: str) -> None:
    """``obj`` is callable as ``obj(predictions, prices)``; else a ConfigError naming ``what``."""
    if not callable(obj):
        raise ConfigError(f"{what} is a {type(obj).__name__}, not a function; name a function {PROTOCOL}")
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins have no signature: the call itself will tell
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise ConfigError(f"{what} cannot be called with two arguments (its signature is {signature}); "
                          f"write it as {PROTOCOL}") from None
