"""The leaderboard page in headless Chromium (opt-in: ``pytest -m browser``; needs chromium, chromedriver and
selenium): the answer on the first screen, an overall table that fits 1400 px, sorting and filtering."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from attnzoo.leaderboard.report import build_report

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "benchmarks" / "results" / "default" / "results.jsonl"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The page of the committed default results, built here (nothing under benchmarks/ is written)."""
    d = tmp_path_factory.mktemp("page")
    shutil.copyfile(COMMITTED, d / "results.jsonl")
    build_report(d, highlight=["linear"])
    return d / "leaderboard.html"


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no chromium / chromedriver installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,900"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser, page):
    browser.get(page.resolve().as_uri())
    assert browser.execute_script("return window.innerWidth") >= 1380


def test_summary_figure_and_heatmap_are_on_the_first_screen(browser, page):
    _open(browser, page)
    height = browser.execute_script("return window.innerHeight")
    for ident in ("summary-figure", "heatmap-figure"):
        rect = browser.execute_script(f"var r=document.getElementById('{ident}').getBoundingClientRect();"
                                      "return [r.top, r.bottom, r.width, r.height];")
        assert rect[2] > 300 and rect[3] > 200, (ident, rect)  # drawn, at a readable size
        assert 0 <= rect[0] and rect[1] <= height, (ident, rect, height)
    assert browser.execute_script("return document.getElementById('summary-figure').naturalWidth") > 0


def test_overall_table_does_not_scroll_sideways_at_1400px(browser, page):
    _open(browser, page)
    width = browser.execute_script("return document.documentElement.clientWidth")
    right = browser.execute_script("return document.getElementById('overall-table').getBoundingClientRect().right")
    assert right <= width, (right, width)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    # a task's long table, opened, scrolls inside its section, never the page
    browser.execute_script("document.querySelectorAll('details.task').forEach(function(d){d.open=true;});")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width


def _column(browser, col):
    return browser.execute_script(
        "return Array.prototype.map.call(document.querySelectorAll('#overall-table tbody:first-of-type tr'),"
        f"function(r){{return r.cells[{col}].getAttribute('data-sort');}});")


def test_sorting_a_column(browser, page):
    _open(browser, page)
    heads = browser.find_elements("css selector", "#overall-table thead th")
    col = next(i for i, h in enumerate(heads) if h.text.startswith("IQM"))
    before_base = browser.execute_script("return document.querySelectorAll('#overall-table tbody.baselines tr').length")
    heads[col].click()
    up = [float(x) for x in _column(browser, col) if x]
    assert up == sorted(up) and len(up) > 5
    heads[col].click()
    down = [float(x) for x in _column(browser, col) if x]
    assert down == sorted(down, reverse=True)
    # the baselines stay in their own band
    assert browser.execute_script("return document.querySelectorAll('#overall-table tbody.baselines tr').length") \
        == before_base
    assert browser.execute_script("return document.querySelectorAll('#overall-table tbody:first-of-type "
                                  "tr.baseline').length") == 0


def test_filter_by_task_and_backbone(browser, page):
    from selenium.webdriver.support.ui import Select

    _open(browser, page)
    Select(browser.find_element("id", "filter-task")).select_by_value("mqar")
    shown = browser.execute_script(
        "return Array.prototype.filter.call(document.querySelectorAll('#overall-table thead th[data-col]'),"
        "function(th){return th.offsetParent!==null;}).map(function(th){return th.getAttribute('data-col');});")
    assert shown == ["mqar"]
    open_tasks = browser.execute_script(
        "return Array.prototype.filter.call(document.querySelectorAll('details.task'),"
        "function(d){return d.offsetParent!==null;}).map(function(d){return d.getAttribute('data-task');});")
    assert open_tasks == ["mqar"]
    Select(browser.find_element("id", "filter-backbone")).select_by_value("mlp")
    rows = browser.execute_script(
        "return Array.prototype.filter.call(document.querySelectorAll('details.task[data-task=mqar] tbody tr'),"
        "function(r){return r.offsetParent!==null;}).map(function(r){return r.cells[2].textContent;});")
    assert rows and set(rows) == {"mlp"}


def test_a_cell_opens_its_findings_and_the_new_variant_is_highlighted(browser, page):
    _open(browser, page)
    link = browser.find_element("css selector", '#overall-table td[data-col="sort"] a')
    link.click()
    assert browser.execute_script("return document.getElementById('task-sort').open") is True
    mine = browser.execute_script("return Array.prototype.map.call(document.querySelectorAll('#overall-table tr.mine'),"
                                  "function(r){return r.cells[1].textContent;});")
    assert mine == ["linear"]
