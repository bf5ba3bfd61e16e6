"""``run(config) -> RunResult``, and saving/loading a run directory.

Every step between loading and writing is a pure function of its inputs. Heavy libraries
(torch, vectorbt) are imported inside ``run`` so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from lstmbt.backtest import __version__
from lstmbt.backtest.config import RunConfig, narrow
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.backtest.readback import read_config, read_json, read_metrics, read_parquet
from lstmbt.backtest.scoring import BENCHMARK, MODEL_NAMES  # noqa: F401  (re-exported: callers import them from here)
from lstmbt.backtest.scoring import collect_metrics, horizon_plan, is_linear, make_positions, run_warnings

RUN_FILES = ("config.toml", "manifest.json", "predictions.parquet", "positions.parquet", "returns.parquet",
             "folds.parquet", "costs.parquet", "trades.parquet", "metrics.json", "comparisons.json", "regimes.parquet", "report.html")
#: written by every run but absent from runs of earlier versions: ``load_run`` recomputes the
#: comparisons then; regimes need the close history before the out-of-sample period, so an older
#: run's report has no regime section
OPTIONAL_FILES = ("comparisons.json", "regimes.parquet")
_VERSIONED = ("torch", "numpy", "pandas", "vectorbt", "vectorbt-rust", "scikit-learn", "ta", "arch", "plotly")

#: progress(stage, done, total): stage is "data", "features", a model name, "backtest" or "metrics".
Progress = Callable[[str, int, int], None]


@dataclass
class RunResult:
    """Everything a run produced; ``reports`` renders it and ``save_run`` writes it.

    ``predictions``: long frame (date, target, model, fold, y_true, y_pred, p_up, close), one row
    per model and out-of-sample day. ``positions``: target exposure per decision day and strategy.
    ``returns``: daily net returns per strategy on the bars the positions are held.
    ``folds``: one row per model and fold, with its test block's hit rate and returns.
    ``metrics``: ``{strategy: {metric: value}}``. ``costs``: every strategy re-simulated per fee
    level (``backtest.portfolio.cost_sweep``). ``trades``: one row per trade and strategy.
    ``comparisons``: head-to-head pairs, SPA and MCS (``backtest.headtohead.run_comparisons``).
    ``regimes``: each strategy's figures per market regime (``backtest.regimes.regime_table``).
    """

    config: RunConfig
    predictions: pd.DataFrame
    positions: pd.DataFrame
    returns: pd.DataFrame
    folds: pd.DataFrame
    metrics: dict[str, dict[str, Any]]
    costs: pd.DataFrame = field(default_factory=pd.DataFrame)
    trades: pd.DataFrame = field(default_factory=pd.DataFrame)
    manifest: dict[str, Any] = field(default_factory=dict)
    comparisons: dict[str, Any] = field(default_factory=dict)
    regimes: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class Design:
    """What every model of a run shares: prices, features, targets, the sample grid and the folds.

    ``targets``/``folds`` are the primary horizon's; ``horizon_targets``/``horizon_folds`` hold
    every horizon of ``target.horizons`` (each purged by its own h, all with the same test days).
    """

    prices: pd.DataFrame
    features: pd.DataFrame
    targets: dict[str, pd.Series]
    grid: Any
    folds: list
    horizon_targets: dict[int, dict[str, pd.Series]] = field(default_factory=dict)
    horizon_folds: dict[int, list] = field(default_factory=dict)


def run(config: RunConfig, progress: Progress | None = None, threads: int | None = None,
        prices: pd.DataFrame | None = None, checkpoint: Path | None = None) -> RunResult:
    """Load data, walk forward every model on identical folds, backtest, and score.

    ``threads``: torch intra-op threads for training (None leaves torch's setting alone); the
    CLI passes the cores available, so two threads never fight over one core.
    ``prices``: already loaded prices (e.g. one ticker of a universe loaded by the driver of a
    sweep or a Ray job); ``None`` loads ``config.data``. Either way they are checked for length.
    ``checkpoint``: a folder (one per run: per ticker, per trial) that keeps every finished fold
    (``backtest.checkpoint``); run again with the same folder, config and data, it continues from
    the last saved fold and returns predictions identical to an uninterrupted run. Other data or
    another config in that folder is refused with one line.
    Suspect but usable prices (``backtest.datacheck.data_warnings``) raise a ``DataWarning`` each
    (``check_length``), and are kept in the manifest (``data_checks``, first of ``warnings``).
    """
    report = progress or (lambda stage, done, total: None)
    clock = time.perf_counter()
    report("data", 0, 1)
    prices = load_checked(config) if prices is None else check_length(prices, config)
    timings = {"data": _lap(clock)}
    report("features", 0, 1)
    design = make_design(prices, config)
    if threads:
        import torch

        torch.set_num_threads(threads)
    timings["features"] = _lap(clock) - timings["data"]
    restored = _open_checkpoint(checkpoint, design, config) if checkpoint is not None else 0
    predictions, folds_frame = _predict_all(design, config, report, timings, checkpoint)
    report("backtest", 0, 1)
    result = score_run(design, predictions, folds_frame, config, timings, clock)
    if restored:  # timings then cover only this session's share of the work
        result.manifest["resumed"] = {"folds_restored": restored}
    return result


def _open_checkpoint(checkpoint: Path, design: Design, config: RunConfig) -> int:
    """Start or check the run's checkpoint (same config and data); returns the folds already saved."""
    from lstmbt.backtest.checkpoint import open_checkpoint
    from lstmbt.backtest.data import describe_prices

    data = describe_prices(design.prices, config.data.source, config.data.symbol)
    models = [name for name, _, _ in horizon_plan(config)]
    return open_checkpoint(checkpoint, config, data, models, len(design.folds))


def score_run(design: Design, predictions: pd.DataFrame, folds: pd.DataFrame, config: RunConfig,
              timings: dict[str, float] | None = None, clock: float | None = None) -> RunResult:
    """The RunResult of out-of-sample ``predictions`` (as ``_predict_all`` makes them) on ``design``:
    positions, the backtest with costs, metrics, the fold table and the manifest.

    ``timings``/``clock``: the stage timings so far and the ``time.perf_counter()`` the run began at.
    The manifest's ``data_checks`` holds the data warnings, with the share of out-of-sample fill
    bars (those the returns are earned on) that open at the previous close.
    """
    from lstmbt.backtest.data import describe_prices
    from lstmbt.backtest.datacheck import data_warnings

    timings = dict(timings or {})
    started = time.perf_counter()
    scored = _score(design.prices, design, predictions, folds, config)
    timings["backtest_and_metrics"] = time.perf_counter() - started
    timings["total"] = _lap(started if clock is None else clock)
    positions = scored["positions"]
    checks = data_warnings(design.prices, config.data, oos_dates=scored["returns"].index,
                           execution=config.backtest.execution)
    manifest = _manifest(config, describe_prices(design.prices, config.data.source, config.data.symbol), positions,
                         len(design.folds), timings, run_warnings(scored["metrics"], positions), checks)
    return RunResult(config=config, predictions=predictions, manifest=manifest, **scored)


def _score(prices: pd.DataFrame, design: Design, predictions: pd.DataFrame, folds: pd.DataFrame,
           config: RunConfig) -> dict[str, Any]:
    """Positions, the backtest at the configured costs and across fee levels, metrics, fold figures,
    and the comparisons between strategies."""
    from lstmbt.backtest.headtohead import run_comparisons
    from lstmbt.backtest.portfolio import cost_sweep, run_backtest
    from lstmbt.backtest.scoring import by_model, fold_stats, horizon_of, majority_p_up, predicted_up

    dates = design.grid.dates[design.folds[0].test[0]:]
    direction = design.targets["classification"]
    majority = majority_p_up(direction, design.grid, design.folds)
    positions = make_positions(predictions, dates, config, majority, close=prices["Close"])
    backtest = run_backtest(prices, positions, config.backtest)
    realised = {h: (t["classification"].reindex(dates) > 0).to_numpy() for h, t in design.horizon_targets.items()}
    realised_up = realised[config.target.horizon]
    metrics = collect_metrics(predictions, positions, backtest, realised_up, config, majority, realised,
                              close=prices["Close"])
    models = by_model(predictions, dates)
    calls = {name: predicted_up(name, models, majority, config, dates) for name in models}
    per_model = {name: realised[horizon_of(name, config)] for name in models}
    return {"positions": positions, "returns": backtest.returns, "metrics": metrics, "trades": backtest.trades,
            "folds": fold_stats(folds, positions, backtest.returns, per_model, calls),
            "costs": cost_sweep(prices, positions, config.backtest),
            "comparisons": run_comparisons(predictions, backtest.returns, positions, config, close=prices["Close"]),
            "regimes": _regimes(prices["Close"], positions.index, backtest.returns,
                                {**calls, "majority": predicted_up("majority", models, majority, config, dates)},
                                per_model, realised_up, models, config)}


def _regimes(close: pd.Series, dates: pd.DatetimeIndex, returns: pd.DataFrame, calls: dict[str, Any],
             per_model: dict[str, np.ndarray], realised_up: np.ndarray, models: dict[str, pd.DataFrame],
             config: RunConfig) -> pd.DataFrame:
    """Every strategy's figures per regime known at the decision close (``backtest.regimes``); a
    model's hit rate leaves out the days it could not decide on, as its overall hit rate does."""
    from lstmbt.backtest.regimes import regime_labels, regime_table
    from lstmbt.backtest.scoring import undecided

    realised = {name: per_model.get(name, realised_up) for name in returns.columns}
    decided = {name: ~undecided(name, models, config, close) for name in models}
    return regime_table(returns.set_axis(dates), calls, realised, regime_labels(close, dates),
                        seed=config.train.seed, decided=decided)


def load_checked(config: RunConfig, *, folds: bool = True, positions: bool = True) -> pd.DataFrame:
    """Prices, refused early when too short for the warm-up, lookback, min_train and one test block,
    or when ``check_length``'s checks before training fail."""
    from lstmbt.backtest.data import load_prices

    return check_length(load_prices(config.data), config, folds=folds, positions=positions)


def check_length(prices: pd.DataFrame, config: RunConfig, *, folds: bool = True,
                 positions: bool = True) -> pd.DataFrame:
    """``prices`` unchanged, or a DataError when they are too short for ``config``'s warm-up,
    lookback, min_train, one test block and the label horizon; then the checks before training
    (``backtest.preflight``: device, memory, and with ``folds``/``positions`` the label classes of
    every fold and the confidence sizing's volatility history), each a one-line error. Suspect but
    usable prices (``backtest.datacheck.data_warnings``) raise a ``DataWarning`` each, so run,
    predict, importance, sweeps and universes all show them before any training."""
    import warnings

    from lstmbt.backtest.data import check_enough_rows
    from lstmbt.backtest.datacheck import data_warnings
    from lstmbt.backtest.errors import DataWarning
    from lstmbt.backtest.headtohead import check_pairs, planned_strategies
    from lstmbt.backtest.preflight import check_before_training
    from lstmbt.models.exog import exog_warmup_rows
    from lstmbt.models.features import warmup_rows

    warmup = max(warmup_rows(config.features.groups, config.features.n_lags), exog_warmup_rows(len(config.data.exog)))
    need, breakdown = _rows_needed(config, warmup)
    check_enough_rows(prices, need, breakdown, config.data.source)
    check_pairs(config.backtest.pairs, planned_strategies(config))  # before training, not after it
    check_before_training(prices, config, warmup, folds=folds, positions=positions)
    for message in data_warnings(prices, config.data):
        warnings.warn(message, DataWarning, stacklevel=3)  # at the caller of run / load_checked
    return prices


def make_design(prices: pd.DataFrame, config: RunConfig) -> Design:
    """Features, targets, the sample grid and the walk-forward folds that every model of a run shares."""
    # Imported only after loading, so bad input is reported before sklearn and torch load.
    from lstmbt.backtest.splits import WalkForwardSplit
    from lstmbt.backtest.walkforward import make_sample_grid
    from lstmbt.models.features import make_features
    from lstmbt.models.targets import make_target

    features = make_features(prices, config.features.groups, config.features.n_lags)
    if config.data.exog:  # as-of joined: day t sees only values stamped <= t - exog_lag_days (models.exog)
        from lstmbt.backtest.data import load_exogs
        from lstmbt.models.exog import exog_features

        features = features.join(exog_features(prices.index, load_exogs(config.data, prices.index),
                                               lag_days=config.data.exog_lag_days))
    split, horizons = config.target, config.target.all_horizons
    targets = {h: {"regression": make_target(prices, split.regression, h),
                   "classification": make_target(prices, "direction", h)} for h in horizons}
    # the longest horizon's labels end first: its grid gives every horizon the same sample days
    grid = make_sample_grid(features, targets[max(horizons)]["classification"], config.model.lookback)
    s = config.split
    folds = {h: WalkForwardSplit(min_train=s.min_train, step=s.step, horizon=h, scheme=s.scheme,
                                 val_fraction=s.val_fraction, embargo=s.embargo).split(grid.n) for h in horizons}
    primary = split.horizon
    return Design(prices=prices, features=features, targets=targets[primary], grid=grid, folds=folds[primary],
                  horizon_targets=targets, horizon_folds=folds)


def _predict_all(design: Design, config: RunConfig, report: Progress,
                 timings: dict[str, float], checkpoint: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Out-of-sample predictions of every model on the same folds, and the per-fold log.

    ``checkpoint``: each model saves and resumes its folds in ``checkpoint / <model name>``.
    """
    from lstmbt.backtest.walkforward import walk_forward_predict

    frames, logs, n_folds = [], [], len(design.folds)
    for name, task, h in horizon_plan(config):
        started = time.perf_counter()
        report(name, 0, n_folds)
        done = iter(range(1, n_folds + 1))
        estimator = build_estimator(task, config, linear=is_linear(name))
        preds, log = walk_forward_predict(estimator, design.features, design.horizon_targets[h][task], design.grid,
                                          design.horizon_folds[h],
                                          on_fold=lambda entry, name=name: report(name, next(done), n_folds),
                                          train_weight=training_weights(design, task, h, config),
                                          checkpoint_dir=None if checkpoint is None else Path(checkpoint) / name)
        preds.insert(1, "target", task)
        preds.insert(2, "model", name)
        preds.insert(3, "horizon", h)
        preds["close"] = design.prices["Close"].reindex(preds["date"]).to_numpy()
        frames.append(preds)
        logs.append(log.assign(model=name))
        timings[f"walkforward_{name}"] = time.perf_counter() - started
    folds = pd.concat(logs, ignore_index=True)
    return pd.concat(frames, ignore_index=True), folds[["model"] + [c for c in folds.columns if c != "model"]]


def training_weights(design: Design, task: str, horizon: int, config: RunConfig) -> pd.Series | None:
    """Training weights of a classifier with a dead zone (``target.dead_zone``), else None."""
    if task != "classification" or config.target.dead_zone <= 0:
        return None
    from lstmbt.models.targets import dead_zone_weights

    return dead_zone_weights(design.prices, horizon, config.target.dead_zone)


def build_estimator(task: str, config: RunConfig, linear: bool = False):
    """The unfitted estimator for ``task`` (``regression`` or ``classification``): the LSTM, or with
    ``linear`` the ridge/logistic baseline."""
    from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
    from lstmbt.models.specs import NetSpec, TrainSettings

    if linear:
        from lstmbt.models.linear import LogisticClassifier, RidgeRegressor

        alpha = config.model.linear_alpha
        refit = config.train.refit  # with early-stopped LSTMs refitted on fit + validation, the twins are too
        return (RidgeRegressor(alpha=alpha, refit=refit) if task == "regression"
                else LogisticClassifier(C=1.0 / alpha, refit=refit))

    cls = LSTMRegressor if task == "regression" else LSTMClassifier
    return cls(net=narrow(config.model, NetSpec), train=narrow(config.train, TrainSettings),
               device=config.train.device, random_state=config.train.seed, warm_start=config.train.warm_start)


def _rows_needed(config: RunConfig, warmup: int) -> tuple[int, str]:
    lookback, s, h = config.model.lookback, config.split, max(config.target.all_horizons)
    need = warmup + lookback - 1 + s.min_train + s.step + h
    breakdown = (f"{warmup} feature warm-up + {lookback - 1} more for the {lookback}-day lookback + "
                 f"{s.min_train} min_train + {s.step} for one test block + {h} label horizon")
    return need, breakdown


def _manifest(config: RunConfig, data: dict[str, Any], positions: pd.DataFrame, n_folds: int,
              timings: dict[str, float], warnings: list[str], data_checks: list[str] | None = None) -> dict[str, Any]:
    """The run's provenance. ``warnings`` lists a look-ahead suspicion first, then ``data_checks``
    (also kept on their own), then the other run warnings, so the report and CLI show them all."""
    from lstmbt.models.training import resolve_device

    data_checks = list(data_checks or [])
    alarms = [w for w in warnings if w.startswith("LOOK-AHEAD SUSPECTED")]  # stays the first thing said

    return {
        "lstmbt_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _VERSIONED},
        "seed": config.train.seed,
        "device": str(resolve_device(config.train.device)),
        "data": data,
        "out_of_sample": {"first_date": positions.index[0].date().isoformat(),
                          "last_date": positions.index[-1].date().isoformat(),
                          "days": int(len(positions)), "folds": n_folds},
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "data_checks": data_checks,
        "warnings": alarms + data_checks + [w for w in warnings if w not in alarms],
    }


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _lap(start: float) -> float:
    return time.perf_counter() - start


# --------------------------------------------------------------------------- run directories


def default_run_dir(source: str, root: str | Path = "runs") -> Path:
    """``runs/<source>-<UTC timestamp>``, with the source made filename-safe; ``-2``, ``-3``, ...
    appended while a run (or an interrupted one) of that name started in the same second exists."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source.replace(":", "-")).strip("-")[:60] or "run"
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = path = Path(root) / f"{slug}-{stamp}"
    n = 1
    while path.exists() or path.is_symlink() or path.with_name(f".{path.name}.partial").exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


@contextlib.contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``out_dir`` to write into, renamed to ``out_dir`` when the block ends
    without an error and removed when it fails, so no half-written run directory is left. Temporary
    siblings that killed processes left (``.NAME.tmp-PID``, the process gone) are removed first."""
    from lstmbt.backtest.partial import remove_stale_tmp

    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():  # a dangling link too: the rename would replace it
        raise ConfigError(f"output directory {out_dir} already exists; choose another --out or remove it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_run(result: RunResult, out_dir: str | Path) -> Path:
    """Write the run directory (RUN_FILES) atomically: into a temporary sibling, then rename."""
    from lstmbt.reports import render_report

    with staged_dir(out_dir) as tmp:
        (tmp / "config.toml").write_text(result.config.to_toml(), encoding="utf-8")
        write_json(tmp / "manifest.json", result.manifest)
        write_json(tmp / "metrics.json", result.metrics)
        write_json(tmp / "comparisons.json", result.comparisons)
        result.regimes.to_parquet(tmp / "regimes.parquet", index=False)
        result.predictions.to_parquet(tmp / "predictions.parquet", index=False)
        result.positions.to_parquet(tmp / "positions.parquet")
        result.returns.rename_axis("date").to_parquet(tmp / "returns.parquet")
        result.folds.to_parquet(tmp / "folds.parquet", index=False)
        result.costs.to_parquet(tmp / "costs.parquet", index=False)
        result.trades.to_parquet(tmp / "trades.parquet", index=False)
        (tmp / "report.html").write_text(render_report(result), encoding="utf-8")
    return Path(out_dir)


def load_run(run_dir: str | Path) -> RunResult:
    """Read a run directory written by ``save_run``.

    A missing, truncated or misshapen file is refused with one ``DataError`` line naming it. A run
    of an earlier version without ``comparisons.json`` gets its comparisons recomputed from its frames.
    """
    run_dir = Path(run_dir)
    missing = [name for name in RUN_FILES[:-1] if name not in OPTIONAL_FILES and not (run_dir / name).is_file()]
    if not run_dir.is_dir() or missing:
        if (run_dir / "manifest.json").is_file():
            read_json(run_dir / "manifest.json")  # a damaged manifest (a universe's too) is the problem to name
        what = "does not exist" if not run_dir.is_dir() else f"lacks {', '.join(missing)}"
        raise DataError(f"{run_dir} {what}; pass a directory written by this version of `lstmbt run` "
                        "(re-run older runs)")
    frames = {name: read_parquet(run_dir / f"{name}.parquet")
              for name in ("predictions", "positions", "returns", "folds", "costs", "trades")}
    config = read_config(run_dir / "config.toml")
    return RunResult(config=config, **frames, metrics=read_metrics(run_dir / "metrics.json"),
                     manifest=read_json(run_dir / "manifest.json"),
                     comparisons=_load_comparisons(run_dir / "comparisons.json", frames, config),
                     regimes=read_parquet(run_dir / "regimes.parquet") if (run_dir / "regimes.parquet").exists()
                     else pd.DataFrame())


def _load_comparisons(path: Path, frames: dict[str, pd.DataFrame], config: RunConfig) -> dict[str, Any]:
    """A saved ``comparisons.json`` (checked for shape), or, when a run of an earlier version has
    none, the comparisons recomputed from the run's frames (``run_comparisons``)."""
    from lstmbt.backtest.headtohead import comparisons_problem, run_comparisons
    from lstmbt.backtest.readback import DamagedFileError

    if not path.exists() and not path.is_symlink():
        return run_comparisons(frames["predictions"], frames["returns"], frames["positions"], config)
    payload = read_json(path)
    problem = comparisons_problem(payload)
    if problem:
        raise DamagedFileError(path, f"has an unexpected shape ({problem})")
    return payload


def write_json(path: Path, payload: Any) -> None:
    """``payload`` as strict, indented JSON (NaN/inf as null, numpy scalars as Python numbers)."""
    path.write_text(json_text(payload), encoding="utf-8")


def json_text(payload: Any) -> str:
    return json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n"


def _json_safe(value: Any) -> Any:
    """NaN/inf -> null and numpy scalars -> Python, so the JSON is strict and portable."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value
