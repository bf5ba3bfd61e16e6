"""Plain settings for the network and the training loop, importable without torch.

``backtest.config`` extends them with validation and the run-level keys, so every default is
defined once, here: the fields of ``NetSpec`` and ``TrainSettings``, and the ``DEFAULT_*``
constants that the estimators' constructors and the config's keys share. An estimator built
without settings therefore trains exactly as the default run configures it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TRAIN_MODES = ("window", "sequence")
#: the network families a run can train (``model.families``), each in both targets
NETWORK_FAMILIES = ("lstm", "gru", "transformer", "tcn")
#: families whose step t of a long sequence equals the window ending at t, so ``sequence`` mode
#: applies; the transformer's absolute positions do not shift with the window, so it trains in
#: ``window`` mode whatever ``train.mode`` says
SEQUENCE_FAMILIES = ("lstm", "gru", "tcn")
#: families with a recurrent layer (``bidirectional`` applies to these only)
RECURRENT_FAMILIES = ("lstm", "gru")
#: ``lr_scaling``: ``none`` trains at ``lr``; ``linear`` at ``lr * samples_per_step / REFERENCE_BATCH``
LR_SCALINGS = ("none", "linear")
#: the batch size at which ``lr_scaling = "linear"`` leaves ``lr`` as it is (the default ``batch_size``)
REFERENCE_BATCH = 64
#: how a model sees the ``price`` target (``models.targets``): ``relative`` to the decision day's close, or its ``level``
PRICE_SCALES = ("relative", "level")
#: how the ``lags`` feature group shows past closes (``models.features``): ``relative`` to the decision
#: day's close, or their ``level``
LAG_SCALES = ("relative", "level")
#: where an estimator trains: ``auto`` (cuda when available), ``cpu`` or ``cuda``
DEVICES = ("auto", "cpu", "cuda")
#: default ``device`` of the LSTM estimators and of ``train.device``
DEFAULT_DEVICE = "auto"
#: default ``random_state`` of the LSTM estimators and ``train.seed``
DEFAULT_SEED = 0
#: default L2 penalty of the linear baselines (ridge ``alpha``, logistic ``1 / C``) and ``model.linear_alpha``
DEFAULT_LINEAR_ALPHA = 1.0


@dataclass(frozen=True, kw_only=True)
class NetSpec:
    """Architecture of the networks (everything but the family, the input width and the output count).

    ``pooling``: ``last`` reads the final time step (for a bidirectional LSTM: forward state at
    the last step, backward state at the first), ``mean`` averages all steps. ``head``: hidden
    sizes of the MLP after pooling; each hidden layer is ``ReLU -> Linear``, and a final
    ``ReLU -> Linear`` maps to the outputs. ``head=()`` is a plain linear read-out. The seed
    notebook's LSTM -> ReLU -> Linear(., 128) -> ReLU -> Linear(128, 1) is ``head=(128,)``.
    ``dropout`` applies between LSTM layers and to the pooled output.

    The same fields shape every family (``models.networks``): ``hidden_size`` is the GRU's state,
    the transformer's model width and the TCN's channel count; ``num_layers`` counts recurrent
    or encoder layers (a TCN's depth follows the lookback instead); ``heads``: attention heads of
    the transformer (a divisor of ``hidden_size``).
    """

    hidden_size: int = 32
    num_layers: int = 2
    dropout: float = 0.2
    bidirectional: bool = False
    pooling: str = "last"
    layer_norm: bool = False
    head: tuple[int, ...] = (32,)
    heads: int = 4


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """Optimisation settings.

    ``lr``: AdamW learning rate. ``weight_decay``: decoupled weight decay. ``batch_size``:
    windows per gradient step in ``window`` mode. ``max_epochs``: upper bound on passes over the
    training set. ``patience``: epochs without a validation improvement before stopping (best
    weights are restored). ``lr_patience``/``lr_factor``: ReduceLROnPlateau on the monitored
    loss. ``clip_norm``: max global gradient L2 norm (0 = off).

    ``mode``: ``sequence`` (the default) runs the LSTM over contiguous chunks of the series: each
    chunk is ``L - 1`` burn-in steps followed by ``chunk_len`` steps that each emit a scored
    prediction, and ``chunks_per_batch`` chunks make one gradient step. It needs consecutive
    windows (window i = rows i..i+L-1 of one series), as walk-forward folds always are, and
    bench/RESULTS.md shows the same out-of-sample quality as ``window`` at a fraction of the cost.
    ``window`` feeds every sample as its own L-day window from a zero state (the reference, and
    the mode for windows that are not consecutive). Sequence mode is the same network with
    about L times fewer FLOPs per epoch; the one difference is that a prediction may see up to
    ``L + chunk_len - 1`` days of context instead of exactly L (``chunk_len = 1`` restores exact
    L-day context at window-mode cost). Validation and test predictions use the same chunks.

    ``warm_epochs``: epochs per refit when an estimator with ``warm_start=True`` continues from
    its previous weights (the first fit uses ``max_epochs``). With validation data a warm refit
    first checks the carried weights against a constant forecast (the training mean or class
    share) and starts over if they lose; it then keeps an updated epoch only if it lowers the
    validation loss of the carried weights by more than ``warm_accept_z`` standard errors of the
    paired per-sample difference (0: any lower mean, as early stopping picks a cold fit's epoch).
    ``warm_lr_factor``: a warm refit trains at ``lr`` times this factor (below 1: a fine-tuning
    rate). With ``warm_accept_z = 2`` (earlier versions' rule) no warm refit of the default run
    ever kept an epoch: bench/RESULTS.md, "Why warm folds kept their weights".

    ``refit``: after early stopping on the validation tail has picked the epoch count, train
    once more on every usable sample of the window (fit, purge gap and validation tail) for
    that many epochs, at the learning rates the selection run used, from the weights that run
    started from, and predict with the result (``refit_full``; the walk-forward calls it). A
    warm-started estimator keeps the selection weights, which never saw a validation tail, as
    the chain the next fold continues. No effect without validation data.

    ``warmup_steps``: linear learning-rate warm-up over the first N optimizer steps of every fit
    (0 = off). Step k (0-based, counted across epochs) runs at ``lr_plateau * (k + 1) / N`` for
    k < N, then at ``lr_plateau``, where ``lr_plateau`` is the rate ReduceLROnPlateau holds for
    that epoch (the base rate until a plateau cuts it): the warm-up scales the plateau's rate, and
    the plateau only ever sees and cuts the un-warmed rate. It applies again in every fit, a
    warm-started one (``warm_epochs``) included, because each fit builds a fresh AdamW whose
    moment estimates start at zero; and in ``refit``, whose replay of the selection run's
    per-epoch rates warms up over its own first N steps, as the selection run did.

    ``lr_scaling``: ``none`` trains at ``lr``; ``linear`` starts at ``lr * samples_per_step / 64``
    (``REFERENCE_BATCH``), the linear scaling rule. ``samples_per_step`` is the number of scored
    targets one gradient step averages over: ``batch_size`` windows in ``window`` mode,
    ``chunks_per_batch * chunk_len`` scored steps in ``sequence`` mode (the nominal settings, not
    cut short by a short series), because the rule is about the noise of that mean. The default
    sequence settings (2 x 64) thus double ``lr``. ``TrainLog.lr`` records the scaled rates.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 30
    patience: int = 3
    lr_patience: int = 2
    lr_factor: float = 0.5
    clip_norm: float = 1.0
    mode: str = "sequence"
    chunk_len: int = 64
    chunks_per_batch: int = 2
    warm_epochs: int = 2
    warm_lr_factor: float = 1.0
    warm_accept_z: float = 0.0
    refit: bool = False
    warmup_steps: int = 0
    lr_scaling: str = "none"

    @property
    def samples_per_step(self) -> int:
        """Scored targets per gradient step: ``batch_size`` (window mode) or ``chunks_per_batch *
        chunk_len`` (sequence mode); what ``lr_scaling = "linear"`` scales by."""
        return self.batch_size if self.mode == "window" else self.chunks_per_batch * self.chunk_len

    @property
    def base_lr(self) -> float:
        """The rate training starts at (before warm-up and plateau cuts): ``lr``, times
        ``samples_per_step / REFERENCE_BATCH`` with ``lr_scaling = "linear"``."""
        if self.lr_scaling == "linear":
            return self.lr * self.samples_per_step / REFERENCE_BATCH
        return self.lr


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, which containers restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- size and memory estimate

#: windows (or chunks) per evaluation batch; ``models.training`` evaluates in batches of this size
EVAL_BATCH = 1024
FLOAT_BYTES = 4  # float32 on every device
#: float copies of every parameter alive while training: weights, gradients, AdamW's two
#: moments, the best-epoch copy ``train_network`` keeps, and one optimizer temporary
PARAM_COPIES = 6
#: floats autograd keeps per LSTM time step, layer, direction and hidden unit for the backward
#: pass (gates, cell and hidden states); about 12 measured on CPU (tests/test_honest_notes.py)
TRAIN_FLOATS_PER_STEP = 12
#: the torch runtime's own allocations on first use (about 100 MiB measured on CPU)
RUNTIME_BYTES = 128 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory of training one ``LSTMNet``, in bytes, by part (see ``estimate_training_memory``).

    ``unit``: what one batch row is (``window of L days`` or ``chunk of T steps``), and ``batch``
    how many of them a gradient step holds, for the message that names the size.
    """

    n_params: int
    param_bytes: int
    activation_bytes: int
    data_bytes: int
    batch: int
    unit: str

    @property
    def peak_bytes(self) -> int:
        return self.param_bytes + self.activation_bytes + self.data_bytes + RUNTIME_BYTES


def lstm_param_count(n_features: int, n_outputs: int, spec: NetSpec) -> int:
    """Trainable parameters of ``LSTMNet(n_features, n_outputs, spec)``, counted without building it.

    Per LSTM layer and direction: ``4H * (inputs + H)`` weights and ``8H`` biases (torch keeps
    two bias vectors); then the optional LayerNorm (``2 * width``) and the head's Linear layers.
    """
    h, dirs = spec.hidden_size, 2 if spec.bidirectional else 1
    total, inputs = 0, n_features
    for _ in range(spec.num_layers):
        total += dirs * (4 * h * (inputs + h) + 8 * h)
        inputs = h * dirs
    width = inputs
    total += 2 * width if spec.layer_norm else 0
    for size in (*spec.head, n_outputs):
        total += width * size + size
        width = size
    return total


def estimate_training_memory(n_features: int, n_samples: int, lookback: int, spec: NetSpec,
                             settings: TrainSettings, n_outputs: int = 2) -> MemoryEstimate:
    """Peak memory of one ``train_network`` fit on ``n_samples`` windows (pure arithmetic, no torch).

    Parameters: ``PARAM_COPIES`` float32 copies. Activations: the larger of one training step
    (``TRAIN_FLOATS_PER_STEP`` floats per step, layer, direction and hidden unit, for
    ``batch_size`` windows of ``lookback`` steps in ``window`` mode, or ``chunks_per_batch``
    chunks of ``lookback - 1 + chunk_len`` steps in ``sequence`` mode) and one evaluation batch
    (``EVAL_BATCH`` units, no gradients: a layer's input and output sequences). Data: the series
    on the device, plus the gathered chunks in sequence mode. Within a factor of 2 of the peak
    measured on CPU (tests/test_honest_notes.py).
    """
    n = max(1, n_samples)
    h, dirs, layers = spec.hidden_size, 2 if spec.bidirectional else 1, spec.num_layers
    n_params = lstm_param_count(n_features, n_outputs, spec)
    series = (n + lookback - 1) * n_features
    if settings.mode == "sequence":
        chunk = min(settings.chunk_len, n)
        units, steps, scored = -(-n // chunk) + 1, lookback - 1 + chunk, chunk
        batch, unit = min(settings.chunks_per_batch, units), f"chunks of {lookback - 1 + chunk} steps"
        data = series + units * steps * n_features
    else:
        units, steps, scored = n, lookback, 1
        batch, unit = min(settings.batch_size, n), f"windows of {lookback} days"
        data = series
    head = sum(spec.head) + h * dirs + n_outputs
    train = batch * (steps * layers * dirs * h * TRAIN_FLOATS_PER_STEP + scored * head * 3)
    evaluate = min(EVAL_BATCH, units) * (steps * dirs * h * (1 + min(layers, 2)) + scored * head)
    return MemoryEstimate(n_params=n_params, param_bytes=PARAM_COPIES * n_params * FLOAT_BYTES,
                          activation_bytes=max(train, evaluate) * FLOAT_BYTES, data_bytes=2 * data * FLOAT_BYTES,
                          batch=batch, unit=unit)
