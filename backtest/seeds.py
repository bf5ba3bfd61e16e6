"""Seed ensembles (``train.seeds``): every seed scored as its own run, and what the seeds agree on.

A run with several seeds trains each network model once per seed and scores the mean of their
predictions as the model (``backtest.walkforward.combine_seeds``). Here each seed's own
predictions are scored exactly as the single-seed run with ``train.seed = S`` and
``train.seeds = []`` scores them: the same positions, backtest, metrics and significance figures,
with every bootstrap seeded by S, among the same models (so the same family-wise level). From
those come the spread of the figures over the seeds (median, min, max; per fold too), how many
seeds share the ensemble's verdict and its hit-rate claim, and the deflated Sharpe of the best
seed, which counts every seed as a trial (``backtest.deflated``).

Baselines and plug-ins train once; only the models with their own per-seed predictions (the
networks) are scored per seed. A run saves ``seed_summary`` as ``seeds.json`` and
``long_seed_predictions`` as ``seed_predictions.parquet`` (``backtest.rundir``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.deflated import deflate_best
from lstmbt.backtest.annualise import run_periods
from lstmbt.backtest.metrics import sharpe
from lstmbt.backtest.portfolio import run_backtest
from lstmbt.backtest.scoring import by_model, collect_metrics, fold_stats, make_positions, predicted_up
from lstmbt.models.key import KEY_COLUMNS, keys_from_frame
from lstmbt.models.specs import DEFAULT_SEED

#: the figures whose spread over the seeds (median, min, max) ``seeds.json`` summarises and the report shows
SPREAD_METRICS = ("sharpe", "total_return", "cagr", "max_drawdown", "hit_rate", "psr")
#: the fold figures (``scoring.fold_stats``) whose spread over the seeds is kept per fold
FOLD_FIGURES = ("hit_rate", "strategy_return")
#: a hit rate claims skill when its one-sided binomial p-value (``hit_rate_pvalue``) is below this
SKILL_PVALUE = 0.05
_SEED_COLUMN = re.compile(r"^y_pred_seed(\d+)$")


@dataclass(frozen=True)
class SeedScore:
    """One seed's figures for the ensemble models: ``metrics`` ``{model: {metric: value}}`` as
    ``metrics.json`` has them, ``returns`` (daily net returns, one column per model) and ``folds``
    (the models' rows of ``scoring.fold_stats``)."""

    metrics: dict[str, dict[str, Any]]
    returns: pd.DataFrame
    folds: pd.DataFrame


def seed_provenance(config: RunConfig) -> dict[str, Any]:
    """The manifest's ``seed`` (``train.run_seed``: what the bootstraps, the baselines and single fits
    are seeded with) and ``seeds`` (every seed the networks train with); with ``train.seeds``, also
    ``seed_rule``, which says so."""
    t = config.train
    out: dict[str, Any] = {"seed": t.run_seed, "seeds": list(t.members)}
    if t.seeds:
        out["seed_rule"] = (f"the networks train once per seed of train.seeds; the first, {t.run_seed}, is the run's "
                            "seed: it seeds the bootstraps and the baselines (train.seed is unused)")
    return out


def unused_seed_note(config: RunConfig) -> list[str]:
    """A note when ``train.seed`` is set beside ``train.seeds`` to another seed than their first,
    which the run uses in its place (the default seed, 0, is not told apart from an unset one)."""
    t = config.train
    if not t.seeds or t.seed in (DEFAULT_SEED, t.run_seed):
        return []
    return [f"train.seed = {t.seed} is unused: with train.seeds = {list(t.seeds)} the run's seed (the manifest's, "
            f"the bootstraps' and the baselines') is the first listed, {t.run_seed}."]


def ensemble_seeds(predictions: pd.DataFrame) -> tuple[int, ...]:
    """The seeds of a run's ensembles, in training order: those of its ``y_pred_seed<S>`` columns."""
    return tuple(int(m.group(1)) for c in predictions.columns if (m := _SEED_COLUMN.match(str(c))))


def ensemble_models(predictions: pd.DataFrame) -> list[str]:
    """The models of ``predictions`` that are means over two or more seeds (their seed columns are
    filled; a baseline's are NaN), in the frame's order; empty for a run of one seed."""
    seeds = ensemble_seeds(predictions)
    if len(seeds) < 2:
        return []
    filled = predictions[f"y_pred_seed{seeds[0]}"].notna().groupby(predictions["model"], sort=False).any()
    return [str(name) for name, own in filled.items() if own]


def seed_config(config: RunConfig, seed: int) -> RunConfig:
    """The config of the single-seed run of ``seed``: ``train.seed = seed`` and ``train.seeds`` empty."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed, seeds=()))


def seed_view(predictions: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The predictions the single-seed run of ``seed`` makes: every ensemble model's ``y_pred`` and
    ``p_up`` replaced by that seed's own, the other models' left as they are, and the
    ``y_pred_seed<S>``/``p_up_seed<S>`` columns dropped."""
    seeds = ensemble_seeds(predictions)
    if seed not in seeds:
        raise ValueError(f"seed {seed} is not one of the run's seeds {list(seeds)}")
    own = predictions["model"].isin(ensemble_models(predictions)).to_numpy()
    out = predictions.drop(columns=[f"{v}_seed{s}" for s in seeds for v in ("y_pred", "p_up")])
    for value in ("y_pred", "p_up"):
        out[value] = np.where(own, predictions[f"{value}_seed{seed}"].to_numpy(), predictions[value].to_numpy())
    return out


def long_seed_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """Every ensemble model's own predictions per seed in long format: ``date``, the model key
    columns, ``fold``, ``seed``, ``y_true``, ``y_pred``, ``p_up``; one row per model, seed and
    out-of-sample day (model by model, seed by seed). An empty frame without an ensemble."""
    parts = []
    for name in ensemble_models(predictions):
        own = predictions[predictions["model"] == name]
        for seed in ensemble_seeds(predictions):
            part = own[["date", *KEY_COLUMNS, "fold"]].assign(seed=seed, y_true=own["y_true"])
            parts.append(part.assign(y_pred=own[f"y_pred_seed{seed}"], p_up=own[f"p_up_seed{seed}"]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def score_seed(predictions: pd.DataFrame, folds: pd.DataFrame, prices: pd.DataFrame, dates: pd.DatetimeIndex,
               majority: pd.Series | None, realised: dict[int, np.ndarray], config: RunConfig,
               seed: int) -> SeedScore:
    """Score seed ``seed`` of every ensemble model as its single-seed run scores it.

    Parameters
    ----------
    predictions, folds : the run's predictions (with the seed columns) and fold log.
    prices : the whole OHLCV history. dates : the out-of-sample decision days.
    majority : the majority baseline's p_up per day (``scoring.majority_p_up``).
    realised : the realised direction per decision day, per label horizon.
    config : the run's config; scored as ``seed_config(config, seed)``.
    """
    own, preds, models = seed_config(config, seed), seed_view(predictions, seed), ensemble_models(predictions)
    positions = make_positions(preds, dates, own, majority, prices=prices)
    backtest = run_backtest(prices, positions, own.backtest)  # every strategy: the verdict's level counts the models
    metrics = collect_metrics(preds, positions[models], backtest, realised[own.target.horizon], own, majority,
                              realised, close=prices["Close"], periods_per_year=run_periods(prices.index))
    frames, keys = by_model(preds, dates), keys_from_frame(preds)
    calls = {name: predicted_up(name, frames, majority, own, dates, keys=keys) for name in models}
    figures = fold_stats(folds[folds["model"].isin(models)], positions, backtest.returns,
                         {name: realised[keys[name].horizon] for name in models}, calls)
    return SeedScore(metrics=metrics, returns=backtest.returns[models], folds=figures)


def score_seeds(predictions: pd.DataFrame, folds: pd.DataFrame, prices: pd.DataFrame, dates: pd.DatetimeIndex,
                majority: pd.Series | None, realised: dict[int, np.ndarray], config: RunConfig) -> dict[int, SeedScore]:
    """``{seed: score_seed(...)}`` for every seed of the run's ensembles; empty without one."""
    if not ensemble_models(predictions):
        return {}
    return {seed: score_seed(predictions, folds, prices, dates, majority, realised, config, seed)
            for seed in ensemble_seeds(predictions)}


# --------------------------------------------------------------------------- seeds.json


def seed_summary(scores: dict[int, SeedScore], metrics: dict[str, dict[str, Any]],
                 models: list[str] | None = None, periods_per_year: int = 252) -> dict[str, Any]:
    """The ``seeds.json`` payload: ``{"seeds": [...], "models": {model: ...}}``, empty without seeds.

    Per ensemble model: ``seeds``, ``n_seeds``, ``metrics`` (each seed's full metrics, keyed by
    the seed as text), ``summary`` (``{metric: {median, min, max}}`` over the seeds for
    ``SPREAD_METRICS``), ``verdict`` and ``hit_rate_skill`` (``agreement``: the ensemble's value,
    each seed's, and how many seeds hold it; ``hit_rate_skill`` is None for a model that calls no
    direction), ``best_seed`` (``best_seed``) and ``folds`` (``fold_spread``).
    ``metrics``: the run's own, whose entries of the ensembles are the mean of the seeds'.
    ``models``: the run's models, the family each hit-rate p-value is adjusted over (Bonferroni,
    as the scorecard and ``predict``); default the ensembles alone. ``hit_rate_skill`` carries its
    ``n_tested``. ``periods_per_year`` annualises the best seed's Sharpe.
    """
    if not scores:
        return {}
    seeds = list(scores)
    n_tested = len(hit_tested(metrics, list(scores[seeds[0]].metrics) if models is None else models))
    out = {}
    for name in scores[seeds[0]].metrics:
        per_seed = {str(seed): scores[seed].metrics[name] for seed in seeds}
        skill = claims_skill(metrics[name], n_tested)
        out[name] = {
            "seeds": seeds, "n_seeds": len(seeds), "metrics": per_seed,
            "summary": {key: spread([m.get(key) for m in per_seed.values()]) for key in SPREAD_METRICS},
            "verdict": agreement(metrics[name].get("verdict"), {s: m.get("verdict") for s, m in per_seed.items()}),
            "hit_rate_skill": None if skill is None else {**agreement(
                skill, {s: claims_skill(m, n_tested) for s, m in per_seed.items()}), "n_tested": n_tested},
            "best_seed": best_seed(name, scores, periods_per_year),
            "folds": fold_spread(name, scores),
        }
    return {"seeds": seeds, "models": out}


def spread(values: list[Any]) -> dict[str, float]:
    """``{"median", "min", "max"}`` of the finite ``values``; NaN each when none is finite."""
    finite = [float(v) for v in values if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)]
    if not finite:
        return {"median": math.nan, "min": math.nan, "max": math.nan}
    return {"median": float(np.median(finite)), "min": min(finite), "max": max(finite)}


def claims_skill(entry: dict[str, Any], n_tested: int = 1) -> bool | None:
    """Whether a strategy's hit rate claims skill: ``hit_rate_pvalue`` adjusted over the
    ``n_tested`` models read together (:func:`adjusted_hit_pvalue`) below ``SKILL_PVALUE``; None
    when it has no hit-rate test (it calls no direction)."""
    p = entry.get("hit_rate_pvalue")
    if not isinstance(p, numbers.Real) or not math.isfinite(p):
        return None
    return bool(adjusted_hit_pvalue(float(p), n_tested) < SKILL_PVALUE)


def adjusted_hit_pvalue(p: float, n_tested: int) -> float:
    """A hit-rate p-value adjusted over ``n_tested`` models (Bonferroni, as the verdict intervals):
    ``min(1, p * n_tested)``."""
    return min(1.0, p * max(n_tested, 1))


def hit_tested(metrics: dict[str, dict[str, Any]], models: list[str]) -> list[str]:
    """The ``models`` with a hit-rate test in ``metrics`` (a finite ``hit_rate_pvalue``): the family
    a hit-rate claim is adjusted over."""
    return [name for name in models if claims_skill(metrics.get(name, {})) is not None]


def family_hit_pvalues(metrics: Mapping[str, Mapping[str, Any]], models: list[str]) -> dict[str, float]:
    """``{model: adjusted_hit_pvalue(p, m)}`` for the ``m`` of ``models`` with a hit-rate test
    (:func:`hit_tested`); a model that calls no direction is not in the family."""
    tested = hit_tested(dict(metrics), models)
    return {name: adjusted_hit_pvalue(float(metrics[name]["hit_rate_pvalue"]), len(tested)) for name in tested}


def agreement(ensemble: Any, by_seed: dict[str, Any]) -> dict[str, Any]:
    """``{"ensemble", "by_seed", "holds", "n"}``: the ensemble's value, each seed's, and how many
    of the ``n`` seeds give the ensemble's value."""
    return {"ensemble": ensemble, "by_seed": by_seed, "holds": sum(v == ensemble for v in by_seed.values()),
            "n": len(by_seed)}


def best_seed(name: str, scores: dict[int, SeedScore], periods_per_year: int = 252) -> dict[str, Any] | None:
    """The seed of model ``name`` with the highest Sharpe, and its deflated Sharpe with every seed
    a trial: ``seed``, ``sharpe`` (annualised), ``n_trials`` (the seeds), ``sharpe_var``
    (variance of the seeds' daily Sharpe), ``sr0_ann`` (what the best of that many skill-less
    seeds shows by luck, annualised) and ``dsr``. None when no seed has a Sharpe."""
    seeds = list(scores)
    returns = np.column_stack([scores[s].returns[name].to_numpy(dtype=np.float64) for s in seeds])
    ratios = np.array([sharpe(returns[:, i], periods_per_year) for i in range(len(seeds))])
    if not np.isfinite(ratios).any():
        return None
    best = int(np.nanargmax(ratios))  # ties: the first seed
    return {"seed": seeds[best], "sharpe": float(ratios[best]), **deflate_best(returns, best, periods_per_year)}


def fold_spread(name: str, scores: dict[int, SeedScore]) -> list[dict[str, Any]]:
    """Per fold of model ``name``: ``fold``, ``test_start``/``test_end`` (ISO dates) and for each of
    ``FOLD_FIGURES`` its ``spread`` over the seeds plus ``by_seed`` (the seeds' values)."""
    frames = {str(s): score.folds[score.folds["model"] == name].reset_index(drop=True) for s, score in scores.items()}
    first = next(iter(frames.values()))
    out = []
    for i, record in enumerate(first.to_dict("records")):
        entry: dict[str, Any] = {"fold": int(record["fold"]), "test_start": record["test_start"].date().isoformat(),
                                 "test_end": record["test_end"].date().isoformat()}
        for figure in FOLD_FIGURES:
            by_seed = {s: float(frame[figure].iloc[i]) for s, frame in frames.items()}
            entry[figure] = {**spread(list(by_seed.values())), "by_seed": by_seed}
        out.append(entry)
    return out


__all__ = ["SeedScore", "SPREAD_METRICS", "FOLD_FIGURES", "SKILL_PVALUE", "ensemble_seeds", "ensemble_models",
           "seed_config", "seed_view", "long_seed_predictions", "score_seed", "score_seeds", "seed_summary", "spread",
           "claims_skill", "adjusted_hit_pvalue", "hit_tested", "family_hit_pvalues", "agreement", "best_seed", "fold_spread", "seed_provenance", "unused_seed_note"]
