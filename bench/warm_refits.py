"""Why warm-started folds keep their carried weights, and what a looser rule would cost.

Walks one of the default run's LSTMs forward (sample:sp500, the default config; ``--set``
overrides, e.g. ``train.warm_accept_z`` and ``train.warm_lr_factor``) and records the paired z
against the carried weights of each warm epoch that lowers the mean validation loss. Prints the
warm folds whose weights changed and the out-of-sample quality (hit rate, RMSE for the
regressor, Brier score for the classifier) with their standard errors. bench/RESULTS.md,
"Why warm folds kept their weights", has the figures.

    python bench/warm_refits.py --task regression --set train.warm_accept_z=2 --set train.warm_lr_factor=1
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

import lstmbt.models.training as training
from lstmbt.backtest.config import RunConfig, parse_overrides
from lstmbt.backtest.design import estimator_for, make_design, target_anchor
from lstmbt.backtest.pipeline import load_checked
from lstmbt.backtest.walkforward import walk_forward_predict
from lstmbt.models.key import own_key


def _recorder(z_values: list[float]):
    """``_clearly_better`` that also records the paired z of each epoch it is asked about."""
    original = training._clearly_better

    def recording(baseline, losses, z):
        if baseline is not None and losses is not None and len(baseline) > 1:
            diff = baseline - losses
            z_values.append(float(diff.mean() / (diff.std(ddof=1) / math.sqrt(len(diff)))))
        return original(baseline, losses, z)

    return recording


def _quality(predictions, task: str) -> dict[str, float]:
    """Hit rate and RMSE (regression) or Brier score (classification), each with its standard error."""
    y, n = predictions["y_true"].to_numpy(), len(predictions)
    if task == "regression":
        pred = predictions["y_pred"].to_numpy()
        hit = float(np.mean((pred > 0) == (y > 0)))
        sq = (pred - y) ** 2
        rmse = math.sqrt(sq.mean())
        extra = {"rmse": rmse, "rmse_se": float(sq.std(ddof=1) / math.sqrt(n) / (2 * rmse))}
    else:
        p = predictions["p_up"].to_numpy()
        hit = float(np.mean((p > 0.5) == (y > 0.5)))
        sq = (p - y) ** 2
        extra = {"brier": float(sq.mean()), "brier_se": float(sq.std(ddof=1) / math.sqrt(n))}
    return {"hit_rate": hit, "hit_rate_se": math.sqrt(hit * (1 - hit) / n), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("regression", "classification"), default="regression")
    parser.add_argument("--folds", type=int, default=0, help="first N folds only (0: all)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="section.key=value")
    args = parser.parse_args()
    config = RunConfig.resolve(overrides=parse_overrides(args.overrides))
    design = make_design(load_checked(config), config)
    h = config.target.horizon
    folds = design.horizon_folds[h][: args.folds or None]
    z_values: list[float] = []
    training._clearly_better = _recorder(z_values)  # asked only about epochs that lower the mean
    key = own_key("lstm", args.task, h, h)
    started = time.perf_counter()
    preds, log = walk_forward_predict(estimator_for(key, config), design.features,
                                      design.horizon_targets[h][args.task], design.grid, folds,
                                      target_anchor=target_anchor(design, args.task, config))
    warm = log[log["warm"]]
    zs = np.array(z_values)
    print(json.dumps({
        "task": args.task, "warm_accept_z": config.train.warm_accept_z,
        "warm_lr_factor": config.train.warm_lr_factor, "folds": len(log),
        "warm": int(len(warm)), "warm_changed": int((warm["best_epoch"] > 0).sum()),
        "cold": int((~log["warm"]).sum()), "warm_epochs_run": int(warm["epochs"].sum()),
        "epochs_lowering_val_loss": len(zs), "their_z_median": float(np.median(zs)) if len(zs) else None,
        "their_z_max": float(zs.max()) if len(zs) else None, "seconds": round(time.perf_counter() - started, 1),
        **_quality(preds, args.task)}))


if __name__ == "__main__":
    main()
