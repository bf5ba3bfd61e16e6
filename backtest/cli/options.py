"""What the commands share: option types, config resolution from flags, progress bars and the
printed outcome of a run. Only config and errors load at start-up, so ``lstmbt --help`` stays light.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any, Collection, Optional

import typer

from lstmbt.backtest import interrupts
from lstmbt.backtest.config import QUICK_PRESET, RunConfig, parse_overrides
from lstmbt.backtest.errors import ConfigError, LstmbtError, printable, terminal_line
from lstmbt.models.threads import default_threads

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
PluginPathOpt = Annotated[Optional[list[Path]], typer.Option(
    "--plugin-path", help="Folder to import plug-ins (model.custom, strategy.custom) from, besides the installed "
                          "environment (repeatable); the working directory and run folders never are, unless named.")]


def option_flags(source: Optional[str], symbol: Optional[str], start: Optional[str], end: Optional[str],
           target: Optional[str], refresh: bool, exog: Optional[str]) -> dict[str, Any]:
    """The config keys behind the data and target options that run, predict and importance share."""
    return {"data.source": source, "data.symbol": symbol, "data.start": start, "data.end": end,
            "target.task": target, "data.refresh": refresh or None,
            "data.exog": [part.strip() for part in exog.split(",")] if exog else None}


def resumed_config(resume: Path, given: dict[str, Any]) -> tuple[RunConfig, Path]:
    """(config, run directory) of the interrupted run ``--resume`` names; options that would change
    its config are refused, since its saved folds were made with that config."""
    from lstmbt.backtest.partial import load_partial_config, resume_paths  # loads pandas: on use, not at --help

    clashing = [option for option, value in given.items() if value not in (None, False, [])]
    if clashing:
        raise ConfigError(f"--resume continues the interrupted run with the config it started with; "
                          f"drop {', '.join(clashing)}")
    out_dir, partial = resume_paths(resume)
    config = load_partial_config(partial)
    config.check_plugins()  # from the environment and --plugin-path only, never from the saved run
    return config, out_dir


def use_plugin_path(ctx: typer.Context, folders: Optional[list[Path]]) -> None:
    """Until the command ends, plug-ins are imported from ``folders`` (``--plugin-path``) as well as
    the environment; a path that is not a folder is one ConfigError line."""
    from lstmbt.backtest.plugins import plugin_folders  # loads pandas: on use, not at --help

    ctx.with_resource(plugin_folders(folders))


def resolve_config(path: Optional[Path], flags: dict[str, Any], overrides: Optional[list[str]],
                    quick: bool) -> RunConfig:
    """The run config from defaults < the quick preset < a TOML file < flags < --set overrides."""
    return RunConfig.resolve(path=path, preset=QUICK_PRESET if quick else None,
                             flags={k: v for k, v in flags.items() if v is not None},
                             overrides=parse_overrides(overrides or []))


def data_config(source, symbol, start, end, refresh):
    flags = {"data.source": source, "data.symbol": symbol, "data.start": start, "data.end": end,
             "data.refresh": refresh or None}
    return RunConfig.resolve(flags={k: v for k, v in flags.items() if v is not None}).data


class saved_work_noted:
    """Print the notes ``claim_run`` adds to an unexpected error (the folds kept for --resume)
    before main() prints the error's own line."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, traceback: Any) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, (LstmbtError, typer.Exit)):
            for note in getattr(exc, "__notes__", ()):
                typer.echo(f"note: {terminal_line(note)}", err=True)


class progress_bars:
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
        self._lock = threading.Lock()
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        interrupts.check()  # between two steps: a Ctrl-C that something swallowed stops the run here
        if stage == "data" and not self._started:
            return
        with self._lock:  # models train side by side on threads and report from them
            if not self._started:
                self._bar.start()
                self._started = True
            if stage not in self._tasks:
                for task_id in self._tasks.values():  # a new stage ends the one-step stages before it
                    if self._bar.tasks[task_id].total == 1:
                        self._bar.update(task_id, completed=1)
                self._tasks[stage] = self._bar.add_task(stage, total=total)
            self._bar.update(self._tasks[stage], completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if not self._started:
            return
        if exc[0] is None:
            for task_id in self._tasks.values():
                self._bar.update(task_id, completed=self._bar.tasks[task_id].total)
            self._bar.stop()
            return
        # on failure, leave only the error line behind: a terminal's bars are erased; elsewhere (a log
        # file) rich would still write an empty line in their place
        self._bar.live.transient = True
        quiet = self._bar.console.quiet
        self._bar.console.quiet = quiet or not self._bar.console.is_terminal
        try:
            self._bar.stop()
        finally:
            self._bar.console.quiet = quiet


def torch_threads() -> int | None:
    """One model at a time per core this process may use, unless the user pinned OMP_NUM_THREADS."""
    return default_threads()


def print_outcome(metrics: dict[str, dict[str, Any]], manifest: dict[str, Any], report: Path,
                   comparisons: dict[str, Any] | None = None, models: Collection[str] = (),
                   seeds: dict[str, Any] | None = None, cpcv: dict[str, Any] | None = None) -> None:
    """What a finished run prints: the scorecard, how often retraining changed each model's weights
    (the manifest's ``retraining``), what survives testing every model at once and the
    head-to-head pairs (as the report's summary says them), how stable each seed ensemble's verdict
    is (``seeds``: the run's ``seeds.json``), the CPCV lines of a CPCV run (``cpcv``), the warnings
    as notes, the report path last.
    ``models``: the model strategies (the names of the run's model keys); the others are baselines."""
    from lstmbt.reports.scorecard import family_sentences, pair_sentence  # loads numpy: on use, not at --help
    from lstmbt.reports.retraining import retraining_sentences
    from lstmbt.reports.seeds import stability_sentences  # loads numpy: on use, not at --help

    models = [s for s in metrics if s in models]
    print_summary(metrics, models)
    for line in retraining_sentences(manifest.get("retraining", {})):
        typer.echo(f"retraining: {line}")
    if comparisons:
        for line in family_sentences(metrics, models, comparisons) + [pair_sentence(p) for p in comparisons["pairs"]]:
            typer.echo(line)
    for line in stability_sentences(seeds or {}, metrics):
        typer.echo(line)
    if cpcv:
        from lstmbt.reports.cpcv import cpcv_block  # loads numpy: on use, not at --help

        block = cpcv_block(cpcv, models, metrics)
        for line in block["lines"] + [block["pbo"]]:
            typer.echo(f"CPCV ({cpcv['settings']['paths']} paths): {line}")
    for note in manifest.get("warnings", []):
        typer.echo(f"note: {terminal_line(note)}")
    typer.echo(f"report: {printable(report.resolve())}")


def print_summary(metrics: dict[str, dict[str, Any]], models: list[str]) -> None:
    """The report's scorecard (``reports.scorecard``): the same rows, verdicts and figures, each
    cell's second line (interval, p-value, base rate) dimmed under its figure."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from lstmbt.reports.scorecard import COLUMNS, CONSOLE_HEADERS, scorecard_rows  # loads numpy: on use, not at --help

    rows = scorecard_rows(metrics, models)
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
