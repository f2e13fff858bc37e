"""The dashboard's pages and login, through the WSGI app, on SQLite and MariaDB.

The browser suite (tests/deploy/test_dashboard_browser.py) clicks through the same pages
in Chromium; this one pins the rules a browser cannot see: cookie flags,
CSRF refusals, the login throttle, expired sessions, escaping, CSP.
"""

import io
import re
from urllib.parse import urlencode

import pytest

from conftest import db_execute
from taskq.app import Application
from taskq.templates import TemplateError, escape, parse, render_string

KEY = "k" * 43
XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


class Browser:
    """A cookie-keeping client of the WSGI app that reads HTML, as a browser would."""

    def __init__(self, app, address="127.0.0.1", https=False):
        self.app = app
        self.cookies = {}
        self.address = address
        self.https = https

    def request(self, method, path, form=None, query="", env=None):
        raw = urlencode(form).encode("utf-8") if form is not None else b""
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                   "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw),
                   "CONTENT_TYPE": "application/x-www-form-urlencoded",
                   "REMOTE_ADDR": self.address, "SCRIPT_NAME": "/cgi-bin/api.py",
                   "REQUEST_URI": "/taskq" + path + ("?" + query if query else ""),
                   "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
                   "wsgi.url_scheme": "https" if self.https else "http"}
        environ.update(env or {})
        environ = {k: v for k, v in environ.items() if v is not None}  # None: a variable unset
        if self.cookies:
            environ["HTTP_COOKIE"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        captured = {}

        def start_response(status, headers, exc_info=None):
            captured["status"] = int(status.split()[0])
            captured["headers"] = headers

        body = b"".join(self.app(environ, start_response)).decode("utf-8")
        page = Page(captured["status"], captured["headers"], body)
        for cookie in page.all("Set-Cookie"):
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return page

    def get(self, path, query=""):
        return self.request("GET", path, query=query)

    def post(self, path, form):
        return self.request("POST", path, form=form)

    def login(self, key=KEY):
        form = self.get("/dashboard/login")
        return self.post("/dashboard/login", {"csrf": form.csrf(), "key": key})


class Page:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        values = self.all(name)
        return values[0] if values else None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def csrf(self):
        found = re.search(r'name="csrf" value="([^"]+)"', self.body)
        assert found, self.body[:500]
        return found.group(1)


@pytest.fixture
def app(config_factory):
    return Application(config=config_factory(api={"api_key": KEY}))


@pytest.fixture
def browser(app):
    return Browser(app)


def api_call(app, method, path, body=None, key=KEY):
    import json

    raw = json.dumps(body).encode() if body is not None else b""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
               "CONTENT_LENGTH": str(len(raw)), "CONTENT_TYPE": "application/json",
               "wsgi.input": io.BytesIO(raw), "HTTP_X_API_KEY": key}
    out = {}
    body = b"".join(app(environ, lambda s, h, e=None: out.update(status=s)))
    return int(out["status"].split()[0]), json.loads(body)


def seed(app, params=None):
    api_call(app, "POST", "/task-types/register",
             {"name": "mail.send", "version": "1", "param_schema": {"type": "object"}})
    status, answer = api_call(app, "POST", "/tasks", {"type": "mail.send",
                                                       "params": params or {"to": "a@b.c"}})
    assert status == 201, answer
    return answer["data"]["id"]


def add_schedule(app, **body):
    body = dict({"type": "mail.send", "params": {"to": "a@b.c"}, "every_seconds": 5400}, **body)
    status, answer = api_call(app, "POST", "/schedules", body)
    assert status == 201, answer
    return answer["data"]


def fail_task(app, error, params):
    status, answer = api_call(app, "POST", "/tasks", {"type": "mail.send", "params": params})
    task_id = answer["data"]["id"]
    claimed = api_call(app, "POST", "/tasks/claim", {"worker_id": "w", "sort_by": "id",
                                                      "sort_order": "DESC"})[1]["data"]
    assert claimed["id"] == task_id
    api_call(app, "POST", "/tasks/%d/complete" % task_id,
             {"worker_id": "w", "success": False, "error": error})
    return task_id


def listed_ids(page):
    return [int(n) for n in re.findall(r'<td><a href="[^"]*/dashboard/tasks/(\d+)">', page.body)]


# -- the template renderer -----------------------------------------------------
def test_template_escapes_every_value_by_default():
    out = render_string("<p title=\"{{ v }}\">{{ v }}</p>", v=XSS)
    assert "<script>" not in out and "<img" not in out
    assert "&lt;script&gt;" in out and "&quot;&gt;&lt;img" in out


def test_template_passes_rendered_markup_once_and_escapes_json():
    inner = render_string("<b>{{ v }}</b>", v="<i>")
    assert render_string("{{ x }}", x=inner) == "<b>&lt;i&gt;</b>"
    assert "&lt;/script&gt;" in render_string("{{ d | json }}", d={"k": "</script>"})


def test_template_blocks_nest_and_chain():
    text = ("{% for t in ts %}{% if t == 1 %}one{% elif t == 2 %}two{% else %}many{% endif %}"
            "{% if not loop.last %},{% endif %}{% else %}none{% endfor %}")
    assert render_string(text, ts=[1, 2, 3]) == "one,two,many"
    assert render_string(text, ts=[]) == "none"


@pytest.mark.parametrize("text", ["{% if x %}", "{% endif %}", "{% for x %}{% endfor %}",
                                  "{{ x | nosuch }}", "{% else %}", "{% frobnicate %}"])
def test_template_refuses_malformed_markup(text):
    with pytest.raises(TemplateError):
        parse(text)


def test_escape_handles_none_bools_and_quotes():
    assert escape(None) == "" and escape(True) == "true" and escape("'") == "&#x27;"


# -- login, sessions, CSRF -----------------------------------------------------
def test_pages_redirect_to_login_without_a_session(browser):
    page = browser.get("/dashboard/tasks")
    assert page.status == 303
    assert page.header("Location") == "/taskq/dashboard/login"


def test_login_with_the_admin_key_sets_a_strict_session_cookie(browser):
    page = browser.login()
    assert page.status == 303 and page.header("Location") == "/taskq/dashboard"
    cookie = [c for c in page.all("Set-Cookie") if c.startswith("taskq_session=")][0]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/taskq/dashboard", "Max-Age="):
        assert flag in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the HTTPS test
    assert KEY not in cookie
    overview = browser.get("/dashboard")
    assert overview.status == 200 and "Log out" in overview.body


def test_session_cookie_is_secure_over_https(app):
    page = Browser(app, https=True).login()
    cookie = [c for c in page.all("Set-Cookie") if c.startswith("taskq_session=")][0]
    assert "Secure" in cookie


def test_the_database_holds_only_a_hash_of_the_session_token(browser, app):
    browser.login()
    token = browser.cookies["taskq_session"]
    rows = db_execute(app.config, "SELECT token_hash, csrf_token FROM dashboard_sessions")
    assert len(rows) == 1
    assert rows[0][0] != token and token not in rows[0][0]
    assert KEY not in repr(rows)


def test_wrong_key_is_refused_and_counted(browser, app):
    page = browser.login("wrong-key")
    assert page.status == 401 and "not an admin key" in page.body
    assert "taskq_session" not in browser.cookies
    assert [tuple(r) for r in db_execute(app.config, "SELECT failures FROM login_failures")] == [(1,)]


def test_wrong_keys_past_the_limit_get_429_but_the_right_key_still_logs_in(app):
    guesser = Browser(app, address="203.0.113.9")  # behind one proxy address with the owner
    for _ in range(5):
        assert guesser.login("guess").status == 401
    refused = guesser.login("guess")
    assert refused.status == 429 and refused.header("Retry-After") == "900"
    assert "right key still logs in" in refused.body and refused.csrf()
    owner = Browser(app, address="203.0.113.9")
    page = owner.login(KEY)
    assert page.status == 303 and "taskq_session" in owner.cookies
    assert owner.get("/dashboard").status == 200
    assert guesser.login(KEY).status == 303  # even from the guessing browser itself
    assert Browser(app, address="203.0.113.9").login("guess").status == 429  # not reset
    assert Browser(app, address="198.51.100.7").login("guess").status == 401  # per address


def test_login_form_without_its_csrf_token_is_refused(browser):
    browser.get("/dashboard/login")
    page = browser.post("/dashboard/login", {"csrf": "forged", "key": KEY})
    assert page.status == 403
    assert "taskq_session" not in browser.cookies


def test_logout_needs_the_csrf_token_and_ends_the_session(browser, app):
    browser.login()
    overview = browser.get("/dashboard")
    assert browser.post("/dashboard/logout", {"csrf": "bad"}).status == 403
    assert browser.get("/dashboard").status == 200  # still logged in
    token = browser.cookies["taskq_session"]
    page = browser.post("/dashboard/logout", {"csrf": overview.csrf()})
    assert page.status == 303 and page.header("Location") == "/taskq/dashboard/login"
    assert db_execute(app.config, "SELECT COUNT(*) FROM dashboard_sessions")[0][0] == 0
    browser.cookies["taskq_session"] = token  # a copied cookie is dead, too
    assert browser.get("/dashboard").status == 303


def test_an_expired_session_must_log_in_again(browser, app):
    browser.login()
    db_execute(app.config, "UPDATE dashboard_sessions SET expires_at = created_at")
    page = browser.get("/dashboard/tasks")
    assert page.status == 303 and page.header("Location").endswith("/dashboard/login")


def test_changing_the_admin_key_ends_existing_sessions(browser):
    browser.login()
    assert browser.get("/dashboard").status == 200
    browser.app.config.api["api_key"] = "another-key-" + "x" * 30
    page = browser.get("/dashboard")
    assert page.status == 303 and page.header("Location").endswith("/dashboard/login")


def test_without_any_key_the_dashboard_is_read_only_and_says_how_to_set_one(config_factory):
    browser = Browser(Application(config=config_factory()))
    page = browser.get("/dashboard")
    assert page.status == 200
    assert "Read-only" in page.body and "api_key" in page.body
    assert "Log out" not in page.body
    assert browser.get("/dashboard/login").status == 303


# -- redirects stay on this site -------------------------------------------------
# (REQUEST_URI, what the Location must be): the request line is the client's text
CRAFTED_URIS = [
    ("//taskq/dashboard", "/taskq/dashboard/login"),
    ("/taskq//dashboard", "/taskq/dashboard/login"),
    ("///taskq/./dashboard/", "/taskq/dashboard/login"),
    ("/evil.example/../taskq/dashboard", "/taskq/dashboard/login"),
    ("/%2Fevil.example/../taskq/dashboard", "/cgi-bin/api.py/dashboard/login"),
    ("/%2fevil.example/taskq/dashboard", "/cgi-bin/api.py/dashboard/login"),
    ("/%5Cevil.example/taskq/dashboard", "/cgi-bin/api.py/dashboard/login"),
    ("/\\evil.example/taskq/dashboard", "/cgi-bin/api.py/dashboard/login"),
    ("//evil.example/dashboard", "/evil.example/dashboard/login"),  # a path here, not a host
    ("/http://evil.example/dashboard", "/http:/evil.example/dashboard/login"),
]


def stays_on_this_site(location):
    """A Location a browser resolves to this host: one leading slash, no scheme or host."""
    from urllib.parse import urljoin, urlsplit

    assert location.startswith("/") and location[1:2] not in ("/", "\\"), location
    assert "\\" not in location and "//" not in location, location
    assert urlsplit(location).scheme == "" and urlsplit(location).netloc == "", location
    assert urlsplit(urljoin("http://localhost/x/", location)).netloc == "localhost", location
    return True


@pytest.mark.parametrize("uri,want", CRAFTED_URIS)
def test_redirects_never_leave_the_site_whatever_the_request_uri(browser, uri, want):
    page = browser.request("GET", "/dashboard", env={"REQUEST_URI": uri})
    assert page.status == 303
    assert page.header("Location") == want and stays_on_this_site(want)


def test_login_redirect_and_cookie_path_stay_on_the_site_for_a_crafted_uri(browser):
    env = {"REQUEST_URI": "//taskq/dashboard/login"}
    form = browser.request("GET", "/dashboard/login", env=env)
    assert 'action="/taskq/dashboard/login"' in form.body
    assert 'href="/taskq/dashboard/static/dashboard.css"' in form.body
    page = browser.request("POST", "/dashboard/login", form={"csrf": form.csrf(), "key": KEY},
                           env=env)
    assert page.status == 303 and page.header("Location") == "/taskq/dashboard"
    for cookie in page.all("Set-Cookie"):
        assert "Path=/taskq/dashboard;" in cookie, cookie


@pytest.mark.parametrize("uri,script_name,want", [
    ("//taskq/dashboard", "/taskq/cgi-bin/api.py", "/taskq/dashboard/login"),
    ("/%2Fevil.example/../taskq/dashboard", "/taskq/cgi-bin/api.py",
     "/taskq/cgi-bin/api.py/dashboard/login"),
    ("/%2Fevil.example/../taskq/dashboard", "//evil.example/cgi-bin/api.py",
     "/evil.example/cgi-bin/api.py/dashboard/login"),
    ("/\\evil.example/dashboard", "/cgi-bin/api.py", "/cgi-bin/api.py/dashboard/login"),
])
def test_a_cgi_process_redirects_within_the_site_for_a_crafted_request_line(
        config_factory, uri, script_name, want):
    from cgi_runner import run_cgi

    config = config_factory(api={"api_key": KEY})
    response = run_cgi("GET", "/dashboard", config_path=config.path,
                       env={"REQUEST_URI": uri, "SCRIPT_NAME": script_name})
    assert response.status == 303, response
    assert response.headers["location"] == want and stays_on_this_site(want)


@pytest.mark.parametrize("env,path,want", [
    # mod_wsgi or Passenger at /taskq: the CGI install's /taskq/api/dashboard and the bare one
    ({"SCRIPT_NAME": "/taskq", "REQUEST_URI": "/taskq/api/dashboard"}, "/api/dashboard",
     "/taskq/api/dashboard"),
    ({"SCRIPT_NAME": "/taskq", "REQUEST_URI": "/taskq/dashboard"}, "/dashboard", "/taskq/dashboard"),
    # gunicorn at /, which sets no REQUEST_URI
    ({"SCRIPT_NAME": "", "REQUEST_URI": None}, "/api/dashboard", "/api/dashboard"),
])
def test_dashboard_links_keep_the_api_segment_a_wsgi_server_passed_on(browser, env, path, want):
    first = browser.request("GET", path, env=env)
    assert first.status == 303 and first.header("Location") == want + "/login"
    uri = env["REQUEST_URI"] and env["REQUEST_URI"] + "/login"
    form = browser.request("GET", path + "/login", env=dict(env, REQUEST_URI=uri))
    assert form.status == 200
    assert ('action="%s/login"' % want) in form.body
    assert ('href="%s/static/dashboard.css"' % want) in form.body


# -- error pages tell the truth ------------------------------------------------
NO_KEY_BANNER = "no API key is configured"


def test_error_pages_of_a_logged_in_session_show_the_navigation_and_no_read_only_banner(browser, app):
    seed(app)
    browser.login()
    missing = browser.get("/dashboard/tasks/999999")
    assert missing.status == 404 and "Task not found" in missing.body
    csrf = browser.get("/dashboard/types").csrf()
    bad = browser.post("/dashboard/types/mail.send/settings", {"csrf": csrf, "max_attempts": "x"})
    assert bad.status == 400
    forged = browser.post("/dashboard/tasks/bulk", {"csrf": "forged"})
    assert forged.status == 403
    for page in (missing, bad, forged):
        assert NO_KEY_BANNER not in page.body and "Read-only" not in page.body
        assert "Log out" in page.body and 'aria-label="Main"' in page.body


def test_error_pages_without_a_session_neither_nag_nor_claim_no_key(browser, app):
    task_id = seed(app)
    refused = browser.post("/dashboard/tasks/%d/cancel" % task_id, {"csrf": ""})
    assert refused.status == 403
    browser.get("/dashboard/login")
    expired = browser.post("/dashboard/login", {"csrf": "forged", "key": KEY})
    assert expired.status == 403
    for page in (refused, expired):
        assert NO_KEY_BANNER not in page.body and "Read-only" not in page.body
        assert "Log out" not in page.body and 'aria-label="Main"' not in page.body


def test_error_pages_say_no_key_is_configured_only_when_none_is(config_factory):
    browser = Browser(Application(config=config_factory()))
    page = browser.get("/dashboard/tasks/999999")
    assert page.status == 404 and NO_KEY_BANNER in page.body


# -- pages ---------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/tasks", "/dashboard/tasks/1",
                                  "/dashboard/failed", "/dashboard/types", "/dashboard/keys",
                                  "/dashboard/health", "/dashboard/schedules",
                                  "/dashboard/login"])
def test_every_page_sends_a_csp_without_inline_script(browser, app, path):
    task_id = seed(app)
    if path != "/dashboard/login":
        browser.login()
    page = browser.get(path.replace("/1", "/%d" % task_id))
    assert page.status == 200, page.body[:300]
    csp = page.header("Content-Security-Policy")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.header("X-Frame-Options") == "DENY"
    assert page.header("Content-Type") == "text/html; charset=utf-8"
    assert "<script>" not in page.body  # only <script src=...>
    assert KEY not in page.body


def test_user_values_are_shown_as_text_everywhere(browser, app):
    task_id = seed(app, params={"html": XSS})
    api_call(app, "POST", "/tasks/claim", {"worker_id": XSS})
    api_call(app, "POST", "/tasks/%d/complete" % task_id,
             {"worker_id": XSS, "success": False, "error": XSS})
    browser.login()
    for path in ("/dashboard", "/dashboard/tasks", "/dashboard/tasks/%d" % task_id):
        body = browser.get(path).body
        assert "<script>alert" not in body and "<img src=x" not in body, path
    detail = browser.get("/dashboard/tasks/%d" % task_id).body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail


def test_overview_counts_tasks_per_status_and_type(browser, app):
    seed(app)
    api_call(app, "POST", "/tasks", {"type": "mail.send", "params": {"to": "x@y.z"}})
    api_call(app, "POST", "/tasks/claim", {"worker_id": "worker-7"})
    browser.login()
    body = browser.get("/dashboard").body
    assert re.search(r"<span>1</span>pending", body)
    assert re.search(r"<span>1</span>claimed", body)
    assert "worker-7" in body and "mail.send" in body
    assert 'http-equiv="refresh"' in body


def test_tasks_page_filters_by_status_and_pages(browser, app):
    seed(app)
    for n in range(60):
        api_call(app, "POST", "/tasks", {"type": "mail.send", "params": {"n": n}})
    browser.login()
    first = browser.get("/dashboard/tasks", "status=pending")
    assert "61 task(s) with status pending" in first.body
    assert "page 1 of 2" in first.body and 'rel="next"' in first.body
    second = browser.get("/dashboard/tasks", "status=pending&page=2")
    assert second.body.count('class="status pending"') == 11
    assert browser.get("/dashboard/tasks", "status=bogus").status == 400


def test_task_page_shows_params_result_and_history(browser, app):
    task_id = seed(app, params={"to": "someone@example.org"})
    api_call(app, "POST", "/tasks/claim", {"worker_id": "w1"})
    api_call(app, "POST", "/tasks/%d/complete" % task_id,
             {"worker_id": "w1", "success": True, "result": {"sent": 3}})
    browser.login()
    body = browser.get("/dashboard/tasks/%d" % task_id).body
    assert "someone@example.org" in body and "&quot;sent&quot;: 3" in body
    assert body.index("created") < body.index("claimed") < body.rindex("completed")
    assert browser.get("/dashboard/tasks/999999").status == 404


def test_health_page_never_shows_secrets(browser, app):
    browser.login()
    body = browser.get("/dashboard/health").body
    assert "database.password" in body and "api.api_key" in body
    assert KEY not in body and "(set)" in body
    assert "Schema version" in body


def test_health_page_shows_the_retention_backlog_and_windows(config_factory):
    config = config_factory(api={"api_key": KEY}, retention={"completed_days": "12h"})
    app = Application(config=config)
    browser = Browser(app)
    for n in range(2):
        task_id = seed(app, params={"n": n})
        api_call(app, "POST", "/tasks/claim", {"worker_id": "w1"})
        api_call(app, "POST", "/tasks/%d/complete" % task_id, {"worker_id": "w1", "success": True})
    if config.backend == "sqlite":
        db_execute(config, "UPDATE tasks SET updated_at = updated_at - ?", (13 * 3600 * 1000,))
    else:
        db_execute(config, "UPDATE tasks SET updated_at = updated_at - INTERVAL 13 HOUR")
    browser.login()
    body = browser.get("/dashboard/health").body
    assert "Retention backlog" in body
    assert re.search(r"<code>tasks</code> 2</span>", body), body
    assert re.search(r"<code>retention.completed_days</code></th><td>12h<", body)
    assert re.search(r"<code>retention.failed_days</code></th><td>90d<", body)


def test_static_files_have_their_types_and_nothing_else_is_served(browser):
    css = browser.get("/dashboard/static/dashboard.css")
    assert css.status == 200 and css.header("Content-Type").startswith("text/css")
    assert browser.get("/dashboard/static/dashboard.js").header("Content-Type").startswith(
        "text/javascript")
    for name in ("..%2Fdashboard.py", "dashboard.py", ".htaccess", "nosuch.css"):
        assert browser.get("/dashboard/static/" + name).status == 404


# -- actions: the API's own handlers behind forms ------------------------------------
def task_status(app, task_id):
    return api_call(app, "GET", "/tasks/%d" % task_id)[1]["data"]["status"]


def test_task_page_cancels_and_retries_with_the_csrf_token(browser, app):
    task_id = seed(app)
    browser.login()
    page = browser.get("/dashboard/tasks/%d" % task_id)
    assert 'action="/taskq/dashboard/tasks/%d/cancel"' % task_id in page.body
    assert "/retry" not in page.body  # a pending task offers only what applies to it
    done = browser.post("/dashboard/tasks/%d/cancel" % task_id, {"csrf": page.csrf()})
    assert done.status == 303 and done.header("Location").endswith("?done=cancel")
    assert task_status(app, task_id) == "cancelled"
    page = browser.get("/dashboard/tasks/%d" % task_id, "done=cancel")
    assert "Task cancelled." in page.body
    browser.post("/dashboard/tasks/%d/retry" % task_id, {"csrf": page.csrf()})
    assert task_status(app, task_id) == "pending"
    events = [e["event"] for e in api_call(app, "GET", "/tasks/%d/history" % task_id)[1]["data"]["events"]]
    assert events[-2:] == ["cancelled", "retried"]


def test_requeue_and_rerun_from_the_task_page(browser, app):
    task_id = seed(app)
    api_call(app, "POST", "/tasks/claim", {"worker_id": "w1"})
    browser.login()
    csrf = browser.get("/dashboard/tasks/%d" % task_id).csrf()
    browser.post("/dashboard/tasks/%d/requeue" % task_id, {"csrf": csrf})
    assert task_status(app, task_id) == "pending"
    api_call(app, "POST", "/tasks/claim", {"worker_id": "w1"})
    api_call(app, "POST", "/tasks/%d/complete" % task_id, {"worker_id": "w1", "success": True})
    browser.post("/dashboard/tasks/%d/rerun" % task_id, {"csrf": csrf})
    assert task_status(app, task_id) == "pending"


def test_an_action_in_the_wrong_status_is_a_409_page_and_changes_nothing(browser, app):
    task_id = seed(app)
    browser.login()
    csrf = browser.get("/dashboard").csrf()
    page = browser.post("/dashboard/tasks/%d/rerun" % task_id, {"csrf": csrf})
    assert page.status == 409 and 'class="error"' in page.body
    assert task_status(app, task_id) == "pending"


@pytest.mark.parametrize("path", ["/dashboard/tasks/{id}/cancel", "/dashboard/tasks/bulk",
                                  "/dashboard/failed/retry", "/dashboard/types/mail.send/pause",
                                  "/dashboard/schedules/{schedule}/pause",
                                  "/dashboard/schedules/{schedule}/delete"])
def test_actions_refuse_a_bad_csrf_token_and_change_nothing(browser, app, path):
    task_id = seed(app)
    schedule = add_schedule(app)
    browser.login()
    path = path.replace("{schedule}", str(schedule["id"]))
    page = browser.post(path.replace("{id}", str(task_id)),
                        {"csrf": "forged", "ids": str(task_id), "action": "cancel", "error": "x"})
    assert page.status == 403 and "CSRF" in page.body
    assert task_status(app, task_id) == "pending"
    assert api_call(app, "GET", "/task-types/mail.send")[1]["data"]["is_paused"] is False
    assert api_call(app, "GET", "/schedules/%d" % schedule["id"])[1]["data"] == schedule


def test_actions_need_a_login(app):
    task_id = seed(app)
    page = Browser(app).post("/dashboard/tasks/%d/cancel" % task_id, {"csrf": ""})
    assert page.status == 403
    assert task_status(app, task_id) == "pending"


def test_read_only_dashboard_cannot_act(config_factory):
    app = Application(config=config_factory())
    task_id = seed(app)
    browser = Browser(app)
    assert "/cancel" not in browser.get("/dashboard/tasks/%d" % task_id).body
    assert browser.post("/dashboard/tasks/%d/cancel" % task_id, {"csrf": ""}).status == 403
    assert task_status(app, task_id) == "pending"


def test_bulk_cancel_of_the_selected_tasks(browser, app):
    first = seed(app)
    others = [api_call(app, "POST", "/tasks", {"type": "mail.send", "params": {"n": n}})[1]["data"]["id"]
              for n in range(3)]
    api_call(app, "POST", "/tasks/claim", {"worker_id": "w1"})  # first is claimed now
    browser.login()
    page = browser.get("/dashboard/tasks", "status=pending")
    result = browser.request("POST", "/dashboard/tasks/bulk", form=[
        ("csrf", page.csrf()), ("action", "cancel"), ("back", "?status=pending"),
        ("ids", str(others[0])), ("ids", str(others[1]))])
    assert result.status == 303
    assert result.header("Location").endswith("?status=pending&done=bulk&changed=2&skipped=0")
    assert [task_status(app, i) for i in others] == ["cancelled", "cancelled", "pending"]
    assert task_status(app, first) == "claimed"
    assert "2 task(s) changed, 0 skipped" in browser.get(
        "/dashboard/tasks", "status=pending&done=bulk&changed=2&skipped=0").body


def test_failed_page_groups_errors_and_retries_a_group(browser, app):
    api_call(app, "POST", "/task-types/register", {"name": "api.call", "version": "1",
                                                   "param_schema": {}, "max_attempts": 1})
    ids = [api_call(app, "POST", "/tasks", {"type": "api.call", "params": {"n": n}})[1]["data"]["id"]
           for n in range(5)]
    for n, task_id in enumerate(ids):
        claimed = api_call(app, "POST", "/tasks/claim", {"worker_id": "w"})[1]["data"]
        api_call(app, "POST", "/tasks/%d/complete" % claimed["id"], {
            "worker_id": "w", "success": False,
            "error": "API rate limit exceeded" if n < 3 else "Timeout <b>"})
    browser.login()
    page = browser.get("/dashboard/failed")
    assert page.body.index("API rate limit exceeded") < page.body.index("Timeout &lt;b&gt;")
    assert re.search(r'class="num">3</td>', page.body) and re.search(r'class="num">2</td>', page.body)
    done = browser.post("/dashboard/failed/retry", {"csrf": page.csrf(),
                                                    "error": "API rate limit exceeded"})
    assert done.header("Location").endswith("/failed?done=bulk&changed=3&skipped=0")
    statuses = sorted(task_status(app, i) for i in ids)
    assert statuses == ["failed", "failed", "pending", "pending", "pending"]


def test_types_page_pauses_resumes_and_edits_settings(browser, app):
    seed(app)
    browser.login()
    page = browser.get("/dashboard/types")
    csrf = page.csrf()
    assert browser.post("/dashboard/types/mail.send/pause", {"csrf": csrf}).status == 303
    assert api_call(app, "GET", "/task-types/mail.send")[1]["data"]["is_paused"] is True
    assert api_call(app, "POST", "/tasks/claim", {"worker_id": "w"})[0] == 404
    assert "paused" in browser.get("/dashboard/types", "done=paused").body
    browser.post("/dashboard/types/mail.send/resume", {"csrf": csrf})
    browser.post("/dashboard/types/mail.send/settings", {
        "csrf": csrf, "max_attempts": "7", "claim_timeout": "120", "max_concurrency": "2",
        "dedupe_scope": "active"})
    data = api_call(app, "GET", "/task-types/mail.send")[1]["data"]
    assert (data["is_paused"], data["max_attempts"], data["claim_timeout"], data["max_concurrency"],
            data["dedupe_scope"]) == (False, 7, 120, 2, "active")
    assert data["param_schema"] == {"type": "object"} and data["version"] == "1"
    browser.post("/dashboard/types/mail.send/deactivate", {"csrf": csrf})
    assert api_call(app, "POST", "/tasks", {"type": "mail.send", "params": {"x": 1}})[0] == 400
    browser.post("/dashboard/types/mail.send/activate", {"csrf": csrf})
    assert api_call(app, "POST", "/tasks", {"type": "mail.send", "params": {"x": 1}})[0] == 201


def test_a_bad_setting_is_a_400_page_naming_the_field(browser, app):
    seed(app)
    browser.login()
    csrf = browser.get("/dashboard/types").csrf()
    page = browser.post("/dashboard/types/mail.send/settings", {"csrf": csrf, "max_attempts": "0"})
    assert page.status == 400 and "max_attempts" in page.body
    page = browser.post("/dashboard/types/mail.send/settings", {"csrf": csrf, "max_attempts": "x"})
    assert page.status == 400 and "max_attempts" in page.body
    assert api_call(app, "GET", "/task-types/mail.send")[1]["data"]["max_attempts"] is None


# -- keys from the database ------------------------------------------------------
def make_key(app, name, role):
    status, answer = api_call(app, "POST", "/admin/keys", {"name": name, "role": role})
    assert status == 201, answer
    return answer["data"]["key"]


def test_an_admin_key_from_the_database_logs_in_and_revoking_it_ends_the_session(browser, app):
    admin = make_key(app, "ops-admin", "admin")
    assert browser.login(admin).status == 303
    assert browser.get("/dashboard").status == 200
    api_call(app, "DELETE", "/admin/keys/ops-admin")
    page = browser.get("/dashboard")
    assert page.status == 303 and page.header("Location").endswith("/dashboard/login")


def test_keys_of_other_roles_cannot_log_in(browser, app):
    for role in ("worker", "producer", "read-only"):
        page = browser.login(make_key(app, "k-" + role, role))
        assert page.status == 401 and "not an admin key" in page.body
    assert "taskq_session" not in browser.cookies


def test_hourly_chart_scales_bars_to_the_tallest_hour_and_keeps_24_slots():
    from taskq.dashboard import hourly_chart

    chart = hourly_chart(1000, [(1000, "completed", 10), (1000, "failed", 5), (999, "retry", 1),
                                (990, "completed", 4), (900, "completed", 99)])
    bars = chart["bars"]
    assert len(bars) == 24 and chart["tallest"] == 10
    assert (bars[-1]["completed"], bars[-1]["failed"]) == (10, 5)
    assert bars[-1]["h_done"] == 130.0 and bars[-1]["y_done"] == 10.0
    assert bars[-2]["failed"] == 1 and bars[-11]["completed"] == 4
    assert chart["total_done"] == 14  # hour 900 is outside the day
    empty = hourly_chart(5, [])
    assert empty["tallest"] == 1 and all(b["h_done"] == 0 for b in empty["bars"])


def test_overview_shows_the_last_hour_in_its_chart(browser, app):
    task_id = seed(app)
    api_call(app, "POST", "/tasks/claim", {"worker_id": "w1"})
    api_call(app, "POST", "/tasks/%d/complete" % task_id, {"worker_id": "w1", "success": True})
    browser.login()
    body = browser.get("/dashboard").body
    assert "1 completed and 0 failed attempts in the last 24 hours" in body
    assert "Last hour: 1 completed, 0 failed" in body


def test_keys_page_creates_a_key_once_and_revokes_it(browser, app):
    browser.login()
    page = browser.get("/dashboard/keys")
    assert "No keys in the database yet." in page.body
    created = browser.post("/dashboard/keys", {"csrf": page.csrf(), "name": "gpu-1",
                                               "role": "worker"})
    assert created.status == 201
    key = re.search(r'id="new-key">([^<]+)<', created.body).group(1)
    assert key.startswith("tqk_")
    listing = browser.get("/dashboard/keys").body
    assert "gpu-1" in listing and key not in listing  # shown once, never again
    assert [tuple(r)[0] for r in db_execute(app.config, "SELECT name FROM api_keys")] == ["gpu-1"]
    assert key not in repr(db_execute(app.config, "SELECT * FROM api_keys"))
    status, _ = api_call(app, "POST", "/tasks/claim", {"worker_id": "w"}, key=key)
    assert status == 404  # the worker key works: nothing to claim
    done = browser.post("/dashboard/keys/gpu-1/revoke", {"csrf": page.csrf()})
    assert done.status == 303
    assert api_call(app, "POST", "/tasks/claim", {"worker_id": "w"}, key=key)[0] == 401


def test_a_bad_key_request_is_a_400_page_and_creates_nothing(browser, app):
    browser.login()
    csrf = browser.get("/dashboard/keys").csrf()
    page = browser.post("/dashboard/keys", {"csrf": csrf, "name": "x", "role": "superuser"})
    assert page.status == 400 and "role" in page.body
    assert db_execute(app.config, "SELECT COUNT(*) FROM api_keys")[0][0] == 0


# -- the tasks page's filters and orders ---------------------------------------
def test_tasks_page_filters_by_text_in_the_error_and_keeps_it_in_links(browser, app):
    api_call(app, "POST", "/task-types/register", {"name": "mail.send", "version": "1",
                                                   "param_schema": {}, "max_attempts": 1})
    timeouts = [fail_task(app, "SMTP timeout <after> 30 s", {"n": n}) for n in range(52)]
    refused = fail_task(app, "Connection refused", {"n": 99})
    browser.login()
    page = browser.get("/dashboard/tasks", "error=smtp+TIMEOUT")
    assert "52 task(s) whose error contains “smtp TIMEOUT”" in page.body
    assert refused not in listed_ids(page) and listed_ids(page) == sorted(timeouts, reverse=True)[:50]
    assert 'name="error" value="smtp TIMEOUT"' in page.body
    assert "SMTP timeout &lt;after&gt; 30 s" in page.body
    following = re.search(r'href="[^"]*/dashboard/tasks(\?[^"]+)" rel="next"', page.body).group(1)
    assert "error=smtp+TIMEOUT" in following.replace("&amp;", "&")
    second = browser.get("/dashboard/tasks", following.replace("&amp;", "&")[1:])
    assert listed_ids(second) == sorted(timeouts, reverse=True)[50:]


def test_tasks_page_filters_by_age(browser, app):
    old_id, new_id = seed(app), seed(app, params={"n": 2})
    config = app.config
    past = 1000 if config.backend == "sqlite" else "2001-01-01 00:00:00"
    db_execute(config, "UPDATE tasks SET created_at = ? WHERE id = ?", (past, old_id))
    browser.login()
    assert listed_ids(browser.get("/dashboard/tasks", "older=2h")) == [old_id]
    assert listed_ids(browser.get("/dashboard/tasks", "newer=1d")) == [new_id]
    assert listed_ids(browser.get("/dashboard/tasks", "older=90+min")) == [old_id]
    assert listed_ids(browser.get("/dashboard/tasks", "older=1h&newer=1w")) == []
    bad = browser.get("/dashboard/tasks", "older=yesterday")
    assert bad.status == 400 and "duration" in bad.body


def test_tasks_page_sorts_and_refuses_an_unknown_order(browser, app):
    first = seed(app)  # priority 0
    ids = [api_call(app, "POST", "/tasks", {"type": "mail.send", "params": {"n": n}, "priority": p})
           [1]["data"]["id"] for n, p in enumerate([3, 7, 1])]
    browser.login()
    by_priority = browser.get("/dashboard/tasks", "sort=priority")
    assert listed_ids(by_priority)[:3] == [ids[1], ids[0], ids[2]]
    assert '<option value="priority" selected>' in by_priority.body
    assert listed_ids(browser.get("/dashboard/tasks", "sort=oldest"))[1:] == ids
    assert listed_ids(browser.get("/dashboard/tasks", "sort=priority-low")) == [first, ids[2], ids[0], ids[1]]
    assert browser.get("/dashboard/tasks", "sort=type;DROP").status == 400


def test_bulk_returns_to_the_filters_and_nothing_else(browser, app):
    task_id = seed(app)
    browser.login()
    csrf = browser.get("/dashboard/tasks").csrf()
    result = browser.request("POST", "/dashboard/tasks/bulk", form=[
        ("csrf", csrf), ("action", "cancel"), ("ids", str(task_id)),
        ("back", "?error=a b&sort=priority&evil=1\r\nSet-Cookie: x=y")])
    location = result.header("Location")
    assert result.status == 303 and "\n" not in location and "evil" not in location
    assert location.endswith("/dashboard/tasks?error=a+b&sort=priority&done=bulk&changed=1&skipped=0")
    result = browser.request("POST", "/dashboard/tasks/bulk", form=[
        ("csrf", csrf), ("action", "cancel"), ("ids", str(task_id)), ("back", "//evil.example/")])
    assert "/dashboard/tasks?done=bulk" in result.header("Location")


# -- schedules -----------------------------------------------------------------
def test_schedules_page_lists_rule_next_run_and_params_as_text(browser, app):
    seed(app)
    every = add_schedule(app, name="hourly-and-a-half", params={"html": XSS})
    nightly = add_schedule(app, every_seconds=None, cron="0 3 * * *", timezone="UTC", catch_up="all")
    browser.login()
    page = browser.get("/dashboard/schedules")
    assert page.status == 200
    assert "hourly-and-a-half" in page.body and "every 90 min" in page.body
    assert "<code>0 3 * * *</code> (UTC)" in page.body and "catches up every missed run" in page.body
    for schedule in (every, nightly):
        assert '<time datetime="%s">' % schedule["next_run_at"] in page.body
    assert "in 1 h" in page.body  # 90 minutes from now
    assert "<script>alert" not in page.body and "&lt;script&gt;alert(1)" in page.body
    assert "2 schedule(s)" in page.body


def test_schedules_page_pauses_resumes_and_deletes(browser, app):
    seed(app)
    schedule = add_schedule(app)
    browser.login()
    csrf = browser.get("/dashboard/schedules").csrf()
    base = "/dashboard/schedules/%d/" % schedule["id"]
    paused = browser.post(base + "pause", {"csrf": csrf})
    assert paused.status == 303 and paused.header("Location").endswith("?done=schedule-paused")
    assert api_call(app, "GET", "/schedules/%d" % schedule["id"])[1]["data"]["paused"] is True
    page = browser.get("/dashboard/schedules", "done=schedule-paused")
    assert "Schedule paused" in page.body and base + "resume" in page.body
    assert browser.post(base + "resume", {"csrf": csrf}).status == 303
    assert api_call(app, "GET", "/schedules/%d" % schedule["id"])[1]["data"]["paused"] is False
    assert browser.post(base + "delete", {"csrf": csrf}).status == 303
    assert api_call(app, "GET", "/schedules/%d" % schedule["id"])[0] == 404
    assert "No schedules yet" in browser.get("/dashboard/schedules").body
    assert browser.post(base + "delete", {"csrf": csrf}).status == 404
    assert browser.post(base + "explode", {"csrf": csrf}).status == 404


def test_schedule_actions_need_a_login(app):
    seed(app)
    schedule = add_schedule(app)
    assert Browser(app).post("/dashboard/schedules/%d/delete" % schedule["id"], {"csrf": ""}).status == 403
    assert api_call(app, "GET", "/schedules/%d" % schedule["id"])[0] == 200


def test_overview_shows_workers_that_finished_lately_as_idle(browser, app):
    for n in range(3):
        seed(app, params={"n": n})
    for worker in ("gpu-1", "gpu-1", "old-box"):
        claimed = api_call(app, "POST", "/tasks/claim", {"worker_id": worker})[1]["data"]
        api_call(app, "POST", "/tasks/%d/complete" % claimed["id"], {"worker_id": worker, "success": True})
        last = claimed["id"]
    config = app.config
    past = 1000 if config.backend == "sqlite" else "2001-01-01 00:00:00"
    db_execute(config, "UPDATE tasks SET updated_at = ? WHERE id = ?", (past, last))
    api_call(app, "POST", "/tasks", {"type": "mail.send", "params": {"n": 9}})
    api_call(app, "POST", "/tasks/claim", {"worker_id": "laptop"})
    browser.login()
    body = browser.get("/dashboard").body
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>\s*<td>(.*?)</td>\s*<td class="num">(\d+)</td>',
                      body, re.S)
    assert sorted((w, "idle" in tasks, int(n)) for w, tasks, n in rows) == [
        ("gpu-1", True, 2), ("laptop", False, 0)]
    assert "old-box" not in body


def test_seen_workers_merges_leases_and_finished_tasks_latest_first():
    from taskq.dashboard import seen_workers

    leases = [{"id": 5, "claimed_by": "a", "updated_at": "2026-01-01T10:00:00Z"},
              {"id": 6, "claimed_by": "a", "updated_at": "2026-01-01T10:05:00Z"}]
    finishers = [{"worker": "b", "last_at": "2026-01-01T10:07:00Z", "finished": 4},
                 {"worker": "a", "last_at": "2026-01-01T09:00:00Z", "finished": 1}]
    seen = seen_workers(leases, finishers)
    assert [(w["id"], [t["id"] for t in w["tasks"]], w["finished"], w["seen"]) for w in seen] == [
        ("b", [], 4, "2026-01-01T10:07:00Z"), ("a", [5, 6], 1, "2026-01-01T10:05:00Z")]
