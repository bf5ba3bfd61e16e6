"""Workload W through darts, run inside the benchmark's own darts venv (darts is not a dependency).

Prints one JSON line. Invoked by ``bench/walkforward.py``; the inputs arrive as an .npy file of
daily log returns in percent, so both sides see the same numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--returns", required=True)
    parser.add_argument("--first-test", type=int, required=True, help="index of the first predicted return")
    parser.add_argument("--step", type=int, default=126)
    parser.add_argument("--lookback", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-test", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch
    from darts import TimeSeries
    from darts.models import BlockRNNModel

    if args.threads:
        torch.set_num_threads(args.threads)
    returns = np.load(args.returns).astype(np.float32)
    end = args.first_test + args.n_test
    series = TimeSeries.from_values(returns[:end])
    model = BlockRNNModel(
        input_chunk_length=args.lookback, output_chunk_length=1, model="LSTM", hidden_dim=64, n_rnn_layers=2,
        dropout=0.0, batch_size=64, n_epochs=args.epochs, optimizer_kwargs={"lr": 1e-3}, random_state=args.seed,
        pl_trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False, "logger": False,
                           "enable_model_summary": False, "enable_checkpointing": False},
    )
    started = time.perf_counter()
    forecasts = model.historical_forecasts(series, start=args.first_test, forecast_horizon=1, stride=1,
                                           retrain=args.step, last_points_only=True, verbose=False)
    wall = time.perf_counter() - started
    pred = forecasts.values().ravel().astype(np.float64)
    actual = returns[args.first_test:end].astype(np.float64)
    print(json.dumps({
        "mode": "darts", "seed": args.seed, "wall_s": round(wall, 2), "n_pred": int(len(pred)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "hit_rate": float(np.mean((pred > 0) == (actual > 0))),
        "rmse": float(np.sqrt(np.mean((pred - actual) ** 2))),
        "rmse_zero": float(np.sqrt(np.mean(actual**2))),
        "base_rate": float(np.mean(actual > 0)),
    }))


if __name__ == "__main__":
    main()
