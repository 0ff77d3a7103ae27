"""The page at ``/`` and the API docs in a real browser: headless Debian Chromium, driven by Selenium,
against uvicorn serving the tiny bundle, with no network beyond this machine.

Chromium is required, not optional: without it these tests fail and say how to install it (``.ci/run``
installs it on a fresh machine), so a green run always means the page worked in a browser.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as visible
from selenium.webdriver.support.wait import WebDriverWait

from app.main import create_app
from bench.page_screenshot import capture
from tests.helpers.browser import (
    CHROMEDRIVER,
    CHROMIUM,
    BrowserMissing,
    headless_chromium,
    non_local,
    read_requests,
)
from tests.helpers.live_server import live_server
from tests.helpers.service import catalogue_ids, prepare_database, service_settings
from tests.helpers.tiny_bundle import TinyBundle

pytestmark = pytest.mark.browser

WAIT_S = 60  # the machine may be busy: decoding on a loaded CPU can take seconds
PHONE_WIDTH, PHONE_HEIGHT = 390, 844


@pytest.fixture(scope="module")
def base_url(tiny_bundle: TinyBundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'catalogue.db'}"
    prepare_database(url, tiny_bundle)
    with live_server(create_app(service_settings(tiny_bundle, url))) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    try:
        with headless_chromium() as driver:
            yield driver
    except BrowserMissing as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def page(browser: webdriver.Chrome, base_url: str) -> Iterator[webdriver.Chrome]:
    """The page freshly loaded; afterwards, no request may have left this machine."""
    browser.get(f"{base_url}/")
    yield browser
    urls = read_requests(browser).sent
    assert any(url.endswith("/static/page.js") for url in urls), "the request log is empty: it proves nothing"
    assert non_local(urls) == []


def _wait(driver: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    return WebDriverWait(driver, WAIT_S)


def _search(driver: webdriver.Chrome, query: str, *, press_enter: bool) -> None:
    box = driver.find_element(By.ID, "query")
    box.clear()
    if press_enter:
        box.send_keys(query, Keys.ENTER)
    else:
        box.send_keys(query)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def _results(driver: webdriver.Chrome) -> list[WebElement]:
    _wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results li"))
    return driver.find_elements(By.CSS_SELECTOR, "#results li")


def test_the_browser_reaches_nothing_beyond_this_machine(browser: webdriver.Chrome) -> None:
    read_requests(browser)
    with pytest.raises(WebDriverException, match=r"ERR_PROXY_CONNECTION_FAILED|ERR_NAME_NOT_RESOLVED"):
        browser.get("http://example.com/")
    tried = {urlsplit(url).hostname for url in non_local(read_requests(browser).sent)}
    assert tried == {"example.com"}  # the log sees what was tried


def test_a_query_shows_ranked_results_with_ids_scores_and_latency(page: webdriver.Chrome) -> None:
    _search(page, "Heat", press_enter=False)
    items = _results(page)
    assert len(items) == 10  # k is 10 on the form
    first = items[0]
    assert first.find_element(By.CLASS_NAME, "title").text == "1. Heat"
    assert "1977" in first.find_element(By.CLASS_NAME, "meta").text  # the catalogue's fields
    assert "score" in first.text and "sources" in first.text
    status = page.find_element(By.ID, "status").text
    assert status.startswith("10 items, hybrid mode") and "ms in the service" in status
    assert not page.find_element(By.ID, "error").is_displayed()


def test_an_id_link_opens_the_items_json(page: webdriver.Chrome, tiny_bundle: TinyBundle) -> None:
    _search(page, "Heat", press_enter=False)
    link = _results(page)[0].find_element(By.CSS_SELECTOR, ".ids a")
    semantic_id = link.text
    assert semantic_id in catalogue_ids(tiny_bundle)
    link.click()
    _wait(page).until(visible.url_contains(f"/items/{semantic_id}"))
    item = json.loads(page.find_element(By.TAG_NAME, "body").text)
    assert (item["semantic_id"], item["title"]) == (semantic_id, "Heat")


def test_an_empty_query_shows_the_apis_message(page: webdriver.Chrome, base_url: str) -> None:
    _search(page, "Heat", press_enter=True)
    _results(page)
    _search(page, "   ", press_enter=True)
    error = _wait(page).until(visible.visibility_of_element_located((By.ID, "error")))
    body = httpx.post(f"{base_url}/recommend", json={"query": "   ", "k": 10, "mode": "hybrid"}).json()
    assert "query is empty" in body["detail"]
    assert error.text == f"{body['detail']} ({body['error']})"
    assert page.find_elements(By.CSS_SELECTOR, "#results li") == []  # the old results are gone


def test_the_form_works_from_the_keyboard(page: webdriver.Chrome) -> None:
    assert page.switch_to.active_element.get_attribute("id") == "query"  # focused on load
    order = []
    for _ in range(3):
        page.switch_to.active_element.send_keys(Keys.TAB)
        active = page.switch_to.active_element
        order.append(active.get_attribute("id") or active.get_attribute("type"))
    assert order == ["k", "mode", "submit"]
    page.find_element(By.ID, "query").send_keys("Fargo", Keys.ENTER)  # Enter submits
    assert _results(page)[0].find_element(By.CLASS_NAME, "title").text == "1. Fargo"


def _horizontal_overflow(driver: webdriver.Chrome) -> int:
    overflow = driver.execute_script(
        "const root = document.documentElement; return root.scrollWidth - root.clientWidth;"
    )
    return int(overflow)


def test_a_phone_width_page_needs_no_sideways_scrolling(page: webdriver.Chrome) -> None:
    page.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PHONE_WIDTH, "height": PHONE_HEIGHT, "deviceScaleFactor": 3, "mobile": True},
    )
    try:
        page.refresh()
        assert page.execute_script("return window.innerWidth") == PHONE_WIDTH
        _search(page, "a crime drama by Michael Mann", press_enter=True)
        _results(page)
        assert _horizontal_overflow(page) <= 0
        for control in ("query", "k", "mode"):
            box = page.find_element(By.ID, control).rect
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE_WIDTH, control
    finally:
        page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_the_swagger_docs_render_offline_with_every_endpoint(
    browser: webdriver.Chrome, base_url: str
) -> None:
    read_requests(browser)
    browser.get(f"{base_url}/docs")
    _wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    listed = {
        (block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
         block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"))
        for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")
    }  # fmt: skip
    schema = httpx.get(f"{base_url}/openapi.json").json()["paths"]
    expected = {(method.upper(), path) for path, methods in schema.items() for method in methods}
    assert ("POST", "/recommend") in expected and ("GET", "/items/{semantic_id}") in expected
    assert listed == expected
    urls = read_requests(browser).sent
    assert any("/docs-assets/swagger-ui-bundle.js" in url for url in urls)
    assert non_local(urls) == []


def test_redoc_renders_offline_and_its_one_outside_image_is_refused(
    browser: webdriver.Chrome, base_url: str
) -> None:
    read_requests(browser)
    browser.get(f"{base_url}/redoc")
    _wait(browser).until(lambda d: "/recommend" in d.find_element(By.TAG_NAME, "body").text)
    requests = read_requests(browser)
    assert any("/docs-assets/redoc.standalone.js" in url for url in requests.sent)
    assert non_local(requests.sent) == []
    # ReDoc's sidebar always asks for Redocly's logo from its CDN; the page's policy stops it unsent.
    assert requests.blocked_by_policy == ["https://cdn.redoc.ly/redoc/logo-mini.svg"]


def test_the_debian_browser_and_its_driver_are_the_ones_driven(browser: webdriver.Chrome) -> None:
    """The packaged driver, not one selenium-manager fetched, and a browser of the same version."""
    assert browser.service.path == str(CHROMEDRIVER)
    packaged = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, check=True)
    assert browser.capabilities["browserVersion"] in packaged.stdout
    driver_version = browser.capabilities["chrome"]["chromedriverVersion"].split(".")[0]
    assert driver_version == browser.capabilities["browserVersion"].split(".")[0]


def test_the_screenshot_script_saves_the_whole_page_with_results(base_url: str, tmp_path: Path) -> None:
    """``bench/page_screenshot.py`` made docs/page.png; it must keep working as the page changes."""
    capture(base_url, "Heat", tmp_path / "page.png")
    data = (tmp_path / "page.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR
    assert width == 1000 and height > 700  # five results: taller than the first viewport (652 px)
