"""The walk-forward record of a config, for ``lstmbt predict``: the newest saved run under a root
with the same config and data (``registry.latest_matching_run``), as ``{strategy: {metric: value}}``.

It lives in campaign because it reads the run index; the core's ``backtest.forecast_text`` words it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lstmbt.backtest.campaign.registry import latest_matching_run
from lstmbt.backtest.config import RunConfig


def matching_run_metrics(root: str | Path, cfg: RunConfig,
                         data_sha256: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]] | None:
    """(the run's index record, its metrics per strategy) of the newest run under ``root`` whose
    config and data hash match, or None when there is none (or no ``root`` at all). Metrics a
    strategy lacks (NaN in the index's table) are left out of its entry."""
    if not Path(root).is_dir():
        return None
    found = latest_matching_run(root, cfg, data_sha256)
    if found is None:
        return None
    record, table = found
    metrics = {str(strategy): {str(metric): value for metric, value in table[strategy].items()
                               if not (isinstance(value, float) and math.isnan(value))}
               for strategy in table.columns}
    return dict(record), metrics
