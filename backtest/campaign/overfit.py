"""How much of a search's best result is luck: deflated Sharpe ratio and PBO. Pure functions of arrays.

- Deflated Sharpe ratio (Bailey & Lopez de Prado 2014): the probabilistic Sharpe ratio of the
  selected trial against ``SR0``, the Sharpe the best of ``N`` skill-less trials is expected to
  show by luck alone, given how much the trials' Sharpe ratios vary. Its functions live in the
  core (``backtest.deflated``, which a run uses for the best seed of an ensemble) and are
  re-exported here.
- Probability of backtest overfitting by combinatorially symmetric cross-validation (Bailey,
  Borwein, Lopez de Prado & Zhu 2015): split the common days into ``S`` blocks; for every way of
  taking half the blocks as "in sample", pick the in-sample best trial and see where it ranks
  among all trials on the other half. PBO is the share of splits where it lands at or below the
  median.

Conventions: returns are simple daily net returns as fractions; the Sharpe ratios inside these
functions are per period (daily, ``mean / std(ddof=1)``, risk-free rate 0), not annualised,
unless a name ends in ``_ann``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy import stats

from lstmbt.backtest.deflated import (  # the core's; re-exported here for the campaign's callers
    EULER_GAMMA, deflated_sharpe_ratio, expected_max_sharpe, sharpe_per_period
)

DEFAULT_BLOCKS = 16
"""CSCV blocks S: C(16, 8) = 12,870 splits, the paper's example."""

MIN_BLOCK_DAYS = 2
"""Each CSCV block needs at least two days so that every half has a standard deviation."""


@dataclass(frozen=True, kw_only=True)
class PboResult:
    """CSCV's answer for one (T, N) matrix of trial returns.

    ``pbo``: share of splits whose logit is <= 0 (the in-sample best ranks at or below the
    out-of-sample median). ``logits``: one per split, ``log(w / (1 - w))`` of the in-sample best's
    out-of-sample relative rank ``w = rank / (N + 1)``. ``n_splits``: C(S, S/2).
    ``prob_oos_loss``: share of splits where the in-sample best's out-of-sample Sharpe is < 0.
    ``n_blocks``: S. ``n_days``: rows used (the oldest ``T mod S`` are dropped so blocks are equal).
    """

    pbo: float
    logits: np.ndarray
    n_splits: int
    prob_oos_loss: float
    n_blocks: int
    n_days: int


def probability_of_backtest_overfitting(returns: np.ndarray, n_blocks: int = DEFAULT_BLOCKS) -> PboResult:
    """PBO by combinatorially symmetric cross-validation (Bailey, Borwein, Lopez de Prado & Zhu 2015).

    Parameters
    ----------
    returns : np.ndarray
        (T, N) daily net returns of N >= 2 trials on the same T days, oldest first, finite.
    n_blocks : int
        S, even, >= 2: the days are cut into S contiguous blocks of ``T // S`` days (the oldest
        ``T mod S`` days are dropped), and every one of the C(S, S/2) ways of choosing half of the
        blocks as in-sample (the rest out-of-sample) is one split. Performance is the Sharpe ratio
        (:func:`sharpe_per_period`; ranks are unchanged by annualising).

    Returns
    -------
    PboResult
    """
    m = _check_matrix(returns, n_blocks)
    t, n = m.shape
    size = t // n_blocks
    m = m[t - size * n_blocks:]  # drop the oldest rows so every block holds `size` days
    blocks = m.reshape(n_blocks, size, n)
    sums, squares = blocks.sum(axis=1), (blocks**2).sum(axis=1)  # (S, N)
    chosen = np.array([[b in c for b in range(n_blocks)] for c in combinations(range(n_blocks), n_blocks // 2)])
    half = size * (n_blocks // 2)
    is_sr = _sharpe_from_sums(chosen @ sums, chosen @ squares, half)  # (splits, N)
    oos_sr = _sharpe_from_sums(~chosen @ sums, ~chosen @ squares, half)
    best = np.argmax(is_sr, axis=1)
    ranks = stats.rankdata(oos_sr, method="average", axis=1)[np.arange(len(best)), best]
    w = ranks / (n + 1.0)
    logits = np.log(w / (1.0 - w))
    oos_best = oos_sr[np.arange(len(best)), best]
    return PboResult(pbo=float(np.mean(logits <= 0)), logits=logits, n_splits=len(chosen),
                     prob_oos_loss=float(np.mean(oos_best < 0)), n_blocks=n_blocks, n_days=size * n_blocks)


def _check_matrix(returns: np.ndarray, n_blocks: int) -> np.ndarray:
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        got = m.shape[1] if m.ndim == 2 else f"an array of shape {m.shape}"
        raise ValueError(f"PBO needs a (days, trials) matrix with at least 2 trials, got {got}; "
                         "sweep more than one setting")
    if not np.all(np.isfinite(m)):
        raise ValueError("PBO needs finite returns on every day of every trial; cut the matrix to common days")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, (int, np.integer)) or n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"PBO needs an even number of blocks S >= 2, got {n_blocks!r}; use e.g. 16")
    if m.shape[0] < MIN_BLOCK_DAYS * n_blocks:
        raise ValueError(f"PBO with S = {n_blocks} blocks needs at least {MIN_BLOCK_DAYS * n_blocks} common days, "
                         f"got {m.shape[0]}; use fewer blocks or a longer out-of-sample period")
    return m


def _sharpe_from_sums(sums: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    """Daily Sharpe (ddof=1) from per-column sums and sums of squares of ``n`` days; 0 without variance."""
    mean = sums / n
    var = np.maximum(squares - n * mean**2, 0.0) / (n - 1)
    sd = np.sqrt(var)
    tiny = sd <= 1e-12 * np.maximum(np.abs(mean), 1e-300)  # rounding leaves ~1e-19 for constant columns
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tiny | (sd == 0), 0.0, mean / sd)


def pbo_verdict(pbo: float) -> str:
    """One plain sentence on what ``pbo`` says about the in-sample best trial."""
    if math.isnan(pbo):
        return "PBO not computed."
    if pbo >= 0.5:
        return (f"PBO {pbo:.2f}: the in-sample best is more often than not at or below the median out of sample; "
                "its rank is mostly luck of the search.")
    if pbo > 0.1:
        return (f"PBO {pbo:.2f}: the in-sample best lands at or below the median out of sample in {pbo:.0%} of the "
                "splits; part of its lead is likely luck of the search.")
    return (f"PBO {pbo:.2f}: the in-sample best stays above the median out of sample in {1 - pbo:.0%} of the "
            "splits; its rank is not an artefact of the search (which says nothing about beating buy-and-hold).")


def dsr_verdict(dsr: float, n_trials: int, sharpe_ann: float, sr0_ann: float, of: str = "") -> str:
    """One plain sentence on what the deflated Sharpe ratio says about the selected trial.

    ``sharpe_ann``/``sr0_ann``: its Sharpe and :func:`expected_max_sharpe`, both annualised.
    ``of``: what the selected trial is, when not simply the best row (e.g. "the best row's median seed").
    """
    if math.isnan(dsr):
        return "DSR not computed."
    side = "above" if sharpe_ann > sr0_ann else "not above"
    lead = (f"DSR {dsr:.2f}{f' of {of}' if of else ''}: the best Sharpe {sharpe_ann:.2f} (annualised) is {side} "
            f"{sr0_ann:.2f}, what the best of {n_trials} skill-less trials would show by luck alone; ")
    if dsr >= 0.95:
        return lead + "that is evidence (95%) of skill that survives the search."
    return lead + f"the probability that its true Sharpe beats that is {dsr:.0%}, not evidence of skill (needs 95%)."


__all__ = ["expected_max_sharpe", "deflated_sharpe_ratio", "sharpe_per_period", "probability_of_backtest_overfitting",
           "PboResult", "pbo_verdict", "dsr_verdict", "DEFAULT_BLOCKS", "EULER_GAMMA"]
