"""``python -m lstmbt ...``: the same command line as the ``lstmbt`` script."""

from lstmbt.backtest.cli import main

main()
