"""The networks of every family: the recurrent ones here (LSTM, GRU), the transformer and TCN in
``models.encoders``, and ``build_network``, which picks one by family. Their settings,
``NetSpec``, live in ``models.specs``."""

from __future__ import annotations

import torch
from torch import nn

from lstmbt.models.encoders import TCNNet, TransformerNet, dropout_with, mlp_head
from lstmbt.models.specs import NETWORK_FAMILIES, NetSpec

__all__ = ["LSTMNet", "GRUNet", "TransformerNet", "TCNNet", "NetSpec", "build_network"]


def build_network(family: str, n_features: int, n_outputs: int, spec: NetSpec, lookback: int) -> nn.Module:
    """A new network of ``family`` (``models.specs.NETWORK_FAMILIES``) for windows of ``lookback``
    days of ``n_features`` columns, with ``n_outputs`` outputs; its weights come from torch's
    global RNG as it stands."""
    if family in ("lstm", "gru"):
        return (LSTMNet if family == "lstm" else GRUNet)(n_features, n_outputs, spec)
    if family == "transformer":
        return TransformerNet(n_features, n_outputs, spec, lookback)
    if family == "tcn":
        return TCNNet(n_features, n_outputs, spec, lookback)
    raise ValueError(f"unknown network family {family!r}; use one of {', '.join(NETWORK_FAMILIES)}")


class LSTMNet(nn.Module):
    """LSTM over a (batch, L, F) window, pooled, then an MLP head to ``n_outputs`` values.

    The recurrent layer is the attribute named by ``cell`` (``lstm``; ``gru`` in ``GRUNet``),
    so each family's ``state_dict`` keys say what they hold."""

    cell = "lstm"

    def __init__(self, n_features: int, n_outputs: int, spec: NetSpec) -> None:
        super().__init__()
        if spec.pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {spec.pooling!r}")
        self.pooling = spec.pooling
        self.hidden_size = spec.hidden_size
        self.bidirectional = spec.bidirectional
        layer = nn.LSTM if self.cell == "lstm" else nn.GRU
        rnn = layer(
            input_size=n_features,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            batch_first=True,
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,  # torch applies it between layers only
            bidirectional=spec.bidirectional,
        )
        setattr(self, self.cell, rnn)
        width = spec.hidden_size * (2 if spec.bidirectional else 1)
        self.norm = nn.LayerNorm(width) if spec.layer_norm else nn.Identity()
        self.dropout = nn.Dropout(spec.dropout)
        self.head = mlp_head(width, spec.head, n_outputs)

    @property
    def rnn(self) -> nn.LSTM | nn.GRU:
        """The recurrent layer."""
        return getattr(self, self.cell)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``generator``: draws the dropout masks in training (None: torch's global RNG), so fits
        that run side by side on threads stay independent and repeatable."""
        # x: (B, L, F)
        out = self._recur(x, generator)  # (B, L, H * directions)
        if self.pooling == "mean":
            pooled = out.mean(dim=1)  # (B, H * directions)
        elif self.bidirectional:
            h = self.hidden_size
            pooled = torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=1)  # (B, 2H)
        else:
            pooled = out[:, -1, :]  # (B, H)
        pooled = self._drop(self.norm(pooled), generator)
        return self.head(pooled)  # (B, n_outputs)

    def forward_sequence(self, x: torch.Tensor, skip: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Outputs at every step after the first ``skip`` (the burn-in): the sequence-mode read-out.

        Step t's output equals ``forward`` on the window ending at t when the context started at
        the same row; only unidirectional LSTMs with ``last`` pooling have that property.
        """
        if self.bidirectional or self.pooling != "last":
            raise ValueError(f"sequence mode needs a unidirectional {self.cell.upper()} with pooling 'last'")
        # x: (B, T, F)
        out = self._recur(x, generator)  # (B, T, H)
        out = self._drop(self.norm(out[:, skip:, :]), generator)  # (B, T - skip, H)
        return self.head(out)  # (B, T - skip, n_outputs)

    def _recur(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The recurrent layer's output sequence. Dropout between layers with a ``generator`` runs
        the layers one by one (torch's fused call would draw its masks from the global RNG)."""
        rnn = self.rnn
        if generator is None or not self.training or rnn.dropout == 0 or rnn.num_layers == 1:
            return rnn(x)[0]
        dirs = 2 if rnn.bidirectional else 1
        for layer in range(rnn.num_layers):
            params = [w for d in range(dirs) for w in rnn.all_weights[layer * dirs + d]]
            zeros = x.new_zeros(dirs, x.shape[0], rnn.hidden_size)
            if self.cell == "lstm":
                x = torch.lstm(x, (zeros, zeros), params, True, 1, 0.0, True, rnn.bidirectional, True)[0]
            else:
                x = torch.gru(x, zeros, params, True, 1, 0.0, True, rnn.bidirectional, True)[0]
            if layer < rnn.num_layers - 1:
                x = dropout_with(x, rnn.dropout, generator)
        return x

    def _drop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if generator is None or not self.training:
            return self.dropout(x)
        return dropout_with(x, self.dropout.p, generator)


class GRUNet(LSTMNet):
    """``LSTMNet`` with a GRU in place of the LSTM (the same pooling, head and sequence read-out)."""

    cell = "gru"
