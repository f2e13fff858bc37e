#!/usr/bin/env python3
"""taskq installer: a browser wizard when run as CGI, a command line otherwise.

In a browser (https://your.site/install.py): check the host, ask for the
database, test it, create or upgrade the schema, write config.ini (mode 600)
and show the API key once. Once config.ini exists the wizard is locked: it
only reconfigures for a request that carries the current API key.

From a shell:
    python3 install.py --backend mysql --host localhost --name taskq --user taskq --password ...
    python3 install.py --backend sqlite [--sqlite-path data/taskq.sqlite3]
    python3 install.py --migrate          # apply pending schema migrations
    python3 install.py --check            # only the environment checks
    python3 install.py --create-key NAME --role producer|worker|admin|read-only
    python3 install.py --list-keys | --revoke-key NAME
    python3 install.py --purge            # retention now (for a cron job)
The API key is printed alone on standard output; everything else goes to
standard error. The logic lives in lib/taskq/install.py.
"""
import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "lib"))

from taskq import install as setup  # noqa: E402
from taskq.errors import TaskqError  # noqa: E402

COOKIE = "taskq_install"

CSS = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:46rem;margin:2rem auto;padding:1.5rem 2rem;background:#fff;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.5rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
ol.steps{display:flex;gap:1.5rem;list-style:none;padding:0;margin:0 0 1rem;color:#7a8190;font-size:.9rem}
ol.steps li.on{color:#1d2330;font-weight:600}
table{border-collapse:collapse;width:100%}td:first-child{width:3rem}td{padding:.45rem .5rem;border-top:1px solid #e3e5ea;vertical-align:top}
.ok{color:#17693a;font-weight:600}.bad{color:#b3261e;font-weight:600}.note-mark{color:#2f5fd0;font-weight:600}.fix{color:#b3261e;font-size:.92rem}
.err{background:#fdecea;border-left:4px solid #b3261e;padding:.7rem 1rem;margin:1rem 0}
.note{background:#eef4ff;border-left:4px solid #2f5fd0;padding:.7rem 1rem;margin:1rem 0}
label{display:block;margin:.7rem 0 .2rem;font-weight:600}label.inline{display:inline;font-weight:normal}
input[type=text],input[type=password],input[type=number]{width:100%;box-sizing:border-box;padding:.45rem;font:inherit;border:1px solid #b8bdc7;border-radius:4px}
fieldset{border:1px solid #d5d8de;border-radius:6px;margin:1rem 0;padding:.5rem 1rem 1rem}
button,a.button{display:inline-block;margin-top:1.2rem;padding:.55rem 1.2rem;font:inherit;font-weight:600;color:#fff;background:#2f5fd0;border:0;border-radius:4px;text-decoration:none;cursor:pointer}
code,pre{font-family:ui-monospace,Consolas,monospace;font-size:.88rem}
pre{background:#1d2330;color:#e8eaf0;padding:.8rem 1rem;border-radius:6px;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
.key{font-size:1.05rem;background:#fff8d6;border:1px solid #e6c200;padding:.6rem;border-radius:4px;word-break:break-all}
small{color:#5b6272}
"""


# -- HTML --------------------------------------------------------------------
def esc(value):
    import html

    return html.escape("" if value is None else str(value), quote=True)


def layout(title, body, step=None):
    steps = "".join('<li class="%s">%d. %s</li>' % ("on" if i == step else "", i, name)
                    for i, name in ((1, "Check the host"), (2, "Database"), (3, "Done")))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="robots" content="noindex"><title>%s · taskq installer</title>'
            '<style>%s</style></head><body><main>%s<h1>%s</h1>%s</main></body></html>\n'
            % (esc(title), CSS, '<ol class="steps">%s</ol>' % steps if step else "", esc(title), body))


def error_box(message):
    return '<div class="err" role="alert">%s</div>' % esc(message) if message else ""


def checks_page(checks, url):
    def mark(c):
        return ("ok", "OK") if c.ok else ("bad", "Fix") if c.required else ("note-mark", "Note")

    rows = "".join(
        '<tr><td class="%s">%s</td><td>%s<br><small>%s</small>%s</td></tr>'
        % (mark(c) + (esc(c.name), esc(c.detail),
           "" if c.ok else '<div class="fix">%s</div>' % esc(c.fix)))
        for c in checks)
    if all(c.ok or not c.required for c in checks):
        action = ('<p>Everything taskq needs is here.</p>'
                  '<a class="button" href="%s?step=database">Continue to the database</a>' % esc(url))
    else:
        action = ('<p>Fix the items marked <span class="bad">Fix</span>, then check again.</p>'
                  '<a class="button" href="%s">Check again</a>' % esc(url))
    note = ('<div class="note">Until the installation is finished, anyone who opens this page can '
            'run it: finish it now. Afterwards the installer is locked by the API key.</div>')
    return layout("Check the host", "<table>%s</table>%s%s" % (rows, note, action), 1)


def database_page(url, csrf, values, error=None, field=None, unlock_key=None):
    v = lambda key, default="": esc(values.get(key, default))  # noqa: E731
    mysql = values.get("backend", "mysql") != "sqlite"
    hidden = '<input type="hidden" name="csrf" value="%s"><input type="hidden" name="step" value="install">' % esc(csrf)
    rotate = ""
    if unlock_key:
        hidden += '<input type="hidden" name="current_key" value="%s">' % esc(unlock_key)
        rotate = ('<p><input type="checkbox" id="new_key" name="new_key" value="1"> <label class="inline" '
                  'for="new_key">Make a new API key (workers must then use the new one)</label></p>')
    blame = ' autofocus' if field else ""

    def text(name, label, kind="text", extra="", hint=""):
        focus = blame if field == name else ""
        value = "" if kind == "password" else ' value="%s"' % v(name)
        return ('<label for="%s">%s</label><input type="%s" id="%s" name="%s"%s%s%s>%s'
                % (name, label, kind, name, name, value, extra, focus,
                   "<small>%s</small>" % hint if hint else ""))

    body = (
        error_box(error)
        + '<form method="post" action="%s">%s' % (esc(url), hidden)
        + '<fieldset><legend><input type="radio" id="backend_mysql" name="backend" value="mysql"%s> '
          '<label class="inline" for="backend_mysql"><b>MySQL or MariaDB</b> (recommended for several workers)</label></legend>'
        % (" checked" if mysql else "")
        + text("host", "Host", extra=' autocomplete="off"', hint="On most shared hosts: localhost")
        + text("port", "Port", "number", ' min="1" max="65535"')
        + text("name", "Database name", extra=' autocomplete="off"',
               hint="Create the database and its user first in your hosting control panel.")
        + text("user", "User name", extra=' autocomplete="off"')
        + text("password", "Password", "password", ' autocomplete="new-password"',
               hint="Leave empty to keep the current password." if unlock_key else "")
        + text("unix_socket", "Socket path (optional)", hint="Leave empty unless your host names a socket file: with localhost, taskq finds the "
                    "server's socket where MySQL, MariaDB and PHP look (then tries 127.0.0.1).")
        + '</fieldset><fieldset><legend><input type="radio" id="backend_sqlite" name="backend" value="sqlite"%s> '
          '<label class="inline" for="backend_sqlite"><b>SQLite</b> (one file, nothing to set up)</label></legend>'
        % ("" if mysql else " checked")
        + text("sqlite_path", "SQLite file (optional)",
               hint="Empty: data/taskq.sqlite3 in the taskq folder, denied to the web by .htaccess.")
        + "</fieldset>" + rotate
        + "<button type=\"submit\">Test the connection and install</button></form>")
    return layout("Database", body, 2)


def shell_quote(value):
    """`value` as one shell word in single quotes (a key may hold any character)."""
    return "'%s'" % str(value).replace("'", "'\\''")


def done_page(api_key, base, settings, applied_note, rotated=True, config_note=None, revoked=()):
    api_url = base + "/api/"
    cgi_url = base + "/cgi-bin/api.py/"
    key_note = ("This is the API key. Copy it now and keep it safe: this page shows it once, and "
                "every request to the API must send it." if rotated else
                "The API key is unchanged; workers keep using it.")
    header = shell_quote("X-API-Key: %s" % api_key)
    # in this order: the worker below claims the task the last curl creates
    curl = ("curl -s %(api)shealth\n\n"
            "curl -s -X POST %(api)stask-types/register \\\n"
            "  -H %(header)s \\\n  -H 'Content-Type: application/json' \\\n"
            "  -d '{\"name\": \"example.echo\", \"version\": \"1\", \"param_schema\": {\"type\": \"object\"}}'\n\n"
            "curl -s -X POST %(api)stasks \\\n"
            "  -H %(header)s \\\n  -H 'Content-Type: application/json' \\\n"
            "  -d '{\"type\": \"example.echo\", \"params\": {\"text\": \"hello\"}}'"
            % {"api": api_url, "header": header})
    worker = ("PYTHONPATH=lib python3 -m taskq.worker --url %s \\\n  --api-key=%s \\\n"
              "  --type 'example.%%' --exec 'cat'" % (api_url, shell_quote(api_key)))
    db = ("SQLite" if settings["backend"] == "sqlite"
          else "MySQL/MariaDB database %s on %s" % (settings["name"], settings["host"]))
    config_note = config_note or "config.ini is written (mode 600)"
    body = (
        '<p class="ok">taskq is installed.</p><p>%s; %s %s.</p>'
        % (esc(db), esc(applied_note), esc(config_note))
        + ('<div class="note" id="revoked">Revoked the API keys you did not keep: %s.</div>'
           % esc(", ".join(revoked)) if revoked else "")
        + '<h2>API key</h2><p>%s</p><div class="key"><code id="api-key">%s</code></div>' % (esc(key_note), esc(api_key))
        + '<h2>API address</h2><p><code id="api-url">%s</code><br><small>or, without clean URLs: '
          '<code>%s</code></small></p>' % (esc(api_url), esc(cgi_url))
        + '<p>Health check: <a id="health-link" href="%shealth">%shealth</a></p>' % (esc(api_url), esc(api_url))
        + "<h2>Try it with curl</h2><p>Register a task type and create a task:</p>"
          "<pre id=\"curl-commands\">%s</pre>" % esc(curl)
        + "<h2>Run a worker</h2><p>On any machine with Python 3, in the folder holding the taskq files "
          "(the one with lib/ in it): it claims the task created above, runs <code>cat</code> on its "
          "parameters and completes it (stop it with Ctrl+C).</p><pre id=\"worker-command\">%s</pre>" % esc(worker)
        + '<div class="note">The installer is now locked: opening it again asks for this API key '
          'before it changes anything.</div>')
    return layout("Done", body, 3)


def keys_page(url, csrf, values, keys, unlock_key=None, new_key=False):
    """The API keys already in the chosen database: each is revoked unless ticked."""
    hidden = "".join('<input type="hidden" name="%s" value="%s">' % (esc(k), esc(values.get(k, "")))
                     for k in setup.DB_KEYS)
    hidden += ('<input type="hidden" name="csrf" value="%s"><input type="hidden" name="step" value="install">'
               '<input type="hidden" name="keys_reviewed" value="1">' % esc(csrf))
    if unlock_key:
        hidden += '<input type="hidden" name="current_key" value="%s">' % esc(unlock_key)
    if new_key:
        hidden += '<input type="hidden" name="new_key" value="1">'
    checked = " checked" if unlock_key else ""
    rows = "".join(
        '<tr><td><input type="checkbox" id="keep_%(n)s" name="keep_%(n)s" value="1"%(c)s></td>'
        '<td><label class="inline" for="keep_%(n)s"><b>%(n)s</b></label> (%(role)s)<br><small>prefix '
        '%(prefix)s, created %(created)s, last used %(used)s</small></td></tr>'
        % {"n": esc(k["name"]), "c": checked, "role": esc(k["role"]), "prefix": esc(k["prefix"]),
           "created": esc(k["created_at"]), "used": esc(k["last_used_at"] or "never")}
        for k in keys)
    body = ('<p>This database already holds %d API key(s). Whoever has one of them can use this '
            'taskq: the install <b>revokes every key you do not tick</b>.</p>' % len(keys)
            + '<form method="post" action="%s">%s<table>%s</table>' % (esc(url), hidden, rows)
            + '<button type="submit" id="install-keys">Install: keep the ticked keys, revoke the others</button></form>')
    return layout("API keys in this database", body, 2)


def upload_page(url, csrf, text, folder, api_key, error=None):
    """config.ini for the owner to upload, where the wizard may not write it (no 777)."""
    from urllib.parse import quote

    body = (error_box(error)
            + "<p>The database is ready. Scripts on this host run as <code>%s</code>, which does not "
              "own the taskq folder, so the installer does not write config.ini itself (and needs no "
              "777). Save this file as <code>config.ini</code> and upload it over FTP into "
              "<code>%s</code>, the folder holding install.py. Give it permission <b>640</b> if your "
              "host says the web server shares your group, else <b>644</b> (the .htaccess files "
              "keep it from the web either way).</p>" % (esc(setup.web_user()), esc(folder))
            + '<a class="button" id="download" download="config.ini" '
              'href="data:text/plain;charset=utf-8,%s">Download config.ini</a>' % esc(quote(text))
            + '<pre id="config-text">%s</pre>' % esc(text)
            + '<form method="post" action="%s"><input type="hidden" name="csrf" value="%s">'
              '<input type="hidden" name="step" value="verify">'
              '<input type="hidden" name="current_key" value="%s">'
              '<input type="hidden" name="config_text" value="%s">'
              '<button type="submit" id="uploaded">I uploaded it: check it</button></form>'
            % (esc(url), esc(csrf), esc(api_key), esc(text))
            + '<div class="note">The API key is in this file: this page is the only place it is '
              'shown. Once the file is uploaded, the installer shows the next steps only to this '
              'page (it knows the key) and is locked for everyone else.</div>')
    return layout("Upload config.ini", body, 3)


def locked_page(url, csrf, error=None, usable=True, notice=None):
    if not usable:
        body = error_box(error) + (
            "<p>taskq is already installed, but its config.ini has no API key (or cannot be read), so "
            "the installer cannot check who you are. Change config.ini over FTP or SSH, or delete it to "
            "run the installer again.</p>")
        return layout("Installer locked", body)
    body = (error_box(error)
            + ('<div class="note" role="status">%s</div>' % esc(notice) if notice else "")
            + "<p>taskq is already installed. To change its settings, or to bring the database "
              "schema up to date after uploading a newer taskq, enter the current API key (it is "
              "<code>api_key</code> in config.ini).</p>"
            + '<form method="post" action="%s"><input type="hidden" name="csrf" value="%s">'
              '<label for="current_key">Current API key</label>'
              '<input type="password" id="current_key" name="current_key" autocomplete="off" autofocus>'
              '<button type="submit" id="unlock" name="step" value="unlock">Change settings</button> '
              '<button type="submit" id="upgrade" name="step" value="migrate">Upgrade the database schema</button>'
              '</form>' % (esc(url), esc(csrf)))
    return layout("Installer locked", body)


def message_page(title, message):
    return layout(title, error_box(message) + '<p><a href="?">Start again</a></p>')


# -- the wizard as a WSGI app ------------------------------------------------
class Wizard:
    def __init__(self, path=None):
        self.path = path or setup.config_path()

    def __call__(self, environ, start_response):
        response = self.handle(environ)
        status, body, cookie = response
        headers = [("Content-Type", "text/html; charset=utf-8"),
                   ("Cache-Control", "no-store"),
                   ("X-Frame-Options", "DENY"),
                   ("X-Content-Type-Options", "nosniff"),
                   ("Referrer-Policy", "no-referrer"),
                   ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
                    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")]
        if cookie:
            headers.append(("Set-Cookie", cookie))
        data = body.encode("utf-8")
        headers.append(("Content-Length", str(len(data))))
        start_response(status, headers)
        return [data]

    # -- request helpers
    @staticmethod
    def script_url(environ):
        return environ.get("SCRIPT_NAME") or "/install.py"

    @staticmethod
    def site_base(environ):
        """scheme://host/prefix of the taskq folder, from the request."""
        https = environ.get("HTTPS", "").lower() in ("on", "1") or environ.get("REQUEST_SCHEME") == "https"
        scheme = "https" if https else "http"
        host = environ.get("HTTP_HOST")
        if not host:
            host = environ.get("SERVER_NAME", "localhost")
            port = environ.get("SERVER_PORT", "")
            if port and port != ("443" if https else "80"):
                host += ":" + port
        prefix = os.path.dirname(Wizard.script_url(environ)).rstrip("/")
        return "%s://%s%s" % (scheme, host, prefix)

    @staticmethod
    def read_form(environ):
        from urllib.parse import parse_qs

        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        raw = environ["wsgi.input"].read(min(length, 65536)) if length > 0 else b""
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[0] for key, values in form.items()}

    def csrf(self, environ):
        """(nonce, token, Set-Cookie or None): the per-browser nonce and the form token signed for it."""
        import hashlib
        import hmac
        import secrets
        from http.cookies import SimpleCookie

        cookie = SimpleCookie()
        try:
            cookie.load(environ.get("HTTP_COOKIE", ""))
        except Exception:  # noqa: BLE001 - a garbled cookie is as good as none
            pass
        nonce = cookie[COOKIE].value if COOKIE in cookie else ""
        set_cookie = None
        if len(nonce) != 32 or not all(ch in "0123456789abcdef" for ch in nonce):
            nonce = secrets.token_hex(16)
            https = self.site_base(environ).startswith("https:")
            set_cookie = "%s=%s; Path=%s; HttpOnly; SameSite=Strict%s" % (
                COOKIE, nonce, self.script_url(environ), "; Secure" if https else "")
        secret = setup.read_secret(self.path)
        token = hmac.new(secret, ("csrf:" + nonce).encode("ascii"), hashlib.sha256).hexdigest()
        return nonce, token, set_cookie

    def installed_key(self):
        """(api_key, error): the current key of an installed taskq."""
        from taskq import config as config_module

        try:
            return config_module.load(self.path).api["api_key"], None
        except TaskqError as exc:
            return "", exc.message

    def handle(self, environ):
        from hmac import compare_digest
        from urllib.parse import parse_qs

        method = environ.get("REQUEST_METHOD", "GET").upper()
        url = self.script_url(environ)
        step = parse_qs(environ.get("QUERY_STRING", "")).get("step", [""])[0]
        form = self.read_form(environ) if method == "POST" else {}
        try:
            _, token, cookie = self.csrf(environ)
        except OSError:
            checks = setup.environment_checks(path=self.path)
            return "200 OK", checks_page(checks, url), None
        installed = setup.is_installed(self.path)

        if method == "POST":
            if cookie or not compare_digest(form.get("csrf", "").encode("utf-8"), token.encode("ascii")):
                return ("403 Forbidden", message_page(
                    "Form expired", "This form has expired or was sent from another site. "
                    "Start again from the installer's first page."), cookie)
            step = form.get("step", "")
        elif method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", message_page("Not allowed", "Use the installer's pages."), cookie

        if method == "POST" and step == "verify":
            return self.verify(environ, url, token, form) + (cookie,)
        unlock_key = None
        if installed:
            current, problem = self.installed_key()
            if not current:
                return "403 Forbidden", locked_page(url, token, problem, usable=False), cookie
            if method != "POST" or step not in ("unlock", "install", "migrate"):
                return "200 OK", locked_page(url, token), cookie
            if not compare_digest(form.get("current_key", "").encode("utf-8"), current.encode("utf-8")):
                return ("403 Forbidden", locked_page(url, token, "That is not the current API key. "
                                                     "Nothing was changed."), cookie)
            unlock_key = current
            if step == "migrate":
                try:
                    done = setup.migrate_configured(self.path)
                except TaskqError as exc:
                    return "200 OK", locked_page(url, token, exc.message), cookie
                return "200 OK", locked_page(url, token, notice=done), cookie
            if step == "unlock":
                return "200 OK", database_page(url, token, self.current_values(), unlock_key=unlock_key), cookie

        if method == "POST" and step == "install":
            return self.install(environ, url, token, form, unlock_key) + (cookie,)
        if step == "database":
            return "200 OK", database_page(url, token, {"backend": "mysql", "host": "localhost",
                                                        "port": "3306"}), cookie
        checks = setup.environment_checks(path=self.path)
        return "200 OK", checks_page(checks, url), cookie

    def current_values(self):
        from taskq import config as config_module

        try:
            values = setup.settings_from_config(config_module.load(self.path))
        except TaskqError:
            return {"backend": "mysql", "host": "localhost", "port": "3306"}
        values.pop("password", None)
        values.setdefault("port", "3306")
        return values

    def current_password(self):
        from taskq import config as config_module

        try:
            return config_module.load(self.path).database["password"]
        except TaskqError:
            return ""

    def install(self, environ, url, token, form, unlock_key):
        values = {key: form.get(key, "") for key in setup.DB_KEYS}
        failing = [c for c in setup.environment_checks(path=self.path) if not c.ok and c.required]
        if failing:
            problem = "Fix this first: %s (%s). %s" % (failing[0].name, failing[0].detail, failing[0].fix)
            return "200 OK", database_page(url, token, values, problem, unlock_key=unlock_key)
        if unlock_key and not values["password"]:
            values["password"] = self.current_password()
        try:
            settings = setup.validate_settings(values)
            keep = unlock_key if unlock_key and not form.get("new_key") else None
            if not form.get("keys_reviewed"):
                keys = setup.existing_keys(settings, self.path)
                if keys:
                    return "200 OK", keys_page(url, token, values, keys, unlock_key, form.get("new_key"))
            kept = [name[5:] for name, value in form.items() if name.startswith("keep_") and value]
            api_key, text, revoked = setup.prepare_install(settings, self.path, keep, keep_keys=kept)
            if not setup.config_writable(self.path):
                return "200 OK", upload_page(url, token, text, self.folder_shown(), api_key)
            setup.write_config(self.path, text)
        except TaskqError as exc:
            field = getattr(exc, "field", None)
            return "200 OK", database_page(url, token, values, exc.message, field, unlock_key=unlock_key)
        note = ("the database file is ready and" if settings["backend"] == "sqlite"
                else "the database schema is up to date and")
        return "200 OK", done_page(api_key, self.site_base(environ), settings, note,
                                   rotated=keep is None, revoked=revoked)

    def folder_shown(self):
        folder = os.path.dirname(os.path.abspath(self.path))
        return "the taskq folder (%s)" % folder if folder == setup.PROJECT_ROOT else folder

    def verify(self, environ, url, token, form):
        """"I uploaded it": the uploaded config.ini works, and this page knows its key.

        The key comes from the upload page's form (the page that showed the
        file), so whoever loads the installer later sees only the locked page.
        """
        from hmac import compare_digest
        from taskq import config as config_module

        key, text = form.get("current_key", ""), form.get("config_text", "")

        def again(message, status="200 OK"):
            return status, upload_page(url, token, text, self.folder_shown(), key, message)

        if not setup.is_installed(self.path):
            return again("There is no config.ini in %s yet: upload the file below there (named "
                         "config.ini), then press the button again." % self.folder_shown())
        if not os.access(self.path, os.R_OK):
            return again("config.ini is there, but the web server user (%s) cannot read it: set its "
                         "permission to 644 (or 640 when the web server shares your group)."
                         % setup.web_user())
        try:
            current = config_module.load(self.path).api["api_key"]
        except TaskqError as exc:
            return again("The uploaded config.ini cannot be used: %s" % exc.message)
        if not key or not compare_digest(key.encode("utf-8"), current.encode("utf-8")):
            if not text:
                return "403 Forbidden", locked_page(url, token, "That is not the current API key. "
                                                    "Nothing was changed.")
            return again("The config.ini in that folder is not the file shown here (its api_key "
                         "differs): upload this one.", "403 Forbidden")
        try:
            cfg = setup.verify_uploaded(self.path)
        except TaskqError as exc:
            return again("The uploaded config.ini cannot reach its database: %s" % exc.message)
        settings = setup.settings_from_config(cfg)
        note = ("the database file is ready and" if settings["backend"] == "sqlite"
                else "the database schema is up to date and")
        return "200 OK", done_page(current, self.site_base(environ), settings, note,
                                   config_note="the config.ini you uploaded works")


# -- command line ------------------------------------------------------------
def parse_args(argv):
    import argparse

    parser = argparse.ArgumentParser(
        prog="install.py", description="Install taskq: test the database, create or upgrade its "
        "schema, write config.ini (mode 600) and print the API key.")
    parser.add_argument("--config", help="config.ini to write (default: TASKQ_CONFIG or config.ini in the taskq folder)")
    parser.add_argument("--migrate", action="store_true", help="apply pending schema migrations to the configured database and exit")
    parser.add_argument("--check", action="store_true", help="only run the environment checks")
    parser.add_argument("--backend", choices=("mysql", "sqlite"))
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", default="3306")
    parser.add_argument("--name", help="database name")
    parser.add_argument("--user", help="database user")
    parser.add_argument("--password", help="database password (or set TASKQ_DB_PASSWORD)")
    parser.add_argument("--unix-socket", default="")
    parser.add_argument("--sqlite-path", default="", help="SQLite file (default: data/taskq.sqlite3)")
    parser.add_argument("--new-key", action="store_true", help="replace the API key of an existing config.ini")
    parser.add_argument("--keep-keys", action="store_true",
                        help="keep the API keys already in the database (without it they are listed and revoked)")
    parser.add_argument("--create-key", metavar="NAME", help="create an API key with --role; printed once")
    parser.add_argument("--role", choices=("producer", "worker", "admin", "read-only"),
                        help="role of the key --create-key makes")
    parser.add_argument("--list-keys", action="store_true", help="list API keys (names and prefixes, never the keys)")
    parser.add_argument("--revoke-key", metavar="NAME", help="revoke the API key of that name")
    parser.add_argument("--purge", action="store_true",
                        help="delete tasks and history older than the [retention] days of config.ini")
    return parser, parser.parse_args(argv)


def main(argv=None):
    parser, args = parse_args(sys.argv[1:] if argv is None else argv)
    path = os.path.abspath(args.config) if args.config else setup.config_path()
    err = sys.stderr
    if args.create_key or args.list_keys or args.revoke_key or args.purge:
        return operations(parser, args, path)
    if args.check or not (args.migrate or args.backend):
        checks = setup.environment_checks(path=path)
        for c in checks:
            err.write("%-4s %s: %s\n" % ("ok" if c.ok else "FIX", c.name, c.detail))
            if not c.ok:
                err.write("     %s\n" % c.fix)
        if not args.check:
            err.write("\nNext: python3 install.py --backend mysql|sqlite ... (see --help)\n")
        return 0 if all(c.ok for c in checks) else 1
    try:
        if args.migrate:
            err.write(setup.migrate_configured(path) + "\n")
            return 0
        password = args.password if args.password is not None else os.environ.get("TASKQ_DB_PASSWORD", "")
        settings = setup.validate_settings({
            "backend": args.backend, "host": args.host, "port": args.port, "name": args.name,
            "user": args.user, "password": password, "unix_socket": args.unix_socket,
            "sqlite_path": os.path.abspath(args.sqlite_path) if args.sqlite_path else ""})
        keep = None
        if os.path.exists(path) and not args.new_key:
            from taskq import config as config_module

            keep = config_module.load(path).api["api_key"] or None
        existing = setup.existing_keys(settings, path)
        for row in existing:
            err.write("%s API key %s (%s, prefix %s, created %s, last used %s)\n"
                      % ("keeping" if args.keep_keys else "revoking", row["name"], row["role"],
                         row["prefix"], row["created_at"], row["last_used_at"] or "never"))
        if existing and not args.keep_keys:
            err.write("(revoked; --keep-keys keeps the keys already in the database)\n")
        api_key = setup.install(settings, path, keep, keep_keys=None if args.keep_keys else ())
    except TaskqError as exc:
        err.write("install.py: %s\n" % exc.message)
        return 1
    err.write("taskq is installed: %s written (mode 600). %s\n"
              % (path, "The API key is unchanged:" if keep else "The new API key:"))
    sys.stdout.write(api_key + "\n")
    return 0


def operations(parser, args, path):
    """--create-key, --list-keys, --revoke-key, --purge on an installed taskq."""
    if args.create_key and not args.role:
        parser.error("--create-key needs --role")
    try:
        if args.purge:
            sys.stderr.write(setup.purge_command(path) + "\n")
            return 0
        lines, note = setup.key_command(path, create=args.create_key, role=args.role,
                                        revoke=args.revoke_key)
    except TaskqError as exc:
        sys.stderr.write("install.py: %s\n" % exc.message)
        return 1
    sys.stderr.write(note + "\n")
    for line in lines:
        sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    if "GATEWAY_INTERFACE" in os.environ:
        from wsgiref.handlers import CGIHandler

        CGIHandler().run(Wizard())
    else:
        sys.exit(main())
