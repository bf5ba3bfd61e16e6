"""The report in a real browser: headless Chromium opens report.html, draws every chart, runs no script.

The run behind the page is hostile on purpose: its CSV file name holds ``<b>`` and its symbol is
``<script>alert(1)</script>``; both must show as text. Needs Chromium, chromedriver and selenium
(dev extras). Without them the tests skip with the reason, unless ``LSTMBT_REQUIRE_BROWSER=1``
(set by ``.ci/run``), where they fail instead: CI never skips them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from lstmbt.backtest.config import RunConfig
from lstmbt.backtest.pipeline import run
from helpers import TINY_SPX, save_with_report


pytestmark = pytest.mark.timeout(300)  # a hung browser fails the test instead of stalling `make test`

SECTIONS = ("summary", "head-to-head", "regimes", "performance", "predictions", "folds", "costs", "trades",
            "details", "run")
EVIL = "<script>alert(1)</script>"
EVIL_FILE = "<b>hostile<i> prices.csv"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,2000")
PLOTS_TIMEOUT_S = 60.0
MAX_SHOT_HEIGHT_PX = 16000  # Chromium's largest capture; taller pages are cut at the bottom
SKIP_REASON = ("headless Chromium not found: install chromium and chromium-driver (apt) and the dev extras "
               "to run the browser test")


# --------------------------------------------------------------------------- browser discovery


def find_browser() -> tuple[str, str]:
    """(chromium binary, chromedriver binary); skips, or fails under ``LSTMBT_REQUIRE_BROWSER=1``."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    binary = next((found for found in map(shutil.which, BROWSERS) if found), None)
    if binary is None:
        missing.append(f"a Chromium binary ({', '.join(BROWSERS)} on PATH)")
    driver = shutil.which("chromedriver")
    if driver is None:
        missing.append("chromedriver on PATH")
    if missing:
        if os.environ.get("LSTMBT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LSTMBT_REQUIRE_BROWSER=1 but the browser test cannot run: missing {'; '.join(missing)}; "
                        "install chromium and chromium-driver (apt) and the dev extras", pytrace=False)
        pytest.skip(f"{SKIP_REASON} (missing {'; '.join(missing)})")
    return binary, driver


def start_chromium(binary: str, driver_path: str) -> Any:
    """A headless Chromium session through selenium; an alert, if any, stays open for the test to see."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.unhandled_prompt_behavior = "ignore"
    return webdriver.Chrome(service=Service(driver_path), options=options)


# --------------------------------------------------------------------------- loading a page


@dataclasses.dataclass
class Page:
    """What the browser saw of one page: load timing, console entries, alerts, final DOM state."""

    driver: Any
    load_s: float  # navigation start (driver.get) to plotsReady / plotsError seen
    ready: str | None  # body.dataset.plotsReady
    error: str | None  # body.dataset.plotsError
    console: list[dict[str, Any]]
    alerts: list[str]


def open_page(driver: Any, path: Path, timeout_s: float = PLOTS_TIMEOUT_S) -> Page:
    """Open ``path`` via file:// and wait until the page reports its plots drawn (or failed)."""
    from selenium.common.exceptions import NoAlertPresentException, UnexpectedAlertPresentException

    alerts: list[str] = []

    def take_alert() -> None:
        try:
            alert = driver.switch_to.alert
        except NoAlertPresentException:
            return
        alerts.append(alert.text)
        alert.dismiss()

    started = time.perf_counter()
    driver.get(path.resolve().as_uri())
    ready = error = None
    while time.perf_counter() - started < timeout_s:
        try:
            ready, error = driver.execute_script(
                "return [document.body.dataset.plotsReady || null, document.body.dataset.plotsError || null];")
        except UnexpectedAlertPresentException:
            take_alert()
            continue
        if ready is not None or error is not None:
            break
        time.sleep(0.05)
    load_s = time.perf_counter() - started
    take_alert()
    return Page(driver=driver, load_s=load_s, ready=ready, error=error, console=driver.get_log("browser"),
                alerts=alerts)


def screenshot_full_page(driver: Any, out: Path) -> Path:
    """The whole page (not just the window) as a PNG, via the DevTools protocol."""
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], MAX_SHOT_HEIGHT_PX), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True, "clip": clip})
    out.write_bytes(base64.b64decode(shot["data"]))
    return out


def opened(path: Path) -> Iterator[Page]:
    """A module fixture's body: ``path`` loaded in a fresh headless Chromium, quit afterwards."""
    binary, driver_path = find_browser()
    driver = start_chromium(binary, driver_path)
    try:
        yield open_page(driver, path)
    finally:
        driver.quit()


def js(page: Page, script: str) -> Any:
    return page.driver.execute_script(script)


def assert_no_console_errors(page: Page) -> None:
    severe = [entry for entry in page.console if entry.get("level") == "SEVERE"]
    assert severe == [], "\n".join(entry.get("message", "") for entry in severe)


def assert_screenshot(page: Page, out: Path) -> None:
    """A full-page PNG that is not blank, copied to ``LSTMBT_SCREENSHOT_DIR`` when set (to look at)."""
    data = screenshot_full_page(page.driver, out).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000, f"screenshot only {len(data)} bytes: blank page?"
    target = os.environ.get("LSTMBT_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, Path(target) / out.name)


# --------------------------------------------------------------------------- fixtures


def write_hostile_csv(folder: Path) -> Path:
    """Long-format OHLCV (date, symbol, ...) for two symbols; the one the run picks is EVIL."""
    import pandas as pd
    from arch.data import sp500

    prices = sp500.load().loc["2016-01-01":, ["Open", "High", "Low", "Close", "Volume"]]
    frame = prices.rename(columns=str.lower).rename_axis("date").reset_index()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    decoy = frame.assign(close=frame["close"] * 2, open=frame["open"] * 2, high=frame["high"] * 2,
                         low=frame["low"] * 2)
    long = pd.concat([decoy.assign(symbol="SPX"), frame.assign(symbol=EVIL)], ignore_index=True)
    path = folder / EVIL_FILE
    long[["date", "symbol", "open", "high", "low", "close", "volume"]].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def browser() -> Any:
    binary, driver_path = find_browser()
    driver = start_chromium(binary, driver_path)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report(browser, tmp_path_factory) -> Path:
    """report.html of a tiny real run (both targets) on a CSV with a hostile file name and symbol."""
    folder = tmp_path_factory.mktemp("browser")
    csv = write_hostile_csv(folder)
    config = RunConfig().with_values({**TINY_SPX, "target.task": "both", "data.source": f"csv:{csv}",
                                      "data.symbol": EVIL})
    run_dir = save_with_report(run(config), folder / "run")
    return run_dir / "report.html"


@pytest.fixture(scope="module")
def page(browser, report) -> Page:
    loaded = open_page(browser, report)
    print(f"\nreport.html ({report.stat().st_size / 1e6:.1f} MB): navigation to plotsReady {loaded.load_s:.2f} s")
    return loaded


# --------------------------------------------------------------------------- tests


def test_every_plotly_figure_is_drawn(page):
    assert page.error is None, f"the page reported plotsError: {page.error}"
    assert page.ready is not None, f"neither plotsReady nor plotsError set within {PLOTS_TIMEOUT_S:.0f} s"
    placeholders = js(page, "return document.querySelectorAll('div.figure').length;")
    drawn = js(page, "return document.querySelectorAll('.js-plotly-plot').length;")
    assert drawn == placeholders == int(page.ready) > 0, (drawn, placeholders, page.ready)
    # each drawn plot holds data and an SVG canvas
    empty = js(page, "return Array.from(document.querySelectorAll('.js-plotly-plot'))"
                     ".filter(el => !(el.data && el.data.length && el.querySelector('svg.main-svg'))).map(el => el.id);")
    assert empty == [], f"plots drawn without data: {empty}"


def test_no_console_errors(page):
    assert_no_console_errors(page)


def test_every_section_is_present_and_linked(page):
    ids = js(page, "return Array.from(document.querySelectorAll('section[id]')).map(s => s.id);")
    for section in SECTIONS:
        assert ids.count(section) == 1, (section, ids)
    links = js(page, "return Array.from(document.querySelectorAll('nav a')).map(a => a.getAttribute('href'));")
    for section in SECTIONS:
        assert f"#{section}" in links, (section, links)


def test_hostile_strings_show_as_text_and_never_run(page):
    assert page.alerts == [], f"the report opened alert dialogs: {page.alerts}"
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        page.driver.switch_to.alert  # noqa: B018 - the property raises when no dialog is open
    assert EVIL in js(page, "return document.body.innerText;")
    injected = js(page, "return Array.from(document.scripts).filter(s => s.textContent.trim() === 'alert(1)').length;")
    assert injected == 0, "the symbol became a <script> element"
    # the file name's <b> and <i> are text, not markup
    assert js(page, "return Array.from(document.querySelectorAll('b, i')).filter(e => "
                    "e.textContent.includes('hostile')).length;") == 0
    assert "<b>hostile<i>" in js(page, "return document.body.textContent;")


def test_full_page_screenshot(page, tmp_path):
    assert_screenshot(page, tmp_path / "report.png")
