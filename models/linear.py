"""Linear baselines under the same contract as the LSTM estimators: ``RidgeRegressor`` and ``LogisticClassifier``.

They take the same (N, L, F) windows, already scaled per fold by the walk-forward loop, and
fit on the decision day's feature vector (the last row of each window). With the ``lags``
group in the features that vector already holds the recent history, so a linear model sees
the same information a quant would put in a regression, at a tiny fraction of the cost.
Validation windows are accepted and ignored (there is nothing to stop early), so both fit on
exactly the rows the LSTM fits on. With ``refit=True`` (a run's ``train.refit``) the walk-forward
fits them once more on the whole usable window (``refit_full``), as it refits the LSTM, so a
model and its linear twin still see the same rows.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.utils.validation import check_is_fitted

from lstmbt.models.specs import DEFAULT_LINEAR_ALPHA, TrainSettings
from lstmbt.models.targets import check_sample_weight


def last_rows(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"expected windows of shape (N, L, F), got {X.shape}")
    return X[:, -1, :]


class _Refit:
    """``refits``/``refit_full``, the walk-forward's refit protocol, for models without epochs."""

    @property
    def refits(self) -> bool:
        """Whether the walk-forward should call ``refit_full`` after each ``fit`` (the ``refit`` parameter)."""
        return bool(self.refit)

    def refit_full(self, X: np.ndarray, y: np.ndarray, *, sample_weight: np.ndarray | None = None):
        """Fit again, on the whole usable window (fit samples, purge gap, validation tail); returns ``self``."""
        return self.fit(X, y, sample_weight=sample_weight)


class RidgeRegressor(_Refit, RegressorMixin, BaseEstimator):
    """Ridge regression (L2 penalty ``alpha`` on standardised features) of the target on day t's features.

    ``refit``: the walk-forward refits it on the whole usable window (see the module notes).
    """

    def __init__(self, *, alpha: float = DEFAULT_LINEAR_ALPHA, refit: bool = TrainSettings.refit) -> None:
        self.alpha = alpha
        self.refit = refit

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, *, sample_weight: np.ndarray | None = None) -> RidgeRegressor:
        """Fit on windows ``X`` (N, L, F) and targets ``y`` (N,); the validation pair is ignored.

        ``sample_weight`` (N,), optional (finite, >= 0, not all zero), goes to sklearn's ``Ridge``.
        """
        rows = last_rows(X)
        weight = check_sample_weight(sample_weight, len(rows))
        self.model_ = Ridge(alpha=self.alpha).fit(rows, np.asarray(y, dtype=np.float64), sample_weight=weight)
        self.n_features_in_ = X.shape[2]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted targets, shape (N,), in the target's units."""
        check_is_fitted(self, "model_")
        return self.model_.predict(last_rows(X))


class LogisticClassifier(_Refit, ClassifierMixin, BaseEstimator):
    """L2-penalised logistic regression (inverse strength ``C``) of the up/down label on day t's features.

    A training window with a single class (among the samples of positive weight) predicts that
    class's share (0 or 1) for p_up. ``refit``: as for ``RidgeRegressor``.
    """

    def __init__(self, *, C: float = 1.0 / DEFAULT_LINEAR_ALPHA, refit: bool = TrainSettings.refit) -> None:
        self.C = C
        self.refit = refit

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None,
            y_val: np.ndarray | None = None, *, sample_weight: np.ndarray | None = None) -> LogisticClassifier:
        """Fit on windows ``X`` (N, L, F) and labels ``y`` (N,) in {0, 1}; the validation pair is ignored.

        ``sample_weight`` (N,), optional (finite, >= 0, not all zero), goes to sklearn's
        ``LogisticRegression``; weight-0 samples do not count towards the single-class check.
        """
        rows = last_rows(X)
        labels = np.asarray(y).astype(int)
        weight = check_sample_weight(sample_weight, len(rows))
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[2]
        seen = labels if weight is None else labels[weight > 0]
        if len(np.unique(seen)) < 2:
            self.model_, self.constant_ = None, float(seen[0]) if len(seen) else 0.5
            return self
        self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(rows, labels, sample_weight=weight)
        self.constant_ = None
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 2): column 0 down, column 1 up."""
        check_is_fitted(self, "classes_")
        if self.model_ is None:
            p_up = np.full(len(X), self.constant_)
        else:
            p_up = self.model_.predict_proba(last_rows(X))[:, list(self.model_.classes_).index(1)]
        return np.column_stack([1.0 - p_up, p_up])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The more probable class per window, shape (N,)."""
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)
