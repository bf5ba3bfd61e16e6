"""lstmbt: walk-forward LSTM predictions, vectorbt backtests with costs, and honest HTML reports."""

from lstmbt.backtest import __version__

__all__ = ["__version__"]
