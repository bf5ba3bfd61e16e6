"""The ``lstmbt`` command line (typer): the app, its command groups and the entry point.

Commands live in one module per wing (``core``, ``campaign``, ``universe``) and are registered
here, so nothing imports this module but the entry points. Input problems exit with status 2 and
one line on stderr.
"""

from __future__ import annotations

from typing import Annotated

import typer

import lstmbt.backtest.cli.campaign as campaign
import lstmbt.backtest.cli.core as core
import lstmbt.backtest.cli.errors as cli_errors
from lstmbt.backtest.cli.environment import tidy_environment
from lstmbt.backtest.errors import terminal_line

app = typer.Typer(
    name="lstmbt",
    help="Walk-forward LSTM predictions, backtested with costs, reported against buy-and-hold.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect or download price data.", no_args_is_help=True)
runs_app = typer.Typer(help="List and show saved runs (an SQLite index over the run directories).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(runs_app, name="runs")

for command in (core.run, core.report, core.compare, core.predict, core.importance, campaign.sweep):
    app.command()(command)
data_app.command("show")(core.data_show)
data_app.command("fetch")(core.data_fetch)
runs_app.command("list")(campaign.runs_list)
runs_app.command("show")(campaign.runs_show)


@app.callback()
def _global_options(ctx: typer.Context, debug: Annotated[bool, typer.Option(
        "--debug", help="On an internal error, show the full traceback (as LSTMBT_DEBUG=1 does).")] = False) -> None:
    """Options before the command: ``lstmbt --debug run ...``."""
    cli_errors.session.update(debug=debug, command=ctx.invoked_subcommand)
    ctx.with_resource(cli_errors.interrupt_line())  # sees a Ctrl-C that escapes any command


def main() -> None:
    """Console entry point: every failure ends in one line on stderr and exit status 2 (bad input, a
    damaged file, a full disk), 130 (Ctrl-C) or 1 (a bug; LSTMBT_DEBUG=1 shows its traceback).
    The environment is tidied first, before any library reads it (``environment``)."""
    for note in tidy_environment():
        typer.echo(f"note: {terminal_line(note)}", err=True)
    cli_errors.run_with_one_line_errors(app)
