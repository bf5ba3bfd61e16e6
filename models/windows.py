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


def contiguous_series(windows: np.ndarray) -> np.ndarray | None:
    """The (N + L - 1, F) series behind consecutive windows, or None if they are not consecutive.

    Window i must equal rows i .. i + L - 1 of the result, as ``sliding_windows`` produces and
    the walk-forward loop passes. Sequence-mode training runs on this series.
    """
    if windows.ndim != 3 or len(windows) == 0:
        return None
    if len(windows) > 1 and not np.array_equal(windows[1:, :-1], windows[:-1, 1:]):
        return None
    return np.concatenate([windows[0, :-1], windows[:, -1]], axis=0)
