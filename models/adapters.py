"""Runs a user's own estimator (``models.plugins``) on the walk-forward's folds, and holds it to
the protocol.

Whatever the plug-in does when it is copied (``sklearn.base.clone``), fitted or asked to predict
ends in one ``PluginError`` line naming it (its model name and its entry in ``model.custom``),
what it did or returned, and what was expected: an exception or ``sys.exit`` (``SystemExit`` of
any code) inside its code, predictions of the wrong type, shape or count, non-finite values, or
probabilities outside [0, 1] or whose rows do not sum to 1 within ``PROBA_TOLERANCE``. Only
``KeyboardInterrupt`` (Ctrl-C, and SIGTERM, which ``backtest.interrupts`` raises as one) passes
through untouched, so an interrupt still stops a run.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone, is_classifier

from lstmbt.models.plugins import Plugin, PluginError, build_instance

#: how far a row of ``predict_proba`` may sum from 1 (absolute, i.e. relative to the sum 1): float32
#: rounding of a softmax stays below 1e-6, a plug-in that mixes up its columns does not
PROBA_TOLERANCE = 1e-6
_CLONE_FIX = ("sklearn.base.clone must be able to copy it: store every __init__ parameter unchanged under its "
              "own name (subclass sklearn's BaseEstimator), and compute anything else in fit")


class PluginEstimator(BaseEstimator):
    """Runs a plug-in ``estimator`` on the walk-forward's windows: it passes the decision day's
    row (``input="rows"``) or the whole window, ignores the validation tail (the plug-in stops
    early on its own if it wants to), and passes ``sample_weight`` only when there is one.
    ``name``: the model's strategy name; ``spec``: its ``model.custom`` entry (both for messages)."""

    def __init__(self, *, estimator: Any = None, input: str = "rows", name: str = "custom", spec: str = "") -> None:
        self.estimator = estimator
        self.input = input
        self.name = name
        self.spec = spec

    def __sklearn_clone__(self) -> PluginEstimator:
        # the walk-forward copies the adapter per fold; the plug-in itself is copied in fit, under the guard
        return type(self)(**self.get_params(deep=False))

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
            *, sample_weight: np.ndarray | None = None) -> PluginEstimator:
        model = self._call("clone", lambda: clone(self.estimator), _CLONE_FIX)
        extra = {} if sample_weight is None else {"sample_weight": sample_weight}
        self._call("fit", lambda: model.fit(self._inputs(X), y, **extra))
        self.estimator_ = model
        if is_classifier(self):  # the adapter's kind is the task the config resolved for the plug-in
            classes = self._call("fit", lambda: np.asarray(model.classes_), "set classes_ in fit")
            if classes.ndim != 1 or classes.dtype.kind not in "biuf" or sorted(classes.tolist()) != [0, 1]:
                raise PluginError(f"{self._who()} learned classes {classes.tolist()}; an up/down classifier must "
                                  "learn exactly 0 and 1")
            self.classes_ = classes
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self._call("predict", lambda: self.estimator_.predict(self._inputs(X)))
        return self._checked(out, (len(X),), "predict", f"one finite number per sample, shape ({len(X)},)")

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        return X[:, -1, :] if self.input == "rows" else X

    def _who(self) -> str:
        return f"plug-in model {self.name}" + (f" ({self.spec})" if self.spec else "")

    def _call(self, method: str, step: Callable[[], Any], fix: str = "") -> Any:
        """``step()``, the plug-in's ``method`` at work; whatever it raises or exits with is a
        ``PluginError`` naming the plug-in (``KeyboardInterrupt`` is neither, and passes)."""
        try:
            return step()
        except SystemExit as exc:
            raise PluginError(f"{self._who()} called sys.exit({exc.code!r}) in {method}; a plug-in must return or "
                              "raise, never exit the process") from None
        except Exception as exc:  # the user's code: whatever it raises is theirs to fix
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            fix = fix or f"fix its {method} (call it on a small array to debug)"
            raise PluginError(f"{self._who()} failed in {method} ({detail}); {fix}") from None

    def _checked(self, out: Any, shape: tuple[int, ...], method: str, expected: str) -> np.ndarray:
        """``out`` as float64 of ``shape``, or a PluginError saying what came back and what was expected."""
        try:
            values = np.asarray(out)
        except Exception:  # ragged lists and other objects numpy cannot stack
            values = None
        if values is None or values.dtype.kind not in "biuf" or values.shape != shape:
            raise PluginError(f"{self._who()}'s {method} returned {_describe(out, values)} for {_samples(shape[0])}; "
                              f"expected {expected}")
        values = values.astype(np.float64)
        bad = int((~np.isfinite(values)).sum())
        if bad:
            raise PluginError(f"{self._who()}'s {method} returned {bad} non-finite values (NaN or inf) of "
                              f"{values.size} for {_samples(shape[0])}; expected {expected}")
        return values


class PluginRegressor(RegressorMixin, PluginEstimator):
    """``PluginEstimator`` for a regressor."""


class PluginClassifier(ClassifierMixin, PluginEstimator):
    """``PluginEstimator`` for a classifier: ``predict_proba`` as well, checked to be an (N, 2)
    array of probabilities in [0, 1] whose rows sum to 1 within ``PROBA_TOLERANCE``."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        n = len(X)
        expected = f"a ({n}, 2) array of probabilities in [0, 1], columns in classes_ order, each row summing to 1"
        out = self._call("predict_proba", lambda: self.estimator_.predict_proba(self._inputs(X)))
        proba = self._checked(out, (n, 2), "predict_proba", expected)
        outside = int(((proba < 0) | (proba > 1)).sum())
        if outside:
            raise PluginError(f"{self._who()}'s predict_proba returned {outside} values outside [0, 1] (from "
                              f"{proba.min():g} to {proba.max():g}); expected {expected}")
        sums = proba.sum(axis=1)
        off = np.abs(sums - 1.0) > PROBA_TOLERANCE
        if off.any():
            worst = float(sums[np.argmax(np.abs(sums - 1.0))])
            raise PluginError(f"{self._who()}'s predict_proba returned {int(off.sum())} of {n} rows that do not sum "
                              f"to 1 (one sums to {worst:.6g}; tolerance {PROBA_TOLERANCE:g}); expected {expected}")
        return proba


def _describe(out: Any, values: np.ndarray | None) -> str:
    """What a plug-in returned, in a few words: its type, and its shape and dtype when it has them."""
    kind = type(out).__name__
    if values is None or values.dtype == object and values.ndim == 0:
        return f"a {kind}"
    what = "an array" if isinstance(out, np.ndarray) else f"a {kind}"
    return f"{what} of shape {values.shape} and dtype {values.dtype}"


def _samples(n: int) -> str:
    return f"{n} sample" + ("" if n == 1 else "s")


def plugin_estimator(plugin: Plugin) -> PluginEstimator:
    """The walk-forward estimator of ``plugin``: a default-constructed instance behind the adapter."""
    inner = build_instance(plugin.cls, plugin.spec)
    adapter = PluginClassifier if plugin.task == "classification" else PluginRegressor
    return adapter(estimator=inner, input=plugin.input, name=plugin.name, spec=plugin.spec)


__all__ = ["PluginEstimator", "PluginRegressor", "PluginClassifier", "plugin_estimator", "PROBA_TOLERANCE"]
