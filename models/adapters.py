"""Runs a user's own estimator (``models.plugins``) on the walk-forward's folds."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone, is_classifier

from lstmbt.models.plugins import Plugin, PluginError, build_instance


class PluginEstimator(BaseEstimator):
    """Runs a plug-in ``estimator`` on the walk-forward's windows: it passes the decision day's
    row (``input="rows"``) or the whole window, ignores the validation tail (the plug-in stops
    early on its own if it wants to), and passes ``sample_weight`` only when there is one."""

    def __init__(self, *, estimator: Any = None, input: str = "rows", name: str = "custom") -> None:
        self.estimator = estimator
        self.input = input
        self.name = name

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
            *, sample_weight: np.ndarray | None = None) -> PluginEstimator:
        model = clone(self.estimator)
        extra = {} if sample_weight is None else {"sample_weight": sample_weight}
        try:
            model.fit(self._inputs(X), y, **extra)
        except Exception as exc:
            raise PluginError(f"plug-in model {self.name} failed in fit ({type(exc).__name__}: {exc})") from None
        self.estimator_ = model
        if is_classifier(model):
            self.classes_ = np.asarray(model.classes_)
            if set(self.classes_.tolist()) != {0, 1}:
                raise PluginError(f"plug-in model {self.name} learned classes {self.classes_.tolist()}; "
                                  "an up/down classifier must learn exactly 0 and 1")
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._checked(self.estimator_.predict(self._inputs(X)), len(X), "predict")

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        return X[:, -1, :] if self.input == "rows" else X

    def _checked(self, out: Any, n: int, method: str) -> np.ndarray:
        values = np.asarray(out, dtype=np.float64)
        if values.shape[0] != n or not np.isfinite(values).all():
            raise PluginError(f"plug-in model {self.name}'s {method} returned shape {values.shape} or non-finite "
                              f"values for {n} samples; return {n} finite values")
        return values


class PluginRegressor(RegressorMixin, PluginEstimator):
    """``PluginEstimator`` for a regressor."""


class PluginClassifier(ClassifierMixin, PluginEstimator):
    """``PluginEstimator`` for a classifier: ``predict_proba`` as well."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        proba = self._checked(self.estimator_.predict_proba(self._inputs(X)), len(X), "predict_proba")
        if proba.ndim != 2 or proba.shape[1] != 2 or (proba < 0).any() or (proba > 1).any():
            raise PluginError(f"plug-in model {self.name}'s predict_proba returned shape {proba.shape} or values "
                              "outside [0, 1]; return an (N, 2) array of probabilities")
        return proba


def plugin_estimator(plugin: Plugin) -> PluginEstimator:
    """The walk-forward estimator of ``plugin``: a default-constructed instance behind the adapter."""
    inner = build_instance(plugin.cls, plugin.spec)
    adapter = PluginClassifier if plugin.task == "classification" else PluginRegressor
    return adapter(estimator=inner, input=plugin.input, name=plugin.name)


__all__ = ["PluginEstimator", "PluginRegressor", "PluginClassifier", "plugin_estimator"]
