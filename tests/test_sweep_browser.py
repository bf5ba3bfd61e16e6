"""sweep.html in a real browser: headless Chromium opens the page of a tiny real sweep, draws every
chart, logs no error, and shows the counts in the sweep's one vocabulary; a full-page screenshot is
saved (copied to ``LSTMBT_SCREENSHOT_DIR`` when set, to look at).

The browser helpers are test_report_browser's, so both pages are opened the same way; without
Chromium the tests skip (or fail under ``LSTMBT_REQUIRE_BROWSER=1``) as those do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from helpers import TINY_VALUES, call_main
from test_report_browser import assert_no_console_errors, assert_screenshot, js, opened

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("one_torch_thread")]

#: one training trial (both targets) x 4 signal-only trials: 8 rows, the classifier's repeat each other
PARAMS = {"strategy.threshold": [0.0, 0.001], "backtest.fee_rate": [0.0, 0.002]}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory, one_torch_thread) -> Path:
    from arch.data import sp500

    folder = tmp_path_factory.mktemp("sweep_browser")
    sp500.load().loc["2016-06-01":].to_csv(folder / "prices.csv")
    settings = {**TINY_VALUES, "model.linear": False, "data.source": f"csv:{folder / 'prices.csv'}"}
    (folder / "sweep.toml").write_text(tomli_w.dumps({"sweep": {"set": settings}, "params": PARAMS}))
    code, _, err = call_main(["sweep", "--config", str(folder / "sweep.toml"), "--out", str(folder / "out")])
    assert code == 0, err
    return folder / "out"


@pytest.fixture(scope="module")
def page(sweep_dir) -> Any:
    yield from opened(sweep_dir / "sweep.html")


def test_every_plotly_figure_is_drawn(page):
    assert page.error is None, f"the page reported plotsError: {page.error}"
    placeholders = js(page, "return document.querySelectorAll('div.figure').length;")
    drawn = js(page, "return Array.from(document.querySelectorAll('.js-plotly-plot'))"
                     ".filter(el => el.data && el.data.length && el.querySelector('svg.main-svg')).length;")
    assert page.ready is not None and drawn == placeholders == int(page.ready) == 3, (drawn, placeholders, page.ready)


def test_no_console_errors(page):
    assert_no_console_errors(page)
    assert page.alerts == []


def test_the_counts_and_the_words_are_on_the_page(page, sweep_dir):
    overfit = json.loads((sweep_dir / "overfit.json").read_text())
    text = js(page, "return document.body.innerText;")
    assert overfit["counts_sentence"] in text and overfit["cores"]["sentence"] in text
    assert overfit["counts_sentence"].startswith("4 trials (1 training trial: ")  # PARAMS: 2 x 2 trials, one training
    assert f"{overfit['n_rows']} rows" in overfit["counts_sentence"] and overfit["n_rows"] == 8
    terms = js(page, "return Array.from(document.querySelectorAll('#legend dt')).map(e => e.textContent);")
    assert terms == ["trial", "training trial", "row", "distinct row", "N"]
    ranks = js(page, "return Array.from(document.querySelectorAll('#ranking-table tbody tr'))"
                     ".map(r => r.cells[0].textContent.trim());")
    assert ranks == [str(n) for n in range(1, overfit["n_distinct"] + 1)]  # consecutive, one line per distinct row
    headers = js(page, "return Array.from(document.querySelectorAll('#ranking-table th')).map(e => e.textContent);")
    assert [h.lower() for h in headers].count("sharpe") == 1
    assert headers.index("B&H Sharpe") == headers.index("Sharpe") + 1  # buy-and-hold's right beside


def test_the_ranking_table_fits_its_box_and_the_legend_reads(page):
    box = js(page, "const t = document.getElementById('ranking-table'), w = t.parentElement;"
                   "return {wrap: w.clientWidth, page: document.documentElement.scrollWidth,"
                   "        view: document.documentElement.clientWidth};")
    assert box["page"] <= box["view"], box  # a wide table scrolls inside its box, never the page
    widths = js(page, "return Array.from(document.querySelectorAll('#legend dt'))"
                      ".map(e => e.getBoundingClientRect().width);")
    assert all(w > 0 for w in widths)


def test_full_page_screenshot(page, tmp_path):
    assert_screenshot(page, tmp_path / "sweep.png")
