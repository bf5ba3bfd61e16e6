"""Fixtures shared by the whole test suite: one torch-thread fixture and one CLI runner.

Helpers are imported one way: ``from helpers import ...`` (and another test module's helpers as
``from test_pipeline import ...``). tests/ has no ``__init__.py``, so pytest's default ``prepend``
import mode puts tests/ itself on ``sys.path`` when it loads this conftest, however pytest is
started (``pytest`` or ``python -m pytest``, from any folder). Never write ``from tests.helpers
import ...``: that works only when the repository root happens to be on the path too, and it loads
a second copy of the module.

- ``one_torch_thread`` (module scope, opt-in): a module whose tests train tiny networks applies it to
  all of them with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; a module-scoped
  fixture that trains asks for it by name.
- ``run_cli``: ``run_cli(argv)`` calls the real console entry point, ``lstmbt.backtest.cli.main``,
  in-process and returns ``(exit status, stdout, stderr)``. A module-scoped fixture, which cannot
  use ``capsys``, calls ``helpers.call_main(argv)`` instead.

The tiny config is not a fixture but constants in helpers.py: ``TINY_VALUES`` (dotted keys), the
same as ``--set`` items (``TINY_SETS``) and as CLI arguments (``TINY``). A test that needs
something else spells out the difference: ``{**TINY_VALUES, "model.lstm": False}``.
"""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from helpers import run_main


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny networks on one intra-op thread for the whole module, then torch's setting restored.

    They gain nothing from more, and on a busy 2-core machine OpenMP's spinning threads make them
    several times slower. Results are compared only within a module, under one setting.
    """
    import torch  # heavy: only for the modules that train

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str, str]]:
    """``run_cli(argv)``: the ``lstmbt`` entry point in-process; (exit status, stdout, stderr)."""

    def call(argv: list[str]) -> tuple[int, str, str]:
        return run_main(argv, monkeypatch, capsys)

    return call
