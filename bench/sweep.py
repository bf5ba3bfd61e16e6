"""Signal-only sweep speed: one training trial, then >= 50 signal-only trials scored from its predictions.

Runs ``lstmbt sweep`` twice on the S&P 500 sample: the first run trains (quick preset), the
second (``--resume``, a fresh process) only re-scores, so its wall time is the cost of a
signal-only sweep over saved predictions. Prints the figures and the DSR/PBO the sweep reported.

    .venv/bin/python bench/sweep.py [--out runs/bench-sweep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

SWEEP = """\
[sweep]
search = "grid"
quick = true
metric = "sharpe"

[params]
"strategy.threshold" = [0.0, 0.0005, 0.001, 0.002, 0.004]
"strategy.cutoff" = [0.5, 0.52, 0.55]
"strategy.long_short" = [false, true]
"backtest.fee_rate" = [0.0005, 0.001]
"""


def _lstmbt(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("lstmbt")), *args], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-sweep"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sweep_file = args.out.parent / "bench-sweep.toml"
    sweep_file.write_text(SWEEP, encoding="utf-8")
    first = _lstmbt("sweep", "--config", str(sweep_file), "--out", str(args.out))
    rescore = _lstmbt("sweep", "--resume", str(args.out))
    overfit = json.loads((args.out / "overfit.json").read_text(encoding="utf-8"))
    import pandas as pd

    summary = pd.read_parquet(args.out / "summary.parquet")
    figures = {
        "trials": int(summary["trial"].nunique()), "rows": len(summary),
        "training_trials": int(summary["training_trial"].nunique()),
        "first_run_s": round(first, 1), "rescore_process_s": round(rescore, 1),
        "signal_only_scoring_s": overfit["timings_s"].get("signal_only"),
        "dsr": overfit["dsr"], "pbo": overfit["pbo"], "n_distinct": overfit["n_distinct"],
        "best": summary.iloc[0][["strategy", "sharpe", "bh_sharpe"]].to_dict(),
    }
    print(json.dumps(figures, default=str))
    print(overfit["dsr_sentence"])
    print(overfit["pbo_sentence"])


if __name__ == "__main__":
    main()
