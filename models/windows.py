"""Turning a (T, F) feature matrix into (N, L, F) windows without copying it."""

from __future__ import annotations

import numpy as np


def sliding_windows(values: np.ndarray, lookback: int) -> np.ndarray:
    """Read-only view of shape (T - L + 1, L, F); window i holds rows i .. i + L - 1.

    Window i therefore belongs to the decision day at row i + L - 1 (its last row).
    """
    if values.ndim != 2:
        raise ValueError(f"expected a (T, F) matrix, got shape {values.shape}")
    if not 1 <= lookback <= values.shape[0]:
        raise ValueError(f"lookback {lookback} must be between 1 and the number of rows {values.shape[0]}")
    view = np.lib.stride_tricks.sliding_window_view(values, lookback, axis=0)  # (N, F, L)
    return view.transpose(0, 2, 1)


def batch_indices(n: int, batch_size: int, order: np.ndarray | None = None) -> list[np.ndarray]:
    """Split ``order`` (default ``arange(n)``) into consecutive batches of at most ``batch_size``."""
    order = np.arange(n) if order is None else np.asarray(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
