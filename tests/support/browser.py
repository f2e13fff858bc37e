"""Headless Chromium for the browser tests (wizard, dashboard): start, screenshot, wait."""

import os
import shutil
import tempfile

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(window="1000,900"):
    """A headless Debian Chromium under chromedriver, offline, with a fresh profile."""
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="taskq-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=" + window,
                "--user-data-dir=" + profile):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.taskq_profile = profile
    return driver


def chromium_session(window="1000,900"):
    """For a module's browser fixture (`yield from chromium_session()`): a started
    Chromium, closed after. Without Chromium installed: a failure in CI, else a skip."""
    import pytest

    from conftest import IN_CI

    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            reason = "%s is not installed (Debian packages chromium, chromium-driver)" % path
            if IN_CI:
                pytest.fail("required in CI: %s" % reason)
            pytest.skip(reason)
    driver = chromium(window)
    try:
        yield driver
    finally:
        close_chromium(driver)


def close_chromium(driver):
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver.taskq_profile, ignore_errors=True)


def screenshot(driver, folder, name, width=1000):
    """Save the whole page (not just the window) as <folder>/<name>.png."""
    driver.execute_script("if (document.activeElement) document.activeElement.blur()")
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(int(size["height"]) + 1, 4000), "deviceScaleFactor": 1, "mobile": False})
    try:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, name + ".png")
        driver.save_screenshot(path)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def click_and_wait(driver, element):
    """Click something that loads a new page, and return once the new page is there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old_page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: _gone(old_page))
    # the old page is gone; wait until the new one has finished loading too,
    # or a lookup may catch a node of a document that is still being replaced
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def _gone(element):
    """Whether element's document was replaced. Mid-navigation chromedriver may
    answer "Node with given id does not belong to the document" (an unknown
    error) instead of a stale-element error: that also means it is gone."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


