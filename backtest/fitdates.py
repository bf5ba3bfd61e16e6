"""Where the data behind a fold's predicting weights end (pure functions of a fold log and of a fold).

A fold's ``fit_end`` is the last sample its own fit trained on, but the weights that predict its
test block need not come from that fit: a warm fold whose early stopping kept the carried weights
(best epoch 0) predicts with weights fitted in an earlier fold, and a refit trains on the
validation tail as well. ``weights_end`` follows the chain and says which data the predicting
weights were really fitted on, so a "trained on" date is never later than the truth.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from lstmbt.backtest.splits import Fold


def next_weights_end(row: Mapping[str, Any], carried: Any) -> tuple[Any, Any]:
    """One fold's step of ``weights_end``: ``(the end carried on to the next fold, this fold's end)``,
    from its fold-log ``row`` and the end of the selection weights it started from (``carried``,
    NaT for the first fold)."""
    if "weights_changed" in row and pd.notna(row["weights_changed"]):  # the fold log says so (a frozen twin's too)
        changed = bool(row["weights_changed"]) or pd.isna(carried)
    else:  # a log saved before weights_changed was kept
        changed = not bool(row.get("warm", False)) or int(row.get("best_epoch", 1)) > 0 or pd.isna(carried)
    carried = row["fit_end"] if changed else carried
    refitted = bool(row.get("refit", False)) and (int(row.get("refit_epochs", 0)) > 0 or int(row.get("epochs", 0)) == 0)
    return carried, (row["val_end"] if refitted and pd.notna(row.get("val_end", pd.NaT)) else carried)


def weights_end(log: pd.DataFrame) -> pd.Series:
    """The last sample date the predicting weights of each fold were fitted on, for one model's fold
    log (one row per fold, oldest first).

    A fold changes its selection weights when its ``weights_changed`` says so (a frozen twin's later
    folds do not), or, in a log saved without it, when it starts cold or its best epoch is above 0;
    they were then fitted on ``fit_start``..``fit_end``. A warm fold with best epoch 0 keeps the
    weights it carried, so their end is the previous fold's. A refit (``refit`` true and
    ``refit_epochs`` above 0, or a model without epochs, whose refit always trains) fits the whole
    usable window, so its weights end at ``val_end``; the chain carries the selection weights, not
    the refitted ones (``models.estimators``), so a refit does not move the next fold's carried end.
    A log without ``warm``/``best_epoch`` (no epochs, no warm start) gives ``fit_end``.
    """
    out, carried = [], pd.NaT
    for row in log.to_dict("records"):
        carried, end = next_weights_end(row, carried)
        out.append(end)
    return pd.Series(pd.to_datetime(out), index=log.index, name="weights_end")


def with_weights_end(log: pd.DataFrame) -> pd.DataFrame:
    """``log`` with its ``weights_end`` column placed right after ``fit_end`` (an empty log as it is)."""
    if log.empty or "fit_end" not in log:
        return log
    out = log.drop(columns="weights_end", errors="ignore")
    out.insert(out.columns.get_loc("fit_end") + 1, "weights_end", weights_end(out))
    return out


def fit_dates(fold: Fold, dates: pd.DatetimeIndex) -> dict[str, Any]:
    """The dates of one retrain on ``fold`` (sample positions into ``dates``), as ``predict``
    reports them: ``train_start``..``train_end`` (the usable window: fit and validation tail),
    ``fit_end`` (the last sample the early-stopping fit trains on), ``val_start``..``val_end``
    (None without a validation tail), ``n_train`` and ``n_val``."""
    val = (dates[fold.val[0]], dates[fold.val[-1]]) if len(fold.val) else (None, None)
    last = fold.val[-1] if len(fold.val) else fold.train[-1]
    return {"train_start": dates[fold.train[0]], "train_end": dates[last], "n_train": len(fold.train),
            "n_val": len(fold.val), "fit_end": dates[fold.train[-1]], "val_start": val[0], "val_end": val[1]}


__all__ = ["next_weights_end", "weights_end", "with_weights_end", "fit_dates"]
