"""Start-up shortcuts that keep a CGI request cheap behave exactly like the long way.

The config reader skips configparser for plainly written files, and the
router matches segments instead of compiling regexes; both must give the
same results as the general tools would (the reader hands anything unusual
to configparser, so its errors stay configparser's). That a real CGI request
then never imports configparser is in tests/http/test_imports.py.
"""

import os

import pytest

from conftest import ROOT
from taskq import config, errors
from taskq.router import Router

INI_TEXTS = [
    "",
    "[database]\nbackend = sqlite\n",
    "# comment\n; other comment\n\n[database]\nbackend=mysql\nHost: db.example.com\npassword = a:b=c\n",
    "[api]\napi_key =\ncors_origins = https://a.example, https://b.example\n",
    "[database]\r\nport = 3307\r\n  # indented comment\r\n\r\n[queue]\r\nhistory = no\r\n",
    "[log]\nfile = /var/log/taskq.log\nlevel: debug\n",
]

# Each of these needs configparser's rules: continuation lines, [DEFAULT],
# repeats, a key before any section, a line without a delimiter.
INI_TEXTS_FOR_CONFIGPARSER = [
    "[api]\ncors_origins = https://a.example,\n  https://b.example\n",
    "[DEFAULT]\nlevel = info\n",
    "[database]\nport = 1\n[database]\nport = 2\n",
    "[database]\nport = 1\nPORT = 2\n",
    "backend = sqlite\n",
    "[database]\nbackend\n",
    "[database] ; trailing\nbackend = sqlite\n",
    "  [database]\nbackend = sqlite\n",
]


@pytest.mark.parametrize("text", INI_TEXTS + [open(os.path.join(ROOT, "config.example.ini")).read()])
def test_plain_config_is_read_without_configparser_with_the_same_result(text):
    sections = config.simple_ini(text)
    assert sections is not None
    assert sections == config._configparser_sections(text, None)


@pytest.mark.parametrize("text", INI_TEXTS_FOR_CONFIGPARSER)
def test_unusual_config_goes_to_configparser(text):
    assert config.simple_ini(text) is None


@pytest.mark.parametrize("path", ["/tasks/" + "1" * 19, "/tasks/\u0661\u0662", "/tasks/+1", "/tasks//history",
                                  "/task-types/a/b", "tasks/1"])
def test_router_rejects_what_the_rules_do_not_allow(path):
    with pytest.raises(errors.NotFound):
        Router().match("GET", path)


def test_router_reads_long_ids_and_any_type_name_segment():
    router = Router()
    assert router.match("GET", "/tasks/" + "9" * 18) == ("get_task", {"id": int("9" * 18)})
    assert router.match("GET", "/tasks/007/history") == ("task_history", {"id": 7})
    assert router.match("GET", "/task-types/PrismQ.Script:v2") == ("get_type", {"name": "PrismQ.Script:v2"})
