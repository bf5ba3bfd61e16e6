"""The LSTM network (its settings, ``NetSpec``, live in ``models.specs``)."""

from __future__ import annotations

import torch
from torch import nn

from lstmbt.models.specs import NetSpec

__all__ = ["LSTMNet", "NetSpec"]


class LSTMNet(nn.Module):
    """LSTM over a (batch, L, F) window, pooled, then an MLP head to ``n_outputs`` values."""

    def __init__(self, n_features: int, n_outputs: int, spec: NetSpec) -> None:
        super().__init__()
        if spec.pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {spec.pooling!r}")
        self.pooling = spec.pooling
        self.hidden_size = spec.hidden_size
        self.bidirectional = spec.bidirectional
        self.lstm = nn.LSTM(
            input_size=n_features,
            hidden_size=spec.hidden_size,
            num_layers=spec.num_layers,
            batch_first=True,
            dropout=spec.dropout if spec.num_layers > 1 else 0.0,  # torch applies it between layers only
            bidirectional=spec.bidirectional,
        )
        width = spec.hidden_size * (2 if spec.bidirectional else 1)
        self.norm = nn.LayerNorm(width) if spec.layer_norm else nn.Identity()
        self.dropout = nn.Dropout(spec.dropout)
        layers: list[nn.Module] = []
        for size in spec.head:
            layers += [nn.ReLU(), nn.Linear(width, size)]
            width = size
        if spec.head:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(width, n_outputs))
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, L, F)
        out, _ = self.lstm(x)  # (B, L, H * directions)
        if self.pooling == "mean":
            pooled = out.mean(dim=1)  # (B, H * directions)
        elif self.bidirectional:
            h = self.hidden_size
            pooled = torch.cat([out[:, -1, :h], out[:, 0, h:]], dim=1)  # (B, 2H)
        else:
            pooled = out[:, -1, :]  # (B, H)
        pooled = self.dropout(self.norm(pooled))
        return self.head(pooled)  # (B, n_outputs)

    def forward_sequence(self, x: torch.Tensor, skip: int = 0) -> torch.Tensor:
        """Outputs at every step after the first ``skip`` (the burn-in): the sequence-mode read-out.

        Step t's output equals ``forward`` on the window ending at t when the context started at
        the same row; only unidirectional LSTMs with ``last`` pooling have that property.
        """
        if self.bidirectional or self.pooling != "last":
            raise ValueError("sequence mode needs a unidirectional LSTM with pooling 'last'")
        # x: (B, T, F)
        out, _ = self.lstm(x)  # (B, T, H)
        out = self.dropout(self.norm(out[:, skip:, :]))  # (B, T - skip, H)
        return self.head(out)  # (B, T - skip, n_outputs)
