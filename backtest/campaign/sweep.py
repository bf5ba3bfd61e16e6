"""``lstmbt sweep``: training trials as run directories, signal-only trials in one vectorbt broadcast,
and the deflated Sharpe ratio and PBO of the search.

A sweep directory holds::

    sweep.toml, base.toml       # the checked sweep (``SweepSpec.to_toml``) and the config it starts from
    trials/t000-<hash>/         # one full run directory per training trial (``lstmbt run`` layout)
    trials.parquet              # one row per training trial
    summary.parquet             # one row per trial and model strategy, ranked by the sweep's metric
                                # (or its median over train.seeds: [sweep] rank_by = "seed_median")
    overfit.json                # the counts, how the cores were split, deflated Sharpe ratio and PBO
    sweep.html                  # the summary page (``reports.sweep``)

Training trials run through ``backtest.executors`` and are saved by the driver as they finish, so
a sweep resumes trial by trial. Signal-only trials (``strategy.*``/``backtest.*`` keys) are never
retrained nor written as run directories: each is a summary row, simulated from its training
trial's saved predictions, with the ``lstmbt run`` command that reproduces it in full
(``backtest.sweep_score``). With the local executor an interrupted training trial also keeps its
finished folds (``pipeline.run(checkpoint=...)`` in ``trials/.<name>.partial/``) and continues from them.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from lstmbt.backtest.campaign.sweep_file import SweepSpec, TrainingTrial, plan_sweep, read_sweep
from lstmbt.backtest.campaign.sweep_score import assess_overfit, mark_duplicates, rank_rows, rank_column, score_trials
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.data import describe_prices
from lstmbt.backtest.errors import ConfigError, DataWarning
from lstmbt.backtest.pipeline import check_length, load_checked, run
from lstmbt.backtest.readback import DamagedFileError
from lstmbt.backtest.rundir import RUN_FILES, json_text, load_run, save_run, staged_dir, write_atomic, write_parquet
from lstmbt.backtest.sources import expand_source
from lstmbt.reports import run_pages
from lstmbt.reports.sweep import render_sweep

#: progress(stage, done, total): stage is "training trials" or "signal-only trials"
Progress = Callable[[str, int, int], None]
#: equity curves drawn on the summary page
TOP_CURVES = 5


@dataclass(frozen=True)
class TrainJob:
    """One training trial for an executor: its config, the prices the driver loaded and checked, and
    where to keep finished folds (None: nowhere, e.g. Ray workers on other machines)."""

    config: RunConfig
    prices: pd.DataFrame
    checkpoint: Path | None = None


def train_trial(job: TrainJob) -> Any:
    """The ``RunResult`` of one training trial (module level: executors pickle it to workers).

    Its manifest's ``threads`` is the torch thread count the executor gave the job, which the run
    takes as the fits it trains side by side: the proof that the sweep's core split reached it.
    """
    import warnings

    import torch  # heavy: the job is about to train

    threads = torch.get_num_threads()
    with warnings.catch_warnings():  # the driver showed them when it loaded the prices; the manifest keeps them
        warnings.simplefilter("ignore", DataWarning)
        result = run(job.config, prices=job.prices, checkpoint=job.checkpoint)
    result.manifest["threads"] = threads
    return result


@dataclass(frozen=True, kw_only=True)
class SweepOutcome:
    """What a sweep computed; ``reports.sweep`` renders it.

    ``summary``: ranked rows (see ``summary.parquet`` in the README). ``trials``: one row per
    training trial. ``overfit``: DSR and PBO figures and their sentences. ``curves``: daily net
    returns on the common days of the top rows and of buy-and-hold. ``common``: first/last
    decision day and the number of days every row is scored on. ``timings_s``: seconds per stage.
    """

    spec: SweepSpec
    out_dir: Path
    summary: pd.DataFrame
    trials: pd.DataFrame
    overfit: dict[str, Any]
    curves: pd.DataFrame
    common: dict[str, Any]
    cores: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)


def resolve_spec(config: Path | None, resume: Path | None) -> SweepSpec:
    """The sweep to run: ``--config``, else the ``sweep.toml`` saved in the ``--resume`` directory."""
    if config is not None:
        return read_sweep(config)
    if resume is None:
        raise ConfigError("lstmbt sweep needs --config SWEEP.toml (or --resume DIR of an earlier sweep)")
    if not (resume / "sweep.toml").is_file():
        raise ConfigError(f"--resume {resume} is not a sweep directory (no sweep.toml); pass the --out of an "
                          "earlier lstmbt sweep")
    return read_sweep(resume / "sweep.toml")


def run_sweep(spec: SweepSpec, out_dir: Path, executor: Any, progress: Progress | None = None) -> SweepOutcome:
    """Plan, check, train what is missing, score every trial, and write the summary.

    Everything that can be refused (the plan, the prices, an existing directory that holds another
    sweep) is checked before anything is written.
    """
    report = progress or (lambda stage, done, total: None)
    clock = time.perf_counter()
    plan = plan_sweep(spec)
    prices = load_sweep_prices(spec, plan)
    _prepare_dir(out_dir, spec, plan, prices)
    cores = core_split(executor, plan, out_dir)
    trials = _train(plan, out_dir, prices, executor, report)
    timings = {"training": time.perf_counter() - clock}
    started = time.perf_counter()
    summary, returns, common = score_trials(plan, out_dir, prices, spec, report)
    timings["signal_only"] = time.perf_counter() - started
    summary = rank_rows(mark_duplicates(summary, returns), rank_column(spec))
    overfit = assess_overfit(summary, returns, spec)
    top = summary.loc[summary["duplicate_of"].isna(), "candidate"].head(TOP_CURVES)  # distinct curves only
    curves = returns[list(top)].join(returns[summary["bh_candidate"].iloc[0]].rename("buy_and_hold"))
    outcome = SweepOutcome(spec=spec, out_dir=out_dir, summary=summary, trials=trials, overfit=overfit, curves=curves,
                           common=common, cores=cores, timings_s={**timings, "total": time.perf_counter() - clock})
    write_outputs(outcome)
    return outcome


def load_sweep_prices(spec: SweepSpec, plan: list[TrainingTrial]) -> pd.DataFrame:
    """Prices of the base config, loaded once and checked long enough for every training trial."""
    source = spec.base.data.source
    tickers = expand_source(spec.base.data)
    if len(tickers) > 1 or source.startswith("list:"):
        raise ConfigError(f"data.source = {source!r} names {len(tickers)} ticker(s), but a sweep runs one price "
                          f"history; set one ticker's source under [sweep.set], e.g. {tickers[0].data.source!r}")
    prices = load_checked(spec.base)
    for training in plan:
        check_length(prices, training.config)
    return prices


def core_split(executor: Any, plan: list[TrainingTrial], out_dir: Path) -> dict[str, Any]:
    """How the training trials still to train share the cores (``executor.split``), with a
    ``sentence`` such as "2 cores: 1 training trial at a time × 2 threads"."""
    todo = sum(not (out_dir / "trials" / t.name).exists() for t in plan)
    split = {**executor.split(max(todo, 1)), "to_train": todo}
    if not todo:
        sentence = f"nothing to train: all {len(plan)} training trials were found finished"
    elif split["executor"] == "ray":
        sentence = "Ray: each training trial a task of 1 CPU × 1 thread"
    else:
        cores, at_once, threads = split["cores"], split["at_once"], split["threads"]
        pinned = f" ({split['pinned_by']})" if split["pinned_by"] else ""
        sentence = (f"{cores} core{'s' * (cores != 1)}{pinned}: {at_once} training trial{'s' * (at_once != 1)} at a "
                    f"time × {threads} thread{'s' * (threads != 1)}")
    return {**split, "sentence": sentence}


# --------------------------------------------------------------------------- directory and training


def _prepare_dir(out_dir: Path, spec: SweepSpec, plan: list[TrainingTrial], prices: pd.DataFrame) -> None:
    """A new sweep directory, or the checks that an existing one holds this sweep's finished trials."""
    if not out_dir.exists():
        with staged_dir(out_dir) as tmp:
            (tmp / "trials").mkdir()
            _write_spec(tmp, spec)
        return
    if not (out_dir / "sweep.toml").is_file():
        raise ConfigError(f"{out_dir} exists and is not a sweep directory (no sweep.toml); choose another --out")
    stored = read_sweep(out_dir / "sweep.toml")
    same = ("base", "params", "search", "n_trials", "seed")
    if any(getattr(stored, key) != getattr(spec, key) for key in same):
        raise ConfigError(f"{out_dir} holds a different sweep (its sweep.toml and base.toml plan other trials); resume "
                          "it with the sweep file it was started with, or choose another --out")
    for training in plan:
        _check_finished(out_dir / "trials" / training.name, training, prices)
    _write_spec(out_dir, spec)  # the ranking options (metric, rank_by, strategies, pbo_blocks) may have changed


def _write_spec(folder: Path, spec: SweepSpec) -> None:
    write_atomic(folder / "base.toml", spec.base.to_toml())
    write_atomic(folder / "sweep.toml", spec.to_toml("base.toml"))


def _check_finished(trial_dir: Path, training: TrainingTrial, prices: pd.DataFrame) -> None:
    """A saved training trial must be complete, of the planned config, and trained on these prices."""
    if not trial_dir.exists():
        return
    missing = [name for name in RUN_FILES if not (trial_dir / name).is_file()]
    if missing:
        raise ConfigError(f"{trial_dir} is incomplete (lacks {', '.join(missing)}); remove it and resume to retrain it")
    try:  # every file, so a damaged one is named here rather than failing the scoring later
        finished = load_run(trial_dir)
    except DamagedFileError as exc:
        raise DamagedFileError(exc.path, exc.problem, fix=f"remove {trial_dir} and run `lstmbt sweep --resume "
                                                          f"{trial_dir.parent.parent}` to retrain that trial") from None
    if finished.config != training.config:
        raise ConfigError(f"{trial_dir} holds another config than the sweep plans for it; remove it or use another "
                          "--out")
    manifest = finished.manifest
    data = training.config.data
    if manifest.get("data", {}).get("sha256") != describe_prices(prices, data.source, data.symbol)["sha256"]:
        raise ConfigError(f"{trial_dir} was trained on other prices than {data.source} gives now; start a new sweep "
                          "(another --out) so every trial sees the same data")


def _train(plan: list[TrainingTrial], out_dir: Path, prices: pd.DataFrame, executor: Any,
           report: Progress) -> pd.DataFrame:
    """Run the training trials that have no run directory yet; save each in the driver as it finishes."""
    todo = [t for t in plan if not (out_dir / "trials" / t.name).exists()]
    done = len(plan) - len(todo)
    seconds: dict[str, float] = {}
    threads: dict[str, int | None] = {}
    report("training trials", done, len(plan))

    local = getattr(executor, "kind", None) == "local"  # Ray workers may not see this disk

    def partial(name: str) -> Path | None:
        return out_dir / "trials" / f".{name}.partial" if local else None

    def on_done(index: int, result: Any) -> None:
        nonlocal done
        name = todo[index].name
        save_run(result, out_dir / "trials" / name, pages=run_pages(result))
        if local:
            shutil.rmtree(partial(name), ignore_errors=True)  # its folds live on in the run directory
        seconds[name] = float(result.manifest.get("timings_s", {}).get("total", math.nan))
        threads[name] = result.manifest.get("threads")
        done += 1
        report("training trials", done, len(plan))

    if todo:
        executor.map(train_trial, [TrainJob(t.config, prices, partial(t.name)) for t in todo], on_done=on_done)
    return pd.DataFrame([{
        "training_trial": t.name, "run_dir": f"trials/{t.name}",
        "overrides": json.dumps(dict(t.overrides), default=list),
        "n_trials": len(t.trials), "status": "trained" if t.name in seconds else "resumed",
        "train_seconds": seconds.get(t.name, math.nan),
        "threads": threads.get(t.name)} for t in plan])  # the torch threads it trained on; None: resumed


# --------------------------------------------------------------------------- writing


def write_outputs(outcome: SweepOutcome) -> Path:
    """trials.parquet, summary.parquet, overfit.json and sweep.html, each written atomically."""
    out = outcome.out_dir
    write_parquet(out / "trials.parquet", outcome.trials)
    write_parquet(out / "summary.parquet", outcome.summary)
    figures = {k: v for k, v in outcome.overfit.items() if k != "logits"}  # 12,870 numbers; summary figures only
    payload = {**figures, "common": outcome.common, "cores": outcome.cores, "timings_s": outcome.timings_s}
    write_atomic(out / "overfit.json", json_text(payload))
    return write_atomic(out / "sweep.html", render_sweep(outcome))


__all__ = ["run_sweep", "resolve_spec", "load_sweep_prices", "core_split", "write_outputs", "train_trial", "TrainJob",
           "SweepOutcome"]
