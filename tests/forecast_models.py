"""Plug-ins with a fixed call, importable by dotted path (``forecast_models:Up``), so a test of
``lstmbt predict`` knows each model's direction before it runs: whether the models agree is then
the test's choice, not the data's."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin


class _Fixed(ClassifierMixin, BaseEstimator):
    p_up = 0.5

    def fit(self, X, y, sample_weight=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        return np.tile([1.0 - self.p_up, self.p_up], (len(X), 1))

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)


class Up(_Fixed):
    """p_up 0.8 every day."""

    p_up = 0.8


class Down(_Fixed):
    """p_up 0.3 every day."""

    p_up = 0.3


class Fall(RegressorMixin, BaseEstimator):
    """A log return of -1% every day."""

    def fit(self, X, y, sample_weight=None):
        self.n_features_in_ = X.shape[-1]
        return self

    def predict(self, X):
        return np.full(len(X), -0.01)
