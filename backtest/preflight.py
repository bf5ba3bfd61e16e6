"""Checks before any training: the plug-ins import, the device exists, the model fits in memory, the
strategy can size its first out-of-sample day, every fold has both up and down labels (and, with a
dead zone, a sample of weight above 0) to learn from, every CPCV split has enough samples to fit
on, and a forecast (``lstmbt predict``) is of one horizon.

Each failure is one ``ConfigError``/``DataError`` line naming the numbers and the fix. The checks
are arithmetic on the config and the price rows; torch is imported only to ask about a GPU
(``train.device = "cuda"``, or ``auto`` for a model too big to wave through).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lstmbt.backtest.config import MAX_GROUPS, MAX_SPLITS, RunConfig, SplitConfig, narrow
from lstmbt.backtest.errors import ConfigError, DataError, DataWarning
from lstmbt.models.exog import EXOG_WINDOWS
from lstmbt.models.features import make_features
from lstmbt.backtest.splits import MIN_FIT_SAMPLES, first_fold_sizes
from lstmbt.models.specs import NetSpec, TrainSettings, estimate_training_memory
from lstmbt.models.targets import dead_zone_weights, make_target

#: a model whose estimated peak is below this fits any machine: no memory or GPU query is made
MEMORY_FLOOR_BYTES = 512 * 2**20
GIB = 2**30


def check_before_training(prices: pd.DataFrame, config: RunConfig, warmup: int, *, folds: bool = True,
                          positions: bool = True) -> None:
    """Refuse ``config`` on ``prices`` (already checked long enough) before any training.

    ``warmup``: leading rows without features. ``folds``: the walk-forward folds are trained
    (``run``, ``importance``), so each needs both label classes. ``positions``: the strategy is
    scored (``run``), so confidence sizing needs a trailing volatility on the first test day.
    """
    config.check_plugins()  # a config built in code or read from a run folder has imported none
    check_device(config.train.device)
    if folds:
        check_label_classes(prices, config, warmup)
    if positions:
        check_vol_history(prices, config, warmup)
    if folds and positions and config.split.cpcv:  # a run scores the CPCV paths after its walk-forward
        check_cpcv(prices, config, warmup)
    if config.model.lstm:
        check_memory(prices, config, warmup)


def check_one_horizon(config: RunConfig) -> None:
    """A forecast is of one horizon (its models, its strategy's next order): several
    ``target.horizons`` are refused with one line naming the runs that forecast each."""
    horizons = config.target.all_horizons
    if len(horizons) > 1:
        raise ConfigError(f"lstmbt predict forecasts one horizon, but target.horizons = {list(horizons)} lists "
                          f"{len(horizons)}; forecast each on its own with --set target.horizons=[] --set "
                          f"target.horizon=H, for H in {', '.join(map(str, horizons))}")


def check_device(device: str) -> None:
    """``train.device = "cuda"`` on a machine where torch sees no CUDA GPU is one line, not a traceback."""
    if device != "cuda":
        return
    import torch  # only for an explicit cuda request; cpu and auto stay cheap

    if not torch.cuda.is_available():
        build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ConfigError(f"train.device = 'cuda' but torch ({torch.__version__}, {build}) sees no CUDA GPU on "
                          "this machine; set train.device = 'auto' (uses a GPU when there is one) or 'cpu'")


def first_test_row(config: RunConfig, warmup: int) -> int:
    """Row of the first out-of-sample day in the price frame: warm-up, lookback, then min_train samples."""
    return warmup + config.model.lookback - 1 + config.split.min_train


def check_vol_history(prices: pd.DataFrame, config: RunConfig, warmup: int) -> None:
    """Under confidence sizing (a regression model) or a ``strategy.vol_target`` (every strategy), the
    first out-of-sample day must have a trailing volatility: ``strategy.vol_window`` daily returns
    before it (``strategies.trailing_volatility``).

    Without one the model would sit flat, not by choice, on its first out-of-sample days; the
    run is refused instead of scoring those days (positions never look ahead to fill it).
    """
    s, target = config.strategy, config.target
    sized = s.sizing == "confidence" and "regression" in target.tasks and target.regression != "max_drawdown"
    if not (sized or s.vol_target):
        return
    row = first_test_row(config, warmup)
    if row >= s.vol_window:
        return
    day = prices.index[min(row, len(prices) - 1)].date()
    blind = min(s.vol_window, len(prices) - max(target.all_horizons)) - row  # out-of-sample days without one
    who = "its regression models" if not s.vol_target else "strategy.vol_target"
    raise ConfigError(
        f"strategy.vol_window = {s.vol_window} needs {s.vol_window} daily returns before a decision, but the first "
        f"out-of-sample day ({day}, row {row} of {config.data.label}) has only {row}, so {who} "
        f"could not size a position on {blind} out-of-sample days; lower "
        f"strategy.vol_window to at most {row}, or give more history before the first test day (an earlier "
        "data.start or a larger split.min_train)")


def check_label_classes(prices: pd.DataFrame, config: RunConfig, warmup: int) -> None:
    """Every fold of a classifier fits on both up and down labels, at every horizon of the run.

    The sample grid is rebuilt from the rows (``warmup`` + lookback, then labelled rows up to the
    longest horizon), as ``backtest.pipeline.make_design`` lays it out for clean data.
    """
    if "classification" not in config.target.tasks:
        return

    first = warmup + config.model.lookback - 1
    n = _n_samples(prices, config, warmup)
    for h in config.target.all_horizons:
        labels = make_target(prices, "direction", h).to_numpy()[first:first + n]
        if config.target.dead_zone > 0:
            check_fold_weights(prices, config, first, n, h)
        for fold in config.split.splitter(h).split(n):
            ups = labels[fold.train]
            if len(ups) and ups.min() == ups.max():
                side = "up" if ups[0] > 0 else "down"
                dates = prices.index[first + fold.train[[0, -1]]]
                raise DataError(
                    f"fold {fold.index}'s {len(ups)} training labels at horizon {h} ({dates[0].date()} to "
                    f"{dates[1].date()}) are all {side}, so a classifier has nothing to learn; use a shorter "
                    "target.horizon, a larger split.min_train or an earlier data.start, or target.task = 'regression'")


def check_fold_weights(prices: pd.DataFrame, config: RunConfig, first: int, n: int, h: int) -> None:
    """Every fold of a classifier with a dead zone (``target.dead_zone``) fits on at least one
    sample of weight above 0 at horizon ``h``; ``first``/``n``: the sample grid's first row and size."""
    weights = dead_zone_weights(prices, h, config.target.dead_zone).to_numpy(dtype=np.float64)[first:first + n]
    for fold in config.split.splitter(h).split(n):
        w = weights[fold.train]
        if len(w) and np.isfinite(w).all() and not (w > 0).any():
            dates = prices.index[first + fold.train[[0, -1]]]
            raise DataError(
                f"fold {fold.index}'s {len(w)} training samples at horizon {h} ({dates[0].date()} to "
                f"{dates[1].date()}) all move less than target.dead_zone = {config.target.dead_zone:g}, so each has "
                "weight 0 and a classifier has nothing to learn; lower target.dead_zone")


def check_cpcv(prices: pd.DataFrame, config: RunConfig, warmup: int) -> None:
    """Every CPCV split (``split.scheme = "cpcv"``) fits on enough samples, checked before the
    walk-forward: ``cpcv_note``'s refusal, or its caution as a ``DataWarning``."""
    note = cpcv_note(prices, config, warmup)
    if note:
        warnings.warn(note, DataWarning, stacklevel=5)  # at the caller of run / load_checked


def cpcv_note(prices: pd.DataFrame, config: RunConfig, warmup: int) -> str | None:
    """The caution about a CPCV run's smallest split, None when it has none; refuses one too small.

    Refused (``ConfigError``): a split with fewer samples to fit on than ``cpcv_floor`` (features
    + 2: a linear model of the features and an intercept fits up to features + 1 labels exactly,
    and a network more); the line names settings that would work. Cautioned: a split fitting on
    fewer samples than the walk-forward's first fold, the least history the run's own
    ``split.min_train`` lets a model learn from.
    """
    n, reach, h = _n_samples(prices, config, warmup), config.model.lookback - 1 + warmup, config.target.horizon
    splitter = config.split.cpcv_splitter(h, reach)
    fit, index, tested = splitter.smallest_fit(n)
    floor, n_features = cpcv_floor(prices, config)
    where = (f"split.scheme = 'cpcv': split {index} (test groups {list(tested)} of {config.split.groups}) fits on "
             f"{max(fit, 0)} of {n} samples after the purge ({h}), the embargo ({splitter.embargo_after}) and the "
             "validation tail")
    if fit < floor:
        raise ConfigError(f"{where}, fewer than {floor}: a linear model of the {n_features} features a sample carries "
                          f"and an intercept fits up to {n_features + 1} training labels exactly (a network more); "
                          f"{_cpcv_fixes(config.split, h, reach, n, floor)}")
    walk = first_fold_sizes(config.split.min_train, h + config.split.embargo, config.split.val_fraction)[0]
    if fit >= walk:
        return None
    return (f"{where}, fewer than the {walk} the walk-forward's first fold fits on (split.min_train = "
            f"{config.split.min_train}), so its paths and PBO score models trained on less history than the run "
            f"itself allows; {_cpcv_fixes(config.split, h, reach, n, walk)}")


def cpcv_floor(prices: pd.DataFrame, config: RunConfig) -> tuple[int, int]:
    """(fewest samples a CPCV split may fit on, feature columns): more than a linear model of the
    features and an intercept can fit exactly, features + 2."""
    n_features = _n_features(prices, config)
    return max(MIN_FIT_SAMPLES, n_features + 2), n_features


def _cpcv_fixes(split: SplitConfig, horizon: int, reach: int, n: int, need: int) -> str:
    """The settings, one change each, whose smallest split fits on ``need`` samples, as a fix in words."""
    def fits(**change: int) -> bool:
        return split_fit(dataclasses.replace(split, **change), horizon, reach, n) >= need

    k, g = split.test_groups, split.groups
    fixes = [f"split.test_groups = {t}" for t in range(k - 1, 0, -1)
             if math.comb(g, t) <= MAX_SPLITS and fits(test_groups=t)][:1]
    fixes += [f"split.groups = {c}" for c in range(g + 1, min(MAX_GROUPS, n // 2) + 1)
              if math.comb(c, k) <= MAX_SPLITS and fits(groups=c)][:1]
    if split.embargo and fits(embargo=0):
        low, high = 0, split.embargo  # fits at low, not at high: the longest embargo that fits is in between
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if fits(embargo=mid) else (low, mid)
        fixes.append(f"split.embargo = {low}")
    if not fixes:
        return "no change of split.groups, split.test_groups or split.embargo alone is enough: use more data " \
               "(an earlier data.start) or split.scheme = 'expanding'"
    return "use " + " or ".join(fixes) + " (or more data)"


def split_fit(split: SplitConfig, horizon: int, reach: int, n: int) -> int:
    """Samples the smallest CPCV split of ``split`` fits on, over ``n`` samples."""
    return split.cpcv_splitter(horizon, reach).smallest_fit(n)[0]


def _n_samples(prices: pd.DataFrame, config: RunConfig, warmup: int) -> int:
    """Samples of the run's grid (``walkforward.make_sample_grid`` on clean data): rows after the
    warm-up and the lookback whose label at the longest horizon is realised."""
    return len(prices) - max(config.target.all_horizons) - (warmup + config.model.lookback - 1)


def check_memory(prices: pd.DataFrame, config: RunConfig, warmup: int) -> None:
    """Refuse an LSTM whose estimated training peak (``models.specs.estimate_training_memory``)
    exceeds the memory available on the device it would train on."""
    n_samples = len(prices) - warmup - config.model.lookback + 1
    estimate = estimate_training_memory(_n_features(prices, config), n_samples, config.model.lookback,
                                        narrow(config.model, NetSpec), narrow(config.train, TrainSettings))
    if estimate.peak_bytes < MEMORY_FLOOR_BYTES:
        return
    available, where = device_memory(config.train.device)
    if available is None or estimate.peak_bytes <= available:
        return
    m, t = config.model, config.train
    raise ConfigError(
        f"model.hidden_size = {m.hidden_size} with model.num_layers = {m.num_layers} is {_count(estimate.n_params)} "
        f"parameters, about {estimate.peak_bytes / GIB:.1f} GiB at peak in training (weights, gradients and "
        f"optimizer state {estimate.param_bytes / GIB:.1f} GiB, activations {estimate.activation_bytes / GIB:.1f} "
        f"GiB for {estimate.batch} {estimate.unit}); {where} has {available / GIB:.1f} GiB available; lower "
        f"model.hidden_size or model.num_layers, or train.batch_size, train.chunks_per_batch, train.chunk_len or "
        f"model.lookback (train.mode = {t.mode!r})")


def _count(n: int) -> str:
    """2081685602 -> ``2.08e9``."""
    return f"{n:.3g}".replace("e+0", "e").replace("e+", "e")


def _n_features(prices: pd.DataFrame, config: RunConfig) -> int:
    """Feature columns the network sees: ``make_features`` on the first rows, plus the exogenous returns."""
    head = prices.iloc[:64]
    f = config.features
    return make_features(head, f.groups, f.n_lags, f.lag_scale).shape[1] + \
        len(EXOG_WINDOWS) * len(config.data.exog)


def device_memory(device: str) -> tuple[int | None, str]:
    """(bytes free for training, what was asked) on the device ``device`` resolves to; None if unknown.

    ``cpu``: ``host_memory_available``. ``cuda``, or ``auto`` on a machine with a GPU: the free
    memory torch reports for the current GPU.
    """
    if device != "cpu":
        import torch  # asked only for a model too big to wave through

        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return int(free), f"GPU {torch.cuda.get_device_name()}"
    return host_memory_available(), "this machine (MemAvailable, within any cgroup memory limit)"


def host_memory_available() -> int | None:
    """Bytes this process may still allocate: MemAvailable, capped by a cgroup (v2 or v1) memory
    limit minus its usage; None where /proc/meminfo is missing (not Linux)."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        available = next(int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    room = _cgroup_room()
    return available if room is None else min(available, room)


def _cgroup_room() -> int | None:
    """Limit minus usage of this process's memory cgroup, or None when it has no limit."""
    try:
        entries = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()]
    except OSError:
        return None
    for hierarchy, controllers, path in (e for e in entries if len(e) == 3):
        if hierarchy == "0" and not controllers:  # v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            names = ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):  # v1
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        try:
            limit, usage = ((base / name).read_text().strip() for name in names)
            if limit != "max" and int(limit) < 2**60:  # v1 writes a huge number for "no limit"
                return max(0, int(limit) - int(usage))
        except (OSError, ValueError):
            continue
    return None

