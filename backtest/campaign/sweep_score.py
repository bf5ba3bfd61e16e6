"""Scoring of a sweep's trials: signal-only trials in one vectorbt broadcast per training trial, the
ranking, and the deflated Sharpe ratio and PBO of the best row (``backtest.overfit``).

Every row (one trial and one model strategy) is backtested on the out-of-sample decision days that
all training trials share, with the trial's own fees, slippage and fill, beside buy-and-hold at the
same costs on the same days, so rows compare like with like.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from lstmbt.backtest import metrics as m
from lstmbt.backtest.campaign.overfit import dsr_verdict, pbo_verdict, probability_of_backtest_overfitting
from lstmbt.backtest.campaign.sweep_file import SweepSpec, TrainingTrial, Trial, override_args
from lstmbt.backtest.campaign.sweep_seeds import dsr_trials, seed_candidate, seed_spread
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.deflated import deflated_sharpe_ratio, expected_max_sharpe, sharpe_per_period
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.metrics import PERIODS_PER_YEAR, hit_rate, sharpe
from lstmbt.backtest.portfolio import run_backtest_variants
from lstmbt.backtest.rundir import load_run
from lstmbt.backtest.scoring import BENCHMARK, by_model, horizon_plan, make_positions, predicted_up
from lstmbt.backtest.seeds import ensemble_models, ensemble_seeds, seed_view
from lstmbt.backtest.significance import probabilistic_sharpe_ratio
from lstmbt.models.key import keys_from_frame
from lstmbt.models.targets import make_target

#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]
#: most columns in one vectorbt call (bounds memory: each column is a few float arrays of every bar)
MAX_COLUMNS = 2000


def score_trials(plan: list[TrainingTrial], out_dir: Path, prices: pd.DataFrame, spec: SweepSpec,
                 report: Progress) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Rows (one per trial and model strategy) and their daily returns on the common decision days.

    Each training trial's saved predictions give the positions of all its trials; those are
    simulated in one ``run_backtest_variants`` call per training trial (per ``MAX_COLUMNS``).
    """
    results = {t.name: load_run(out_dir / "trials" / t.name) for t in plan}
    days = _common_days([r.positions.index for r in results.values()])
    rows, returns = [], []
    for number, training in enumerate(plan, start=1):
        trial_rows, trial_returns = score_training_trial(training, results[training.name], prices, spec, days)
        rows += trial_rows
        returns.append(trial_returns)
        report("signal-only trials", number, len(plan))
    common = {"first_date": days[0].date().isoformat(), "last_date": days[-1].date().isoformat(), "days": len(days)}
    return pd.DataFrame(rows), pd.concat(returns, axis=1), common


def _common_days(indexes: list[pd.DatetimeIndex]) -> pd.DatetimeIndex:
    """The decision days every training trial has (the latest first test day onward)."""
    days = indexes[0]
    for index in indexes[1:]:
        days = days.intersection(index)
    if len(days) < 2:
        raise ConfigError("the training trials share fewer than 2 out-of-sample days; sweep model.lookback or "
                          "split keys over a narrower range so their test periods overlap")
    return days


def score_training_trial(training: TrainingTrial, result: Any, prices: pd.DataFrame, spec: SweepSpec,
                         days: pd.DatetimeIndex) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """The rows and returns of every trial of one training trial, from its saved predictions; with
    a seed ensemble also each seed's own series (``backtest.campaign.sweep_seeds``)."""
    names = [k.name for k in horizon_plan(training.config) if not spec.strategies or k.name in spec.strategies]
    views = _seed_views(result.predictions, names)
    positions, configs = _trial_positions(training, result, prices, days, names, views)
    returns = []
    for start in range(0, positions.shape[1], MAX_COLUMNS):
        part = positions.iloc[:, start:start + MAX_COLUMNS]
        settings = [configs[c].backtest for c in part.columns]
        backtest = run_backtest_variants(prices, part, np.array([s.fee_rate for s in settings]),
                                         np.array([s.slippage for s in settings]), [s.execution for s in settings],
                                         cash_rates=np.array([s.cash_rate for s in settings]),
                                         borrow_rates=np.array([s.borrow_rate for s in settings]),
                                         rebalance_bands=np.array([s.rebalance_band for s in settings]))
        returns.append(backtest)
    hits = {seed: _hit_rates(training.config, preds, prices, names, days) for seed, preds in
            [(None, result.predictions), *views.items()]}
    rows = [_row(trial, name, training, configs[candidate_id(trial, name)], positions, returns, hits, spec)
            for trial in training.trials for name in names]
    return rows, pd.concat([b.returns for b in returns], axis=1)


def _seed_views(predictions: pd.DataFrame, names: list[str]) -> dict[int, pd.DataFrame]:
    """``{seed: that seed's own predictions}`` (``backtest.seeds.seed_view``) when one of the ranked
    models ``names`` is a seed ensemble; empty otherwise."""
    if not set(names) & set(ensemble_models(predictions)):
        return {}
    return {seed: seed_view(predictions, seed) for seed in ensemble_seeds(predictions)}


def _trial_positions(training: TrainingTrial, result: Any, prices: pd.DataFrame, days: pd.DatetimeIndex,
                     names: list[str], views: dict[int, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, RunConfig]]:
    """Every series' positions on ``days`` and its config: each trial's models and buy-and-hold, and
    each seed of its seed ensembles (``views``)."""
    cache: dict[Any, pd.DataFrame] = {}
    columns: dict[str, pd.Series] = {}
    configs: dict[str, RunConfig] = {}
    ensembles = [name for name in names if name in ensemble_models(result.predictions)] if views else []
    for trial in training.trials:
        config = training.config.with_values(trial.signal_values)
        for seed, preds in [(None, result.predictions), *views.items()]:
            if (config.strategy, seed) not in cache:  # backtest-only variants share positions
                cache[config.strategy, seed] = make_positions(preds, result.positions.index, config, None,
                                                              prices=prices).loc[days]
            for name in [*names, BENCHMARK] if seed is None else ensembles:
                column = candidate_id(trial, name) if seed is None else seed_candidate(candidate_id(trial, name), seed)
                columns[column], configs[column] = cache[config.strategy, seed][name], config
    return pd.DataFrame(columns), configs


def candidate_id(trial: Trial, name: str) -> str:
    """``"<trial index>:<strategy>"``, the name of one row's return series."""
    return f"{trial.index}:{name}"


def _hit_rates(config: RunConfig, predictions: pd.DataFrame, prices: pd.DataFrame, names: list[str],
               days: pd.DatetimeIndex) -> dict[str, tuple[float, float]]:
    """Each model's hit rate on ``days`` (independent of signal-only keys: calls are p_up > 0.5 or r > 0)
    and buy-and-hold's beside it: the share of up moves over the model's horizon (always calling "up")."""
    models, keys = by_model(predictions, days), keys_from_frame(predictions)
    out = {}
    for name in names:
        calls = predicted_up(name, models, None, config, days, keys=keys)
        real = make_target(prices, "direction", keys[name].horizon).reindex(days).to_numpy() > 0
        out[name] = (hit_rate(calls, real) if calls is not None else math.nan,
                     hit_rate(np.ones(len(real), dtype=bool), real))
    return out


def _row(trial: Trial, name: str, training: TrainingTrial, config: RunConfig, positions: pd.DataFrame,
         backtests: list[Any], hits: dict[int | None, dict[str, float]], spec: SweepSpec) -> dict[str, Any]:
    """One summary row: the trial's settings, its figures and buy-and-hold's on the same days and
    costs, and its metric over its seeds (``hits``: per seed, None for the row's own predictions)."""
    key, bench = candidate_id(trial, name), candidate_id(trial, BENCHMARK)
    bt = next(b for b in backtests if key in b.returns.columns)
    bh = next(b for b in backtests if bench in b.returns.columns).returns[bench].to_numpy()
    r = bt.returns[key].to_numpy()
    hit, base_rate = hits[None][name]
    figures = {**m.performance_metrics(r, positions[key].to_numpy()), "hit_rate": hit}
    held = {**m.performance_metrics(bh, positions[bench].to_numpy()), "hit_rate": base_rate}
    row = {"trial": trial.index, "strategy": name, "training_trial": training.name, "candidate": key,
           "bh_candidate": bench}
    row.update({k: _param_value(config, k) for k, _ in spec.params})
    row.update(sharpe=figures["sharpe"], bh_sharpe=held["sharpe"], sharpe_minus_bh=figures["sharpe"] - held["sharpe"])
    for metric in ("total_return", "cagr", "sortino", "max_drawdown", "calmar", "hit_rate"):  # each beside B&H's
        row.update({metric: figures[metric], f"bh_{metric}": held[metric]})
    row.update(ann_volatility=figures["ann_volatility"],
               psr=probabilistic_sharpe_ratio(r), n_trades=bt.n_trades[key], fees_paid=bt.fees_paid[key],
               exposure=figures["exposure"], turnover=figures["turnover"], run_dir=f"trials/{training.name}",
               reproduce=" ".join(["lstmbt", "run", "--config", f"trials/{training.name}/config.toml",
                                   *_quoted(override_args(trial.signal_values))]))
    by_seed = {seed: _seed_figure(spec.metric, seed_candidate(key, seed), positions, backtests, hits[seed][name][0])
               for seed in hits if seed is not None and seed_candidate(key, seed) in positions}
    return {**row, **seed_spread(key, figures[spec.metric], by_seed)}


def _seed_figure(metric: str, column: str, positions: pd.DataFrame, backtests: list[Any], hit: float) -> float:
    """The sweep's ``metric`` of one seed's own series ``column`` (``hit``: that seed's hit rate)."""
    if metric == "hit_rate":
        return hit
    r = next(b for b in backtests if column in b.returns.columns).returns[column].to_numpy()
    return m.performance_metrics(r, positions[column].to_numpy())[metric]


def _param_value(config: RunConfig, key: str) -> Any:
    section, _, name = key.partition(".")
    value = getattr(getattr(config, section), name)
    return json.dumps(list(value)) if isinstance(value, tuple) else value


def _quoted(args: list[str]) -> list[str]:
    import shlex

    return [shlex.quote(a) for a in args]


# --------------------------------------------------------------------------- ranking and overfitting


def rank_rows(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows best first by ``metric`` (NaN last, ties in plan order), with ``rank`` in front.

    Ranks count distinct return series: 1, 2, 3, ... over the rows whose ``duplicate_of`` is empty
    (``mark_duplicates``); a row that repeats another's daily returns shares that row's rank and
    follows it, so the ranks have no gaps and a repeat never pushes a real alternative down.
    """
    distinct = summary[summary["duplicate_of"].isna()]
    order = distinct.sort_values(metric, ascending=False, kind="stable", na_position="last")["candidate"]
    ranks = dict(zip(order, range(1, len(order) + 1)))
    rank = summary["candidate"].map(ranks).fillna(summary["duplicate_of"].map(ranks)).astype(int)
    order = pd.DataFrame({"rank": rank, "repeat": summary["duplicate_of"].notna()})
    ranked = summary.assign(rank=rank).loc[order.sort_values(["rank", "repeat"], kind="stable").index]
    return ranked[["rank", *summary.columns]].reset_index(drop=True)  # each row first, then its repeats


def mark_duplicates(summary: pd.DataFrame, returns: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``duplicate_of``: the earlier row (in plan order) whose daily returns a row
    repeats exactly, or None. A grid over ``strategy.threshold`` repeats every classifier's row."""
    seen: dict[bytes, str] = {}
    duplicate = []
    for key in summary["candidate"]:
        digest = returns[key].to_numpy().tobytes()
        duplicate.append(seen.get(digest))
        seen.setdefault(digest, key)
    return summary.assign(duplicate_of=duplicate)


def rank_column(spec: SweepSpec) -> str:
    """The summary column rows are ranked by: the metric, or its median over the seeds (``rank_by``)."""
    return "seed_median" if spec.rank_by == "seed_median" else spec.metric


def assess_overfit(summary: pd.DataFrame, returns: pd.DataFrame, spec: SweepSpec) -> dict[str, Any]:
    """DSR of the best row (rank 1 of the ranked ``summary``) and PBO across the distinct rows, with
    the sweep's counts (``sweep_counts``) in the same words.

    Rows marked ``duplicate_of`` are left out: N counts distinct rows only. With ``rank_by =
    "seed_median"`` the DSR is that of the best row's median seed (``dsr_candidate``), one seed's
    series, and its N (``dsr_n``) counts every seed of every distinct row (``sweep_seeds.dsr_trials``);
    otherwise ``dsr_n`` is ``n_distinct``. PBO is over the distinct rows' own series.
    """
    rows = summary.loc[summary["duplicate_of"].isna(), "candidate"]
    distinct, best = returns[list(rows)], summary.iloc[0]
    by_seed = spec.rank_by == "seed_median"
    trials = returns[dsr_trials(rows, returns.columns)] if by_seed else distinct
    chosen = best["median_candidate"] if by_seed else best["candidate"]
    out: dict[str, Any] = {"metric": spec.metric, "rank_by": spec.rank_by, "best": best["candidate"],
                           "dsr_candidate": chosen, **sweep_counts(summary, trials.shape[1]), "n_days": len(returns),
                           "n_draws": spec.n_trials if spec.search == "random" else None}
    out.update(_dsr(trials, returns[chosen].to_numpy(), chosen))
    out.update(_pbo(distinct, spec.pbo_blocks))
    out["counts_sentence"] = counts_sentence(out, by_seed)
    of = f"the best row's median seed ({chosen})" if by_seed else ""
    what = "seed series (every seed of each distinct row)" if by_seed else "distinct rows"
    out["dsr_sentence"] = (dsr_verdict(out["dsr"], out["dsr_n"], out["best_sharpe_ann"], out["sr0_ann"], of, what)
                           if not out["dsr_note"] else f"DSR not computed: {out['dsr_note']}.")
    out["pbo_sentence"] = pbo_verdict(out["pbo"]) if not out["pbo_note"] else f"PBO not computed: {out['pbo_note']}."
    return out


def sweep_counts(summary: pd.DataFrame, dsr_n: int) -> dict[str, int | None]:
    """The sweep's counts, one word each (README, "Sweeps"): ``n_trials`` (combinations of the
    ``[params]`` values), ``n_training_trials`` (trials that share every training value train once),
    ``n_strategies`` (model strategies per trial; None when they differ between training trials),
    ``n_rows`` (trial x strategy), ``n_distinct`` (rows whose daily returns no earlier row has) and
    ``dsr_n`` (the N the deflated Sharpe counts)."""
    per_trial = summary.groupby("trial")["strategy"].nunique()
    return {"n_trials": int(summary["trial"].nunique()), "n_training_trials": int(summary["training_trial"].nunique()),
            "n_strategies": int(per_trial.iloc[0]) if per_trial.nunique() == 1 else None, "n_rows": len(summary),
            "n_distinct": int(summary["duplicate_of"].isna().sum()), "dsr_n": int(dsr_n)}


def counts_sentence(counts: dict[str, Any], by_seed: bool = False) -> str:
    """The counts in one sentence, printed, shown on the page and kept in ``overfit.json`` alike;
    ``n_draws`` (a random search's draws, of which the repeated combinations ran once) leads it."""
    n = counts
    lead = (f"{_plural(n['n_trials'], 'trial')} ({_plural(n['n_training_trials'], 'training trial')}: trials that "
            f"share every training value train once)")
    if n.get("n_draws"):
        repeated = n["n_draws"] - n["n_trials"]
        lead = (f"{_plural(n['n_draws'], 'random draw')} gave {_plural(n['n_trials'], 'distinct combination')} "
                f"({_plural(repeated, 'repeated draw')} dropped): {lead}" if repeated
                else f"{_plural(n['n_draws'], 'random draw')}, none repeated: {lead}")
    rows = (f" × {_plural(n['n_strategies'], 'strategy', 'strategies')} = {_plural(n['n_rows'], 'row')}"
            if n["n_strategies"] else f" give {_plural(n['n_rows'], 'row')} (trial × strategy; the strategies "
                                      "differ between training trials)")
    repeats = n["n_rows"] - n["n_distinct"]
    distinct = (f", {n['n_distinct']:,} of them distinct ({repeats:,} repeat an earlier row's daily returns)"
                if repeats else ", all distinct")
    counted = (f"; PBO counts the {n['n_distinct']:,} distinct rows, the DSR every seed of them: N = {n['dsr_n']:,}"
               if by_seed else f"; the DSR and PBO count the {n['n_distinct']:,} distinct rows: N = {n['dsr_n']:,}")
    return lead + rows + distinct + counted + "."


def _plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def _dsr(trials: pd.DataFrame, best: np.ndarray, name: str) -> dict[str, Any]:
    """DSR of ``best`` (the series ``name``) given N = the columns of ``trials`` and the sample variance
    (ddof=1) of their daily Sharpe."""
    from scipy import stats

    ann = math.sqrt(PERIODS_PER_YEAR)
    out = {"best_sharpe_ann": sharpe(best), "best_skew": float(stats.skew(best)),
           "best_kurtosis": float(stats.kurtosis(best, fisher=False)), "dsr": math.nan, "sr0_ann": math.nan,
           "sharpe_var": math.nan, "dsr_note": ""}
    if trials.shape[1] < 2:
        return {**out, "dsr_note": "fewer than 2 distinct rows"}
    if not np.std(best) > 0:  # no Sharpe to deflate, e.g. a row that never holds a position
        return {**out, "dsr_note": f"the daily returns of {name} do not vary (it never holds a position)"}
    var = float(np.var(sharpe_per_period(trials.to_numpy()), ddof=1))
    n = trials.shape[1]
    return {**out, "sharpe_var": var, "sr0_ann": expected_max_sharpe(n, var) * ann,
            "dsr": deflated_sharpe_ratio(best, n, var)}


def _pbo(distinct: pd.DataFrame, blocks: int) -> dict[str, Any]:
    """PBO of the distinct columns; a matrix CSCV cannot split (too few days or trials) gives a note."""
    try:
        result = probability_of_backtest_overfitting(distinct.to_numpy(), blocks)
    except ValueError as exc:
        return {"pbo": math.nan, "pbo_note": str(exc), "pbo_splits": 0, "pbo_blocks": blocks, "logits": [],
                "prob_oos_loss": math.nan}
    return {"pbo": result.pbo, "pbo_note": "", "pbo_splits": result.n_splits, "pbo_blocks": blocks,
            "logits": result.logits.tolist(), "prob_oos_loss": result.prob_oos_loss, "pbo_days": result.n_days}


__all__ = ["score_trials", "score_training_trial", "candidate_id", "rank_rows", "rank_column", "mark_duplicates",
           "assess_overfit", "sweep_counts", "counts_sentence", "MAX_COLUMNS"]
