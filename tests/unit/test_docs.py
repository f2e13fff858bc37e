"""Docs drift: the example config, the README and the OpenAPI document must
describe exactly what the code does."""

import configparser
import os
import re

from conftest import ROOT
from taskq import config
from taskq.openapi import document
from taskq.router import ROUTES


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
        return handle.read()


def test_config_example_documents_every_key_with_its_default():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(read("config.example.ini"))
    documented = {(s, k) for s in parser.sections() for k in parser[s]}
    assert documented == {(s, k) for s, keys in config.DEFAULTS.items() for k in keys}
    parsed = config.parse(read("config.example.ini"), base_dir=ROOT)
    for section, keys in config.DEFAULTS.items():
        for key, (_, default) in keys.items():
            assert getattr(parsed, section)[key] == default, (section, key)


def test_config_example_parses_as_the_default_config():
    assert config.parse(read("config.example.ini"), base_dir=ROOT).backend == "sqlite"


def test_readme_lists_every_route():
    readme = read("README.md")
    for method, rule, _ in ROUTES:
        assert re.search(r"`%s %s`" % (method, re.escape(rule.replace(":int", ""))), readme), (method, rule)


def test_openapi_documents_every_route():
    paths = document()["paths"]
    for method, rule, name in ROUTES:
        if name.startswith("dashboard."):
            continue  # HTML pages for people, not the API (README lists them)
        assert method.lower() in paths[rule.replace(":int", "")], (method, rule)


def test_readme_names_the_two_commands():
    readme = read("README.md")
    assert "./serve" in readme and "./test" in readme
    ci = read(".ci/run")
    assert "./test" in ci


def test_openapi_document_passes_the_openapi_3_1_validator():
    from openapi_spec_validator import validate

    validate(document())
