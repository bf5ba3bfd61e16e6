"""The commands of the core: ``run``, ``report``, ``compare``, ``predict``, ``importance`` and ``data``.

The core loads on a command's first use, inside it, so ``lstmbt --help`` loads neither pandas nor torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

import lstmbt.backtest.cli.errors as cli_errors
from lstmbt.backtest.cli.options import (ConfigOpt, EndOpt, ExogOpt, PluginPathOpt, QuickOpt, RefreshOpt, SetOpt,
                                         SourceOpt, StartOpt, SymbolOpt, TargetOpt, data_config, option_flags,
                                         print_outcome, progress_bars, resolve_config, resumed_config,
                                         saved_work_noted, torch_threads, use_plugin_path)
from lstmbt.backtest.cli.universe import run_universe_command, universe_of
from lstmbt.backtest.errors import ConfigError, printable, terminal_line

def run(
    ctx: typer.Context,
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
        help="Where the tickers of a universe run (local: a process pool on this machine), or the CPCV splits of "
             "split.scheme = cpcv (local: side by side in this process); or ray.")] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="Ray cluster for --executor ray: auto or ray://HEAD:10001 (default: start Ray on this machine).")] = None,
    plugin_path: PluginPathOpt = None,
) -> None:
    """Walk forward, backtest and report; prints the path of report.html at the end.

    A source naming several tickers (fdr:A,B,C, list:FILE, a long CSV without --symbol) runs a universe.
    """
    use_plugin_path(ctx, plugin_path)
    if resume is not None:  # the interrupted run's config, never a new one
        cfg, out = resumed_config(resume, {"--config": config, "--source": source, "--symbol": symbol,
                                            "--start": start, "--end": end, "--target": target, "--set": set_,
                                            "--out": out, "--quick": quick, "--refresh": refresh, "--exog": exog})
    else:
        cfg = resolve_config(config, option_flags(source, symbol, start, end, target, refresh, exog), set_, quick)
    cfg, tickers = universe_of(cfg, executor, address)
    if tickers:
        run_universe_command(cfg, tickers, out, executor, address, resumed=resume is not None)
        return
    # loads pandas: on use, not at --help
    from lstmbt.backtest.partial import claim_run, discard_partial
    from lstmbt.backtest.pipeline import run as run_pipeline
    from lstmbt.backtest.rundir import default_run_dir, save_run  # loads numpy: on use, not at --help
    from lstmbt.models.key import keys_from_frame  # loads pandas: on use, not at --help
    from lstmbt.reports import run_pages  # loads numpy: on use, not at --help

    out_dir = out or default_run_dir(cfg.data.source)
    # finished folds are kept in <out.parent>/.<out.name>.partial/ (locked while this runs) until the run is
    # saved; an interrupt leaves the claim as an Interrupted whose line says what is kept
    with saved_work_noted(), claim_run(out_dir, cfg, resume is not None) as partial, progress_bars() as progress:
        result = run_pipeline(cfg, progress=progress, checkpoint=partial / "folds", threads=torch_threads(),
                              executor=cpcv_executor(cfg, executor, address))
        progress("report", 0, 1)
        saved = save_run(result, out_dir, pages=run_pages(result))
        cli_errors.saved(f"the run was saved at {out_dir}")
        discard_partial(partial)
    print_outcome(result.metrics, result.manifest, saved / "report.html", result.comparisons,
                   models=keys_from_frame(result.predictions), seeds=result.seeds, cpcv=result.cpcv)


def cpcv_executor(cfg: Any, executor: str, address: Optional[str]) -> Any:
    """The Ray executor that fits the CPCV splits with ``--executor ray``; None fits them in this process."""
    if executor != "ray" or not cfg.split.cpcv:
        return None
    from lstmbt.backtest.campaign.executors import make_executor  # loads Ray on use only

    return make_executor(executor, address=address)


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `lstmbt run`.")],
    out: Annotated[Optional[Path], typer.Option(help="Where to write the HTML (default RUN_DIR/report.html).")] = None,
) -> None:
    """Re-render report.html from a saved run directory (a universe's, or one ticker's)."""
    from lstmbt.backtest.rundir import load_run  # loads numpy: on use, not at --help
    from lstmbt.backtest.universe.io import is_universe_dir, load_universe_run  # loads pandas: on use, not at --help
    from lstmbt.backtest.rundir import write_atomic  # loads numpy: on use, not at --help
    from lstmbt.reports import render_report  # loads numpy: on use, not at --help
    from lstmbt.reports.universe import render_universe  # loads pandas: on use, not at --help

    text = render_universe(load_universe_run(run_dir)) if is_universe_dir(run_dir) else render_report(load_run(run_dir))
    target = out or run_dir / "report.html"
    with cli_errors.writing(target, f"the report was written to {target}"):
        write_atomic(target, text)
    typer.echo(f"report: {printable(target.resolve())}")


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Run directories written by `lstmbt run` (one alone shows its models side by side).",
        metavar="RUN_DIR", show_default=False)],
    out: Annotated[Optional[Path], typer.Option(
        help="Where to write the HTML (default runs/compare-<UTC timestamp>.html).")] = None,
) -> None:
    """Put saved runs side by side: metrics tables and equity curves over their common period."""
    from lstmbt.backtest.universe.io import is_universe_dir  # loads pandas: on use, not at --help
    from lstmbt.reports.compare import default_compare_path, write_compare  # loads numpy: on use, not at --help

    for run_dir in run_dirs:
        if is_universe_dir(run_dir):
            raise ConfigError(f"{run_dir} is a universe run; compare its tickers' run directories "
                              f"({run_dir / 'tickers'}/...), or open its report.html for the portfolios")
    target = out or default_compare_path()
    with cli_errors.writing(target, f"the comparison was written to {target}"):
        target = write_compare(run_dirs, target)
    typer.echo(f"compare: {printable(target.resolve())}")


def data_show(source: SourceOpt = None, symbol: SymbolOpt = None, start: StartOpt = None, end: EndOpt = None,
              refresh: RefreshOpt = False) -> None:
    """Load a source, validate it, and print its range, size, hash, last rows, any data warnings and,
    for a 7-day calendar, the bars a year a run annualises it with."""
    from lstmbt.backtest.data import describe_prices, load_prices  # loads numpy: on use, not at --help
    from lstmbt.backtest.annualise import run_note  # loads numpy: on use, not at --help
    from lstmbt.backtest.datacheck import data_warnings  # loads numpy: on use, not at --help

    cfg = data_config(source, symbol, start, end, refresh)
    prices = load_prices(cfg)
    for key, value in describe_prices(prices, cfg.source, cfg.symbol).items():
        typer.echo(f"{key:>10}: {printable(value)}")
    typer.echo(prices.tail().to_string())
    for message in data_warnings(prices, cfg):
        typer.echo(f"warning: {terminal_line(message)}")
    for note in filter(None, [run_note(prices.index)]):  # a 7-day calendar: what a run annualises with
        typer.echo(f"note: {terminal_line(note)}")


def data_fetch(ticker: Annotated[str, typer.Argument(help="FinanceDataReader ticker, e.g. 005930, AAPL, KS11.")],
               start: StartOpt = None, end: EndOpt = None) -> None:
    """Download a ticker through FinanceDataReader into the cache (always refetches)."""
    from lstmbt.backtest.data import describe_prices, fdr_cache_dir, load_prices  # loads numpy: on use, not at --help

    cfg = data_config(f"fdr:{ticker}", None, start, end, True)
    prices = load_prices(cfg)
    info = describe_prices(prices, cfg.source)
    typer.echo(f"cached {info['rows']} rows {info['first_date']} to {info['last_date']} in {fdr_cache_dir()}")


def predict(
    ctx: typer.Context,
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
    root: Annotated[Path, typer.Option(
        help="Directory of run directories searched for the walk-forward run of the same config and data.")
    ] = Path("runs"),
    plugin_path: PluginPathOpt = None,
) -> None:
    """Train every model on all data up to the last bar; print each forecast, whether they agree, the
    strategy's next position and order, and the skill the walk-forward run of the same config found."""
    use_plugin_path(ctx, plugin_path)
    cfg = resolve_config(config, option_flags(source, symbol, start, end, target, refresh, exog), set_, quick)
    import json

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    # loads numpy: on use, not at --help
    from lstmbt.backtest.campaign.forecast_skill import matching_run_metrics
    from lstmbt.backtest.forecast import forecast_next
    from lstmbt.backtest.forecast_text import format_forecast, skill_summary

    # a spinner on a terminal's stderr that vanishes when done: stdout holds only the forecast
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("loading data", total=None)
        forecast = forecast_next(cfg, threads=torch_threads(), progress=lambda stage, done, total: bar.update(
            task, description="loading data" if stage == "data" else f"training {stage} ({done}/{total})"))
    found = matching_run_metrics(root, cfg, forecast.data["sha256"])
    record, metrics = found if found is not None else (None, None)
    skill = skill_summary(metrics, record, [m.model for m in forecast.models if m.family != "naive"], str(root))
    if as_json:
        typer.echo(json.dumps({**forecast.to_dict(), "skill": skill}, allow_nan=False))
    else:
        typer.echo(format_forecast(forecast, skill))


def importance(
    ctx: typer.Context,
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
    method: Annotated[str, typer.Option(
        help="permutation, ablation, shap, both (permutation and ablation) or all.")] = "both",
    repeats: Annotated[int, typer.Option(help="Shuffles per fold and feature group (permutation).")] = 3,
    out: Annotated[Optional[Path], typer.Option(
        help="Where to write the HTML (default runs/importance-<UTC timestamp>.html).")] = None,
    plugin_path: PluginPathOpt = None,
) -> None:
    """Which feature groups the models rely on: shuffled within each test block, dropped and retrained,
    or SHAP values of the test predictions."""
    use_plugin_path(ctx, plugin_path)
    # loads numpy: on use, not at --help
    from lstmbt.backtest.attribution import check_explainable, shap_frame
    from lstmbt.backtest.importance import importance_frame, load_design, parse_method, summarize_importance
    from lstmbt.backtest.skill import importance_skill

    methods = parse_method(method)  # refuse a bad --method before loading anything
    cfg = resolve_config(config, option_flags(source, symbol, start, end, target, refresh, exog), set_, quick)
    if "shap" in methods:
        check_explainable(cfg)  # before loading or training anything
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # loads pandas: on use, not at --help
    from lstmbt.reports.importance import (check_out_path, default_importance_path, shap_table, summary_tables,
                                           write_importance)

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

        design = load_design(cfg)  # once, for every method
        oos: dict[str, Any] = {}  # each model's unaltered out-of-sample predictions, from whichever method walks first
        frame = importance_frame(cfg, method, repeats, progress=progress, design=design, oos=oos)
        shap = shap_frame(cfg, design=design, progress=progress, oos=oos) if "shap" in methods else None
        progress("walk-forward skill", 0, 1)
        skill = importance_skill(design, oos, cfg) if oos else None
    for line in skill["lines"] if skill else ():  # the skill first: a ranking of a model without it describes noise
        typer.echo(line)
    for table in summary_tables(summarize_importance(frame), cfg) if len(frame) else ():
        Console().print(table)
    if shap is not None:
        Console().print(shap_table(shap, cfg))
    with cli_errors.writing(target_path, f"the importance page was written to {target_path}"):
        written = write_importance(frame, cfg, target_path, n_repeats=repeats, shap=shap, skill=skill)
    typer.echo(f"importance: {printable(written.resolve())}")
