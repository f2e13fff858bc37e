"""The upload bundle built by tools/bundle.py: contents, modes, scripts, vendored packages.

No web server here; tests/deploy/test_apache.py serves the same bundle through Apache.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from support.bundles import ROOT, built_bundle, bundle_tool

TOP = "taskq/"
VERSION = "%d.%d" % sys.version_info[:2]


@pytest.fixture(scope="module")
def bundle():
    return built_bundle()


@pytest.fixture(scope="module")
def entries(bundle):
    with zipfile.ZipFile(bundle) as archive:
        return {info.filename: info for info in archive.infolist()}


@pytest.fixture(scope="module")
def unpacked(bundle, tmp_path_factory):
    return bundle_tool().extract(bundle, str(tmp_path_factory.mktemp("bundle")))


def names(entries):
    return sorted(name[len(TOP):] for name in entries if not name.endswith("/"))


def read(bundle, name):
    with zipfile.ZipFile(bundle) as archive:
        return archive.read(TOP + name)


def test_bundle_is_named_after_project_version_and_target_python(bundle):
    from taskq import __version__

    assert os.path.basename(bundle) == "taskq-%s-py%s.zip" % (__version__, VERSION)


def test_bundle_holds_everything_a_host_needs_in_one_top_folder(entries):
    files = names(entries)
    assert all(name.startswith(TOP) for name in entries)
    for needed in ("cgi-bin/api.py", "cgi-bin/.htaccess", ".htaccess", "install.py",
                   "passenger_wsgi.py", "schema.sql", "config.example.ini", "README.md", "CHANGELOG.md",
                   "lib/.htaccess", "data/.htaccess", "lib/taskq/__init__.py",
                   "lib/taskq/app.py", "lib/taskq/store/sqlite_schema.sql",
                   "lib/taskq/store/queries/sqlite.sql", "lib/taskq/store/queries/mysql.sql",
                   "lib/pymysql/__init__.py", "lib/jsonschema/__init__.py"):
        assert needed in files
    shipped_sources = sorted(
        os.path.relpath(path, ROOT).replace(os.sep, "/")
        for path in glob.glob(os.path.join(ROOT, "lib", "taskq", "**", "*"), recursive=True)
        if os.path.isfile(path) and "__pycache__" not in path)
    assert [name for name in shipped_sources if name not in files] == []


def test_bundle_ships_migrations_with_their_own_deny_rule(entries):
    if not os.path.isdir(os.path.join(ROOT, "migrations")):
        pytest.skip("the project has no migrations/ folder")
    files = names(entries)
    migrations = [os.path.relpath(path, ROOT).replace(os.sep, "/")
                  for path in glob.glob(os.path.join(ROOT, "migrations", "**", "*.sql"),
                                        recursive=True)]
    assert migrations and all(name in files for name in migrations)
    assert "migrations/.htaccess" in files


def test_bundle_leaves_out_tests_bench_tools_venvs_caches_and_local_state(entries):
    for name in names(entries):
        parts = name.split("/")
        assert parts[0] not in ("tests", "bench", "tools", "docs", "dist", "scripts", ".venv",
                                ".git", ".ci", ".pytest_cache"), name
        if "__pycache__" in parts or name.endswith((".pyc", ".pyo")):  # only the bundle's own
            assert parts[0] == "lib" and parts[-2] == "__pycache__", name
            assert name.endswith(".%s.pyc" % sys.implementation.cache_tag), name
        assert not any(part.startswith(".") and part != ".htaccess" for part in parts), name
        assert name != "config.ini" and ".sqlite" not in name, name


def test_bundle_data_folder_is_empty_except_its_deny_rule(entries):
    assert TOP + "data/" in entries
    assert [name for name in names(entries) if name.startswith("data/")] == ["data/.htaccess"]


def test_bundle_modes_are_755_for_the_two_scripts_and_644_for_everything_else(entries):
    for name, info in entries.items():
        mode = (info.external_attr >> 16) & 0o777
        if name.endswith("/"):
            assert mode == 0o755, name
        elif name in (TOP + "cgi-bin/api.py", TOP + "install.py"):
            assert mode == 0o755, name
        else:
            assert mode == 0o644, name


def test_bundle_scripts_start_with_env_python3_shebang_and_have_lf_endings(bundle, entries):
    for script in ("cgi-bin/api.py", "install.py"):
        assert read(bundle, script).startswith(b"#!/usr/bin/env python3\n")
    for name in names(entries):
        if name.endswith((".py", ".sql", ".ini", ".htaccess")) and not name.startswith(
                ("lib/pymysql", "lib/jsonschema", "lib/attr", "lib/referencing", "lib/rpds")):
            assert b"\r" not in read(bundle, name), name


def test_unpacked_scripts_keep_their_execute_bit(unpacked):
    assert os.stat(os.path.join(unpacked, "cgi-bin", "api.py")).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(unpacked, "install.py")).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(unpacked, "schema.sql")).st_mode & 0o777 == 0o644


def test_vendored_packages_import_from_lib_with_the_target_python_and_no_site_packages(unpacked):
    lib = os.path.join(unpacked, "lib")
    code = ("import sys; sys.path.insert(0, %r)\n"
            "import pymysql, jsonschema\n"
            "from jsonschema import validators\n"
            "v = validators.validator_for({})({'type': 'object', 'required': ['a']})\n"
            "assert [e.message for e in v.iter_errors({})] == [\"'a' is a required property\"]\n"
            "assert pymysql.__file__.startswith(%r) and jsonschema.__file__.startswith(%r)\n"
            "print('ok')\n" % (lib, lib, lib))
    # -S: no site-packages at all, as on a host without these packages installed
    result = subprocess.run([sys.executable, "-S", "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.stdout.strip() == "ok", result.stdout


def test_cgi_entry_in_bundle_answers_health_with_only_vendored_packages(unpacked, tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REQUEST_METHOD": "GET",
           "PATH_INFO": "/health", "SCRIPT_NAME": "/cgi-bin/api.py", "QUERY_STRING": "",
           "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
           "GATEWAY_INTERFACE": "CGI/1.1", "TASKQ_CONFIG": str(tmp_path / "config.ini")}
    (tmp_path / "config.ini").write_text(
        "[database]\nbackend = sqlite\nsqlite_path = %s\n" % (tmp_path / "t.sqlite3"))
    result = subprocess.run([sys.executable, "-S", os.path.join(unpacked, "cgi-bin", "api.py")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert b"Status: 200" in head, result.stdout + result.stderr
    assert b'"status":"ok"' in body


def test_cgi_entry_in_bundle_serves_the_docs_page_and_its_vendored_assets(unpacked, tmp_path):
    (tmp_path / "config.ini").write_text(
        "[database]\nbackend = sqlite\nsqlite_path = %s\n" % (tmp_path / "t.sqlite3"))
    for path, content_type in (("/docs", b"text/html"),
                               ("/docs/swagger-ui/swagger-ui-bundle.js", b"text/javascript")):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REQUEST_METHOD": "GET",
               "PATH_INFO": path, "SCRIPT_NAME": "/cgi-bin/api.py", "QUERY_STRING": "",
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "GATEWAY_INTERFACE": "CGI/1.1", "TASKQ_CONFIG": str(tmp_path / "config.ini")}
        result = subprocess.run([sys.executable, "-S", os.path.join(unpacked, "cgi-bin", "api.py")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        head, _, body = result.stdout.partition(b"\r\n\r\n")
        assert b"Status: 200" in head and b"Content-Type: " + content_type in head, head
        name = "docs.html" if path == "/docs" else "swagger-ui/swagger-ui-bundle.js"
        with open(os.path.join(ROOT, "lib", "taskq", "static", name), "rb") as handle:
            assert body == handle.read()


def test_bundle_for_python_3_8_brings_its_backports_and_not_the_running_pythons(tmp_path):
    target = "3.8" if VERSION != "3.8" else "3.13"
    path = built_bundle(target)
    with zipfile.ZipFile(path) as archive:
        tops = {name.split("/")[2] for name in archive.namelist()
                if name.startswith(TOP + "lib/") and name.split("/")[2]}
        rpds = [name for name in archive.namelist() if "/rpds/" in name and name.endswith(".so")]
    backports = {"importlib_resources", "pkgutil_resolve_name.py"}
    if target == "3.8":
        assert backports <= tops
        assert rpds and all("cpython-38" in name for name in rpds)
        python38 = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8.*/bin/python3.8")))
        if python38:  # when a 3.8 interpreter is at hand, prove the bundle runs on it
            unpacked = bundle_tool().extract(path, str(tmp_path))
            code = ("import sys; sys.path.insert(0, %r); import pymysql, jsonschema; "
                    "jsonschema.validate({'a': 1}, {'type': 'object'}); print('ok')"
                    % os.path.join(unpacked, "lib"))
            result = subprocess.run([python38[-1], "-S", "-c", code], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, universal_newlines=True)
            assert result.stdout.strip() == "ok", result.stdout
    else:
        assert not backports & tops
        assert rpds and all("cpython-313" in name for name in rpds)


def _project_copy(tmp_path):
    copy = tmp_path / "project"
    tool = bundle_tool()
    for rel in tool.project_files(ROOT) + ["requirements.txt"]:
        dest = copy / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), str(dest))
    return copy


def test_build_refuses_a_script_with_crlf_line_endings(tmp_path):
    copy = _project_copy(tmp_path)
    script = copy / "cgi-bin" / "api.py"
    script.write_bytes(script.read_bytes().replace(b"\n", b"\r\n"))
    tool = bundle_tool()
    with pytest.raises(tool.BundleError, match=r"cgi-bin/api.py has CRLF"):
        tool.build(root=str(copy), output_dir=str(tmp_path / "dist"), log=lambda *a: None)
    assert not (tmp_path / "dist").exists() or not os.listdir(str(tmp_path / "dist"))


def test_build_refuses_a_script_without_the_env_python3_shebang(tmp_path):
    copy = _project_copy(tmp_path)
    script = copy / "install.py"
    script.write_bytes(b"#!/usr/bin/python3\n" + script.read_bytes().split(b"\n", 1)[1])
    tool = bundle_tool()
    with pytest.raises(tool.BundleError, match=r"install.py must start with the line"):
        tool.build(root=str(copy), output_dir=str(tmp_path / "dist"), log=lambda *a: None)


def test_bundle_command_is_documented_in_the_deploy_guide():
    with open(os.path.join(ROOT, "docs", "deploy.md"), encoding="utf-8") as handle:
        guide = handle.read()
    assert "python3 tools/bundle.py" in guide
    assert "--python-version" in guide


# -- bytecode (issue 11, issue 22) -------------------------------------------------
def test_every_module_under_lib_ships_hash_bytecode_checked_for_taskq_unchecked_for_vendored(
        bundle, entries):
    import importlib.util

    files = set(names(entries))
    sources = [name for name in files if name.startswith("lib/") and name.endswith(".py")]
    assert "lib/taskq/app.py" in sources and "lib/pymysql/connections.py" in sources
    tag = sys.implementation.cache_tag
    for source in sources:
        folder, _, module = source.rpartition("/")
        pyc = "%s/__pycache__/%s.%s.pyc" % (folder, module[:-3], tag)
        assert pyc in files, source
        head = read(bundle, pyc)[:16]
        assert head[:4] == importlib.util.MAGIC_NUMBER, pyc
        # PEP 552 flags: bit 0 = hash-based, bit 1 = check source: 0b11 checked, 0b01 unchecked
        flags = 0b11 if source.startswith("lib/taskq/") else 0b01
        assert int.from_bytes(head[4:8], "little") == flags, pyc
        assert head[8:16] == importlib.util.source_hash(read(bundle, source)), pyc


def test_manifest_names_the_release_every_taskq_file_and_the_vendored_distributions(bundle, entries):
    import hashlib

    release_py = bundle_tool().release_module()
    manifest = release_py.Manifest.parse(read(bundle, "lib/taskq/MANIFEST").decode("utf-8"))
    from taskq import __version__

    assert re.match(r"^%s\+[0-9a-f]{12}$" % re.escape(__version__), manifest.release)
    own = [name for name in names(entries) if name.startswith("lib/taskq/")
           and "__pycache__" not in name and name != "lib/taskq/MANIFEST"]
    assert sorted(manifest.files) == sorted(name[len("lib/taskq/"):] for name in own)
    for name in own:
        data = read(bundle, name)
        assert manifest.files[name[len("lib/taskq/"):]] == hashlib.sha256(data).hexdigest()
        if name.endswith((".py", ".sql")) and "/swagger-ui/" not in name:
            assert release_py.stamp_of(data) == manifest.release, name
            assert data.endswith(release_py.stamp_line(name, manifest.release).encode()), name
    dists = {name.split("/")[1] for name in names(entries)
             if name.startswith("lib/") and name.split("/")[1].endswith(".dist-info")}
    assert manifest.dists == dists and any(d.lower().startswith("pymysql-") for d in dists)


def test_a_hotfixed_module_takes_effect_on_the_next_request_from_a_read_only_tree(unpacked, tmp_path):
    """The shipped .pyc of taskq's modules are checked against their source: an edited
    handlers.py is compiled from source (lib/ not writable), the others still load from .pyc."""
    site = str(tmp_path / "site")
    shutil.copytree(unpacked, site)
    handlers = os.path.join(site, "lib", "taskq", "handlers.py")
    with open(handlers, encoding="utf-8") as handle:
        text = handle.read()
    with open(handlers, "w", encoding="utf-8") as handle:
        handle.write(text.replace('return 200, "OK", {"status": "ok"', 'return 200, "OK (hotfix)", {"status": "ok"'))
    (tmp_path / "config.ini").write_text(
        "[database]\nbackend = sqlite\nsqlite_path = %s\n" % (tmp_path / "t.sqlite3"))
    lib = os.path.join(site, "lib")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REQUEST_METHOD": "GET",
           "PATH_INFO": "/health", "QUERY_STRING": "", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1",
           "TASKQ_CONFIG": str(tmp_path / "config.ini"), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-S", "-v", os.path.join(site, "cgi-bin", "api.py")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert b"Status: 200" in head, result.stdout + result.stderr[-3000:]
    assert b'"message":"OK (hotfix)"' in body
    log = result.stderr.decode("utf-8", "replace")
    assert "# code object from %s\n" % handlers in log  # compiled from the edited source
    assert "code object from '%s'" % os.path.join(
        lib, "taskq", "__pycache__", "app.%s.pyc" % sys.implementation.cache_tag) in log


def test_cgi_request_loads_the_shipped_bytecode_from_a_read_only_tree(unpacked, tmp_path):
    """As on a host: files re-timestamped by the upload, lib/ not writable, and
    PYTHONDONTWRITEBYTECODE set; the request still runs from the bundle's .pyc files."""
    site = str(tmp_path / "site")
    shutil.copytree(unpacked, site)
    for dirpath, _, filenames in os.walk(site):
        for name in filenames:
            if name.endswith(".py"):
                os.utime(os.path.join(dirpath, name), (2000000000, 2000000000))
    (tmp_path / "config.ini").write_text(
        "[database]\nbackend = sqlite\nsqlite_path = %s\n" % (tmp_path / "t.sqlite3"))
    lib = os.path.join(site, "lib")
    for dirpath, dirnames, filenames in os.walk(lib):
        os.chmod(dirpath, 0o555)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REQUEST_METHOD": "GET",
           "PATH_INFO": "/health", "QUERY_STRING": "", "SERVER_NAME": "localhost",
           "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1",
           "TASKQ_CONFIG": str(tmp_path / "config.ini"), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        result = subprocess.run([sys.executable, "-S", "-v", os.path.join(site, "cgi-bin", "api.py")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        for dirpath, dirnames, filenames in os.walk(lib):
            os.chmod(dirpath, 0o755)
    assert b"Status: 200" in result.stdout.partition(b"\r\n\r\n")[0], result.stdout
    log = result.stderr.decode("utf-8", "replace")
    tag = sys.implementation.cache_tag
    for module in ("taskq/__pycache__/app.%s.pyc" % tag, "taskq/store/__pycache__/sqlite.%s.pyc" % tag):
        assert "code object from '%s'" % os.path.join(lib, module) in log, module
    # no module under lib/ was compiled from its source
    compiled = [line for line in log.splitlines()
                if line.startswith("# code object from") and lib in line and line.endswith(".py'")]
    assert compiled == []


def test_build_refuses_a_target_python_it_cannot_compile_for(tmp_path):
    tool = bundle_tool()
    with pytest.raises(tool.BundleError, match=r"compiled by Python 3\.99.*--compile-with"):
        tool.build(python_version="3.99", output_dir=str(tmp_path), log=lambda *a: None)
    with pytest.raises(tool.BundleError, match=r"--compile-with .* is Python %s, not the target 3\.99"
                       % re.escape(VERSION)):
        tool.build(python_version="3.99", output_dir=str(tmp_path), log=lambda *a: None,
                   compile_with=sys.executable)


def test_wizard_check_says_whether_the_bytecode_fits_this_python(unpacked, tmp_path):
    from taskq import install as setup

    ok = setup.bytecode_check(unpacked)
    assert ok.ok and sys.implementation.cache_tag in ok.detail
    site = tmp_path / "site"
    cache = site / "lib" / "taskq" / "__pycache__"
    cache.mkdir(parents=True)
    foreign = b"\x00\x00\r\n" + (3).to_bytes(4, "little") + b"\x00" * 8
    (cache / "app.cpython-399.pyc").write_bytes(foreign)
    bad = setup.bytecode_check(str(site))
    assert not bad.ok and "cpython-399" in bad.detail
    assert "tools/bundle.py --python-version %s" % VERSION in bad.fix
    # a source checkout: only what the interpreter wrote itself (timestamp-based)
    (cache / "app.cpython-399.pyc").write_bytes(b"\x00\x00\r\n" + b"\x00" * 12)
    assert setup.bytecode_check(str(site)).ok
