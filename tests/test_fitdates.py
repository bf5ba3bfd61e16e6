"""True fit dates: where the data behind the predicting weights end, in the fold table and report
(``weights_end``), and in ``lstmbt predict`` (the fit ends at ``fit_end``; the validation tail only
picks the epoch count; ``train.refit`` refits on the whole window, as a run does).

Fast: a hand-made fold log, a tiny warm-started LSTM run on ~650 bars, and the linear models for
``predict``.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lstmbt.backtest.fitdates import weights_end
from helpers import TINY_SPX, set_args
from test_predict_decision import SPX, predict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DAYS = pd.to_datetime(["2010-01-04", "2010-02-01", "2010-03-01", "2010-04-01", "2010-05-03"])
VAL_END = pd.to_datetime(["2011-01-04", "2011-02-01", "2011-03-01", "2011-04-01", "2011-05-02"])


def log(warm: list[bool], best: list[int], refit_epochs: list[int] | None = None, epochs: int = 3) -> pd.DataFrame:
    n = len(warm)
    return pd.DataFrame({"fold": range(n), "fit_end": DAYS[:n], "val_end": VAL_END[:n], "warm": warm,
                         "best_epoch": best, "epochs": epochs, "refit": refit_epochs is not None,
                         "refit_epochs": refit_epochs or [0] * n})


def test_carried_weights_keep_the_date_of_the_fit_that_made_them():
    # cold, warm kept, warm kept, warm improved, cold restart
    ends = weights_end(log([False, True, True, True, False], [2, 0, 0, 1, 3]))
    assert list(ends) == [DAYS[0], DAYS[0], DAYS[0], DAYS[3], DAYS[4]]


def test_a_refit_ends_at_the_validation_tail_but_the_chain_carries_the_selection_weights():
    ends = weights_end(log([False, True, True], [2, 0, 1], refit_epochs=[2, 0, 1]))
    assert list(ends) == [VAL_END[0], DAYS[0], VAL_END[2]]  # a fold that kept its weights refits nothing
    linear = weights_end(log([False, False], [1, 1], refit_epochs=[0, 0], epochs=0))  # no epochs: refit always fits
    assert list(linear) == [VAL_END[0], VAL_END[1]]


@pytest.fixture(scope="module")
def warm_run(tmp_path_factory):
    from helpers import call_main

    out = tmp_path_factory.mktemp("fitdates") / "run"
    values = {**TINY_SPX, "split.step": 40, "train.max_epochs": 2, "train.warm_epochs": 1,
              "target.task": "classification", "model.linear": False}
    code, _, err = call_main(["run", *set_args(values), "--out", str(out)])
    assert code == 0, err
    return out


def test_the_fold_table_shows_where_the_predicting_weights_data_end(warm_run):
    folds = pd.read_parquet(warm_run / "folds.parquet")
    assert list(folds.columns).index("weights_end") == list(folds.columns).index("fit_end") + 1
    model = folds[folds["model"] == "lstm_classification"].reset_index(drop=True)
    assert (model["warm"] & (model["best_epoch"] == 0)).any()  # some fold predicts with carried weights
    for k, row in model.iterrows():
        kept = row["warm"] and row["best_epoch"] == 0
        assert row["weights_end"] == (model["weights_end"].iloc[k - 1] if kept else row["fit_end"])
    assert (model["weights_end"] <= model["fit_end"]).all()
    page = (warm_run / "report.html").read_text(encoding="utf-8")
    assert "<th>weights_end</th>" in page or ">weights_end<" in page
    assert "the last sample the predicting weights were fitted on" in page


def fit_days(payload: dict) -> tuple[str, str, str, str]:
    return payload["train_start"], payload["fit_end"], payload["val_start"], payload["val_end"]


def test_predict_says_the_fit_ends_before_the_validation_tail(run_cli, tmp_path):
    payload = json.loads(predict(run_cli, SPX, "--json", "--root", str(tmp_path))[0])
    start, fit_end, val_start, val_end = fit_days(payload)
    assert start < fit_end < val_start <= val_end == payload["train_end"] == "2018-12-28"
    assert payload["refitted"] == []
    out, _ = predict(run_cli, SPX, "--root", str(tmp_path))
    assert out.splitlines()[-1] == (
        f"fitted on {start}..{fit_end} ({payload['n_train']} samples); {val_start}..{val_end} ({payload['n_val']} "
        "samples) only picked the epoch count (early stopping), so the weights were fitted on no later sample; a "
        "forecast is not evidence of skill - see the walk-forward report.")


def test_predict_refits_on_the_whole_window_when_the_run_would(run_cli, tmp_path):
    plain = json.loads(predict(run_cli, SPX, "--json", "--root", str(tmp_path))[0])
    refit = {**SPX, "train.refit": True}
    payload = json.loads(predict(run_cli, refit, "--json", "--root", str(tmp_path))[0])
    assert payload["refitted"] == ["ridge_regression", "logistic_classification"]
    ridge = [m for m in payload["models"] if m["model"] == "ridge_regression"][0]
    assert ridge["close"] != [m for m in plain["models"] if m["model"] == "ridge_regression"][0]["close"]
    start, fit_end, val_start, val_end = fit_days(payload)
    out, _ = predict(run_cli, refit, "--root", str(tmp_path))
    assert (f"({payload['n_val']} samples) only picked the epoch count (early stopping), then every model refitted on "
            f"{start}..{val_end} for those epochs (train.refit = true), so the weights end at {val_end}; ") in out
