"""Bring your own model: a scikit-learn gradient-boosting classifier on the decision day's features,
walked forward on the same folds as lstmbt's own models.

    lstmbt run --quick --plugin-path examples --set 'model.custom=["custom_model:FlatBoost"]'
    python examples/custom_model.py [REPORT.html]     # the same from Python, via register_model

A plug-in is any scikit-learn estimator (``fit(X, y, sample_weight=None)``, ``predict``, and
``predict_proba`` for a classifier). ``lstmbt_input`` says what it reads: ``"rows"``, the decision
day's standardised feature row (N, F), or ``"windows"``, the whole lookback window (N, L, F).
A classifier runs on the up/down target; its strategy name is ``flatboost_classification``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sklearn.ensemble import HistGradientBoostingClassifier

import lstmbt


class FlatBoost(HistGradientBoostingClassifier):
    """Histogram gradient boosting on the decision day's feature row, small enough for daily data."""

    lstmbt_input = "rows"

    def __init__(self, *, max_iter: int = 100, learning_rate: float = 0.05, max_leaf_nodes: int = 15,
                 min_samples_leaf: int = 50, random_state: int = 0) -> None:
        super().__init__(max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
                         min_samples_leaf=min_samples_leaf, early_stopping=False, random_state=random_state)


def main(report_path: str = "custom-model-report.html") -> Path:
    """Register FlatBoost, run it beside the quick LSTMs, print its row, write the report."""
    lstmbt.register_model("flatboost", FlatBoost)
    result = lstmbt.run(source="sample:sp500", quick=True,
                        set={"data.start": "2014-01-01", "model.custom": ["flatboost"]})
    print(result.metrics.loc[["flatboost_classification", "buy_and_hold"], ["sharpe", "hit_rate", "verdict"]]
          .to_string())
    path = result.report(report_path)
    print(f"report: {path.resolve()}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:])
