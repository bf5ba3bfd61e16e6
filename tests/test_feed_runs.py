"""Runs of consecutive windows: ``consecutive_runs`` finds them and the sequence-mode ``Feed`` chunks
each on its own, so no chunk reads across a gap; one run gives exactly the tensors of one series."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.feed import Feed
from lstmbt.models.specs import NetSpec, TrainSettings
from lstmbt.models.windows import consecutive_runs, sliding_windows

CPU = torch.device("cpu")
LOOKBACK = 5
OFFSET = 1000.0  # added to every value of the second (third, ...) run: a chunk mixing runs shows it
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def series(n: int, f: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, f)).astype(np.float32)


def runs_of(sizes: tuple[int, ...], lookback: int = LOOKBACK) -> tuple[np.ndarray, list[np.ndarray]]:
    """Windows of several runs of ``sizes`` windows each, run r's values offset by r * OFFSET, and each run's series."""
    parts = [series(n + lookback - 1, seed=r) + r * OFFSET for r, n in enumerate(sizes)]
    return np.concatenate([sliding_windows(part, lookback) for part in parts]), parts


def old_sequence_feed(X: np.ndarray, y: np.ndarray, chunk_len: int, weight: np.ndarray | None = None):
    """The sequence-mode Feed as it was before runs: one series, chunks of min(chunk_len, N), written out."""
    n, lookback = len(X), X.shape[1]
    series_ = np.concatenate([X[0, :-1], X[:, -1]])
    c = min(chunk_len, n)
    starts = np.arange(0, n - c + 1, c)
    if starts[-1] + c < n:
        starts = np.append(starts, n - c)
    mask = np.ones((len(starts), c), dtype=np.float32)
    if len(starts) > 1:
        mask[-1, : starts[-2] + c - starts[-1]] = 0.0
    inputs = np.stack([series_[s : s + lookback - 1 + c] for s in starts]).astype(np.float32)
    targets = np.stack([y[s : s + c] for s in starts])
    if weight is not None:
        mask = mask * np.stack([weight[s : s + c] for s in starts]).astype(np.float32)
    return inputs, targets, mask, starts


def test_consecutive_runs_splits_windows_where_they_stop_continuing():
    windows = sliding_windows(series(60), LOOKBACK)
    gathered = windows[np.r_[0:10, 20:35, 36:37]]
    assert consecutive_runs(gathered) == [slice(0, 10), slice(10, 25), slice(25, 26)]
    assert consecutive_runs(windows) == [slice(0, len(windows))]
    assert consecutive_runs(windows[::2]) == [slice(k, k + 1) for k in range(len(windows[::2]))]
    assert consecutive_runs(np.stack([windows[1], windows[0]])) == [slice(0, 1), slice(1, 2)]  # out of order
    assert consecutive_runs(windows[:0]) == []
    assert consecutive_runs(sliding_windows(series(6), 1)[[0, 3, 4]]) == [slice(0, 3)]  # L = 1: always continues


@pytest.mark.parametrize("n, chunk", [(100, 16), (96, 16), (10, 16), (17, 16), (1, 4)])
def test_one_run_gives_exactly_the_tensors_of_one_series(n, chunk):
    X = sliding_windows(series(n + LOOKBACK - 1), LOOKBACK)
    y = np.random.default_rng(1).normal(size=n).astype(np.float32)
    weight = np.random.default_rng(2).uniform(0.0, 2.0, size=n)
    for w in (None, weight):
        feed = Feed(X, y, "sequence", chunk, CPU, weight=w)
        inputs, targets, mask, starts = old_sequence_feed(X, y, chunk, w)
        assert torch.equal(feed.inputs, torch.from_numpy(inputs))
        assert torch.equal(feed.targets, torch.from_numpy(targets))
        assert torch.equal(feed.mask, torch.from_numpy(mask))
        np.testing.assert_array_equal(feed.starts, starts)


@pytest.mark.parametrize("sizes, chunk", [((30, 25), 8), ((30, 3), 8), ((3, 30), 8), ((2, 40, 1, 9), 8),
                                          ((1, 1, 1), 8), ((20, 20), 32)])
def test_every_chunk_reads_one_run_and_every_target_is_scored_once(sizes, chunk):
    X, parts = runs_of(sizes)
    n = len(X)
    y = np.arange(n, dtype=np.float32)
    feed = Feed(X, y, "sequence", chunk, CPU)
    c = min(chunk, max(sizes))
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # each run's first target
    assert feed.inputs.shape == (feed.n_units, LOOKBACK - 1 + c, 3)
    for k in range(feed.n_units):
        start, length = int(feed.starts[k]), int(feed.lengths[k])
        run = int(np.searchsorted(first, start, side="right")) - 1
        local = start - first[run]
        real = feed.inputs[k, : LOOKBACK - 1 + length].numpy()
        assert ((real > run * OFFSET - 500) & (real < run * OFFSET + 500)).all(), (k, run)  # one run only
        np.testing.assert_array_equal(real, parts[run][local : local + LOOKBACK - 1 + length])
        assert local + length <= sizes[run]  # its targets stay inside the run
        assert not feed.inputs[k, LOOKBACK - 1 + length :].any()  # a short run's padding is zeros
        assert not feed.mask[k, length:].any()  # and never scored
    scored = np.concatenate([feed.targets[k][feed.mask[k] > 0].numpy() for k in range(feed.n_units)])
    np.testing.assert_array_equal(np.sort(scored), y)  # each target once, none missing
    np.testing.assert_array_equal(feed.scatter(feed.targets[..., None])[:, 0].numpy(), y)  # back in place


def test_weights_of_several_runs_fold_into_the_mask_once_each():
    X, _ = runs_of((30, 3, 12))
    y = np.arange(len(X), dtype=np.float32)
    weight = np.random.default_rng(0).uniform(0.5, 2.0, size=len(X))
    weight[30:33] = 0.0  # the whole short run weighs nothing: its chunk is left out
    feed = Feed(X, y, "sequence", 8, CPU, weight=weight)
    plain = Feed(X, y, "sequence", 8, CPU)
    scored = plain.mask > 0
    np.testing.assert_allclose(feed.mask[scored].sum().item(), weight.sum(), rtol=1e-6)
    np.testing.assert_array_equal(feed.mask[scored].numpy(), weight[feed.targets[scored].numpy().astype(int)]
                                  .astype(np.float32))
    short = [k for k in range(feed.n_units) if int(feed.lengths[k]) == 3]
    assert feed.active is not None and not feed.active[short].any() and feed.active.sum() == feed.n_units - 1


SPEC = NetSpec(hidden_size=6, num_layers=1, dropout=0.0, head=())
SEQ = TrainSettings(mode="sequence", chunk_len=16, chunks_per_batch=2, max_epochs=3, patience=10)


def far_apart(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Windows of one 420-row series: a training set of two runs 250 windows apart, and a test run between."""
    values = series(420, seed=seed)
    windows = sliding_windows(values, 8)
    y = (values[7:, 0] + 0.3 * np.random.default_rng(seed).normal(size=len(windows))).astype(np.float32)
    train = np.r_[0:60, 310:370]
    return windows[train], y[train], windows[150:200], y[150:200]


@pytest.mark.parametrize("cls", [LSTMRegressor, LSTMClassifier])
def test_a_sequence_lstm_trains_on_two_far_apart_runs_deterministically(cls):
    X, y, X_test, y_test = far_apart()
    if cls is LSTMClassifier:
        y, y_test = (y > 0).astype(int), (y_test > 0).astype(int)
    fits = [cls(net=SPEC, train=SEQ, device="cpu", random_state=3).fit(X[:100], y[:100], X[100:], y[100:])
            for _ in range(2)]
    scores = (lambda m: m.predict_proba(X_test)[:, 1]) if cls is LSTMClassifier else (lambda m: m.predict(X_test))
    out = [scores(m) for m in fits]
    np.testing.assert_array_equal(out[0], out[1])
    assert np.isfinite(out[0]).all() and np.unique(out[0]).size > 1
    # the training set is two runs of 60 windows (the second cut by the validation split at 100):
    # chunks at 0, 16, 32, 44 of the first and 0, 16, 24 of the second, each L - 1 + 16 rows
    assert fits[0].log_.train_steps == fits[0].n_epochs_ * 7 * (8 - 1 + 16)
    other = cls(net=SPEC, train=SEQ, device="cpu", random_state=4).fit(X[:100], y[:100], X[100:], y[100:])
    assert not np.array_equal(scores(other), out[0])  # the seed matters
