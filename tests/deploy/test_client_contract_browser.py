"""The PrismQ frontend's contract in a real headless Chromium (issue 7).

tests/frontend/ is a small page of our own (a test fixture, never shipped)
that speaks exactly what the PrismQ Vue frontend relies on: `data` as the
array and `pagination` on lists, the task in full from create and claim,
`task_type_id` and the claim orders, `message` on errors. It is served from
its own origin beside the dev server, as the real frontend is, so CORS and
the X-API-Key preflight are on the path. Also here: /docs renders in the
browser with its Authorize button and runs a request with try-it-out.
"""

import os
import subprocess
import sys
import time
import urllib.parse

import pytest

from conftest import TESTS, make_config
from support.browser import chromium_session

KEY = "browser-key"
WAIT = 20


@pytest.fixture(scope="module")
def browser():
    yield from chromium_session("1200,1000")


@pytest.fixture
def static_site():
    """tests/frontend/ on its own origin (http.server on a free port); yields its URL."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                             "--directory", os.path.join(TESTS, "frontend")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline().decode()  # "Serving HTTP on 127.0.0.1 port N (...)"
        port = int(line.split(" port ")[1].split()[0])
        yield "http://127.0.0.1:%d" % port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def api_server(static_site, tmp_path):
    from live_server import LiveServer

    config = make_config("sqlite", tmp_path, api={"api_key": KEY, "cors_origins": static_site})
    server = LiveServer(config.path, tmp_path / "server.log")
    yield server.url.rstrip("/")
    server.close()


def wait_for(driver, condition, what):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # the page re-renders its lists and detail: an element may go stale mid-read
        return WebDriverWait(driver, WAIT, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException)).until(lambda d: condition(d))
    except Exception:
        raise AssertionError("%s; page error: %r" % (what, text(driver, "error")))


def text(driver, element_id):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(10):
        try:
            return driver.find_element(By.ID, element_id).text
        except StaleElementReferenceException:  # re-rendered between find and read
            time.sleep(0.1)
    return driver.find_element(By.ID, element_id).text


def field(driver, name):
    return text(driver, "field-" + name)


def click(driver, element_id):
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, element_id).click()


def set_value(driver, element_id, value):
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, element_id)
    element.clear()
    element.send_keys(value)


def choose(driver, element_id, visible_text):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, element_id)).select_by_visible_text(visible_text)


def rows(driver):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(10):
        try:
            return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
                    for row in driver.find_elements(By.CSS_SELECTOR, "tr.task-row")]
        except StaleElementReferenceException:  # the list was re-rendered meanwhile
            time.sleep(0.1)
    raise AssertionError("the task list kept changing")


def test_frontend_contract_list_detail_create_claim_complete_fail(browser, static_site, api_server):
    from taskq.client import Client

    client = Client(api_server, api_key=KEY)
    client.register_type("img.resize", "1", {"type": "object"}, max_attempts=2)
    client.register_type("mail.send", "1", {"type": "object"})
    old = client.create_task("img.resize", {"n": 1})["id"]
    client.create_task("mail.send", {"n": 1}, priority=50)  # higher priority, other type
    newer = client.create_task("img.resize", {"n": 2}, priority=9)["id"]

    driver = browser
    driver.get(static_site + "/index.html?" + urllib.parse.urlencode({"api": api_server, "key": KEY}))
    wait_for(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "yes",
             "the page did not load its lists")
    assert len(rows(driver)) == 3
    assert text(driver, "pagination") == "total 3, page 1 of 1, 20 per page"

    # list with filters: type and page size
    set_value(driver, "filter-type", "img.%")
    set_value(driver, "filter-limit", "1")
    set_value(driver, "filter-offset", "1")
    click(driver, "refresh")
    wait_for(driver, lambda d: text(d, "pagination") == "total 2, page 2 of 2, 1 per page",
             "filtered list")
    assert [r[0] for r in rows(driver)] == [str(old)]
    assert rows(driver)[0][1] == "img.resize"

    # detail
    driver.find_element("css selector", "tr.task-row").click()
    wait_for(driver, lambda d: text(d, "detail-id") == str(old), "detail did not open")
    assert field(driver, "status") == "pending" and field(driver, "params") == '{"n":1}'

    # create: the answer is the task; the page lists it and opens it
    choose(driver, "create-type", "mail.send")
    set_value(driver, "create-params", '{"to": "a@example.com"}')
    set_value(driver, "create-priority", "3")
    set_value(driver, "filter-type", "")
    set_value(driver, "filter-limit", "20")
    set_value(driver, "filter-offset", "0")
    click(driver, "create-submit")
    wait_for(driver, lambda d: text(d, "detail-id") not in ("", str(old)), "created task did not open")
    created = int(text(driver, "detail-id"))
    assert field(driver, "type") == "mail.send" and field(driver, "priority") == "3"
    assert len(rows(driver)) == 4

    # claim of one type, oldest first: never the higher-priority task of the other type
    choose(driver, "claim-type", "img.resize")
    choose(driver, "claim-sort-by", "created_at")
    choose(driver, "claim-sort-order", "ASC")
    click(driver, "claim-submit")
    wait_for(driver, lambda d: text(d, "detail-id") == str(old), "claim did not show the oldest task")
    assert field(driver, "status") == "claimed" and field(driver, "claimed_by") == "browser-worker"
    assert field(driver, "type") == "img.resize" and field(driver, "created_at") != "null"

    # complete
    click(driver, "complete-submit")
    wait_for(driver, lambda d: field(d, "status") == "completed", "complete")
    assert field(driver, "result") == '{"ok":true}'

    # claim the next of that type and fail it: attempts left, so it is pending again
    click(driver, "claim-submit")
    wait_for(driver, lambda d: text(d, "detail-id") == str(newer) and field(d, "status") == "claimed",
             "second claim")
    click(driver, "fail-submit")
    wait_for(driver, lambda d: field(d, "status") == "pending", "fail")
    assert field(driver, "error_message") == "it broke" and field(driver, "attempts") == "1"

    # nothing else of that type with another order: the frontend shows `message`
    click(driver, "claim-submit")
    wait_for(driver, lambda d: text(d, "detail-id") == str(newer) and field(d, "status") == "claimed",
             "claim after the retry")
    click(driver, "claim-submit")
    wait_for(driver, lambda d: text(d, "error") == "No available tasks", "empty claim message")
    assert client.get_task(created)["status"] == "pending"  # the other type was never touched


def test_docs_page_renders_every_operation_and_runs_one_with_try_it_out(browser, api_server):
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(api_server + "/docs")
    wait_for(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) > 0,
             "Swagger UI did not render")
    from taskq.openapi import document

    operations = sum(len(item) for item in document()["paths"].values())
    assert len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) == operations
    assert driver.find_elements(By.CSS_SELECTOR, "button.authorize")
    health = driver.find_element(By.CSS_SELECTOR, "#operations-default-get_health")
    health.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#operations-default-get_health .execute"),
             "try-it-out did not offer Execute")
    driver.find_element(By.CSS_SELECTOR, "#operations-default-get_health .execute").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR,
                                               "#operations-default-get_health .live-responses-table tbody .response-col_status"),
             "no response shown")
    status = driver.find_element(By.CSS_SELECTOR,
                                 "#operations-default-get_health .live-responses-table tbody .response-col_status")
    assert status.text.strip().startswith("200")
