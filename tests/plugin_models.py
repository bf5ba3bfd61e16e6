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
