"""Benchmark: K seeds of W against one seed, and why seeds train side by side rather than packed.

Part 1 runs the walk-forward of W (``bench/walkforward.py``'s workload, default mode
``sequence+warm``) with one seed and with ``--members`` seeds trained side by side on the cores
this process may use (``models.threads.run_side_by_side``, one torch thread per fit), alternating
the two ``--repeats`` times, each in its own subprocess. It prints the median wall times, their
range and the ratio (goal of issue 14: 5 seeds in at most 2x one seed's time).

Part 2 times one training step of W's LSTM (and of the default run's 2 x 32 LSTM) three ways for
K networks: one network alone, K networks on threads side by side, and the K networks packed into
one block-diagonal LSTM of K times the width (the "stacked weights" route: one fused kernel, but
K^2 times the recurrent FLOPs, most of them on zeros).

    python bench/seeds.py                    # 5 seeds, 3 repeats, both parts
    python bench/seeds.py --members 3 --repeats 5 --no-steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from walkforward import FIRST_TEST, HIDDEN, LAYERS, LOOKBACK, STEP, load_returns  # noqa: E402


def run_members(seeds: list[int], folds: int, data: str) -> dict:
    """W's walk-forward once per seed, side by side; returns wall time and each seed's hit rate."""
    import pandas as pd

    from lstmbt.backtest.splits import WalkForwardSplit
    from lstmbt.backtest.walkforward import make_sample_grid, walk_forward_predict
    from lstmbt.models.estimators import LSTMRegressor
    from lstmbt.models.specs import NetSpec, TrainSettings
    from lstmbt.models.threads import cpu_budget, one_thread_per_fit, run_side_by_side

    returns = load_returns(data)
    index = pd.bdate_range("1999-01-05", periods=len(returns))
    features = pd.DataFrame({"ret_pct": returns}, index=index)
    target = features["ret_pct"].shift(-1)
    grid = make_sample_grid(features, target, LOOKBACK)
    splits = WalkForwardSplit(min_train=FIRST_TEST - LOOKBACK, step=STEP, horizon=1).split(grid.n)[:folds]
    settings = TrainSettings(lr=1e-3, weight_decay=0.0, max_epochs=5, lr_patience=10**6, clip_norm=0.0,
                             warm_epochs=2)
    net = NetSpec(hidden_size=HIDDEN, num_layers=LAYERS, dropout=0.0, head=())

    def walk(seed: int):
        model = LSTMRegressor(net=net, train=settings, device="cpu", random_state=seed, warm_start=True)
        return walk_forward_predict(model, features, target, grid, splits)[0]

    started = time.perf_counter()
    with one_thread_per_fit(cpu_budget()) as governor:
        results = run_side_by_side([lambda seed=seed: walk(seed) for seed in seeds], governor)
    wall = time.perf_counter() - started
    hits = [float(np.mean((r["y_pred"] > 0) == (r["y_true"] > 0))) for r in results]
    return {"seeds": len(seeds), "wall_s": round(wall, 2), "workers": governor.ceiling, "hit_rates": hits}


def time_steps(hidden: int, features: int, k: int, repeats: int = 60) -> dict[str, float]:
    """ms per training step (2 chunks of 123 steps, 2 layers) for K networks three ways."""
    import torch
    from torch import nn

    torch.set_num_threads(1)

    def make(width: int, inputs: int, outputs: int):
        lstm = nn.LSTM(inputs, width, num_layers=2, batch_first=True)
        head = nn.Linear(width, outputs)
        opt = torch.optim.AdamW([*lstm.parameters(), *head.parameters()], lr=1e-3, fused=True)
        x, y = torch.randn(2, 123, inputs), torch.randn(2, 64, outputs)

        def step() -> None:
            opt.zero_grad()
            out, _ = lstm(x)
            ((head(out[:, 59:]) - y) ** 2).mean().backward()
            opt.step()
        return step

    def per_step(steps: list, threads: int) -> float:
        for step in steps:
            for _ in range(5):
                step()
        buckets = [steps[i::threads] for i in range(threads)]
        started = time.perf_counter()
        workers = [threading.Thread(target=lambda b=b: [s() for _ in range(repeats) for s in b]) for b in buckets]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return (time.perf_counter() - started) / repeats * 1e3

    return {"one": round(per_step([make(hidden, features, 1)], 1), 2),
            "side_by_side": round(per_step([make(hidden, features, 1) for _ in range(k)], 2), 2),
            "packed": round(per_step([make(hidden * k, features * k, k)], 1), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=5, help="seeds of the ensemble")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each, alternating")
    parser.add_argument("--folds", type=int, default=20)
    parser.add_argument("--data", default="sp500", choices=("sp500", "planted"))
    parser.add_argument("--no-steps", action="store_true", help="skip part 2")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_members([int(s) for s in args.worker.split(",")], args.folds, args.data)))
        return
    rows: dict[int, list[dict]] = {1: [], args.members: []}
    for _ in range(args.repeats):
        for k in rows:
            seeds = ",".join(str(s) for s in range(k))
            out = subprocess.run([sys.executable, __file__, "--worker", seeds, "--folds", str(args.folds),
                                  "--data", args.data], capture_output=True, text=True, check=True, cwd=ROOT)
            rows[k].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[k][-1]), flush=True)
    walls = {k: [r["wall_s"] for r in v] for k, v in rows.items()}
    one, many = statistics.median(walls[1]), statistics.median(walls[args.members])
    print(f"\nW ({args.data}, {args.folds} folds, sequence+warm), {args.repeats} runs each on "
          f"{rows[1][0]['workers']} worker(s):")
    print(f"  1 seed : median {one:.2f} s  (range {min(walls[1]):.2f}-{max(walls[1]):.2f})")
    print(f"  {args.members} seeds: median {many:.2f} s  (range {min(walls[args.members]):.2f}-"
          f"{max(walls[args.members]):.2f})")
    print(f"  ratio {many / one:.2f}x for {args.members}x the networks (goal: <= 2x)")
    if not args.no_steps:
        print(f"\nOne training step of {args.members} networks, ms (1 torch thread per fit; side by side on 2 threads):")
        for label, hidden, features in (("W: 2 x 64, 1 input", HIDDEN, 1), ("default run: 2 x 32, 45 inputs", 32, 45)):
            t = time_steps(hidden, features, args.members)
            print(f"  {label:<32} one {t['one']:6.2f} | side by side {t['side_by_side']:6.2f} "
                  f"({t['side_by_side'] / t['one']:.2f}x) | packed block-diagonal {t['packed']:6.2f} "
                  f"({t['packed'] / t['one']:.2f}x)")


if __name__ == "__main__":
    main()
