"""The non-recurrent network families: a small causal transformer encoder and a temporal
convolutional network (TCN), with the pieces every family shares (the MLP head, dropout drawn
from a fit's own generator).

Both read a (batch, L, F) window causally, so the output at the last step depends on nothing
after the decision day, and end in the same pooling, LayerNorm option, dropout and head as the
recurrent networks. Dropout masks come from the fit's ``torch.Generator`` (never torch's global
RNG) so fits on parallel threads stay independent and repeatable.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from lstmbt.models.specs import NetSpec

#: TCN kernel width; with dilations 1, 2, 4, ... each level doubles the receptive field
TCN_KERNEL = 2


def mlp_head(width: int, hidden: tuple[int, ...], n_outputs: int) -> nn.Sequential:
    """``ReLU -> Linear`` per hidden size, then ``ReLU -> Linear`` to ``n_outputs`` (no leading
    ReLU when ``hidden`` is empty: a plain linear read-out)."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.ReLU(), nn.Linear(width, size)]
        width = size
    if hidden:
        layers.append(nn.ReLU())
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def dropout_with(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout whose mask comes from ``generator`` (a CPU generator: the mask is drawn on
    the CPU and moved, so every device draws the same masks)."""
    if p == 0:
        return x
    keep = torch.empty(x.shape, dtype=x.dtype).bernoulli_(1.0 - p, generator=generator).div_(1.0 - p)
    return x * keep.to(x.device, non_blocking=True)


def tcn_levels(lookback: int) -> int:
    """Dilated levels of a TCN over ``lookback`` days: the most whose receptive field,
    ``TCN_KERNEL ** levels`` days, fits in the window (5 levels, 32 days, at L = 60), so the last
    step never reads the zero padding and a step of a long sequence equals its window's."""
    return max(1, int(math.floor(math.log(max(lookback, 2), TCN_KERNEL))))


class _Readout(nn.Module):
    """Pooling, optional LayerNorm, dropout and the MLP head, shared by the transformer and the TCN."""

    def __init__(self, width: int, n_outputs: int, spec: NetSpec) -> None:
        super().__init__()
        if spec.pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {spec.pooling!r}")
        self.pooling, self.p = spec.pooling, spec.dropout
        self.norm = nn.LayerNorm(width) if spec.layer_norm else nn.Identity()
        self.head = mlp_head(width, spec.head, n_outputs)

    def drop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not self.training:
            return x
        if generator is None:
            return F.dropout(x, self.p, training=True)
        return dropout_with(x, self.p, generator)

    def pooled(self, out: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        # out: (B, L, H)
        pooled = out.mean(dim=1) if self.pooling == "mean" else out[:, -1, :]  # (B, H)
        return self.head(self.drop(self.norm(pooled), generator))  # (B, n_outputs)

    def steps(self, out: torch.Tensor, skip: int, generator: torch.Generator | None) -> torch.Tensor:
        # out: (B, T, H) -> (B, T - skip, n_outputs)
        return self.head(self.drop(self.norm(out[:, skip:, :]), generator))


class _EncoderLayer(nn.Module):
    """Pre-norm causal self-attention and a GELU feed-forward block (width 2H), each residual."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.p = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.ff1, self.ff2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor, drop) -> torch.Tensor:
        b, length, width = x.shape  # x: (B, L, H)
        q, k, v = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, width // self.heads).unbind(2)
        # q, k, v: (B, L, heads, H / heads) -> (B, heads, L, H / heads)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + drop(self.out(att.transpose(1, 2).reshape(b, length, width)))
        return x + drop(self.ff2(drop(F.gelu(self.ff1(self.norm2(x))))))


class TransformerNet(nn.Module):
    """A small causal transformer encoder over a (batch, L, F) window.

    A linear embedding of each day's features plus fixed sinusoidal positions (0 .. L-1, oldest
    first), ``num_layers`` pre-norm encoder layers with a causal mask and ``heads`` heads, a final
    LayerNorm, then the shared read-out. It trains in ``window`` mode only: its positions count
    from the start of the window, so a step of a longer sequence is not its window's step.
    """

    def __init__(self, n_features: int, n_outputs: int, spec: NetSpec, lookback: int) -> None:
        super().__init__()
        width = spec.hidden_size
        if width % spec.heads:
            raise ValueError(f"heads ({spec.heads}) must divide hidden_size ({width})")
        self.embed = nn.Linear(n_features, width)
        self.register_buffer("positions", _sinusoids(lookback, width), persistent=False)
        self.layers = nn.ModuleList(_EncoderLayer(width, spec.heads, spec.dropout) for _ in range(spec.num_layers))
        self.final = nn.LayerNorm(width)
        self.readout = _Readout(width, n_outputs, spec)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The encoder's output at every step of (B, L, F) windows, (B, L, H); step k reads days 0..k only."""
        if x.shape[1] > self.positions.shape[0]:
            raise ValueError(f"windows of {x.shape[1]} days exceed the {self.positions.shape[0]} positions "
                             "this transformer was built for")
        h = self.embed(x) + self.positions[: x.shape[1]]  # (B, L, H)
        for layer in self.layers:
            h = layer(h, lambda t: self.readout.drop(t, generator))
        return self.final(h)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # x: (B, L, F)
        return self.readout.pooled(self.encode(x, generator), generator)  # (B, n_outputs)

    def forward_sequence(self, x: torch.Tensor, skip: int = 0, generator: torch.Generator | None = None):
        raise ValueError("the transformer trains in window mode only (its positions count from each window's start)")


class TCNNet(nn.Module):
    """A temporal convolutional network over a (batch, L, F) window.

    A 1x1 convolution to ``hidden_size`` channels, then ``tcn_levels(L)`` residual levels of a
    causal convolution (kernel ``TCN_KERNEL``, dilation 1, 2, 4, ...) with ReLU and dropout, then
    the shared read-out. The receptive field fits in the window, so ``forward_sequence`` over a
    long series gives at step t exactly what ``forward`` gives on the window ending at t.
    """

    def __init__(self, n_features: int, n_outputs: int, spec: NetSpec, lookback: int) -> None:
        super().__init__()
        width = spec.hidden_size
        self.inputs = nn.Conv1d(n_features, width, 1)
        self.levels = nn.ModuleList(nn.Conv1d(width, width, TCN_KERNEL, dilation=TCN_KERNEL ** i)
                                    for i in range(tcn_levels(lookback)))
        self.readout = _Readout(width, n_outputs, spec)

    def receptive_field(self) -> int:
        """Days the output at one step reads, that day included."""
        return 1 + sum((TCN_KERNEL - 1) * conv.dilation[0] for conv in self.levels)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The last level's output at every step of a (B, T, F) series, (B, T, H); step t reads
        days t - receptive_field() + 1 .. t only."""
        h = self.inputs(x.transpose(1, 2))  # (B, H, T)
        for conv in self.levels:
            step = F.relu(conv(F.pad(h, ((TCN_KERNEL - 1) * conv.dilation[0], 0))))  # causal: pad the past only
            h = h + self.readout.drop(step, generator)
        return h.transpose(1, 2)  # (B, T, H)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # x: (B, L, F)
        return self.readout.pooled(self.encode(x, generator), generator)  # (B, n_outputs)

    def forward_sequence(self, x: torch.Tensor, skip: int = 0, generator: torch.Generator | None = None):
        """Outputs at every step after the first ``skip`` of a (B, T, F) series: (B, T - skip, n_outputs)."""
        if self.readout.pooling != "last":
            raise ValueError("sequence mode needs pooling 'last'")
        return self.readout.steps(self.encode(x, generator), skip, generator)


def _sinusoids(length: int, width: int) -> torch.Tensor:
    """The fixed sine/cosine position table of *Attention Is All You Need*, shape (length, width)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: width // 2])
    return table
