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
            raise ValueError("sequence mode needs a unidirectional LSTM with pooling 'last'")
        # x: (B, T, F)
        out = self._recur(x, generator)  # (B, T, H)
        out = self._drop(self.norm(out[:, skip:, :]), generator)  # (B, T - skip, H)
        return self.head(out)  # (B, T - skip, n_outputs)

    def _recur(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The LSTM's output sequence. Dropout between layers with a ``generator`` runs the layers
        one by one (torch's fused call would draw its masks from the global RNG)."""
        lstm = self.lstm
        if generator is None or not self.training or lstm.dropout == 0 or lstm.num_layers == 1:
            return lstm(x)[0]
        dirs = 2 if lstm.bidirectional else 1
        for layer in range(lstm.num_layers):
            params = [w for d in range(dirs) for w in lstm.all_weights[layer * dirs + d]]
            zeros = x.new_zeros(dirs, x.shape[0], lstm.hidden_size)
            x = torch.lstm(x, (zeros, zeros), params, True, 1, 0.0, True, lstm.bidirectional, True)[0]
            if layer < lstm.num_layers - 1:
                x = dropout_with(x, lstm.dropout, generator)
        return x

    def _drop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if generator is None or not self.training:
            return self.dropout(x)
        return dropout_with(x, self.dropout.p, generator)


def dropout_with(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout whose mask comes from ``generator`` (a CPU generator: the mask is drawn on
    the CPU and moved, so every device draws the same masks)."""
    if p == 0:
        return x
    keep = torch.empty(x.shape, dtype=x.dtype).bernoulli_(1.0 - p, generator=generator).div_(1.0 - p)
    return x * keep.to(x.device, non_blocking=True)
