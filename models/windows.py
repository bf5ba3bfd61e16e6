"""Turning a (T, F) feature matrix into (N, L, F) windows without copying it, and finding the
runs of consecutive windows (one series each) in a set of windows."""

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
    the walk-forward loop passes for a contiguous block. ``consecutive_runs`` splits windows that
    are not into runs that are.
    """
    if windows.ndim != 3 or len(windows) == 0:
        return None
    if len(windows) > 1 and not np.array_equal(windows[1:, :-1], windows[:-1, 1:]):
        return None
    return run_series(windows)


def consecutive_runs(windows: np.ndarray) -> list[slice]:
    """The runs of consecutive windows in ``windows`` (N, L, F), as slices of its first axis, in order.

    Window i + 1 continues window i's run when its first L - 1 rows equal window i's last L - 1
    rows (it starts one row later in the same series); otherwise a new run begins at i + 1. The
    slices cover 0 .. N - 1 without overlap; each run's series is ``run_series(windows[run])``.
    Windows gathered from several blocks of one ``sliding_windows`` view (e.g. a combinatorial
    purged CV training set) give one run per block; arbitrary windows give runs of length 1.
    An empty array has no runs; with L = 1 every window continues the one before.
    """
    if windows.ndim != 3:
        raise ValueError(f"expected windows of shape (N, L, F), got shape {windows.shape}")
    n = len(windows)
    if n == 0:
        return []
    joined = (windows[1:, :-1] == windows[:-1, 1:]).all(axis=(1, 2))  # (N - 1,): window i + 1 continues i
    edges = [0, *(np.flatnonzero(~joined) + 1).tolist(), n]
    return [slice(start, stop) for start, stop in zip(edges[:-1], edges[1:])]


def run_series(windows: np.ndarray) -> np.ndarray:
    """The (N + L - 1, F) series behind windows already known to be consecutive (not checked):
    the first window's rows, then each later window's last row. A new array."""
    return np.concatenate([windows[0, :-1], windows[:, -1]], axis=0)
