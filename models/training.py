"""The epoch loop: AdamW, an optional linear warm-up, ReduceLROnPlateau, gradient clipping, early stopping
on validation loss.

Data goes to the device once per fit (``models.feed.Feed``): consecutive windows as their series,
windows in several runs (e.g. a combinatorial purged CV training set) as each run's series.
Batches are index gathers from views of it (windows in ``window`` mode, burn-in + scored chunks
of one run each in ``sequence`` mode), so the hot loop has no per-sample Python and no DataLoader.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from lstmbt.models.feed import Feed  # also importable from here, where it used to live
from lstmbt.models.specs import EVAL_BATCH, TrainSettings
from lstmbt.models.windows import contiguous_series

#: loss(outputs, targets) -> per-element losses with the targets' shape
ElementLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainLog:
    """What happened in training. Losses are per-sample means in the model's (scaled) units
    (training losses weighted by the fit's sample weights, when it has them).

    ``train_steps``/``eval_steps``: LSTM time steps computed (rows x sequence length), with and
    without a backward pass; the benchmark turns them into a FLOP estimate. ``lr``: the learning
    rate each epoch ran at, as ReduceLROnPlateau set it (``TrainSettings.base_lr`` and its cuts;
    a warm-up's lower rates in the first ``warmup_steps`` steps are not listed); a refit on
    fit + validation replays them, warm-up included.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = math.inf
    stopped_early: bool = False
    train_steps: int = 0
    eval_steps: int = 0

    @property
    def n_epochs(self) -> int:
        return len(self.train_loss)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA GPU; use device 'auto' or 'cpu'")
    return torch.device(device)


def train_network(
    net: nn.Module,
    loss_fn: ElementLoss,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    settings: TrainSettings,
    *,
    device: torch.device,
    generator: torch.Generator,
    epochs: int | None = None,
    keep_initial: bool = False,
    on_epoch: Callable[[int, float, float], None] | None = None,
    train_weight: np.ndarray | None = None,
) -> TrainLog:
    """Train ``net`` in place and leave it holding the best weights seen.

    ``train``/``val`` are ``(X, y)`` with X of shape (N, L, F) and y of shape (N,); consecutive
    windows (as the walk-forward passes them) are uploaded once as their underlying series, and
    windows in several runs of consecutive windows (a training set with gaps) as each run's
    series; sequence-mode chunks never span two runs (``models.feed.Feed``).
    ``train_weight`` (N,), optional, non-negative: each training target's loss is multiplied by
    its weight and a batch's loss is divided by its weight sum; weight-0 targets add nothing and
    windows (or chunks) weighing nothing are left out of the batches. Validation stays unweighted.
    ``epochs`` overrides ``settings.max_epochs`` (warm refits). ``keep_initial`` scores the
    incoming weights on ``val`` first and keeps them (``best_epoch`` -1) unless an epoch beats
    them by more than ``settings.warm_accept_z`` standard errors of the paired per-sample difference.
    Without ``val`` every epoch runs (no early stopping) and the weights with the lowest
    training loss are kept. ``generator`` shuffles the batches, so a seeded generator gives a
    repeatable run.
    """
    train_feed = Feed(*train, settings.mode, settings.chunk_len, device, weight=train_weight)
    val_feed = Feed(*val, settings.mode, settings.chunk_len, device) if val is not None else None
    optimizer = make_optimizer(net, settings.base_lr, settings.weight_decay)
    warmup = Warmup(optimizer, settings.warmup_steps)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=settings.lr_factor, patience=settings.lr_patience
    )
    per_step = settings.batch_size if settings.mode == "window" else settings.chunks_per_batch
    log = TrainLog()
    best_state = copy.deepcopy(net.state_dict())
    baseline = None
    if keep_initial and val_feed is not None:
        baseline = _losses(net, loss_fn, val_feed, log)
        log.best_loss, log.best_epoch = float(baseline.mean()), -1
    for epoch in range(settings.max_epochs if epochs is None else epochs):
        log.lr.append(float(optimizer.param_groups[0]["lr"]))
        train_loss = _run_epoch(net, loss_fn, optimizer, train_feed, per_step, settings.clip_norm, generator, log,
                                warmup)
        losses = _losses(net, loss_fn, val_feed, log) if val_feed is not None else None
        val_loss = float(losses.mean()) if losses is not None else train_loss
        log.train_loss.append(train_loss)
        log.val_loss.append(val_loss)
        scheduler.step(val_loss)
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val_loss)
        if val_loss < log.best_loss and _clearly_better(baseline, losses, settings.warm_accept_z):
            log.best_loss, log.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(net.state_dict())
        elif val_feed is not None and epoch - log.best_epoch >= settings.patience:
            log.stopped_early = True
            break
    net.load_state_dict(best_state)
    return log


def train_epochs(
    net: nn.Module,
    loss_fn: ElementLoss,
    train: tuple[np.ndarray, np.ndarray],
    lrs: list[float],
    settings: TrainSettings,
    *,
    device: torch.device,
    generator: torch.Generator,
    train_weight: np.ndarray | None = None,
) -> TrainLog:
    """Train ``net`` in place for exactly ``len(lrs)`` epochs, epoch i at learning rate ``lrs[i]``,
    and leave it holding the last epoch's weights (no validation, no early stopping).

    The refit on fit + validation: ``lrs`` is the selection run's ``TrainLog.lr`` up to its best
    epoch, so the refit follows the schedule that run's plateaus set. ``settings.warmup_steps``
    warms up the first steps of this run as ``train_network`` warmed up the selection run's (the
    rates in ``lrs`` are already scaled by ``lr_scaling`` and are used as they are). ``train``
    and ``train_weight`` as in ``train_network``. An empty ``lrs`` leaves ``net`` untouched.
    """
    log = TrainLog()
    if not lrs:
        return log
    feed = Feed(*train, settings.mode, settings.chunk_len, device, weight=train_weight)
    optimizer = make_optimizer(net, lrs[0], settings.weight_decay)
    warmup = Warmup(optimizer, settings.warmup_steps)
    per_step = settings.batch_size if settings.mode == "window" else settings.chunks_per_batch
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = lr
        log.lr.append(float(lr))
        log.train_loss.append(_run_epoch(net, loss_fn, optimizer, feed, per_step, settings.clip_norm, generator, log,
                                         warmup))
    log.best_epoch, log.best_loss = len(lrs) - 1, log.train_loss[-1]
    return log


def make_optimizer(net: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with the fused kernel: one call updates every parameter instead of a Python loop over
    them (about a fifth of a small LSTM's step under cProfile, which inflates Python time)."""
    return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


class Warmup:
    """Linear learning-rate warm-up over the first ``steps`` optimizer steps of one fit (0 = off).

    Step k (0-based, counted across epochs) runs at ``rate * (k + 1) / steps`` for k < steps and
    at ``rate`` from then on, where ``rate`` is the optimizer's rate when the epoch began (the one
    ReduceLROnPlateau holds). ``end_epoch`` puts that rate back, so the plateau scheduler only
    ever reads and cuts the un-warmed rate. With ``steps = 0`` it never touches the optimizer.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int) -> None:
        self.optimizer, self.steps, self.done, self.rate = optimizer, int(steps), 0, 0.0

    def begin_epoch(self) -> None:
        self.rate = float(self.optimizer.param_groups[0]["lr"])

    def before_step(self) -> None:
        if self.done < self.steps:
            self._set(self.rate * (self.done + 1) / self.steps)
        elif self.done == self.steps and self.steps:
            self._set(self.rate)
        self.done += 1

    def end_epoch(self) -> None:
        if self.steps:
            self._set(self.rate)

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def _run_epoch(net, loss_fn, optimizer, feed: Feed, per_step: int, clip_norm: float,
               generator: torch.Generator, log: TrainLog, warmup: Warmup) -> float:
    net.train()
    warmup.begin_epoch()
    order = torch.randperm(feed.n_units, generator=generator).to(feed.inputs.device)
    if feed.active is not None:  # units that weigh nothing would only add empty steps
        order = order[feed.active[order]]
    total, weight = 0.0, 0.0
    for idx in order.split(per_step):
        xb, yb, mb = feed.batch(idx)
        optimizer.zero_grad(set_to_none=True)
        loss_sum, count = _masked_sum(loss_fn(feed.forward(net, xb, generator), yb), mb)
        (loss_sum / count).backward()
        if clip_norm > 0:
            nn.utils.clip_grad_norm_(net.parameters(), clip_norm, foreach=True)
        warmup.before_step()
        optimizer.step()
        total += float(loss_sum.detach())
        weight += float(count)
        log.train_steps += xb.shape[0] * xb.shape[1]
    warmup.end_epoch()
    return total / weight


def _clearly_better(baseline: np.ndarray | None, losses: np.ndarray | None, z: float) -> bool:
    """True without a baseline; else the mean paired improvement exceeds ``z`` standard errors."""
    if baseline is None or losses is None:
        return True
    diff = baseline - losses
    if len(diff) < 2:
        return False
    return float(diff.mean()) > z * float(diff.std(ddof=1)) / math.sqrt(len(diff))


def _masked_sum(losses: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if mask is None:
        return losses.sum(), torch.tensor(float(losses.numel()))
    return (losses * mask).sum(), mask.sum()


@torch.no_grad()
def _losses(net: nn.Module, loss_fn: ElementLoss, feed: Feed, log: TrainLog | None = None) -> np.ndarray:
    """Per-target losses in eval mode, one per scored target (masked chunk steps dropped)."""
    net.eval()
    parts = []
    for idx in torch.arange(feed.n_units, device=feed.inputs.device).split(EVAL_BATCH):
        xb, yb, mb = feed.batch(idx)
        losses = loss_fn(feed.forward(net, xb), yb)
        parts.append((losses if mb is None else losses[mb > 0]).reshape(-1).double().cpu())
        if log is not None:
            log.eval_steps += xb.shape[0] * xb.shape[1]
    return torch.cat(parts).numpy()


def evaluate_loss(net: nn.Module, loss_fn: ElementLoss, data: tuple[np.ndarray, np.ndarray],
                  device: torch.device, settings: TrainSettings | None = None) -> float:
    """Mean per-sample loss of ``net`` on ``(X, y)`` in eval mode, fed as ``settings.mode`` feeds it."""
    settings = settings or TrainSettings()
    return float(_losses(net, loss_fn, Feed(*data, settings.mode, settings.chunk_len, device)).mean())


@torch.no_grad()
def predict_outputs(net: nn.Module, x_all: np.ndarray, device: torch.device,
                    settings: TrainSettings | None = None) -> np.ndarray:
    """Raw network outputs, shape (N, n_outputs), in eval mode.

    In sequence mode consecutive windows are run as chunks, like in training. Windows that are
    not one run of consecutive windows (several runs, or arbitrary windows) fall back to one
    window per sample, each read with exactly its L rows of context: a sequence-mode prediction
    depends on where its chunk starts, so a caller predicting several blocks in sequence mode
    passes each run on its own, as ``walk_forward_predict`` does with a test set in several runs.
    """
    settings = settings or TrainSettings()
    mode = settings.mode if contiguous_series(x_all) is not None else "window"
    feed = Feed(x_all, np.zeros(len(x_all), dtype=np.float32), mode, settings.chunk_len, device)
    net.eval()
    parts = [feed.forward(net, feed.batch(idx)[0]) for idx in
             torch.arange(feed.n_units, device=feed.inputs.device).split(EVAL_BATCH)]
    return feed.scatter(torch.cat(parts, dim=0)).float().cpu().numpy()
