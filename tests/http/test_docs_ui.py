"""GET /docs: the interactive API documentation served by the app itself from
vendored Swagger UI files, with no API key needed to open it."""

import os

import pytest

from conftest import ApiClient, make_config
from taskq import docs_ui
from taskq.app import Application

STATIC = os.path.join(os.path.dirname(docs_ui.__file__), "static")


@pytest.fixture
def keyed(tmp_path):
    return ApiClient(Application(config=make_config("sqlite", tmp_path, api={"api_key": "s3cret"})))


def test_docs_page_runs_only_its_own_script_is_never_framed_and_keeps_no_key(keyed):
    import base64
    import hashlib
    import re

    response = keyed.get("/docs")
    csp = response.header("Content-Security-Policy")
    assert "frame-ancestors 'none'" in csp and response.header("X-Frame-Options") == "DENY"
    assert "default-src 'none'" in csp and "unsafe-eval" not in csp
    html = response.raw.decode("utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode()
    assert "'sha256-%s'" % digest in csp  # the inline script is the one the policy allows
    assert "persistAuthorization: false" in html and "persistAuthorization: true" not in html


def test_json_answers_say_nosniff(keyed):
    for path in ("/health", "/tasks", "/nowhere"):
        assert keyed.get(path).header("X-Content-Type-Options") == "nosniff", path


def test_docs_page_opens_without_a_key_as_html(keyed):
    response = keyed.get("/docs")
    assert response.status == 200
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    assert response.header("Cache-Control") == "no-cache"
    html = response.raw.decode("utf-8")
    assert "swagger-ui-bundle.js" in html and "/openapi.json" in html
    assert "tryItOutEnabled: true" in html
    assert keyed.get("/docs/").raw == response.raw  # /api/docs/ reaches it with the slash
    assert keyed.get("/tasks").status == 401  # the key still guards the API


@pytest.mark.parametrize("name,content_type", [
    ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    ("swagger-ui.css", "text/css; charset=utf-8"),
    ("LICENSE", "text/plain; charset=utf-8")])
def test_assets_are_served_byte_for_byte_with_their_type_and_a_days_caching(keyed, name, content_type):
    response = keyed.get("/docs/swagger-ui/" + name)
    assert response.status == 200
    assert response.header("Content-Type") == content_type
    assert response.header("Cache-Control") == "public, max-age=86400"
    assert response.header("X-Content-Type-Options") == "nosniff"
    with open(os.path.join(STATIC, "swagger-ui", name), "rb") as handle:
        assert response.raw == handle.read()
    assert response.header("Content-Length") == str(len(response.raw))


def test_an_asset_revalidates_with_its_etag_as_304(keyed):
    first = keyed.get("/docs/swagger-ui/swagger-ui.css")
    etag = first.header("ETag")
    assert etag and docs_ui.SWAGGER_UI_VERSION in etag
    again = keyed.get("/docs/swagger-ui/swagger-ui.css", headers={"If-None-Match": etag})
    assert again.status == 304 and again.raw == b""
    other = keyed.get("/docs/swagger-ui/swagger-ui.css", headers={"If-None-Match": '"old"'})
    assert other.status == 200 and other.raw == first.raw


@pytest.mark.parametrize("name", ["index.html", "..%2F..%2Fapp.py", "..", "swagger-ui.js.map",
                                  "README.md"])
def test_only_the_listed_assets_are_served(keyed, name):
    response = keyed.get("/docs/swagger-ui/" + name)
    assert response.status == 404
    assert response.json["success"] is False


def test_head_of_the_docs_page_has_no_body(keyed):
    response = keyed.request("HEAD", "/docs")
    assert response.status == 200 and response.raw == b""


def test_vendored_files_are_the_named_release_and_carry_their_licence():
    with open(os.path.join(STATIC, "swagger-ui", "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert "swagger-ui-dist` **%s**" % docs_ui.SWAGGER_UI_VERSION in readme
    with open(os.path.join(STATIC, "swagger-ui", "swagger-ui-bundle.js"), "rb") as handle:
        assert docs_ui.SWAGGER_UI_VERSION.encode() in handle.read()
    with open(os.path.join(STATIC, "swagger-ui", "LICENSE"), encoding="utf-8") as handle:
        assert "Apache License" in handle.read()
    for name in docs_ui.ASSETS:
        assert os.path.isfile(os.path.join(STATIC, "swagger-ui", name)), name


@pytest.mark.parametrize("environ,want", [
    ({}, "/"),                                                          # the dev server
    ({"SCRIPT_NAME": "/cgi-bin/api.py"}, "/cgi-bin/api.py"),            # plain CGI
    ({"REQUEST_URI": "/api/openapi.json?x=1", "SCRIPT_NAME": "/cgi-bin/api.py"}, "/api"),
    ({"REQUEST_URI": "/~me/q/api/openapi.json"}, "/~me/q/api"),
    ({"REQUEST_URI": "/openapi.json"}, "/"),
    # a crafted request line never makes "Try it" send the key to another host
    ({"REQUEST_URI": "//evil.example/api/openapi.json"}, "/evil.example/api"),
    ({"REQUEST_URI": "/%2F%2Fevil.example/openapi.json", "SCRIPT_NAME": "/cgi-bin/api.py"},
     "/cgi-bin/api.py"),
    ({"REQUEST_URI": "/\\evil.example/openapi.json"}, "/")])
def test_openapi_servers_start_with_where_the_request_reached_the_api(environ, want):
    from taskq.handlers import base_url
    from taskq.openapi import document

    assert base_url(environ) == want
    servers = [entry["url"] for entry in document(base_url=base_url(environ))["servers"]]
    assert servers[0] == want and set(servers) >= {"/api", "/cgi-bin/api.py"}
    assert len(servers) == len(set(servers))


@pytest.mark.parametrize("environ,want", [
    # mod_wsgi / Passenger at /taskq (REQUEST_URI set), both URLs a client may have
    ({"SCRIPT_NAME": "/taskq", "PATH_INFO": "/api/openapi.json",
      "REQUEST_URI": "/taskq/api/openapi.json"}, "/taskq/api"),
    ({"SCRIPT_NAME": "/taskq", "PATH_INFO": "/openapi.json", "REQUEST_URI": "/taskq/openapi.json"},
     "/taskq"),
    ({"SCRIPT_NAME": "/taskq", "PATH_INFO": "/cgi-bin/api.py/openapi.json"},
     "/taskq/cgi-bin/api.py"),
    # gunicorn at / (no REQUEST_URI: SCRIPT_NAME is what is left)
    ({"SCRIPT_NAME": "", "PATH_INFO": "/api/openapi.json"}, "/api"),
    ({"SCRIPT_NAME": "", "PATH_INFO": "/openapi.json"}, "/"),
    # CGI at the root of a (sub)domain through docs/deploy.md's root .htaccess
    ({"SCRIPT_NAME": "/taskq/cgi-bin/api.py", "PATH_INFO": "/openapi.json",
      "REQUEST_URI": "/openapi.json"}, "/"),
    ({"SCRIPT_NAME": "/taskq/cgi-bin/api.py", "PATH_INFO": "/api/openapi.json",
      "REQUEST_URI": "/api/openapi.json"}, "/api")])
def test_served_openapi_names_first_the_url_the_request_came_by_under_each_server(
        tmp_path, environ, want):
    import io
    import json

    environ = dict(environ, REQUEST_METHOD="GET", QUERY_STRING="", **{"wsgi.input": io.BytesIO()})
    app = Application(config=make_config("sqlite", tmp_path))
    captured = []
    body = b"".join(app(environ, lambda status, headers, exc=None: captured.append(status)))
    assert captured == ["200 OK"]
    assert json.loads(body.decode("utf-8"))["servers"][0] == {"url": want}


def test_served_openapi_lists_the_dev_servers_root_first(tmp_path):
    api = ApiClient(Application(config=make_config("sqlite", tmp_path)))
    assert api.get("/openapi.json").json["servers"][0] == {"url": "/"}
