"""Same config and seed on CPU: bit-identical predictions and metrics from two separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from helpers import TINY_VALUES, set_args

#: the tiny config from 2015, two epochs
ARGS = ["--source", "sample:sp500", "--start", "2015-01-01", *set_args({**TINY_VALUES, "train.max_epochs": 2})]


def _run(out, threads: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": threads}  # a different thread count must not change the numbers
    done = subprocess.run([sys.executable, "-m", "lstmbt", "run", *ARGS, "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_two_processes_give_bit_identical_predictions_and_metrics(tmp_path):
    _run(tmp_path / "a", "1")
    _run(tmp_path / "b", "2")
    a, b = (pd.read_parquet(tmp_path / d / "predictions.parquet") for d in ("a", "b"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    ma, mb = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("a", "b"))
    assert ma == mb
    for name in ("positions.parquet", "returns.parquet", "costs.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / name), pd.read_parquet(tmp_path / "b" / name),
                                      check_exact=True)
