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

from lstmbt.backtest.deflated import (  # the core's; re-exported here for the campaign's callers
    EULER_GAMMA, deflated_sharpe_ratio, expected_max_sharpe, sharpe_per_period
)
# PBO is pure statistics that CPCV in a run uses too: it lives in the core, and is found here as well
from lstmbt.backtest.pbo import (DEFAULT_BLOCKS, MIN_BLOCK_DAYS, PboResult,  # noqa: F401
                                 probability_of_backtest_overfitting, pbo_verdict)


def dsr_verdict(dsr: float, n_trials: int, sharpe_ann: float, sr0_ann: float, of: str = "",
                what: str = "trials") -> str:
    """One plain sentence on what the deflated Sharpe ratio says about the selected trial.

    ``sharpe_ann``/``sr0_ann``: its Sharpe and :func:`expected_max_sharpe`, both annualised.
    ``of``: what the selected trial is, when not simply the best row (e.g. "the best row's median seed").
    ``what``: what the ``n_trials`` counted are called, in the caller's words (a sweep counts
    "distinct rows"), so the sentence's N reads as the same N everywhere else.
    """
    if math.isnan(dsr):
        return "DSR not computed."
    side = "above" if sharpe_ann > sr0_ann else "not above"
    lead = (f"DSR {dsr:.2f}{f' of {of}' if of else ''}: the best Sharpe {sharpe_ann:.2f} (annualised) is {side} "
            f"{sr0_ann:.2f}, what the best of N = {n_trials} skill-less {what} would show by luck alone; ")
    if dsr >= 0.95:
        return lead + "that is evidence (95%) of skill that survives the search."
    return lead + f"the probability that its true Sharpe beats that is {dsr:.0%}, not evidence of skill (needs 95%)."


__all__ = ["expected_max_sharpe", "deflated_sharpe_ratio", "sharpe_per_period", "probability_of_backtest_overfitting",
           "PboResult", "pbo_verdict", "dsr_verdict", "DEFAULT_BLOCKS", "EULER_GAMMA"]
