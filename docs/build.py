"""Build the API reference into ``docs/api/`` with pdoc, from the numpydoc docstrings.

Run ``make docs`` (or ``.venv/bin/python docs/build.py [OUT_DIR]``), then open ``docs/api/index.html``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pdoc
import pdoc.render

import lstmbt

#: the public API first (``lstmbt`` brings the core, ``lstmbt.backtest``, with its submodules), then
#: the packages under it
MODULES = ("lstmbt", "lstmbt.api", "lstmbt.result", "lstmbt.models", "lstmbt.strategies", "lstmbt.reports")


def main(out_dir: Path) -> None:
    """Write the HTML reference of ``MODULES`` into ``out_dir``."""
    for name in lstmbt.__all__:  # lstmbt imports run, load, ... on first use; pdoc looks for them in its dict
        getattr(lstmbt, name)
    pdoc.render.configure(docformat="numpy", footer_text=f"lstmbt {lstmbt.__version__}")
    pdoc.pdoc(*MODULES, output_directory=out_dir)
    print(f"docs: {(out_dir / 'index.html').resolve()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "api")
