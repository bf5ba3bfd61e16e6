"""The campaign commands: ``sweep`` and ``runs list|show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

import lstmbt.backtest.cli.errors as cli_errors
from lstmbt.backtest.campaign.executors import make_executor
from lstmbt.backtest.cli.options import PluginPathOpt, RootOpt, progress_bars, use_plugin_path
from lstmbt.backtest.errors import ConfigError, printable
from lstmbt.backtest.interrupts import Interrupted

def sweep(
    ctx: typer.Context,
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", help="Sweep file: TOML with a sweep table and a params table (README: Sweeps).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Sweep directory (default runs/sweep-<timestamp>); one of the same sweep is resumed.")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        help="Finish an earlier sweep: its directory. Finished training trials are not retrained.")] = None,
    executor: Annotated[str, typer.Option(help="Where training trials run: local (process pool) or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster for --executor ray: auto or ray://HEAD:10001 (default: start Ray here).")] = None,
    workers: Annotated[Optional[int], typer.Option(
        help="Most training trials at once with --executor local (default: one per core, or per thread "
             "OMP_NUM_THREADS allows); the cores left are split between them as torch threads.")] = None,
    plugin_path: PluginPathOpt = None,
) -> None:
    """Grid or random search over run-config keys, ranked, with the deflated Sharpe ratio and PBO.

    Signal-only keys (strategy.*, backtest.*) are scored from saved predictions without retraining.
    """
    use_plugin_path(ctx, plugin_path)
    from lstmbt.backtest.rundir import default_run_dir  # loads numpy: on use, not at --help
    from lstmbt.backtest.campaign.sweep import resolve_spec, run_sweep  # loads pandas: on use, not at --help
    from lstmbt.reports.sweep import sweep_lines  # loads pandas: on use, not at --help

    if resume is not None and out is not None and resume.resolve() != out.resolve():
        raise ConfigError("--resume names the sweep directory to finish; drop --out")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    pool = make_executor(executor, address=address, workers=workers)
    spec = resolve_spec(config, resume)
    out_dir = resume or out or default_run_dir("sweep")
    try:
        with progress_bars(stderr=True) as progress:
            outcome = run_sweep(spec, out_dir, pool, progress=progress)
            cli_errors.saved(f"the sweep was saved at {out_dir}")
    except KeyboardInterrupt:
        if cli_errors.nothing_saved() and (out_dir / "sweep.toml").is_file():  # else the generic line is true
            raise Interrupted(f"interrupted: finished training trials are kept in {out_dir}; "
                              f"finish with lstmbt sweep --resume {out_dir}") from None
        raise
    for line in sweep_lines(outcome):
        typer.echo(line)
    typer.echo(f"sweep: {printable((out_dir / 'sweep.html').resolve())}")


def runs_list(
    root: RootOpt = Path("runs"),
    source: Annotated[Optional[str], typer.Option(help="Only runs whose data source contains this text.")] = None,
    target: Annotated[Optional[str], typer.Option(
        help="Only models whose name contains this: regression, classification, lstm, ridge, ...")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only runs created on or after this date, YYYY-MM-DD.")] = None,
    sort: Annotated[Optional[str], typer.Option(help="Sort by this metric, best first (e.g. sharpe).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help=(
        "Also list the runs inside sweeps, universes and sub-folders, each marked with what holds it."))] = False,
) -> None:
    """One row per saved run and model, with its key settings and metrics; runs with the same config,
    data and results are marked as duplicates of the oldest, and the same config and data with other
    results is warned about (a run that is not deterministic)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from lstmbt.backtest.campaign.registry import LIST_METRICS, list_runs  # loads pandas: on use, not at --help
    from lstmbt.reports import format_metric  # loads numpy: on use, not at --help

    frame = list_runs(root, source=source, target=target, since=since, sort=sort, recursive=recursive)
    headers = {"total_return": "return", "sharpe": "Sharpe", "bh_sharpe": "B&H Sharpe", "hit_rate": "hit",
               "hit_rate_pvalue": "hit p"}
    columns = ["total_return", "sharpe", "bh_sharpe", *LIST_METRICS[2:]] + (
        [sort] if sort and sort not in LIST_METRICS and sort != "bh_sharpe" else [])
    console = Console(markup=False, highlight=False)  # names are shown as they are, never read as markup
    count = frame["id"].nunique()
    console.print(f"{count} run{'' if count == 1 else 's'} under {printable(root)}"
                  + (f", by {printable(sort)}" if sort else ", newest first"), soft_wrap=True)
    for run_id, group in frame.groupby("id", sort=False):  # runs in the order of their best row
        first = group.iloc[0]
        console.print("\n" + printable(f"{run_id}  {first['source']}  {first['first_date']}..{first['last_date']}"
                                       + "".join(f"  [{mark}]" for mark in _marks(first))),
                      soft_wrap=True)  # a run's line is never broken: it is searched for
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        table.add_column("model", no_wrap=True)
        for column in columns:
            table.add_column(Text(printable(headers.get(column, column))), justify="right", no_wrap=True)
        for record in group.to_dict("records"):
            table.add_row(Text(printable(record["strategy"])),
                          *[format_metric("sharpe" if c == "bh_sharpe" else c, record.get(c)) for c in columns])
        console.print(table)
    if frame.attrs.get("nested"):
        nested = frame.attrs["nested"]
        console.print(f"\n{nested} more run{'' if nested == 1 else 's'} inside sweeps, universes or sub-folders: "
                      "--recursive lists them", highlight=False, soft_wrap=True)


def _marks(run: Any) -> list[str]:
    """What a run's line in ``runs list`` says of it: what holds it, and its twins (same config and data)."""
    marks = [f"in {run['part_of']}"] if isinstance(run["part_of"], str) else []
    if isinstance(run["duplicate_of"], str):  # None or NaN (pandas' missing value) when not one
        marks.append(f"duplicate of {run['duplicate_of']} (same config, data and results)")
    if isinstance(run["differs_from"], str):
        marks.append(f"same config and data as {run['differs_from']}, different results: see the warning")
    return marks


def runs_show(run_id: Annotated[str, typer.Argument(metavar="ID", help="A run directory's name.")],
              root: RootOpt = Path("runs")) -> None:
    """One run: where it is, its settings, and every metric of every strategy (names never cut:
    on a narrow terminal the strategies are split over several tables)."""
    from rich.console import Console

    from lstmbt.backtest.campaign.registry import show_run  # loads pandas: on use, not at --help

    info, metrics = show_run(root, run_id)
    for key in ("path", "created", "source", "symbol", "task", "regression", "horizon", "first_date", "last_date",
                "days", "part_of"):
        typer.echo(f"{key:>12}: {printable(info.get(key) or '-')}")
    same = [f"duplicate of {info['duplicate_of']} (same results)"] if info["duplicate_of"] else []
    same += [f"duplicated by {', '.join(info['duplicates'])}"] if info["duplicates"] else []
    same += [f"{info['differs_from']} has different results: see the warning"] if info["differs_from"] else []
    typer.echo(printable(f"{'same config':>12}: {'; '.join(same) or 'none'} (config {str(info['config_digest'])[:12]}, "
                         f"data {str(info['data_sha256'])[:12]})"))
    console = Console(markup=False, highlight=False)  # names are shown as they are, never read as markup
    for table in metric_tables(metrics, console.width):
        console.print(table)


def metric_tables(metrics: Any, width: int) -> list[Any]:
    """``metrics`` (metric x strategy) as rich tables of whole columns, as many strategies to a table
    as fit ``width`` characters (at least one), so no name or figure is ever truncated."""
    from rich.table import Table
    from rich.text import Text

    from lstmbt.reports import format_metric  # loads numpy: on use, not at --help

    cells = {s: [format_metric(m, v) for m, v in metrics[s].items()] for s in metrics.columns}
    names = {name: printable(name) for name in [*metrics.index, *metrics.columns]}  # escaped, as shown
    first = max([len("metric"), *(len(names[m]) for m in metrics.index)]) + 4
    groups, current, used = [], [], first
    for strategy in metrics.columns:
        need = max([len(names[strategy]), *map(len, cells[strategy])]) + 3  # the column and its padding and rule
        if current and used + need > width:
            groups.append(current)
            current, used = [], first
        current.append(strategy)
        used += need
    groups.append(current)
    tables = []
    for n, group in enumerate(groups, start=1):
        table = Table(title="metrics" if len(groups) == 1 else f"metrics ({n} of {len(groups)})")
        table.add_column("metric", no_wrap=True)
        for strategy in group:
            table.add_column(Text(names[strategy]), justify="right", no_wrap=True)
        for i, metric in enumerate(metrics.index):
            table.add_row(Text(names[metric]), *[cells[s][i] for s in group])
        tables.append(table)
    return tables
