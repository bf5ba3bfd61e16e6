"""Seed ensembles in a sweep: a row's figure for each of its seeds, their median, and the trials the
deflated Sharpe ratio counts.

A training trial run with ``train.seeds`` predicts, for each network model, the mean over its seeds
(the row's own figure) and each seed's own prediction (``backtest.seeds.seed_view``).
``backtest.campaign.sweep_score`` simulates each seed's positions beside the rows, as the return
series ``<candidate>@seed<S>``, and gives every row ``n_seeds``, ``seed_median``, ``seed_min`` and
``seed_max`` of the sweep's metric over its seeds (the row's own figure for a model trained once),
and ``median_candidate``: the series of the seed whose figure is the median.

``[sweep] rank_by = "seed_median"`` ranks rows by ``seed_median`` instead of their figure. The
deflated Sharpe is then that of the best row's median seed, a single seed's figure picked from many,
so every seed of every distinct row counts as a trial (``dsr_trials``); with ``rank_by =
"ensemble"`` it is the best row's own series, one trial per distinct row.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError

#: marks a seed's own return series: ``<candidate>@seed<S>``
SEED_MARK = "@seed"


def check_rank_by(rank_by: str, configs: Iterable[RunConfig]) -> None:
    """A ConfigError of one line when ``rank_by = "seed_median"`` and no training trial trains a
    network with two or more seeds, so no row has a median over seeds."""
    if rank_by != "seed_median":
        return
    if not any(len(c.train.seeds) > 1 and c.model.networks for c in configs):
        raise ConfigError('[sweep] rank_by = "seed_median" needs a network model trained with two or more seeds; set '
                          '"train.seeds" = [0, 1, 2, 3, 4] under [sweep.set], or rank_by = "ensemble"')


def seed_candidate(candidate: str, seed: int) -> str:
    """The name of seed ``seed``'s own return series of row ``candidate``."""
    return f"{candidate}{SEED_MARK}{seed}"


def seed_spread(candidate: str, figure: float, by_seed: dict[int, float]) -> dict[str, Any]:
    """A row's seed columns from its metric ``figure`` and each seed's (``by_seed``, empty for a model
    trained once).

    Returns
    -------
    dict
        ``n_seeds``; ``seed_median``, ``seed_min``, ``seed_max`` of the finite seed figures (the
        row's ``figure`` without seeds; NaN when no seed has one); ``median_candidate``: the series
        of the middle seed by figure (of an even number, the lower of the two middle ones; the
        row's own ``candidate`` without seeds).
    """
    if not by_seed:
        return {"n_seeds": 1, "seed_median": figure, "seed_min": figure, "seed_max": figure,
                "median_candidate": candidate}
    finite = {seed: float(v) for seed, v in by_seed.items() if math.isfinite(v)}
    if not finite:
        return {"n_seeds": len(by_seed), "seed_median": math.nan, "seed_min": math.nan, "seed_max": math.nan,
                "median_candidate": seed_candidate(candidate, next(iter(by_seed)))}
    ordered = sorted(finite, key=lambda seed: (finite[seed], seed))
    pick = ordered[(len(ordered) - 1) // 2]  # the middle seed; of two middles, the lower
    return {"n_seeds": len(by_seed), "seed_median": float(np.median(list(finite.values()))),
            "seed_min": min(finite.values()),
            "seed_max": max(finite.values()), "median_candidate": seed_candidate(candidate, pick)}


def dsr_trials(candidates: Iterable[str], columns: Iterable[str]) -> list[str]:
    """The return series a deflated Sharpe of a single seed counts as trials: every seed's series of
    each of ``candidates`` (the distinct rows), and a row's own series when it has no seeds.
    ``columns``: the names of every return series of the sweep."""
    by_row: dict[str, list[str]] = {}
    for column in columns:
        row, mark, _ = str(column).rpartition(SEED_MARK)
        if mark:
            by_row.setdefault(row, []).append(str(column))
    return [series for candidate in candidates for series in by_row.get(candidate, [candidate])]


__all__ = ["check_rank_by", "seed_candidate", "seed_spread", "dsr_trials", "SEED_MARK"]
