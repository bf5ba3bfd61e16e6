"""Plug-in estimators for the tests, importable by dotted path (``plugin_models:Name``): a good
one of each input kind, and one per way of breaking the protocol."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression, Ridge

#: the shapes of X every instance's fit saw, as (class name, shape), in call order
SEEN: list[tuple[str, tuple[int, ...]]] = []


class WindowRidge(RegressorMixin, BaseEstimator):
    """Ridge on the flattened (N, L, F) window: reads every day of the lookback."""

    lstmbt_input = "windows"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X, y, sample_weight=None):
        SEEN.append((type(self).__name__, X.shape))
        self.model_ = Ridge(alpha=self.alpha).fit(X.reshape(len(X), -1), y, sample_weight=sample_weight)
        return self

    def predict(self, X):
        return self.model_.predict(X.reshape(len(X), -1))


class RowLogit(ClassifierMixin, BaseEstimator):
    """Logistic regression on the decision day's row (the default input)."""

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, X, y, sample_weight=None):
        SEEN.append((type(self).__name__, X.shape))
        self.model_ = LogisticRegression(C=self.C).fit(X, y, sample_weight=sample_weight)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class Raises(RowLogit):
    """Breaks inside fit."""

    def fit(self, X, y, sample_weight=None):
        raise RuntimeError("singular matrix")


class ShortPredict(WindowRidge):
    """Returns one prediction too few."""

    def predict(self, X):
        return super().predict(X)[:-1]


class NoProba(ClassifierMixin, BaseEstimator):
    """A classifier without predict_proba."""

    def fit(self, X, y, sample_weight=None):
        return self

    def predict(self, X):
        return np.zeros(len(X))


class Cube(WindowRidge):
    """Declares an input kind lstmbt does not have."""

    lstmbt_input = "cubes"


class NeedsArgs(WindowRidge):
    """Cannot be built with defaults."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha


not_a_class = len


# --------------------------------------------------------------------------- faults met mid-run


class ColumnPredict(WindowRidge):
    """Returns its predictions as a column, shape (N, 1)."""

    def predict(self, X):
        return super().predict(X)[:, None]


class ThreeColumns(WindowRidge):
    """Returns three values per sample, shape (N, 3)."""

    def predict(self, X):
        return np.repeat(super().predict(X)[:, None], 3, axis=1)


class StringPredict(WindowRidge):
    """Returns its predictions as strings."""

    def predict(self, X):
        return np.array([f"{v:.6f}" for v in super().predict(X)])


class DictPredict(WindowRidge):
    """Returns a dict instead of an array."""

    def predict(self, X):
        return {"prediction": super().predict(X)}


class NaNPredict(WindowRidge):
    """Returns NaN for every sample."""

    def predict(self, X):
        return np.full(len(X), np.nan)


class ProbaSumsOver(RowLogit):
    """Probabilities of up and down that sum to 1.8."""

    def predict_proba(self, X):
        return np.full((len(X), 2), 0.9)


class ExitsInFit(RowLogit):
    """Calls sys.exit(0) inside fit."""

    def fit(self, X, y, sample_weight=None):
        import sys

        sys.exit(0)


class ExitsInPredict(WindowRidge):
    """Raises SystemExit(3) inside predict."""

    def predict(self, X):
        raise SystemExit(3)


class InterruptsInFit(RowLogit):
    """A Ctrl-C that lands inside fit."""

    def fit(self, X, y, sample_weight=None):
        raise KeyboardInterrupt


class Unclonable(WindowRidge):
    """Changes its parameter in __init__, which sklearn.base.clone refuses."""

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha * 2


class Fragile(WindowRidge):
    """Exits in predict until ``Fragile.broken`` is set false: a plug-in fixed in place."""

    broken = True

    def predict(self, X):
        if type(self).broken:
            raise SystemExit(0)
        return super().predict(X)
