"""Library calls leave the caller's process as they found it: torch's thread count, default dtype,
global RNG and flags, numpy's global RNG and error handling, the socket timeout and the environment.

Each call runs with ``threads=1`` while the caller has another count, so a call that set threads
and forgot to restore them is caught; the FinanceDataReader path sets a socket timeout while it
downloads (the fake reader sees it) and must put the caller's back.
"""

from __future__ import annotations

import os
import socket
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import sklearn  # noqa: F401  (its import sets KMP_* variables once; a call's first import must not count)
import torch
import torch._dynamo  # noqa: F401  (the first optimizer imports it, which sets TORCHINDUCTOR_CACHE_DIR once)

import lstmbt.backtest.data as data
from lstmbt.backtest.campaign.executors import THREADS_ENV, LocalExecutor
from lstmbt.backtest.config import DataConfig, RunConfig
from lstmbt.backtest.forecast import forecast_next
from lstmbt.backtest.importance import importance_frame
from lstmbt.backtest.pipeline import run
from lstmbt.models.threads import default_threads, torch_threads
from helpers import TINY_VALUES
from test_data import fdr_frame

#: the caller's own thread count, different from the 1 thread every call below asks for
CALLER_THREADS = 2
TINY_SP500 = {"data.source": "sample:sp500", "data.start": "2016-06-01", **TINY_VALUES}


def snapshot() -> dict[str, Any]:
    """Every process-wide setting a library call could change by mistake."""
    return {
        "torch threads": torch.get_num_threads(),
        "torch default dtype": torch.get_default_dtype(),
        "torch global RNG": torch.random.get_rng_state().clone(),
        "torch deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch grad mode": torch.is_grad_enabled(),
        "numpy global RNG": np.random.get_state(legacy=False),
        "numpy error handling": np.geterr(),
        "socket default timeout": socket.getdefaulttimeout(),
        "environment": dict(os.environ),
    }


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The names of the settings that differ between two snapshots."""
    out = []
    for name, old in before.items():
        new = after[name]
        if isinstance(old, torch.Tensor):
            same = torch.equal(old, new)
        elif name == "numpy global RNG":
            same = old["bit_generator"] == new["bit_generator"] and all(
                np.array_equal(old["state"][k], new["state"][k]) for k in old["state"]) and (
                old["has_gauss"], old["gauss"]) == (new["has_gauss"], new["gauss"])
        else:
            same = old == new
        if not same:
            out.append(name)
    return out


@pytest.fixture
def caller_threads() -> Iterator[None]:
    """The caller runs on CALLER_THREADS torch threads; the test's own setting is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(CALLER_THREADS)
    yield
    torch.set_num_threads(before)


def assert_untouched(call: Callable[[], Any]) -> Any:
    """Run ``call`` and fail naming every process-wide setting it left changed; returns its result."""
    with warnings.catch_warnings():  # a DataWarning of the sample data is not what this checks
        warnings.simplefilter("ignore")
        before = snapshot()
        result = call()
        after = snapshot()
    assert changed(before, after) == [], f"the call left these settings changed: {changed(before, after)}"
    return result


def threads_seen(log: list[int]) -> Callable[[str, int, int], None]:
    """A progress callback that records torch's thread count at every report."""
    return lambda stage, done, total: log.append(torch.get_num_threads())


# --------------------------------------------------------------------------- the library calls


@pytest.mark.usefixtures("caller_threads")
def test_run_trains_on_its_threads_and_gives_the_callers_back():
    seen: list[int] = []
    config = RunConfig.resolve(flags=TINY_SP500)
    result = assert_untouched(lambda: run(config, progress=threads_seen(seen), threads=1))
    assert 1 in seen  # the models trained on the thread asked for ...
    assert torch.get_num_threads() == CALLER_THREADS  # ... and the caller has its own back
    assert len(result.predictions)


@pytest.mark.usefixtures("caller_threads")
def test_forecast_trains_on_its_threads_and_gives_the_callers_back():
    seen: list[int] = []
    config = RunConfig.resolve(flags=TINY_SP500)
    forecast = assert_untouched(lambda: forecast_next(config, threads=1, progress=threads_seen(seen)))
    assert 1 in seen and torch.get_num_threads() == CALLER_THREADS
    assert forecast.regression is not None and forecast.classification is not None


@pytest.mark.usefixtures("caller_threads")
def test_importance_trains_on_its_threads_and_gives_the_callers_back():
    seen: list[int] = []
    config = RunConfig.resolve(flags={**TINY_SP500, "model.linear": False, "target.task": "classification"})
    frame = assert_untouched(lambda: importance_frame(config, "permutation", n_repeats=1,
                                                      progress=threads_seen(seen), threads=1))
    assert 1 in seen and torch.get_num_threads() == CALLER_THREADS
    assert set(frame["method"]) == {"permutation"}


def test_fdr_load_sets_a_socket_timeout_only_while_it_downloads(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMBT_CACHE_DIR", str(tmp_path / "cache"))  # before the snapshot: not the call's change
    monkeypatch.setattr(socket.socket, "connect", lambda *args: pytest.fail("a test opened a network connection"))
    timeouts: list[float | None] = []

    def reader(symbol: str, start: str | None = None, end: str | None = None):
        timeouts.append(socket.getdefaulttimeout())
        return fdr_frame().loc[start:end]

    monkeypatch.setattr(data, "_fdr_datareader", lambda: reader)
    socket.setdefaulttimeout(None)
    prices = assert_untouched(lambda: data.load_prices(
        DataConfig(source="fdr:005930", start="2020-02-03", end="2020-12-30", refresh=True)))
    assert timeouts == [data.FDR_TIMEOUT_S]  # the download had its timeout ...
    assert socket.getdefaulttimeout() is None  # ... and the caller has none again
    assert len(prices) > 200


def test_fdr_load_restores_the_callers_timeout_when_the_download_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMBT_CACHE_DIR", str(tmp_path / "cache"))

    def reader(*args):
        raise ValueError("unknown ticker")

    monkeypatch.setattr(data, "_fdr_datareader", lambda: reader)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(7.5)
    try:
        with pytest.raises(data.DataError, match="could not read this ticker"):
            data.load_prices(DataConfig(source="fdr:NOPE", refresh=True))
        assert socket.getdefaulttimeout() == 7.5
    finally:
        socket.setdefaulttimeout(previous)


# --------------------------------------------------------------------------- threads


def test_torch_threads_restores_the_count_however_the_block_ends():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        with torch_threads(before + 1):
            assert torch.get_num_threads() == before + 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):  # None: torch's setting is left alone
        assert torch.get_num_threads() == before


def test_default_threads_follows_the_cores_unless_omp_num_threads_is_set(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("lstmbt.models.threads.available_cores", lambda: 3)
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert default_threads() is None


def job_threads(_: object) -> tuple[int, str | None]:
    return torch.get_num_threads(), os.environ.get(THREADS_ENV)


@pytest.mark.usefixtures("caller_threads")
def test_a_local_job_in_the_callers_process_gives_its_threads_back(monkeypatch):
    """With one worker the job runs in this process: it gets its threads and the caller keeps its own."""
    monkeypatch.setattr("lstmbt.backtest.campaign.executors._cores", lambda: 3)
    monkeypatch.delenv(THREADS_ENV, raising=False)
    got = assert_untouched(lambda: LocalExecutor(workers=1).map(job_threads, [0]))
    assert got == [(3, "3")]
    assert torch.get_num_threads() == CALLER_THREADS and THREADS_ENV not in os.environ
