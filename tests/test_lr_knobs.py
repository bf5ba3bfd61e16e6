"""The learning-rate knobs: ``train.warmup_steps`` and ``train.lr_scaling`` take the rates they claim,
step by step, and their defaults leave training bit-identical to a run without them."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError
from lstmbt.models.estimators import LSTMRegressor
from lstmbt.models.networks import LSTMNet
from lstmbt.models.specs import REFERENCE_BATCH, NetSpec, TrainSettings
from lstmbt.models.training import train_network
from lstmbt.models.windows import sliding_windows

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")
SPEC = NetSpec(hidden_size=4, num_layers=1, dropout=0.0, head=())
LOOKBACK = 5


def data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive windows of a random (n + L - 1, 2) series and a target of the next value."""
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n + LOOKBACK - 1, 2)).astype(np.float32)
    return np.ascontiguousarray(sliding_windows(values, LOOKBACK)), rng.normal(size=n).astype(np.float32)


@contextlib.contextmanager
def step_rates() -> Iterator[list[float]]:
    """Every optimizer step's learning rate, read just before the step runs."""
    rates: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: rates.append(float(optimizer.param_groups[0]["lr"])))
    try:
        yield rates
    finally:
        handle.remove()


def train(settings: TrainSettings, n: int = 64, val: tuple | None = None, seed: int = 0):
    """Train a tiny network on ``n`` samples (validated on ``val``); returns (its log, the per-step rates)."""
    torch.manual_seed(seed)
    net = LSTMNet(2, 1, SPEC)
    loss = lambda out, y: (out[..., 0] - y) ** 2  # noqa: E731
    with step_rates() as rates:
        log = train_network(net, loss, data(n), val, settings, device=CPU, generator=torch.Generator().manual_seed(seed))
    return log, rates


def window(**kw) -> TrainSettings:
    return TrainSettings(**{"mode": "window", "batch_size": 16, "lr": 0.01, "max_epochs": 3, "clip_norm": 0.0, **kw})


def test_warmup_ramps_linearly_over_the_first_steps_then_holds_the_rate():
    log, rates = train(window(warmup_steps=6))  # 64 samples / 16 = 4 steps per epoch, 12 in all
    assert len(rates) == 12
    expected = [0.01 * (k + 1) / 6 for k in range(6)] + [0.01] * 6  # step k at lr * (k + 1) / N, across epochs
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert log.lr == [0.01, 0.01, 0.01]  # the log lists the plateau's rate, not the warm-up's


def test_no_warmup_runs_every_step_at_the_rate():
    _, rates = train(window())
    assert rates == [0.01] * 12


def test_warmup_scales_the_plateau_rate_and_the_plateau_cuts_the_unwarmed_rate():
    """Training targets near -10 and validation targets at +10: every epoch pulls the outputs away
    from the validation targets, so with lr_patience 0 the plateau halves the rate after every
    epoch but the first (which sets the best loss): the first cut lands in epoch 2, while the
    10-step warm-up (4 steps per epoch: steps 8 and 9) still runs."""
    settings = window(warmup_steps=10, lr_patience=0, lr_factor=0.5, patience=100, max_epochs=4, lr=0.05)
    X_val, _ = data(24, seed=1)
    with step_rates() as rates:
        torch.manual_seed(0)
        log = train_network(LSTMNet(2, 1, SPEC), lambda out, y: (out[..., 0] - y) ** 2,
                            (data(64)[0], np.full(64, -10.0, np.float32)), (X_val, np.full(24, 10.0, np.float32)),
                            settings, device=CPU, generator=torch.Generator().manual_seed(0))
    assert len(rates) == 16 and len(log.lr) == 4
    for k, rate in enumerate(rates):
        plateau = log.lr[k // 4]  # the rate ReduceLROnPlateau held for the step's epoch
        assert rate == pytest.approx(plateau * min(1.0, (k + 1) / 10), rel=1e-12), (k, rates, log.lr)
    # the plateau cut the un-warmed rate by lr_factor, the warm-up's lower rates never reaching it
    np.testing.assert_allclose(log.lr, [0.05, 0.05, 0.025, 0.0125], rtol=1e-12)
    np.testing.assert_allclose(rates[8:10], [0.025 * 0.9, 0.025], rtol=1e-12)


@pytest.mark.parametrize("batch_size", [16, 64, 256])
def test_linear_scaling_in_window_mode_scales_by_batch_size(batch_size):
    settings = window(batch_size=batch_size, lr_scaling="linear", max_epochs=1)
    assert settings.samples_per_step == batch_size
    assert settings.base_lr == pytest.approx(0.01 * batch_size / REFERENCE_BATCH)
    _, rates = train(settings, n=256)
    assert rates == [pytest.approx(0.01 * batch_size / 64)] * math.ceil(256 / batch_size)


def test_linear_scaling_in_sequence_mode_counts_scored_steps_per_gradient_step():
    """Sequence mode: chunks_per_batch chunks of chunk_len scored steps = 3 x 8 = 24 samples per step,
    so the rate is lr x 24 / 64; batch_size (unused in this mode) plays no part."""
    settings = TrainSettings(mode="sequence", chunk_len=8, chunks_per_batch=3, batch_size=999, lr=0.01,
                             max_epochs=2, clip_norm=0.0, lr_scaling="linear", warmup_steps=3)
    assert settings.samples_per_step == 24
    log, rates = train(settings, n=96)  # 12 chunks of 8 -> 4 steps of 3 chunks per epoch
    base = 0.01 * 24 / 64
    assert log.lr == [pytest.approx(base)] * 2
    np.testing.assert_allclose(rates, [base / 3, 2 * base / 3] + [base] * 6, rtol=1e-12)


def test_no_scaling_keeps_lr_whatever_the_batch():
    assert TrainSettings(lr=0.003, batch_size=512, mode="window").base_lr == 0.003
    assert TrainSettings(lr=0.003, chunks_per_batch=8).base_lr == 0.003


def test_refit_replays_the_selection_runs_rates_with_its_warmup():
    """refit_full warms up over its own first N steps and then runs each epoch at the rate the
    selection run's plateau held, as the selection run did."""
    settings = window(warmup_steps=5, lr_patience=0, patience=100, max_epochs=3, refit=True)
    X, y = data(64)
    X_val, y_val = data(24, seed=1)
    est = LSTMRegressor(net=SPEC, train=settings, device="cpu", random_state=0)
    with step_rates() as fit_rates:
        est.fit(X, y, X_val, y_val)
    epochs = est.best_epoch_ + 1
    with step_rates() as refit_rates:
        est.refit_full(np.concatenate([X, X_val]), np.concatenate([y, y_val]))
    assert est.refit_log_.lr == est.log_.lr[:epochs]
    steps = math.ceil(88 / 16)  # fit + validation samples per refit epoch
    assert len(refit_rates) == epochs * steps
    for k, rate in enumerate(refit_rates):
        assert rate == pytest.approx(est.log_.lr[k // steps] * min(1.0, (k + 1) / 5), rel=1e-12)
    np.testing.assert_allclose(fit_rates[:5], [0.01 * (k + 1) / 5 for k in range(5)], rtol=1e-12)


def test_a_warm_started_fit_warms_up_again():
    """Each fit builds a fresh AdamW (its moments start at zero), so a warm refit warms up too."""
    settings = window(warmup_steps=4, warm_epochs=1)
    X, y = data(64)
    est = LSTMRegressor(net=SPEC, train=settings, device="cpu", random_state=0, warm_start=True)
    est.fit(X, y)
    with step_rates() as rates:
        est.fit(X, y)  # no validation: continues the carried weights for warm_epochs
    assert est.warm_started_
    np.testing.assert_allclose(rates, [0.0025, 0.005, 0.0075, 0.01], rtol=1e-12)


def test_the_defaults_train_bit_identically_to_no_knobs():
    """warmup_steps 0 and lr_scaling none never touch the optimizer: same weights as explicitly off."""
    X, y = data(64)
    plain = LSTMRegressor(net=SPEC, train=window(), device="cpu", random_state=3).fit(X, y)
    off = LSTMRegressor(net=SPEC, train=window(warmup_steps=0, lr_scaling="none"), device="cpu",
                        random_state=3).fit(X, y)
    np.testing.assert_array_equal(plain.predict(X), off.predict(X))
    warmed = LSTMRegressor(net=SPEC, train=window(warmup_steps=4), device="cpu", random_state=3).fit(X, y)
    assert not np.array_equal(plain.predict(X), warmed.predict(X))  # the knob does change training
    assert TrainSettings().warmup_steps == 0 and TrainSettings().lr_scaling == "none"
    assert RunConfig().train.base_lr == RunConfig().train.lr


@pytest.mark.parametrize("key, value, words", [
    ("train.warmup_steps", -1, "train.warmup_steps = -1 is out of range; it must be >= 0"),
    ("train.warmup_steps", 2.5, "train.warmup_steps must be an integer"),
    ("train.lr_scaling", "linaer", "train.lr_scaling = 'linaer' is not allowed (did you mean 'linear'?)"),
    ("train.lr_scaling", "sqrt", "use one of: none, linear"),
])
def test_bad_knob_values_are_one_line_config_errors(key, value, words):
    with pytest.raises(ConfigError) as info:
        RunConfig().with_values({key: value})
    assert words in str(info.value) and "\n" not in str(info.value)
