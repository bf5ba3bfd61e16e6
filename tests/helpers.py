"""Helpers shared by the CLI tests."""

from __future__ import annotations

import sys

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
