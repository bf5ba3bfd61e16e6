"""The universe report in a real browser: headless Chromium opens it, draws every chart, logs no error.

Uses ``test_report_browser``'s helpers (it skips without Chromium, chromedriver and selenium, or
fails under ``LSTMBT_REQUIRE_BROWSER=1``). The run behind the page is a universe of three random
walks with linear models (``test_universe_defaults``'s run), saved with its report.
"""

from __future__ import annotations

from typing import Any

import pytest

from test_report_browser import assert_no_console_errors, assert_screenshot, js, opened
from test_universe_defaults import saved_run  # noqa: F401 - the module fixture behind the page

pytestmark = pytest.mark.timeout(300)  # a hung browser fails the test instead of stalling `make test`

SECTIONS = ("summary", "metrics", "performance", "costs", "trades", "tickers", "run")
TABLES = ("costs-table", "costs-sharpe-table", "trade-summary-table", "trades-table")


@pytest.fixture(scope="module")
def page(saved_run) -> Any:  # noqa: F811 - the imported fixture
    yield from opened(saved_run / "report.html")


def test_every_plotly_figure_is_drawn(page):
    assert page.error is None, f"the page reported plotsError: {page.error}"
    assert page.ready is not None, "neither plotsReady nor plotsError set"
    placeholders = js(page, "return Array.from(document.querySelectorAll('div.figure')).map(el => el.id);")
    drawn = js(page, "return Array.from(document.querySelectorAll('.js-plotly-plot')).filter(el => el.data && "
                     "el.data.length && el.querySelector('svg.main-svg')).map(el => el.id);")
    assert sorted(drawn) == sorted(placeholders) and len(drawn) == int(page.ready), (drawn, placeholders, page.ready)
    assert {"perf-equity", "perf-drawdown", "perf-active", "costs-by-fee"} <= set(drawn)


def test_no_console_errors_and_no_dialogs(page):
    assert_no_console_errors(page)
    assert page.alerts == []


def test_every_section_is_present_and_linked(page):
    ids = js(page, "return Array.from(document.querySelectorAll('section[id]')).map(s => s.id);")
    links = js(page, "return Array.from(document.querySelectorAll('nav a')).map(a => a.getAttribute('href'));")
    assert ids == list(SECTIONS) and links == [f"#{s}" for s in SECTIONS], (ids, links)


def test_the_cost_and_trade_tables_show_rows(page):
    for table in TABLES:
        shown = js(page, f"const t = document.getElementById('{table}'), r = t && t.getBoundingClientRect();"
                         f"return t ? [t.querySelectorAll('tbody tr').length, r.width, r.height] : null;")
        assert shown is not None, f"no #{table} on the page"
        rows, width, height = shown
        assert rows > 0 and width > 0 and height > 0, (table, shown)  # rendered, not hidden


def test_full_page_screenshot(page, tmp_path):
    assert_screenshot(page, tmp_path / "universe.png")
