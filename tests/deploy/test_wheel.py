"""A worker host installs the client and the worker alone.

tools/wheel.py builds dist/taskq-<version>-py3-none-any.whl; it is installed
with `pip install --no-index` (nothing may come from an index: the worker
needs only the standard library) into a fresh virtual environment, whose
`taskq-worker` then runs against a real dev server. PyMySQL and jsonschema,
the server's packages, are the `server` extra and stay out.
"""

import email.parser
import fnmatch
import os
import subprocess
import sys
import zipfile

import pytest
from test_worker import create, register

from conftest import ROOT
from taskq import __version__
from taskq.client import Client

pytestmark = pytest.mark.slow  # builds a wheel and a fresh venv


def clean_env():
    """The environment without the checkout's lib/ on the path: only what pip installed counts."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TASKQ_API_KEY")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(args, cwd, **kwargs):
    result = subprocess.run([str(a) for a in args], cwd=str(cwd), env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=300, **kwargs)
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    result = run([sys.executable, os.path.join(ROOT, "tools", "wheel.py"), "--output-dir", out], out)
    assert result.returncode == 0, result.stderr
    path = out / ("taskq-%s-py3-none-any.whl" % __version__)
    assert path.is_file(), os.listdir(str(out))
    return path


@pytest.fixture(scope="module")
def worker_venv(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed, from no index."""
    place = tmp_path_factory.mktemp("worker-host")
    venv = place / "venv"
    made = run([sys.executable, "-m", "venv", venv], place)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run([python, "-m", "pip", "install", "--no-index", wheel], place)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


def wheel_metadata(wheel):
    with zipfile.ZipFile(str(wheel)) as archive:
        text = archive.read("taskq-%s.dist-info/METADATA" % __version__).decode("utf-8")
    return email.parser.Parser().parsestr(text)


def test_wheel_installs_from_no_index_without_pymysql_or_jsonschema(worker_venv, tmp_path):
    code = ("import importlib.util, sys, taskq, taskq.client, taskq.worker\n"
            "print(taskq.__file__)\n"
            "print(importlib.util.find_spec('pymysql'), importlib.util.find_spec('jsonschema'))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pymysql', 'jsonschema')))\n")
    result = run([worker_venv / "bin" / "python", "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    where, specs, loaded = result.stdout.splitlines()
    assert where.startswith(str(worker_venv)), where  # the installed copy, not the checkout's
    assert specs == "None None"
    assert loaded == "[]"


def test_installed_taskq_worker_command_answers_help(worker_venv, tmp_path):
    result = run([worker_venv / "bin" / "taskq-worker", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--url URL" in result.stdout and "--exec COMMAND" in result.stdout


def test_installed_worker_completes_the_tasks_of_a_live_server(worker_venv, server, tmp_path):
    client = Client(server.url, retries=2, backoff=0.05)
    register(client)
    ids = create(client, 3)
    result = run([worker_venv / "bin" / "taskq-worker", "--url", server.url, "--once",
                  "--exec", "cat"], tmp_path)
    assert result.returncode == 0, result.stderr
    for task_id in ids:
        task = client.get_task(task_id)
        assert (task["status"], task["result"]) == ("completed", task["params"])
    assert result.stderr.count("outcome=completed") == 3


def test_wheel_requires_nothing_and_offers_the_server_packages_as_an_extra(wheel):
    meta = wheel_metadata(wheel)
    assert (meta["Name"], meta["Version"]) == ("taskq", __version__)
    assert meta.get_all("Provides-Extra") == ["server"]
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as handle:
        runtime = [line.split("#")[0].strip() for line in handle if line.split("#")[0].strip()]
    assert meta.get_all("Requires-Dist") == ['%s; extra == "server"' % r for r in runtime]
    with zipfile.ZipFile(str(wheel)) as archive:
        entry_points = archive.read("taskq-%s.dist-info/entry_points.txt" % __version__)
    assert b"taskq-worker = taskq.worker:main" in entry_points


def test_wheel_holds_all_of_lib_taskq_as_the_checkout_install_does(wheel):
    """`pip install .` from a checkout (setuptools, pyproject.toml) must ship the same files:
    every data file under lib/taskq is matched by pyproject's package-data."""
    shipped = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, "lib", "taskq")):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        shipped += [os.path.relpath(os.path.join(dirpath, f), os.path.join(ROOT, "lib"))
                    for f in filenames if not f.endswith(".pyc")]
    with zipfile.ZipFile(str(wheel)) as archive:
        in_wheel = [n for n in archive.namelist() if n.startswith("taskq/")]
    assert sorted(in_wheel) == sorted(p.replace(os.sep, "/") for p in shipped)

    package_data = pyproject()["tool"]["setuptools"]["package-data"]
    for path in in_wheel:
        if path.endswith(".py"):
            continue
        package, rest = ("taskq.store", path[len("taskq/store/"):]) if path.startswith(
            "taskq/store/") else ("taskq", path[len("taskq/"):])
        assert any(fnmatch.fnmatch(rest, glob) and rest.count("/") == glob.count("/")
                   for glob in package_data.get(package, ())), path
    assert pyproject()["project"]["dependencies"] == []


def pyproject():
    try:
        import tomllib
    except ImportError:
        from pip._vendor import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        return tomllib.load(handle)
