"""Quick start: a quick lstmbt run on the embedded S&P 500 sample, its metrics, and its report.

    python examples/quickstart.py [REPORT.html]

``quick=True`` is the quick preset (``lstmbt run --quick``: a small LSTM on yearly folds), and
``data.start`` keeps the history short, so this takes seconds. Drop both for the full run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lstmbt


def main(report_path: str = "quickstart-report.html") -> Path:
    """Run, print the scorecard's main figures, write the HTML report; returns its path."""
    result = lstmbt.run(source="sample:sp500", quick=True, set={"data.start": "2014-01-01"})
    columns = ["sharpe", "sharpe_ci_low", "sharpe_ci_high", "cagr", "max_drawdown", "hit_rate", "verdict"]
    print(result.metrics[columns].to_string())
    path = result.report(report_path)
    print(f"report: {path.resolve()}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:])
