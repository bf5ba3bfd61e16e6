"""The universe branch of ``lstmbt run``: a source naming several tickers runs each, then the portfolios."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Optional

import typer

import lstmbt.backtest.cli.errors as cli_errors
from lstmbt.backtest.campaign.executors import make_executor
from lstmbt.backtest.cli.options import print_outcome, progress_bars, saved_work_noted
from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError

def universe_of(cfg: RunConfig, executor: str, address: Optional[str]) -> tuple[RunConfig, list[Any] | None]:
    """(config, None) for a one-ticker source (a one-line list file becomes that ticker), or
    (config, tickers) for a universe; bad --executor/--address values are refused either way."""
    from lstmbt.backtest.sources import expand_source  # loads numpy: on use, not at --help

    make_executor(executor, address=address)  # checks the options; starts nothing
    tickers = expand_source(cfg.data)
    if len(tickers) > 1:
        return cfg, tickers
    if cfg.model.pooled:
        raise ConfigError("model.pooled = true pools the tickers of a universe, and this source names one; "
                          "name several (e.g. --source fdr:005930,000660) or drop model.pooled")
    return dataclasses.replace(cfg, data=tickers[0].data), None


def run_universe_command(cfg: RunConfig, tickers: list[Any], out: Optional[Path], executor: str,
                  address: Optional[str], resumed: bool = False) -> None:
    """Every ticker's run, kept in the partial directory as it finishes (so Ctrl-C or a kill
    loses only the tickers in flight), then the portfolios and the report in <out>. The partial
    directory is held by ``claim_run``, as a single run's is."""
    # loads pandas: on use, not at --help
    from lstmbt.backtest.partial import claim_run, discard_partial
    from lstmbt.backtest.rundir import default_run_dir, save_run, staged_dir
    from lstmbt.backtest.universe.running import run_universe  # loads pandas: on use, not at --help
    from lstmbt.backtest.universe.io import keep_ticker_list, write_universe  # loads pandas: on use, not at --help
    from lstmbt.reports import run_pages  # loads numpy: on use, not at --help
    from lstmbt.reports.universe import render_universe, top_k_sentence  # loads pandas: on use, not at --help

    out_dir = out or default_run_dir(cfg.data.source)
    # an interrupt leaves the claim as an Interrupted whose line says what is kept
    with saved_work_noted(), claim_run(out_dir, cfg, resumed, tickers=len(tickers)) as partial:
        keep_ticker_list(partial, tickers, resumed)  # a resumed universe is the one that started
        saved = partial / "tickers"
        if cfg.model.pooled:  # one model over all tickers: nothing of it survives an interruption
            shutil.rmtree(saved, ignore_errors=True)
        finished = _finished_tickers(saved, tickers, out_dir)
        with progress_bars(stderr=True) as progress:
            result = run_universe(cfg, tickers, make_executor(executor, address=address), progress=progress,
                                  on_ticker=lambda ticker, run: save_run(run, saved / ticker.slug, pages=run_pages(run)),
                                  finished=finished, space_in=partial.parent)
            progress("report", 0, 1)
            with staged_dir(out_dir) as tmp:
                shutil.copytree(saved, tmp / "tickers")
                write_universe(result, tmp, pages={"report.html": render_universe(result)})
        cli_errors.saved(f"the run was saved at {out_dir}")
        discard_partial(partial)
    typer.echo(top_k_sentence(result))  # the k the xs_ rows hold (top_k = 0 resolves per universe), above them
    print_outcome(result.metrics, result.manifest, out_dir / "report.html")


def _finished_tickers(saved: Path, tickers: list[Any], out_dir: Path) -> dict[str, Any]:
    """The ticker runs an interrupted universe saved in ``saved``; a damaged one is named with the
    way to retrain just that ticker."""
    from lstmbt.backtest.rundir import load_run  # loads numpy: on use, not at --help
    from lstmbt.backtest.readback import DamagedFileError  # loads pandas: on use, not at --help

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
