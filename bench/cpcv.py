"""Benchmark: what CPCV costs on the default data, next to the default run's walk-forward.

Runs the default config (S&P 500 sample, both LSTMs and the linear twins) with
``split.scheme = "cpcv"`` and ``--groups``/``--test-groups`` (default 6 and 2: 15 splits, 5 paths)
``--repeats`` times, each in its own subprocess on the cores this process may use, and prints the
median and range of the walk-forward time, the CPCV training time, the time to backtest the paths
and the whole run, and the CPCV share of the run.

    python bench/cpcv.py                       # 6 groups, 2 tested, 3 repeats
    python bench/cpcv.py --groups 4 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.pipeline import run
from lstmbt.models.threads import default_threads
config = RunConfig().with_values({"split.scheme": "cpcv", "split.groups": %d, "split.test_groups": %d})
started = time.perf_counter()
result = run(config, threads=default_threads())
total = time.perf_counter() - started
t = result.manifest["timings_s"]
print(json.dumps({"total": total, "walkforward": t["walkforward"], "cpcv_training": result.cpcv["timings_s"]["training"],
                  "cpcv_paths": result.cpcv["timings_s"]["paths"], "splits": result.cpcv["settings"]["splits"],
                  "paths": result.cpcv["settings"]["paths"],
                  "sharpe_median": {k: v["cpcv_sharpe_median"] for k, v in result.cpcv["summary"].items()}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=6)
    parser.add_argument("--test-groups", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for i in range(args.repeats):
        out = subprocess.run([sys.executable, "-c", CHILD % (args.groups, args.test_groups)], cwd=ROOT,
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"run {i + 1}: " + ", ".join(f"{k} {runs[-1][k]:.1f} s" for k in
                                         ("walkforward", "cpcv_training", "cpcv_paths", "total")), flush=True)
    first = runs[0]
    print(f"\nCPCV with {args.groups} groups, {args.test_groups} tested: {first['splits']} splits, "
          f"{first['paths']} paths; {args.repeats} runs (median, range):")
    for key in ("walkforward", "cpcv_training", "cpcv_paths", "total"):
        values = [r[key] for r in runs]
        print(f"  {key:14s} {statistics.median(values):7.1f} s  ({min(values):.1f} to {max(values):.1f})")
    share = statistics.median([(r["cpcv_training"] + r["cpcv_paths"]) / r["total"] for r in runs])
    print(f"  CPCV share of the run: {share:.0%}")
    print("  path Sharpe medians of the first run: " + ", ".join(f"{k} {v:.2f}" for k, v in first["sharpe_median"].items()))


if __name__ == "__main__":
    main()
