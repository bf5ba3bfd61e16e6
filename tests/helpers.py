"""Helpers shared by the CLI tests."""

from __future__ import annotations

import sys

import pytest

import backtest.cli as cli


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
