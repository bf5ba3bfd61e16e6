"""Plain settings for the network and the training loop, importable without torch.

``backtest.config`` extends them with validation and the run-level keys, so every default is
defined once, here.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    samples per gradient step. ``max_epochs``: upper bound on passes over the training set.
    ``patience``: epochs without a validation improvement before stopping (best weights are
    restored). ``lr_patience``/``lr_factor``: ReduceLROnPlateau on the monitored loss.
    ``clip_norm``: max global gradient L2 norm (0 = off).
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 30
    patience: int = 5
    lr_patience: int = 2
    lr_factor: float = 0.5
    clip_norm: float = 1.0
