"""Strategies compared with each other on the same days, and all at once (``comparisons.json``).

- :func:`compare_pair`: two strategies head to head: the paired bootstrap interval of their
  Sharpe difference, McNemar on their direction calls, Diebold-Mariano on the 0/1 direction loss,
  and the share of days their calls agree;
- :func:`spa_test`: Hansen's (2005) test of superior predictive ability of every model against
  buy-and-hold (``arch.bootstrap.SPA``);
- :func:`mcs_test`: the model confidence set of Hansen, Lunde & Nason (2011) over all strategies
  (``arch.bootstrap.MCS``);
- :func:`run_comparisons`: all of it from what a saved run holds.

Conventions as :mod:`backtest.significance`: simple daily net returns as fractions, Sharpe ratios
annualised with sqrt(252); losses for SPA and MCS are negated daily returns. Unlike the one-sided
tests against buy-and-hold, the pair tests are two-sided: they ask "do the two differ?".
Bootstraps use local RNGs seeded from the arguments; NaN where a value is undefined.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from lstmbt.backtest.annualise import run_periods
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.metrics import PERIODS_PER_YEAR, sharpe
from lstmbt.backtest.relative import family_confidence, interval_verdict
from lstmbt.backtest.resampling import pvalue_mc_se, pvalue_settled, settled_reps
from lstmbt.backtest.retraining import RETRAINING_QUESTION, frozen_pairs
from lstmbt.backtest.scoring import BENCHMARK, by_model, horizon_plan, predicted_up, strategy_horizon, undecided
from lstmbt.backtest.significance import N_BOOT, default_block_length, diebold_mariano, sharpe_diff_interval
from lstmbt.models.key import CUSTOM_FAMILY, ModelKey, keys_from_frame

LOSS = ("0/1 direction loss (1 on a day the call is wrong, 0 when right), because it is the only loss a return "
        "forecast and an up/down probability share: the regression model has no probability and the classifier "
        "no return forecast")
"""The loss the Diebold-Mariano test of a pair compares, and why (written into comparisons.json)."""

MCNEMAR_EXACT_BELOW = 25
"""McNemar uses the exact binomial test below this many discordant days, else chi-square with continuity correction."""

MCS_SIZE = 0.10
"""Size of the model confidence set: it holds the best strategies with probability 0.90."""

SPA_LEVEL = 0.05
"""Hansen's SPA p-value below this says some model beats the benchmark."""

FAMILY_LEVEL = 0.95
"""Family-wise coverage of the verdict intervals against buy-and-hold (Bonferroni over the models)."""


def compare_pair(returns_a: np.ndarray, returns_b: np.ndarray, calls_a: np.ndarray | None,
                 calls_b: np.ndarray | None, realised_up: np.ndarray | None, horizon: int = 1, seed: int = 0,
                 n_boot: int | None = None, *, decided: np.ndarray | None = None,
                 realised_up_b: np.ndarray | None = None, confidence: float = 0.95,
                 periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, Any]:
    """Strategy ``a`` against strategy ``b`` on the same days.

    Parameters
    ----------
    returns_a, returns_b : np.ndarray
        Daily net returns (fractions, finite) of the two strategies on the same days.
    calls_a, calls_b : np.ndarray or None
        Each decision day's direction call (True = up), aligned with the returns; None for a
        strategy that calls no direction (persistence), which leaves the direction fields NaN.
    realised_up : np.ndarray or None
        The realised direction per decision day at ``a``'s horizon; None leaves the direction
        fields NaN. ``realised_up_b``: ``b``'s, when its horizon differs (default the same).
    horizon : int
        The longer label horizon of the two, in days: the HAC lag of Diebold-Mariano is at least
        ``horizon - 1``.
    seed, n_boot : int
        Seed of the paired stationary bootstrap and its number of resamples (None: as many as
        it takes for the interval's side of 0 not to depend on the seed, ``backtest.resampling``).
    decided : np.ndarray, optional
        Boolean mask of the days on which both strategies made a call; the direction fields use
        only those days (days held flat for want of an input are not calls). The Sharpe fields
        use every day, as the returns count flat days.
    confidence : float
        Two-sided coverage of the Sharpe-difference interval: 0.95 for one pair alone, the
        Bonferroni level :func:`backtest.relative.family_confidence` when several are read together.
    periods_per_year : int
        Bars a year the Sharpe difference is annualised with (252; 365 on a 7-day calendar).

    Returns
    -------
    dict[str, Any]
        ``sharpe_diff``: Sharpe(a) - Sharpe(b), annualised. ``sharpe_diff_ci_low`` /
        ``sharpe_diff_ci_high``: its paired stationary-bootstrap interval at ``confidence`` (both
        series resampled with the same indices; :func:`backtest.significance.sharpe_diff_interval`),
        with ``confidence``, the Monte-Carlo standard error of each bound
        (``sharpe_diff_ci_low_mc_se``, ``sharpe_diff_ci_high_mc_se``) and ``n_boot``, the resamples
        drawn. ``verdict``: :func:`backtest.relative.verdict` of the interval, read as "a against
        b" (``"borderline"`` when a deciding bound is within Monte-Carlo error of 0).
        ``better``: ``"a"`` or ``"b"`` when the interval excludes 0 beyond that error, else None.
        ``mcnemar_pvalue``: two-sided McNemar test that the two hit rates are equal, from the
        2x2 table of right/wrong calls (exact below :data:`MCNEMAR_EXACT_BELOW` discordant days).
        ``dm_pvalue``: two-sided Diebold-Mariano test of equal expected 0/1 direction loss
        (:data:`LOSS`), HAC variance. ``agreement``: share of days the two calls agree.
        ``hit_rate_a``, ``hit_rate_b``, ``up_share_a``, ``up_share_b``: each one's hit rate and
        share of "up" calls on those days. ``n_days``: days of returns; ``n_direction_days``:
        days compared on direction.
    """
    ra, rb = np.asarray(returns_a, dtype=np.float64), np.asarray(returns_b, dtype=np.float64)
    if len(ra) != len(rb):
        raise ValueError(f"returns_a ({len(ra)} days) and returns_b ({len(rb)} days) must cover the same days")
    ci = sharpe_diff_interval(ra, rb, confidence=confidence, n_boot=n_boot, seed=seed,
                              periods_per_year=periods_per_year)
    side = interval_verdict(ci)
    ppy = periods_per_year
    out: dict[str, Any] = {"sharpe_diff": sharpe(ra, ppy) - sharpe(rb, ppy), "sharpe_diff_ci_low": ci.low,
                           "sharpe_diff_ci_high": ci.high, "confidence": confidence,
                           "sharpe_diff_ci_low_mc_se": ci.low_mc_se, "sharpe_diff_ci_high_mc_se": ci.high_mc_se,
                           "n_boot": ci.n_boot, "verdict": side,
                           "better": {"beats": "a", "worse": "b"}.get(side) if side else None}
    keep = np.ones(len(ra), dtype=bool) if decided is None else np.asarray(decided, dtype=bool)
    real_b = realised_up if realised_up_b is None else realised_up_b
    if calls_a is None or calls_b is None or realised_up is None or real_b is None:
        out.update(direction_tests(np.zeros(0, bool), np.zeros(0, bool), np.zeros(0, bool)))
    else:
        out.update(direction_tests(*(np.asarray(v, dtype=bool)[keep] for v in (calls_a, calls_b, realised_up)),
                                   real_b=np.asarray(real_b, dtype=bool)[keep], horizon=horizon))
    out["n_days"] = len(ra)
    return out


def direction_tests(calls_a: np.ndarray, calls_b: np.ndarray, real_a: np.ndarray,
                    real_b: np.ndarray | None = None, horizon: int = 1) -> dict[str, float]:
    """McNemar, Diebold-Mariano (0/1 loss), agreement and hit rates of two sets of direction calls.

    Arrays are boolean and aligned (the days both called); ``real_b`` defaults to ``real_a``.
    See :func:`compare_pair` for the keys. No days gives NaN everywhere.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    keys = ("mcnemar_pvalue", "dm_pvalue", "agreement", "hit_rate_a", "hit_rate_b", "up_share_a", "up_share_b")
    n = len(calls_a)
    if n == 0:
        return dict.fromkeys(keys, math.nan) | {"n_direction_days": 0}
    right_a, right_b = calls_a == real_a, calls_b == (real_a if real_b is None else real_b)
    table = [[int(np.sum(right_a & right_b)), int(np.sum(right_a & ~right_b))],
             [int(np.sum(~right_a & right_b)), int(np.sum(~right_a & ~right_b))]]
    discordant = table[0][1] + table[1][0]
    mc = mcnemar(table, exact=discordant < MCNEMAR_EXACT_BELOW, correction=True)
    values = (float(mc.pvalue), _dm_two_sided(~right_a, ~right_b, horizon), float(np.mean(calls_a == calls_b)),
              float(np.mean(right_a)), float(np.mean(right_b)), float(np.mean(calls_a)), float(np.mean(calls_b)))
    return dict(zip(keys, values)) | {"n_direction_days": n}


def _dm_two_sided(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int) -> float:
    """Two-sided Diebold-Mariano p-value of equal mean loss (HLN-adjusted, Student t with n - 1 df)."""
    n = len(loss_a)
    stat, one_sided = diebold_mariano(loss_a.astype(np.float64), loss_b.astype(np.float64), horizon)
    if math.isnan(stat):
        return one_sided  # identical losses: 1.0 (nothing to tell apart); under two days: NaN
    return float(2.0 * stats.t.sf(abs(stat), df=n - 1))


# ------------------------------------------------------------------------------------- pairs


def default_pairs(keys: Iterable[ModelKey]) -> list[tuple[str, str]]:
    """The pairs a run compares by default among the models of ``keys``, per horizon (in the
    order the horizons first appear): each network family's regression model against its
    classification model (the linear pair when a run has no network pair), then each network
    against its baseline twin of the same task and horizon (``ridge_regression``,
    ``logistic_classification``; LightGBM's when the linear twins are off), then each network
    against its frozen twin when the run has one. Regression is always ``a``, the retrained model
    ``a`` against its frozen twin."""
    keys = list(keys)
    pairs = []
    for h in dict.fromkeys(key.horizon for key in keys):
        group = [key for key in keys if key.horizon == h]
        nets: dict[str, dict[str, str]] = {}
        for key in group:
            if not key.baseline and key.family != CUSTOM_FAMILY:
                nets.setdefault(key.family, {})[key.task] = key.name
        twins = _twins(group)
        both = [kind for kind in nets.values() if len(kind) == 2] or [twins] * (len(twins) == 2)
        pairs += [(kind["regression"], kind["classification"]) for kind in both]
        pairs += [(kind[t], twins[t]) for kind in nets.values() for t in ("regression", "classification")
                  if t in kind and t in twins]
        pairs += frozen_pairs(group)  # each network against its frozen twin (train.frozen_twin)
    return pairs


def _twins(group: list[ModelKey]) -> dict[str, str]:
    """``{task: name}`` of the baseline twins in ``group``: the linear models, else LightGBM's."""
    for family in ("linear", "lightgbm"):
        twins = {key.task: key.name for key in group if key.family == family}
        if twins:
            return twins
    return {}


def check_pairs(pairs: Sequence[str], strategies: Sequence[str]) -> list[tuple[str, str]]:
    """``backtest.pairs`` entries (``"a:b"``, checked for form by the config) as name tuples.

    A name that is not one of ``strategies`` raises one ConfigError line naming the known ones.
    """
    out = []
    for item in pairs:
        a, b = (part.strip() for part in item.split(":"))
        unknown = [name for name in (a, b) if name not in strategies]
        if unknown:
            raise ConfigError(f"backtest.pairs entry {item!r} names {unknown[0]!r}, which this run does not have; "
                              f"use two of: {', '.join(strategies)}")
        out.append((a, b))
    return out


def planned_strategies(config: RunConfig) -> list[str]:
    """The strategy names a run of ``config`` scores: its models, their baselines, buy-and-hold."""
    tasks = config.target.tasks
    return ([key.name for key in horizon_plan(config)] + ["persistence"] * ("regression" in tasks)
            + ["majority"] * ("classification" in tasks) + [BENCHMARK])


# ------------------------------------------------------------------------------- family-wise


def spa_test(returns: pd.DataFrame, benchmark: str = BENCHMARK, *, models: Sequence[str], seed: int = 0,
             reps: int = N_BOOT) -> dict[str, Any]:
    """Hansen's SPA test: does any of ``models`` beat ``benchmark``? (``arch.bootstrap.SPA``)

    Losses are negated daily returns, resampled by the stationary bootstrap with the block length
    of :func:`backtest.significance.default_block_length` over all the series, studentized, from
    a local ``np.random.default_rng(seed)``. ``models``: the columns of ``returns`` to test (a
    run's model strategies). A model whose returns equal the benchmark's on every day has no loss
    differential to test and is left out (``not_tested``).

    Returns
    -------
    dict[str, Any]
        ``benchmark``; ``pvalue``: the consistent p-value (small = some model beats the benchmark);
        ``pvalues``: ``{"lower", "consistent", "upper"}``; ``n_strategies``: models tested;
        ``models``: their names; ``not_tested``; ``block_size`` in days; ``reps``: resamples,
        doubled from ``reps`` until the p-value lies 5 Monte-Carlo errors from ``SPA_LEVEL``
        (``backtest.resampling.settled_reps``, at most 32,000), ``pvalue_mc_se`` its error and
        ``edge`` true when it still does not. No model: NaN p-values.
    """
    from arch.bootstrap import SPA

    names = list(models)
    bench = returns[benchmark].to_numpy(np.float64)
    tested = [m for m in names if np.ptp(returns[m].to_numpy(np.float64) - bench) > 0]
    out: dict[str, Any] = {"benchmark": benchmark, "pvalue": math.nan, "n_strategies": len(tested),
                           "pvalues": dict.fromkeys(("lower", "consistent", "upper"), math.nan),
                           "models": tested, "not_tested": [m for m in names if m not in tested], "block_size": None}
    if not tested:
        return out
    losses = -returns[tested].to_numpy(np.float64)
    block = default_block_length(bench, *losses.T)
    pvalues: dict[str, float] = {}

    def run(n: int) -> list[float]:
        spa = SPA(-bench, losses, block_size=block, reps=n, bootstrap="stationary", seed=np.random.default_rng(seed))
        spa.compute()
        pvalues.update({k: float(spa.pvalues[k]) for k in ("lower", "consistent", "upper")})
        return [pvalues["consistent"]]

    used, settled = settled_reps(run, SPA_LEVEL, reps)
    return out | {"pvalue": pvalues["consistent"], "pvalues": pvalues, "block_size": block, "reps": used,
                  "pvalue_mc_se": pvalue_mc_se(pvalues["consistent"], used), "edge": not settled}


def mcs_test(returns: pd.DataFrame, size: float = MCS_SIZE, seed: int = 0, reps: int = N_BOOT) -> dict[str, Any]:
    """The model confidence set over every strategy (``arch.bootstrap.MCS``, method "R").

    Losses are negated daily returns; stationary bootstrap with the block length of
    :func:`backtest.significance.default_block_length`, from a local ``np.random.default_rng(seed)``.
    Strategies that were never invested (constant returns: 0, or the cash rate alone, such as
    persistence, which calls no direction) are left out (``not_tested``). A strategy whose returns equal an earlier one's on
    every day (majority that is always long is buy-and-hold) cannot be told apart from it: it is
    tested as that one, shares its p-value and membership, and is listed in ``same_as``.

    Returns
    -------
    dict[str, Any]
        ``included``: the strategies in the set, which holds the best with probability
        ``1 - size`` (in column order); ``pvalues``: each strategy's MCS p-value (in the set when
        above ``size``); ``size``; ``not_tested``; ``same_as`` (``{strategy: its twin}``);
        ``block_size`` in days; ``reps``: resamples, doubled from ``reps`` until every p-value
        lies 5 Monte-Carlo errors from ``size`` (at most 32,000); ``edge``: the strategies whose
        membership still rests within that error.
    """
    from arch.bootstrap import MCS

    cols = {c: returns[c].to_numpy(np.float64) for c in returns.columns}
    never = [c for c, r in cols.items() if len(r) and np.ptp(r) == 0]
    same_as: dict[str, str] = {}
    tested: list[str] = []
    order = sorted(cols, key=lambda c: c != BENCHMARK)  # a twin of buy-and-hold is named as its twin
    for c in (c for c in order if c not in never):
        twin = next((t for t in tested if np.array_equal(cols[t], cols[c])), None)
        same_as.update({c: twin} if twin else {})
        tested += [] if twin else [c]
    pvalues = dict.fromkeys(tested, 1.0)  # a set of one holds the best by definition
    block = None
    if len(tested) >= 2:
        block = default_block_length(*(cols[c] for c in tested))
        losses, found = pd.DataFrame({c: -cols[c] for c in tested}), {}

        def run(n: int) -> list[float]:
            mcs = MCS(losses, size, reps=n, block_size=block, method="R", bootstrap="stationary",
                      seed=np.random.default_rng(seed))
            mcs.compute()
            found.update(pvalues={c: float(mcs.pvalues["Pvalue"][c]) for c in tested}, kept=set(mcs.included))
            return list(found["pvalues"].values())

        reps, settled = settled_reps(run, size, reps)
        pvalues, kept = found["pvalues"], found["kept"]
    else:
        kept, settled = set(tested), True
    pvalues = {c: pvalues[same_as.get(c, c)] for c in cols if c not in never}
    edge = [c for c in pvalues if not pvalue_settled([pvalues[c]], size, reps)] if not settled else []
    return {"included": [c for c in pvalues if same_as.get(c, c) in kept], "pvalues": pvalues, "size": size,
            "not_tested": never, "same_as": same_as, "block_size": block, "reps": reps, "edge": edge}


# ------------------------------------------------------------------------------ a whole run

_SHAPE = {"pairs": list, "spa": dict, "mcs": dict}


def comparisons_problem(payload: dict[str, Any]) -> str | None:
    """What is wrong with the shape of a ``comparisons.json`` read back, or None when it has
    the keys :func:`run_comparisons` writes ("pairs": an array of objects; "spa", "mcs": objects)."""
    for key, kind in _SHAPE.items():
        value = payload.get(key)
        if not isinstance(value, kind) or (kind is list and not all(isinstance(row, dict) for row in value)):
            return f"{key!r} is missing or not a JSON {'array of objects' if kind is list else 'object'}"
    return None


def run_comparisons(predictions: pd.DataFrame, returns: pd.DataFrame, positions: pd.DataFrame,
                    config: RunConfig, *, close: pd.Series | None = None) -> dict[str, Any]:
    """The ``comparisons.json`` payload of a run, from its saved frames and config.

    Pairs: :func:`default_pairs` plus ``backtest.pairs`` (names checked against the run's
    strategies), each Sharpe-difference interval at the Bonferroni level over the run's pairs
    (:func:`backtest.relative.family_confidence`), so that every "a beats b" holds together at 95%.
    Calls come from ``backtest.scoring.predicted_up``; the majority baseline's
    calls are not saved, so a pair with it has NaN direction fields (as persistence, which calls
    none). Realised directions are the classification rows' ``y_true`` per decision day (or, with
    no classifier at a horizon, the sign of a ``return``/``price`` regression label). ``close``:
    the whole close history, to tell the days a model could not decide on exactly as
    ``collect_metrics`` does (None: the predictions' own closes).

    Returns
    -------
    dict[str, Any]
        ``{"pairs": [{"a", "b", ["question",] **compare_pair(...)}], "loss": LOSS, "spa": spa_test(...),
        "mcs": mcs_test(...), "family": {"n_models", "confidence", "level", "method", "n_pairs",
        "pair_confidence"}}``.
    """
    strategies, keys = list(returns.columns), keys_from_frame(predictions)
    names = [s for s in strategies if s in keys]  # the model strategies, in column order
    pairs = default_pairs(keys[s] for s in names)
    pairs += [p for p in check_pairs(config.backtest.pairs, strategies) if p not in pairs]
    dates, seed = positions.index, config.train.run_seed
    models = by_model(predictions, dates)
    realised = realised_directions(models, keys, config)
    level = family_confidence(len(pairs), FAMILY_LEVEL)
    ppy = run_periods(dates if close is None else close.index)  # 365 on a 7-day calendar, as metrics.json
    questions = dict.fromkeys(frozen_pairs(keys[s] for s in names), RETRAINING_QUESTION)
    rows = [{"a": a, "b": b, **({"question": questions[a, b]} if (a, b) in questions else {}),
             **_compare_named(a, b, returns, models, keys, realised, config, close, dates, level, ppy)} for a, b in pairs]
    n_models = len(names)
    return {"pairs": rows, "loss": LOSS, "spa": spa_test(returns, models=names, seed=seed),
            "mcs": mcs_test(returns, seed=seed),
            "family": {"n_models": n_models, "confidence": family_confidence(n_models, FAMILY_LEVEL),
                       "level": FAMILY_LEVEL, "method": "Bonferroni", "n_pairs": len(pairs),
                       "pair_confidence": level}}


def _compare_named(a: str, b: str, returns: pd.DataFrame, models: dict[str, pd.DataFrame],
                   keys: Mapping[str, ModelKey], realised: dict[int, np.ndarray], config: RunConfig,
                   close: pd.Series | None, dates: pd.DatetimeIndex, confidence: float,
                   periods_per_year: int) -> dict[str, Any]:
    """:func:`compare_pair` of strategies ``a`` and ``b`` of a run at ``confidence``, each call against
    its own horizon."""
    calls, keep = {}, np.ones(len(returns), dtype=bool)
    for name in (a, b):
        calls[name] = None if name == "majority" else predicted_up(name, models, None, config, dates, keys=keys)
        if name in keys:
            keep &= ~undecided(keys[name], models, config, close)
    h_a, h_b = strategy_horizon(a, keys, config), strategy_horizon(b, keys, config)
    return compare_pair(returns[a].to_numpy(), returns[b].to_numpy(), calls[a], calls[b], realised.get(h_a),
                        max(h_a, h_b), seed=config.train.run_seed, decided=keep, realised_up_b=realised.get(h_b),
                        periods_per_year=periods_per_year,
                        confidence=confidence)


def realised_directions(models: dict[str, pd.DataFrame], keys: Mapping[str, ModelKey],
                        config: RunConfig) -> dict[int, np.ndarray]:
    """Per label horizon, the realised direction (True = up) on each decision day.

    ``models``: each model's predictions indexed by decision day (``backtest.scoring.by_model``);
    ``keys``: their model keys (``models.key.keys_from_frame``), which give each its task and horizon.
    From a classifier's ``y_true`` (the 0/1 label), else from a regression label whose sign is
    the direction (``return``: y_true > 0; ``price``: y_true > that day's close). A horizon with
    neither is absent.
    """
    out: dict[int, np.ndarray] = {}
    kind = config.target.regression
    for name, g in sorted(models.items(), key=lambda item: keys[item[0]].task != "classification"):
        h = keys[name].horizon
        if h in out:
            continue
        if keys[name].task == "classification":
            out[h] = (g["y_true"] > 0.5).to_numpy()
        elif kind in ("return", "price"):
            out[h] = (g["y_true"] > (g["close"] if kind == "price" else 0.0)).to_numpy()
    return out
