"""The dashboard in a real headless Chromium against the dev server, on SQLite and MariaDB.

Every page is visited and saved as a screenshot (under docs/img/ when
TASKQ_UPDATE_SCREENSHOTS=1, else in a temporary folder): log in, overview,
tasks with a filter and a page change, task detail, types, health, logout, a
wrong key, a bad CSRF token, XSS payloads shown as text, and a phone-sized
viewport. The browser runs the real CSP, so a page that needed inline script
would break here.
"""

import json
import os
import tempfile
import urllib.request

import pytest

from conftest import ROOT, db_execute
from support.browser import chromium_session, click_and_wait
from support.browser import screenshot as save_screenshot

IMG = (os.path.join(ROOT, "docs", "img") if os.environ.get("TASKQ_UPDATE_SCREENSHOTS") == "1"
       else tempfile.mkdtemp(prefix="taskq-screenshots-"))
KEY = "dashboard-test-key-" + "x" * 24
XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


@pytest.fixture(scope="module")
def driver():
    yield from chromium_session("1100,900")


@pytest.fixture
def site(config_factory, tmp_path, driver):
    """A dev server with an admin key and a few tasks (one of them hostile); yields its URL."""
    from live_server import LiveServer

    server_config = config_factory(api={"api_key": KEY})
    server = LiveServer(server_config.path, tmp_path / "server.log")
    try:
        call(server.url, "/task-types/register", {
            "name": "mail.send", "version": "1.2",
            "param_schema": {"type": "object", "properties": {"to": {"type": "string"}}}})
        call(server.url, "/task-types/register", {"name": "report.build", "version": "1", "max_attempts": 1,
                                                  "param_schema": {"type": "object"}})
        for n in range(55):
            call(server.url, "/tasks", {"type": "mail.send", "params": {"to": "user%d@example.org" % n}})
        hostile = call(server.url, "/tasks", {"type": "report.build", "params": {"title": XSS}})
        call(server.url, "/tasks/claim", {"worker_id": "gpu-box-1", "type_pattern": "report.build"})
        call(server.url, "/tasks/%d/complete" % hostile["data"]["id"],
             {"worker_id": "gpu-box-1", "success": False, "error": "API rate limit exceeded " + XSS})
        call(server.url, "/tasks/claim", {"worker_id": "laptop-7"})
        call(server.url, "/schedules", {"name": "nightly-digest", "type": "mail.send", "cron": "0 3 * * *",
                                        "timezone": "UTC", "params": {"to": "team@example.org"}})
        call(server.url, "/schedules", {"type": "report.build", "every_seconds": 5400,
                                        "params": {"title": XSS}})
        driver.delete_all_cookies()
        yield server.url, hostile["data"]["id"], server_config
    finally:
        server.close()


def call(url, path, body=None):
    """The API's answer to a POST of `body` (a GET without one), with the admin key."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method="POST" if data else "GET",
                                     headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def shot(driver, backend, name, width=1100):
    # one set of pictures is enough for the README: SQLite's
    if backend == "sqlite":
        save_screenshot(driver, IMG, name, width)


def open_page(driver, url):
    driver.get(url)
    assert driver.execute_script("return document.readyState") == "complete"


def log_in(driver, url, key=KEY):
    from selenium.webdriver.common.by import By

    open_page(driver, url + "/dashboard")
    assert driver.current_url.endswith("/dashboard/login")
    driver.find_element(By.ID, "key").send_keys(key)
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))


def confirm_and_wait(driver, button):
    """Click a button whose form asks "are you sure?", say yes, wait for the next page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old_page = driver.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(driver, 10).until(expected_conditions.alert_is_present())
    driver.switch_to.alert.accept()
    from support.browser import _gone

    WebDriverWait(driver, 60).until(lambda d: _gone(old_page))
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.readyState") == "complete")


def no_alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_every_page_in_the_browser(driver, site, backend):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, hostile_id, _ = site
    open_page(driver, url + "/dashboard/login")
    shot(driver, backend, "dashboard-login")
    log_in(driver, url)
    assert driver.current_url.endswith("/dashboard")
    tiles = {t.text.split("\n")[-1]: t.text.split("\n")[0]
             for t in driver.find_elements(By.CSS_SELECTOR, ".tile")}
    assert {k: tiles[k] for k in ("pending", "claimed", "completed", "failed")} == {
        "pending": "54", "claimed": "1", "completed": "0", "failed": "1"}, tiles
    assert set(tiles.values()) <= {"54", "1", "0"}  # every other status is empty
    assert "laptop-7" in driver.page_source
    shot(driver, backend, "dashboard-overview")

    # tasks: filter with the form, then go to the next page
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Tasks"))
    Select(driver.find_element(By.NAME, "status")).select_by_value("pending")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button"))
    assert "54 task(s) with status pending" in driver.page_source
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "a[rel=next]"))
    assert "page 2 of 2" in driver.page_source
    assert len(driver.find_elements(By.CSS_SELECTOR, "tbody tr")) == 4

    # the hostile task: its values are text, and no script ran
    open_page(driver, url + "/dashboard/tasks/%d" % hostile_id)
    assert no_alert(driver)
    assert not driver.find_elements(By.CSS_SELECTOR, "main img")
    assert XSS in driver.find_element(By.CSS_SELECTOR, "pre.error-text").text
    assert json.dumps(XSS) in driver.find_element(By.CSS_SELECTOR, "details pre").text
    events = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "ol.timeline li")]
    assert [e.split()[1] for e in events] == ["created", "claimed", "failed"], events
    shot(driver, backend, "dashboard-task")

    # the failed page groups it; then the task is retried from its own page
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Failed"))
    assert "API rate limit exceeded" in driver.find_element(By.CSS_SELECTOR, "td.wrap").text
    shot(driver, backend, "dashboard-failed")
    open_page(driver, url + "/dashboard/tasks/%d" % hostile_id)
    confirm_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "button.retry"))
    assert "Task queued for retry." in driver.find_element(By.CSS_SELECTOR, ".notice").text
    assert driver.find_element(By.CSS_SELECTOR, "span.status").text == "pending"

    # bulk: select two pending tasks with the keyboard-reachable checkboxes, cancel them
    open_page(driver, url + "/dashboard/tasks?status=pending")
    boxes = driver.find_elements(By.CSS_SELECTOR, "input[name=ids]")
    boxes[0].click()
    boxes[1].send_keys(" ")  # the space bar ticks a focused checkbox
    Select(driver.find_element(By.NAME, "action")).select_by_value("cancel")
    confirm_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "p.bulk button"))
    assert "2 task(s) changed, 0 skipped" in driver.find_element(By.CSS_SELECTOR, ".notice").text
    assert "status pending" in driver.page_source  # the filter is kept

    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Types"))
    assert "mail.send" in driver.page_source and "report.build" in driver.page_source
    summary = driver.find_element(By.CSS_SELECTOR, "tr.schema summary")
    summary.click()  # the schema viewer opens
    assert '"to"' in driver.find_element(By.CSS_SELECTOR, "tr.schema pre").text
    shot(driver, backend, "dashboard-types")
    pause = driver.find_element(By.CSS_SELECTOR, "form[action$='/types/mail.send/pause'] button")
    click_and_wait(driver, pause)
    assert "Type paused" in driver.find_element(By.CSS_SELECTOR, ".notice").text
    assert "paused" in driver.find_element(By.CSS_SELECTOR, "tbody tr td:nth-child(3)").text

    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Health"))
    assert "reachable" in driver.page_source and KEY not in driver.page_source
    shot(driver, backend, "dashboard-health")

    # keyboard: the main links are reachable with Tab and announce the current page
    current = driver.find_element(By.CSS_SELECTOR, "nav a[aria-current=page]")
    assert current.text == "Health"

    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form.logout button"))
    assert driver.current_url.endswith("/dashboard/login")
    open_page(driver, url + "/dashboard/tasks")
    assert driver.current_url.endswith("/dashboard/login")


def test_wrong_key_and_forged_csrf_are_refused(driver, site, backend):
    from selenium.webdriver.common.by import By

    url, _, _ = site
    log_in(driver, url, key="not-the-key")
    assert "not an admin key" in driver.page_source
    # a forged login form: the token in the page is replaced before submitting
    driver.execute_script("document.querySelector('input[name=csrf]').value = 'forged'")
    driver.find_element(By.ID, "key").send_keys(KEY)
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "expired" in driver.page_source
    open_page(driver, url + "/dashboard")
    assert driver.current_url.endswith("/dashboard/login")


def test_phone_sized_viewport(driver, site, backend):
    from selenium.webdriver.common.by import By

    url, hostile_id, _ = site
    driver.set_window_size(390, 844)
    try:
        log_in(driver, url)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, width  # nothing forces sideways scrolling of the page
        open_page(driver, url + "/dashboard/tasks/%d" % hostile_id)
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 400
        assert driver.find_element(By.CSS_SELECTOR, "pre.error-text").is_displayed()
        shot(driver, backend, "dashboard-phone", width=390)
    finally:
        driver.set_window_size(1100, 900)


def test_keys_in_the_browser(driver, site, backend):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, _, _ = site
    log_in(driver, url)
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Keys"))
    driver.find_element(By.NAME, "name").send_keys("gpu-box-1")
    Select(driver.find_element(By.NAME, "role")).select_by_value("worker")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form.settings button"))
    key = driver.find_element(By.ID, "new-key").text
    assert key.startswith("tqk_")
    shot(driver, backend, "dashboard-keys")
    open_page(driver, url + "/dashboard/keys")
    assert key not in driver.page_source and "gpu-box-1" in driver.page_source
    confirm_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "button.cancel"))
    assert "Key revoked" in driver.find_element(By.CSS_SELECTOR, ".notice").text
    assert "No keys in the database yet." in driver.page_source


def test_every_action_in_the_browser(driver, site, backend):
    """Filters and sort, requeue, re-run, a forged CSRF token, a group retry, type edits,
    schedules, and an expired session, each through the page a person would use."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, hostile_id, config = site
    log_in(driver, url)

    def notice():
        return driver.find_element(By.CSS_SELECTOR, ".notice").text

    def status_of(task_id):
        return call(url, "/tasks/%d" % task_id)["data"]["status"]

    # the tasks page: text in the error (any case), age and an order, kept across pages
    open_page(driver, url + "/dashboard/tasks")
    driver.find_element(By.NAME, "error").send_keys("RATE LIMIT")
    driver.find_element(By.NAME, "newer").send_keys("1h")
    Select(driver.find_element(By.NAME, "sort")).select_by_visible_text("Most attempts first")
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "form.filters button"))
    rows = driver.find_elements(By.CSS_SELECTOR, "table.tasks tbody tr")
    assert len(rows) == 1 and rows[0].find_element(By.TAG_NAME, "a").text == str(hostile_id)
    assert "whose error contains “RATE LIMIT”" in driver.page_source
    assert driver.find_element(By.NAME, "newer").get_attribute("value") == "1h"
    open_page(driver, url + "/dashboard/tasks?older=1h")
    assert "0 task(s)" in driver.page_source and "No task matches." in driver.page_source
    open_page(driver, url + "/dashboard/tasks?status=pending&sort=oldest")
    ids = [int(a.text) for a in driver.find_elements(By.CSS_SELECTOR, "table.tasks tbody td:nth-child(2) a")]
    assert ids == sorted(ids) and len(ids) == 50
    shot(driver, backend, "dashboard-tasks")

    # requeue the task laptop-7 holds
    open_page(driver, url + "/dashboard/tasks?status=claimed")
    held = int(driver.find_element(By.CSS_SELECTOR, "table.tasks tbody td:nth-child(2) a").text)
    open_page(driver, url + "/dashboard/tasks/%d" % held)
    confirm_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "button.requeue"))
    assert "returned to the queue" in notice() and status_of(held) == "pending"

    # re-run a completed task
    done = call(url, "/tasks/claim", {"worker_id": "w9"})["data"]["id"]
    call(url, "/tasks/%d/complete" % done, {"worker_id": "w9", "success": True, "result": {"ok": 1}})
    open_page(driver, url + "/dashboard/tasks/%d" % done)
    confirm_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "button.rerun"))
    assert "queued to run again" in notice() and status_of(done) == "pending"

    # a forged CSRF token changes nothing
    driver.execute_script("document.querySelectorAll('input[name=csrf]')"
                          ".forEach(function (i) { i.value = 'forged'; })")
    confirm_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "button.cancel"))
    assert "CSRF" in driver.find_element(By.CSS_SELECTOR, "main").text
    assert status_of(done) == "pending"
    open_page(driver, url + "/dashboard/tasks/%d" % done)  # with the page's own token it works
    confirm_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "button.cancel"))
    assert "Task cancelled." in notice() and status_of(done) == "cancelled"

    # the failed page retries a group
    open_page(driver, url + "/dashboard/failed")
    confirm_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "td form button"))
    assert "1 task(s) changed" in notice() and status_of(hostile_id) == "pending"

    # types: deactivate and activate again, pause and resume, edit settings
    open_page(driver, url + "/dashboard/types")
    confirm_and_wait(driver, driver.find_element(
        By.CSS_SELECTOR, "form[action$='/types/report.build/deactivate'] button"))
    assert "Type inactive" in notice()
    assert call(url, "/task-types/report.build")["data"]["is_active"] is False
    click_and_wait(driver, driver.find_element(
        By.CSS_SELECTOR, "form[action$='/types/report.build/activate'] button"))
    assert call(url, "/task-types/report.build")["data"]["is_active"] is True
    click_and_wait(driver, driver.find_element(
        By.CSS_SELECTOR, "form[action$='/types/mail.send/pause'] button"))
    click_and_wait(driver, driver.find_element(
        By.CSS_SELECTOR, "form[action$='/types/mail.send/resume'] button"))
    assert "Type resumed" in notice()
    assert call(url, "/task-types/mail.send")["data"]["is_paused"] is False
    driver.find_element(By.XPATH, "//summary[text()='Edit settings of mail.send']").click()
    form = driver.find_element(By.CSS_SELECTOR, "form[action$='/types/mail.send/settings']")
    for name, value in (("max_attempts", "7"), ("max_concurrency", "2"), ("claim_timeout", "120")):
        field = form.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)
    click_and_wait(driver, form.find_element(By.CSS_SELECTOR, "button"))
    assert "Settings saved" in notice()
    saved = call(url, "/task-types/mail.send")["data"]
    assert (saved["max_attempts"], saved["max_concurrency"], saved["claim_timeout"]) == (7, 2, 120)

    # schedules: next run, pause, resume, delete; the hostile params are text
    click_and_wait(driver, driver.find_element(By.LINK_TEXT, "Schedules"))
    assert no_alert(driver) and not driver.find_elements(By.CSS_SELECTOR, "main img")
    rows = driver.find_elements(By.CSS_SELECTOR, "table.schedules tbody tr[id]")
    assert [r.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text for r in rows] == [
        "nightly-digest", "unnamed"]
    assert "0 3 * * * (UTC)" in rows[0].text and "every 90 min" in rows[1].text
    assert rows[1].find_element(By.CSS_SELECTOR, "td.next").text.endswith("in 1 h")
    driver.find_element(By.XPATH, "//summary[contains(., 'schedule')]").click()
    shot(driver, backend, "dashboard-schedules")
    first = rows[0].get_attribute("id").split("-")[1]
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "#schedule-%s form[action$='/pause'] button" % first))
    assert "Schedule paused" in notice()
    assert call(url, "/schedules/%s" % first)["data"]["paused"] is True
    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "#schedule-%s form[action$='/resume'] button" % first))
    assert call(url, "/schedules/%s" % first)["data"]["paused"] is False
    confirm_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "#schedule-%s button.cancel" % first))
    assert "Schedule deleted" in notice()
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.schedules tbody tr[id]")) == 1

    # an expired session: the next page asks to log in again
    db_execute(config, "UPDATE dashboard_sessions SET expires_at = created_at")
    open_page(driver, url + "/dashboard/types")
    assert driver.current_url.endswith("/dashboard/login")
