"""The campaign commands of the ``lstmbt`` CLI: ``sweep``, ``runs list|show``, and the universe
branch of ``run``. Registered on ``backtest.cli.app`` when that module is imported; heavy modules
are imported inside the commands, so ``lstmbt --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from lstmbt.backtest.cli.app import RootOpt, _print_outcome, _progress, _saved_work_noted, app, runs_app
from lstmbt.backtest.config import RunConfig


@app.command()
def sweep(
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
        help="Most training trials at once with --executor local (default: one per core).")] = None,
) -> None:
    """Grid or random search over run-config keys, ranked, with the deflated Sharpe ratio and PBO.

    Signal-only keys (strategy.*, backtest.*) are scored from saved predictions without retraining.
    """
    from lstmbt.backtest.errors import ConfigError
    from lstmbt.backtest.campaign.executors import make_executor
    from lstmbt.backtest.pipeline import default_run_dir
    from lstmbt.backtest.campaign.sweep import resolve_spec, run_sweep, sweep_lines

    if resume is not None and out is not None and resume.resolve() != out.resolve():
        raise ConfigError("--resume names the sweep directory to finish; drop --out")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers} must be at least 1")
    pool = make_executor(executor, address=address, workers=workers)
    spec = resolve_spec(config, resume)
    out_dir = resume or out or default_run_dir("sweep")
    try:
        with _progress(stderr=True) as progress:
            outcome = run_sweep(spec, out_dir, pool, progress=progress)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: finished training trials are kept in {out_dir}; "
                   f"finish with lstmbt sweep --resume {out_dir}", err=True)
        raise typer.Exit(130) from None
    for line in sweep_lines(outcome):
        typer.echo(line)
    typer.echo(f"sweep: {(out_dir / 'sweep.html').resolve()}")



@runs_app.command("list")
def runs_list(
    root: RootOpt = Path("runs"),
    source: Annotated[Optional[str], typer.Option(help="Only runs whose data source contains this text.")] = None,
    target: Annotated[Optional[str], typer.Option(
        help="Only models whose name contains this: regression, classification, lstm, ridge, ...")] = None,
    since: Annotated[Optional[str], typer.Option(help="Only runs created on or after this date, YYYY-MM-DD.")] = None,
    sort: Annotated[Optional[str], typer.Option(help="Sort by this metric, best first (e.g. sharpe).")] = None,
) -> None:
    """One row per saved run and model, with its key settings and metrics."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from lstmbt.backtest.campaign.registry import LIST_METRICS, list_runs
    from lstmbt.reports import format_metric

    frame = list_runs(root, source=source, target=target, since=since, sort=sort)
    headers = {"total_return": "return", "sharpe": "Sharpe", "hit_rate": "hit", "hit_rate_pvalue": "hit p"}
    columns = [*LIST_METRICS] + ([sort] if sort and sort not in LIST_METRICS else [])
    console = Console()
    console.print(f"{frame['id'].nunique()} runs under {root}" + (f", by {sort}" if sort else ", newest first"))
    for run_id, group in frame.groupby("id", sort=False):  # runs in the order of their best row
        first = group.iloc[0]
        console.print(f"\n[bold]{run_id}[/bold]  {first['source']}  {first['first_date']}..{first['last_date']}",
                      highlight=False)
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        table.add_column("model", no_wrap=True)
        for column in columns:
            table.add_column(headers.get(column, column), justify="right", no_wrap=True)
        for record in group.to_dict("records"):
            table.add_row(record["strategy"], *[format_metric(c, record.get(c)) for c in columns])
        console.print(table)


@runs_app.command("show")
def runs_show(run_id: Annotated[str, typer.Argument(metavar="ID", help="A run directory's name.")],
              root: RootOpt = Path("runs")) -> None:
    """One run: where it is, its settings, and every metric of every strategy."""
    from rich.console import Console
    from rich.table import Table

    from lstmbt.backtest.campaign.registry import show_run
    from lstmbt.reports import format_metric

    info, metrics = show_run(root, run_id)
    for key in ("path", "created", "source", "symbol", "task", "regression", "horizon", "first_date", "last_date",
                "days"):
        typer.echo(f"{key:>11}: {info.get(key)}")
    table = Table(title="metrics")
    table.add_column("metric")
    for strategy in metrics.columns:
        table.add_column(strategy, justify="right")
    for metric, values in metrics.iterrows():
        table.add_row(metric, *[format_metric(metric, v) for v in values])
    Console().print(table)



def universe_of(cfg: RunConfig, executor: str, address: Optional[str]) -> tuple[RunConfig, list[Any] | None]:
    """(config, None) for a one-ticker source (a one-line list file becomes that ticker), or
    (config, tickers) for a universe; bad --executor/--address values are refused either way."""
    import dataclasses

    from lstmbt.backtest.campaign.executors import make_executor
    from lstmbt.backtest.universe.io import expand_source

    make_executor(executor, address=address)  # checks the options; starts nothing
    tickers = expand_source(cfg.data)
    if len(tickers) > 1:
        return cfg, tickers
    if cfg.model.pooled:
        from lstmbt.backtest.errors import ConfigError

        raise ConfigError("model.pooled = true pools the tickers of a universe, and this source names one; "
                          "name several (e.g. --source fdr:005930,000660) or drop model.pooled")
    return dataclasses.replace(cfg, data=tickers[0].data), None


def run_universe_command(cfg: RunConfig, tickers: list[Any], out: Optional[Path], executor: str,
                  address: Optional[str], resumed: bool = False) -> None:
    """Every ticker's run, kept in the partial directory as it finishes (so Ctrl-C or a kill
    loses only the tickers in flight), then the portfolios and the report in <out>. The partial
    directory is held by ``claim_run``, as a single run's is."""
    import shutil

    from lstmbt.backtest.campaign.executors import make_executor
    from lstmbt.backtest.partial import claim_run, discard_partial, interrupted_line, partial_dir
    from lstmbt.backtest.pipeline import default_run_dir, save_run, staged_dir
    from lstmbt.backtest.universe.running import run_universe
    from lstmbt.backtest.universe.io import write_universe

    out_dir = out or default_run_dir(cfg.data.source)
    try:
        with _saved_work_noted(), claim_run(out_dir, cfg, resumed) as partial:
            saved = partial / "tickers"
            if cfg.model.pooled:  # one model over all tickers: nothing of it survives an interruption
                shutil.rmtree(saved, ignore_errors=True)
            finished = _finished_tickers(saved, tickers, out_dir)
            with _progress(stderr=True) as progress:
                result = run_universe(cfg, tickers, make_executor(executor, address=address), progress=progress,
                                      on_ticker=lambda ticker, run: save_run(run, saved / ticker.slug),
                                      finished=finished, space_in=partial.parent)
                progress("report", 0, 1)
                with staged_dir(out_dir) as tmp:
                    shutil.copytree(saved, tmp / "tickers")
                    write_universe(result, tmp)
            discard_partial(partial)
    except KeyboardInterrupt:
        typer.echo(interrupted_line(partial_dir(out_dir), out_dir, resumed, tickers=len(tickers)), err=True)
        raise typer.Exit(130) from None
    _print_outcome(result.metrics, result.manifest, out_dir / "report.html")


def _finished_tickers(saved: Path, tickers: list[Any], out_dir: Path) -> dict[str, Any]:
    """The ticker runs an interrupted universe saved in ``saved``; a damaged one is named with the
    way to retrain just that ticker."""
    from lstmbt.backtest.pipeline import load_run
    from lstmbt.backtest.readback import DamagedFileError

    finished = {}
    for ticker in tickers:
        folder = saved / ticker.slug
        if not (folder / "report.html").is_file():
            continue
        try:
            finished[ticker.name] = load_run(folder)
        except DamagedFileError as exc:
            raise DamagedFileError(exc.path, exc.problem, fix=f"remove {folder} and run `lstmbt run --resume "
                                                              f"{out_dir}` to retrain that ticker") from None
    return finished
