"""The epoch loop: AdamW, ReduceLROnPlateau, gradient clipping, early stopping on validation loss."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from models.specs import TrainSettings
from models.windows import batch_indices

EVAL_BATCH = 1024


@dataclass
class TrainLog:
    """What happened in training. Losses are per-sample means in the model's (scaled) units."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_loss: float = math.inf
    stopped_early: bool = False

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
    loss_fn: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    settings: TrainSettings,
    *,
    device: torch.device,
    generator: torch.Generator,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainLog:
    """Train ``net`` in place and leave it holding the best weights seen.

    ``train``/``val`` are ``(X, y)`` with X of shape (N, L, F) (views are fine: only each batch
    is copied) and y of shape (N,). Without ``val`` the loop runs all ``max_epochs`` (no early
    stopping) and keeps the weights with the lowest training loss. ``generator`` shuffles the
    batches, so a seeded generator gives a repeatable run.
    """
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=settings.lr_factor, patience=settings.lr_patience
    )
    log = TrainLog()
    best_state = copy.deepcopy(net.state_dict())
    for epoch in range(settings.max_epochs):
        train_loss = _run_epoch(net, loss_fn, optimizer, train, settings, device, generator)
        val_loss = evaluate_loss(net, loss_fn, val, device) if val is not None else train_loss
        log.train_loss.append(train_loss)
        log.val_loss.append(val_loss)
        scheduler.step(val_loss)
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val_loss)
        if val_loss < log.best_loss:
            log.best_loss, log.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(net.state_dict())
        elif val is not None and epoch - log.best_epoch >= settings.patience:
            log.stopped_early = True
            break
    net.load_state_dict(best_state)
    return log


def _run_epoch(net, loss_fn, optimizer, train, settings, device, generator) -> float:
    x_all, y_all = train
    net.train()
    order = torch.randperm(len(x_all), generator=generator).numpy()
    total = 0.0
    for idx in batch_indices(len(x_all), settings.batch_size, order):
        xb, yb = _to_tensors(x_all, y_all, idx, device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(xb), yb)
        loss.backward()
        if settings.clip_norm > 0:
            nn.utils.clip_grad_norm_(net.parameters(), settings.clip_norm)
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total / len(x_all)


@torch.no_grad()
def evaluate_loss(net: nn.Module, loss_fn: nn.Module, data: tuple[np.ndarray, np.ndarray],
                  device: torch.device) -> float:
    """Mean per-sample loss of ``net`` on ``(X, y)`` in eval mode."""
    x_all, y_all = data
    net.eval()
    total = 0.0
    for idx in batch_indices(len(x_all), EVAL_BATCH):
        xb, yb = _to_tensors(x_all, y_all, idx, device)
        total += float(loss_fn(net(xb), yb)) * len(idx)
    return total / len(x_all)


@torch.no_grad()
def predict_outputs(net: nn.Module, x_all: np.ndarray, device: torch.device) -> np.ndarray:
    """Raw network outputs, shape (N, n_outputs), computed in eval mode in fixed-size batches."""
    net.eval()
    chunks = []
    for idx in batch_indices(len(x_all), EVAL_BATCH):
        xb = torch.from_numpy(np.ascontiguousarray(x_all[idx], dtype=np.float32)).to(device)
        chunks.append(net(xb).float().cpu().numpy())
    return np.concatenate(chunks, axis=0)


def _to_tensors(x_all, y_all, idx, device):
    xb = torch.from_numpy(np.ascontiguousarray(x_all[idx], dtype=np.float32)).to(device)
    yb = torch.from_numpy(np.ascontiguousarray(y_all[idx])).to(device)
    return xb, yb
