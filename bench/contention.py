"""A `--quick` run alone, and while a second `lstmbt run --quick` competes for the same cores.

    python bench/contention.py [--repeats 3]

The competitor is started by this script with default settings, as a user would start a second
study, and restarted whenever it finishes, so the measured run shares the machine from its first
second to its last. Prints each run's wall time, the medians and ranges, and the ratio of the
contended median to the alone median. A fair share of the cores would make it 2x; the goal is at
most 2.5x. Every fit computes on one torch thread and a run trains its models side by side on the
free cores (``models.threads``); before that, both runs spread each fit over every core, and this
benchmark measured 7.3x (bench/RESULTS.md keeps the history). Run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LSTMBT = str(Path(sys.executable).with_name("lstmbt"))
ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def timed_run(out: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run([LSTMBT, "run", "--quick", "--out", str(out)], capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"lstmbt run --quick failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    return elapsed


def contended_run(out: Path, scratch: Path, head_start_s: float, env: dict[str, str]) -> tuple[float, list[str]]:
    """The measured run's wall time while competitors run back to back (both with ``env``); its notes."""
    counter = 0

    def start_competitor() -> subprocess.Popen:
        nonlocal counter
        counter += 1
        return subprocess.Popen([LSTMBT, "run", "--quick", "--out", str(scratch / f"rival-{counter}")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    rival = start_competitor()
    time.sleep(head_start_s)  # the competitor is past loading and training when the measured run starts
    started = time.perf_counter()
    measured = subprocess.Popen([LSTMBT, "run", "--quick", "--out", str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
    while measured.poll() is None:
        if rival.poll() is not None:
            rival = start_competitor()
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    rival.kill()
    rival.wait()
    _, err = measured.communicate()
    if measured.returncode != 0:
        sys.exit(f"the measured run failed ({measured.returncode}): {err.strip().splitlines()[-1:]}")
    return elapsed, [line for line in err.splitlines() if line.startswith("note: other processes")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs per condition (default 3)")
    ap.add_argument("--head-start", type=float, default=5.0, help="seconds the competitor runs first")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="lstmbt-contention-"))
    try:
        alone = [timed_run(scratch / f"alone-{i}") for i in range(args.repeats)]
        contended, notes = [], []
        for i in range(args.repeats):
            seconds, lines = contended_run(scratch / f"busy-{i}", scratch, args.head_start, ENV)
            contended.append(seconds)
            notes += lines
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med_alone, med_busy = statistics.median(alone), statistics.median(contended)
    print(f"alone:      {', '.join(f'{s:.1f}' for s in alone)} s; median {med_alone:.1f} s "
          f"(range {min(alone):.1f}-{max(alone):.1f})")
    print(f"contended:  {', '.join(f'{s:.1f}' for s in contended)} s; median {med_busy:.1f} s "
          f"(range {min(contended):.1f}-{max(contended):.1f})")
    print(f"slowdown:   {med_busy / med_alone:.2f}x the alone median (fair share 2.0x, goal <= 2.5x); "
          f"per run {min(contended) / med_alone:.2f}-{max(contended) / med_alone:.2f}x")
    print(f"notes seen: {len(notes)} of {args.repeats} contended runs said they trained fewer models at once"
          + (f", e.g. {notes[0]!r}" if notes else ""))


if __name__ == "__main__":
    main()
