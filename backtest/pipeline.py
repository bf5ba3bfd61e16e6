"""``run(config) -> RunResult``: the orchestration of one run (saving and loading it is ``backtest.rundir``).

Every step between loading and writing is a pure function of its inputs. torch (the networks) and
vectorbt (the portfolio) load only when a run trains or backtests.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from lstmbt.backtest import __version__
from lstmbt.backtest.annualise import run_note, run_periods
from lstmbt.backtest.checkpoint import open_checkpoint
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.cpcv import predict_cpcv, split_log
from lstmbt.backtest.cpcv_paths import cpcv_metrics, score_cpcv
from lstmbt.backtest.data import check_enough_rows, describe_prices, load_prices
from lstmbt.backtest.datacheck import data_warnings
# the shared design and the estimators moved to backtest.design; importers still find them here
from lstmbt.backtest.design import (Design, build_estimator, estimator_for, feature_warmup, make_design,  # noqa: F401
                                    plugin_faults, target_anchor, training_weights)
from lstmbt.backtest.errors import DataWarning
from lstmbt.backtest.headtohead import check_pairs, planned_strategies, run_comparisons
from lstmbt.backtest.plugins import resolve_strategy, rule_provenance
from lstmbt.backtest.portfolio import cost_sweep, run_backtest
from lstmbt.backtest.preflight import check_before_training, cpcv_note
from lstmbt.backtest.regimes import regime_labels, regime_table
from lstmbt.backtest.retraining import frozen_twins, retrain_counts
from lstmbt.backtest.rundir import RunResult
from lstmbt.backtest.scoring import (
    by_model, collect_metrics, fold_stats, horizon_plan, majority_p_up, make_positions, model_plan, predicted_up,
    run_warnings, scale_warnings, undecided
)
from lstmbt.backtest.seeds import (long_seed_predictions, score_seeds, seed_provenance, seed_summary,
                                  unused_seed_note)
from lstmbt.backtest.walkforward import FoldProgress, combine_seeds, walk_forward_predict
from lstmbt.models.key import FOLD_KEY_COLUMNS, ModelKey, insert_key_columns, keys_from_frame
from lstmbt.models.specs import NETWORK_FAMILIES
from lstmbt.models.threads import ThreadGovernor, one_thread_per_fit, run_side_by_side

_VERSIONED = ("torch", "numpy", "pandas", "vectorbt", "vectorbt-rust", "scikit-learn", "ta", "arch", "plotly")

#: progress(stage, done, total): stage is "data", "features", a model name, "backtest" or "metrics".
Progress = Callable[[str, int, int], None]


def run(config: RunConfig, progress: Progress | None = None, threads: int | None = None,
        prices: pd.DataFrame | None = None, checkpoint: Path | None = None, executor: Any = None) -> RunResult:
    """Load data, walk forward every model on identical folds, backtest, and score.

    ``threads``: how many fits may run side by side (both targets' models, the seeds of
    ``train.seeds``), each on one torch thread so no number depends on it; None takes torch's
    current count (which follows ``OMP_NUM_THREADS`` and ``torch.set_num_threads``). Between folds
    the count drops to the cores other processes leave idle (at least 1), with one
    ``ContentionWarning`` the first time (``models.threads.ThreadGovernor``). Torch's own thread
    count is restored when the run returns. ``models.threads.default_threads()`` gives every core
    the process may use (the CLI's rule).
    ``prices``: already loaded prices (e.g. one ticker of a universe loaded by the driver of a
    sweep or a Ray job); ``None`` loads ``config.data``. Either way they are checked for length.
    ``checkpoint``: a folder (one per run: per ticker, per trial) that keeps every finished fold
    (``backtest.checkpoint``); run again with the same folder, config and data, it continues from
    the last saved fold and returns predictions identical to an uninterrupted run. Other data or
    another config in that folder is refused with one line.
    Suspect but usable prices (``backtest.datacheck.data_warnings``) raise a ``DataWarning`` each
    (``check_length``), and are kept in the manifest (``data_checks``, first of ``warnings``).
    With ``split.scheme = "cpcv"`` the run also trains every primary-horizon model on each CPCV
    split and scores the paths (``backtest.cpcv``; ``RunResult.cpcv``). ``executor``: None fits the
    splits side by side in this process; an executor of ``backtest.campaign.executors`` (Ray) runs
    them as its jobs. The walk-forward's checkpoint does not cover the CPCV splits.
    """
    report = progress or (lambda stage, done, total: None)
    clock = time.perf_counter()
    report("data", 0, 1)
    prices = load_checked(config) if prices is None else check_length(prices, config)
    timings = {"data": _lap(clock)}
    report("features", 0, 1)
    design = make_design(prices, config)
    timings["features"] = _lap(clock) - timings["data"]
    restored = _open_checkpoint(checkpoint, design, config) if checkpoint is not None else 0
    with one_thread_per_fit(threads) as governor:  # the caller's count is back when the run returns
        predictions, folds_frame = _predict_all(design, config, report, timings, checkpoint, governor)
        report("backtest", 0, 1)
        result = score_run(design, predictions, folds_frame, config, timings, clock)
        if config.split.cpcv:
            _add_cpcv(result, design, config, report, governor, executor)
    if restored:  # timings then cover only this session's share of the work
        result.manifest["resumed"] = {"folds_restored": restored}
    return result


def _add_cpcv(result: RunResult, design: Design, config: RunConfig, report: Progress,
              governor: ThreadGovernor, executor: Any) -> None:
    """Train on the CPCV splits, score the paths, and add them to ``result`` (its ``cpcv`` fields,
    the ``cpcv_*`` keys of ``metrics`` and the ``cpcv`` timings of the manifest)."""
    predictions, log, seconds = predict_cpcv(design, config, model_plan(config), report, governor, executor)
    report("cpcv paths", 0, 1)
    started = time.perf_counter()
    summary, returns = score_cpcv(design, predictions, config)
    summary["splits"] = split_log(log)
    summary["timings_s"] = {"training": round(seconds, 3), "paths": round(time.perf_counter() - started, 3)}
    result.cpcv, result.cpcv_returns, result.cpcv_predictions = summary, returns, predictions
    note = cpcv_note(design.prices, config, feature_warmup(config))  # warned before training; kept with the run
    if note:
        result.manifest["warnings"].append(note)
    for name, extra in cpcv_metrics(summary).items():
        result.metrics.setdefault(name, {}).update(extra)
    result.manifest["timings_s"]["cpcv"] = round(seconds + summary["timings_s"]["paths"], 3)


def _open_checkpoint(checkpoint: Path, design: Design, config: RunConfig) -> int:
    """Start or check the run's checkpoint (same config and data); returns the folds already saved."""
    data = describe_prices(design.prices, config.data.label, config.data.symbol)
    return open_checkpoint(checkpoint, config, data, [str(folder) for _, folder in _chains(config)], len(design.folds))


def _chains(config: RunConfig) -> list[tuple[tuple[ModelKey, int | None], Path]]:
    """Every walk-forward chain of a run, ``(model key, seed)`` (seed None: a baseline or plug-in),
    with its checkpoint folder: the model's name, and a ``seed<S>`` folder below it with several seeds."""
    out = []
    for key in horizon_plan(config):
        seeds = config.train.members if key.family in NETWORK_FAMILIES else (None,)
        out += [((key, seed), Path(key.name) / f"seed{seed}" if len(seeds) > 1 else Path(key.name)) for seed in seeds]
    return out


def score_run(design: Design, predictions: pd.DataFrame, folds: pd.DataFrame, config: RunConfig,
              timings: dict[str, float] | None = None, clock: float | None = None) -> RunResult:
    """The RunResult of out-of-sample ``predictions`` (as ``_predict_all`` makes them) on ``design``:
    positions, the backtest with costs, metrics, the fold table and the manifest.

    ``timings``/``clock``: the stage timings so far and the ``time.perf_counter()`` the run began at.
    The manifest's ``data_checks`` holds the data warnings, with the share of out-of-sample fill
    bars (those the returns are earned on) that open at the previous close.
    """
    timings = dict(timings or {})
    started = time.perf_counter()
    scored = _score(design, predictions, folds, config)
    timings["backtest_and_metrics"] = time.perf_counter() - started
    timings["total"] = _lap(started if clock is None else clock)
    positions = scored["positions"]
    checks = data_warnings(design.prices, config.data, oos_dates=scored["returns"].index,
                           execution=config.backtest.execution)
    notes = run_warnings(scored["metrics"], positions, keys_from_frame(predictions), scored["returns"],
                         config.strategy.custom) + scale_warnings(config) + unused_seed_note(config)
    notes += [note for note in [run_note(design.prices.index)] if note]
    manifest = _manifest(config, describe_prices(design.prices, config.data.label, config.data.symbol), positions,
                         folds, len(design.folds), timings, notes, checks)
    manifest["periods_per_year"] = run_periods(design.prices.index)
    return RunResult(config=config, predictions=predictions, manifest=manifest, **scored)


def simulate(design: Design, predictions: pd.DataFrame, config: RunConfig) -> dict[str, Any]:
    """A run's out-of-sample scoring of ``predictions`` on ``design``'s folds: ``dates``, the majority
    baseline's p_up, ``positions``, the ``backtest`` at the configured costs, ``realised`` up-moves
    per horizon and ``metrics`` (``metrics.json``). ``lstmbt importance`` scores its own
    walk-forward through this too, so its skill figures are a run's."""
    dates = design.grid.dates[design.folds[0].test[0]:]
    majority = majority_p_up(design.targets["classification"], design.grid, design.folds)
    positions = make_positions(predictions, dates, config, majority, prices=design.prices)
    backtest = run_backtest(design.prices, positions, config.backtest)
    realised = {h: (t["classification"].reindex(dates) > 0).to_numpy() for h, t in design.horizon_targets.items()}
    metrics = collect_metrics(predictions, positions, backtest, realised[config.target.horizon], config, majority,
                              realised, close=design.prices["Close"], periods_per_year=run_periods(design.prices.index))
    return {"dates": dates, "majority": majority, "positions": positions, "backtest": backtest, "realised": realised,
            "metrics": metrics}


def _score(design: Design, predictions: pd.DataFrame, folds: pd.DataFrame, config: RunConfig) -> dict[str, Any]:
    """Positions, the backtest at the configured costs and across fee levels, metrics, fold figures,
    the comparisons between strategies, and each seed of a seed ensemble scored as its own run."""
    prices = design.prices
    sim = simulate(design, predictions, config)
    dates, majority, positions, backtest, realised, metrics = (
        sim[k] for k in ("dates", "majority", "positions", "backtest", "realised", "metrics"))
    realised_up = realised[config.target.horizon]
    models, keys = by_model(predictions, dates), keys_from_frame(predictions)
    calls = {name: predicted_up(name, models, majority, config, dates, keys=keys) for name in [*models, "majority"]}
    per_model = {name: realised[keys[name].horizon] for name in models}
    seeds = score_seeds(predictions, folds, prices, dates, majority, realised, config)  # each seed as its own run
    return {"positions": positions, "returns": backtest.returns, "metrics": metrics, "trades": backtest.trades,
            "seeds": seed_summary(seeds, metrics, list(models), run_periods(prices.index)), "seed_predictions": long_seed_predictions(predictions),
            "folds": fold_stats(folds, positions, backtest.returns, per_model, calls),
            "costs": cost_sweep(prices, positions, config.backtest, periods_per_year=run_periods(prices.index)),
            "comparisons": run_comparisons(predictions, backtest.returns, positions, config, close=prices["Close"]),
            "regimes": _regimes(prices["Close"], positions, backtest.returns,
                                calls, per_model, realised_up, models, keys, config)}


def _regimes(close: pd.Series, positions: pd.DataFrame, returns: pd.DataFrame, calls: dict[str, Any],
             per_model: dict[str, np.ndarray], realised_up: np.ndarray, models: dict[str, pd.DataFrame],
             keys: dict[str, ModelKey], config: RunConfig) -> pd.DataFrame:
    """Every strategy's figures per regime known at the decision close (``backtest.regimes``); a
    model's hit rate leaves out the days it could not decide on, as its overall hit rate does, and
    the models' verdicts in every regime are one family, as on the scorecard."""
    dates = positions.index
    realised = {name: per_model.get(name, realised_up) for name in returns.columns}
    decided = {name: ~undecided(keys[name], models, config, close) for name in models}
    return regime_table(returns.set_axis(dates), calls, realised, regime_labels(close, dates),
                        seed=config.train.run_seed, decided=decided, positions=positions, tested=list(models),
                        periods_per_year=run_periods(close.index))


def load_checked(config: RunConfig, *, folds: bool = True, positions: bool = True) -> pd.DataFrame:
    """Prices, refused early when too short for the warm-up, lookback, min_train and one test block,
    or when ``check_length``'s checks before training fail."""
    return check_length(load_prices(config.data), config, folds=folds, positions=positions)


def check_length(prices: pd.DataFrame, config: RunConfig, *, folds: bool = True,
                 positions: bool = True) -> pd.DataFrame:
    """``prices`` unchanged, or a DataError when they are too short for ``config``'s warm-up,
    lookback, min_train, one test block and the label horizon; then the checks before training
    (``backtest.preflight``: device, memory, and with ``folds``/``positions`` the label classes and
    dead-zone weights of every fold, the confidence sizing's volatility history and, with both, the
    CPCV splits' fit samples), each a one-line error. Suspect but
    usable prices (``backtest.datacheck.data_warnings``) raise a ``DataWarning`` each, so run,
    predict, importance, sweeps and universes all show them before any training."""
    import warnings

    warmup = feature_warmup(config)
    need, breakdown = _rows_needed(config, warmup)
    check_enough_rows(prices, need, breakdown, config.data.label)
    check_pairs(config.backtest.pairs, planned_strategies(config))  # before training, not after it
    check_before_training(prices, config, warmup, folds=folds, positions=positions)
    for message in data_warnings(prices, config.data):
        warnings.warn(message, DataWarning, stacklevel=3)  # at the caller of run / load_checked
    return prices


def _predict_all(design: Design, config: RunConfig, report: Progress, timings: dict[str, float],
                 checkpoint: Path | None = None,
                 governor: ThreadGovernor | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Out-of-sample predictions of every model on the same folds, and the per-fold log.

    Each model's walk-forward (each seed's, with ``train.seeds``) is one chain of folds; the chains
    run side by side on ``governor``'s slots (``models.threads.run_side_by_side``), LSTMs first, and
    the result is the same in any order. ``checkpoint``: each chain saves and resumes its folds in
    ``checkpoint / <model name>`` (``/ seed<S>`` with several seeds). With ``train.frozen_twin``
    each network's frozen twin (``backtest.retraining``) runs as a chain of its own, with the
    network's seeds, fitted on the first fold only and not checkpointed.
    """
    folders = dict(_chains(config))
    twins = frozen_twins(horizon_plan(config)) if config.train.frozen_twin else {}
    plan = [*horizon_plan(config), *twins]
    seeds = {key.name: [seed for k, seed in folders if k == twins.get(key, key)] for key in plan}
    chains = sorted([*folders, *((twin, seed) for twin in twins for seed in seeds[twin.name])],
                    key=lambda chain: chain[0].family not in NETWORK_FAMILIES)  # the long chains start first
    progress = {key.name: FoldProgress(report, key.name, len(design.horizon_folds[key.horizon]) * len(seeds[key.name]),
                                   governor) for key in plan}

    def walk(key: ModelKey, seed: int | None) -> tuple[pd.DataFrame, pd.DataFrame, float]:
        started = time.perf_counter()
        folder = None if checkpoint is None or key in twins else Path(checkpoint) / folders[key, seed]
        estimator = estimator_for(twins.get(key, key), config, seed)
        with plugin_faults():  # a user's model broke the protocol mid-run: one line, exit 2
            preds, log = walk_forward_predict(estimator, design.features,
                                              design.horizon_targets[key.horizon][key.task], design.grid,
                                              design.horizon_folds[key.horizon], on_fold=progress[key.name].fold_done,
                                              train_weight=training_weights(design, key.task, key.horizon, config),
                                              checkpoint_dir=folder, target_anchor=target_anchor(design, key.task, config),
                                              frozen=key in twins)
        return preds, log, time.perf_counter() - started

    for counter in progress.values():
        counter.start()
    started = time.perf_counter()
    done = dict(zip(chains, run_side_by_side([lambda chain=chain: walk(*chain) for chain in chains], governor)))
    timings["walkforward"] = time.perf_counter() - started
    frames, logs = [], []
    for key in plan:
        runs = {seed: done[key, seed][:2] for seed in seeds[key.name]}
        preds, log = combine_seeds(runs)
        preds = insert_key_columns(preds, key, 1)  # date, target, model, horizon, family, baseline, fold, ...
        preds["close"] = design.prices["Close"].reindex(preds["date"]).to_numpy()
        frames.append(preds)
        logs.append(insert_key_columns(log, key, 0, FOLD_KEY_COLUMNS))
        timings[f"walkforward_{key.name}"] = sum(done[key, seed][2] for seed in seeds[key.name])
    return pd.concat(frames, ignore_index=True), pd.concat(logs, ignore_index=True)


def _rows_needed(config: RunConfig, warmup: int) -> tuple[int, str]:
    lookback, s, h = config.model.lookback, config.split, max(config.target.all_horizons)
    need = warmup + lookback - 1 + s.min_train + s.step + h
    breakdown = (f"{warmup} feature warm-up + {lookback - 1} more for the {lookback}-day lookback + "
                 f"{s.min_train} min_train + {s.step} for one test block + {h} label horizon")
    return need, breakdown


def _manifest(config: RunConfig, data: dict[str, Any], positions: pd.DataFrame, folds: pd.DataFrame, n_folds: int,
              timings: dict[str, float], warnings: list[str], data_checks: list[str] | None = None) -> dict[str, Any]:
    """The run's provenance. ``warnings`` lists a look-ahead suspicion first, then ``data_checks``
    (also kept on their own), then the other run warnings, so the report and CLI show them all.
    ``retraining``: per model, how many of its retrains changed the weights (``folds``: the fold log)."""
    from lstmbt.models.training import resolve_device  # loads torch: only when called

    data_checks = list(data_checks or [])
    alarms = [w for w in warnings if w.startswith("LOOK-AHEAD SUSPECTED")]  # stays the first thing said

    return {
        "lstmbt_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _VERSIONED},
        **seed_provenance(config),
        "device": str(resolve_device(config.train.device)),
        "data": data,
        "out_of_sample": {"first_date": positions.index[0].date().isoformat(),
                          "last_date": positions.index[-1].date().isoformat(),
                          "days": int(len(positions)), "folds": n_folds},
        "retraining": retrain_counts(folds, _warm_chains(config, folds)),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "data_checks": data_checks,
        "warnings": alarms + data_checks + [w for w in warnings if w not in alarms],
        **_strategy_provenance(config),
    }


def _warm_chains(config: RunConfig, folds: pd.DataFrame) -> list[str]:
    """The models of the fold log that carry their weights from fold to fold: the networks (not
    their frozen twins) with ``train.warm_start``."""
    if not config.train.warm_start or "family" not in folds:
        return []
    networks = folds[folds["family"].isin(NETWORK_FAMILIES) & ~folds["baseline"].astype(bool)]
    return list(networks["model"].unique())


def _strategy_provenance(config: RunConfig) -> dict[str, Any]:
    """``{"strategy": {...}}`` when a custom rule or a volatility target made the positions: the
    rule's value, function, file and source hash (``backtest.plugins.rule_provenance``) and the
    target; nothing for the built-in sizing alone (the config says all of it)."""
    s = config.strategy
    if s.custom is None and not s.vol_target:
        return {}
    out: dict[str, Any] = rule_provenance(s.custom, resolve_strategy(s.custom)) if s.custom is not None else {}
    if s.vol_target:
        out.update(vol_target=s.vol_target, vol_window=s.vol_window, max_leverage=1.0)
    return {"strategy": out}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _lap(start: float) -> float:
    return time.perf_counter() - start
