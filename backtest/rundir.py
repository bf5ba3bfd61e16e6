"""The run directory: ``RunResult``, saving and loading it, the staged directory, and the one
atomic writer every file of lstmbt goes through.

``save_run`` writes the computed files; pages (``report.html``) are rendered by the caller
(``lstmbt.reports``) and handed over as text, so the core never renders HTML.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import json
import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.backtest.headtohead import comparisons_problem, run_comparisons
from lstmbt.backtest.readback import DamagedFileError, read_config, read_json, read_metrics, read_parquet
from lstmbt.models.key import with_key_columns

RUN_FILES = ("config.toml", "manifest.json", "predictions.parquet", "positions.parquet", "returns.parquet",
             "folds.parquet", "costs.parquet", "trades.parquet", "metrics.json", "comparisons.json", "regimes.parquet",
             "report.html")
#: written by every run but absent from runs of earlier versions: ``load_run`` recomputes the
#: comparisons then; regimes need the close history before the out-of-sample period, so an older
#: run's report has no regime section
OPTIONAL_FILES = ("comparisons.json", "regimes.parquet")
#: written only by a run with a seed ensemble (``train.seeds`` with two or more seeds; ``backtest.seeds``):
#: each seed's metrics and their spread, and each seed's own predictions in long format
SEED_FILES = ("seeds.json", "seed_predictions.parquet")
_FRAMES = ("predictions", "positions", "returns", "folds", "costs", "trades")
#: written only by a run with ``split.scheme = "cpcv"``: ``cpcv.json`` and these frames
CPCV_FRAMES = ("cpcv_returns", "cpcv_predictions")

#: what ``write_atomic`` writes: text (UTF-8), bytes, or a function that writes the file at the path it is given
Content = str | bytes | Callable[[Path], None]


@dataclass
class RunResult:
    """Everything a run produced; ``lstmbt.reports`` renders it and ``save_run`` writes it.

    ``predictions``: long frame (date, then the model key: target, model, horizon, family, baseline;
    then fold, y_true, y_pred, p_up, close), one row per model and out-of-sample day. ``positions``: target exposure per decision day and
    strategy. ``returns``: daily net returns per strategy on the bars the positions are held.
    ``folds``: one row per model and fold (model key columns first), with its test block's hit rate and returns.
    ``metrics``: ``{strategy: {metric: value}}``. ``costs``: every strategy re-simulated per fee
    level (``backtest.portfolio.cost_sweep``). ``trades``: one row per trade and strategy.
    ``comparisons``: head-to-head pairs, SPA and MCS (``backtest.headtohead.run_comparisons``).
    ``regimes``: each strategy's figures per market regime (``backtest.regimes.regime_table``).
    ``cpcv``: with ``split.scheme = "cpcv"``, the CPCV summary (``backtest.cpcv_paths.score_cpcv``),
    ``cpcv_returns`` every strategy's daily returns per path and ``cpcv_predictions`` every split's
    predictions (``fold`` = the split); empty otherwise.
    ``seeds``: with a seed ensemble, each seed scored as its own run and what the seeds agree on
    (``backtest.seeds.seed_summary``), else empty. ``seed_predictions``: the ensemble models' own
    predictions per seed (date, model key, fold, seed, y_true, y_pred, p_up), else empty.
    """

    config: RunConfig
    predictions: pd.DataFrame
    positions: pd.DataFrame
    returns: pd.DataFrame
    folds: pd.DataFrame
    metrics: dict[str, dict[str, Any]]
    costs: pd.DataFrame = field(default_factory=pd.DataFrame)
    trades: pd.DataFrame = field(default_factory=pd.DataFrame)
    manifest: dict[str, Any] = field(default_factory=dict)
    comparisons: dict[str, Any] = field(default_factory=dict)
    regimes: pd.DataFrame = field(default_factory=pd.DataFrame)
    cpcv: dict[str, Any] = field(default_factory=dict)
    cpcv_returns: pd.DataFrame = field(default_factory=pd.DataFrame)
    cpcv_predictions: pd.DataFrame = field(default_factory=pd.DataFrame)
    seeds: dict[str, Any] = field(default_factory=dict)
    seed_predictions: pd.DataFrame = field(default_factory=pd.DataFrame)


# --------------------------------------------------------------------------- the one atomic writer


def write_atomic(path: str | Path, content: Content) -> Path:
    """Write ``path`` so that no reader ever sees half a file: into ``.NAME.tmp-PID`` beside it, then
    ``os.replace``. On any failure (a full disk, Ctrl-C) the temporary file is removed and the old
    file, if any, is left as it was. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if isinstance(content, str):
            tmp.write_text(content, encoding="utf-8")
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, payload: Any) -> Path:
    """``payload`` as strict, indented JSON (NaN/inf as null, numpy scalars as Python numbers)."""
    return write_atomic(path, json_text(payload))


def write_parquet(path: str | Path, frame: pd.DataFrame, index: bool | None = False) -> Path:
    """``frame`` as parquet, atomically; ``index`` as pandas takes it (None keeps a date index)."""
    return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=index))


def json_text(payload: Any) -> str:
    return json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n"


def _json_safe(value: Any) -> Any:
    """NaN/inf -> null and numpy scalars -> Python, so the JSON is strict and portable."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


# --------------------------------------------------------------------------- staged directories


def default_run_dir(source: str, root: str | Path = "runs") -> Path:
    """``runs/<source>-<UTC timestamp>``, with the source made filename-safe; ``-2``, ``-3``, ...
    appended while a run (or an interrupted one) of that name started in the same second exists."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source.replace(":", "-")).strip("-")[:60] or "run"
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = path = Path(root) / f"{slug}-{stamp}"
    n = 1
    while path.exists() or path.is_symlink() or path.with_name(f".{path.name}.partial").exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


@contextlib.contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``out_dir`` to write into, renamed to ``out_dir`` when the block ends
    without an error and removed when it fails, so no half-written directory is left. Temporary
    siblings that killed processes left (``.NAME.tmp-PID``, the process gone) are removed first."""
    out_dir = Path(out_dir)
    if out_dir.exists() or out_dir.is_symlink():  # a dangling link too: the rename would replace it
        raise ConfigError(f"output directory {out_dir} already exists; choose another --out or remove it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_tmp(out_dir: str | Path) -> None:
    """Remove what processes killed while saving ``out_dir`` left beside it: ``.NAME.tmp-PID``
    (``staged_dir``) and ``.NAME.partial.tmp-PID`` whose process no longer runs."""
    out_dir = Path(out_dir)
    name = glob.escape(out_dir.name)
    for pattern in (f".{name}.tmp-*", f".{name}.partial.tmp-*"):
        for path in out_dir.parent.glob(pattern):
            pid = path.name.rpartition("-")[2]
            if pid.isdigit() and not pid_alive(int(pid)):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


# --------------------------------------------------------------------------- save and load


def save_run(result: RunResult, out_dir: str | Path, pages: Mapping[str, str] | None = None) -> Path:
    """Write the run directory (RUN_FILES, and SEED_FILES with a seed ensemble) atomically: into a
    temporary sibling, then rename.

    ``pages``: ``{file name: text}`` rendered by the caller, e.g. ``{"report.html": render_report(result)}``
    (``lstmbt.reports.run_pages``); a run saved without its report still loads.
    """
    with staged_dir(out_dir) as tmp:
        write_atomic(tmp / "config.toml", result.config.to_toml())
        write_json(tmp / "manifest.json", result.manifest)
        write_json(tmp / "metrics.json", result.metrics)
        write_json(tmp / "comparisons.json", result.comparisons)
        write_parquet(tmp / "regimes.parquet", result.regimes)
        write_parquet(tmp / "predictions.parquet", result.predictions)
        write_parquet(tmp / "positions.parquet", result.positions, index=None)
        write_parquet(tmp / "returns.parquet", result.returns.rename_axis("date"), index=None)
        for name in ("folds", "costs", "trades"):
            write_parquet(tmp / f"{name}.parquet", getattr(result, name))
        if result.cpcv:
            write_json(tmp / "cpcv.json", result.cpcv)
            for name in CPCV_FRAMES:
                write_parquet(tmp / f"{name}.parquet", getattr(result, name))
        if result.seeds:  # SEED_FILES: only a run with a seed ensemble has them
            write_json(tmp / "seeds.json", result.seeds)
            write_parquet(tmp / "seed_predictions.parquet", result.seed_predictions)
        for name, text in (pages or {}).items():
            write_atomic(tmp / name, text)
    return Path(out_dir)


def load_run(run_dir: str | Path) -> RunResult:
    """Read a run directory written by ``save_run``.

    A missing, truncated or misshapen file is refused with one ``DataError`` line naming it. A run
    of an earlier version without ``comparisons.json`` gets its comparisons recomputed from its frames;
    a run without ``SEED_FILES`` (one seed, or an earlier version) loads with empty seed fields.
    """
    run_dir = Path(run_dir)
    missing = [name for name in RUN_FILES[:-1] if name not in OPTIONAL_FILES and not (run_dir / name).is_file()]
    if not run_dir.is_dir() or missing:
        if (run_dir / "manifest.json").is_file():
            read_json(run_dir / "manifest.json")  # a damaged manifest (a universe's too) is the problem to name
        what = "does not exist" if not run_dir.is_dir() else f"lacks {', '.join(missing)}"
        raise DataError(f"{run_dir} {what}; pass a directory written by this version of `lstmbt run` "
                        "(re-run older runs)")
    frames = {name: read_parquet(run_dir / f"{name}.parquet") for name in _FRAMES}
    config = read_config(run_dir / "config.toml")
    if len(frames["predictions"].columns):  # an ad-hoc backtest (``backtest.adhoc``) has no predictions
        try:  # runs of earlier versions lack some key columns: their models are lstmbt's own, known by name
            frames["predictions"], frames["folds"] = with_key_columns(frames["predictions"], frames["folds"],
                                                                      config.target.horizon)
        except ValueError as exc:
            raise DamagedFileError(run_dir / "predictions.parquet", f"has no model key ({exc})") from None
    return RunResult(config=config, **frames, metrics=read_metrics(run_dir / "metrics.json"),
                     manifest=read_json(run_dir / "manifest.json"),
                     comparisons=_load_comparisons(run_dir / "comparisons.json", frames, config),
                     regimes=read_parquet(run_dir / "regimes.parquet") if (run_dir / "regimes.parquet").exists()
                     else pd.DataFrame(), **_load_cpcv(run_dir), **_load_seeds(run_dir))


def _load_cpcv(run_dir: Path) -> dict[str, Any]:
    """``cpcv``, ``cpcv_returns`` and ``cpcv_predictions`` of a CPCV run; nothing for another run."""
    if not (run_dir / "cpcv.json").exists():
        return {}
    return {"cpcv": read_json(run_dir / "cpcv.json"),
            **{name: read_parquet(run_dir / f"{name}.parquet") for name in CPCV_FRAMES}}


def _load_seeds(run_dir: Path) -> dict[str, Any]:
    """``seeds`` and ``seed_predictions`` from SEED_FILES; empty when the run has none."""
    if not (run_dir / "seeds.json").exists():
        return {}
    seeds = read_json(run_dir / "seeds.json")
    if not isinstance(seeds.get("models"), dict) or not isinstance(seeds.get("seeds"), list):
        raise DamagedFileError(run_dir / "seeds.json", "has an unexpected shape (no \"seeds\" list and \"models\" "
                                                       "object)")
    return {"seeds": seeds, "seed_predictions": read_parquet(run_dir / "seed_predictions.parquet")}


def _load_comparisons(path: Path, frames: dict[str, pd.DataFrame], config: RunConfig) -> dict[str, Any]:
    """A saved ``comparisons.json`` (checked for shape), or, when a run of an earlier version has
    none, the comparisons recomputed from the run's frames (``run_comparisons``)."""
    if not path.exists() and not path.is_symlink():
        return run_comparisons(frames["predictions"], frames["returns"], frames["positions"], config)
    payload = read_json(path)
    problem = comparisons_problem(payload)
    if problem:
        raise DamagedFileError(path, f"has an unexpected shape ({problem})")
    return payload


__all__ = ["RunResult", "RUN_FILES", "OPTIONAL_FILES", "SEED_FILES", "write_atomic", "write_json", "write_parquet",
           "json_text", "default_run_dir", "staged_dir", "remove_stale_tmp", "pid_alive", "save_run", "load_run"]
