"""Helpers shared by the CLI tests."""

from __future__ import annotations

import sys

import pytest

import lstmbt.backtest.cli.app as cli

#: a tiny LSTM run: ``--set`` items, and the same as CLI arguments (a couple of seconds per run)
TINY_SETS = ["split.min_train=150", "split.step=100", "model.lookback=5", "model.hidden_size=4",
             "model.num_layers=1", "model.head=[]", "train.max_epochs=1", "train.device=cpu"]
TINY = [arg for item in TINY_SETS for arg in ("--set", item)]
#: a linear-only run on S&P 500 prices from 2014: a finished run directory in seconds
LINEAR_FLAGS = {"data.source": "sample:sp500", "data.start": "2014-01-01", "split.min_train": 300, "split.step": 150,
                "model.lookback": 5, "model.lstm": False}


def run_main(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Call the real console entry point; returns (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["lstmbt", *argv])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks on one intra-op thread (faster on a busy 2-core machine), then restore.

    Import it into a test module to apply it to every test there.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
