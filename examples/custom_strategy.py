"""A strategy of your own: long when the classifier's p_up is above 0.55, short below 0.45, flat
between; a regression model goes long when it predicts a rise and flat otherwise.

From the command line, naming this folder so that ``custom_strategy`` can be imported (plug-ins
are never imported from the working directory unless it is named)::

    lstmbt run --quick --plugin-path examples --set strategy.custom=custom_strategy:p_up_band

or with a 10% volatility target, from Python, as this script does::

    python examples/custom_strategy.py [REPORT.html]

The rule gets one model's predictions and the prices up to the day it decides, and returns a
position for every row; lstmbt keeps the last one, the position for that day, and fills it on the
next bar. See "Bring your own strategy" in the README.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

import lstmbt

RULE = "custom_strategy:p_up_band"


def p_up_band(predictions: pd.DataFrame, prices: pd.DataFrame) -> pd.Series:
    """Target positions in [-1, 1] on ``predictions.index``.

    ``predictions["p_up"]``: a classifier's probability of an up move (NaN for regression models);
    ``predictions["y_pred"]``: a regression model's forecast (here a log return).
    """
    p_up, y_pred = predictions["p_up"], predictions["y_pred"]
    by_classifier = np.where(p_up > 0.55, 1.0, np.where(p_up < 0.45, -1.0, 0.0))
    by_regression = np.where(y_pred > 0, 1.0, 0.0)
    return pd.Series(np.where(p_up.isna(), by_regression, by_classifier), index=predictions.index)


def main(report_path: str = "custom-strategy-report.html") -> Path:
    """A quick run with the rule and a volatility target; prints its figures, writes the report."""
    result = lstmbt.run(source="sample:sp500", quick=True,
                        set={"data.start": "2014-01-01", "strategy.custom": RULE, "strategy.vol_target": 0.10})
    print(result.metrics[["sharpe", "ann_volatility", "exposure", "verdict"]].to_string())
    print(f"rule: {result.manifest['strategy']['function']}")
    path = result.report(report_path)
    print(f"report: {path.resolve()}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:])
