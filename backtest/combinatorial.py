"""Combinatorial purged cross-validation (CPCV): splits and backtest paths over sample positions 0..N-1.

The N samples (one per trading day, in date order) are cut into ``groups`` contiguous blocks. Each
of the C(groups, test_groups) splits tests ``test_groups`` blocks and trains on what is left of the
others, so training samples come from both before and after the test blocks (*Advances in
Financial Machine Learning*, ch. 12).

The rule, for a test block of positions a..b (sample t reads the closes t - ``reach`` .. t as
inputs and its label from the closes t .. t + h, with h = ``horizon``):

- **purge before:** a training sample t < a needs t + h <= a - 1: its label is realised before
  the block's first decision, as in the walk-forward.
- **purge and embargo after:** a training sample t > b needs t > b + h + e, with the embargo
  e = max(``embargo``, ``reach`` + 1). Its inputs then start after b + h: no training window reads
  a test day or a close behind a test label, and its label is later than every test label.
  ``reach`` is the lookback minus one plus the feature warm-up, so e is at least the lookback.

Within a split, validation for early stopping is the chronological tail of the training
positions, and the samples fitted on end ``val_gap`` (horizon + ``split.embargo``) before it, as in
the walk-forward. A refit (``train.refit``) trains on every training position (``Fold.usable``).

Each test block is tested in C(groups - 1, test_groups - 1) splits. Path j takes, for every block,
the j-th split (in the order of ``itertools.combinations``) that tests it, so the splits assemble
into phi = test_groups / groups * C(groups, test_groups) paths, each covering every sample once.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from lstmbt.backtest.splits import DEFAULT_GROUPS, DEFAULT_TEST_GROUPS, MIN_FIT_SAMPLES, Fold, _n_val


@dataclass(frozen=True, kw_only=True)
class CombinatorialPurgedSplit:
    """CPCV splitter.

    Parameters
    ----------
    groups : N, the number of contiguous blocks of samples (>= 2).
    test_groups : k, blocks tested per split (1 <= k < N).
    horizon : label horizon h in bars; sets the purge on both sides of each test block.
    reach : bars before its own that a sample's inputs read (lookback - 1 + feature warm-up).
    embargo : the least embargo after each test block, in samples; raised to ``reach + 1``.
    val_fraction : share of a split's training positions held out, from the end, for validation.
    val_gap : samples purged between the fitted samples and the validation tail (horizon + split.embargo).
    """

    groups: int = DEFAULT_GROUPS
    test_groups: int = DEFAULT_TEST_GROUPS
    horizon: int = 1
    reach: int = 0
    embargo: int = 0
    val_fraction: float = 0.2
    val_gap: int = 1

    def __post_init__(self) -> None:
        if self.groups < 2 or not 1 <= self.test_groups < self.groups:
            raise ValueError(f"CPCV needs groups >= 2 and 1 <= test_groups < groups, got groups={self.groups}, "
                             f"test_groups={self.test_groups}")
        if self.horizon < 1 or self.reach < 0 or self.embargo < 0 or self.val_gap < 0:
            raise ValueError("horizon must be >= 1 and reach, embargo and val_gap >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    @property
    def embargo_after(self) -> int:
        """Samples dropped after each test block beyond the purge of ``horizon``."""
        return max(self.embargo, self.reach + 1)

    @property
    def n_splits(self) -> int:
        return math.comb(self.groups, self.test_groups)

    @property
    def n_paths(self) -> int:
        """phi = k/N * C(N, k) = C(N - 1, k - 1)."""
        return math.comb(self.groups - 1, self.test_groups - 1)

    def combinations(self) -> list[tuple[int, ...]]:
        """The test blocks of each split, in split order."""
        return list(itertools.combinations(range(self.groups), self.test_groups))

    def group_positions(self, n_samples: int) -> list[np.ndarray]:
        """The positions of each block: contiguous, sizes differing by at most one."""
        if n_samples < 2 * self.groups:
            raise ValueError(f"{n_samples} samples are too few for {self.groups} groups of at least 2")
        return np.array_split(np.arange(n_samples), self.groups)

    def split(self, n_samples: int) -> list[Fold]:
        """Every split as a ``Fold`` (``test``: its blocks' positions; ``usable``: all training positions)."""
        blocks = self.group_positions(n_samples)
        folds = []
        for index, tested in enumerate(self.combinations()):
            usable = self.training_positions(blocks, tested, n_samples)
            fit, val = self._fit_and_val(usable)
            if len(fit) < MIN_FIT_SAMPLES:
                raise ValueError(f"CPCV split {index} (test groups {list(tested)}) leaves {len(fit)} samples to "
                                 f"fit on after the purge ({self.horizon}), the embargo ({self.embargo_after}) and "
                                 "the validation tail; use fewer groups or fewer test groups, or more data")
            folds.append(Fold(index=index, train=fit, val=val, usable=usable,
                              test=np.concatenate([blocks[g] for g in tested])))
        return folds

    def smallest_fit(self, n_samples: int) -> tuple[int, int, tuple[int, ...]]:
        """(samples fitted on, split index, test blocks) of the split that fits on the fewest samples.

        Unlike ``split`` it refuses nothing, so a check before training can say how small a split
        gets; too few samples for ``groups`` blocks of 2 count as 0 samples to fit on.
        """
        if n_samples < 2 * self.groups:
            return 0, 0, tuple(range(self.test_groups))
        blocks = self.group_positions(n_samples)
        sizes = [(len(self._fit_and_val(self.training_positions(blocks, tested, n_samples))[0]), index, tested)
                 for index, tested in enumerate(self.combinations())]
        return min(sizes)

    def training_positions(self, blocks: list[np.ndarray], tested: tuple[int, ...], n_samples: int) -> np.ndarray:
        """Positions outside the tested blocks, their purge before and their purge and embargo after."""
        keep = np.ones(n_samples, dtype=bool)
        for g in tested:
            a, b = int(blocks[g][0]), int(blocks[g][-1])
            keep[max(0, a - self.horizon):b + self.horizon + self.embargo_after + 1] = False
        return np.flatnonzero(keep)

    def _fit_and_val(self, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_val = _n_val(self.val_fraction, len(usable))
        if not n_val or not len(usable):  # nothing outside the test blocks: nothing to fit or validate on
            return usable, usable[:0]
        val = usable[len(usable) - n_val:]
        return usable[usable < val[0] - self.val_gap], val

    def paths(self) -> list[list[int]]:
        """``paths()[j][g]``: the split whose predictions fill block g on path j."""
        testing = [[s for s, tested in enumerate(self.combinations()) if g in tested] for g in range(self.groups)]
        return [[testing[g][j] for g in range(self.groups)] for j in range(self.n_paths)]
