"""What retraining did: how many of a model's retrains changed its weights, and the frozen twin.

A walk-forward retrains every model at every fold, but a warm-started network keeps the weights
it carries unless a warm epoch beats them on the validation tail (``train.warm_accept_z``), so
"retrained" and "the weights changed" can differ.
:func:`retrain_counts` counts both from the fold log (the manifest's ``retraining``).

The frozen twin (``train.frozen_twin``) of a network model is the same network trained once, on
the first fold, and never retrained (``walk_forward_predict(..., frozen=True)``). It is scored
on the same days as a baseline, and the pair (model, twin) asks whether retraining pays.
"""

from __future__ import annotations

from typing import Any, Collection, Iterable

import pandas as pd

from lstmbt.models.key import ModelKey
from lstmbt.models.specs import NETWORK_FAMILIES

#: appended to a network model's name to name its frozen twin
FROZEN_SUFFIX = "_frozen"
#: the question the pair (model, frozen twin) answers, kept with the pair in ``comparisons.json``
RETRAINING_QUESTION = "does retraining pay?"


def weights_changed(model: Any) -> bool:
    """Whether the last ``fit`` of ``model`` changed its weights: always for a fit from fresh
    weights; for a warm fit, only when it kept an epoch over the carried weights (best epoch -1
    means it kept them)."""
    return not getattr(model, "warm_started_", False) or int(getattr(model, "best_epoch_", 0)) >= 0


def retrain_counts(folds: pd.DataFrame, warm_start: Collection[str] = ()) -> dict[str, dict[str, Any]]:
    """Per model of a fold log, how often it was retrained and how often that changed its weights.

    Parameters
    ----------
    folds : pd.DataFrame
        The run's fold log (``folds.parquet``): a ``model`` column, ``warm``, ``best_epoch``
        (0: a warm fit kept the carried weights), ``test_start`` and, from this version on,
        ``weights_changed``. A seed ensemble's rows are its first seed's.
    warm_start : Collection[str]
        The models that continue the previous fold's weights (networks with ``train.warm_start``).

    Returns
    -------
    dict[str, dict[str, Any]]
        ``{model: {...}}``: ``retrains`` (folds), ``weights_changed`` (folds whose retrain changed
        the weights), ``cold`` (folds fitted from fresh weights: the first fit, restarts after the
        carried weights lost to a constant forecast, every fold of a model without warm starts),
        ``warm`` (folds that continued the carried weights), ``warm_changed`` (of those, the ones
        that kept a new epoch), ``frozen`` (folds of a frozen twin that trained nothing) and
        ``last_change`` (the first test day after the last change, ISO date), ``warm_start``
        (whether the model is in ``warm_start``); ``seeds`` for a
        seed ensemble, whose counts are its first seed's chain.
    """
    out: dict[str, dict[str, Any]] = {}
    if not {"model", "warm", "best_epoch", "test_start"} <= set(folds.columns):
        return out  # no fold log (returns or positions given as they are)
    for name, g in folds.groupby("model", sort=False):
        warm = g["warm"].astype(bool)
        if "weights_changed" in g and g["weights_changed"].notna().all():
            changed = g["weights_changed"].astype(bool)
        else:  # a fold log of an earlier version: a warm fold with best epoch 0 kept its weights
            changed = ~warm | (g["best_epoch"] > 0)
        frozen = ~warm & ~changed
        seeds = int(g["seeds"].fillna(1).max()) if "seeds" in g else 1  # NaN: a model trained once
        out[str(name)] = {"retrains": int(len(g) - frozen.sum()), "weights_changed": int(changed.sum()),
                          "cold": int((~warm & changed).sum()), "warm": int(warm.sum()),
                          "warm_changed": int((warm & changed).sum()), "frozen": int(frozen.sum()),
                          "last_change": (pd.Timestamp(g.loc[changed, "test_start"].max()).date().isoformat()
                                          if changed.any() else None),
                          "warm_start": str(name) in warm_start,
                          **({"seeds": seeds} if seeds > 1 else {})}
    return out


def frozen_twins(keys: Iterable[ModelKey]) -> dict[ModelKey, ModelKey]:
    """``{twin: model}``: the frozen twin of every network model among ``keys`` (every horizon).

    A twin has the model's task, horizon and family, the name ``<model>_frozen``, and counts as
    a baseline: it answers a question about the model rather than competing with it."""
    return {ModelKey(name=key.name + FROZEN_SUFFIX, task=key.task, horizon=key.horizon, family=key.family,
                     baseline=True): key
            for key in keys if key.family in NETWORK_FAMILIES and not key.baseline}


def frozen_pairs(keys: Iterable[ModelKey]) -> list[tuple[str, str]]:
    """The pairs (model, its frozen twin) among ``keys``: the retrained model is ``a``."""
    keys = list(keys)
    names, cut = {key.name for key in keys}, len(FROZEN_SUFFIX)
    return [(key.name[:-cut], key.name) for key in keys
            if key.name.endswith(FROZEN_SUFFIX) and key.name[:-cut] in names]
