"""``LSTMRegressor`` and ``LSTMClassifier`` under the scikit-learn estimator contract, for every
network family (``family``: ``lstm``, ``gru``, ``transformer``, ``tcn``; the names keep the LSTM,
the default).

``__init__`` only stores its keyword arguments. ``fit`` validates its input and builds the
network and optimiser afresh (unless ``warm_start`` and already fitted), so refitting in a
walk-forward loop never continues old weights. Fitted attributes end in ``_``; ``predict``
refuses an unfitted model. Inputs are windows of shape (N, L, F), already scaled.

``get_checkpoint``/``set_checkpoint`` move a fitted estimator's state through ``torch.save`` and
``torch.load(..., weights_only=True)`` (plain values and CPU tensors, no pickled classes), so an
interrupted walk-forward can resume a warm-started chain bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from lstmbt.models.networks import build_network
from lstmbt.models.specs import (DEFAULT_DEVICE, DEFAULT_SEED, NETWORK_FAMILIES, SEQUENCE_FAMILIES, NetSpec,
                                 TrainSettings)
from lstmbt.models.targets import check_sample_weight
from lstmbt.models.training import (TrainLog, evaluate_loss, predict_outputs, resolve_device, train_epochs,
                             train_network)

#: held while a network's init weights are drawn from torch's global RNG (``_build_net``)
_GLOBAL_RNG = threading.Lock()
#: bumped when the layout of ``get_checkpoint``'s dict changes, so an old file is refused, not misread
CHECKPOINT_FORMAT = 1


def _squared_error(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (output[..., 0] - target) ** 2  # output (..., 1), target (...)


def _cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # output (..., 2) logits, target (...) class indices
    flat = nn.functional.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1), reduction="none")
    return flat.reshape(target.shape)


class _LSTMEstimator(BaseEstimator):
    """Shared fit/predict machinery; subclasses define the outputs, the loss and the label encoding.

    ``net``/``train``: None means ``NetSpec()``/``TrainSettings()``, whose defaults are the default
    run's (``models.specs``), as are ``device`` and ``random_state``. ``warm_start`` defaults to
    False, scikit-learn's convention: a second ``fit`` starts cold unless asked (a run asks, with
    ``train.warm_start = true``).

    ``family``: the network (``models.networks.build_network``). The transformer trains and
    predicts in ``window`` mode whatever ``train.mode`` says (``models.specs.SEQUENCE_FAMILIES``).
    """

    def __init__(self, *, net: NetSpec | None = None, train: TrainSettings | None = None,
                 device: str = DEFAULT_DEVICE, random_state: int = DEFAULT_SEED, warm_start: bool = False,
                 family: str = "lstm") -> None:
        self.family = family
        self.net = net
        self.train = train
        self.device = device
        self.random_state = random_state
        self.warm_start = warm_start

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, *, sample_weight: np.ndarray | None = None) -> _LSTMEstimator:
        """Train on windows ``X`` (N, L, F) and labels ``y`` (N,); several runs of consecutive
        windows (blocks with gaps) are chunked run by run in sequence mode (``models.feed.Feed``).

        ``X_val``/``y_val`` drive early stopping and the LR schedule; the weights with the best
        validation loss are kept. Without them the model trains for ``max_epochs``.

        ``sample_weight`` (N,), optional: finite, >= 0, not all zero. Each sample's training loss
        (each scored step's, in sequence mode) is multiplied by its weight and a batch's loss is
        divided by its weight sum, so a weight of 0 leaves a sample out of training entirely
        (the regressor's target scaling is weighted too). Validation losses stay unweighted.

        With ``warm_start=True`` a second fit continues from the current weights (and the target
        scaling of the first fit) for ``train.warm_epochs`` epochs at ``train.lr`` times
        ``train.warm_lr_factor``. It restarts cold instead when the carried weights score no
        better on validation than a constant forecast, and the warm-started epochs replace the
        carried weights only when their validation loss is lower by more than
        ``train.warm_accept_z`` standard errors.

        With ``train.refit`` and validation data, ``fit`` also remembers the weights it started
        from, so ``refit_full`` can train on the whole window next; until then the model
        predicts with the weights early stopping kept. A warm-started estimator then keeps those
        selected weights as ``chain_state_``, and its next warm ``fit`` continues them rather
        than the refitted ones, which were trained on most of the next fold's validation tail.
        """
        X, y = _check_xy(X, y, "X", "y")
        weight = check_sample_weight(sample_weight, len(X))
        val = _check_val(X, X_val, y_val)
        settings, spec = self._settings(), self.net or NetSpec()
        if settings.mode == "sequence" and (spec.bidirectional or spec.pooling != "last"):
            raise ValueError(f"train mode 'sequence' needs a unidirectional {self.family} with pooling 'last'")
        refit = settings.refit and val is not None
        if self.warm_start and hasattr(self, "chain_state_"):
            # a warm chain continues the selection weights: the refitted ones saw this fold's validation tail
            self.net_.load_state_dict(self.chain_state_)
        warm = self._can_continue(X, y, val, settings)
        y_fit = self._encode(y) if warm else self._encode_fit(y, weight)
        val = None if val is None else (val[0], self._encode(val[1]))
        device = resolve_device(self.device)
        generator = torch.Generator().manual_seed(int(self.random_state))
        started = time.perf_counter()
        if not warm:
            self.net_ = self._build(X.shape[1], X.shape[2], int(self.random_state), device)
        start = _cpu_state(self.net_) if refit else None
        # the generator shuffles the batches and draws the dropout masks: nothing global is touched
        if warm:  # below 1: a fine-tuning rate for weights already near a minimum
            settings = dataclasses.replace(settings, lr=settings.lr * settings.warm_lr_factor)
        log = train_network(self.net_, self._loss, (X, y_fit), val, settings, device=device, generator=generator,
                            epochs=settings.warm_epochs if warm else None, keep_initial=warm, train_weight=weight)
        self.device_, self.warm_started_ = device, warm
        self.n_features_in_, self.lookback_ = X.shape[2], X.shape[1]
        self.log_, self.n_epochs_, self.best_epoch_, self.best_loss_ = log, log.n_epochs, log.best_epoch, log.best_loss
        self.fit_seconds_ = time.perf_counter() - started
        self._keep_refit_state(start)
        return self

    def _keep_refit_state(self, start: dict[str, torch.Tensor] | None) -> None:
        """After ``fit``: ``refit_start_``, the CPU copy of the weights ``refit_full`` starts from
        (None: no refit pending), and with a warm start ``chain_state_``, the selected weights the
        next fold continues."""
        self.refit_start_ = start
        if start is not None and self.warm_start:
            self.chain_state_ = _cpu_state(self.net_)
        elif hasattr(self, "chain_state_"):
            del self.chain_state_
        self.refit_log_, self.refit_epochs_, self.refit_n_samples_ = None, 0, 0

    @property
    def refits(self) -> bool:
        """Whether the walk-forward should call ``refit_full`` after each ``fit`` (``train.refit``)."""
        return bool(self._settings().refit)

    def _settings(self) -> TrainSettings:
        """``train`` (None: the defaults), in ``window`` mode for a family without sequence mode."""
        settings = self.train or TrainSettings()
        if self.family not in NETWORK_FAMILIES:
            raise ValueError(f"unknown network family {self.family!r}; use one of {', '.join(NETWORK_FAMILIES)}")
        if settings.mode == "sequence" and self.family not in SEQUENCE_FAMILIES:
            return dataclasses.replace(settings, mode="window")
        return settings

    def _build(self, lookback: int, n_features: int, seed: int | None, device: torch.device) -> nn.Module:
        """A new network of ``family``, drawn as ``_build_net`` draws it."""
        return _build_net(self.family, (lookback, n_features), self._n_outputs, self.net or NetSpec(), seed, device)

    def refit_full(self, X: np.ndarray, y: np.ndarray, *, sample_weight: np.ndarray | None = None) -> _LSTMEstimator:
        """Retrain on the whole usable window ``X`` (N, L, F), ``y`` (N,) for the epochs the last
        ``fit`` chose, and predict with the result; returns ``self``.

        It starts from the weights that ``fit`` started from (a fresh network with the same seed,
        or the carried weights of a warm start) and runs ``best_epoch_ + 1`` epochs at the
        learning rates the selection run used, keeping the last epoch's weights. A warm fit that
        kept the carried weights (``best_epoch_`` -1) trains nothing. The label encoding (the
        regressor's target mean and scale, the classes) stays that of ``fit``. ``X`` should be
        the fit samples, the purge gap after them and the validation tail: one consecutive run
        of windows (several runs when the split's window has gaps), purged against the test
        block as the split requires. ``sample_weight`` as in ``fit``.
        Fitted attributes: ``refit_log_``, ``refit_epochs_``, ``refit_n_samples_``.
        """
        check_is_fitted(self, "net_")
        start = getattr(self, "refit_start_", None)
        if start is None:
            raise ValueError("refit_full needs a fit with validation data and train.refit=True right before it")
        X, y = _check_xy(X, y, "X", "y")
        if X.shape[1:] != (self.lookback_, self.n_features_in_):
            raise ValueError(f"X windows have shape {X.shape[1:]}, the model was fitted on "
                             f"{(self.lookback_, self.n_features_in_)}")
        weight = check_sample_weight(sample_weight, len(X))
        lrs = self.log_.lr[: self.best_epoch_ + 1]
        started = time.perf_counter()
        if lrs:  # best epoch -1: the warm fit kept the carried weights, which net_ still holds
            self.net_.load_state_dict(start)
        log = train_epochs(self.net_, self._loss, (X, self._encode(y)), lrs, self._settings(),
                           device=self.device_, generator=torch.Generator().manual_seed(int(self.random_state)),
                           train_weight=weight)
        self.refit_start_ = None
        self.refit_log_, self.refit_epochs_, self.refit_n_samples_ = log, log.n_epochs, len(X)
        self.fit_seconds_ += time.perf_counter() - started
        return self

    def _can_continue(self, X: np.ndarray, y: np.ndarray, val: tuple | None, settings: TrainSettings) -> bool:
        """Whether this fit warm-starts from the current weights rather than building a new network."""
        if not (self.warm_start and hasattr(self, "net_")):
            return False
        if X.shape[1:] != (self.lookback_, self.n_features_in_):
            raise ValueError(f"warm start needs windows of shape {(self.lookback_, self.n_features_in_)}, "
                             f"got {X.shape[1:]}")
        return val is None or self._beats_naive(y, val, settings)

    def _outputs(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "net_")
        X = _check_x(X, "X")
        if X.shape[1:] != (self.lookback_, self.n_features_in_):
            raise ValueError(f"X windows have shape {X.shape[1:]}, the model was fitted on "
                             f"{(self.lookback_, self.n_features_in_)}")
        return predict_outputs(self.net_, X, self.device_, self._settings())

    def _beats_naive(self, y: np.ndarray, val: tuple, settings: TrainSettings) -> bool:
        """Whether the current weights score a lower validation loss than the naive constant forecast.

        The constant is the training window's mean target (regression) or class-1 share
        (classification), so a warm start keeps only weights that still know something.
        """
        X_val, y_val = val
        y_fit, y_check = self._encode(y), self._encode(y_val)
        model = evaluate_loss(self.net_, self._loss, (X_val, y_check), resolve_device(self.device), settings)
        return model < self._naive_loss(y_fit, y_check)

    def get_checkpoint(self) -> dict[str, Any]:
        """The fitted state, as plain values and CPU tensors for ``torch.save``.

        It holds what a later ``predict`` or warm-started ``fit`` reads: the network's
        ``state_dict``, the window shape (``lookback_``, ``n_features_in_``), the label encoding
        (``y_mean_``/``y_scale_`` or ``classes_``), the last fit's diagnostics and, with
        ``train.refit``, the refit's log and the warm chain's weights (``chain_state_``). Training RNGs
        are reseeded from ``random_state`` on every fit and the optimiser is rebuilt, so nothing
        else carries over. ``set_checkpoint`` on an unfitted estimator with the same parameters
        restores it; the file loads with ``torch.load(path, weights_only=True)``.
        """
        check_is_fitted(self, "net_")
        return {
            "format": CHECKPOINT_FORMAT,
            "estimator": type(self).__name__,
            "net": {k: v.detach().to("cpu", copy=True) for k, v in self.net_.state_dict().items()},
            "n_features_in": int(self.n_features_in_),
            "lookback": int(self.lookback_),
            "warm_started": bool(self.warm_started_),
            "fit_seconds": float(self.fit_seconds_),
            "log": dataclasses.asdict(self.log_),
            **({} if getattr(self, "refit_log_", None) is None else {
                "refit_log": dataclasses.asdict(self.refit_log_), "refit_n_samples": int(self.refit_n_samples_)}),
            **({"chain": self.chain_state_} if hasattr(self, "chain_state_") else {}),
            **self._encoding_state(),
        }

    def set_checkpoint(self, state: dict[str, Any]) -> _LSTMEstimator:
        """Restore a ``get_checkpoint`` dict into this estimator (same ``net`` and ``train`` settings);
        returns ``self``, fitted: its predictions and its next warm ``fit`` equal the original's bit for bit.

        The network is placed on ``resolve_device(self.device)``.
        """
        if state.get("format") != CHECKPOINT_FORMAT or state.get("estimator") != type(self).__name__:
            raise ValueError(f"not a {type(self).__name__} checkpoint of format {CHECKPOINT_FORMAT} "
                             f"(got {state.get('estimator')!r}, format {state.get('format')!r})")
        net = self._build(state["lookback"], state["n_features_in"], None, torch.device("cpu"))
        try:
            net.load_state_dict(state["net"])
        except RuntimeError as exc:
            raise ValueError(f"the checkpoint's network does not fit this estimator's net settings ({exc})") from None
        self.device_ = resolve_device(self.device)
        self.net_ = net.to(self.device_)
        self.n_features_in_, self.lookback_ = state["n_features_in"], state["lookback"]
        self.warm_started_, self.fit_seconds_ = state["warm_started"], state["fit_seconds"]
        self.log_ = log = TrainLog(**state["log"])
        self.n_epochs_, self.best_epoch_, self.best_loss_ = log.n_epochs, log.best_epoch, log.best_loss
        self.refit_log_ = TrainLog(**state["refit_log"]) if "refit_log" in state else None
        self.refit_epochs_ = 0 if self.refit_log_ is None else self.refit_log_.n_epochs
        self.refit_n_samples_ = int(state.get("refit_n_samples", 0))
        if "chain" in state:
            self.chain_state_ = {k: v.clone() for k, v in state["chain"].items()}
        elif hasattr(self, "chain_state_"):
            del self.chain_state_
        self._set_encoding_state(state)
        return self

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if "net_" in state and any(p.device.type != "cpu" for p in state["net_"].parameters()):
            # pickle a CPU copy so a GPU-fitted model loads anywhere; Module.to() works in place,
            # so moving net_ itself would strand the live model on the CPU behind a cuda device_
            state["net_"] = copy.deepcopy(state["net_"]).to("cpu")
            state["device_"] = torch.device("cpu")
        return state


class LSTMRegressor(RegressorMixin, _LSTMEstimator):
    """LSTM regression with MSE loss. ``y`` is standardised inside ``fit`` and restored by ``predict``.

    Fitted attributes: ``net_``, ``y_mean_``, ``y_scale_``, ``log_`` (loss curves), ``n_epochs_``,
    ``best_epoch_``, ``best_loss_`` (validation MSE in standardised units), ``fit_seconds_``, and
    for ``train.refit`` ``refit_log_``, ``refit_epochs_``, ``refit_n_samples_``, ``refit_start_``
    and (warm start) ``chain_state_``.
    """

    _n_outputs = 1

    def _encode_fit(self, y: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        if weight is None:
            self.y_mean_ = float(np.mean(y))
            self.y_scale_ = float(np.std(y)) or 1.0
        else:  # weight-0 samples must not shape the scaling either
            self.y_mean_ = float(np.average(y, weights=weight))
            self.y_scale_ = float(np.sqrt(np.average((y - self.y_mean_) ** 2, weights=weight))) or 1.0
        return self._encode(y)

    def _encode(self, y: np.ndarray) -> np.ndarray:
        return ((np.asarray(y, dtype=np.float64) - self.y_mean_) / self.y_scale_).astype(np.float32)

    def _encoding_state(self) -> dict[str, Any]:
        return {"y_mean": float(self.y_mean_), "y_scale": float(self.y_scale_)}

    def _set_encoding_state(self, state: dict[str, Any]) -> None:
        self.y_mean_, self.y_scale_ = state["y_mean"], state["y_scale"]

    @staticmethod
    def _naive_loss(y_fit: np.ndarray, y_check: np.ndarray) -> float:
        return float(np.mean((y_check.astype(np.float64) - np.mean(y_fit)) ** 2))

    _loss = staticmethod(_squared_error)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions in the units of ``y``, shape (N,)."""
        return self._outputs(X)[:, 0].astype(np.float64) * self.y_scale_ + self.y_mean_


class LSTMClassifier(ClassifierMixin, _LSTMEstimator):
    """Binary LSTM classifier with cross-entropy over two logits.

    Fitted attributes: ``classes_`` plus those of ``LSTMRegressor`` except the y scaling;
    ``best_loss_`` is the validation cross-entropy in nats.
    """

    _n_outputs = 2

    def _encode_fit(self, y: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"LSTMClassifier needs exactly two classes in y, found {classes.tolist()}")
        self.classes_ = classes
        return self._encode(y)

    @staticmethod
    def _naive_loss(y_fit: np.ndarray, y_check: np.ndarray) -> float:
        share = float(np.clip(np.mean(y_fit == 1), 1e-6, 1 - 1e-6))
        return float(-np.mean(np.where(y_check == 1, np.log(share), np.log(1 - share))))

    def _encode(self, y: np.ndarray) -> np.ndarray:
        encoded = np.searchsorted(self.classes_, y)
        if not np.array_equal(self.classes_[np.minimum(encoded, 1)], y):
            raise ValueError(f"y holds labels outside the fitted classes {self.classes_.tolist()}")
        return encoded.astype(np.int64)

    def _encoding_state(self) -> dict[str, Any]:
        return {"classes": torch.from_numpy(np.array(self.classes_))}  # a tensor keeps the labels' dtype

    def _set_encoding_state(self, state: dict[str, Any]) -> None:
        self.classes_ = state["classes"].numpy().copy()

    _loss = staticmethod(_cross_entropy)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 2), columns in ``classes_`` order."""
        logits = torch.from_numpy(self._outputs(X)).double()
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The more probable class for each window, shape (N,)."""
        proba = self.predict_proba(X)  # first, so an unfitted model raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]


def _build_net(family: str, shape: tuple[int, int], n_outputs: int, spec: NetSpec, seed: int | None,
               device: torch.device) -> nn.Module:
    """A new network of ``family`` for windows of ``shape`` (L, F) on ``device``, its init weights
    drawn from torch's global RNG seeded with ``seed`` (None: as it stands). The RNG is forked, so the caller's state is untouched, and the
    draw holds a lock, so fits running side by side on threads never interleave their draws."""
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        return build_network(family, shape[1], n_outputs, spec, shape[0]).to(device)


def _cpu_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``net``'s weights (``load_state_dict`` moves them back to its device)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


def _check_val(X: np.ndarray, X_val: np.ndarray | None, y_val: np.ndarray | None) -> tuple | None:
    """The validated (X_val, y_val) pair, or None when neither is given."""
    if X_val is None and y_val is None:
        return None
    if X_val is None or y_val is None:
        raise ValueError("pass both X_val and y_val, or neither")
    X_val, y_val = _check_xy(X_val, y_val, "X_val", "y_val")
    if X_val.shape[1:] != X.shape[1:]:
        raise ValueError(f"X_val windows have shape {X_val.shape[1:]}, X windows {X.shape[1:]}")
    return X_val, y_val


def _check_x(X: np.ndarray, name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 3:
        raise ValueError(f"{name} must be windows of shape (N, L, F), got shape {X.shape}")
    if len(X) == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or inf; drop the warm-up rows before windowing")
    return X


def _check_xy(X: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    X = _check_x(X, x_name)
    y = np.asarray(y)
    if y.shape != (len(X),):
        raise ValueError(f"{y_name} must have shape ({len(X)},), got {y.shape}")
    if not np.isfinite(y.astype(np.float64)).all():
        raise ValueError(f"{y_name} contains NaN or inf; drop unlabelled rows before fitting")
    return X, y
