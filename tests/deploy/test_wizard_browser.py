"""The install wizard in a real headless Chromium, served as CGI by a real Apache.

The site is the upload bundle built by tools/bundle.py (PyMySQL and
jsonschema vendored under lib/), unzipped into the document root and run by
a bare Python without site-packages, as the web user. Each wizard page is saved as a
screenshot: under docs/img/ (the README's deployment section shows them)
when TASKQ_UPDATE_SCREENSHOTS=1, else in a temporary folder, so that running
the suite leaves the committed pictures alone.
"""

import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import IN_CI, ROOT, mysql_connect, mysql_params
from support.apache import (ApacheUnavailable, available, cgi_python_env, make_docroot,
                            prepare_docroot, run_user, start_apache)
from support.browser import chromium_session, click_and_wait
from support.browser import screenshot as _screenshot
from support.bundles import built_bundle, bundle_tool

# `browser` follows from the file's name (tests/conftest.py); the wizard is also served by
# Apache and installs onto MariaDB
pytestmark = [pytest.mark.apache, pytest.mark.mysql]

IMG = (os.path.join(ROOT, "docs", "img") if os.environ.get("TASKQ_UPDATE_SCREENSHOTS") == "1"
       else tempfile.mkdtemp(prefix="taskq-screenshots-"))


def screenshot(driver, name):
    _screenshot(driver, IMG, name)


def unavailable(reason):
    if IN_CI:
        pytest.fail("required in CI: %s" % reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A running Apache serving the taskq folder at /taskq/; yields (base_url, folder)."""
    reason = available()
    if reason:
        unavailable(reason)
    zip_path = built_bundle()
    docroot = make_docroot()
    workdir = tempfile.mkdtemp(prefix="taskq-wizard-py-")
    folder = os.path.join(docroot, "taskq")
    unpack = tempfile.mkdtemp(prefix="taskq-unzip-")
    try:
        shutil.move(bundle_tool().extract(zip_path, unpack), folder)
    finally:
        shutil.rmtree(unpack, ignore_errors=True)
    prepare_docroot(docroot)
    try:
        server = start_apache(docroot, env=cgi_python_env(workdir))
    except ApacheUnavailable as exc:
        unavailable(str(exc))
    try:
        yield server.base_url + "/taskq", folder
    finally:
        log = server.error_log()
        server.stop()
        shutil.rmtree(docroot, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        if "Traceback" in log:
            print(log)


@pytest.fixture
def fresh_site(site):
    """The site as just uploaded: no config.ini."""
    url, folder = site
    for name in os.listdir(folder):
        if name == "config.ini" or name.startswith(".taskq-install-secret"):
            os.unlink(os.path.join(folder, name))
    return url, folder


@pytest.fixture(scope="module")
def browser():
    yield from chromium_session()


@pytest.fixture
def empty_database():
    try:
        admin = mysql_connect()
    except Exception as exc:  # noqa: BLE001
        unavailable("MariaDB not reachable: %s" % exc)
    name = "taskq_wiz_%s" % uuid.uuid4().hex[:12]
    with admin.cursor() as cur:
        cur.execute("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % name)
    yield name
    with admin.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS %s" % name)
    admin.close()


def fill_mysql_form(driver, database, password):
    from selenium.webdriver.common.by import By

    p = mysql_params()
    driver.find_element(By.ID, "backend_mysql").click()
    for field, value in (("host", p["host"]), ("port", str(p["port"])), ("name", database),
                         ("user", p["user"]), ("password", password)):
        element = driver.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)


def submit(driver):
    from selenium.webdriver.common.by import By

    click_and_wait(driver, driver.find_element(By.CSS_SELECTOR, "button[type=submit]"))


def api_get(url, key=None):
    request = urllib.request.Request(url, headers={"X-API-Key": key} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def wrong_password():
    return "wrong-" + (mysql_params()["password"] or "password")


def test_fresh_install_against_mariadb_through_the_browser(browser, fresh_site, empty_database):
    from selenium.webdriver.common.by import By

    url, folder = fresh_site
    browser.get(url + "/install.py")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Check the host"
    assert "Fix" not in [td.text for td in browser.find_elements(By.CSS_SELECTOR, "td.bad")]
    assert "bundled in lib/" in browser.page_source
    screenshot(browser, "wizard-1-checks")

    click_and_wait(browser, browser.find_element(By.LINK_TEXT, "Continue to the database"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Database"
    fill_mysql_form(browser, empty_database, mysql_params()["password"])
    screenshot(browser, "wizard-2-database")
    submit(browser)

    assert browser.find_element(By.TAG_NAME, "h1").text == "Done", browser.page_source
    key = browser.find_element(By.ID, "api-key").text
    api_url = browser.find_element(By.ID, "api-url").text
    assert api_url == url + "/api/"
    assert "X-API-Key: %s" % key in browser.page_source
    screenshot(browser, "wizard-3-done")

    config_path = os.path.join(folder, "config.ini")
    assert stat.S_IMODE(os.stat(config_path).st_mode) == 0o600
    assert os.stat(config_path).st_uid == run_user().pw_uid
    with open(config_path, encoding="utf-8") as handle:
        assert "api_key = %s" % key in handle.read()
    assert api_get(url + "/config.ini") == 403
    assert api_get(url + "/.taskq-install-secret") == 403

    # the API answers with the shown key, through both URL forms
    click_and_wait(browser, browser.find_element(By.ID, "health-link"))
    assert '"success":true' in browser.page_source.replace(" ", "")
    assert api_get(api_url + "task-types", key) == 200
    assert api_get(url + "/cgi-bin/api.py/task-types", key) == 200
    assert api_get(api_url + "task-types") == 401
    conn = mysql_connect(empty_database)
    with conn.cursor() as cur:
        cur.execute("SELECT MAX(version) FROM taskq_schema_version")
        assert cur.fetchone()[0] >= 1
    conn.close()


def test_wrong_password_shows_plain_words_error_and_writes_nothing(browser, fresh_site, empty_database):
    from selenium.webdriver.common.by import By

    url, folder = fresh_site
    browser.get(url + "/install.py?step=database")
    fill_mysql_form(browser, empty_database, wrong_password())
    submit(browser)

    alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    assert alert.startswith("Access denied") and "password" in alert
    assert browser.find_element(By.ID, "password").get_attribute("value") == ""
    assert browser.find_element(By.ID, "name").get_attribute("value") == empty_database
    screenshot(browser, "wizard-error")
    assert not os.path.exists(os.path.join(folder, "config.ini"))


def test_installed_wizard_is_locked_without_the_current_key(browser, fresh_site, empty_database):
    from selenium.webdriver.common.by import By

    url, folder = fresh_site
    browser.get(url + "/install.py?step=database")
    fill_mysql_form(browser, empty_database, mysql_params()["password"])
    submit(browser)
    key = browser.find_element(By.ID, "api-key").text
    config_path = os.path.join(folder, "config.ini")
    with open(config_path, encoding="utf-8") as handle:
        installed = handle.read()

    for page in ("/install.py", "/install.py?step=database"):
        browser.get(url + page)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Installer locked"
        assert not browser.find_elements(By.ID, "host")
        assert key not in browser.page_source
    screenshot(browser, "wizard-locked")

    browser.find_element(By.ID, "current_key").send_keys("not-the-key")
    submit(browser)
    assert "not the current API key" in browser.find_element(By.CSS_SELECTOR, "[role=alert]").text
    with open(config_path, encoding="utf-8") as handle:
        assert handle.read() == installed

    browser.find_element(By.ID, "current_key").send_keys(key)
    click_and_wait(browser, browser.find_element(By.ID, "upgrade"))
    assert "up to date" in browser.find_element(By.CSS_SELECTOR, "[role=status]").text

    browser.find_element(By.ID, "current_key").send_keys(key)
    click_and_wait(browser, browser.find_element(By.ID, "unlock"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Database"
    assert browser.find_element(By.ID, "name").get_attribute("value") == empty_database


def test_fresh_sqlite_install_through_the_browser_needs_no_database_setup(browser, fresh_site):
    from selenium.webdriver.common.by import By

    url, folder = fresh_site
    browser.get(url + "/install.py?step=database")
    browser.find_element(By.ID, "backend_sqlite").click()
    submit(browser)

    assert browser.find_element(By.TAG_NAME, "h1").text == "Done", browser.page_source
    key = browser.find_element(By.ID, "api-key").text
    assert api_get(url + "/api/task-types", key) == 200
    assert api_get(url + "/api/task-types") == 401
    assert os.path.exists(os.path.join(folder, "data", "taskq.sqlite3"))
    assert api_get(url + "/data/taskq.sqlite3") in (403, 404)
