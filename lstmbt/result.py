"""``RunResult``: what ``lstmbt.run``, ``lstmbt.load``, ``lstmbt.backtest`` and ``lstmbt.tear_sheet`` return.

A thin wrapper around the core's ``lstmbt.backtest.rundir.RunResult`` (kept as ``.raw``, whose
``metrics`` stay the ``{strategy: {metric: value}}`` dict of ``metrics.json``): the metrics as a
DataFrame, the frames as they are, the HTML report, and a summary table in Jupyter.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.rundir import RunResult as CoreResult
from lstmbt.backtest.rundir import save_run, write_atomic
from lstmbt.reports import render_report, render_summary, run_pages


class RunResult:
    """The outcome of a run, an ad-hoc backtest or a tear sheet, for use in Python and Jupyter.

    Parameters
    ----------
    raw : lstmbt.backtest.rundir.RunResult
        The core result (what ``lstmbt.backtest.pipeline.run`` returns and ``save_run`` writes).

    Notes
    -----
    Every number is a fraction, not a percent (0.05 = 5%); annualised figures use the bars a year
    in ``manifest["periods_per_year"]`` (252 trading days, 365 on a 7-day calendar, or what the
    API inferred or was given) and a risk-free rate of 0. A Jupyter cell that ends with the result
    shows its scorecard.
    """

    def __init__(self, raw: CoreResult) -> None:
        self.raw = raw

    @property
    def metrics(self) -> pd.DataFrame:
        """Every metric of every strategy: one row per strategy (models first, ``buy_and_hold``
        last), one column per metric key of ``metrics.json``; NaN where a metric is undefined or
        does not apply to a strategy. ``verdict`` holds text ("beats", "inconclusive", "worse", or
        "borderline" when a bound lies within Monte-Carlo error of 0)."""
        metrics = self.raw.metrics
        keys = list(dict.fromkeys(key for entry in metrics.values() for key in entry))
        rows = [{key: _value(entry.get(key)) for key in keys} for entry in metrics.values()]
        frame = pd.DataFrame.from_records(rows, index=pd.Index(list(metrics), name="strategy"), columns=keys)
        return frame.rename_axis(columns="metric")

    @property
    def returns(self) -> pd.DataFrame:
        """Daily net returns (fractions) per strategy, dated on the bar they are earned, ``buy_and_hold`` included."""
        return self.raw.returns

    @property
    def positions(self) -> pd.DataFrame:
        """Target position per decision day (index) and strategy, in [-1, 1], decided at that day's close."""
        return self.raw.positions

    @property
    def predictions(self) -> pd.DataFrame:
        """Out-of-sample predictions, one row per model and day (date; the model key: target, model,
        horizon, family, baseline; fold, y_true, y_pred, p_up, close); empty for an ad-hoc backtest or
        a tear sheet."""
        return self.raw.predictions

    @property
    def folds(self) -> pd.DataFrame:
        """One row per model and walk-forward fold: date ranges, sizes, epochs and the test block's
        figures; empty for an ad-hoc backtest or a tear sheet."""
        return self.raw.folds

    @property
    def trades(self) -> pd.DataFrame:
        """One row per trade: strategy, direction, entry/exit date and fill price, net return, pnl
        (fraction of capital), holding days, open/closed; empty for a tear sheet."""
        return self.raw.trades

    @property
    def costs(self) -> pd.DataFrame:
        """Every strategy re-simulated at 0/5/10/20/50 bp fee per side (long frame); empty for a tear sheet."""
        return self.raw.costs

    @property
    def config(self) -> RunConfig:
        """The fully resolved run config (for an ad-hoc backtest, its ``backtest`` section holds the costs)."""
        return self.raw.config

    @property
    def manifest(self) -> dict[str, Any]:
        """Provenance: versions, seed, data source and range, out-of-sample range, timings, warnings."""
        return self.raw.manifest

    def report(self, path: str | Path | None = None) -> str | Path:
        """The self-contained HTML report (the same page ``lstmbt report`` writes).

        Parameters
        ----------
        path : str or Path, optional
            Where to write it. The file is written atomically (a temporary sibling, then a rename).

        Returns
        -------
        str or Path
            The HTML text when ``path`` is None, else ``path`` as a Path.
        """
        html = render_report(self.raw)
        if path is None:
            return html
        return write_atomic(path, html)

    def save(self, out: str | Path) -> Path:
        """Write the run directory (``config.toml``, ``metrics.json``, the parquet frames,
        ``report.html``, ...) to ``out``, which must not exist yet; as ``lstmbt run --out`` does.
        Nothing is left behind if writing fails. Returns ``out`` as a Path; ``lstmbt.load(out)`` reads it back."""
        return save_run(self.raw, out, pages=run_pages(self.raw))

    def _repr_html_(self) -> str:
        """The scorecard: each strategy's verdict, Sharpe with its interval, CAGR, alpha, drawdown and hit rate."""
        return render_summary(self.raw)

    def __repr__(self) -> str:
        period = self.manifest.get("out_of_sample", {})
        source = self.manifest.get("data", {}).get("source", self.config.data.source)
        return (f"<lstmbt.RunResult {source}: {len(self.raw.metrics)} strategies, "
                f"{period.get('first_date', '?')} to {period.get('last_date', '?')}>")


def _value(value: Any) -> Any:
    """None (JSON null: an undefined metric) as NaN, so numeric columns stay numeric."""
    return math.nan if value is None else value


__all__ = ["RunResult"]
