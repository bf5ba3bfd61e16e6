"""lstmbt: walk-forward LSTM predictions, vectorbt backtests with costs, and honest HTML reports.

The public API, for scripts and notebooks:

- ``lstmbt.run(config=None, *, source=None, quick=False, set=None, prices=None, name=None,
  out=None)``: a whole run, as ``lstmbt run`` (same config layering, same thread handling, and
  a ``prices`` DataFrame checked as a ``csv:`` file is).
- ``lstmbt.load(run_dir)``: a saved run directory.
- ``lstmbt.backtest(prices, positions, periods_per_year=None, **costs)``: your own target
  positions, backtested with costs beside buy-and-hold and scored with the same metrics and
  significance figures. (``lstmbt.backtest`` is also the core package: ``lstmbt.backtest.config``
  and friends.)
- ``lstmbt.tear_sheet(returns, benchmark=None, path=None, periods_per_year=None)``: the same for
  returns. Both annualise with the bars a year of the dates (daily 252, 7-day 365, weekly 52,
  monthly 12) or ``periods_per_year``, and say which in ``manifest["periods_per_year"]``.
- ``lstmbt.register_model(name, cls)``: your own scikit-learn estimator, run on the same folds
  as lstmbt's models when a config lists ``name`` in ``model.custom`` (``lstmbt.models.plugins``).
- ``lstmbt.register_strategy(name, rule)``: a strategy rule of your own, used by a run with
  ``strategy.custom = name`` (a dotted path ``"pkg.mod:rule"`` needs no registering).

Each returns a ``lstmbt.RunResult``: ``.metrics`` (strategy x metric DataFrame), ``.returns``,
``.positions``, ``.predictions``, ``.folds``, ``.trades``, ``.config``, ``.report(path=None)``,
``.save(out)``, and its scorecard when shown in Jupyter. Bad input raises ``lstmbt.ConfigError``
or ``lstmbt.DataError`` (both ``lstmbt.LstmbtError``) with one line naming the problem and the fix.

    >>> import lstmbt
    >>> result = lstmbt.run(quick=True, set={"data.start": "2012-01-01"})
    >>> result.metrics[["sharpe", "hit_rate", "verdict"]]
    >>> result.report("report.html")
"""

from __future__ import annotations

# first: Ctrl-C and SIGTERM end the `lstmbt` command in one line even while the rest loads
from lstmbt.backtest import interrupts as _interrupts

if _interrupts.is_command():  # the command's process only, never a program that imports lstmbt
    _interrupts.install()

import types
from typing import Any

from lstmbt import backtest
from lstmbt.backtest import __version__
from lstmbt.backtest.errors import ConfigError, DataError, LstmbtError
from lstmbt.models import plugins


class _CallablePackage(types.ModuleType):
    """The core package ``lstmbt.backtest``, made callable: ``lstmbt.backtest(prices, positions, **costs)``
    runs the core's ad-hoc backtest, while ``lstmbt.backtest.config`` and the rest stay submodules."""

    def __call__(self, prices: Any, positions: Any, **costs: Any) -> Any:
        """Backtest target positions on prices with costs, beside buy-and-hold; see
        ``lstmbt.backtest.adhoc.backtest_positions`` for the arguments (the costs, and
        ``periods_per_year``: by default inferred from the price dates) and the figures.

        Returns
        -------
        lstmbt.RunResult
        """
        # pandas and vectorbt load on the first call, so `lstmbt --help` stays fast
        from lstmbt.backtest.adhoc import backtest_positions
        from lstmbt.result import RunResult

        return RunResult(backtest_positions(prices, positions, **costs))


# the module of a package can change class (not identity): every `lstmbt.backtest` stays this one object
backtest.__class__ = _CallablePackage


def register_model(name: str, cls: type) -> None:
    """Make the estimator class ``cls`` available as ``model.custom = ["name"]`` in this process.

    Its models are named ``name_regression`` or ``name_classification`` (a classifier runs on the
    up/down target). The class is checked against the plug-in protocol now
    (``lstmbt.models.plugins``); a class that breaks it raises ``lstmbt.ConfigError``. Process
    pools and Ray import plug-ins afresh: give those a dotted path (``"mypkg.models:MyNet"``).
    """
    try:
        plugins.register_model(name, cls)
    except plugins.PluginError as exc:
        raise ConfigError(str(exc)) from None


def __getattr__(name: str) -> Any:
    """``run``, ``load``, ``tear_sheet``, ``register_strategy`` and ``RunResult``, imported on first use:
    they load pandas, which ``lstmbt --help`` (which imports this package first) does not need."""
    if name in ("run", "load", "tear_sheet", "register_strategy", "RunResult"):
        from lstmbt import api

        value = globals()[name] = getattr(api, name)  # kept: later lookups (and pdoc) find it directly
        return value
    raise AttributeError(f"module 'lstmbt' has no attribute {name!r}")


__all__ = ["run", "load", "backtest", "tear_sheet", "register_model", "register_strategy", "RunResult", "ConfigError",
           "DataError", "LstmbtError", "__version__"]
