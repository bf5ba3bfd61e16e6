"""Bootstrap intervals whose decision does not depend on the seed (pure functions, local RNGs).

A percentile interval from ``B`` resamples carries Monte-Carlo error: its ``1 - confidence``
tails rest on ``B * (1 - confidence) / 2`` draws each (about 6 at 1,000 resamples and 98.75%),
so a bound near 0 lands on either side of it from one seed to the next, and so does every word
decided by it ("beats", "worse", "cannot be told apart"). Intervals are therefore drawn
adaptively, from one seeded stream of stationary-bootstrap resamples:

1. start with enough resamples that each tail holds at least :data:`MIN_TAIL_DRAWS` draws
   (1,000 at 95%, 4,000 at 98.75%);
2. estimate the Monte-Carlo standard error of each bound from the spacing of the resampled
   values around it (:func:`quantile_with_error`);
3. stop when the bounds that decide the word lie at least :data:`EDGE_Z` standard errors from 0
   (:func:`bound_side`); else double the resamples, up to :data:`MAX_BOOT`.

A seed that stops with a bound :data:`EDGE_Z` errors from 0 would need another seed to move it
about twice that far to reach the opposite decision, which never happens in practice; a bound
still within :data:`EDGE_Z` errors of 0 at :data:`MAX_BOOT` resamples is reported as such (the
fourth verdict, "at the edge") rather than decided by the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import numpy as np
from arch.bootstrap.base import stationary_bootstrap_sample

MIN_TAIL_DRAWS = 25
"""Resamples beyond each bound before any stop (1,000 at 95%, as many as the fixed count of earlier
versions; 4,000 at 98.75%, where that count left about 6): enough for the spacing estimate of the
bound's error to span 20 ranks around it. A bound near 0 draws more by the stopping rule."""

MAX_BOOT = 32_000
"""Most resamples of one interval (the cap of the doubling): 2,500 days x 32,000 is drawn in batches."""

EDGE_Z = 5.0
"""A bound decides its side of 0 when it lies at least this many Monte-Carlo standard errors away.
5 rather than 4: the error is itself estimated (about 20% noise), and a bound is looked at up to
six times, so a bound truly at 0 must not stop early by luck (none of 120 seeds did on the
test's fixture, whose bound sits at 0)."""

BATCH_ROWS = 1_000
"""Resamples drawn at once: 1,000 x 2,500 days is 20 MB of int64 indices (and 20 MB of uniforms),
never the whole 32,000."""


@dataclass(frozen=True)
class BootInterval:
    """A bootstrap percentile interval and its Monte-Carlo error.

    ``low``, ``high``: the bounds (units of the statistic). ``low_mc_se``, ``high_mc_se``: the
    Monte-Carlo standard error of each bound, 0 when every resample gave the same value.
    ``n_boot``: resamples used. ``confidence``: two-sided coverage.
    """

    low: float
    high: float
    low_mc_se: float
    high_mc_se: float
    n_boot: int
    confidence: float

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)``."""
        return self.low, self.high


NAN_INTERVAL = BootInterval(math.nan, math.nan, math.nan, math.nan, 0, math.nan)


def index_stream(n: int, block: float, seed: int) -> Callable[[int], np.ndarray]:
    """One seeded stream of stationary-bootstrap resample positions, drawn ``rows`` at a time.

    Returns a function ``draw(rows) -> array (rows, n)`` that continues the same stream: rows are
    made :data:`BATCH_ROWS` at a time and handed out in order, so the first ``B`` rows are the
    same whatever the sizes asked for. Each row is arch's stationary bootstrap
    (``arch.bootstrap.base.stationary_bootstrap_sample``, as ``StationaryBootstrap`` draws it):
    uniform start positions, a new block at each day with probability ``1 / block`` (mean length
    ``block`` days), wrapping around the end. The random numbers of a batch are drawn at once,
    which makes a resample several times cheaper than ``StationaryBootstrap.update_indices``.
    """
    rng, p = np.random.default_rng(seed), 1.0 / block
    kept = np.empty((0, n), dtype=np.int64)

    def draw(rows: int) -> np.ndarray:
        nonlocal kept
        while len(kept) < rows:
            starts, uniform = rng.integers(0, n, (BATCH_ROWS, n), dtype=np.int64), rng.random((BATCH_ROWS, n))
            for k in range(BATCH_ROWS):
                starts[k] = stationary_bootstrap_sample(starts[k], uniform[k], p)
            kept = np.concatenate([kept, starts])
        out, kept = kept[:rows], kept[rows:]
        return out

    return draw


def start_size(confidence: float) -> int:
    """Resamples of the first look: :data:`MIN_TAIL_DRAWS` in each tail, in whole batches, at most
    :data:`MAX_BOOT`. 95% -> 1,000; 98.75% (four models) -> 4,000."""
    tail = (1.0 - confidence) / 2.0
    need = math.ceil(MIN_TAIL_DRAWS / tail - 1e-9) if tail > 0 else MAX_BOOT  # 4,000.000001 is 4,000
    return min(BATCH_ROWS * math.ceil(need / BATCH_ROWS), MAX_BOOT)


def adaptive_interval(statistic: Callable[[np.ndarray], np.ndarray], n: int, block: float, seed: int,
                      confidence: float, n_boot: int | None = None) -> BootInterval:
    """Percentile interval of ``statistic`` over stationary-bootstrap resamples of ``n`` days.

    Parameters
    ----------
    statistic : callable
        Maps resample positions, shape (rows, n), to one value per row, shape (rows,).
    n, block, seed :
        Days, mean block length in days, and the seed of the local RNG.
    confidence : float
        Two-sided coverage, e.g. 0.95.
    n_boot : int, optional
        A fixed number of resamples; None (the default) draws adaptively as the module says.

    Returns
    -------
    BootInterval
        The bounds, their Monte-Carlo errors and the resamples used.
    """
    draw = index_stream(n, block, seed)
    parts: list[np.ndarray] = []
    drawn, target = 0, n_boot if n_boot is not None else start_size(confidence)
    while True:
        while drawn < target:
            rows = min(BATCH_ROWS, target - drawn)
            parts.append(np.asarray(statistic(draw(rows)), dtype=np.float64))
            drawn += rows
        interval = percentile_interval(np.concatenate(parts), confidence)
        if n_boot is not None or drawn >= MAX_BOOT or decided(interval):
            return interval
        target = min(2 * drawn, MAX_BOOT)


def adaptive_intervals(statistics: Mapping[str, Callable[[np.ndarray], np.ndarray]], n: int, block: float,
                       seed: int, confidence: float) -> dict[str, BootInterval]:
    """:func:`adaptive_interval` of each of several statistics of the same ``n`` days, drawn once.

    Every statistic gets exactly the interval :func:`adaptive_interval` gives it alone with this
    ``block`` and ``seed`` (the same stream, each stopping at its own look), but each batch of
    resample positions is drawn once for all the statistics still looking: the draw is most of the
    cost when several strategies are tested on one set of days.
    """
    draw = index_stream(n, block, seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in statistics}
    target = dict.fromkeys(statistics, start_size(confidence))
    found: dict[str, BootInterval] = {}
    drawn = 0
    while len(found) < len(statistics):
        looking = [k for k in statistics if k not in found]
        while drawn < max(target[k] for k in looking):
            rows = min(BATCH_ROWS, max(target[k] for k in looking) - drawn)
            idx = draw(rows)
            for k in looking:
                if drawn < target[k]:
                    parts[k].append(np.asarray(statistics[k](idx[:target[k] - drawn]), dtype=np.float64))
            drawn += rows
        for k in looking:
            if drawn >= target[k]:
                interval = percentile_interval(np.concatenate(parts[k]), confidence)
                if target[k] >= MAX_BOOT or decided(interval):
                    found[k] = interval
                else:
                    target[k] = min(2 * target[k], MAX_BOOT)
    return found


def percentile_interval(values: np.ndarray, confidence: float) -> BootInterval:
    """Equal-tailed percentile interval of every one of ``values`` (none dropped), with errors."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    tail = (1.0 - confidence) / 2.0
    low, low_se = quantile_with_error(v, tail)
    high, high_se = quantile_with_error(v, 1.0 - tail)
    return BootInterval(low, high, low_se, high_se, len(v), confidence)


def quantile_with_error(v: np.ndarray, q: float) -> tuple[float, float]:
    """The ``q`` quantile of sorted ``v`` (linear interpolation, as ``np.percentile``) and its
    Monte-Carlo standard error.

    The error of a sample quantile is ``s / f(Q(q))`` with ``s = sqrt(q (1 - q) / B)`` and ``f``
    the density there (Bahadur); ``1 / f`` is estimated by the difference quotient
    ``(Q(q + 2s) - Q(q - 2s)) / 4s`` of the resampled values, clipped to [0, 1] (Siddiqui 1960).
    Infinite values (a constant resample of non-zero returns has an infinite Sharpe ratio) are
    kept: a quantile between two equal ones is that value.
    """
    if not len(v):
        return math.nan, math.nan
    s = math.sqrt(q * (1.0 - q) / len(v))
    lo, hi = max(q - 2 * s, 0.0), min(q + 2 * s, 1.0)
    est, below, above = _quantiles(v, np.array([q, lo, hi]))
    if below == above:
        return float(est), 0.0
    return float(est), float((above - below) / (hi - lo) * s)


def _quantiles(v: np.ndarray, qs: np.ndarray) -> np.ndarray:
    """Linear-interpolation quantiles of sorted ``v`` that keep infinite values (no inf - inf)."""
    pos = qs * (len(v) - 1)
    i = np.floor(pos).astype(int)
    j = np.minimum(i + 1, len(v) - 1)
    frac = pos - i
    a, b = v[i], v[j]
    with np.errstate(invalid="ignore"):
        mixed = a + (b - a) * frac
    return np.where((a == b) | (frac == 0), a, mixed)


def bound_side(x: float, se: float) -> int | None:
    """Which side of 0 a bound lies on, beyond Monte-Carlo error: +1, -1, 0 when exactly 0 with no
    error (an interval touching 0 by construction, such as a series against itself), and None
    when it lies within :data:`EDGE_Z` standard errors of 0. A missing error counts as none
    (intervals saved before errors were)."""
    if math.isinf(x):
        return 1 if x > 0 else -1
    err = EDGE_Z * se if se is not None and math.isfinite(se) else 0.0
    if x - err > 0:
        return 1
    if x + err < 0:
        return -1
    return 0 if x == 0 and err == 0 else None


def decided(interval: BootInterval) -> bool:
    """Whether the interval's side of 0 is settled: its low bound above 0, its high bound below,
    or both clear of 0 on either side (each beyond Monte-Carlo error)."""
    low = bound_side(interval.low, interval.low_mc_se)
    high = bound_side(interval.high, interval.high_mc_se)
    return low == 1 or high == -1 or (low is not None and high is not None)

def pvalue_settled(pvalues: Iterable[float], level: float, reps: int) -> bool:
    """Whether every p-value lies at least :data:`EDGE_Z` Monte-Carlo standard errors
    (``sqrt(p (1 - p) / reps)``, the binomial error of a share of ``reps`` resamples) from the
    ``level`` its word is read at, so another seed would not cross it. NaN p-values are settled."""
    for p in pvalues:
        if math.isfinite(p) and abs(p - level) < EDGE_Z * pvalue_mc_se(p, reps):
            return False
    return True


def pvalue_mc_se(p: float, reps: int) -> float:
    """Monte-Carlo standard error of a bootstrap p-value ``p`` from ``reps`` resamples."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / reps) if math.isfinite(p) and reps > 0 else math.nan


def settled_reps(test: Callable[[int], Iterable[float]], level: float, start: int) -> tuple[int, bool]:
    """Run ``test(reps)`` (it returns the p-values read against ``level``) from ``start`` resamples,
    doubling until :func:`pvalue_settled` or :data:`MAX_BOOT`; ``(reps of the last run, settled)``.
    The caller keeps what its last run computed."""
    reps = start
    while True:
        done = pvalue_settled(list(test(reps)), level, reps)
        if done or reps >= MAX_BOOT:
            return reps, done
        reps = min(2 * reps, MAX_BOOT)
