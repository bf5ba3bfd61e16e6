"""Linear baselines under the same contract as the LSTM estimators: ``RidgeRegressor`` and ``LogisticClassifier``.

They take the same (N, L, F) windows, already scaled per fold by the walk-forward loop, and
fit on the decision day's feature vector (the last row of each window). With the ``lags``
group in the features that vector already holds the recent history, so a linear model sees
the same information a quant would put in a regression, at a tiny fraction of the cost.
Validation windows are accepted and ignored (there is nothing to stop early), so both fit on
exactly the rows the LSTM fits on.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.utils.validation import check_is_fitted


def _last_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"expected windows of shape (N, L, F), got {X.shape}")
    return X[:, -1, :]


class RidgeRegressor(RegressorMixin, BaseEstimator):
    """Ridge regression (L2 penalty ``alpha`` on standardised features) of the target on day t's features."""

    def __init__(self, *, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> RidgeRegressor:
        """Fit on windows ``X`` (N, L, F) and targets ``y`` (N,); the validation pair is ignored."""
        self.model_ = Ridge(alpha=self.alpha).fit(_last_rows(X), np.asarray(y, dtype=np.float64))
        self.n_features_in_ = X.shape[2]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted targets, shape (N,), in the target's units."""
        check_is_fitted(self, "model_")
        return self.model_.predict(_last_rows(X))


class LogisticClassifier(ClassifierMixin, BaseEstimator):
    """L2-penalised logistic regression (inverse strength ``C``) of the up/down label on day t's features.

    A training window with a single class predicts that class's share (0 or 1) for p_up.
    """

    def __init__(self, *, C: float = 1.0) -> None:
        self.C = C

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None) -> LogisticClassifier:
        """Fit on windows ``X`` (N, L, F) and labels ``y`` (N,) in {0, 1}; the validation pair is ignored."""
        labels = np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[2]
        if len(np.unique(labels)) < 2:
            self.model_, self.constant_ = None, float(labels[0]) if len(labels) else 0.5
            return self
        self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(_last_rows(X), labels)
        self.constant_ = None
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 2): column 0 down, column 1 up."""
        check_is_fitted(self, "classes_")
        if self.model_ is None:
            p_up = np.full(len(X), self.constant_)
        else:
            p_up = self.model_.predict_proba(_last_rows(X))[:, list(self.model_.classes_).index(1)]
        return np.column_stack([1.0 - p_up, p_up])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The more probable class per window, shape (N,)."""
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)
