"""Run configuration: one frozen, keyword-only dataclass per stage, read from TOML.

Precedence, lowest first: defaults, the ``--quick`` preset, the TOML file, CLI flags, ``--set``
(see ``RunConfig.resolve``).
Values are range-checked when a dataclass is built and type-checked when read from TOML, flags or
``--set``, so a bad value fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from lstmbt.backtest.checks import check_choice, check_date, check_range, did_you_mean
# the model, training and trading sections live in their own modules; importers find them here too
from lstmbt.backtest.config_models import MAX_SEED, MAX_SEEDS, ModelConfig, TrainConfig
from lstmbt.backtest.config_trading import BacktestConfig, PortfolioConfig, StrategyConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.splits import (DEFAULT_EMBARGO, DEFAULT_GROUPS, DEFAULT_SCHEME, DEFAULT_TEST_GROUPS,
                                    DEFAULT_VAL_FRACTION, MIN_FIT_SAMPLES, SCHEMES, WalkForwardSplit,
                                    first_fold_sizes, min_train_needed)
from lstmbt.models.specs import LAG_SCALES, PRICE_SCALES

FEATURE_GROUPS = ("returns", "ohlc", "volume", "ma", "rsi", "macd", "bollinger", "atr", "lags")
DEFAULT_FEATURE_GROUPS = ("returns", "ohlc", "volume", "ma", "rsi", "macd", "bollinger", "atr")
#: ``split.scheme`` values: the walk-forward's, and ``cpcv`` (an expanding walk-forward plus CPCV)
SPLIT_SCHEMES = SCHEMES + ("cpcv",)
#: most ``split.groups``, and most CPCV splits (C(groups, test_groups)), each training every model once
MAX_GROUPS = 16
MAX_SPLITS = 210


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where prices come from.

    ``source``: ``sample:sp500``, ``sample:nasdaq``, ``csv:PATH`` or ``fdr:TICKER``; or a universe of
    several tickers (``fdr:005930,000660``, ``sample:sp500,nasdaq``, ``list:PATH``, a long CSV without
    ``symbol``; see ``backtest.sources``).
    ``symbol``: the symbol to pick from a long-format CSV (one with a symbol column).
    ``start``/``end``: inclusive ISO dates that trim the data; ``None`` keeps everything.
    ``refresh``: bypass the FinanceDataReader cache and download again.
    ``exog``: exogenous series turned into return features (``models.exog``), each ``fdr:TICKER``
    (e.g. ``fdr:USD/KRW``, ``fdr:VIX``) or ``csv:PATH`` (a date column and a Close or Value
    column). Joined as of each price date: the value used on day t is the last one stamped <= t.
    ``exog_lag_days``: calendar days added to every exogenous date stamp before the join, i.e. a
    value stamped d is taken as known from d + lag. Use 1 for a series that is final only after the
    equity close of its stamp date (a US close or a Yahoo FX bar next to KRX prices).
    ``max_move``: the largest one-day close-to-close move accepted, as a fraction of the previous
    close in either direction (0.4 = +-40%: above KRX's +-30% daily limit, below the -50% of an
    unadjusted 2:1 split); a larger move refuses the data (see ``backtest.datacheck``).
    ``max_stale_bars``: warn when Close stays exactly unchanged for this many consecutive bars
    or more (a halt, or prices carried forward); 0 turns the warning off.
    """

    source: str = "sample:sp500"
    symbol: str | None = None
    start: str | None = None
    end: str | None = None
    refresh: bool = False
    exog: tuple[str, ...] = ()
    exog_lag_days: int = 0
    max_move: float = 0.4
    max_stale_bars: int = 5

    def __post_init__(self) -> None:
        if ":" not in self.source:
            raise ConfigError(
                f"data.source = {self.source!r} has no scheme; use sample:sp500, sample:nasdaq, csv:PATH or fdr:TICKER"
            )
        if not self.source.startswith("frame:"):  # frame:NAME records a DataFrame given to lstmbt.run(prices=...)
            check_choice("data.source scheme", self.source.split(":", 1)[0], ("sample", "csv", "fdr", "list"))
        check_date("data.start", self.start)
        check_date("data.end", self.end)
        if self.start and self.end and dt.date.fromisoformat(self.start) > dt.date.fromisoformat(self.end):
            raise ConfigError(f"data.start {self.start} is after data.end {self.end}; swap them or fix the range")
        _check_exog(self.exog)
        check_range("data.exog_lag_days", self.exog_lag_days, 0, 31)
        check_range("data.max_move", self.max_move, 0, low_open=True)
        if self.max_stale_bars != 0 and not 2 <= self.max_stale_bars <= 100_000:
            raise ConfigError(f"data.max_stale_bars = {self.max_stale_bars!r} is out of range; use a bar count "
                              ">= 2 (e.g. 5), or 0 to turn the stale-close warning off")

    @property
    def label(self) -> str:
        """What messages and the manifest call the prices: the DataFrame's name for ``frame:NAME``
        (``lstmbt.run(prices=..., name=...)``), else ``source``."""
        scheme, _, name = self.source.partition(":")
        return name if scheme == "frame" else self.source


def _check_exog(sources: tuple[str, ...]) -> None:
    """Each exogenous source is ``fdr:TICKER`` or ``csv:PATH``, listed once, with a distinct column name."""
    for source in sources:
        scheme, sep, rest = source.partition(":")
        if scheme not in ("fdr", "csv") or not sep or not rest.strip():
            raise ConfigError(f"data.exog entry {source!r} is not an exogenous source; write fdr:TICKER "
                              "(e.g. fdr:USD/KRW, fdr:VIX) or csv:PATH")
    if not sources:
        return
    from lstmbt.models.exog import exog_slug  # pandas only when exogenous series are asked for

    seen: dict[str, str] = {}
    for source in sources:
        other = seen.setdefault(exog_slug(source), source)
        if other != source or sources.count(source) > 1:
            raise ConfigError(f"data.exog lists {other!r} and {source!r}, which share the feature name "
                              f"exog_{exog_slug(source)}_*; list each series once (rename a CSV to tell them apart)")


@dataclass(frozen=True, kw_only=True)
class FeatureConfig:
    """Which causal feature groups the network sees (see ``models.features``).

    ``n_lags``: how many lagged closes the ``lags`` group adds (the seed's setup). ``lag_scale``:
    ``relative`` (default) gives each as log(close[t-k] / close[t]), k = 1..n_lags, relative to the
    decision day's close and so scale-free; ``level`` keeps the raw closes close[t-k], k = 0..n_lags-1,
    which a scaler fitted on training prices cannot carry to prices outside their range (the run
    then warns).
    """

    groups: tuple[str, ...] = DEFAULT_FEATURE_GROUPS
    n_lags: int = 10
    lag_scale: str = "relative"

    def __post_init__(self) -> None:
        if not self.groups:
            raise ConfigError(f"features.groups is empty; pick at least one of: {', '.join(FEATURE_GROUPS)}")
        for group in self.groups:
            check_choice("features.groups entry", group, FEATURE_GROUPS)
        if len(set(self.groups)) != len(self.groups):
            raise ConfigError(f"features.groups = {list(self.groups)} lists a group twice; list each once")
        check_range("features.n_lags", self.n_lags, 1, 500)
        check_choice("features.lag_scale", self.lag_scale, LAG_SCALES)


@dataclass(frozen=True, kw_only=True)
class TargetConfig:
    """What the models predict.

    ``task``: ``regression``, ``classification`` or ``both`` (two models on identical folds).
    ``regression``: ``return`` (log return over ``horizon`` days), ``price`` (close at t + horizon)
    ``week_mean`` (log of the mean close of the next 5 days over today's; needs horizon 5) or
    ``max_drawdown`` (the worst close-to-close log drop over the next h days, <= 0; it calls no
    direction, so its strategy is a risk filter, see ``strategy.drawdown_limit``).
    ``horizon``: label horizon h in trading days; the classification label is 1 if the h-day log
    return is > 0. ``horizons``: more horizons to run in the same run as separate models (for
    example ``[1, 5, 10]``), each with its own purge; the first must equal ``horizon``, whose
    models keep the plain names (``lstm_regression``), the others get ``_h<h>`` appended. Every
    horizon predicts the same test days. ``dead_zone``: a fraction of price (0.001 = 0.1%); training
    samples whose h-day log return is below it in absolute value get weight 0 in every classifier's
    training loss (validation and test days are still scored).
    ``price_scale``: how models see the ``price`` target. ``relative`` (default): each sample is
    expressed relative to its decision day's close, the model fits log(close[t+h] / close[t]) and
    its prediction p is mapped back to the price close[t] * exp(p) (reversible instance
    normalisation, as in RevIN), so a model fitted on one price range predicts any other.
    ``level``: the model fits close[t+h] itself, standardised on training prices, and cannot reach
    prices outside their range (the run then warns). Scores are in price units either way; pooled
    universe models always fit relative prices.
    """

    task: str = "both"
    regression: str = "return"
    horizon: int = 1
    dead_zone: float = 0.0
    horizons: tuple[int, ...] = ()
    price_scale: str = "relative"

    def __post_init__(self) -> None:
        check_choice("target.task", self.task, ("regression", "classification", "both"))
        check_choice("target.regression", self.regression, ("return", "price", "week_mean", "max_drawdown"))
        check_range("target.horizon", self.horizon, 1, 250)
        check_choice("target.price_scale", self.price_scale, PRICE_SCALES)
        if not 0.0 <= self.dead_zone < 0.5:  # NaN fails here too
            raise ConfigError(f"target.dead_zone = {self.dead_zone!r} is out of range; give a fraction of price "
                              ">= 0 and < 0.5, e.g. 0.001 for 0.1%")
        if self.regression == "week_mean" and self.horizon != 5:
            raise ConfigError(f"target.regression = 'week_mean' averages the next 5 closes, but target.horizon = "
                              f"{self.horizon}; set target.horizon = 5 (the label is known 5 days later)")
        self._check_horizons()

    def _check_horizons(self) -> None:
        if not self.horizons:
            return
        for h in self.horizons:
            check_range("target.horizons entry", h, 1, 250)
        if len(set(self.horizons)) != len(self.horizons):
            raise ConfigError(f"target.horizons = {list(self.horizons)} repeats a horizon; list each once")
        if self.horizons[0] != self.horizon:
            raise ConfigError(f"target.horizons starts with {self.horizons[0]} but target.horizon = {self.horizon}; "
                              f"set target.horizon = {self.horizons[0]} (the primary horizon) or list "
                              f"{self.horizon} first")
        if self.regression == "week_mean" and len(self.horizons) > 1:
            raise ConfigError("target.regression = 'week_mean' has one horizon (5 days); leave target.horizons empty")

    @property
    def all_horizons(self) -> tuple[int, ...]:
        """Every horizon of the run, the primary (``horizon``) first."""
        return self.horizons or (self.horizon,)

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("regression", "classification") if self.task == "both" else (self.task,)


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """Walk-forward folds, counted in samples (trading days with a full window and a label).

    ``scheme``: ``expanding`` keeps all history; ``rolling`` keeps the last ``min_train`` samples;
    ``cpcv`` runs the expanding walk-forward and, beside it, combinatorial purged cross-validation
    (``backtest.combinatorial``) over ``groups`` blocks with ``test_groups`` tested per split.
    ``min_train``: samples before the first test day. ``step``: test block length = bars between
    retrains. ``val_fraction``: share of the training window whose chronological tail is held out
    for early stopping (0 = no validation: every fold trains ``max_epochs``). ``embargo``: extra bars dropped between training and test beyond the purge.
    ``scheme``, ``val_fraction`` and ``embargo`` default to ``backtest.splits.WalkForwardSplit``'s.
    """

    scheme: str = DEFAULT_SCHEME
    min_train: int = 2520
    step: int = 21
    val_fraction: float = DEFAULT_VAL_FRACTION
    embargo: int = DEFAULT_EMBARGO
    groups: int = DEFAULT_GROUPS
    test_groups: int = DEFAULT_TEST_GROUPS

    def __post_init__(self) -> None:
        check_choice("split.scheme", self.scheme, SPLIT_SCHEMES)
        check_range("split.min_train", self.min_train, 20)
        check_range("split.step", self.step, 1)
        check_range("split.val_fraction", self.val_fraction, 0.0, 0.5, high_open=True)
        check_range("split.embargo", self.embargo, 0)
        check_range("split.groups", self.groups, 3, MAX_GROUPS)
        if not 1 <= self.test_groups < self.groups:
            raise ConfigError(f"split.test_groups = {self.test_groups} must be at least 1 and below split.groups "
                              f"({self.groups}); 2 of 6 gives 15 splits and 5 paths")
        splits = math.comb(self.groups, self.test_groups)
        if self.cpcv and splits > MAX_SPLITS:
            raise ConfigError(f"split.groups = {self.groups} with split.test_groups = {self.test_groups} makes {splits:,} "
                              f"CPCV splits, each training every model; at most {MAX_SPLITS} are allowed: lower either "
                              "(2 of 6 gives 15 splits and 5 paths)")

    @property
    def cpcv(self) -> bool:
        return self.scheme == "cpcv"

    def splitter(self, horizon: int, *, step: int | None = None) -> WalkForwardSplit:
        """The walk-forward splitter of these settings for labels ``horizon`` bars ahead (the purge);
        ``step`` replaces ``self.step`` (the test block length), e.g. for a final fold that ends at
        the last bar (``backtest.forecast.final_fold``). Under ``cpcv`` the walk-forward is expanding."""
        return WalkForwardSplit(min_train=self.min_train, step=self.step if step is None else step, horizon=horizon,
                                scheme="expanding" if self.cpcv else self.scheme, val_fraction=self.val_fraction,
                                embargo=self.embargo)

    def cpcv_splitter(self, horizon: int, reach: int):
        """The CPCV splitter (``backtest.combinatorial.CombinatorialPurgedSplit``) for labels ``horizon``
        bars ahead and inputs reading ``reach`` bars back (lookback - 1 + the feature warm-up)."""
        from lstmbt.backtest.combinatorial import CombinatorialPurgedSplit  # numpy: only when splits are built

        return CombinatorialPurgedSplit(groups=self.groups, test_groups=self.test_groups, horizon=horizon,
                                        reach=reach, embargo=self.embargo, val_fraction=self.val_fraction,
                                        val_gap=horizon + self.embargo)


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything a run needs; serialises to the run directory's ``config.toml``."""

    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    portfolio: PortfolioConfig = field(default_factory=PortfolioConfig)

    def __post_init__(self) -> None:
        if self.train.mode == "sequence" and (self.model.bidirectional or self.model.pooling != "last"):
            raise ConfigError("train.mode = 'sequence' reads the LSTM step by step, so it needs "
                              "model.bidirectional = false and model.pooling = 'last'; change one side")
        _check_fold_room(self.split, max(self.target.all_horizons))
        if self.train.frozen_twin and self.model.pooled:
            raise ConfigError("train.frozen_twin has no pooled model to twin (model.pooled = true trains one model "
                              "across the tickers); set train.frozen_twin = false, or model.pooled = false")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Build from nested ``{section: {key: value}}``; unknown or mistyped keys raise ConfigError."""
        return cls().with_values(_flatten(raw))

    @classmethod
    def from_saved(cls, raw: dict[str, Any]) -> RunConfig:
        """A config as a run directory or checkpoint saved it, perhaps by an earlier version: keys it
        lacks take what that version ran with (``fill_saved``). Its plug-ins stay names: nothing is
        imported (a command that trains with it calls ``check_plugins``)."""
        return cls().with_values(fill_saved(_flatten(raw)))

    @classmethod
    def from_toml(cls, path: str | Path, overrides: list[str] | None = None) -> RunConfig:
        """Defaults, then the TOML file at ``path``, then ``section.key=value`` overrides."""
        return cls.resolve(path=path, overrides=parse_overrides(overrides or []))

    @classmethod
    def resolve(cls, *, path: str | Path | None = None, preset: dict[str, Any] | None = None,
                flags: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
        """Layer, lowest first: defaults, ``preset``, the TOML file, CLI ``flags``, ``--set`` overrides.

        All layers are ``{"section.key": value}`` dicts except the file. They are merged before the
        config is built, so checks across sections (``RunConfig.__post_init__``) see the final values only.
        The config is one to train with: its plug-ins are imported and checked (``check_plugins``).
        """
        from_file = _flatten(read_toml(path)) if path is not None else {}
        config = cls().with_values({**(preset or {}), **from_file, **(flags or {}), **(overrides or {})})
        config.check_plugins()  # now, not after training
        return config

    def check_plugins(self) -> None:
        """Import and check every plug-in the config names (``model.custom``, ``strategy.custom``),
        from the environment and the folders ``backtest.plugins.plugin_folders`` names; a ConfigError
        line names the first that fails. For the commands that train: reading a config never calls it."""
        self.model.plugins  # noqa: B018 - resolving is the check
        if self.strategy.custom is not None:
            from lstmbt.backtest.plugins import resolve_strategy  # pandas only when a custom rule is named

            resolve_strategy(self.strategy.custom)

    def with_values(self, values: dict[str, Any]) -> RunConfig:
        """A copy with ``{"section.key": value}`` applied; values are type-checked and validated."""
        sections: dict[str, dict[str, Any]] = {}
        for dotted, value in values.items():
            section, key = _split_key(dotted)
            sections.setdefault(section, {})[key] = _coerce(dotted, value, _field_type(section, key))
        changed = {}
        for section, updates in sections.items():
            changed[section] = dataclasses.replace(getattr(self, section), **updates)
        return dataclasses.replace(self, **changed)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain dict; tuples become lists and ``None`` values are left out (TOML has no null)."""
        out: dict[str, dict[str, Any]] = {}
        for section in _SECTIONS:
            values = dataclasses.asdict(getattr(self, section))
            out[section] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None}
        return out

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


#: keys added after runs were saved whose default differs from what a run saved without them did:
#: a saved config that lacks one, and in which it acts (``_acts``), stands for this value
#: (``fill_saved``). Every other key added since defaults to the old behaviour (``train.warmup_steps = 0``...).
LEGACY_VALUES: dict[str, Any] = {"target.price_scale": "level", "features.lag_scale": "level",
                                 "portfolio.top_k": 2,  # 2 before 0 (a third of the universe) became the default
                                 # a warm epoch was kept only 2 standard errors better, before
                                 "train.warm_accept_z": 2.0}


def fill_saved(values: dict[str, Any]) -> dict[str, Any]:
    """A saved config's ``{"section.key": value}`` with the keys it lacks filled in: ``LEGACY_VALUES``
    where the key acts in that config (a price target, the lags group), else the default (keys whose
    default is None are left out, as ``RunConfig.to_dict`` leaves them). Two configs that fill to
    the same values run the same way."""
    defaults = {f"{section}.{key}": value for section, entries in RunConfig().to_dict().items()
                for key, value in entries.items()}
    legacy = {key: value for key, value in LEGACY_VALUES.items() if _acts(key, {**defaults, **values})}
    filled = {**defaults, **legacy, **values}
    if filled["model.lstm"] and not filled["model.families"]:  # such a run trained no network: lstm = false now
        filled["model.lstm"] = False
    return filled


def _acts(key: str, values: dict[str, Any]) -> bool:
    """Whether ``key`` changes what a run of ``values`` (every key present) computes."""
    if key == "target.price_scale":
        return values["target.regression"] == "price" and values["target.task"] != "classification"
    if key == "features.lag_scale":
        return "lags" in values["features.groups"]
    return True


def narrow(section: Any, base: type) -> Any:
    """The ``base`` dataclass part of a config section that extends it (``ModelConfig`` -> ``NetSpec``)."""
    return base(**{f.name: getattr(section, f.name) for f in dataclasses.fields(base)})


def _check_fold_room(split: SplitConfig, horizon: int) -> None:
    """The first fold (the smallest) keeps samples to fit on after the purge, the embargo and the
    validation tail, at the longest horizon; else one line naming the numbers."""
    gap = horizon + split.embargo
    n_fit, n_val = first_fold_sizes(split.min_train, gap, split.val_fraction)
    if n_fit >= MIN_FIT_SAMPLES:
        return
    val = f", minus a validation tail of {n_val} and a second purge of {gap}" if n_val else ""
    raise ConfigError(
        f"split.min_train = {split.min_train} leaves {max(n_fit, 0)} samples to fit the first fold on (fewer than "
        f"{MIN_FIT_SAMPLES}): a purge of {gap} bars (horizon {horizon} + split.embargo {split.embargo}){val}; "
        f"raise split.min_train to at least {min_train_needed(gap, split.val_fraction)}, or lower split.embargo, "
        "the horizon or split.val_fraction")


#: ``--quick``: a small model on yearly folds, for a look at the whole pipeline in seconds.
QUICK_PRESET: dict[str, Any] = {
    "split.min_train": 756,
    "split.step": 252,
    "model.lookback": 20,
    "model.hidden_size": 16,
    "model.num_layers": 1,
    "model.dropout": 0.0,
    "model.head": (),
    "train.max_epochs": 5,
    "train.patience": 2,
}

_SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(RunConfig)}  # type: ignore[misc]


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file, turning I/O and syntax problems into one-line ConfigErrors."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; check the path given to --config")
    if not path.is_file():
        raise ConfigError(f"config file {path} is not a file; pass a .toml file to --config")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}); fix the syntax at that spot") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror}); check its permissions") from None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["model.hidden_size=64", "data.source=csv:x.csv"]`` -> ``{"model.hidden_size": 64, ...}``.

    The value is read as a TOML literal (numbers, booleans, ``[1, 2]``, quoted strings); anything
    that is not valid TOML is taken as a bare string.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not key=value; write it like --set model.hidden_size=64")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        out[key.strip()] = value
    return out


def _flatten(raw: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown config section [{section}]{did_you_mean(section, _SECTIONS)}; "
                              f"sections are: {', '.join(_SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"config entry {section!r} must be a [{section}] table of keys, not a single value")
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    return flat


def _split_key(dotted: str) -> tuple[str, str]:
    section, _, key = dotted.partition(".")
    if section not in _SECTIONS:
        raise ConfigError(f"unknown config key '{dotted}'{did_you_mean(section, _SECTIONS)}; "
                          f"keys look like section.key with section one of: {', '.join(_SECTIONS)}")
    names = [f.name for f in dataclasses.fields(_SECTIONS[section])]
    if not key:
        raise ConfigError(f"config key '{dotted}' names the section [{section}], not one of its keys; "
                          f"write {section}.KEY=VALUE with KEY one of: {', '.join(names)}")
    if key not in names:
        full = [f"{section}.{n}" for n in names]
        raise ConfigError(f"unknown config key '{dotted}'{did_you_mean(dotted, full)}; "
                          f"[{section}] has: {', '.join(names)}")
    return section, key


def _field_type(section: str, key: str) -> Any:
    hints = typing.get_type_hints(_SECTIONS[section])
    return hints[key]


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _coerce(dotted: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field annotation; ints are accepted where floats are expected."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) and type(None) in args:
        if value is None:
            return None
        annotation = next(a for a in args if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        item_type = typing.get_args(annotation)[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{dotted} must be a list, e.g. {dotted}=[...], got {value!r}")
        return tuple(_coerce(f"{dotted} entry", v, item_type) for v in value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a bare ticker such as 1234 parses as a TOML integer
    if annotation is str and isinstance(value, (dt.date, dt.time)):
        return value.isoformat()  # start = 2015-01-01 unquoted is a TOML date, not a string
    if annotation is int and isinstance(value, bool) or not isinstance(value, annotation):
        raise ConfigError(f"{dotted} must be {_TYPE_WORDS[annotation]}, got {value!r}")
    return value


__all__ = ["RunConfig", "DataConfig", "FeatureConfig", "TargetConfig", "SplitConfig", "ModelConfig", "TrainConfig",
           "StrategyConfig", "BacktestConfig", "PortfolioConfig", "QUICK_PRESET", "FEATURE_GROUPS",
           "DEFAULT_FEATURE_GROUPS", "MAX_SEED", "MAX_SEEDS", "read_toml", "parse_overrides", "narrow", "fill_saved"]
