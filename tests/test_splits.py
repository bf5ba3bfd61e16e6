"""Properties of ``WalkForwardSplit`` over a grid of sizes, horizons, embargoes and schemes.

The timing rule: retraining for a test block starting at s happens after the close of s - 1, so a
sample t may be fitted or validated on only if its label is realised, t + h <= s - 1 - embargo; the
samples fitted on are purged against the validation tail the same way.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lstmbt.backtest.splits import Fold, WalkForwardSplit

N_SAMPLES = (41, 60, 97)
MIN_TRAIN = (24, 33)
STEPS = (1, 4, 10)
HORIZONS = (1, 5)
EMBARGOES = (0, 2)
SCHEMES = ("expanding", "rolling")
VAL_FRACTIONS = (0.2, 0.5)


def grid():
    """Every (splitter, n) combination of the parameter grid, with its folds."""
    for n, min_train, step, h, embargo, scheme, vf in itertools.product(
        N_SAMPLES, MIN_TRAIN, STEPS, HORIZONS, EMBARGOES, SCHEMES, VAL_FRACTIONS
    ):
        splitter = WalkForwardSplit(min_train=min_train, step=step, horizon=h, scheme=scheme,
                                    val_fraction=vf, embargo=embargo)
        yield splitter, n, splitter.split(n)


def is_contiguous(a: np.ndarray) -> bool:
    return len(a) > 0 and np.array_equal(a, np.arange(a[0], a[0] + len(a)))


def test_grid_is_not_trivial():
    cases = list(grid())
    assert len(cases) == 288
    assert sum(len(folds) for _, _, folds in cases) > 2000


def test_test_blocks_tile_the_out_of_sample_range_once():
    for sp, n, folds in grid():
        ctx = (sp, n)
        assert len(folds) == sp.n_folds(n), ctx
        assert [f.index for f in folds] == list(range(len(folds))), ctx
        assert folds[0].test[0] == sp.min_train, ctx
        for k, fold in enumerate(folds):
            assert isinstance(fold, Fold)
            assert is_contiguous(fold.test), ctx
            assert fold.test[0] == sp.min_train + k * sp.step, ctx
            if k < len(folds) - 1:
                assert len(fold.test) == sp.step, ctx
                assert folds[k + 1].test[0] == fold.test[-1] + 1, ctx
            else:
                assert 1 <= len(fold.test) <= sp.step, ctx
                assert fold.test[-1] == n - 1, ctx
        covered = np.concatenate([f.test for f in folds])
        np.testing.assert_array_equal(np.sort(covered), np.arange(sp.min_train, n))
        assert len(np.unique(covered)) == len(covered), ctx


def test_purge_against_test_start_and_validation_start():
    for sp, n, folds in grid():
        h, embargo = sp.horizon, sp.embargo
        for fold in folds:
            ctx = (sp, n, fold.index)
            s, val_start = fold.test[0], fold.val[0]
            assert np.all(fold.train + h <= s - 1 - embargo), ctx
            assert np.all(fold.val + h <= s - 1 - embargo), ctx
            assert np.all(fold.train + h <= val_start - 1 - embargo), ctx
            # nothing in any test block is ever fitted on or validated on before it is predicted
            assert fold.train.max() < s and fold.val.max() < s, ctx


def test_purge_is_tight_not_wasteful():
    """The last fitted and the last validated samples sit exactly at their purge boundaries."""
    for sp, n, folds in grid():
        for fold in folds:
            ctx = (sp, n, fold.index)
            assert fold.val[-1] == fold.test[0] - 1 - sp.horizon - sp.embargo, ctx
            assert fold.train[-1] == fold.val[0] - 1 - sp.horizon - sp.embargo, ctx


def test_validation_is_the_chronological_tail():
    for sp, n, folds in grid():
        for fold in folds:
            ctx = (sp, n, fold.index)
            assert is_contiguous(fold.val), ctx
            assert is_contiguous(fold.train), ctx
            assert fold.val[0] > fold.train[-1], ctx
            assert len(np.intersect1d(fold.train, fold.val)) == 0, ctx
            usable = fold.val[-1] - fold.train[0] + 1  # the window before the test purge
            assert len(fold.val) >= 1, ctx
            assert abs(len(fold.val) - sp.val_fraction * usable) <= 0.5 + 1e-9, ctx
            assert len(fold.train) >= 2, ctx


def test_expanding_starts_at_zero_and_rolling_keeps_the_last_min_train_positions():
    for sp, n, folds in grid():
        for fold in folds:
            ctx = (sp, n, fold.index)
            s = fold.test[0]
            if sp.scheme == "expanding":
                assert fold.train[0] == 0, ctx
            else:
                # the window is the min_train positions before s; the purge then trims its end
                assert fold.train[0] == s - sp.min_train, ctx
                assert fold.val[-1] - fold.train[0] + 1 == sp.min_train - sp.horizon - sp.embargo, ctx


def test_rolling_and_expanding_agree_on_the_first_fold():
    for n, min_train, step, h, embargo in itertools.product(N_SAMPLES, MIN_TRAIN, STEPS, HORIZONS, EMBARGOES):
        kw = dict(min_train=min_train, step=step, horizon=h, embargo=embargo)
        first_exp = WalkForwardSplit(scheme="expanding", **kw).split(n)[0]
        first_roll = WalkForwardSplit(scheme="rolling", **kw).split(n)[0]
        for part in ("train", "val", "test"):
            np.testing.assert_array_equal(getattr(first_exp, part), getattr(first_roll, part))


def test_expanding_training_windows_grow_rolling_ones_slide():
    sp_exp = WalkForwardSplit(min_train=30, step=7, horizon=5, embargo=2, scheme="expanding")
    sp_roll = WalkForwardSplit(min_train=30, step=7, horizon=5, embargo=2, scheme="rolling")
    exp_sizes = [len(f.train) + len(f.val) for f in sp_exp.split(100)]
    roll_sizes = [len(f.train) + len(f.val) for f in sp_roll.split(100)]
    assert exp_sizes == sorted(exp_sizes) and exp_sizes[-1] > exp_sizes[0]
    assert len(set(roll_sizes)) == 1


def test_small_hand_checked_case():
    # 12 samples, min_train 8, step 2, h = 1: usable window 0..6 (7 samples), val = round(0.3 * 7) = 2
    folds = WalkForwardSplit(min_train=8, step=2, horizon=1, val_fraction=0.3).split(12)
    assert len(folds) == 2
    f0, f1 = folds
    np.testing.assert_array_equal(f0.test, [8, 9])
    np.testing.assert_array_equal(f0.val, [5, 6])   # 6 + 1 <= 8 - 1
    np.testing.assert_array_equal(f0.train, [0, 1, 2, 3])  # 3 + 1 <= 5 - 1
    np.testing.assert_array_equal(f1.test, [10, 11])
    np.testing.assert_array_equal(f1.val, [6, 7, 8])  # round(0.3 * 9) = 3
    np.testing.assert_array_equal(f1.train, [0, 1, 2, 3, 4])


def test_min_train_too_small_raises_and_the_boundary_is_sharp():
    for h, embargo, vf in itertools.product(HORIZONS, EMBARGOES, VAL_FRACTIONS):
        outcomes = []
        for min_train in range(1, 45):
            try:
                sp = WalkForwardSplit(min_train=min_train, step=3, horizon=h, embargo=embargo, val_fraction=vf)
            except ValueError as err:
                assert "min_train" in str(err)
                outcomes.append(False)
                continue
            outcomes.append(True)
            for scheme in SCHEMES:
                for fold in WalkForwardSplit(min_train=min_train, step=3, horizon=h, embargo=embargo,
                                             val_fraction=vf, scheme=scheme).split(min_train + 10):
                    assert len(fold.train) >= 2 and len(fold.val) >= 1, (sp, fold.index)
        # invalid values form a prefix: once min_train is large enough it stays valid
        first_ok = outcomes.index(True)
        assert all(outcomes[first_ok:]), (h, embargo, vf)
        assert first_ok > h + embargo, (h, embargo, vf)


@pytest.mark.parametrize("kwargs", [
    dict(min_train=5, step=1, horizon=5),          # the purge eats the whole window
    dict(min_train=3, step=1, horizon=1),          # 1 fit sample after purge and validation
    dict(min_train=20, step=1, scheme="sliding"),
    dict(min_train=20, step=0),
    dict(min_train=20, step=1, horizon=0),
    dict(min_train=20, step=1, embargo=-1),
    dict(min_train=20, step=1, val_fraction=-0.1),
    dict(min_train=20, step=1, val_fraction=1.0),
])
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        WalkForwardSplit(**kwargs)


@pytest.mark.parametrize("n", [0, 19, 20])
def test_too_few_samples_raise(n):
    with pytest.raises(ValueError, match="min_train"):
        WalkForwardSplit(min_train=20, step=5).split(n)


def test_one_test_position_is_enough():
    folds = WalkForwardSplit(min_train=20, step=5).split(21)
    assert len(folds) == 1
    np.testing.assert_array_equal(folds[0].test, [20])


def test_zero_val_fraction_fits_on_the_whole_purged_window():
    for h in (1, 5):
        for fold in WalkForwardSplit(min_train=30, step=7, horizon=h, val_fraction=0.0).split(60):
            s = fold.test[0]
            assert len(fold.val) == 0
            np.testing.assert_array_equal(fold.train, np.arange(0, s - h))  # every t with t + h <= s - 1


@pytest.mark.parametrize("val_fraction", [0.0, 0.01, 0.1, 0.2, 0.3333, 0.49])
def test_min_train_needed_is_the_smallest_that_fits(val_fraction):
    from lstmbt.backtest.splits import MIN_FIT_SAMPLES, first_fold_sizes, min_train_needed

    for gap in range(0, 300, 7):
        need = min_train_needed(gap, val_fraction)
        assert first_fold_sizes(need, gap, val_fraction)[0] >= MIN_FIT_SAMPLES
        assert all(first_fold_sizes(n, gap, val_fraction)[0] < MIN_FIT_SAMPLES for n in range(gap, need))
    huge = min_train_needed(10**9, val_fraction)  # an absurd embargo is answered at once, not searched
    assert first_fold_sizes(huge, 10**9, val_fraction)[0] >= MIN_FIT_SAMPLES > first_fold_sizes(huge - 1, 10**9,
                                                                                                val_fraction)[0]
