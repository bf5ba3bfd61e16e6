"""Models of different saved runs head to head on the days the runs share (``lstmbt compare``).

The same tests as a run's own pairs (:func:`backtest.headtohead.compare_pair`), on the decision
days both runs cover. Direction tests (McNemar, Diebold-Mariano on the 0/1 direction loss,
agreement) need the same prices, so they are left out (NaN) for runs on different data.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lstmbt.backtest.headtohead import compare_pair, realised_directions
from lstmbt.backtest.relative import family_confidence
from lstmbt.backtest.scoring import by_model, predicted_up, undecided
from lstmbt.models.key import keys_from_frame

MAX_PAIRS = 24
"""Most cross-run pairs shown; with more models the first ones (in run and strategy order) are kept."""


def cross_run_pairs(runs: Sequence[tuple[str, Any]], max_pairs: int = MAX_PAIRS) -> list[dict[str, Any]]:
    """Every model of one run against every model of each later run, on their common decision days.

    Parameters
    ----------
    runs : sequence of (label, RunResult)
        Saved runs (``backtest.rundir.load_run``), labelled as the compare page labels them.
    max_pairs : int
        At most this many pairs, in run order then strategy order.

    Returns
    -------
    list[dict]
        One dict per pair: ``a`` and ``b`` as ``"label: strategy"``, ``same_data`` (both runs
        priced the same series, so direction tests apply) and the keys of ``compare_pair``
        (``seed`` of the first run's config), each interval at the Bonferroni level over the
        pairs shown (``backtest.relative.family_confidence``). Empty with fewer than two runs.
    """
    views = [(label, _view(result)) for label, result in runs]
    chosen = [((label_a, va, a), (label_b, vb, b)) for (label_a, va), (label_b, vb) in combinations(views, 2)
              for a in va["models"] for b in vb["models"]][:max_pairs]
    level = family_confidence(len(chosen))
    out: list[dict[str, Any]] = []
    for (label_a, va, a), (label_b, vb, b) in chosen:
        days = va["dates"].intersection(vb["dates"])
        same = va["sha256"] is not None and va["sha256"] == vb["sha256"]
        out.append({"a": f"{label_a}: {a}", "b": f"{label_b}: {b}", "same_data": same,
                    **_pair(va, a, vb, b, days, same, level)})
    return out


def _view(result: Any) -> dict[str, Any]:
    """What a pair needs of one run: returns by decision day, model keys, calls, decided days and
    realised moves."""
    config, returns = result.config, result.returns
    # returns row k is the bar after decision day k; a returns file cut at its start keeps the last days
    n = min(len(returns), len(result.positions))
    dates, returns = result.positions.index[len(result.positions) - n:], returns.iloc[len(returns) - n:]
    models, keys = by_model(result.predictions, dates), keys_from_frame(result.predictions)
    names = [s for s in returns.columns if s in keys]
    return {"dates": dates, "returns": returns.set_axis(dates), "config": config, "models": names, "keys": keys,
            "calls": {n: predicted_up(n, models, None, config, dates, keys=keys) for n in names},
            "decided": {n: ~undecided(keys[n], models, config, None) for n in names},
            "realised": realised_directions(models, keys, config),
            "sha256": (result.manifest or {}).get("data", {}).get("sha256")}


def _pair(va: dict[str, Any], a: str, vb: dict[str, Any], b: str, days: pd.DatetimeIndex,
          same: bool, confidence: float) -> dict[str, Any]:
    rows_a, rows_b = va["dates"].get_indexer(days), vb["dates"].get_indexer(days)
    h_a, h_b = va["keys"][a].horizon, vb["keys"][b].horizon
    calls_a = va["calls"][a][rows_a] if same and va["calls"][a] is not None else None
    calls_b = vb["calls"][b][rows_b] if same and vb["calls"][b] is not None else None
    real_a, real_b = va["realised"].get(h_a), vb["realised"].get(h_b)
    decided = va["decided"][a][rows_a] & vb["decided"][b][rows_b]
    return compare_pair(va["returns"][a].to_numpy()[rows_a], vb["returns"][b].to_numpy()[rows_b], calls_a, calls_b,
                        None if real_a is None else real_a[rows_a], max(h_a, h_b), seed=va["config"].train.run_seed,
                        decided=np.asarray(decided, dtype=bool),
                        realised_up_b=None if real_b is None else real_b[rows_b], confidence=confidence)
