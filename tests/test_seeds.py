"""Seeds of an ensemble (``train.seeds``) train side by side and equal separate single-seed fits."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch

from lstmbt.backtest.config import ConfigError, RunConfig
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.walkforward import combine_seeds
from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.specs import NetSpec, TrainSettings
from helpers import TINY_SPX

pytestmark = pytest.mark.filterwarnings("ignore::lstmbt.models.threads.ContentionWarning")  # the machine may be busy

#: dropout between two LSTM layers and before the head: the masks must come from each fit's own generator
DROPOUT = {**TINY_SPX, "model.num_layers": 2, "model.dropout": 0.3, "model.head": [4], "train.max_epochs": 2}


def _windows(n: int = 260, lookback: int = 6, features: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    series = np.random.default_rng(seed).standard_normal((n + lookback - 1, features)).astype(np.float32)
    x = np.lib.stride_tricks.sliding_window_view(series, lookback, axis=0).transpose(0, 2, 1)
    return np.ascontiguousarray(x), series[lookback - 1:, 0].astype(np.float64)


def test_an_ensemble_run_equals_separate_single_seed_runs():
    seeds = (3, 8)
    ensemble = run(RunConfig().with_values({**DROPOUT, "train.seeds": list(seeds)}), threads=2)
    singles = {seed: run(RunConfig().with_values({**DROPOUT, "train.seed": seed}), threads=1) for seed in seeds}
    for name in ("lstm_regression", "lstm_classification"):
        mine = ensemble.predictions[ensemble.predictions["model"] == name].reset_index(drop=True)
        alone = {seed: r.predictions[r.predictions["model"] == name].reset_index(drop=True)
                 for seed, r in singles.items()}
        for seed in seeds:  # every seed's prediction is bit for bit that of its own run
            np.testing.assert_array_equal(mine[f"y_pred_seed{seed}"], alone[seed]["y_pred"])
            np.testing.assert_array_equal(mine[f"p_up_seed{seed}"], alone[seed]["p_up"])
        if name == "lstm_classification":
            mean = (alone[3]["p_up"] + alone[8]["p_up"]) / 2
            np.testing.assert_allclose(mine["p_up"], mean, rtol=0, atol=1e-15)
            np.testing.assert_array_equal(mine["y_pred"], (mean > 0.5).astype(float))
        else:
            np.testing.assert_allclose(mine["y_pred"], (alone[3]["y_pred"] + alone[8]["y_pred"]) / 2, rtol=0,
                                       atol=1e-15)
        value = "p_up" if name == "lstm_classification" else "y_pred"
        assert not np.array_equal(alone[3][value], alone[8][value])  # the seeds really differ
    linear = ensemble.predictions[ensemble.predictions["model"] == "ridge_regression"]
    assert linear["y_pred_seed3"].isna().all()  # the linear baselines train once


def test_an_ensemble_run_repeats_bit_for_bit():
    config = RunConfig().with_values({**DROPOUT, "train.seeds": [0, 1, 2]})
    first, second = run(config, threads=2), run(config, threads=2)
    pd.testing.assert_frame_equal(first.predictions, second.predictions, check_exact=True)
    folds = first.folds[first.folds["model"] == "lstm_regression"]
    assert (folds["seeds"] == 3).all()


def test_fits_on_parallel_threads_equal_fits_one_after_another():
    x, y = _windows()
    settings = TrainSettings(max_epochs=3, chunk_len=16)
    spec = NetSpec(hidden_size=8, num_layers=2, dropout=0.4, head=(4,))

    def fit(seed: int, cls=LSTMRegressor) -> np.ndarray:
        labels = (y > 0).astype(int) if cls is LSTMClassifier else y
        model = cls(net=spec, train=settings, device="cpu", random_state=seed).fit(x[:200], labels[:200],
                                                                                   x[200:], labels[200:])
        return model.predict_proba(x)[:, 1] if cls is LSTMClassifier else model.predict(x)

    jobs = [(seed, cls) for seed in (0, 1, 2) for cls in (LSTMRegressor, LSTMClassifier)]
    alone = [fit(seed, cls) for seed, cls in jobs]
    side_by_side: list = [None] * len(jobs)
    workers = [threading.Thread(target=lambda i=i: side_by_side.__setitem__(i, fit(*jobs[i])))
               for i in range(len(jobs))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for one, other in zip(alone, side_by_side):
        np.testing.assert_array_equal(one, other)


def test_a_fit_leaves_the_global_rng_alone():
    x, y = _windows()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    LSTMRegressor(net=NetSpec(hidden_size=4, num_layers=2, dropout=0.5), train=TrainSettings(max_epochs=1),
                  device="cpu").fit(x, y)
    assert torch.equal(torch.get_rng_state(), state)


def test_combining_seeds_means_their_predictions():
    dates = pd.date_range("2020-01-01", periods=3)
    log = pd.DataFrame({"fold": [0], "epochs": [2], "fit_seconds": [1.0], "train_steps": [10], "eval_steps": [4]})

    def frame(p_up: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"date": dates, "fold": 0, "y_true": [1.0, 0.0, 1.0],
                             "y_pred": (np.array(p_up) > 0.5).astype(float), "p_up": p_up})

    preds, folds = combine_seeds({0: (frame([0.9, 0.4, 0.45]), log), 7: (frame([0.3, 0.2, 0.6]), log)})
    np.testing.assert_allclose(preds["p_up"], [0.6, 0.3, 0.525])
    assert preds["y_pred"].tolist() == [1.0, 0.0, 1.0]
    assert preds["p_up_seed7"].tolist() == [0.3, 0.2, 0.6]
    assert folds["fit_seconds"].tolist() == [2.0] and folds["train_steps"].tolist() == [20]
    assert folds["epochs"].tolist() == [2] and folds["seeds"].tolist() == [2]
    alone, alone_log = combine_seeds({0: (frame([0.9, 0.4, 0.45]), log)})
    assert "p_up_seed0" not in alone and "seeds" not in alone_log


@pytest.mark.parametrize("seeds, message", [([1, 1], "repeats a seed"), ([0, -1], "outside numpy's seed range"),
                                            (list(range(65)), "at most 64")])
def test_bad_seed_lists_are_refused_with_the_fix(seeds, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig().with_values({"train.seeds": seeds})


def test_an_ensemble_run_checkpoints_every_seed_and_resumes_to_the_same_result(tmp_path):
    from lstmbt.backtest.checkpoint import saved_folds

    config = RunConfig().with_values({**TINY_SPX, "train.seeds": [4, 9]})
    first = run(config, threads=2, checkpoint=tmp_path / "folds")
    done, total = saved_folds(tmp_path / "folds")
    n_folds = int(first.folds["fold"].nunique())
    assert done == total == (2 * 2 + 2) * n_folds  # two LSTMs x two seeds, and the two linear baselines
    assert sorted(p.name for p in (tmp_path / "folds" / "lstm_regression").iterdir()) == ["seed4", "seed9"]
    again = run(config, threads=1, checkpoint=tmp_path / "folds")  # every fold read back
    pd.testing.assert_frame_equal(first.predictions, again.predictions, check_exact=True)
