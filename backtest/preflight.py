"""Checks before any training: the plug-ins import, the device exists, the model fits in memory, the
strategy can size its first out-of-sample day, and every fold has both up and down labels to learn from.

Each failure is one ``ConfigError``/``DataError`` line naming the numbers and the fix. The checks
are arithmetic on the config and the price rows; torch is imported only to ask about a GPU
(``train.device = "cuda"``, or ``auto`` for a model too big to wave through).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lstmbt.backtest.config import RunConfig, narrow
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.models.exog import EXOG_WINDOWS
from lstmbt.models.features import make_features
from lstmbt.models.specs import NetSpec, TrainSettings, estimate_training_memory
from lstmbt.models.targets import make_target

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
    if config.model.lstm:
        check_memory(prices, config, warmup)


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
    n = len(prices) - max(config.target.all_horizons) - first
    for h in config.target.all_horizons:
        labels = make_target(prices, "direction", h).to_numpy()[first:first + n]
        for fold in config.split.splitter(h).split(n):
            ups = labels[fold.train]
            if len(ups) and ups.min() == ups.max():
                side = "up" if ups[0] > 0 else "down"
                dates = prices.index[first + fold.train[[0, -1]]]
                raise DataError(
                    f"fold {fold.index}'s {len(ups)} training labels at horizon {h} ({dates[0].date()} to "
                    f"{dates[1].date()}) are all {side}, so a classifier has nothing to learn; use a shorter "
                    "target.horizon, a larger split.min_train or an earlier data.start, or target.task = 'regression'")


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

