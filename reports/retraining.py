"""How often retraining changed each model's weights, in words (the manifest's ``retraining``,
counted by ``backtest.retraining.retrain_counts``)."""

from __future__ import annotations

from typing import Any


def retraining_sentences(retraining: dict[str, dict[str, Any]]) -> list[str]:
    """One sentence per model: at how many folds it was retrained and at how many its weights changed.

    ``retraining``: ``{model: counts}`` as ``retrain_counts`` returns them; empty (a run saved by
    an earlier version, or returns given as they are) gives no sentence.
    """
    return [_sentence(name, counts) for name, counts in retraining.items()]


def _sentence(name: str, c: dict[str, Any]) -> str:
    n, changed, cold, warm = c["retrains"], c["weights_changed"], c["cold"], c["warm"]
    if c.get("frozen"):
        return (f"{name}: trained once, on the first fold, and never retrained: its weights stayed those of the "
                f"first fit for the {c['frozen']} later folds.")
    head = f"{name}: retrained at {_folds(n)}, weights changed at {changed}"
    if not (c.get("warm_start") or warm):
        return f"{head}: every fold fitted from fresh weights."
    ensemble = " (its first seed's chain)" if c.get("seeds", 1) > 1 else ""
    restarts = (f", {_count(cold - 1, 'restart')} from fresh weights after the carried weights lost to a constant "
                "forecast on the validation tail" if cold > 1 else "")
    refits = (f"{c['warm_changed']} of {_count(warm, 'warm refit')} (a warm refit keeps the carried weights unless "
              "an epoch beats them on the validation tail)" if warm else "no warm refit")
    last = f"; last changed for the test block from {c['last_change']}" if c.get("last_change") else ""
    return f"{head}{ensemble}: the first fit{restarts}, and {refits}{last}."


def _folds(n: int) -> str:
    return _count(n, "fold")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
