"""``Feed``: one (X, y) set on the device, served in the layout a train mode trains on.

Data goes to the device once per fit: in ``window`` mode consecutive windows as their series
(unfolded back into windows on the device), in ``sequence`` mode as burn-in + scored chunks cut
from the series of each run of consecutive windows (``models.windows.consecutive_runs``). A
batch is then an index gather, with no DataLoader and no per-sample Python.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from lstmbt.models.specs import TRAIN_MODES
from lstmbt.models.windows import consecutive_runs, contiguous_series, run_series


class Feed:
    """One (X, y) set on the device, served in the layout ``mode`` trains on.

    ``window``: units are samples; a batch is (B, L, F) windows and (B,) targets.
    ``sequence``: units are chunks of C = min(``chunk_len``, longest run) consecutive targets;
    a batch is (B, L - 1 + C, F) inputs, (B, C) targets and a (B, C) mask that drops targets
    already scored by an earlier chunk. Chunks are cut from each run of consecutive windows on
    its own, so a chunk's input rows all come from one run (one contiguous block of the series):
    a run of n >= C targets gets chunks at 0, C, 2C, ... and a last one moved back to end at its
    last target (its overlap masked); a run of n < C targets gets one chunk of its L - 1 + n rows
    followed by C - n zero rows whose steps are masked (the sequence networks are causal, so the
    padding changes no scored output). One run gives the layout of one series, as before runs
    were split. ``starts`` (U,): each chunk's first target among the N; ``lengths`` (U,): its real
    targets (C, or a short run's n).

    ``weight`` (N,), optional: per-target loss weights, uploaded once and folded into the mask
    ((B,) in window mode); units whose weights are all zero are listed out of ``active``.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, mode: str, chunk_len: int, device: torch.device,
                 weight: np.ndarray | None = None) -> None:
        if mode not in TRAIN_MODES:
            raise ValueError(f"mode must be one of {TRAIN_MODES}, got {mode!r}")
        self.mode, self.lookback, self.n = mode, X.shape[1], len(X)
        self.active, self.starts, self.lengths = None, None, None
        if mode == "window":
            self._windows(X, np.asarray(y), device, weight)
        else:
            self._chunks(X, np.asarray(y), chunk_len, device, weight)
        if weight is not None:
            self._find_active()

    def _windows(self, X: np.ndarray, y: np.ndarray, device: torch.device, weight: np.ndarray | None) -> None:
        series = contiguous_series(X)
        if series is None:
            self.inputs = _to_device(X, device, np.float32)  # arbitrary windows: one copy
        else:
            self.inputs = _to_device(series, device, np.float32).unfold(0, self.lookback, 1).transpose(1, 2)
        self.targets = _to_device(y, device)
        self.mask = None if weight is None else _to_device(weight, device, np.float32)

    def _chunks(self, X: np.ndarray, y: np.ndarray, chunk_len: int, device: torch.device,
                weight: np.ndarray | None) -> None:
        runs = consecutive_runs(X)
        if not runs:
            raise ValueError("sequence mode needs at least one window")
        sizes = np.array([run.stop - run.start for run in runs], dtype=np.int64)
        c = min(chunk_len, int(sizes.max()))
        layout = _layout(sizes, c, self.lookback)
        series = _padded([run_series(X[run]) for run in runs], layout.pads)  # (sum(n + L - 1 + pad), F)
        at_input = torch.as_tensor(layout.inputs, device=device)
        at_target = torch.as_tensor(layout.targets, device=device)
        span = self.lookback - 1 + c
        self.inputs = _to_device(series, device, np.float32).unfold(0, span, 1).transpose(1, 2)[at_input]
        self.targets = _to_device(_padded([y[run] for run in runs], layout.pads), device).unfold(0, c, 1)[at_target]
        self.mask = _to_device(layout.mask, device)
        self.starts, self.lengths = layout.starts, layout.lengths
        if weight is not None:
            weights = _to_device(_padded([weight[run] for run in runs], layout.pads), device, np.float32)
            self.mask = self.mask * weights.unfold(0, c, 1)[at_target]

    def _find_active(self) -> None:
        """``active``: a bool (U,) tensor of the units with some positive weight, or None when all have."""
        positive = self.mask.reshape(self.n_units, -1).sum(dim=1) > 0
        self.active = None if bool(positive.all()) else positive

    @property
    def n_units(self) -> int:
        return len(self.inputs)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        mask = None if self.mask is None else self.mask[idx]
        return self.inputs[idx], self.targets[idx], mask

    def forward(self, net: nn.Module, xb: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, n_out) in window mode; (B, C, n_out) for the scored steps in sequence mode.
        ``generator`` draws the dropout masks in training."""
        if self.mode == "window":
            return net(xb, generator=generator)
        return net.forward_sequence(xb, skip=self.lookback - 1, generator=generator)

    def scatter(self, outputs: torch.Tensor) -> torch.Tensor:
        """Chunk outputs (U, C, n_out) back to one row per target (N, n_out); padding steps are dropped."""
        if self.mode == "window":
            return outputs
        full = outputs.new_empty((self.n, outputs.shape[-1]))
        for k in reversed(range(len(self.starts))):  # earlier chunks of a run (longer context) win
            start, length = int(self.starts[k]), int(self.lengths[k])
            full[start : start + length] = outputs[k, :length]
        return full


class _Layout(NamedTuple):
    """Where the sequence-mode chunks of all runs sit (U chunks of C targets)."""

    inputs: np.ndarray  # (U,) first input row of each chunk in the padded series
    targets: np.ndarray  # (U,) first target of each chunk in the padded targets
    starts: np.ndarray  # (U,) first target of each chunk among the N targets
    lengths: np.ndarray  # (U,) real (unpadded) targets of each chunk
    mask: np.ndarray  # (U, C) 1 for a target this chunk scores, 0 for an overlap or padding step
    pads: list[int]  # zero rows padded after each run's series and targets


def _layout(sizes: np.ndarray, c: int, lookback: int) -> _Layout:
    """The chunk layout of runs of ``sizes`` targets each, chunks of ``c`` targets, windows of ``lookback`` rows."""
    plans = [_run_chunks(int(n), c) for n in sizes]
    pads = [pad for _, _, pad in plans]
    padded = sizes + np.array(pads, dtype=np.int64)  # targets (and padding) per run

    def offsets(lengths: np.ndarray) -> np.ndarray:  # where each run begins when they are laid end to end
        return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def placed(at: np.ndarray) -> np.ndarray:
        return np.concatenate([first + starts for first, (starts, _, _) in zip(at, plans)])

    return _Layout(
        inputs=placed(offsets(padded + lookback - 1)), targets=placed(offsets(padded)), starts=placed(offsets(sizes)),
        lengths=np.concatenate([np.full(len(starts), min(c, int(n))) for n, (starts, _, _) in zip(sizes, plans)]),
        mask=np.concatenate([mask for _, mask, _ in plans]), pads=pads,
    )


def _run_chunks(n: int, c: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Chunks of ``c`` targets over one run of ``n``: local starts (K,), mask (K, c) and padding rows.

    n >= c: chunks at 0, c, 2c, ..., the last moved back to end at target n - 1, the targets it
    shares with the chunk before masked. n < c: one chunk, its steps after the n-th masked
    (padding)."""
    if n < c:
        mask = np.zeros((1, c), dtype=np.float32)
        mask[0, :n] = 1.0
        return np.zeros(1, dtype=np.int64), mask, c - n
    starts = np.arange(0, n - c + 1, c)
    if starts[-1] + c < n:
        starts = np.append(starts, n - c)
    mask = np.ones((len(starts), c), dtype=np.float32)
    if len(starts) > 1:
        overlap = starts[-2] + c - starts[-1]
        mask[-1, :overlap] = 0.0
    return starts, mask, 0


def _padded(parts: list[np.ndarray], pads: list[int]) -> np.ndarray:
    """``parts`` laid end to end along axis 0, each followed by its ``pads`` zero rows; a single
    unpadded part is returned as it is."""
    if len(parts) == 1 and pads[0] == 0:
        return parts[0]
    pieces = []
    for part, pad in zip(parts, pads):
        pieces += [part, np.zeros((pad, *part.shape[1:]), dtype=part.dtype)]
    return np.concatenate(pieces, axis=0)


def _to_device(array: np.ndarray, device: torch.device, dtype: type | None = None) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=dtype))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
