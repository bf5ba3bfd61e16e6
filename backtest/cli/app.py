"""The ``lstmbt`` command line (typer). ``python -m backtest`` runs the same app.

Only the config and error modules are imported at start-up, so ``lstmbt --help`` loads
neither torch nor vectorbt. Input problems exit with status 2 and one line on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from lstmbt.backtest.config import QUICK_PRESET, RunConfig, parse_overrides
from lstmbt.backtest.errors import LstmbtError

app = typer.Typer(
    name="lstmbt",
    help="Walk-forward LSTM predictions, backtested with costs, reported against buy-and-hold.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect or download price data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
runs_app = typer.Typer(help="List and show saved runs (an SQLite index over the run directories).",
                       no_args_is_help=True)
app.add_typer(runs_app, name="runs")
RootOpt = Annotated[Path, typer.Option(help="Directory that holds the run directories.")]

SourceOpt = Annotated[Optional[str], typer.Option(
    "--source", "-s", help="sample:sp500, sample:nasdaq, csv:PATH or fdr:TICKER (default sample:sp500); "
                           "for `run`, several tickers (fdr:A,B,C, list:FILE, a long CSV) make a universe.")]
SymbolOpt = Annotated[Optional[str], typer.Option(help="Symbol to pick from a long-format CSV.")]
StartOpt = Annotated[Optional[str], typer.Option(help="First date to use, YYYY-MM-DD.")]
EndOpt = Annotated[Optional[str], typer.Option(help="Last date to use, YYYY-MM-DD.")]
RefreshOpt = Annotated[bool, typer.Option("--refresh", help="Bypass the FinanceDataReader cache.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML file with [section] keys.")]
TargetOpt = Annotated[Optional[str], typer.Option(help="regression, classification or both (default both).")]
QuickOpt = Annotated[bool, typer.Option("--quick", help="Small model on yearly folds: seconds instead of minutes.")]
ExogOpt = Annotated[Optional[str], typer.Option(
    help="Exogenous series as return features, comma-separated: fdr:TICKER or csv:PATH, e.g. "
         "fdr:USD/KRW,fdr:VIX (joined as of each price date).")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Override one config key, e.g. --set model.hidden_size=64 (repeatable).")]


@app.command()
def run(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    symbol: SymbolOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    target: TargetOpt = None,
    set_: SetOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<source>-<timestamp>).")] = None,
    quick: QuickOpt = False,
    refresh: RefreshOpt = False,
    exog: ExogOpt = None,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue an interrupted run from its last saved fold: pass its run directory (its --out); "
             "it keeps its own config.")] = None,
    executor: Annotated[str, typer.Option(
        help="Where the tickers of a universe run: local (a process pool on this machine) or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster for --executor ray: auto or ray://HEAD:10001 (default: start Ray on this machine).")] = None,
) -> None:
    """Walk forward, backtest and report; prints the path of report.html at the end.

    A source naming several tickers (fdr:A,B,C, list:FILE, a long CSV without --symbol) runs a universe.
    """
    if resume is not None:  # the interrupted run's config, never a new one
        cfg, out = _resumed_config(resume, {"--config": config, "--source": source, "--symbol": symbol,
                                            "--start": start, "--end": end, "--target": target, "--set": set_,
                                            "--out": out, "--quick": quick, "--refresh": refresh, "--exog": exog})
    else:
        cfg = _resolve_config(config, _flags(source, symbol, start, end, target, refresh, exog), set_, quick)
    from lstmbt.backtest.cli.campaign import run_universe_command, universe_of

    cfg, tickers = universe_of(cfg, executor, address)
    if tickers:
        run_universe_command(cfg, tickers, out, executor, address, resumed=resume is not None)
        return
    from lstmbt.backtest.partial import claim_run, discard_partial, interrupted_line, partial_dir
    from lstmbt.backtest.pipeline import default_run_dir, run as run_pipeline, save_run

    out_dir, resumed = out or default_run_dir(cfg.data.source), resume is not None
    # finished folds are kept in <out.parent>/.<out.name>.partial/ (locked while this runs) until the run is saved
    try:
        with _saved_work_noted(), claim_run(out_dir, cfg, resumed) as partial, _progress() as progress:
            result = run_pipeline(cfg, progress=progress, checkpoint=partial / "folds")
            progress("report", 0, 1)
            saved = save_run(result, out_dir)
            discard_partial(partial)
    except KeyboardInterrupt:
        # typer turns Ctrl-C into a silent exit 130 before main() could see it; save_run has
        # already removed its temporary directory; the saved folds stay for --resume
        typer.echo(interrupted_line(partial_dir(out_dir), out_dir, resumed=resumed), err=True)
        raise typer.Exit(130) from None
    _print_outcome(result.metrics, result.manifest, saved / "report.html", result.comparisons)


class _saved_work_noted:
    """Print the notes ``claim_run`` adds to an unexpected error (the folds kept for --resume)
    before main() prints the error's own line."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, traceback: Any) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, (LstmbtError, typer.Exit)):
            for note in getattr(exc, "__notes__", ()):
                typer.echo(f"note: {note}", err=True)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `lstmbt run`.")],
    out: Annotated[Optional[Path], typer.Option(help="Where to write the HTML (default RUN_DIR/report.html).")] = None,
) -> None:
    """Re-render report.html from a saved run directory (a universe's, or one ticker's)."""
    from lstmbt.backtest.pipeline import load_run
    from lstmbt.backtest.universe.io import is_universe_dir, load_universe_run
    from lstmbt.reports import render_report, write_page
    from lstmbt.reports.universe import render_universe

    text = render_universe(load_universe_run(run_dir)) if is_universe_dir(run_dir) else render_report(load_run(run_dir))
    target = write_page(out or run_dir / "report.html", text)
    typer.echo(f"report: {target.resolve()}")


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directories written by `lstmbt run` (one alone shows its models side by side).",
        metavar="RUN_DIR", show_default=False)],
    out: Annotated[Optional[Path], typer.Option(
        help="Where to write the HTML (default runs/compare-<UTC timestamp>.html).")] = None,
) -> None:
    """Put saved runs side by side: metrics tables and equity curves over their common period."""
    from lstmbt.backtest.errors import ConfigError
    from lstmbt.backtest.universe.io import is_universe_dir
    from lstmbt.reports.compare import default_compare_path, write_compare

    for run_dir in run_dirs:
        if is_universe_dir(run_dir):
            raise ConfigError(f"{run_dir} is a universe run; compare its tickers' run directories "
                              f"({run_dir / 'tickers'}/...), or open its report.html for the portfolios")
    target = write_compare(run_dirs, out or default_compare_path())
    typer.echo(f"compare: {target.resolve()}")


@data_app.command("show")
def data_show(source: SourceOpt = None, symbol: SymbolOpt = None, start: StartOpt = None, end: EndOpt = None,
              refresh: RefreshOpt = False) -> None:
    """Load a source, validate it, and print its range, size, hash, last rows and any data warnings."""
    from lstmbt.backtest.data import describe_prices, load_prices
    from lstmbt.backtest.datacheck import data_warnings

    cfg = _data_config(source, symbol, start, end, refresh)
    prices = load_prices(cfg)
    for key, value in describe_prices(prices, cfg.source, cfg.symbol).items():
        typer.echo(f"{key:>10}: {value}")
    typer.echo(prices.tail().to_string())
    for message in data_warnings(prices, cfg):
        typer.echo(f"warning: {message}")


@data_app.command("fetch")
def data_fetch(ticker: Annotated[str, typer.Argument(help="FinanceDataReader ticker, e.g. 005930, AAPL, KS11.")],
               start: StartOpt = None, end: EndOpt = None) -> None:
    """Download a ticker through FinanceDataReader into the cache (always refetches)."""
    from lstmbt.backtest.data import describe_prices, fdr_cache_dir, load_prices

    cfg = _data_config(f"fdr:{ticker}", None, start, end, True)
    prices = load_prices(cfg)
    info = describe_prices(prices, cfg.source)
    typer.echo(f"cached {info['rows']} rows {info['first_date']} to {info['last_date']} in {fdr_cache_dir()}")


@app.command()
def predict(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    symbol: SymbolOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    target: TargetOpt = None,
    set_: SetOpt = None,
    quick: QuickOpt = False,
    refresh: RefreshOpt = False,
    exog: ExogOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")] = False,
) -> None:
    """Train on all data up to the last bar and print the next trading day's forecast."""
    cfg = _resolve_config(config, _flags(source, symbol, start, end, target, refresh, exog), set_, quick)
    import json

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lstmbt.backtest.forecast import forecast_next, format_forecast

    # a spinner on a terminal's stderr that vanishes when done: stdout holds only the forecast
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("loading data", total=None)
        forecast = forecast_next(cfg, threads=_torch_threads(), progress=lambda stage, done, total: bar.update(
            task, description="loading data" if stage == "data" else f"training {stage}"))
    typer.echo(json.dumps(forecast.to_dict(), allow_nan=False) if as_json else format_forecast(forecast))


@app.command()
def importance(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    symbol: SymbolOpt = None,
    start: StartOpt = None,
    end: EndOpt = None,
    target: TargetOpt = None,
    set_: SetOpt = None,
    quick: QuickOpt = False,
    refresh: RefreshOpt = False,
    exog: ExogOpt = None,
    method: Annotated[str, typer.Option(help="permutation, ablation or both.")] = "both",
    repeats: Annotated[int, typer.Option(help="Shuffles per fold and feature group (permutation).")] = 3,
    out: Annotated[Optional[Path], typer.Option(
        help="Where to write the HTML (default runs/importance-<UTC timestamp>.html).")] = None,
) -> None:
    """Which feature groups the models rely on: shuffled within each test block, or dropped and retrained."""
    from lstmbt.backtest.importance import importance_frame, parse_method, summarize_importance

    parse_method(method)  # refuse a bad --method before loading anything
    cfg = _resolve_config(config, _flags(source, symbol, start, end, target, refresh, exog), set_, quick)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lstmbt.reports.importance import check_out_path, default_importance_path, summary_tables, write_importance

    target_path = out or default_importance_path()
    check_out_path(target_path)
    console = Console(stderr=True)  # progress on a terminal's stderr only; stdout holds the table and path
    with Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        frame = importance_frame(cfg, method, repeats, progress=progress)
    for table in summary_tables(summarize_importance(frame)):
        Console().print(table)
    written = write_importance(frame, cfg, target_path, n_repeats=repeats)
    typer.echo(f"importance: {written.resolve()}")


def _flags(source: Optional[str], symbol: Optional[str], start: Optional[str], end: Optional[str],
           target: Optional[str], refresh: bool, exog: Optional[str]) -> dict[str, Any]:
    """The config keys behind the data and target options that run, predict and importance share."""
    return {"data.source": source, "data.symbol": symbol, "data.start": start, "data.end": end,
            "target.task": target, "data.refresh": refresh or None,
            "data.exog": [part.strip() for part in exog.split(",")] if exog else None}


def _resumed_config(resume: Path, given: dict[str, Any]) -> tuple[RunConfig, Path]:
    """(config, run directory) of the interrupted run ``--resume`` names; options that would change
    its config are refused, since its saved folds were made with that config."""
    from lstmbt.backtest.partial import load_partial_config, resume_paths
    from lstmbt.backtest.errors import ConfigError

    clashing = [option for option, value in given.items() if value not in (None, False, [])]
    if clashing:
        raise ConfigError(f"--resume continues the interrupted run with the config it started with; "
                          f"drop {', '.join(clashing)}")
    out_dir, partial = resume_paths(resume)
    return load_partial_config(partial), out_dir


def _resolve_config(path: Optional[Path], flags: dict[str, Any], overrides: Optional[list[str]],
                    quick: bool) -> RunConfig:
    """The run config from defaults < the quick preset < a TOML file < flags < --set overrides."""
    return RunConfig.resolve(path=path, preset=QUICK_PRESET if quick else None,
                             flags={k: v for k, v in flags.items() if v is not None},
                             overrides=parse_overrides(overrides or []))


def _data_config(source, symbol, start, end, refresh):
    flags = {"data.source": source, "data.symbol": symbol, "data.start": start, "data.end": end,
             "data.refresh": refresh or None}
    return RunConfig.resolve(flags={k: v for k, v in flags.items() if v is not None}).data


class _progress:
    """Rich progress bars for the pipeline's progress(stage, done, total) callback.

    The display starts with the first stage after loading, so bad input prints only its error.
    ``stderr``: draw on stderr instead of stdout.
    """

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr

    def __enter__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=Console(stderr=True) if self._stderr else None)
        self._tasks: dict[str, Any] = {}
        self._started = False
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "data" and not self._started:
            return
        if not self._started:
            self._bar.start()
            self._started = True
        if stage not in self._tasks:
            for task_id in self._tasks.values():  # a new stage means the previous ones finished
                self._bar.update(task_id, completed=self._bar.tasks[task_id].total)
            self._tasks[stage] = self._bar.add_task(stage, total=total)
        self._bar.update(self._tasks[stage], completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if not self._started:
            return
        if exc[0] is None:
            for task_id in self._tasks.values():
                self._bar.update(task_id, completed=self._bar.tasks[task_id].total)
        else:
            self._bar.live.transient = True  # on failure, leave only the error line behind
        self._bar.stop()


def _torch_threads() -> int | None:
    """One torch thread per core this process may use, unless the user pinned OMP_NUM_THREADS."""
    import os

    from lstmbt.models.specs import available_cores

    return None if os.environ.get("OMP_NUM_THREADS") else available_cores()


def _print_outcome(metrics: dict[str, dict[str, Any]], manifest: dict[str, Any], report: Path,
                   comparisons: dict[str, Any] | None = None) -> None:
    """What a finished run prints: the scorecard, what survives testing every model at once and the
    head-to-head pairs (as the report's summary says them), the warnings as notes, the report path last."""
    from lstmbt.backtest.scoring import task_of
    from lstmbt.reports.scorecard import family_sentences, pair_sentence

    _print_summary(metrics)
    if comparisons:
        models = [s for s in metrics if task_of(s) is not None]
        for line in family_sentences(metrics, models, comparisons) + [pair_sentence(p) for p in comparisons["pairs"]]:
            typer.echo(line)
    for note in manifest.get("warnings", []):
        typer.echo(f"note: {note}")
    typer.echo(f"report: {report.resolve()}")


def _print_summary(metrics: dict[str, dict[str, Any]]) -> None:
    """The report's scorecard (``reports.scorecard``): the same rows, verdicts and figures, each
    cell's second line (interval, p-value, base rate) dimmed under its figure."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from lstmbt.backtest.scoring import task_of
    from lstmbt.reports.scorecard import COLUMNS, CONSOLE_HEADERS, scorecard_rows

    rows = scorecard_rows(metrics, [s for s in metrics if task_of(s) is not None])
    table = Table(title="Scorecard: out of sample, net of costs (verdict: Sharpe - B&H, family-wise interval)",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_lines=False)
    for key, header, _ in COLUMNS:
        table.add_column(CONSOLE_HEADERS.get(key, header), justify="left" if key in ("strategy", "verdict") else "right",
                         no_wrap=True)
    for row in rows:
        cells = [row["cells"][key] for key, _, _ in COLUMNS]
        table.add_row(*[c["text"] + (f"\n[dim]{c['sub']}[/dim]" if c["sub"] and key != "strategy" else "")
                        for (key, _, _), c in zip(COLUMNS, cells)])
    Console(width=max(Console().width, 160)).print(table)  # the scorecard's width, never folded


from lstmbt.backtest.cli import campaign  # noqa: E402,F401  (registers the sweep and runs commands on app)


@app.callback()
def _global_options(ctx: typer.Context, debug: Annotated[bool, typer.Option(
        "--debug", help="On an internal error, show the full traceback (as LSTMBT_DEBUG=1 does).")] = False) -> None:
    """Options before the command: ``lstmbt --debug run ...``."""
    from lstmbt.backtest.cli import errors as cli_errors

    cli_errors.session.update(debug=debug, command=ctx.invoked_subcommand)
    ctx.with_resource(cli_errors.interrupt_line())  # sees a Ctrl-C that escapes any command


def main() -> None:
    """Console entry point: every failure ends in one line on stderr and exit status 2 (bad input, a
    damaged file, a full disk), 130 (Ctrl-C) or 1 (a bug; LSTMBT_DEBUG=1 shows its traceback)."""
    from lstmbt.backtest.cli.errors import run_with_one_line_errors

    run_with_one_line_errors(app)
