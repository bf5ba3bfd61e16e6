"""Constants and functions shared by the tests; the fixtures built on them are in conftest.py.

Import them one way, ``from helpers import ...`` (conftest.py says why that works).
"""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import pytest

import lstmbt.backtest.cli.app as cli


def set_items(values: dict[str, Any]) -> list[str]:
    """``{"model.head": [], "train.device": "cpu"}`` -> ``["model.head=[]", 'train.device="cpu"']``:
    ``--set`` items (TOML literals) that ``parse_overrides`` reads back as ``values``."""
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def set_args(values: dict[str, Any]) -> list[str]:
    """Config values as CLI arguments: ``["--set", "model.lookback=5", ...]``."""
    return [arg for item in set_items(values) for arg in ("--set", item)]


#: THE tiny config: an LSTM run of a couple of seconds on ~650 rows. Tests that need something else
#: spell out the difference as an override, ``{**TINY_VALUES, "split.step": 40}``, never a copy.
TINY_VALUES: dict[str, Any] = {"split.min_train": 150, "split.step": 100, "model.lookback": 5,
                               "model.hidden_size": 4, "model.num_layers": 1, "model.head": [],
                               "train.max_epochs": 1, "train.device": "cpu"}
#: the same as ``--set`` items (``RunConfig`` overrides) and as CLI arguments
TINY_SETS = set_items(TINY_VALUES)
TINY = set_args(TINY_VALUES)
#: the tiny config on ~650 rows of the embedded S&P 500 sample (4 folds)
TINY_SPX: dict[str, Any] = {**TINY_VALUES, "data.source": "sample:sp500", "data.start": "2016-06-01"}
#: the tiny config with the linear models only (its LSTM settings are then unused)
LINEAR_VALUES: dict[str, Any] = {**TINY_VALUES, "model.lstm": False}
#: a linear-only run on S&P 500 prices from 2014: a finished run directory in seconds
LINEAR_FLAGS: dict[str, Any] = {**LINEAR_VALUES, "data.source": "sample:sp500", "data.start": "2014-01-01",
                                "split.min_train": 300, "split.step": 150}
#: a linear-only run on ``test_pipeline.planted_prices`` (its source is the test's CSV): two feature groups
PLANTED_FLAGS: dict[str, Any] = {**LINEAR_VALUES, "features.groups": ["volume", "returns"], "split.min_train": 300}


def run_main(argv: list[str], monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Call the real console entry point; returns (exit status, stdout, stderr).

    Tests use it through conftest's ``run_cli`` fixture.
    """
    monkeypatch.setattr(sys, "argv", ["lstmbt", *argv])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def call_main(argv: list[str]) -> tuple[int, str, str]:
    """``run_main`` for module-scoped fixtures, which cannot use ``capsys``: the entry point with
    stdout and stderr swapped for buffers by hand; returns (exit status, stdout, stderr)."""
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True) for _ in range(2))
    code = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["lstmbt", *argv])
        mp.setattr(sys, "stdout", out)
        mp.setattr(sys, "stderr", err)
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.buffer.getvalue().decode("utf-8"), err.buffer.getvalue().decode("utf-8")


def save_with_report(result, out_dir):
    """Save a run directory with its report page, as ``lstmbt run`` does (the core renders no page)."""
    from lstmbt.backtest.rundir import save_run
    from lstmbt.reports import run_pages

    return save_run(result, out_dir, pages=run_pages(result))
