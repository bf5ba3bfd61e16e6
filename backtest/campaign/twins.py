"""Runs of the same config on the same prices: duplicates, and runs that should agree but do not.

Two runs with the same ``config_digest`` and data hash are twins. A twin is a duplicate of the
older one only if its results are the same too (``results_digest``: the content of its
``metrics.json``); twins with different results are no duplicates but a warning, since the same
config on the same prices should give the same figures. Whether the software differed
(``made_with``: lstmbt's and the main packages' versions, and the device) decides what the warning
blames: an upgrade, or a run that is not deterministic (a plug-in, a GPU, another machine).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd

#: a pair's key in the index: same config, same prices
PAIR_KEYS = ("config_digest", "data_sha256")


def results_digest(metrics: dict[str, Any]) -> str:
    """A hash of a run's figures: its ``metrics.json`` content, key order aside."""
    return hashlib.sha256(json.dumps(metrics, sort_keys=True, default=repr).encode("utf-8")).hexdigest()


def made_with(manifest: dict[str, Any]) -> str:
    """What a run was computed with, as JSON text: lstmbt's version, the manifest's package versions
    and the device (``{}`` for what a manifest does not record)."""
    packages = manifest.get("packages")
    software = {**(packages if isinstance(packages, dict) else {}), "lstmbt": manifest.get("lstmbt_version"),
                "device": manifest.get("device")}
    return json.dumps({str(k): str(v) for k, v in software.items() if v is not None}, sort_keys=True)


def mark_twins(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (the index's ``runs`` rows) with two columns more, each an id or None:
    ``duplicate_of``, the oldest other run with the same config, data and results; and
    ``differs_from``, the oldest run with the same config and data but other results. Runs lacking
    a hash are neither; ``created`` then ``id`` order the runs, the same on every call."""
    duplicate_of: dict[str, str | None] = {}
    differs_from: dict[str, str | None] = {}
    for group in _groups(runs):
        oldest = group.groupby("results_digest", sort=False)["id"].first()  # by age, oldest first
        for run_id, result in zip(group["id"], group["results_digest"]):
            first = oldest[result]
            duplicate_of[run_id] = first if first != run_id else None
            differs_from[run_id] = next((i for r, i in oldest.items() if r != result), None)
    return runs.assign(**{name: pd.Series([found.get(i) for i in runs["id"]], index=runs.index, dtype=object)
                          for name, found in (("duplicate_of", duplicate_of), ("differs_from", differs_from))})


def differing_sentences(runs: pd.DataFrame, ids: Any) -> list[str]:
    """One sentence for each set of twins with different results among which one of ``ids`` is:
    which runs, and why they may differ (other software, or a run that is not deterministic)."""
    wanted = set(ids)
    lines = []
    for group in _groups(runs):
        if group["results_digest"].nunique() < 2 or not wanted & set(group["id"]):
            continue
        names = list(group["id"])
        which = ", ".join(names[:-1]) + f" and {names[-1]}"
        lines.append(f"runs {which} have the same config and data but different results: {_why(group)}; "
                     "compare their figures before trusting either")
    return lines


def _groups(runs: pd.DataFrame) -> list[pd.DataFrame]:
    """The sets of two or more runs with the same config and data, each oldest first."""
    ordered = runs.sort_values(["created", "id"], na_position="last").dropna(subset=list(PAIR_KEYS))
    return [group for _, group in ordered.groupby(list(PAIR_KEYS), sort=False) if len(group) > 1]


def _why(group: pd.DataFrame) -> str:
    """Why twins' figures differ: the versions or device that differed between them, else non-determinism."""
    made = [json.loads(text) if isinstance(text, str) else {} for text in group["made_with"]]
    changed = sorted({key for one in made for key in one if len({m.get(key, "?") for m in made}) > 1})
    if not changed:
        return "the run is not deterministic (a plug-in, a GPU or another machine?)"
    versions = "; ".join(f"{key} {' vs '.join(dict.fromkeys(m.get(key, '?') for m in made))}" for key in changed)
    return f"they were computed with other versions or devices ({versions}), which can change figures"


__all__ = ["PAIR_KEYS", "results_digest", "made_with", "mark_twins", "differing_sentences"]
