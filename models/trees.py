"""The LightGBM baselines: ``LightGBMRegressor`` and ``LightGBMClassifier``, under the same
contract as the linear twins (``models.linear``).

They read the decision day's feature row (the last row of each (N, L, F) window, as the linear
twins do), stop early on the walk-forward's purged validation tail (``early_stopping_rounds``
rounds without a lower validation loss: L2 for regression, log loss for classification), and
with ``refit=True`` fit once more on the whole usable window for the number of trees early
stopping chose. Training is deterministic on one thread (``deterministic``, ``force_row_wise``,
``n_jobs=1``), seeded by ``random_state``, so a fold gives the same trees on every machine and
fits side by side with the other models without taking their cores.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from lstmbt.models.linear import last_rows
from lstmbt.models.specs import DEFAULT_SEED, TrainSettings
from lstmbt.models.targets import check_sample_weight

#: LightGBM's settings for a small daily panel: shallow trees and a slow rate, so early stopping
#: on a validation tail of a few hundred days has room to choose
DEFAULT_PARAMS = {"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 50, "subsample": 0.8,
                  "subsample_freq": 1, "colsample_bytree": 0.8, "reg_lambda": 1.0}


class _LightGBM(BaseEstimator):
    """Shared fit/refit; subclasses give the LightGBM class and the label check."""

    def __init__(self, *, n_estimators: int = 500, early_stopping_rounds: int = 20, random_state: int = DEFAULT_SEED,
                 refit: bool = TrainSettings.refit) -> None:
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.refit = refit

    @property
    def refits(self) -> bool:
        """Whether the walk-forward should call ``refit_full`` after each ``fit`` (the ``refit`` parameter)."""
        return bool(self.refit)

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
            *, sample_weight: np.ndarray | None = None):
        """Fit on windows ``X`` (N, L, F) and labels ``y`` (N,), stopping early on (``X_val``, ``y_val``)
        when given (else ``n_estimators`` trees). ``sample_weight`` (N,), optional, weights the
        training rows only. Fitted: ``model_``, ``best_iteration_`` (trees kept), ``n_features_in_``."""
        import lightgbm  # loads LightGBM: only when a tree baseline fits

        rows, y = last_rows(X), self._labels(y)
        weight = check_sample_weight(sample_weight, len(rows))
        self.model_ = self._model(self.n_estimators)
        extra = {}
        if X_val is not None and y_val is not None:
            extra = {"eval_X": last_rows(X_val), "eval_y": self._labels(y_val),
                     "callbacks": [lightgbm.early_stopping(self.early_stopping_rounds, verbose=False)]}
        self.model_.fit(rows, y, sample_weight=weight, **extra)
        self.best_iteration_ = int(self.model_.best_iteration_ or self.n_estimators)
        self.n_features_in_ = rows.shape[1]
        return self

    def refit_full(self, X: np.ndarray, y: np.ndarray, *, sample_weight: np.ndarray | None = None):
        """Fit again on the whole usable window with the trees ``fit`` chose; returns ``self``."""
        check_is_fitted(self, "model_")
        rows = last_rows(X)
        self.model_ = self._model(self.best_iteration_)
        self.model_.fit(rows, self._labels(y), sample_weight=check_sample_weight(sample_weight, len(rows)))
        return self

    def _model(self, n_estimators: int):
        import lightgbm  # loads LightGBM: only when a tree baseline fits

        cls = lightgbm.LGBMClassifier if isinstance(self, ClassifierMixin) else lightgbm.LGBMRegressor
        return cls(n_estimators=n_estimators, random_state=int(self.random_state), n_jobs=1, deterministic=True,
                   force_row_wise=True, verbose=-1, **DEFAULT_PARAMS)

    def _labels(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64)

    def _best(self, X: np.ndarray):
        check_is_fitted(self, "model_")
        return last_rows(X), {"num_iteration": self.model_.best_iteration_ or None}


class LightGBMRegressor(RegressorMixin, _LightGBM):
    """LightGBM regression (L2) of the target on day t's features."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions in the units of ``y``, shape (N,)."""
        rows, extra = self._best(X)
        return self.model_.predict(rows, **extra).astype(np.float64)


class LightGBMClassifier(ClassifierMixin, _LightGBM):
    """LightGBM binary classification (log loss) of up (1) against down (0) on day t's features."""

    def _labels(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y)
        if not np.isin(y, (0, 1)).all():
            raise ValueError("LightGBMClassifier needs labels 0 and 1")
        return y.astype(np.int64)

    def fit(self, X, y, X_val=None, y_val=None, *, sample_weight=None):
        super().fit(X, y, X_val, y_val, sample_weight=sample_weight)
        self.classes_ = self.model_.classes_
        if len(self.classes_) != 2:
            raise ValueError(f"LightGBMClassifier needs both classes in y, found {self.classes_.tolist()}")
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, 2), columns in ``classes_`` order."""
        rows, extra = self._best(X)
        return self.model_.predict_proba(rows, **extra).astype(np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The more probable class for each window, shape (N,)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


__all__ = ["LightGBMRegressor", "LightGBMClassifier", "DEFAULT_PARAMS"]
