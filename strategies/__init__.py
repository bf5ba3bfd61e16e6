"""Pure functions: predictions -> target positions in [-1, 1], one per decision day.

A position dated t is decided after the close of day t; ``backtest.portfolio`` alone applies the
execution lag. Nothing here looks at prices after t.
"""

from lstmbt.strategies.rules import (
    buy_and_hold,
    classification_confidence_positions,
    classification_positions,
    drawdown_positions,
    predicted_log_return,
    regression_confidence_positions,
    regression_positions,
    trailing_volatility,
    vol_target_positions,
)

__all__ = ["buy_and_hold", "classification_confidence_positions", "classification_positions", "drawdown_positions",
           "predicted_log_return", "regression_confidence_positions", "regression_positions", "trailing_volatility",
           "vol_target_positions"]
