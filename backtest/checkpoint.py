"""Fold-level checkpoints, so an interrupted run continues from its last finished fold.

A checkpoint directory (``pipeline.run(..., checkpoint=DIR)``) holds::

    DIR/checkpoint.json                          config, data provenance (sha256), models, folds per model
    DIR/<model>/fold-0003.predictions.parquet    that fold's out-of-sample predictions
    DIR/<model>/fold-0003.log.parquet            its fold-log entry
    DIR/<model>/fold-0003.state.pt               the estimator after that fold (warm-start chains only;
                                                 only the newest is kept)
    DIR/<model>/fold-0003.sha256.json            the sha256 of each file above, written last: the
                                                 fold's commit mark, checked when the fold is read back

Every file is written under a temporary name and moved into place with ``os.replace``, so a kill
at any moment leaves whole files only; a file damaged or edited later fails its checksum and is
refused with one line naming the fold, the model and the fix. Before the first fold the free
disk space is checked against an estimate of what the run will write.

``lstmbt run`` keeps its checkpoint in ``folds/`` of the run's partial directory (``backtest.partial``).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from lstmbt.backtest.config import RunConfig, fill_saved, narrow
from lstmbt.backtest.errors import ConfigError, DataError
from lstmbt.backtest.rundir import write_atomic
from lstmbt.models.specs import NETWORK_FAMILIES, NetSpec, lstm_param_count

FORMAT = 2  # 2: a fold is committed by its sha256.json (format 1: by its log file, unchecked)
#: config keys that change no fold: how to load (a run started with --refresh resumes from the cache it
#: filled) and a universe's portfolio, built from the finished tickers
_SAME_RUN_KEYS = {"data.refresh", "portfolio.top_k", "portfolio.bottom_k"}
PLAN_FILE = "checkpoint.json"
SUMS = "sha256.json"
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

        ``spans``: each fold's expected ``SPAN_KEYS`` values, in order. A saved fold that differs
        (other data or split) or fails its checksums raises DataError rather than mixing runs.
        """
        parts, entries = [], []
        for span in spans:
            fold = span["fold"]
            sums = self._sums(fold)
            if sums is None:  # not committed: (re)trained from here on
                break
            log = self._frame(fold, "log.parquet", sums)
            if len(log) != 1:
                raise self.damaged(fold, f"{self._path(fold, 'log.parquet').name} holds {len(log)} entries, not 1")
            entry = log.iloc[0].to_dict()
            changed = [k for k in SPAN_KEYS if not _same(entry.get(k), span[k])]
            if changed:
                raise DataError(f"saved fold {fold} in {self.directory} covers other dates or sizes "
                                f"({', '.join(changed)}); the data or split changed - remove {self.directory} "
                                "to start over")
            part = self._frame(fold, "predictions.parquet", sums)
            if len(part) != span["n_test"]:
                raise self.damaged(fold, f"its predictions hold {len(part)} rows for {span['n_test']} test days")
            parts.append(part)
            entries.append(entry)
            last = fold, sums
        if self.warm and entries:  # only the newest fold's state is kept: it must be whole
            self._verified(*last, kind="state.pt")
        return parts, entries

    def load_state(self, fold_index: int) -> dict[str, Any]:
        """The estimator state saved after fold ``fold_index`` (plain values and CPU tensors)."""
        import torch

        sums = self._sums(fold_index)
        if sums is None:
            raise self.damaged(fold_index, f"{self._path(fold_index, SUMS).name} is missing")
        data = self._verified(fold_index, sums, "state.pt")
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001  (a forged checksum: any unpickling error)
            raise self.damaged(fold_index, f"its state.pt cannot be loaded ({type(exc).__name__})") from None

    def restore(self, model: Any, fold_index: int) -> Any:
        """``model`` (an unfitted clone) with the state saved after fold ``fold_index`` set."""
        state = self.load_state(fold_index)
        try:
            return model.set_checkpoint(state)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise self.damaged(fold_index, f"its state.pt does not fit this model ({reason})") from None

    def save(self, fold_index: int, predictions: pd.DataFrame, entry: dict[str, Any],
             state: dict[str, Any] | None = None) -> None:
        """Save one finished fold: state, predictions, log entry, then the checksums that commit it."""
        self._path(fold_index, SUMS).unlink(missing_ok=True)  # a fold being redone is not done until re-marked
        blobs: dict[str, bytes] = {}
        if state is not None:
            import torch

            blobs["state.pt"] = _serialised(lambda buffer: torch.save(state, buffer))
        blobs["predictions.parquet"] = _serialised(lambda buffer: predictions.to_parquet(buffer, index=False))
        blobs["log.parquet"] = _serialised(lambda buffer: pd.DataFrame([entry]).to_parquet(buffer, index=False))
        for kind, blob in blobs.items():
            write_atomic(self._path(fold_index, kind), blob)
        sums = {kind: _sha256(blob) for kind, blob in blobs.items()}
        write_atomic(self._path(fold_index, SUMS), json.dumps(sums, indent=1))
        for older in self.directory.glob("fold-*.state.pt"):  # a resumed chain needs only the newest
            if older != self._path(fold_index, "state.pt"):
                older.unlink(missing_ok=True)

    def damaged(self, fold_index: int, problem: str) -> DataError:
        """The one-line refusal of a damaged saved fold: which fold and model, and how to retrain it."""
        if self.warm:  # the older states are gone, so the chain can only restart from its first fold
            fix = f"delete {self.directory} to retrain this model (a warm-start chain keeps only its newest state)"
        else:
            fix = f"delete {self.directory / f'fold-{fold_index:04d}'}.* to retrain that fold and the ones after it"
        return DataError(f"saved fold {fold_index} of {self.directory.name} is damaged: {problem}; {fix}, "
                         f"or remove {_start_over(self.directory.parent)} to start the run again")

    def _sums(self, fold_index: int) -> dict[str, str] | None:
        """The fold's checksums, or None when the fold was never committed."""
        path = self._path(fold_index, SUMS)
        if not path.is_file():
            return None
        sums = _json_or_none(path)
        if not (isinstance(sums, dict) and {"predictions.parquet", "log.parquet"} <= sums.keys()
                and all(isinstance(v, str) for v in sums.values())):
            raise self.damaged(fold_index, f"{path.name} is not a list of checksums")
        return sums

    def _verified(self, fold_index: int, sums: dict[str, str], kind: str) -> bytes:
        path = self._path(fold_index, kind)
        if kind not in sums:
            raise self.damaged(fold_index, f"{path.name} has no checksum")
        if not path.is_file():
            raise self.damaged(fold_index, f"{path.name} is missing")
        data = path.read_bytes()
        if _sha256(data) != sums[kind]:
            raise self.damaged(fold_index, f"{path.name} does not match its checksum (edited or cut short)")
        return data

    def _frame(self, fold_index: int, kind: str, sums: dict[str, str]) -> pd.DataFrame:
        data = self._verified(fold_index, sums, kind)
        try:
            return pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001  (a forged checksum: any parquet error)
            raise self.damaged(fold_index, f"{kind} cannot be read ({type(exc).__name__})") from None


def _same(saved: Any, expected: Any) -> bool:
    if pd.isna(saved) or pd.isna(expected):
        return bool(pd.isna(saved) and pd.isna(expected))
    return saved == expected


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_or_none(path: Path) -> Any:
    """The JSON value in ``path``, or None when the bytes are not JSON text (checked by the caller)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _serialised(write: Callable[[io.BytesIO], None]) -> bytes:
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def _start_over(checkpoint: Path) -> Path:
    """What to remove to start again: the CLI's partial directory around ``folds/``, else the checkpoint."""
    if checkpoint.name == "folds" and checkpoint.parent.name.endswith(".partial"):
        return checkpoint.parent
    return checkpoint


# --------------------------------------------------------------------------- a run's checkpoint


def open_checkpoint(directory: str | Path, config: RunConfig, data: dict[str, Any], models: list[str],
                    n_folds: int) -> int:
    """Start or check the run checkpoint in ``directory``; returns how many folds are saved already.

    ``data``: ``backtest.data.describe_prices`` of the loaded prices. A directory written for
    another config or other data (a different sha256) is refused with one line, so a resumed
    run can never splice predictions of two different inputs. So is a disk without room for
    the rest of the run (``estimate_run_bytes``).
    """
    directory = Path(directory)
    plan = {"format": FORMAT, "config": config.to_dict(), "data": data, "models": models, "n_folds": n_folds}
    stored = _read_plan(directory)
    if stored is None:
        done = saved_folds(directory)[0]
        if done:  # without the plan nothing proves the saved folds were made from these data
            raise DataError(f"{directory / PLAN_FILE} is missing although {done} folds are saved; "
                            f"remove {_start_over(directory)} to start the run again")
        directory.mkdir(parents=True, exist_ok=True)
        check_free_space(directory, config, data, models, n_folds)
        write_atomic(directory / PLAN_FILE, json.dumps(plan, indent=2) + "\n")
        return 0
    if stored.get("format") != FORMAT:
        raise ConfigError(f"the checkpoint in {directory} was written by another version of lstmbt (format "
                          f"{stored.get('format')}, now {FORMAT}); remove {_start_over(directory)} to start over")
    if stored.get("data", {}).get("sha256") != data["sha256"]:
        raise DataError(f"the data differ from those of the checkpointed run in {directory} "
                        f"({_describe(stored.get('data', {}))}, now {_describe(data)}); resuming needs the "
                        f"same data: restore them, or remove {_start_over(directory)} to start over")
    # keys added since the checkpoint was written stand for the value that version ran with
    old, new = fill_saved(_dotted(stored.get("config", {}))), fill_saved(_dotted(plan["config"]))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in _SAME_RUN_KEYS)
    if changed:
        raise ConfigError(f"the checkpoint in {directory} was written for another config ({', '.join(changed[:3])}); "
                          f"resume with the same config, or remove {_start_over(directory)} to start over")
    done = saved_folds(directory)[0]
    check_free_space(directory, config, data, models, n_folds, done=done)
    return done


def _read_plan(directory: Path) -> dict[str, Any] | None:
    """The stored checkpoint.json, None when there is none; a damaged one is refused with one line."""
    path = directory / PLAN_FILE
    if not path.is_file():
        return None
    plan = _json_or_none(path)
    if not (isinstance(plan, dict) and isinstance(plan.get("data"), dict) and isinstance(plan.get("config"), dict)
            and isinstance(plan.get("models"), list) and isinstance(plan.get("n_folds"), int)):
        raise DataError(f"{path} is damaged (not the checkpoint lstmbt wrote); remove {_start_over(directory)} "
                        "to start the run again")
    return plan


def _dotted(sections: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, values in sections.items() if isinstance(values, dict)
            for key, value in values.items()}


def _describe(data: dict[str, Any]) -> str:
    return (f"{data.get('rows')} rows {data.get('first_date')}..{data.get('last_date')}, "
            f"sha256 {str(data.get('sha256'))[:12]}")


def saved_folds(directory: str | Path) -> tuple[int, int | None]:
    """(folds saved, folds the run has in all), summed over models (and seeds); the total is None until known
    (or when checkpoint.json is unreadable: this count also serves error messages)."""
    directory = Path(directory)
    done = sum(1 for _ in directory.glob(f"**/fold-*.{SUMS}")) if directory.is_dir() else 0  # seeds nest a level
    try:
        plan = _read_plan(directory)
    except DataError:
        plan = None
    return done, None if plan is None else len(plan["models"]) * plan["n_folds"]


# --------------------------------------------------------------------------- disk space

_MB = 1 << 20
#: bytes per price row and model: predictions, positions, returns, trades and costs in the run
#: directory (measured: ~60 on the S&P 500 sample), doubled for other data
_ROW_BYTES = 120
#: report.html: ~2 MB of scripts and layout plus ~300 bytes per row of charts (3.5 MB for 5,031 rows)
_REPORT_BYTES, _REPORT_ROW_BYTES = 2 * _MB, 400
#: one saved fold of one model: two small parquet files (~20 KB, mostly their footers) and the sums
_FOLD_BYTES, _FOLD_ROW_BYTES = 32 * 1024, 32
_FEATURES_GUESS = 128  # the input width is not known here; generous for the default feature groups
#: bytes per parameter in a saved state (float32)
_PARAM_BYTES = 4
_SPACE_MARGIN = 1.25


def estimate_run_bytes(config: RunConfig, rows: int, models: list[str], n_folds: int) -> tuple[int, int]:
    """(run directory, checkpoint) bytes a run of ``models`` over ``rows`` price rows will write:
    predictions rows x models, the ~2-4 MB report, each fold's files and the newest model states."""
    run_dir = rows * len(models) * _ROW_BYTES + _REPORT_BYTES + rows * _REPORT_ROW_BYTES
    folds = len(models) * (n_folds * _FOLD_BYTES + rows * _FOLD_ROW_BYTES)
    n_states = sum(_is_network(name) for name in models) if config.train.warm_start else 0
    return run_dir, folds + 2 * n_states * _state_bytes(config)  # twice: old and new while replaced


def _is_network(name: str) -> bool:
    """Whether strategy ``name`` is one of lstmbt's networks, which keep a warm-start state."""
    return any(name.startswith(f"{family}_") for family in NETWORK_FAMILIES)


def _state_bytes(config: RunConfig) -> int:
    """The saved network's float32 parameters, counted as the LSTM's (the largest of the default-sized families)."""
    n_features = _FEATURES_GUESS + len(config.data.exog)
    return _PARAM_BYTES * lstm_param_count(n_features, 2, narrow(config.model, NetSpec))


def check_free_space(directory: Path, config: RunConfig, data: dict[str, Any], models: list[str],
                     n_folds: int, done: int = 0) -> None:
    """Refuse, with one line, a run whose remaining files would not fit on ``directory``'s disk."""
    run_dir, folds = estimate_run_bytes(config, int(data.get("rows") or 0), models, n_folds)
    left = 1.0 - done / max(1, len(models) * n_folds)
    where = _start_over(directory).parent  # the CLI's partial directory goes when refused; name its parent
    _refuse_short_space(where, _SPACE_MARGIN * (run_dir + folds * left), "this run needs", f"{len(models)} models "
                        f"x {data.get('rows')} rows of predictions, the report and the fold checkpoints")


def check_universe_space(directory: Path, config: RunConfig, rows: dict[str, int], models: list[str]) -> None:
    """Refuse, with one line, a universe whose ticker runs would not fit on ``directory``'s disk:
    each ticker's run directory is written twice (kept in the partial directory as it finishes,
    then copied into the universe), beside the universe's own report and tables."""
    per_ticker = sum(estimate_run_bytes(config, n, models, 0)[0] for n in rows.values())
    universe = _REPORT_BYTES + _REPORT_ROW_BYTES * max(rows.values(), default=0) * (1 + len(rows))
    _refuse_short_space(directory, _SPACE_MARGIN * (2 * per_ticker + universe), "this universe needs",
                        f"{len(rows)} tickers x {len(models)} models, their reports and the universe's")


def _refuse_short_space(directory: Path, need: float, who: str, what: str) -> None:
    free = shutil.disk_usage(directory).free
    if free < need:
        raise DataError(f"not enough free disk space in {directory}: {who} about {need / _MB:.1f} MB ({what}) and "
                        f"{free / _MB:.1f} MB is free; free some space or choose an --out on another disk")
