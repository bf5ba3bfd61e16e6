"""The model and training sections of a run's config: ``[model]`` and ``[train]`` (``backtest.config``)."""

from __future__ import annotations

from dataclasses import dataclass

from lstmbt.backtest.checks import check_choice, check_range
from lstmbt.backtest.errors import ConfigError
from lstmbt.models.key import BASE_NAMES
from lstmbt.models.plugins import Plugin, PluginError, check_spec, resolve_plugin
from lstmbt.models.specs import (DEFAULT_DEVICE, DEFAULT_LINEAR_ALPHA, DEFAULT_SEED, DEVICES, LR_SCALINGS,
                                 NETWORK_FAMILIES, RECURRENT_FAMILIES, TRAIN_MODES, NetSpec, TrainSettings)


@dataclass(frozen=True, kw_only=True)
class ModelConfig(NetSpec):
    """The models of a run: the network settings (``models.specs.NetSpec``), ``lookback`` (the
    window length L in days), and which estimators run on the same folds.

    ``families``: the network families, each trained in both targets on the same windows, folds,
    purge, scaling and training settings (``lstm``, ``gru``, ``transformer``, ``tcn``; see
    ``models.networks``). ``lstm``: false turns every network family off (the key predates
    ``families``). ``lightgbm``: run LightGBM regression and classification on the decision day's
    features (``models.trees``). ``custom``: a user's own estimators, each a dotted path
    ``package.module:Class`` or a name given to ``lstmbt.register_model`` (``models.plugins``);
    their syntax is checked here, their import and protocol by ``plugins``
    (``RunConfig.check_plugins``), only for a command that trains, so a saved config imports
    nothing. ``linear``: run the linear baselines beside them (ridge for regression, logistic for
    classification, on the decision day's features). ``linear_alpha``: their L2 penalty (ridge
    ``alpha``; logistic ``C = 1 / linear_alpha``). ``pooled``: in a universe of several tickers,
    train one model per model name and fold on the training samples of all tickers together
    (``backtest.pooled``) instead of one model per ticker; pooled fits always run in ``window``
    training mode (pooled windows are not one series).
    """

    lookback: int = 60
    families: tuple[str, ...] = ("lstm",)
    lstm: bool = True
    linear: bool = True
    linear_alpha: float = DEFAULT_LINEAR_ALPHA
    lightgbm: bool = False
    custom: tuple[str, ...] = ()
    pooled: bool = False

    def __post_init__(self) -> None:
        self._check_families()
        if not (self.networks or self.linear or self.lightgbm or self.custom):
            raise ConfigError("model.lstm, model.linear and model.lightgbm are false and model.custom is empty, so "
                              "nothing would be trained; set one of them")
        if not isinstance(self.pooled, bool):
            raise ConfigError(f"model.pooled must be true or false, got {self.pooled!r}")
        check_range("model.linear_alpha", self.linear_alpha, 1e-12, 1e12)
        check_range("model.lookback", self.lookback, 2, 1000)
        check_range("model.hidden_size", self.hidden_size, 1, 4096)
        check_range("model.num_layers", self.num_layers, 1, 16)
        check_range("model.dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_choice("model.pooling", self.pooling, ("last", "mean"))
        for size in self.head:
            check_range("model.head entry", size, 1, 4096)
        check_range("model.heads", self.heads, 1, 64)
        if "transformer" in self.networks and self.hidden_size % self.heads:
            raise ConfigError(f"model.heads = {self.heads} does not divide model.hidden_size = {self.hidden_size}; "
                              "the transformer splits its width into equal heads (try heads = 4 or 1)")
        for spec in self.custom:  # the syntax only: importing is for the commands that train (``plugins``)
            try:
                check_spec(spec)
            except PluginError as exc:
                raise ConfigError(str(exc)) from None

    def _check_families(self) -> None:
        for family in self.families:
            check_choice("model.families entry", family, NETWORK_FAMILIES)
        if len(set(self.families)) != len(self.families):
            raise ConfigError(f"model.families = {list(self.families)} lists a family twice; list each once")
        if self.lstm and not self.families:
            raise ConfigError(f"model.families is empty while model.lstm = true, so no network would be trained; "
                              f"list at least one of {', '.join(NETWORK_FAMILIES)}, or set model.lstm = false "
                              "to train none")
        if self.bidirectional and any(f not in RECURRENT_FAMILIES for f in self.networks):
            raise ConfigError("model.bidirectional applies to the lstm and gru families only; set it to false or "
                              "drop transformer/tcn from model.families")

    @property
    def networks(self) -> tuple[str, ...]:
        """The network families the run trains: ``families``, or none when ``lstm`` is false."""
        return self.families if self.lstm else ()

    @property
    def plugins(self) -> tuple[Plugin, ...]:
        """The resolved ``custom`` entries, imported now (``models.plugins.resolve_plugin``); a ConfigError
        names one that fails to import or breaks the protocol. Only a command that trains asks."""
        try:
            plugins = tuple(resolve_plugin(spec) for spec in self.custom)
        except PluginError as exc:
            raise ConfigError(str(exc)) from None
        names = [p.name for p in plugins]
        twice = next((n for n in names if names.count(n) > 1 or n in BASE_NAMES.values()), None)
        if twice:
            raise ConfigError(f"model.custom entry {plugins[names.index(twice)].spec!r} would be named {twice!r}, "
                              "which another model of the run has; name it yourself, e.g. "
                              f"'my{twice.split('_')[0]}={plugins[names.index(twice)].spec.rpartition('=')[2]}'")
        return plugins


#: the largest ``train.seed``: numpy's legacy seed range is 0 .. 2**32 - 1
MAX_SEED = 2**32 - 1
#: most seeds ``train.seeds`` may list (each trains every LSTM once more)
MAX_SEEDS = 64


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainSettings):
    """The epoch loop: ``models.specs.TrainSettings`` (its defaults, ``mode = "sequence"`` among
    them, are defined there once) plus run-level keys.

    ``warm_start``: each fold starts from the previous fold's weights and trains ``warm_epochs``
    (the first fold trains up to ``max_epochs``); on for a run, while a bare estimator starts
    every ``fit`` cold (scikit-learn's convention). ``device``: ``auto`` (cuda when available),
    ``cpu`` or ``cuda``. ``seed``: seeds every RNG; 0 .. 2**32 - 1 (``MAX_SEED``), the range numpy's
    legacy ``RandomState`` accepts (``default_rng`` and torch take more), so no library refuses it.
    ``device`` and ``seed`` default to the estimators' ``device`` and ``random_state`` (``models.specs``).
    ``device = "cuda"`` on a machine where torch sees no GPU is refused before training
    (``backtest.preflight``), not here, so a run made on a GPU machine still loads elsewhere.
    ``seeds``: train every LSTM once per seed listed (e.g. ``[0, 1, 2, 3, 4]``), side by side on the
    free cores; the model's prediction is their mean (``p_up`` for classifiers, the predicted value
    for regressors) and each seed's is kept in ``y_pred_seed<S>``/``p_up_seed<S>`` columns.
    Empty (the default): one network, seeded with ``seed``. Linear baselines train once either way.
    The first seed of ``seeds`` is the run's seed (``run_seed``), which ``seed`` is otherwise.
    ``frozen_twin``: also train each network model's frozen twin, ``<model>_frozen``: the same
    network fitted once on the first fold (its feature scaling included) and never retrained,
    scored on the same days as a baseline, with the pair (model, twin) asking whether retraining
    pays (``backtest.retraining``).
    """

    warm_start: bool = True
    device: str = DEFAULT_DEVICE
    seed: int = DEFAULT_SEED
    seeds: tuple[int, ...] = ()
    frozen_twin: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.frozen_twin, bool):
            raise ConfigError(f"train.frozen_twin must be true or false, got {self.frozen_twin!r}")
        check_range("train.lr", self.lr, 0.0, 10.0, low_open=True)
        check_range("train.weight_decay", self.weight_decay, 0.0)
        check_range("train.batch_size", self.batch_size, 1)
        check_range("train.max_epochs", self.max_epochs, 1)
        check_range("train.patience", self.patience, 1)
        check_range("train.lr_patience", self.lr_patience, 0)
        check_range("train.lr_factor", self.lr_factor, 0.0, 1.0, low_open=True, high_open=True)
        check_range("train.clip_norm", self.clip_norm, 0.0)
        check_choice("train.mode", self.mode, TRAIN_MODES)
        check_range("train.chunk_len", self.chunk_len, 1, 100_000)
        check_range("train.chunks_per_batch", self.chunks_per_batch, 1)
        check_range("train.warm_epochs", self.warm_epochs, 1)
        check_range("train.warm_lr_factor", self.warm_lr_factor, 0.0, 10.0, low_open=True)
        check_range("train.warm_accept_z", self.warm_accept_z, 0.0, 10.0)
        check_range("train.warmup_steps", self.warmup_steps, 0, 10_000_000)
        check_choice("train.lr_scaling", self.lr_scaling, LR_SCALINGS)
        check_choice("train.device", self.device, DEVICES)
        for key, seed in [("train.seed", self.seed)] + [("train.seeds entry", s) for s in self.seeds]:
            if not 0 <= seed <= MAX_SEED:
                raise ConfigError(f"{key} = {seed!r} is outside numpy's seed range 0..{MAX_SEED} (2**32 - 1), "
                                  "which every random generator of a run must accept; pick a seed in that range")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"train.seeds = {list(self.seeds)} repeats a seed, which would train the same "
                              "network twice; list each seed once")
        if len(self.seeds) > MAX_SEEDS:
            raise ConfigError(f"train.seeds lists {len(self.seeds)} seeds; at most {MAX_SEEDS} are trained per model")

    @property
    def members(self) -> tuple[int, ...]:
        """The seeds each LSTM is trained with: ``seeds`` when given, else ``(seed,)``."""
        return self.seeds or (self.seed,)

    @property
    def run_seed(self) -> int:
        """The run's seed: the first of ``members`` (``seeds[0]`` when given, else ``seed``). It is the
        manifest's ``seed`` and seeds the bootstraps, the baselines and single fits (importance,
        SHAP), so ``seeds = [7]`` runs exactly as ``seed = 7``; ``seed`` is unused beside ``seeds``."""
        return self.members[0]
