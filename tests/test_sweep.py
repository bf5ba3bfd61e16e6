"""lstmbt sweep: the sweep file and its plan, the signal-only broadcast against single backtests, and
one tiny sweep end to end through the CLI (2 training trials x 48 signal-only combinations), resumed.

The end-to-end sweep trains two tiny LSTMs (regression and classification) on a ~650-row CSV cut
from the embedded sample; everything else reuses their saved predictions.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w

from lstmbt.backtest.config import RunConfig, parse_overrides
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.rundir import RUN_FILES, load_run
from lstmbt.backtest.campaign.sweep_file import Range, expand_trials, is_signal_key, override_args, plan_sweep, read_sweep
from helpers import LINEAR_FLAGS, TINY_VALUES, call_main

#: the tiny config, LSTM only, less the lookback that the sweep varies
TINY_SET = {**{key: value for key, value in TINY_VALUES.items() if key != "model.lookback"}, "model.linear": False}
#: 2 training trials (lookback) x 3 x 2 x 2 x 2 x 2 = 48 signal-only combinations each: 96 trials
PARAMS = {"model.lookback": [5, 6], "strategy.threshold": [0.0, 0.001, 0.002], "strategy.cutoff": [0.5, 0.53],
          "backtest.fee_rate": [0.001, 0.003], "strategy.long_short": [False, True],
          "backtest.execution": ["next_open", "next_close"]}
BASE_SIGNAL = {"strategy.threshold": 0.0, "strategy.cutoff": 0.5, "backtest.fee_rate": 0.001,
               "strategy.long_short": False, "backtest.execution": "next_open"}  # the run defaults
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_sweep(path: Path, sweep: dict, params: dict) -> Path:
    path.write_text(tomli_w.dumps({"sweep": sweep, "params": params}))
    return path


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory) -> Path:
    from arch.data import sp500

    path = tmp_path_factory.mktemp("sweepdata") / "wide.csv"
    sp500.load().loc["2016-06-01":].to_csv(path)
    return path


@pytest.fixture(scope="module")
def sweep_file(csv_file) -> Path:
    return _write_sweep(csv_file.parent / "sweep.toml", {"metric": "sharpe", "set": {
        "data.source": f"csv:{csv_file}", **TINY_SET}}, PARAMS)


@pytest.fixture(scope="module")
def swept(sweep_file, tmp_path_factory) -> tuple[Path, str]:
    """The tiny sweep run once through the CLI: (sweep directory, stdout)."""
    out = tmp_path_factory.mktemp("sweeps") / "grid"
    code, stdout, stderr = call_main(["sweep", "--config", str(sweep_file), "--out", str(out), "--workers", "1"])
    assert code == 0, stderr
    return out, stdout


def _summary(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "summary.parquet")


# --------------------------------------------------------------------------- end to end


def test_every_training_trial_is_a_run_directory_and_the_summary_is_ranked(swept):
    out, stdout = swept
    names = sorted(p.name for p in (out / "trials").iterdir())
    assert len(names) == 2 and all(re.fullmatch(r"t00[01]-[0-9a-f]{8}", n) for n in names), names
    for name in names:
        assert sorted(p.name for p in (out / "trials" / name).iterdir()) == sorted(RUN_FILES)
    summary = _summary(out)
    assert len(summary) == 96 * 2 and set(summary["strategy"]) == {"lstm_regression", "lstm_classification"}
    assert list(summary["rank"]) == sorted(summary["rank"])  # best first
    grid = sorted(itertools.product(*PARAMS.values()))
    for _, group in summary.groupby("strategy"):  # every combination of the grid once per strategy, as simulated
        assert sorted(map(tuple, group[list(PARAMS)].to_numpy().tolist())) == grid
    sharpe = summary["sharpe"].to_numpy()
    finite = sharpe[np.isfinite(sharpe)]
    assert np.all(np.diff(finite) <= 0) and np.isfinite(sharpe[: len(finite)]).all()  # best first, NaN last
    for row in summary.sample(8, random_state=0).to_dict("records"):  # each row points at its training trial
        config = load_run(out / row["run_dir"]).config
        assert config.model.lookback == row["model.lookback"] and row["training_trial"] in row["run_dir"]
    trials = pd.read_parquet(out / "trials.parquet")
    assert list(trials["n_trials"]) == [48, 48] and set(trials["status"]) == {"trained"}
    assert stdout.strip().splitlines()[-1] == f"sweep: {(out / 'sweep.html').resolve()}"


def _row_backtest(out: Path, row: dict, prices: pd.DataFrame):
    """The row's positions rebuilt from its training trial's saved predictions, backtested alone."""
    from lstmbt.backtest.portfolio import run_backtest
    from lstmbt.backtest.scoring import make_positions

    run = load_run(out / row["run_dir"])
    signal = {k: row[k] for k in PARAMS if is_signal_key(k)}
    config = run.config.with_values(signal)
    common = json.loads((out / "overfit.json").read_text())["common"]
    positions = make_positions(run.predictions, run.positions.index, config, None, close=prices["Close"])
    positions = positions.loc[common["first_date"]:common["last_date"], [row["strategy"]]]
    return run_backtest(prices, positions, config.backtest)


def test_signal_only_rows_equal_a_full_backtest_of_the_same_positions(swept, csv_file):
    from lstmbt.backtest import metrics as m
    from lstmbt.backtest.data import load_prices

    out, _ = swept
    prices = load_prices(RunConfig.resolve(overrides={"data.source": f"csv:{csv_file}"}).data)
    summary = _summary(out)
    picks = summary[(summary["backtest.execution"] == "next_close") & summary["strategy.long_short"]].head(3)
    picks = pd.concat([picks, summary[summary["backtest.fee_rate"] == 0.003].tail(3), summary.head(2)])
    for row in picks.to_dict("records"):
        alone = _row_backtest(out, row, prices)
        r = alone.returns[row["strategy"]].to_numpy()
        assert row["sharpe"] == pytest.approx(m.sharpe(r), rel=1e-9, abs=1e-12)
        assert row["total_return"] == pytest.approx(m.total_return(r), rel=1e-9, abs=1e-12)
        assert row["n_trades"] == alone.n_trades[row["strategy"]]
        assert row["fees_paid"] == pytest.approx(alone.fees_paid[row["strategy"]], rel=1e-9, abs=1e-15)


def test_the_row_at_the_run_settings_matches_the_training_trials_own_metrics(swept):
    out, _ = swept
    summary, common = _summary(out), json.loads((out / "overfit.json").read_text())["common"]
    checked = 0
    for trial_dir in sorted((out / "trials").iterdir()):
        run = load_run(trial_dir)
        if run.manifest["out_of_sample"]["first_date"] != common["first_date"]:
            continue  # the other trial's first test day is not common: its rows start later than its run
        at_base = summary[(summary["training_trial"] == trial_dir.name)
                          & np.logical_and.reduce([summary[k] == v for k, v in BASE_SIGNAL.items()])]
        for row in at_base.to_dict("records"):
            saved = run.metrics[row["strategy"]]
            for key in ("sharpe", "total_return", "max_drawdown", "hit_rate", "n_trades", "fees_paid"):
                assert row[key] == pytest.approx(saved[key], rel=1e-9, abs=1e-12), key
            checked += 1
    assert checked == 2  # both models of the trial whose test days are all common


def test_dsr_and_pbo_are_on_the_page_and_match_the_best_row(swept, csv_file):
    from lstmbt.backtest.data import load_prices
    from lstmbt.backtest.campaign.overfit import deflated_sharpe_ratio

    out, stdout = swept
    overfit = json.loads((out / "overfit.json").read_text())
    html = (out / "sweep.html").read_text()
    assert f"DSR {overfit['dsr']:.2f}:" in html and f"PBO {overfit['pbo']:.2f}:" in html
    assert "deflated Sharpe ratio" in html and "probability of backtest overfitting" in html and "12,870" in html
    assert overfit["dsr_sentence"] in stdout and overfit["pbo_sentence"] in stdout
    assert overfit["pbo_splits"] == math.comb(16, 8)
    summary = _summary(out)
    assert overfit["n_distinct"] == int(summary["duplicate_of"].isna().sum()) < len(summary)  # cutoff-blind rows
    assert overfit["dsr_n"] == overfit["n_distinct"] and overfit["rank_by"] == "ensemble"  # N: the distinct rows
    assert (summary["n_seeds"] == 1).all() and summary["seed_median"].equals(summary["sharpe"])
    best = summary.iloc[0].to_dict()
    prices = load_prices(RunConfig.resolve(overrides={"data.source": f"csv:{csv_file}"}).data)
    r = _row_backtest(out, best, prices).returns[best["strategy"]].to_numpy()
    assert overfit["dsr"] == pytest.approx(deflated_sharpe_ratio(r, overfit["n_distinct"], overfit["sharpe_var"]))
    assert f"{best['sharpe']:.2f}" in html and f"{best['bh_sharpe']:.2f}" in html  # beside buy-and-hold's


@pytest.fixture(scope="module")
def seed_swept(csv_file, tmp_path_factory) -> tuple[Path, str]:
    """A sweep of one training trial with seeds 0 and 1 (4 signal-only trials), ranked by the median
    over the seeds: (sweep directory, stdout)."""
    path = _write_sweep(csv_file.parent / "seeds.toml", {"metric": "sharpe", "rank_by": "seed_median", "set": {
        "data.source": f"csv:{csv_file}", **TINY_SET, "model.lookback": 5, "train.seeds": [0, 1]}},
        {"strategy.cutoff": [0.5, 0.52], "backtest.fee_rate": [0.0, 0.002]})
    out = tmp_path_factory.mktemp("sweeps") / "seeds"
    code, stdout, stderr = call_main(["sweep", "--config", str(path), "--out", str(out), "--workers", "1"])
    assert code == 0, stderr
    return out, stdout


def _seed_returns(out: Path, row: dict, prices: pd.DataFrame, seed: int) -> np.ndarray:
    """One seed's own daily returns of a row, rebuilt from that seed's saved predictions and backtested alone."""
    from lstmbt.backtest.portfolio import run_backtest
    from lstmbt.backtest.scoring import make_positions
    from lstmbt.backtest.seeds import seed_view

    run = load_run(out / row["run_dir"])
    config = run.config.with_values({k: row[k] for k in ("strategy.cutoff", "backtest.fee_rate")})
    common = json.loads((out / "overfit.json").read_text())["common"]
    positions = make_positions(seed_view(run.predictions, seed), run.positions.index, config, None,
                               close=prices["Close"])
    positions = positions.loc[common["first_date"]:common["last_date"], [row["strategy"]]]
    return run_backtest(prices, positions, config.backtest).returns[row["strategy"]].to_numpy()


def test_rows_rank_by_the_median_over_seeds_and_the_dsr_counts_every_seed(seed_swept, csv_file):
    from lstmbt.backtest import metrics as m
    from lstmbt.backtest.data import load_prices
    from lstmbt.backtest.deflated import deflated_sharpe_ratio

    out, stdout = seed_swept
    prices = load_prices(RunConfig.resolve(overrides={"data.source": f"csv:{csv_file}"}).data)
    summary, overfit = _summary(out), json.loads((out / "overfit.json").read_text())
    assert len(summary) == 8 and (summary["n_seeds"] == 2).all()
    ranked = summary["seed_median"].to_numpy()
    assert np.all(np.diff(ranked[np.isfinite(ranked)]) <= 0)  # best median first
    for row in summary.to_dict("records"):  # each seed's figure is its own backtest's, the median theirs
        sharpes = {seed: m.sharpe(_seed_returns(out, row, prices, seed)) for seed in (0, 1)}
        assert row["seed_min"] == pytest.approx(min(sharpes.values()), rel=1e-9)
        assert row["seed_max"] == pytest.approx(max(sharpes.values()), rel=1e-9)
        assert row["seed_median"] == pytest.approx(sum(sharpes.values()) / 2, rel=1e-9)
        lower = min(sharpes, key=sharpes.get)  # two seeds: equally near the median, the lower one is picked
        assert row["median_candidate"] == f"{row['candidate']}@seed{lower}"
    assert overfit["rank_by"] == "seed_median" and overfit["dsr_n"] == 2 * overfit["n_distinct"]
    best = summary.iloc[0].to_dict()
    assert overfit["dsr_candidate"] == best["median_candidate"]
    r = _seed_returns(out, best, prices, int(best["median_candidate"].rpartition("@seed")[2]))
    assert overfit["dsr"] == pytest.approx(deflated_sharpe_ratio(r, overfit["dsr_n"], overfit["sharpe_var"]))
    assert f"best of N = {overfit['dsr_n']} skill-less seed series" in overfit["dsr_sentence"]
    assert f"the DSR every seed of them: N = {overfit['dsr_n']}." in overfit["counts_sentence"]
    html = (out / "sweep.html").read_text()
    assert "Sharpe over seeds" in html and "median over each row&#39;s seeds" in html
    assert "Sharpe (seed median)" in stdout and overfit["counts_sentence"] in stdout


def test_ninety_six_trials_come_from_two_trainings(swept):
    # the speed itself is measured by bench/sweep.py, never asserted here
    out, _ = swept
    summary = _summary(out)
    assert summary["trial"].nunique() == 96
    assert summary["training_trial"].nunique() == 2
    assert len(list((out / "trials").iterdir())) == 2
    assert json.loads((out / "overfit.json").read_text())["timings_s"]["signal_only"] > 0


def test_resume_retrains_only_the_missing_trial_and_gives_the_same_summary(swept, sweep_file, tmp_path, run_cli):
    out, _ = swept
    copy = tmp_path / "grid"
    shutil.copytree(out, copy)
    missing = sorted((copy / "trials").iterdir())[1].name
    shutil.rmtree(copy / "trials" / missing)
    code, _, err = run_cli(["sweep", "--resume", str(copy), "--workers", "1"])
    assert code == 0, err
    status = dict(pd.read_parquet(copy / "trials.parquet")[["training_trial", "status"]].to_numpy())
    assert status[missing] == "trained" and list(status.values()).count("resumed") == 1
    pd.testing.assert_frame_equal(_summary(copy), _summary(out))
    assert not list((copy / "trials").glob(".*"))  # no checkpoint or temp dir left behind
    code, _, err = run_cli(["sweep", "--config", str(sweep_file), "--out", str(copy), "--workers", "1"])
    assert code == 0, err
    assert set(pd.read_parquet(copy / "trials.parquet")["status"]) == {"resumed"}
    pd.testing.assert_frame_equal(_summary(copy), _summary(out))


def test_an_interrupted_sweep_keeps_its_finished_trials(swept, sweep_file, tmp_path, monkeypatch, run_cli):
    import lstmbt.backtest.campaign.sweep as sweep

    out, _ = swept
    finished = sorted((out / "trials").iterdir())[0]
    calls = []

    def train_then_interrupt(job):  # stands in for training: the first trial finishes, Ctrl-C during the second
        calls.append(job.config.model.lookback)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return load_run(finished)

    monkeypatch.setattr(sweep, "train_trial", train_then_interrupt)
    target = tmp_path / "grid"
    code, _, err = run_cli(["sweep", "--config", str(sweep_file), "--out", str(target), "--workers", "1"])
    assert code == 130 and f"lstmbt sweep --resume {target}" in err.splitlines()[-1], err
    assert calls == [5, 6]
    assert [p.name for p in (target / "trials").iterdir()] == [finished.name]  # no half-written trial
    assert sorted(p.name for p in target.iterdir()) == ["base.toml", "sweep.toml", "trials"]


@pytest.mark.parametrize(("name", "words"), [("predictions.parquet", "is not a readable parquet file"),
                                             ("config.toml", "is not valid TOML"),
                                             ("manifest.json", "is not valid JSON"),
                                             ("metrics.json", "is not valid JSON")])
def test_resume_names_a_damaged_trial_file_and_how_to_retrain_it(name, words, swept, tmp_path, run_cli):
    out, _ = swept
    copy = tmp_path / "grid"
    shutil.copytree(out, copy)
    trial = sorted((copy / "trials").iterdir())[0]
    (trial / name).write_bytes((trial / name).read_bytes()[:40])
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    code, out_text, err = run_cli(["sweep", "--resume", str(copy), "--workers", "1"])
    assert code == 2 and "Traceback" not in err + out_text and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {trial / name} {words}")
    assert f"remove {trial} and run `lstmbt sweep --resume {copy}` to retrain that trial" in err
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before  # nothing changed or lost


def test_resume_refuses_another_sweep_and_leaves_it_alone(swept, sweep_file, tmp_path, run_cli):
    out, _ = swept
    copy = tmp_path / "grid"
    shutil.copytree(out, copy)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    other = _write_sweep(tmp_path / "other.toml", tomllib.loads(sweep_file.read_text())["sweep"],
                         {**PARAMS, "model.lookback": [5, 7]})
    code, _, err = run_cli(["sweep", "--config", str(other), "--out", str(copy)])
    assert code == 2 and "holds a different sweep" in err and len(err.splitlines()) == 1, err
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before
    code, _, err = run_cli(["sweep", "--resume", str(tmp_path)])
    assert code == 2 and "is not a sweep directory" in err, err
    code, _, err = run_cli(["sweep", "--config", str(sweep_file), "--out", str(tmp_path)])
    assert code == 2 and "is not a sweep directory" in err, err


# --------------------------------------------------------------------------- the sweep file and the plan


def _spec(tmp_path: Path, params: dict, **sweep):
    return read_sweep(_write_sweep(tmp_path / "s.toml", sweep, params))


def test_grid_trials_come_in_product_order_and_signal_keys_share_training(tmp_path):
    spec = _spec(tmp_path, {"model.lookback": [20, 60], "strategy.threshold": [0.0, 0.001, 0.002]})
    trials = expand_trials(spec)
    assert [dict(t.values) for t in trials[:4]] == [
        {"model.lookback": 20, "strategy.threshold": 0.0}, {"model.lookback": 20, "strategy.threshold": 0.001},
        {"model.lookback": 20, "strategy.threshold": 0.002}, {"model.lookback": 60, "strategy.threshold": 0.0}]
    plan = plan_sweep(spec)
    assert [len(t.trials) for t in plan] == [3, 3]
    assert [t.config.model.lookback for t in plan] == [20, 60]
    assert all(t.config.strategy == spec.base.strategy for t in plan)  # signal keys stay at the base value
    assert [t.name for t in plan] == [t.name for t in plan_sweep(spec)]  # deterministic names
    assert plan[0].name != plan_sweep(_spec(tmp_path, {"model.lookback": [20, 60], "train.seed": [1]}))[0].name


def test_random_search_is_seeded_and_stays_inside_its_ranges(tmp_path):
    params = {"backtest.fee_rate": {"low": 1e-4, "high": 1e-2, "log": True}, "model.lookback": {"low": 5, "high": 9,
              "int": True}, "strategy.long_short": [False, True]}
    spec = _spec(tmp_path, params, search="random", n_trials=30, seed=7)
    values = [dict(t.values) for t in expand_trials(spec)]
    assert len(values) == 30 and values == [dict(t.values) for t in expand_trials(spec)]
    assert all(1e-4 <= v["backtest.fee_rate"] <= 1e-2 for v in values)
    assert {v["model.lookback"] for v in values} <= set(range(5, 10)) and len({v["model.lookback"] for v in values}) > 2
    assert all(isinstance(v["model.lookback"], int) for v in values)
    assert np.median([v["backtest.fee_rate"] for v in values]) < 3e-3  # log-uniform: median near 1e-3, not 5e-3
    other = _spec(tmp_path, params, search="random", n_trials=30, seed=8)
    assert [dict(t.values) for t in expand_trials(other)] != values
    assert isinstance(dict(spec.params)["backtest.fee_rate"], Range)


def test_a_combination_drawn_twice_runs_once_whatever_its_values(tmp_path):
    spec = _spec(tmp_path, {"strategy.threshold": [0.0, 0.001]}, search="random", n_trials=40)
    assert sorted(dict(t.values)["strategy.threshold"] for t in expand_trials(spec)) == [0.0, 0.001]
    lists = _spec(tmp_path, {"model.head": [[], [4]]}, search="random", n_trials=40)  # list values: not hashable
    assert sorted(dict(t.values)["model.head"] for t in expand_trials(lists)) == [[], [4]]


def test_a_random_search_says_how_many_draws_repeated(tmp_path, run_cli):
    """40 draws over 2 values: 2 trials, and the console, overfit.json and sweep.html say why."""
    flags = {key: value for key, value in LINEAR_FLAGS.items() if key != "strategy.threshold"}
    sweep = _write_sweep(tmp_path / "random.toml", {"search": "random", "n_trials": 40, "pbo_blocks": 2,
                                                    "set": flags}, {"strategy.threshold": [0.0, 0.001]})
    code, out, err = run_cli(["sweep", "--config", str(sweep), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert code == 0 and "Traceback" not in err, err
    lead = "40 random draws gave 2 distinct combinations (38 repeated draws dropped): 2 trials (1 training trial: "
    assert out.startswith(lead), out
    overfit = json.loads((tmp_path / "out" / "overfit.json").read_text())
    assert overfit["n_draws"] == 40 and overfit["n_trials"] == 2 and overfit["counts_sentence"].startswith(lead)
    page = html.unescape(re.sub(r"\s+<", "<", (tmp_path / "out" / "sweep.html").read_text()))
    assert overfit["counts_sentence"] in page
    assert "random draws / repeated draws (each combination runs once)</td><td>40 / 38" in page


def test_a_written_sweep_reads_back_as_the_same_sweep(tmp_path):
    base = tmp_path / "base_in.toml"
    base.write_text('[model]\nhidden_size = 8\n[split]\nstep = 63\n')
    spec = _spec(tmp_path, {"model": {"lookback": [20, 60]}, "backtest.fee_rate": {"low": 0.0, "high": 0.002}},
                 search="random", n_trials=5, base="base_in.toml", quick=True, set={"train.max_epochs": 2})
    assert spec.base.model.hidden_size == 8 and spec.base.split.step == 63 and spec.base.train.max_epochs == 2
    assert spec.base.split.min_train == 756  # the quick preset sits under the base file
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "base.toml").write_text(spec.base.to_toml())
    (folder / "sweep.toml").write_text(spec.to_toml("base.toml"))
    assert read_sweep(folder / "sweep.toml") == spec
    values = {"strategy.threshold": 0.001, "features.groups": ("returns", "ma"), "strategy.long_short": True}
    assert RunConfig().with_values(parse_overrides(override_args(values)[1::2])) == RunConfig().with_values(values)


@pytest.mark.parametrize("params, sweep, words", [
    ({"strategy.long_short": {"low": 0, "high": 1}}, {"search": "random", "n_trials": 3}, "true or false"),
    ({"model.lookback": {"low": 5, "high": 9}}, {"search": "random", "n_trials": 3}, "add int = true"),
    ({"backtest.fee_rate": {"low": 0.01, "high": 0.001}}, {"search": "random", "n_trials": 3}, "low < high"),
    ({"strategy.threshold": 0.001}, {}, "must be a list of values"),
    ({"strategy.threshold": [0.0, 0.0]}, {}, "lists a value twice"),
    ({"strategy.threshold": [0.0]}, {}, "the sweep has 1 trial"),
    ({"strategy.threshold": [0.0, 0.1]}, {"strategies": ["lstm_regresion"]}, "did you mean 'lstm_regression'"),
    ({"strategy.threshold": [0.0, 0.1]}, {"n_trials": 4}, "random search only"),
    ({"strategy.threshold": [0.0, 0.1]}, {"pbo_blocks": 15}, "must be even"),
    ({"strategy.threshold": [0.0, 0.1]}, {"metric": "sharp"}, "did you mean 'sharpe'"),
    ({"strategy.threshold": [0.0, 0.1]}, {"rank_by": "seed_medain"}, "did you mean 'seed_median'"),
    ({"strategy.threshold": [0.0, 0.1]}, {"rank_by": "seed_median"}, 'needs a network model trained with two or more'),
    ({"target.regression": ["week_mean", "return"]}, {}, "set target.horizon = 5"),
    ({"portfolio.top_k": [1, 2]}, {}, "only apply to universe runs"),
])
def test_bad_sweep_files_are_refused_with_one_line(tmp_path, params, sweep, words):
    with pytest.raises(ConfigError, match=re.escape(words)) as info:
        plan_sweep(_spec(tmp_path, params, **sweep))
    assert "\n" not in str(info.value)


def test_a_written_sweep_keeps_its_rank_by(tmp_path):
    spec = _spec(tmp_path, {"strategy.threshold": [0.0, 0.1]}, rank_by="seed_median", set={"train.seeds": [0, 1]})
    assert spec.rank_by == "seed_median" and _spec(tmp_path, {"strategy.threshold": [0.0, 0.1]}).rank_by == "ensemble"
    (tmp_path / "base.toml").write_text(spec.base.to_toml())
    (tmp_path / "again.toml").write_text(spec.to_toml("base.toml"))
    assert read_sweep(tmp_path / "again.toml") == spec


def test_a_universe_source_is_refused_before_anything_is_written(tmp_path, run_cli):
    path = _write_sweep(tmp_path / "s.toml", {"set": {"data.source": "sample:sp500,nasdaq"}},
                        {"strategy.threshold": [0.0, 0.001]})
    code, _, err = run_cli(["sweep", "--config", str(path), "--out", str(tmp_path / "out")])
    assert code == 2 and "names 2 ticker(s)" in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]


def test_an_unknown_table_gets_a_did_you_mean(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[param]\n"strategy.threshold" = [0.0, 0.1]\n')
    with pytest.raises(ConfigError, match=re.escape("unknown table [param] (did you mean 'params'?)")):
        read_sweep(path)


# --------------------------------------------------------------------------- the broadcast


def test_run_backtest_variants_equals_run_backtest_column_by_column():
    from arch.data import sp500

    from lstmbt.backtest.config import BacktestConfig
    from lstmbt.backtest.portfolio import run_backtest, run_backtest_variants

    prices = sp500.load().loc["2015-01-01":"2016-12-31"]
    days = prices.index[20:-1]
    rng = np.random.default_rng(0)
    positions = pd.DataFrame({f"c{i}": rng.choice([-1.0, 0.0, 0.5, 1.0], size=len(days)) for i in range(12)},
                             index=days)
    fees, slips = rng.choice([0.0, 0.001, 0.003], 12), rng.choice([0.0, 0.0005, 0.002], 12)
    fills = [["next_open", "next_close"][i % 2] for i in range(12)]
    bands = rng.choice([0.0, 0.05, 1.0], 12)
    both = run_backtest_variants(prices, positions, fees, slips, fills, rebalance_bands=bands)
    for i, column in enumerate(positions.columns):
        alone = run_backtest(prices, positions[[column]], BacktestConfig(fee_rate=fees[i], slippage=slips[i],
                                                                           execution=fills[i], rebalance_band=bands[i]))
        np.testing.assert_array_equal(both.returns[column].to_numpy(), alone.returns[column].to_numpy())
        assert both.n_trades[column] == alone.n_trades[column]
        assert both.fees_paid[column] == pytest.approx(alone.fees_paid[column], rel=1e-12)
        assert both.slippage_paid[column] == pytest.approx(alone.slippage_paid[column], rel=1e-12)
        pd.testing.assert_frame_equal(both.trades[both.trades["strategy"] == column].reset_index(drop=True),
                                      alone.trades.reset_index(drop=True))


def test_ray_executor_gives_the_local_sweep(swept, sweep_file, tmp_path):
    ray = pytest.importorskip("ray")
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        code, _, stderr = call_main(["sweep", "--config", str(sweep_file), "--out", str(out), "--executor", "ray"])
    finally:
        ray.shutdown()
    assert code == 0, stderr
    local = swept[0]
    pd.testing.assert_frame_equal(_summary(out).drop(columns=["reproduce"], errors="ignore"),
                                  _summary(local).drop(columns=["reproduce"], errors="ignore"))
    for trial in (local / "trials").iterdir():
        assert (out / "trials" / trial.name / "metrics.json").read_text() == (trial / "metrics.json").read_text()
        pd.testing.assert_frame_equal(pd.read_parquet(out / "trials" / trial.name / "predictions.parquet"),
                                      pd.read_parquet(trial / "predictions.parquet"))


# --------------------------------------------------------------------------- the output: one vocabulary


def _page_text(html_text: str) -> str:
    """The page's visible words (tags and the embedded scripts dropped, entities decoded)."""
    body = re.sub(r"<script.*?</script>", " ", html_text, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def _page_table(html_text: str, table_id: str) -> tuple[list[str], list[list[str]]]:
    """(headers, rows of cell texts) of the page's table ``table_id``."""
    table = re.search(rf'<table[^>]*id="{table_id}"[^>]*>(.*?)</table>', html_text, flags=re.S).group(1)
    clean = lambda cell: html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()  # noqa: E731
    head, body = table.split("</thead>") if "</thead>" in table else ("", table)
    headers = [clean(c) for c in re.findall(r"<th[^>]*>(.*?)</th>", head, flags=re.S)]
    rows = [[clean(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)]
    return headers, rows


def _console_table(stdout: str) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the ranking lines ``lstmbt sweep`` printed (columns split on 2+ spaces)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    end = next(i for i, line in enumerate(lines) if line.startswith("DSR"))
    split = [re.split(r" {2,}", line.strip()) for line in lines[start:end]]
    return split[0], split[1:]


def _counts_said(text: str) -> dict[str, set[int]]:
    """Every count ``text`` states, by word: "8 trials", "2 training trials", "32 rows", "N = 23" (the
    core split's "1 training trial at a time" is a rate, not a count)."""
    number = r"(\d[\d,]*)"
    text = re.sub(r"\d+ training trials? at a time", "", text)
    found = {"trials": re.findall(number + r" trials?\b", re.sub(number + r" training trials?", "", text)),
             "training trials": re.findall(number + r" training trials?", text),
             "rows": re.findall(number + r" rows\b", re.sub(number + r" distinct rows", "", text)),
             "N": re.findall(r"N = " + number, text)}
    return {word: {int(n.replace(",", "")) for n in values} for word, values in found.items()}


def test_the_counts_are_the_same_in_the_console_the_page_and_overfit_json(swept):
    out, stdout = swept
    overfit = json.loads((out / "overfit.json").read_text())
    summary, trials = _summary(out), pd.read_parquet(out / "trials.parquet")
    truth = {"n_trials": summary["trial"].nunique(), "n_training_trials": len(trials), "n_rows": len(summary),
             "n_distinct": int(summary["duplicate_of"].isna().sum()), "n_strategies": summary["strategy"].nunique()}
    assert {k: overfit[k] for k in truth} == truth and overfit["dsr_n"] == truth["n_distinct"]
    page = _page_text((out / "sweep.html").read_text())
    sentence = overfit["counts_sentence"]
    assert sentence in stdout.splitlines() and sentence in page
    assert sentence.startswith(f"{truth['n_trials']} trials ({truth['n_training_trials']} training trials: ")
    said = {"trials": {truth["n_trials"]}, "training trials": {truth["n_training_trials"]},
            "rows": {truth["n_rows"]}, "N": {overfit["dsr_n"]}}
    assert _counts_said(stdout) == said  # no other count of trials, rows or N anywhere ("best of 18")
    prose = _page_text(re.sub(r"<table.*?</table>", " ", (out / "sweep.html").read_text(), flags=re.S))
    assert {word: found for word, found in _counts_said(prose).items() if found} == said
    facts = dict(_page_table((out / "sweep.html").read_text(), "overfit-table")[1])
    assert facts["trials / training trials"] == f"{truth['n_trials']} / {truth['n_training_trials']}"
    assert facts["rows (trial × strategy) / distinct rows"] == f"{truth['n_rows']} / {truth['n_distinct']}"
    assert facts["N, what the DSR counts"].startswith(f"{overfit['dsr_n']}:")
    assert f"best of N = {overfit['dsr_n']} skill-less distinct rows" in overfit["dsr_sentence"]
    legend = re.search(r'<dl class="legend" id="legend">(.*?)</dl>', (out / "sweep.html").read_text(), re.S).group(1)
    assert re.findall(r"<dt>(.*?)</dt>", legend) == ["trial", "training trial", "row", "distinct row", "N"]


def test_ranks_are_consecutive_and_repeats_share_their_rows_rank(swept):
    out, stdout = swept
    summary = _summary(out)
    distinct = summary[summary["duplicate_of"].isna()]
    assert list(distinct["rank"]) == list(range(1, len(distinct) + 1))
    rank_of = dict(zip(distinct["candidate"], distinct["rank"]))
    repeats = summary[summary["duplicate_of"].notna()]
    assert len(repeats) > 0 and (repeats["rank"] == repeats["duplicate_of"].map(rank_of)).all()
    _, console = _console_table(stdout)
    assert [int(r[0]) for r in console] == list(range(1, len(console) + 1)) and len(console) == 5
    headers, rows = _page_table((out / "sweep.html").read_text(), "ranking-table")
    assert [int(r[0]) for r in rows] == list(range(1, len(distinct) + 1))
    listed = [r[headers.index("same returns")] for r in rows]
    assert sum(len(cell.split(", ")) for cell in listed if cell) == len(repeats)  # every repeat named once


def test_one_sharpe_column_and_buy_and_hold_beside_each_figure_in_its_units(swept):
    from lstmbt.reports.tables import format_metric

    out, stdout = swept
    summary = _summary(out)
    best = summary[summary["duplicate_of"].isna()].head(5)
    for where, (headers, rows) in (("console", _console_table(stdout)),
                                   ("page", _page_table((out / "sweep.html").read_text(), "ranking-table"))):
        assert [h.lower() for h in headers].count("sharpe") == 1 and "Sharpe" in headers, (where, headers)
        for key, label in (("sharpe", "Sharpe"), ("total_return", "return")):
            mine, theirs = headers.index(label), headers.index(f"B&H {label}")
            assert theirs == mine + 1, (where, headers)  # buy-and-hold's right beside the row's
            for row, record in zip(rows, best.to_dict("records")):  # the report's formats, both the same key
                assert row[mine] == format_metric(key, record[key]), (where, row)
                assert row[theirs] == format_metric(key, record[f"bh_{key}"]), (where, row)
                assert row[mine].endswith("%") == row[theirs].endswith("%") == (key == "total_return")
    headers, rows = _page_table((out / "sweep.html").read_text(), "ranking-table")
    for label in [h for h in headers if f"B&H {h}" in headers]:  # every pair on the page: same units
        mine, theirs = headers.index(label), headers.index(f"B&H {label}")
        assert all(r[mine].endswith("%") == r[theirs].endswith("%") for r in rows if "\u2013" not in r[mine]), label


def test_a_sweep_ranked_by_hit_rate_shows_it_beside_buy_and_hold_in_percent(swept, sweep_file, tmp_path, run_cli):
    from lstmbt.reports.tables import format_metric

    out, _ = swept
    copy = tmp_path / "grid"
    shutil.copytree(out, copy)
    spec = tomllib.loads(sweep_file.read_text())
    by_hit = _write_sweep(tmp_path / "by_hit.toml", {**spec["sweep"], "metric": "hit_rate"}, spec["params"])
    code, stdout, err = run_cli(["sweep", "--config", str(by_hit), "--out", str(copy)])  # re-ranks, no training
    assert code == 0, err
    headers, rows = _console_table(stdout)
    assert headers[3:] == ["Sharpe", "B&H Sharpe", "return", "B&H return", "hit rate", "B&H hit rate"]
    best = _summary(copy).query("duplicate_of.isna()").head(len(rows))
    for row, record in zip(rows, best.to_dict("records")):
        assert row[-2:] == [format_metric("hit_rate", record["hit_rate"]),
                            format_metric("hit_rate", record["bh_hit_rate"])]
        assert row[-1].endswith("%") and row[-2].endswith("%")
    assert list(best["hit_rate"]) == sorted(best["hit_rate"], reverse=True)


def test_the_core_split_follows_omp_num_threads(monkeypatch):
    from lstmbt.backtest.campaign.executors import LocalExecutor

    monkeypatch.setattr("lstmbt.backtest.campaign.executors._cores", lambda: 2)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert LocalExecutor().split(4) == {"executor": "local", "cores": 2, "pinned_by": None, "at_once": 2, "threads": 1}
    assert LocalExecutor().split(1)["threads"] == 2  # one job gets every core
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert LocalExecutor().split(4) == {"executor": "local", "cores": 1, "pinned_by": "OMP_NUM_THREADS=1",
                                        "at_once": 1, "threads": 1}
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert LocalExecutor(workers=2).split(4) == {"executor": "local", "cores": 4, "pinned_by": "OMP_NUM_THREADS=4",
                                                 "at_once": 2, "threads": 2}


@pytest.mark.parametrize(("omp", "lookbacks", "expected", "threads"), [
    ("1", [5, 6], "1 core (OMP_NUM_THREADS=1): 1 training trial at a time × 1 thread", [1, 1]),
    (None, [5], "2 cores: 1 training trial at a time × 2 threads", [2]),  # one job gets every core, in this process
], ids=["OMP_NUM_THREADS=1", "unset"])
def test_sweep_honours_omp_num_threads_and_says_how_it_split_the_cores(omp, lookbacks, expected, threads, csv_file,
                                                                         tmp_path, monkeypatch, run_cli):
    monkeypatch.setattr("lstmbt.backtest.campaign.executors._cores", lambda: 2)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    if omp:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    else:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    path = _write_sweep(tmp_path / "s.toml", {"set": {"data.source": f"csv:{csv_file}", **TINY_SET,
                                                      "target.task": "classification"}},
                        {"model.lookback": lookbacks, "backtest.fee_rate": [0.0, 0.002]})
    code, stdout, err = run_cli(["sweep", "--config", str(path), "--out", str(tmp_path / "out")])
    assert code == 0, err
    overfit = json.loads((tmp_path / "out" / "overfit.json").read_text())
    assert overfit["cores"]["sentence"] == expected and f"; {expected};" in stdout
    assert expected in _page_text((tmp_path / "out" / "sweep.html").read_text())
    trials = pd.read_parquet(tmp_path / "out" / "trials.parquet")
    assert list(trials["threads"]) == threads  # what each training trial's run really got
