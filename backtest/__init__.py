"""Orchestration: data in, walk-forward predictions, portfolio, metrics, run directories, CLI.

Nothing heavy is imported here, so ``lstmbt --help`` stays fast.
"""

__version__ = "0.1.0"
