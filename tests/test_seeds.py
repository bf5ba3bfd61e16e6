"""Seeds of an ensemble (``train.seeds``) train side by side and equal separate single-seed fits; each
seed is scored as its own single-seed run (``backtest.seeds``), saved and loaded back."""

from __future__ import annotations

import math
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from lstmbt.backtest.config import ConfigError, RunConfig
from lstmbt.backtest.deflated import deflated_sharpe_ratio, sharpe_per_period
from lstmbt.backtest.pipeline import run
from lstmbt.backtest.readback import DamagedFileError
from lstmbt.backtest.rundir import RUN_FILES, SEED_FILES, RunResult, json_text, load_run, save_run
from lstmbt.backtest.seeds import FOLD_FIGURES, SPREAD_METRICS, SeedScore, seed_summary
from lstmbt.backtest.significance import probabilistic_sharpe_ratio
from lstmbt.backtest.walkforward import combine_seeds
from lstmbt.models.estimators import LSTMClassifier, LSTMRegressor
from lstmbt.models.key import KEY_COLUMNS
from lstmbt.models.specs import NetSpec, TrainSettings
from helpers import TINY_SPX

pytestmark = pytest.mark.filterwarnings("ignore::lstmbt.models.threads.ContentionWarning")  # the machine may be busy

#: dropout between two LSTM layers and before the head: the masks must come from each fit's own generator
DROPOUT = {**TINY_SPX, "model.num_layers": 2, "model.dropout": 0.3, "model.head": [4], "train.max_epochs": 2}
SEEDS = (3, 8)


def _windows(n: int = 260, lookback: int = 6, features: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    series = np.random.default_rng(seed).standard_normal((n + lookback - 1, features)).astype(np.float32)
    x = np.lib.stride_tricks.sliding_window_view(series, lookback, axis=0).transpose(0, 2, 1)
    return np.ascontiguousarray(x), series[lookback - 1:, 0].astype(np.float64)


@pytest.fixture(scope="module")
def ensemble_and_singles() -> tuple[RunResult, dict[int, RunResult]]:
    """A run with seeds 3 and 8, and the two single-seed runs of those seeds (``train.seed = S``)."""
    ensemble = run(RunConfig().with_values({**DROPOUT, "train.seeds": list(SEEDS)}), threads=2)
    singles = {seed: run(RunConfig().with_values({**DROPOUT, "train.seed": seed}), threads=1) for seed in SEEDS}
    return ensemble, singles


def test_an_ensemble_run_equals_separate_single_seed_runs(ensemble_and_singles):
    seeds = SEEDS
    ensemble, singles = ensemble_and_singles
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


def test_an_ensemble_is_seeded_as_the_single_seed_run_of_its_first_seed(ensemble_and_singles):
    """The run's seed is the first of train.seeds: the manifest says so, and every bootstrap of the
    baselines (trained once, identically) equals that of the single-seed run of seed 3, not of 8."""
    ensemble, singles = ensemble_and_singles
    assert (ensemble.manifest["seed"], ensemble.manifest["seeds"]) == (3, [3, 8])
    assert "the first, 3, is the run's seed" in ensemble.manifest["seed_rule"]
    for name in ("ridge_regression", "logistic_classification"):
        assert ensemble.metrics[name] == singles[3].metrics[name]
        assert ensemble.metrics[name]["sharpe_ci_low"] != singles[8].metrics[name]["sharpe_ci_low"]


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


# --------------------------------------------------------------------------- each seed scored as its own run


def test_each_seed_is_scored_exactly_as_its_own_single_seed_run(ensemble_and_singles):
    ensemble, singles = ensemble_and_singles
    models = ensemble.seeds["models"]
    assert list(models) == ["lstm_regression", "lstm_classification"]  # networks only: the baselines train once
    assert ensemble.seeds["seeds"] == list(SEEDS)
    for name, entry in models.items():
        for seed, single in singles.items():  # every figure, significance and verdict included, bit for bit
            assert json_text(entry["metrics"][str(seed)]) == json_text(single.metrics[name]), (name, seed)
            folds = single.folds[single.folds["model"] == name]
            for figure in FOLD_FIGURES:
                assert [f[figure]["by_seed"][str(seed)] for f in entry["folds"]] == folds[figure].tolist()
        verdicts = [single.metrics[name]["verdict"] for single in singles.values()]
        assert entry["verdict"]["ensemble"] == ensemble.metrics[name]["verdict"]
        assert entry["verdict"]["holds"] == verdicts.count(ensemble.metrics[name]["verdict"])
        sharpes = {seed: single.metrics[name]["sharpe"] for seed, single in singles.items()
                   if math.isfinite(single.metrics[name]["sharpe"])}  # a seed that never holds has none
        assert sharpes, name
        assert entry["summary"]["sharpe"] == {"median": float(np.median(list(sharpes.values()))),
                                              "min": min(sharpes.values()), "max": max(sharpes.values())}
        best = max(sharpes, key=sharpes.get)
        trials = np.column_stack([singles[s].returns[name].to_numpy() for s in SEEDS])
        assert entry["best_seed"]["seed"] == best and entry["best_seed"]["n_trials"] == len(SEEDS)
        assert entry["best_seed"]["dsr"] == pytest.approx(
            deflated_sharpe_ratio(singles[best].returns[name].to_numpy(), len(SEEDS),
                                  float(np.var(sharpe_per_period(trials), ddof=1))), rel=1e-12, nan_ok=True)


def test_the_ensemble_predicts_the_mean_of_its_saved_per_seed_predictions(ensemble_and_singles):
    ensemble, singles = ensemble_and_singles
    long = ensemble.seed_predictions
    assert list(long.columns) == ["date", *KEY_COLUMNS, "fold", "seed", "y_true", "y_pred", "p_up"]
    assert set(long["model"]) == {"lstm_regression", "lstm_classification"} and set(long["seed"]) == set(SEEDS)
    for name, value in (("lstm_regression", "y_pred"), ("lstm_classification", "p_up")):
        mine = ensemble.predictions[ensemble.predictions["model"] == name].reset_index(drop=True)
        per_seed = {seed: long[(long["model"] == name) & (long["seed"] == seed)].reset_index(drop=True)
                    for seed in SEEDS}
        for seed, frame in per_seed.items():  # the saved rows are each single-seed run's own
            alone = singles[seed].predictions
            np.testing.assert_array_equal(frame[value], alone.loc[alone["model"] == name, value])
            assert frame["date"].equals(mine["date"]) and frame["fold"].equals(mine["fold"])
        mean = np.mean([frame[value].to_numpy() for frame in per_seed.values()], axis=0)
        np.testing.assert_allclose(mine[value], mean, rtol=0, atol=1e-15)


def test_the_seed_files_are_saved_and_load_back(ensemble_and_singles, tmp_path):
    ensemble, singles = ensemble_and_singles
    saved = save_run(ensemble, tmp_path / "ensemble")
    assert sorted(p.name for p in saved.iterdir()) == sorted(set(RUN_FILES + SEED_FILES) - {"report.html"})
    back = load_run(saved)
    assert json_text(back.seeds) == json_text(ensemble.seeds)
    pd.testing.assert_frame_equal(back.seed_predictions, ensemble.seed_predictions, check_exact=True)
    single = load_run(save_run(singles[3], tmp_path / "single"))  # one seed: no seed files, empty fields
    assert not (tmp_path / "single" / "seeds.json").exists() and single.seeds == {} and single.seed_predictions.empty
    (saved / "seeds.json").write_text('{"seeds": [3, 8]}')
    with pytest.raises(DamagedFileError, match="seeds.json has an unexpected shape"):
        load_run(saved)


def _score(sharpe_like: float, verdict: str, p_hit: float, fold_hits: list[float], seed: int) -> SeedScore:
    """A hand-made seed score of one model "m": daily returns of mean ``sharpe_like`` / 1000 and std ~1%."""
    noise = np.random.default_rng(seed).standard_normal(300) / 100
    returns = pd.DataFrame({"m": noise - noise.mean() + sharpe_like / 1000})
    folds = pd.DataFrame({"model": "m", "fold": range(len(fold_hits)), "hit_rate": fold_hits,
                          "strategy_return": [0.01 * seed] * len(fold_hits),
                          "test_start": pd.Timestamp("2020-01-01"), "test_end": pd.Timestamp("2020-02-01")})
    metrics = {"m": {"sharpe": float(returns["m"].mean() / returns["m"].std() * np.sqrt(252)),
                     "verdict": verdict, "hit_rate_pvalue": p_hit}}
    return SeedScore(metrics=metrics, returns=returns, folds=folds)


def test_the_seed_summary_by_hand():
    scores = {0: _score(0.1, "beats", 0.01, [0.5, 0.6], 0), 1: _score(0.3, "inconclusive", 0.2, [0.7, 0.4], 1),
              5: _score(0.2, "beats", 0.04, [0.6, 0.5], 5)}
    summary = seed_summary(scores, {"m": {"verdict": "beats", "hit_rate_pvalue": 0.03}})
    entry = summary["models"]["m"]
    assert summary["seeds"] == [0, 1, 5] and entry["n_seeds"] == 3
    assert entry["verdict"] == {"ensemble": "beats", "by_seed": {"0": "beats", "1": "inconclusive", "5": "beats"},
                                "holds": 2, "n": 3}
    assert entry["hit_rate_skill"]["ensemble"] is True and entry["hit_rate_skill"]["holds"] == 2
    sharpes = [scores[s].metrics["m"]["sharpe"] for s in (0, 1, 5)]
    assert entry["summary"]["sharpe"] == {"median": sharpes[2], "min": sharpes[0], "max": sharpes[1]}
    assert math.isnan(entry["summary"]["hit_rate"]["median"])  # no seed has one
    assert entry["best_seed"]["seed"] == 1 and entry["best_seed"]["n_trials"] == 3
    daily = np.column_stack([scores[s].returns["m"] for s in (0, 1, 5)])
    assert entry["best_seed"]["dsr"] == deflated_sharpe_ratio(daily[:, 1], 3, float(np.var(
        sharpe_per_period(daily), ddof=1)))
    assert entry["best_seed"]["dsr"] < probabilistic_sharpe_ratio(daily[:, 1]) - 0.01  # the best of 3 is deflated
    first = entry["folds"][0]
    assert first["hit_rate"] == {"median": 0.6, "min": 0.5, "max": 0.7, "by_seed": {"0": 0.5, "1": 0.7, "5": 0.6}}
    assert first["test_start"] == "2020-01-01"
    no_call = seed_summary(scores, {"m": {"verdict": "beats", "hit_rate_pvalue": None}})
    assert no_call["models"]["m"]["hit_rate_skill"] is None
    assert seed_summary({}, {}) == {}


def test_a_seed_skill_claim_is_adjusted_over_the_runs_models():
    from lstmbt.reports.seeds import stability_sentences

    scores = {0: _score(0.1, "beats", 0.02, [0.5], 0), 1: _score(0.3, "beats", 0.03, [0.7], 1)}
    metrics = {"m": {"verdict": "beats", "hit_rate_pvalue": 0.03}, "n": {"hit_rate_pvalue": 0.5},
               "o": {"hit_rate_pvalue": 0.9}, "flat": {"hit_rate_pvalue": None}}
    alone = seed_summary(scores, metrics)["models"]["m"]["hit_rate_skill"]
    assert alone["ensemble"] is True and alone["n_tested"] == 1  # p 0.03 on its own is below 0.05
    family = seed_summary(scores, metrics, ["m", "n", "o", "flat"])["models"]["m"]["hit_rate_skill"]
    assert family["n_tested"] == 3 and family["ensemble"] is False and family["holds"] == 2  # 0.09, 0.06, 0.09
    assert stability_sentences({"models": {"m": {**seed_summary(scores, metrics, ["m", "n", "o"])["models"]["m"]}}},
                               metrics)[0].count("no skill: p = 0.030, 0.090 adjusted over 3 models") == 1


# --------------------------------------------------------------------------- the report


def test_the_report_shows_every_seed_figure_it_was_given(ensemble_and_singles):
    from lstmbt.reports import render_report, render_summary
    from lstmbt.reports.seeds import SPREAD_COLUMNS, spread_cell
    from lstmbt.reports.tables import format_metric
    from test_reports import tables

    ensemble, singles = ensemble_and_singles
    text = render_report(ensemble)
    found, models = tables(text), ensemble.seeds["models"]
    assert {key for key, _ in SPREAD_COLUMNS} == set(SPREAD_METRICS)  # every summarised figure has a column
    card = [row[0] for row in found["scorecard"][1:]]  # name and second line
    spread_rows = {row[0]: row for row in found["seeds-table"][1:]}
    for name, entry in models.items():
        assert f"{name}model, mean of 2 seeds" in card
        spread_rows[name] = spread_rows.pop(f"{name}mean of 2 seeds")
        for (key, _), shown in zip(SPREAD_COLUMNS, spread_rows[name][1:]):
            cell = spread_cell(key, entry["summary"][key])
            assert shown == cell["text"] + cell["sub"], (name, key)
        assert spread_rows[name][-3].startswith(f"{entry['verdict']['holds']} of 2")
        header, *rows = found[f"seed-metrics-{name}"]
        assert header == ["metric", *(f"seed {s}" for s in SEEDS)]
        shown = {row[0]: row[1:] for row in rows}
        for column, seed in enumerate(SEEDS):  # every key of every seed's metrics, formatted as metrics.json's
            for key, value in entry["metrics"][str(seed)].items():
                assert shown[key][column] == format_metric(key, value), (name, seed, key)
        sentence = f"{name} (mean of 2 seeds): the verdict"
        assert sentence in text and f"holds for {entry['verdict']['holds']} of 2 seeds" in text
        assert "counting all 2 seeds as trials" in text
    fold_rows = found["folds-seeds-table"][1:]
    assert len(fold_rows) == sum(len(entry["folds"]) for entry in models.values())
    assert "mean of 2 seeds" in render_summary(ensemble)
    single = render_report(singles[3])  # one seed: no seed tables, no labels
    assert "seeds-table" not in single and "mean of 2 seeds" not in single
