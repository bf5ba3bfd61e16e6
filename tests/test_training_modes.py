"""Training modes: sequence-mode chunks, warm starts across folds, and their quality against window mode."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import torch

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.splits import WalkForwardSplit
from lstmbt.backtest.walkforward import make_sample_grid, walk_forward_predict
from lstmbt.models.estimators import LSTMRegressor
from lstmbt.models.networks import LSTMNet
from lstmbt.models.specs import NetSpec, TrainSettings
from lstmbt.models.training import Feed, predict_outputs
from lstmbt.models.windows import contiguous_series, sliding_windows

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPEC = NetSpec(hidden_size=8, num_layers=2, dropout=0.0, head=(4,))



def series(n: int = 120, f: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, f)).astype(np.float32)


def test_contiguous_series_recovers_the_rows_behind_windows():
    values = series(30)
    windows = sliding_windows(values, 6)
    np.testing.assert_array_equal(contiguous_series(windows), values)
    np.testing.assert_array_equal(contiguous_series(windows[4:9]), values[4:14])
    assert contiguous_series(windows[[0, 2, 3]]) is None  # a gap
    assert contiguous_series(np.stack([windows[1], windows[0]])) is None  # out of order


@pytest.mark.parametrize("n, chunk", [(100, 16), (96, 16), (10, 16), (17, 16), (1, 4)])
def test_chunks_score_every_target_exactly_once(n, chunk):
    lookback = 5
    windows = sliding_windows(series(n + lookback - 1), lookback)
    y = np.arange(n, dtype=np.float32)
    feed = Feed(windows, y, "sequence", chunk, CPU)
    c = min(chunk, n)
    assert feed.inputs.shape == (len(feed.starts), lookback - 1 + c, 3)
    scored = np.concatenate([feed.targets[k][feed.mask[k] > 0].numpy() for k in range(feed.n_units)])
    np.testing.assert_array_equal(np.sort(scored), y)  # each target once, none missing
    for k, start in enumerate(feed.starts):  # chunk k's input rows end exactly at its last target's window
        np.testing.assert_array_equal(feed.inputs[k].numpy(), np.asarray(contiguous_series(windows))[start : start + lookback - 1 + c])


def test_a_chunk_output_with_exactly_l_context_equals_the_window_output():
    torch.manual_seed(0)
    net = LSTMNet(3, 1, SPEC).eval()
    lookback = 7
    values = torch.from_numpy(series(40))
    with torch.no_grad():
        seq = net.forward_sequence(values[None], skip=lookback - 1)[0]  # (40 - L + 1, 1)
        first = net(values[None, :lookback])[0]
    torch.testing.assert_close(seq[0], first)
    # step 10 scores the window ending at row 16 but has seen 17 rows, not 7: the documented
    # semantic difference of sequence mode, so the outputs differ
    with torch.no_grad():
        later = net(values[None, 10 : 10 + lookback])[0]
    assert not torch.allclose(seq[10], later)


def test_sequence_predictions_are_causal():
    torch.manual_seed(1)
    net = LSTMNet(3, 1, SPEC)
    values = series(80)
    windows = sliding_windows(values, 6)
    settings = TrainSettings(mode="sequence", chunk_len=16)
    base = predict_outputs(net, windows, CPU, settings)
    changed = values.copy()
    changed[50:] *= -3.0
    moved = predict_outputs(net, sliding_windows(changed, 6), CPU, settings)
    last_unchanged = 50 - 6  # window i ends at row i + 5
    np.testing.assert_array_equal(base[: last_unchanged + 1], moved[: last_unchanged + 1])
    assert not np.array_equal(base[last_unchanged + 1 :], moved[last_unchanged + 1 :])


def test_sequence_mode_refuses_bidirectional_or_mean_pooling():
    windows = sliding_windows(series(60), 5)
    y = np.zeros(len(windows), dtype=np.float32)
    for spec in (NetSpec(bidirectional=True), NetSpec(pooling="mean")):
        with pytest.raises(ValueError, match="unidirectional"):
            LSTMRegressor(net=spec, train=TrainSettings(mode="sequence", max_epochs=1), device="cpu").fit(windows, y)
    with pytest.raises(ConfigError, match="sequence"):
        RunConfig.resolve(overrides={"train.mode": "sequence", "model.bidirectional": True})


def test_sequence_mode_trains_on_runs_of_windows_and_predicts_any():
    windows = sliding_windows(series(60), 5)
    y = np.random.default_rng(0).normal(size=len(windows)).astype(np.float32)
    est = LSTMRegressor(net=SPEC, train=TrainSettings(mode="sequence", max_epochs=1, chunk_len=8), device="cpu")
    # every other window: no two consecutive, so each is a run of its own, a chunk of exactly L rows
    assert est.fit(windows[::2], y[::2]).log_.train_steps == len(windows[::2]) * 5
    est.fit(windows, y)
    assert est.predict(windows[[3, 1, 7]]).shape == (3,)  # arbitrary windows fall back to window mode
    assert est.log_.train_steps == sum(x.shape[0] * x.shape[1] for x in [Feed(windows, y, "sequence", 8, CPU).inputs])


def test_sequence_mode_does_about_l_times_fewer_steps():
    lookback, n = 30, 600
    windows = sliding_windows(series(n + lookback - 1), lookback)
    y = np.zeros(n, dtype=np.float32)
    steps = {}
    for mode in ("window", "sequence"):
        est = LSTMRegressor(net=SPEC, train=TrainSettings(mode=mode, max_epochs=1, chunk_len=60), device="cpu")
        steps[mode] = est.fit(windows, y).log_.train_steps
    assert steps["window"] == n * lookback
    assert steps["window"] / steps["sequence"] == pytest.approx(lookback / (1 + (lookback - 1) / 60), rel=0.02)


def fold_setup(predictable: bool, n_rows: int = 360, lookback: int = 8, seed: int = 3):
    """Two features; the target is today's feature a (learnable) or tomorrow's (pure noise)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n_rows)
    frame = pd.DataFrame({"a": z, "b": rng.normal(size=n_rows)}, index=pd.bdate_range("2020-01-01", periods=n_rows))
    signal = z if predictable else np.roll(z, -1)
    target = pd.Series(0.8 * signal, index=frame.index).where(np.arange(n_rows) < n_rows - 1)
    grid = make_sample_grid(frame, target, lookback)
    folds = WalkForwardSplit(min_train=200, step=40, horizon=1).split(grid.n)
    return frame, target, grid, folds


WARM = TrainSettings(lr=1e-2, max_epochs=8, warm_epochs=1, patience=10, mode="window")


def test_warm_start_carries_weights_from_fold_to_fold():
    frame, target, grid, folds = fold_setup(predictable=True)
    est = LSTMRegressor(net=SPEC, train=WARM, device="cpu", random_state=0, warm_start=True)
    fits = []
    original_fit = LSTMRegressor.fit

    def spy(self, *args, **kwargs):
        fits.append((id(self), hasattr(self, "net_")))
        return original_fit(self, *args, **kwargs)

    LSTMRegressor.fit = spy
    try:
        _, log = walk_forward_predict(est, frame, target, grid, folds)
    finally:
        LSTMRegressor.fit = original_fit
    assert len({model for model, _ in fits}) == 1  # one model object, refitted
    assert [warm for _, warm in fits] == [False] + [True] * (len(folds) - 1)
    assert log["warm"].tolist() == [False] + [True] * (len(folds) - 1)
    assert log["epochs"].tolist() == [8] + [1] * (len(folds) - 1)
    cold = LSTMRegressor(net=SPEC, train=WARM, device="cpu", random_state=0)
    _, cold_log = walk_forward_predict(cold, frame, target, grid, folds)
    assert cold_log["epochs"].tolist() == [8] * len(folds) and not cold_log["warm"].any()


def test_warm_start_restarts_when_the_carried_weights_lose_to_a_constant():
    frame, target, grid, folds = fold_setup(predictable=False)  # nothing to learn: noise fits lose
    est = LSTMRegressor(net=SPEC, train=WARM, device="cpu", random_state=0, warm_start=True)
    _, log = walk_forward_predict(est, frame, target, grid, folds)
    restarted = ~log["warm"].iloc[1:]
    assert restarted.any()
    assert (log["epochs"].iloc[1:][restarted] == 8).all()  # a restart trains like a first fit


@pytest.mark.parametrize("z", [2.0, 0.0])
def test_a_warm_update_must_beat_the_incoming_weights_by_warm_accept_z_standard_errors(z):
    from lstmbt.models.training import _clearly_better

    rng = np.random.default_rng(0)
    baseline = rng.gamma(2.0, 0.35, 2000)  # per-sample validation losses of the incoming weights
    noise = rng.normal(0.0, 0.2, 2000)
    assert _clearly_better(None, baseline, z)  # cold fits: plain early stopping
    assert _clearly_better(baseline, baseline + noise - 0.05, z)  # well beyond two standard errors
    se = np.std(noise, ddof=1) / np.sqrt(len(noise))
    boundary = noise.mean() + z * se  # the improvement needed, approached from either side
    assert not _clearly_better(baseline, baseline + noise - (boundary - 1e-4), z)
    assert _clearly_better(baseline, baseline + noise - (boundary + 1e-4), z)
    half = noise.mean() + 0.5 * se  # lower on average by half a standard error: noise, unless z is 0
    assert _clearly_better(baseline, baseline + noise - half, z) == (z == 0)


def test_warm_refit_keeps_the_first_target_scaling():
    windows = sliding_windows(series(100), 5)
    y = np.linspace(0, 1, len(windows)).astype(np.float32)
    est = LSTMRegressor(net=SPEC, train=TrainSettings(max_epochs=1, warm_epochs=1, mode="window"), device="cpu",
                        warm_start=True)
    est.fit(windows, y)
    mean, scale = est.y_mean_, est.y_scale_
    est.fit(windows, y * 10 + 5)
    assert (est.y_mean_, est.y_scale_) == (mean, scale)
    assert est.n_epochs_ == 1


# ------------------------------------------------------------------------- quality equivalence


def planted(n: int = 900, seed: int = 11) -> tuple[pd.DataFrame, pd.Series]:
    """Returns whose next value leans on the sign of the product of two lagged returns.

    The drift is +-0.8 against N(0, 1) noise, so about 0.7 of directions are predictable, but
    only by a model that combines two different days of its window (no single lag says anything).
    """
    rng = np.random.default_rng(seed)
    r = rng.normal(size=n)
    for t in range(5, n):
        r[t] += 0.8 * np.sign(r[t - 2] * r[t - 3])
    frame = pd.DataFrame({"r": r}, index=pd.bdate_range("2010-01-04", periods=n))
    return frame, frame["r"].shift(-1)


@functools.lru_cache(maxsize=None)
def run_mode(mode: str, warm: bool, seed: int) -> tuple[float, float]:
    """Out-of-sample (hit rate, RMSE) of a small walk-forward on the planted series."""
    frame, target = planted()
    grid = make_sample_grid(frame, target, 12)
    folds = WalkForwardSplit(min_train=450, step=110, horizon=1, val_fraction=0.0).split(grid.n)
    settings = TrainSettings(lr=1e-2, weight_decay=0.0, batch_size=32, max_epochs=10, warm_epochs=2, clip_norm=0.0,
                             lr_patience=10**6, mode=mode, chunk_len=16, chunks_per_batch=2)
    est = LSTMRegressor(net=NetSpec(hidden_size=16, num_layers=1, dropout=0.0, head=()), train=settings,
                        device="cpu", random_state=seed, warm_start=warm)
    preds, _ = walk_forward_predict(est, frame, target, grid, folds)
    actual, pred = target.reindex(preds["date"]).to_numpy(), preds["y_pred"].to_numpy()
    return float(np.mean((pred > 0) == (actual > 0))), float(np.sqrt(np.mean((pred - actual) ** 2)))


@pytest.mark.parametrize("mode, warm", [("sequence", True), ("sequence", False)])
def test_faster_modes_match_window_quality_on_a_planted_signal(mode, warm):
    """Mean hit rate and RMSE over 3 seeds no worse than window mode's seed range.

    (Window mode with warm starts is left out on purpose: it inherits a poor first fit, which
    one seed of this case has (hit rate 0.61 against 0.68-0.71), and bench/RESULTS.md shows its
    RMSE outside window mode's spread on W's S&P returns.)
    """
    window = np.array([run_mode("window", False, seed) for seed in range(3)])
    other = np.array([run_mode(mode, warm, seed) for seed in range(3)])
    assert window[:, 0].min() > 0.65  # the reference really learns the signal (base rate about 0.5)
    assert other[:, 0].mean() >= window[:, 0].min(), (mode, warm, window, other)
    assert other[:, 1].mean() <= window[:, 1].max(), (mode, warm, window, other)
