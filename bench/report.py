"""Benchmark: size and render time of the HTML report for a long daily run.

Runs the quick preset on ``sample:sp500`` with a one-year first training window, so the
out-of-sample period covers about 18.6 of the sample's 20 years (both targets, every figure),
then times ``render_report`` (median of 3) and measures the page. With a run directory as
argument it measures that run instead.

    python bench/report.py                 # the long quick run
    python bench/report.py runs/<run-dir>  # an existing run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LONG_RUN = {"data.source": "sample:sp500", "split.min_train": 252, "split.step": 252}


def long_result():
    from lstmbt.backtest.config import QUICK_PRESET, RunConfig
    from lstmbt.backtest.pipeline import run

    return run(RunConfig().with_values({**QUICK_PRESET, **LONG_RUN}))


def measure(result) -> dict:
    from lstmbt.reports import render_report
    from lstmbt.reports.embed import plotly_bundle

    started = time.perf_counter()
    plotly_bundle()  # compressed once per process; counted separately
    bundle_s = time.perf_counter() - started
    times, text = [], ""
    for _ in range(3):
        started = time.perf_counter()
        text = render_report(result)
        times.append(time.perf_counter() - started)
    oos = result.manifest.get("out_of_sample", {})
    return {
        "oos_first": oos.get("first_date"), "oos_last": oos.get("last_date"), "oos_days": oos.get("days"),
        "oos_years": round(oos.get("days", 0) / 252, 1),
        "render_s_median": round(float(np.median(times)), 3), "render_s_first": round(times[0] + bundle_s, 3),
        "plotly_bundle_s": round(bundle_s, 3), "size_mb": round(len(text.encode("utf-8")) / 1e6, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", nargs="?", type=Path, help="measure this saved run instead of the long run")
    args = parser.parse_args(argv)
    if args.run_dir:
        from lstmbt.backtest.rundir import load_run

        result = load_run(args.run_dir)
    else:
        print("running the quick preset over 18.6 years out of sample...", file=sys.stderr, flush=True)
        result = long_result()
    print(json.dumps(measure(result)))


if __name__ == "__main__":
    main()
