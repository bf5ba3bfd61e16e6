"""Walk-forward folds over sample positions 0..N-1 (one sample per trading day, in date order).

Retraining for a test block starting at position s happens after the close of s - 1, so a
training sample t, whose label needs closes up to t + h, is usable only if t + h <= s - 1
(the purge), minus an optional ``embargo``. The validation set for early stopping is the
chronological tail of the usable window, and the samples fitted on are purged against it the
same way.

The splitter's defaults are also the ``[split]`` config section's (``backtest.config.SplitConfig``
reads them here), and ``SplitConfig.splitter`` is the one place a run builds a splitter. numpy is
imported only when folds are built, so reading the config stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: fewest samples a fold may fit on
MIN_FIT_SAMPLES = 2
#: walk-forward schemes: ``expanding`` trains from position 0, ``rolling`` on the last ``min_train``
SCHEMES = ("expanding", "rolling")
#: defaults of ``WalkForwardSplit`` and of ``split.scheme``, ``split.val_fraction``, ``split.embargo``
DEFAULT_SCHEME = "expanding"
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_EMBARGO = 0
#: defaults of ``split.groups`` and ``split.test_groups`` under ``split.scheme = "cpcv"``
#: (``backtest.combinatorial``): 15 splits that assemble into 5 paths
DEFAULT_GROUPS = 6
DEFAULT_TEST_GROUPS = 2


@dataclass(frozen=True)
class Fold:
    """One retrain: positions to fit on, to validate on, and to predict out of sample.

    Each is a sorted array of unique sample positions: one contiguous range in a walk-forward
    fold, possibly several (with gaps between them) in other schemes such as combinatorial
    purged CV, whose training positions may also lie after its test positions.

    ``usable``: the positions a refit (``train.refit``, ``refit_full``) trains on once ``fit``
    has chosen its epochs on ``val``. None (every walk-forward fold) means the whole window from
    the first fit position to the last validation position, ``arange(train[0], val[-1] + 1)``:
    the fit samples, the purge gap after them and the validation tail. A scheme whose window has
    gaps passes its own (sorted, unique, every label realised before it is used).
    """

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    usable: np.ndarray | None = None


@dataclass(frozen=True, kw_only=True)
class WalkForwardSplit:
    """Expanding or rolling walk-forward splitter.

    Parameters
    ----------
    min_train : samples before the first test position; with ``rolling`` also the window length.
    step : test block length in samples (bars between retrains); the last block may be shorter.
    horizon : label horizon h in bars; sets the purge.
    scheme : ``expanding`` (train from position 0) or ``rolling`` (last ``min_train`` positions).
    val_fraction : share of the usable training window held out, from its end, for validation;
        0 means no validation set (train a fixed number of epochs).
    embargo : extra bars dropped after the purge, between fit and validation and before the test.
    """

    min_train: int
    step: int
    horizon: int = 1
    scheme: str = DEFAULT_SCHEME
    val_fraction: float = DEFAULT_VAL_FRACTION
    embargo: int = DEFAULT_EMBARGO

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be 'expanding' or 'rolling', got {self.scheme!r}")
        if self.step < 1 or self.horizon < 1 or self.embargo < 0:
            raise ValueError("step and horizon must be >= 1 and embargo >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        n_fit, n_val = first_fold_sizes(self.min_train, self.gap, self.val_fraction)
        if n_fit < MIN_FIT_SAMPLES:
            raise ValueError(f"min_train {self.min_train} leaves fewer than {MIN_FIT_SAMPLES} samples to fit on "
                             f"after the purge ({self.gap}) and a validation tail of {n_val}; raise min_train")

    @property
    def gap(self) -> int:
        """Bars purged between the last usable label and the next block: horizon + embargo."""
        return self.horizon + self.embargo

    def n_folds(self, n_samples: int) -> int:
        return max(0, -(-(n_samples - self.min_train) // self.step))

    def split(self, n_samples: int) -> list[Fold]:
        """All folds for ``n_samples`` positions; raises if not even one test position is left."""
        import numpy as np  # only when folds are built: backtest.config imports this module at start-up

        if n_samples <= self.min_train:
            raise ValueError(f"{n_samples} samples leave no test block after min_train {self.min_train}")
        folds = []
        for k, start in enumerate(range(self.min_train, n_samples, self.step)):
            window_start = 0 if self.scheme == "expanding" else start - self.min_train
            last_usable = start - 1 - self.gap
            n_val = self._n_val(last_usable - window_start + 1)
            val_start = last_usable - n_val + 1
            fit_end = val_start - self.gap if n_val else last_usable + 1
            folds.append(Fold(
                index=k,
                train=np.arange(window_start, fit_end),
                val=np.arange(val_start, last_usable + 1),
                test=np.arange(start, min(start + self.step, n_samples)),
            ))
        return folds

    def _n_val(self, usable: int) -> int:
        return _n_val(self.val_fraction, usable)


def _n_val(val_fraction: float, usable: int) -> int:
    """Validation samples held out of ``usable`` ones: at least 1 unless ``val_fraction`` is 0."""
    if val_fraction == 0:
        return 0
    return max(1, int(round(val_fraction * usable)))


def first_fold_sizes(min_train: int, gap: int, val_fraction: float) -> tuple[int, int]:
    """(samples fitted on, validation samples) of the first fold, the smallest of any scheme.

    ``gap``: horizon + embargo bars purged before the test block and again between the fitted
    samples and the validation tail. The first count is below 1 when nothing is left to fit on.
    """
    usable = min_train - gap
    n_val = _n_val(val_fraction, usable)
    return usable - (n_val + gap if n_val else 0), n_val


def min_train_needed(gap: int, val_fraction: float) -> int:
    """The smallest ``min_train`` whose first fold fits ``MIN_FIT_SAMPLES`` samples after ``gap``."""
    # fit = usable - round(v * usable) - gap with usable = min_train - gap: start just below the
    # closed form (rounding moves it by a sample or two), so a huge embargo costs no long search
    start = gap + int((gap + MIN_FIT_SAMPLES) / (1.0 - val_fraction)) - 2 if val_fraction else gap + MIN_FIT_SAMPLES
    need = max(gap + MIN_FIT_SAMPLES, start)
    while first_fold_sizes(need, gap, val_fraction)[0] < MIN_FIT_SAMPLES:
        need += 1
    return need
