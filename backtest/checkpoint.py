"""Fold-level checkpoints, so an interrupted run continues from its last finished fold.

A checkpoint directory (``pipeline.run(..., checkpoint=DIR)``) holds::

    DIR/checkpoint.json                          config, data provenance (sha256), models, folds per model
    DIR/<model>/fold-0003.predictions.parquet    that fold's out-of-sample predictions
    DIR/<model>/fold-0003.log.parquet            its fold-log entry, written last: the fold's commit mark
    DIR/<model>/fold-0003.state.pt               the estimator after that fold (warm-start chains only;
                                                 only the newest is kept)

Every file is written under a temporary name and moved into place with ``os.replace``, so a
kill at any moment leaves whole files only. ``lstmbt run`` keeps its checkpoint in the run's
partial directory ``<out.parent>/.<out.name>.partial/`` (``config.toml`` + ``folds/``), removed
once the run directory is saved; ``lstmbt run --resume OUT`` continues from it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from backtest.config import RunConfig
from backtest.errors import ConfigError, DataError

FORMAT = 1
#: config keys that say how to load, not what: a run started with --refresh resumes from the cache it filled
_SAME_RUN_KEYS = {"data.refresh"}
PLAN_FILE = "checkpoint.json"
#: fold-log fields fixed by the data and the split; a saved fold must match the fold it stands for
SPAN_KEYS = ("fold", "train_start", "train_end", "val_start", "val_end", "test_start", "test_end",
             "n_train", "n_val", "n_test")


# --------------------------------------------------------------------------- one model's folds


class FoldStore:
    """The saved folds of one model's walk-forward in ``directory`` (created when missing).

    ``warm``: the estimator carries state from fold to fold, so each fold also saves the
    estimator's ``get_checkpoint()`` dict and a resumed chain starts from the last one.
    """

    def __init__(self, directory: str | Path, warm: bool) -> None:
        self.directory = Path(directory)
        self.warm = warm
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(".*.tmp-*"):  # left by a kill in the middle of a write
            stale.unlink(missing_ok=True)

    def _path(self, fold_index: int, kind: str) -> Path:
        return self.directory / f"fold-{fold_index:04d}.{kind}"

    def read_done(self, spans: list[dict[str, Any]]) -> tuple[list[pd.DataFrame], list[dict[str, Any]]]:
        """Predictions and log entries of the leading folds already saved, in fold order.

        ``spans``: each fold's expected ``SPAN_KEYS`` values, in order; a saved fold that differs
        (other data or split) raises DataError rather than mixing two runs.
        """
        parts, entries = [], []
        for span in spans:
            log_path = self._path(span["fold"], "log.parquet")
            if not log_path.is_file():
                break
            entry = pd.read_parquet(log_path).iloc[0].to_dict()
            changed = [k for k in SPAN_KEYS if not _same(entry.get(k), span[k])]
            if changed:
                raise DataError(f"saved fold {span['fold']} in {self.directory} covers other dates or sizes "
                                f"({', '.join(changed)}); the data or split changed - remove {self.directory} "
                                "to start over")
            parts.append(pd.read_parquet(self._path(span["fold"], "predictions.parquet")))
            entries.append(entry)
        return parts, entries

    def load_state(self, fold_index: int) -> dict[str, Any]:
        """The estimator state saved after fold ``fold_index`` (plain values and CPU tensors)."""
        import torch

        path = self._path(fold_index, "state.pt")
        if not path.is_file():
            raise DataError(f"{self.directory} lacks the model state after fold {fold_index} ({path.name}); "
                            f"remove {self.directory} to start over")
        return torch.load(path, map_location="cpu", weights_only=True)

    def save(self, fold_index: int, predictions: pd.DataFrame, entry: dict[str, Any],
             state: dict[str, Any] | None = None) -> None:
        """Save one finished fold: state, predictions, then the log entry that marks it done."""
        if state is not None:
            import torch

            _write_atomic(self._path(fold_index, "state.pt"), lambda tmp: torch.save(state, tmp))
        _write_atomic(self._path(fold_index, "predictions.parquet"),
                      lambda tmp: predictions.to_parquet(tmp, index=False))
        _write_atomic(self._path(fold_index, "log.parquet"),
                      lambda tmp: pd.DataFrame([entry]).to_parquet(tmp, index=False))
        for older in self.directory.glob("fold-*.state.pt"):  # a resumed chain needs only the newest
            if older != self._path(fold_index, "state.pt"):
                older.unlink(missing_ok=True)


def _same(saved: Any, expected: Any) -> bool:
    if pd.isna(saved) or pd.isna(expected):
        return bool(pd.isna(saved) and pd.isna(expected))
    return saved == expected


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- a run's checkpoint


def open_checkpoint(directory: str | Path, config: RunConfig, data: dict[str, Any], models: list[str],
                    n_folds: int) -> int:
    """Start or check the run checkpoint in ``directory``; returns how many folds are saved already.

    ``data``: ``backtest.data.describe_prices`` of the loaded prices. A directory written for
    another config or other data (a different sha256) is refused with one line, so a resumed
    run can never splice predictions of two different inputs.
    """
    directory = Path(directory)
    plan_path = directory / PLAN_FILE
    plan = {"format": FORMAT, "config": config.to_dict(), "data": data, "models": models, "n_folds": n_folds}
    if not plan_path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(plan_path, lambda tmp: tmp.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8"))
        return saved_folds(directory)[0]
    stored = json.loads(plan_path.read_text(encoding="utf-8"))
    if stored.get("data", {}).get("sha256") != data["sha256"]:
        raise DataError(f"the data differ from those of the checkpointed run in {directory} "
                        f"({_describe(stored.get('data', {}))}, now {_describe(data)}); resuming needs the "
                        f"same data: restore them, or remove {directory} to start over")
    old, new = _dotted(stored.get("config", {})), _dotted(plan["config"])
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in _SAME_RUN_KEYS)
    if changed or stored.get("format") != FORMAT:
        what = ", ".join(changed[:3]) or f"checkpoint format {stored.get('format')}"
        raise ConfigError(f"the checkpoint in {directory} was written for another config ({what}); "
                          f"resume with the same config, or remove {directory} to start over")
    return saved_folds(directory)[0]


def _dotted(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, values in sections.items() for key, value in values.items()}


def _describe(data: dict[str, Any]) -> str:
    return (f"{data.get('rows')} rows {data.get('first_date')}..{data.get('last_date')}, "
            f"sha256 {str(data.get('sha256'))[:12]}")


def saved_folds(directory: str | Path) -> tuple[int, int | None]:
    """(folds saved, folds the run has in all), summed over models; the total is None until known."""
    directory = Path(directory)
    done = sum(1 for _ in directory.glob("*/fold-*.log.parquet")) if directory.is_dir() else 0
    plan_path = directory / PLAN_FILE
    if not plan_path.is_file():
        return done, None
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    return done, len(plan["models"]) * int(plan["n_folds"])


# --------------------------------------------------------------------------- the CLI's partial directory


def partial_dir(out_dir: str | Path) -> Path:
    """``<out.parent>/.<out.name>.partial``: where ``lstmbt run`` keeps a run until it is saved."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.partial")


def start_partial(out_dir: str | Path, config: RunConfig) -> Path:
    """Create the partial directory of a new run with its resolved ``config.toml``; returns it."""
    partial = partial_dir(out_dir)
    if partial.exists():
        raise ConfigError(f"an interrupted run of {out_dir} is waiting in {partial}; continue it with "
                          f"`lstmbt run --resume {out_dir}` or remove {partial}")
    partial.mkdir(parents=True)
    _write_atomic(partial / "config.toml", lambda tmp: tmp.write_text(config.to_toml(), encoding="utf-8"))
    return partial


def resume_paths(path: str | Path) -> tuple[Path, Path]:
    """(run directory, partial directory) for ``--resume PATH``; PATH may name either of them."""
    path = Path(path)
    name = path.name
    if name.startswith(".") and name.endswith(".partial") and len(name) > len("..partial"):
        path = path.with_name(name[1 : -len(".partial")])
    partial = partial_dir(path)
    if path.exists():
        leftover = f" (remove the leftover {partial})" if partial.exists() else ""
        raise ConfigError(f"{path} already exists: that run finished and needs no resume{leftover}; "
                          "start a new run with another --out")
    if not partial.is_dir():
        raise ConfigError(f"nothing to resume for {path}: no interrupted run in {partial} (a finished run "
                          "needs no resume); pass the --out of an interrupted `lstmbt run`")
    return path, partial


def load_partial_config(partial: str | Path) -> RunConfig:
    """The config an interrupted run was started with, reading data from the cache (no ``--refresh``:
    the first session's download is in the cache, newer bars would only be refused as other data)."""
    path = Path(partial) / "config.toml"
    if not path.is_file():
        raise DataError(f"{partial} holds no config.toml (the run stopped before it began); "
                        f"remove {partial} and start the run again")
    return RunConfig.from_toml(path).with_values({"data.refresh": False})


def interrupted_line(partial: Path, out_dir: Path, resumed: bool) -> str:
    """What the CLI prints on Ctrl-C. A new run with no fold saved removes its partial directory."""
    done, total = saved_folds(partial / "folds")
    if done == 0 and not resumed:
        shutil.rmtree(partial, ignore_errors=True)
        return "interrupted: nothing was written"
    of = f" of {total}" if total is not None else ""
    return f"interrupted: {done}{of} folds saved; continue with: lstmbt run --resume {out_dir}"


def discard_partial(partial: str | Path) -> None:
    """Remove a partial directory (the run was saved, or its input was refused)."""
    shutil.rmtree(partial, ignore_errors=True)
