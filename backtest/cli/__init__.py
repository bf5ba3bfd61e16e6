"""The command line: the typer app and one module of commands per wing. Nothing imports it."""

from lstmbt.backtest.cli.app import main

__all__ = ["main"]
