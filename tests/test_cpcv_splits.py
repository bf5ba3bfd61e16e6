"""Golden tests of the CPCV splitter (backtest.combinatorial): counts, paths, the purge and embargo rule."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from lstmbt.backtest.combinatorial import CombinatorialPurgedSplit
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError


def splitter(**kw) -> CombinatorialPurgedSplit:
    return CombinatorialPurgedSplit(**{"groups": 6, "test_groups": 2, "horizon": 1, "reach": 0, "val_fraction": 0.0,
                                       "val_gap": 1, **kw})


@pytest.mark.parametrize("groups,test_groups", [(3, 1), (4, 2), (6, 2), (6, 3), (8, 2), (10, 4)])
def test_split_and_path_counts(groups, test_groups):
    cv = splitter(groups=groups, test_groups=test_groups)
    folds = cv.split(40 * groups)
    assert len(folds) == cv.n_splits == math.comb(groups, test_groups)
    # phi = k / N * C(N, k), the book's formula, equals the paths assembled
    assert len(cv.paths()) == cv.n_paths == test_groups * math.comb(groups, test_groups) // groups


@pytest.mark.parametrize("groups,test_groups,n", [(4, 2, 41), (6, 2, 100), (6, 3, 97), (5, 1, 60)])
def test_every_sample_appears_exactly_once_per_path(groups, test_groups, n):
    cv = splitter(groups=groups, test_groups=test_groups)
    folds, blocks = cv.split(n), cv.group_positions(n)
    for path in cv.paths():
        days = np.concatenate([blocks[g] for g in range(groups)])
        for g, split in enumerate(path):
            assert set(blocks[g]) <= set(folds[split].test)  # the split that fills block g tests it
        assert np.array_equal(np.sort(days), np.arange(n))
    # and each split fills each of its test blocks on exactly one path
    uses = {(split, g) for path in cv.paths() for g, split in enumerate(path)}
    assert len(uses) == cv.n_splits * test_groups


def _forbidden(a: int, b: int, h: int, reach: int, e: int, t: int) -> bool:
    """Whether training sample t breaks the rule for test block a..b, written out from the rule's words."""
    label, inputs = range(t, t + h + 1), range(t - reach, t + 1)
    test_info = range(a, b + h + 1)  # the test days and the closes behind their labels
    if t <= b and (set(label) & set(test_info) or set(inputs) & set(range(a, b + 1))):
        return True
    if t > b and (set(inputs) & set(test_info) or t <= b + h + e):  # after: inside the purge and embargo
        return True
    return a <= t <= b


@pytest.mark.parametrize("groups,test_groups", [(3, 1), (4, 2), (6, 2), (5, 3)])
@pytest.mark.parametrize("horizon,reach,embargo", [(1, 0, 0), (1, 5, 0), (3, 4, 0), (5, 11, 2), (2, 3, 20)])
def test_no_training_sample_reads_a_test_block_or_its_embargo(groups, test_groups, horizon, reach, embargo):
    n = 60 * groups
    cv = splitter(groups=groups, test_groups=test_groups, horizon=horizon, reach=reach, embargo=embargo,
                  val_fraction=0.2, val_gap=horizon)
    e = cv.embargo_after
    assert e >= reach + 1 and e >= embargo  # the embargo covers at least the input window
    blocks = cv.group_positions(n)
    for fold, tested in zip(cv.split(n), cv.combinations()):
        spans = [(int(blocks[g][0]), int(blocks[g][-1])) for g in tested]
        bad = {t for t in range(n) if any(_forbidden(a, b, horizon, reach, e, t) for a, b in spans)}
        trained = set(fold.usable) | set(fold.train) | set(fold.val)
        assert not trained & bad
        assert set(fold.usable) == set(range(n)) - bad  # nothing else is dropped
        assert set(fold.train) | set(fold.val) <= set(fold.usable)
        # the fitted samples' labels end before the validation tail starts (the walk-forward's purge)
        assert fold.train.max() + horizon < fold.val.min()


def test_small_case_by_hand():
    # 40 samples, 4 blocks of 10; h = 1, reach 1 -> embargo 2 after each test block; 25% validation
    cv = CombinatorialPurgedSplit(groups=4, test_groups=2, horizon=1, reach=1, embargo=0, val_fraction=0.25, val_gap=1)
    assert [list(b[[0, -1]]) for b in cv.group_positions(40)] == [[0, 9], [10, 19], [20, 29], [30, 39]]
    assert cv.combinations() == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    fold = cv.split(40)[1]  # tests blocks 0 and 2
    # after block 0: 10 (purge) and 11, 12 (embargo) dropped; before block 2: 19 (purge);
    # after block 2: 30 (purge), 31, 32 (embargo)
    assert list(fold.usable) == [13, 14, 15, 16, 17, 18, 33, 34, 35, 36, 37, 38, 39]
    assert list(fold.val) == [37, 38, 39]  # round(0.25 * 13) = 3, the chronological tail
    assert list(fold.train) == [13, 14, 15, 16, 17, 18, 33, 34, 35]  # purged by 1 before 37
    assert list(fold.test) == list(range(0, 10)) + list(range(20, 30))
    # phi = 3 paths; block g's splits in order fill paths 1, 2, 3
    assert cv.paths() == [[0, 0, 1, 2], [1, 3, 3, 4], [2, 4, 5, 5]]


def test_paths_match_the_book_for_six_groups_two_tested():
    # Advances in Financial Machine Learning, figure 12.1: split S (1-based) and the path each of its
    # two test groups lands on
    book = {1: (1, 1), 2: (2, 1), 3: (3, 1), 4: (4, 1), 5: (5, 1), 6: (2, 2), 7: (3, 2), 8: (4, 2), 9: (5, 2),
            10: (3, 3), 11: (4, 3), 12: (5, 3), 13: (4, 4), 14: (5, 4), 15: (5, 5)}
    cv = splitter()
    paths = cv.paths()
    for split, tested in enumerate(cv.combinations()):
        got = tuple(next(j + 1 for j, path in enumerate(paths) if path[g] == split) for g in tested)
        assert got == book[split + 1]


def test_too_little_data_is_one_line():
    with pytest.raises(ValueError, match="too few for 6 groups"):
        splitter().split(10)
    with pytest.raises(ValueError, match="leaves .* samples to fit on"):
        splitter(reach=30).split(60)


def test_config_accepts_cpcv_and_refuses_bad_group_counts():
    config = RunConfig.from_dict({"split": {"scheme": "cpcv", "groups": 6, "test_groups": 2}})
    assert config.split.cpcv and config.split.splitter(1).scheme == "expanding"
    cv = config.split.cpcv_splitter(1, reach=70)
    assert (cv.n_splits, cv.n_paths, cv.embargo_after) == (15, 5, 71)
    with pytest.raises(ConfigError, match="split.test_groups = 6 must be at least 1 and below split.groups"):
        RunConfig.from_dict({"split": {"scheme": "cpcv", "test_groups": 6}})
    with pytest.raises(ConfigError, match="split.groups"):
        RunConfig.from_dict({"split": {"groups": 2}})
    with pytest.raises(ConfigError, match="makes 12,870 CPCV splits, each training every model; at most 210"):
        RunConfig.from_dict({"split": {"scheme": "cpcv", "groups": 16, "test_groups": 8}})
    with pytest.raises(ConfigError, match="did you mean 'cpcv'"):
        RunConfig.from_dict({"split": {"scheme": "cpvc"}})


def test_combinations_are_in_itertools_order():
    cv = splitter(groups=5, test_groups=3)
    assert cv.combinations() == list(itertools.combinations(range(5), 3))
