"""The sweep file of ``lstmbt sweep``: read it, check it, and expand it into trials.

A sweep file is TOML with three tables (see the README's "Sweeps")::

    [sweep]                     # how to search
    search = "grid"             # or "random"
    n_trials = 40               # random only: how many trials to draw
    seed = 0                    # random only: seeds the draws
    base = "config.toml"        # optional run config the trials start from (relative to this file)
    quick = false               # start from the --quick preset (below the base file)
    metric = "sharpe"           # ranking metric
    rank_by = "ensemble"        # or "seed_median": the metric's median over train.seeds
    strategies = []             # model strategies to rank (default: every model of the runs)
    pbo_blocks = 16             # CSCV blocks S for the probability of backtest overfitting
    [sweep.set]                 # fixed overrides of every trial, e.g. "data.source" = "sample:nasdaq"
    [params]                    # dotted run-config keys: a list of values, or (random) a range
    "model.lookback" = [20, 60]
    "backtest.fee_rate" = {low = 0.0, high = 0.002}

A trial is one combination of ``[params]`` values. Keys under ``strategy.*`` and ``backtest.*``
are signal-only: trials that differ only in them share one training trial (one trained run).
Everything here is pure except reading the two files; every trial's config is built and
checked before anything runs, so a bad value fails first.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from lstmbt.backtest.campaign.sweep_seeds import check_rank_by
from lstmbt.backtest.config import QUICK_PRESET, RunConfig, _split_key, read_toml
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.scoring import horizon_plan

SEARCHES = ("grid", "random")
#: ranking metrics, all "higher is better" (max_drawdown is negative: closer to 0 is better)
METRICS = ("sharpe", "sortino", "total_return", "cagr", "calmar", "max_drawdown", "hit_rate")
#: what a row is ranked by: its model's figure (a seed ensemble's mean prediction), or the median over its seeds
RANK_BY = ("ensemble", "seed_median")
SIGNAL_SECTIONS = ("strategy", "backtest")
#: [sweep] key -> (type, what to write)
SWEEP_KEYS: dict[str, tuple[type, str]] = {
    "search": (str, '"grid" or "random"'), "n_trials": (int, "an integer such as 40"),
    "seed": (int, "an integer such as 0"), "base": (str, 'a path such as "config.toml"'),
    "quick": (bool, "true or false"), "metric": (str, 'a metric name such as "sharpe"'),
    "strategies": (list, 'a list such as ["lstm_classification"]'), "pbo_blocks": (int, "an even integer such as 16"),
    "rank_by": (str, '"ensemble" or "seed_median"'),
    "set": (dict, 'a [sweep.set] table of "section.key" = value'),
}
RANGE_KEYS = ("low", "high", "log", "int")
MAX_TRIALS = 10_000


@dataclass(frozen=True, kw_only=True)
class Range:
    """Random search draws uniformly from [low, high]; log-uniformly with ``log``; integers with ``integer``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def draw(self, rng: np.random.Generator) -> float | int:
        """One value, from the local generator ``rng``."""
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high + (1 if self.integer else 0))))
            return min(int(math.floor(value)), int(self.high)) if self.integer else value
        return int(rng.integers(int(self.low), int(self.high) + 1)) if self.integer else float(rng.uniform(self.low,
                                                                                                          self.high))

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log, "int": self.integer}


Values = tuple[Any, ...] | Range


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A checked sweep file. ``base``: the run config every trial starts from (defaults, the quick
    preset, the base file and ``[sweep.set]`` already applied). ``params``: (dotted key, values or
    Range) in file order. ``strategies``: model strategies to rank; empty = every model. ``rank_by``:
    ``"ensemble"`` ranks a row by its figure, ``"seed_median"`` by the median of it over the seeds."""

    base: RunConfig
    params: tuple[tuple[str, Values], ...]
    search: str = "grid"
    n_trials: int | None = None
    seed: int = 0
    metric: str = "sharpe"
    strategies: tuple[str, ...] = ()
    pbo_blocks: int = 16
    rank_by: str = "ensemble"

    def to_toml(self, base_name: str = "base.toml") -> str:
        """The sweep file that reproduces this spec next to ``base_name`` (the base written as TOML)."""
        sweep: dict[str, Any] = {"search": self.search, "seed": self.seed, "base": base_name, "metric": self.metric,
                                 "strategies": list(self.strategies), "pbo_blocks": self.pbo_blocks,
                                 "rank_by": self.rank_by}
        if self.n_trials is not None:
            sweep["n_trials"] = self.n_trials
        params = {k: v.to_dict() if isinstance(v, Range) else [_plain(x) for x in v] for k, v in self.params}
        return tomli_w.dumps({"sweep": sweep, "params": params})


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One combination of parameter values; ``index`` is its place in the plan (0-based)."""

    index: int
    values: tuple[tuple[str, Any], ...]

    @property
    def signal_values(self) -> dict[str, Any]:
        return {k: v for k, v in self.values if is_signal_key(k)}

    @property
    def training_values(self) -> dict[str, Any]:
        return {k: v for k, v in self.values if not is_signal_key(k)}


@dataclass(frozen=True, kw_only=True)
class TrainingTrial:
    """One trained run shared by every trial that differs from it only in signal-only keys.

    ``name``: its directory under ``trials/`` (``t000-<first 8 hex of sha1(config TOML)>``).
    ``config``: the base with the training values (signal-only keys at their base values).
    """

    name: str
    config: RunConfig
    overrides: tuple[tuple[str, Any], ...]
    trials: tuple[Trial, ...]


def is_signal_key(key: str) -> bool:
    """Whether a dotted key only changes how predictions become trades (no retraining needed)."""
    return key.partition(".")[0] in SIGNAL_SECTIONS


# --------------------------------------------------------------------------- reading


def read_sweep(path: str | Path) -> SweepSpec:
    """Parse and check a sweep file; every problem is a ConfigError of one line naming the fix."""
    path = Path(path)
    raw = read_toml(path)
    for table in raw:
        if table not in ("sweep", "params"):
            raise ConfigError(f"sweep file {path}: unknown table [{table}]{_hint(table, ('sweep', 'params'))}; "
                              "a sweep file has [sweep], [sweep.set] and [params]")
    sweep = raw.get("sweep", {})
    if not isinstance(sweep, dict):
        raise ConfigError(f"sweep file {path}: 'sweep' must be a [sweep] table")
    options = _sweep_options(sweep, path)
    base = _base_config(options, path)
    spec = SweepSpec(base=base, params=_params(raw.get("params"), base, path), **_spec_fields(options))
    _check_search(spec, path)
    return spec


def _sweep_options(sweep: dict[str, Any], path: Path) -> dict[str, Any]:
    for key, value in sweep.items():
        if key not in SWEEP_KEYS:
            raise ConfigError(f"sweep file {path}: unknown [sweep] key '{key}'{_hint(key, SWEEP_KEYS)}; "
                              f"[sweep] has: {', '.join(SWEEP_KEYS)}")
        kind, example = SWEEP_KEYS[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"sweep file {path}: [sweep] {key} must be {example}, got {value!r}")
    for key, allowed in (("search", SEARCHES), ("metric", METRICS), ("rank_by", RANK_BY)):
        value = sweep.get(key, allowed[0])
        if value not in allowed:
            raise ConfigError(f"sweep file {path}: [sweep] {key} = {value!r} is not known{_hint(value, allowed)}; "
                              f"use one of: {', '.join(allowed)}")
    blocks = sweep.get("pbo_blocks", 16)
    if blocks < 2 or blocks % 2 or blocks > 24:
        raise ConfigError(f"sweep file {path}: [sweep] pbo_blocks = {blocks} must be even and between 2 and 24 "
                          "(C(S, S/2) splits); 16 is the usual choice")
    if sweep.get("seed", 0) < 0 or sweep.get("n_trials", 1) < 1:
        raise ConfigError(f"sweep file {path}: [sweep] seed must be >= 0 and n_trials >= 1")
    if not all(isinstance(s, str) for s in sweep.get("strategies", [])):
        raise ConfigError(f"sweep file {path}: [sweep] strategies must list strategy names as strings")
    return sweep


def _spec_fields(sweep: dict[str, Any]) -> dict[str, Any]:
    return {"search": sweep.get("search", "grid"), "n_trials": sweep.get("n_trials"), "seed": sweep.get("seed", 0),
            "metric": sweep.get("metric", "sharpe"), "strategies": tuple(sweep.get("strategies", ())),
            "pbo_blocks": sweep.get("pbo_blocks", 16), "rank_by": sweep.get("rank_by", "ensemble")}


def _base_config(sweep: dict[str, Any], path: Path) -> RunConfig:
    """Defaults < the quick preset < the base file < [sweep.set]."""
    base_path = None
    if "base" in sweep:
        base_path = (path.parent / sweep["base"]) if not Path(sweep["base"]).is_absolute() else Path(sweep["base"])
        if not base_path.is_file():
            raise ConfigError(f"sweep file {path}: [sweep] base = {sweep['base']!r} is not a file ({base_path}); "
                              "the path is relative to the sweep file")
    fixed = dict(_flat(sweep.get("set", {})))
    try:
        return RunConfig.resolve(path=base_path, preset=QUICK_PRESET if sweep.get("quick") else None, overrides=fixed)
    except ConfigError as exc:
        raise ConfigError(f"sweep file {path}: [sweep.set] or base: {exc}") from None


def _params(table: Any, base: RunConfig, path: Path) -> tuple[tuple[str, Values], ...]:
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"sweep file {path}: no [params] table; list at least one key to sweep, e.g. "
                          '"strategy.threshold" = [0.0, 0.001]')
    out = []
    for key, value in _flat(table):
        try:
            out.append((key, _param_values(key, value, base)))
        except ConfigError as exc:
            raise ConfigError(f"sweep file {path}: [params] {exc}") from None
    return tuple(out)


def _flat(table: dict[str, Any]) -> list[tuple[str, Any]]:
    """``{"a.b": v}`` and ``{"a": {"b": v}}`` (unquoted dotted keys in TOML) both as ``("a.b", v)``."""
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        if "." not in key and isinstance(value, dict) and not set(value) & set(RANGE_KEYS):
            items += [(f"{key}.{sub}", v) for sub, v in value.items()]
        else:
            items.append((key, value))
    return items


def _param_values(key: str, value: Any, base: RunConfig) -> Values:
    if key.partition(".")[0] == "data":
        _check_key(key)
        raise ConfigError(f"{key}: data.* keys cannot be swept (every trial shares one price history); put a fixed "
                          'value under [sweep.set] and run one sweep per data source')
    if key.partition(".")[0] == "portfolio":
        _check_key(key)
        raise ConfigError(f"{key}: portfolio.* keys only apply to universe runs, and a sweep runs one ticker; "
                          "drop it from [params]")
    if isinstance(value, dict):
        return _range(key, value, base)
    if not isinstance(value, list):
        _check_key(key)
        raise ConfigError(f"{key} = {value!r} must be a list of values to try, or a range {{low = .., high = ..}} "
                          "for random search; put a fixed value under [sweep.set]")
    if not value:
        _check_key(key)
        raise ConfigError(f"{key} is an empty list; give at least one value to try")
    for item in value:
        config = base.with_values({key: item})  # unknown key (with did-you-mean), wrong type or out of range
        if key in ("model.custom", "strategy.custom"):
            config.check_plugins()  # each plug-in imported now, not after the training trials
    if len({repr(_plain(v)) for v in value}) != len(value):
        raise ConfigError(f"{key} = {value!r} lists a value twice; list each once")
    return tuple(value)


def _check_key(key: str) -> None:
    """A ConfigError with did-you-mean when ``key`` is not a run-config key (backtest.config's check)."""
    _split_key(key)


def _range(key: str, value: dict[str, Any], base: RunConfig) -> Range:
    _check_key(key)
    extra = set(value) - set(RANGE_KEYS)
    if extra or not {"low", "high"} <= set(value):
        raise ConfigError(f"{key} = {value!r} is not a range; write {{low = 0.0, high = 0.002}} (optional log = true, "
                          "int = true)")
    low, high = value["low"], value["high"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    flags = all(isinstance(value.get(f, False), bool) for f in ("log", "int"))
    if not numbers or not flags or not low < high or (value.get("log") and low <= 0):
        raise ConfigError(f"{key} = {value!r}: a range needs numbers low < high (low > 0 with log = true) and "
                          "true/false for log and int")
    spec = Range(low=low, high=high, log=value.get("log", False), integer=value.get("int", False))
    if spec.integer and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{key}: an int range needs whole numbers for low and high, got {low!r} and {high!r}")
    for probe in (spec.low, spec.high, (spec.low + spec.high) / 2 if not spec.integer else int(spec.low)):
        try:
            base.with_values({key: int(probe) if spec.integer else float(probe)})
        except ConfigError as exc:
            hint = " (add int = true for an integer key)" if "must be an integer" in str(exc) else ""
            raise ConfigError(f"{exc}{hint}") from None
    return spec


def _check_search(spec: SweepSpec, path: Path) -> None:
    ranges = [k for k, v in spec.params if isinstance(v, Range)]
    if spec.search == "grid" and ranges:
        raise ConfigError(f"sweep file {path}: [params] {ranges[0]} is a range, which only random search can draw "
                          'from; list the values to try, or set search = "random" in [sweep]')
    if spec.search == "grid" and spec.n_trials is not None:
        raise ConfigError(f"sweep file {path}: [sweep] n_trials applies to random search only; drop it, or set "
                          'search = "random"')
    if spec.search == "random" and spec.n_trials is None:
        raise ConfigError(f'sweep file {path}: search = "random" needs n_trials in [sweep] (how many trials to draw), '
                          "e.g. n_trials = 40")


def _hint(name: str, options: Any) -> str:
    hint = difflib.get_close_matches(str(name), list(options), n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------- planning


def expand_trials(spec: SweepSpec) -> list[Trial]:
    """Every trial of the spec, in plan order: the grid's product (last key fastest), or ``n_trials``
    random draws (seeded by ``spec.seed``; a combination drawn twice is kept once, so there may be
    fewer trials than draws: the counts sentence says how many repeated)."""
    keys = [k for k, _ in spec.params]
    if spec.search == "grid":
        sizes = math.prod(len(v) for _, v in spec.params)  # type: ignore[arg-type]
        if sizes > MAX_TRIALS:
            raise ConfigError(f"the grid has {sizes} trials, more than {MAX_TRIALS}; list fewer values or use "
                              'search = "random" with n_trials')
        combos = list(itertools.product(*(v for _, v in spec.params)))
    else:
        if spec.n_trials > MAX_TRIALS:  # type: ignore[operator]
            raise ConfigError(f"n_trials = {spec.n_trials} is more than {MAX_TRIALS}; draw fewer trials")
        rng = np.random.default_rng(spec.seed)
        draws = [tuple(v.draw(rng) if isinstance(v, Range) else v[int(rng.integers(len(v)))] for _, v in spec.params)
                 for _ in range(spec.n_trials)]  # type: ignore[arg-type]
        distinct: dict[tuple[str, ...], tuple[Any, ...]] = {}
        for combo in draws:  # by each value's repr: list values (model.head = [8]) are not hashable
            distinct.setdefault(tuple(repr(_plain(v)) for v in combo), combo)
        combos = list(distinct.values())
    return [Trial(index=i, values=tuple(zip(keys, combo))) for i, combo in enumerate(combos)]


def plan_sweep(spec: SweepSpec) -> list[TrainingTrial]:
    """The training trials of ``spec``, each with its trials, in order of first appearance.

    Every trial's full config is built here, so a bad combination (e.g. a cross-key rule) fails
    before any work. A sweep needs at least two trials.
    """
    trials = expand_trials(spec)
    if len(trials) < 2:
        raise ConfigError("the sweep has 1 trial; list at least two values of some [params] key (a single run is "
                          "`lstmbt run`)")
    groups: dict[tuple[tuple[str, str], ...], list[Trial]] = {}
    for trial in trials:
        try:
            spec.base.with_values(dict(trial.values))
        except ConfigError as exc:
            raise ConfigError(f"trial {_describe(trial.values)}: {exc}") from None
        groups.setdefault(tuple((k, repr(_plain(v))) for k, v in trial.training_values.items()), []).append(trial)
    plan = []
    for number, members in enumerate(groups.values()):
        overrides = tuple(members[0].training_values.items())
        config = spec.base.with_values(dict(overrides))
        digest = hashlib.sha1(config.to_toml().encode("utf-8")).hexdigest()[:8]
        plan.append(TrainingTrial(name=f"t{number:03d}-{digest}", config=config, overrides=overrides,
                                  trials=tuple(members)))
    _check_strategies(spec, plan)
    check_rank_by(spec.rank_by, [t.config for t in plan])
    return plan


def _check_strategies(spec: SweepSpec, plan: list[TrainingTrial]) -> None:

    known = list(dict.fromkeys(key.name for t in plan for key in horizon_plan(t.config)))
    for name in spec.strategies:
        if name not in known:
            raise ConfigError(f"[sweep] strategies lists {name!r}, which no trial runs{_hint(name, known)}; "
                              f"the trials' model strategies are: {', '.join(known)}")


def _describe(values: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{k}={_plain(v)!r}" for k, v in values)


def override_args(values: dict[str, Any]) -> list[str]:
    """``--set key=value`` arguments (TOML literals) that reproduce ``values`` in ``lstmbt run``."""
    args = []
    for key, value in values.items():
        literal = tomli_w.dumps({"v": _plain(value)}).strip()[len("v = "):]
        args += ["--set", f"{key}={literal}"]
    return args


__all__ = ["SweepSpec", "Range", "Trial", "TrainingTrial", "read_sweep", "expand_trials", "plan_sweep",
           "is_signal_key", "override_args", "METRICS", "RANK_BY", "SEARCHES", "SIGNAL_SECTIONS", "SWEEP_KEYS"]
