"""Plain settings for the network and the training loop, importable without torch.

``backtest.config`` extends them with validation and the run-level keys, so every default is
defined once, here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TRAIN_MODES = ("window", "sequence")


@dataclass(frozen=True, kw_only=True)
class NetSpec:
    """Architecture of ``LSTMNet`` (everything but the input width and the output count).

    ``pooling``: ``last`` reads the final time step (for a bidirectional LSTM: forward state at
    the last step, backward state at the first), ``mean`` averages all steps. ``head``: hidden
    sizes of the MLP after pooling; each hidden layer is ``ReLU -> Linear``, and a final
    ``ReLU -> Linear`` maps to the outputs. ``head=()`` is a plain linear read-out. The seed
    notebook's LSTM -> ReLU -> Linear(., 128) -> ReLU -> Linear(128, 1) is ``head=(128,)``.
    ``dropout`` applies between LSTM layers and to the pooled output.
    """

    hidden_size: int = 32
    num_layers: int = 2
    dropout: float = 0.2
    bidirectional: bool = False
    pooling: str = "last"
    layer_norm: bool = False
    head: tuple[int, ...] = (32,)


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """Optimisation settings.

    ``lr``: AdamW learning rate. ``weight_decay``: decoupled weight decay. ``batch_size``:
    windows per gradient step in ``window`` mode. ``max_epochs``: upper bound on passes over the
    training set. ``patience``: epochs without a validation improvement before stopping (best
    weights are restored). ``lr_patience``/``lr_factor``: ReduceLROnPlateau on the monitored
    loss. ``clip_norm``: max global gradient L2 norm (0 = off).

    ``mode``: ``window`` feeds every sample as its own L-day window from a zero state (the
    reference). ``sequence`` runs the LSTM over contiguous chunks of the series: each chunk is
    ``L - 1`` burn-in steps followed by ``chunk_len`` steps that each emit a scored prediction,
    and ``chunks_per_batch`` chunks make one gradient step. It is the same network with about
    L times fewer FLOPs per epoch; the one difference is that a prediction may see up to
    ``L + chunk_len - 1`` days of context instead of exactly L (``chunk_len = 1`` restores exact
    L-day context at window-mode cost). Validation and test predictions use the same chunks.

    ``warm_epochs``: epochs per refit when an estimator with ``warm_start=True`` continues from
    its previous weights (the first fit uses ``max_epochs``). With validation data a warm refit
    first checks the carried weights against a constant forecast (the training mean or class
    share) and starts over if they lose; it then keeps an updated epoch only if it beats the
    carried weights by more than two standard errors, so noise is not learned fold after fold.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 30
    patience: int = 3
    lr_patience: int = 2
    lr_factor: float = 0.5
    clip_norm: float = 1.0
    mode: str = "window"
    chunk_len: int = 64
    chunks_per_batch: int = 2
    warm_epochs: int = 2


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, which containers restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
