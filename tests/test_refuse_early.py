"""Refused before training, not after: CPCV splits too small to fit on, a dead zone that empties a
fold, several horizons for ``predict``, ``model.families = []`` beside ``model.lstm``; a config
fault found only after folds were saved advises no ``--resume``; ``train.seeds = [7]`` is seed 7.

Every refusal goes through the real entry point and is checked in the house style: exit status 2,
one ``error:`` line, no traceback, nothing left behind, and no fold fitted before it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.data import load_prices
from lstmbt.backtest.errors import ConfigError
from lstmbt.backtest.design import feature_warmup
from helpers import LINEAR_VALUES, TINY_SPX, call_main, set_args

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::lstmbt.models.threads.ContentionWarning")]

#: a linear run on ~650 rows of the S&P 500 sample (565 samples, 19 features)
SPX = {**LINEAR_VALUES, "data.source": "sample:sp500", "data.start": "2014-01-01", "data.end": "2016-06-30",
       "target.task": "classification", "split.min_train": 300, "split.step": 150}
#: 16 blocks, 15 tested: every split trains on what one block leaves after the purge and embargo
CPCV_16_15 = {**SPX, "split.scheme": "cpcv", "split.groups": 16, "split.test_groups": 15}


def _refused(argv: list[str], run_cli) -> str:
    """Run ``argv``; assert the house style of a refusal and return its one line."""
    code, out, err = run_cli(argv)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), (code, out, err)
    assert "Traceback" not in out + err
    return err.strip()


def _never_train(monkeypatch) -> None:
    def train(*args, **kwargs):
        pytest.fail("a model was trained before the refusal")

    monkeypatch.setattr("lstmbt.backtest.pipeline._predict_all", train)


def _check_cpcv(values: dict) -> None:
    """``preflight.cpcv_note`` on the config of ``values``: a ConfigError when it would be refused."""
    from lstmbt.backtest.preflight import cpcv_note

    config = RunConfig.resolve(flags=values)
    cpcv_note(load_prices(config.data), config, feature_warmup(config))


def _run_args(values: dict, out: Path) -> list[str]:
    return ["run", *set_args(values), "--out", str(out)]


# --------------------------------------------------------------------------- CPCV


def test_a_cpcv_split_with_nothing_to_fit_on_is_refused_before_training(tmp_path, monkeypatch, run_cli):
    _never_train(monkeypatch)
    parent = tmp_path / "runs"
    parent.mkdir()
    line = _refused(_run_args(CPCV_16_15, parent / "out"), run_cli)
    assert line.startswith("error: split.scheme = 'cpcv': split 0 (test groups [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, "
                           "12, 13, 14] of 16) fits on 0 of 565 samples")
    assert "fewer than 21: a linear model of the 19 features" in line and "--resume" not in line
    assert list(parent.iterdir()) == []  # no run, no partial directory
    # every setting the line offers does fit: the fix works as given
    fixes = dict(re.findall(r"(split\.\w+) = (\d+)", line.split("; ")[-1]))
    assert fixes == {"split.test_groups": "2"}
    _check_cpcv({**CPCV_16_15, **{k: int(v) for k, v in fixes.items()}})  # no ConfigError


def test_every_fix_the_cpcv_refusal_offers_fits(run_cli, tmp_path, monkeypatch):
    _never_train(monkeypatch)
    values = {**SPX, "split.scheme": "cpcv", "split.groups": 6, "split.test_groups": 3, "split.embargo": 80}
    line = _refused(_run_args(values, tmp_path / "out"), run_cli)
    fixes = re.findall(r"(split\.\w+) = (\d+)", line.split("; ")[-1])
    assert [key for key, _ in fixes] == ["split.test_groups", "split.groups", "split.embargo"]
    for key, value in fixes:  # one change each, and each is enough
        _check_cpcv({**values, key: int(value)})
    with pytest.raises(ConfigError, match="fewer than"):  # the embargo offered is the longest that fits
        _check_cpcv({**values, "split.embargo": int(dict(fixes)["split.embargo"]) + 1})


def test_cpcv_splits_fitting_on_less_than_the_walk_forward_are_warned_and_recorded(tmp_path, run_cli):
    out = tmp_path / "run"
    code, _, err = run_cli(_run_args({**SPX, "split.scheme": "cpcv", "split.groups": 6, "split.test_groups": 2}, out))
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning: split.scheme = 'cpcv'")]
    assert len(warned) == 1 and err.splitlines()[0] == warned[0]  # said first, before any training
    found = re.search(r"fits on (\d+) of .*fewer than the (\d+) the walk-forward", warned[0])
    fit, walk = int(found[1]), int(found[2])
    splits = json.loads((out / "cpcv.json").read_text())["splits"]
    folds = pd.read_parquet(out / "folds.parquet")
    assert fit == min(s["n_train"] for s in splits) and walk == folds.loc[folds["fold"] == 0, "n_train"].iloc[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert warned[0].removeprefix("warning: ") in manifest["warnings"]  # kept with the run, in its report too
    assert str(escape(warned[0].removeprefix("warning: "))) in (out / "report.html").read_text()


def test_a_config_fault_found_after_saved_folds_advises_no_resume(tmp_path, monkeypatch, run_cli):
    """A fault only a config change fixes, met after the walk-forward saved its folds (here the CPCV
    refusal with the checks before training switched off), discards them: --resume keeps the config."""
    monkeypatch.setattr("lstmbt.backtest.pipeline.check_before_training", lambda *args, **kwargs: None)
    parent = tmp_path / "runs"
    parent.mkdir()
    line = _refused(_run_args(CPCV_16_15, parent / "out"), run_cli)
    assert line.startswith("error: split.scheme = 'cpcv': CPCV split 0") and "lstmbt run --resume" not in line
    assert line.endswith("(the 2 of 2 folds saved before it were discarded: --resume keeps the config, so they could "
                         "not be continued)")
    assert list(parent.iterdir()) == []


def _flat_stretch_csv(path: Path) -> Path:
    """A random walk with 300 days of moves of 0.01% in the middle."""
    rng = np.random.default_rng(3)
    days = pd.bdate_range("2015-01-01", periods=900)
    moves = rng.normal(3e-4, 0.012, len(days))
    moves[300:600] = 1e-4 * np.sign(rng.normal(size=300))
    close = 100 * np.exp(np.cumsum(moves))
    frame = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "open": close, "high": close * 1.001,
                          "low": close * 0.999, "close": close, "volume": rng.integers(1_000, 5_000, len(days))})
    frame.to_csv(path, index=False)
    return path


def test_a_dead_zone_that_empties_a_fold_is_refused_before_training(tmp_path, monkeypatch, run_cli):
    _never_train(monkeypatch)
    source = f"csv:{_flat_stretch_csv(tmp_path / 'flat.csv')}"
    values = {**LINEAR_VALUES, "data.source": source, "target.task": "classification", "split.scheme": "rolling",
              "split.min_train": 150, "split.step": 50, "target.dead_zone": 0.002, "data.max_stale_bars": 0}
    line = _refused(_run_args(values, tmp_path / "out"), run_cli)
    assert re.fullmatch(r"error: fold \d+'s \d+ training samples at horizon 1 \(\S+ to \S+\) all move less than "
                        r"target\.dead_zone = 0\.002, so each has weight 0 and a classifier has nothing to learn; "
                        r"lower target\.dead_zone", line), line
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


# --------------------------------------------------------------------------- predict, families


def test_predict_with_several_horizons_is_one_line_before_loading(monkeypatch, run_cli):
    monkeypatch.setattr("lstmbt.backtest.forecast.load_checked", lambda *a, **k: pytest.fail("loaded data"))
    line = _refused(["predict", *set_args({**SPX, "target.horizons": [1, 5]})], run_cli)
    assert line == ("error: lstmbt predict forecasts one horizon, but target.horizons = [1, 5] lists 2; forecast "
                    "each on its own with --set target.horizons=[] --set target.horizon=H, for H in 1, 5")


def test_no_network_family_beside_model_lstm_is_refused(tmp_path, run_cli):
    parent = tmp_path / "runs"
    parent.mkdir()
    line = _refused(_run_args({**TINY_SPX, "model.families": []}, parent / "out"), run_cli)
    assert line == ("error: model.families is empty while model.lstm = true, so no network would be trained; list "
                    "at least one of lstm, gru, transformer, tcn, or set model.lstm = false to train none")
    assert list(parent.iterdir()) == []


def test_a_saved_run_that_trained_no_network_still_loads():
    """A run saved before the refusal with families = [] beside lstm = true trained no network: it
    reads back as model.lstm = false, what it ran."""
    config = RunConfig.from_saved({"model": {"families": [], "lstm": True, "linear": True}})
    assert config.model.networks == () and config.model.lstm is False


# --------------------------------------------------------------------------- seeds


@pytest.fixture(scope="module")
def seven(tmp_path_factory) -> dict[str, Path]:
    """The tiny LSTM run with train.seeds = [7] and with train.seed = 7."""
    root = tmp_path_factory.mktemp("seeds")
    runs = {}
    for name, values in (("seeds", {"train.seeds": [7]}), ("seed", {"train.seed": 7})):
        code, _, err = call_main(["run", "--target", "classification", *set_args({**TINY_SPX, **values}),
                                  "--out", str(root / name)])
        assert code == 0, err
        runs[name] = root / name
    return runs


def test_a_single_listed_seed_is_recorded_and_bootstrapped_as_that_seed(seven):
    listed, alone = (json.loads((seven[k] / "manifest.json").read_text()) for k in ("seeds", "seed"))
    assert (listed["seed"], listed["seeds"], alone["seed"], alone["seeds"]) == (7, [7], 7, [7])
    assert "the first, 7, is the run's seed" in listed["seed_rule"] and "seed_rule" not in alone
    # the same network, and every bootstrap figure seeded alike: the two runs are one
    pd.testing.assert_frame_equal(pd.read_parquet(seven["seeds"] / "predictions.parquet"),
                                  pd.read_parquet(seven["seed"] / "predictions.parquet"), check_exact=True)
    assert (seven["seeds"] / "metrics.json").read_text() == (seven["seed"] / "metrics.json").read_text()


def test_an_unused_train_seed_beside_train_seeds_is_noted():
    from lstmbt.backtest.seeds import unused_seed_note

    config = RunConfig().with_values({"train.seed": 5, "train.seeds": [3, 8]})
    assert config.train.run_seed == 3
    assert unused_seed_note(config) == ["train.seed = 5 is unused: with train.seeds = [3, 8] the run's seed (the "
                                        "manifest's, the bootstraps' and the baselines') is the first listed, 3."]
    assert unused_seed_note(config.with_values({"train.seed": 3})) == []
