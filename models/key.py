"""The model key: a model's identity as a small typed value, and as columns of a frame.

A model of a run is known by its strategy ``name`` (the key of ``metrics.json``), its ``task``
(``regression`` or ``classification``), its label ``horizon`` in days, its ``family`` (a network
family: ``lstm``, ``gru``, ``transformer``, ``tcn``; a baseline: ``linear``, ``lightgbm``; or
``custom``, a user's plug-in) and whether it is a ``baseline`` (the linear and LightGBM models)
rather than a contender. ``predictions.parquet`` and ``folds.parquet`` carry these as columns (``KEY_COLUMNS``);
every reader takes a model's task, horizon and family from there (``keys_from_frame``), never
from its name. Runs saved by earlier versions lack some of the columns: ``with_key_columns``
fills them in from lstmbt's own model names, the one place a name is mapped to a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lstmbt.models.specs import NETWORK_FAMILIES

TASKS = ("regression", "classification")
#: the naive baselines scored beside every model (family ``naive``), and the benchmark every
#: strategy is measured against; named here, light to import, for readers of saved runs
BASELINES = ("persistence", "majority")
BENCHMARK = "buy_and_hold"
#: the strategy name of each of lstmbt's own models at the primary horizon, by (family, task);
#: a further horizon h appends ``_h<h>`` (``own_key``)
BASE_NAMES = {**{(family, task): f"{family}_{task}" for family in NETWORK_FAMILIES + ("lightgbm",) for task in TASKS},
              ("linear", "regression"): "ridge_regression", ("linear", "classification"): "logistic_classification"}
#: families whose models are baselines to the networks rather than contenders
BASELINE_FAMILIES = frozenset({"linear", "lightgbm"})
#: the family of a user's plug-in (``models.plugins``)
CUSTOM_FAMILY = "custom"
#: the key's columns in ``predictions.parquet``, in order, from its second column on (after ``date``)
KEY_COLUMNS = ("target", "model", "horizon", "family", "baseline")
#: the key's columns in ``folds.parquet``, in order, from its first column on
FOLD_KEY_COLUMNS = ("model", "target", "horizon", "family", "baseline")
_SUFFIX = re.compile(r"^(?P<base>.+)_h(?P<h>\d+)$")


@dataclass(frozen=True)
class ModelKey:
    """The identity of one model of a run.

    Parameters
    ----------
    name : str
        Strategy name, as in ``metrics.json`` and the ``model`` column (``lstm_regression``,
        ``ridge_regression_h5``).
    task : str
        ``regression`` or ``classification``; the ``target`` column.
    horizon : int
        Label horizon in trading days (>= 1): the model predicts the move over the next
        ``horizon`` closes, and its positions are held as ``horizon`` overlapping tranches.
    family : str
        What kind of model: a network family (``lstm``, ``gru``, ``transformer``, ``tcn``),
        ``linear`` (ridge / logistic regression), ``lightgbm`` or ``custom``.
    baseline : bool
        True for a baseline of the networks (the linear and LightGBM models), False for a
        network or a plug-in.
    """

    name: str
    task: str
    horizon: int
    family: str
    baseline: bool

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"model {self.name!r} has task {self.task!r}; use one of {', '.join(TASKS)}")
        if self.horizon < 1:
            raise ValueError(f"model {self.name!r} has horizon {self.horizon}; a label horizon is at least 1 day")

    def columns(self) -> dict[str, Any]:
        """The key as ``{column: value}`` in ``KEY_COLUMNS`` order (``target`` holds the task)."""
        return {"target": self.task, "model": self.name, "horizon": self.horizon, "family": self.family,
                "baseline": self.baseline}


def own_key(family: str, task: str, horizon: int, primary_horizon: int) -> ModelKey:
    """The key of one of lstmbt's own models (``BASE_NAMES``).

    Its name is the family's base name for ``task``, with ``_h<horizon>`` appended unless
    ``horizon`` is the run's ``primary_horizon`` (``target.horizon``).
    """
    base = BASE_NAMES[(family, task)]
    name = base if horizon == primary_horizon else f"{base}_h{horizon}"
    return ModelKey(name=name, task=task, horizon=horizon, family=family, baseline=family in BASELINE_FAMILIES)


def plugin_key(stem: str, task: str, horizon: int, primary_horizon: int) -> ModelKey:
    """The key of a user's plug-in model named ``<stem>_<task>`` (``_h<horizon>`` appended off the
    primary horizon), family ``custom``, not a baseline."""
    name = f"{stem}_{task}" if horizon == primary_horizon else f"{stem}_{task}_h{horizon}"
    return ModelKey(name=name, task=task, horizon=horizon, family=CUSTOM_FAMILY, baseline=False)


def insert_key_columns(frame: pd.DataFrame, key: ModelKey, at: int,
                       columns: tuple[str, ...] = KEY_COLUMNS) -> pd.DataFrame:
    """A copy of ``frame`` with ``key``'s ``columns`` (in that order) inserted from column ``at`` on.

    ``KEY_COLUMNS`` at 1 for a model's predictions (after ``date``), ``FOLD_KEY_COLUMNS`` at 0
    for its fold log.
    """
    out = frame.copy()
    values = key.columns()
    for offset, column in enumerate(columns):
        out.insert(at + offset, column, values[column])
    return out


def keys_from_frame(frame: pd.DataFrame) -> dict[str, ModelKey]:
    """Each model's key, read from the ``KEY_COLUMNS`` of a predictions or folds frame.

    Returns
    -------
    dict[str, ModelKey]
        ``{name: key}`` in order of first appearance in ``frame``.

    Raises
    ------
    ValueError
        ``frame`` lacks a key column (a frame of an earlier version: pass it through
        ``with_key_columns`` first), or gives one model two different keys.
    """
    missing = [c for c in KEY_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the model key column(s) {', '.join(missing)}; frames of runs saved by "
                         "earlier versions get them from models.key.with_key_columns")
    distinct = frame[list(KEY_COLUMNS)].drop_duplicates()
    twice = distinct["model"][distinct["model"].duplicated()]
    if len(twice):
        raise ValueError(f"model {twice.iloc[0]!r} has rows with different key columns; each model has one key")
    return {str(r.model): ModelKey(name=str(r.model), task=str(r.target), horizon=int(r.horizon), family=str(r.family),
                                   baseline=bool(r.baseline)) for r in distinct.itertuples(index=False)}


def with_key_columns(predictions: pd.DataFrame, folds: pd.DataFrame,
                     primary_horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``predictions`` and ``folds`` of a saved run with every key column, for runs of earlier versions.

    Columns already present are kept as they are (a ``horizon`` column wins over a name's
    ``_h<h>``); missing ones are inserted where ``KEY_COLUMNS`` / ``FOLD_KEY_COLUMNS`` put them.
    A missing ``horizon`` is the name's ``_h<h>`` suffix, else ``primary_horizon`` (the run's
    ``target.horizon``); a missing task, ``family`` or ``baseline`` comes from the model's base
    name in ``BASE_NAMES``. Frames that have every column are returned unchanged.

    Raises
    ------
    ValueError
        A model that needs filling in is not one of lstmbt's own (``BASE_NAMES``).
    """
    if not _lacks_keys(predictions, folds):
        return predictions, folds
    if "model" not in predictions.columns:
        raise ValueError("the predictions have no model column; pass the predictions.parquet of an lstmbt run")
    keys = _saved_keys(predictions, primary_horizon)
    for name in dict.fromkeys(folds["model"]) if "model" in folds.columns else ():
        if name not in keys:  # a fold log row of a model with no predictions: its name alone places it
            keys[name] = _known_key(str(name), {}, primary_horizon)
    return _fill(predictions, keys, KEY_COLUMNS, 1), _fill(folds, keys, FOLD_KEY_COLUMNS, 0)


def _lacks_keys(predictions: pd.DataFrame, folds: pd.DataFrame) -> bool:
    return (any(c not in predictions.columns for c in KEY_COLUMNS)
            or (len(folds.columns) > 0 and any(c not in folds.columns for c in FOLD_KEY_COLUMNS)))


def _saved_keys(predictions: pd.DataFrame, primary_horizon: int) -> dict[str, ModelKey]:
    """Each model's key from the key columns ``predictions`` has, the rest from its name."""
    present = [c for c in KEY_COLUMNS if c in predictions.columns and c != "model"]
    first = predictions.drop_duplicates("model").set_index("model")[present]
    return {str(name): _known_key(str(name), row, primary_horizon) for name, row in first.iterrows()}


def _known_key(name: str, saved: Any, primary_horizon: int) -> ModelKey:
    """The key of ``name``, one of lstmbt's own models; the values ``saved`` holds take precedence."""
    base, horizon = name, primary_horizon
    match = _SUFFIX.match(name)
    if match and match["base"] in BASE_NAMES.values():  # "x_h5" of no known base is no suffix
        base, horizon = match["base"], int(match["h"])
    own = {own_name: family_task for family_task, own_name in BASE_NAMES.items()}.get(base)
    if own is None and not all(c in saved for c in ("target", "family", "baseline")):
        raise ValueError(f"model {name!r} of a run saved by an earlier version is none of lstmbt's own "
                         f"({', '.join(BASE_NAMES.values())}); re-run it with this version")
    family, task = own if own is not None else (saved["family"], saved["target"])
    return ModelKey(name=name, task=str(saved.get("target", task)), horizon=int(saved.get("horizon", horizon)),
                    family=str(saved.get("family", family)),
                    baseline=bool(saved.get("baseline", family in BASELINE_FAMILIES)))


def _fill(frame: pd.DataFrame, keys: dict[str, ModelKey], order: tuple[str, ...], start: int) -> pd.DataFrame:
    """``frame`` with the key columns of ``order`` it lacks, each right after the one before it in
    ``order`` (the first at column ``start``)."""
    if "model" not in frame.columns:
        return frame
    out = frame.copy()
    for i, column in enumerate(order):
        if column not in out.columns:
            at = out.columns.get_loc(order[i - 1]) + 1 if i else start
            out.insert(at, column, out["model"].map({name: key.columns()[column] for name, key in keys.items()}))
    return out


__all__ = ["ModelKey", "own_key", "plugin_key", "CUSTOM_FAMILY", "insert_key_columns", "keys_from_frame", "with_key_columns", "KEY_COLUMNS",
           "FOLD_KEY_COLUMNS", "BASE_NAMES", "BASELINE_FAMILIES", "TASKS"]
