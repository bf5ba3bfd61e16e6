"""The core: one run, from config to a saved run directory; and ad-hoc backtests of your own signals.

Installed as ``lstmbt.backtest``, the package is also callable: ``lstmbt.backtest(prices,
positions, **costs)`` backtests target positions you made yourself (``backtest.adhoc``; the call
is wired up by the public API in ``lstmbt/__init__.py``, which always loads first), while
``lstmbt.backtest.config`` and the other submodules import as usual.

Nothing heavy is imported here, so ``lstmbt --help`` stays fast.
"""

__version__ = "0.1.0"
