"""Params checked without importing jsonschema (issue 19) agree with jsonschema.

schemas.fast_verdict decides a schema of plain keywords (type, properties, required,
additionalProperties, items, enum, const, bounds, lengths, pattern) itself; a create then
never imports jsonschema. It must say what the JSON-Schema-Test-Suite says on every case
of those keywords, never accept what the installed jsonschema refuses, and leave to
jsonschema every schema it does not cover, so that taskq's answer (the details of a 400)
is jsonschema's own. Also run on jsonschema 3.2 (the oldest supported).
"""

import glob
import json
import os

import pytest

from conftest import TESTS
from taskq import schemas, validation

SUITE = os.path.join(TESTS, "support", "json_schema_test_suite")
DRAFT7 = "http://json-schema.org/draft-07/schema#"
COVERED = set(schemas._KEYWORDS) | schemas.FAST_IGNORED | {"$schema", "$id"}


def suite_cases():
    """(id, schema, data, valid) of every vendored case; draft 7's schemas name their draft,
    as jsonschema's own suite run picks Draft7Validator for them."""
    cases = []
    for path in sorted(glob.glob(os.path.join(SUITE, "*", "*.json"))):
        draft = os.path.basename(os.path.dirname(path))
        with open(path, encoding="utf-8") as handle:
            groups = json.load(handle)
        for group in groups:
            schema = group["schema"]
            if draft == "draft7" and isinstance(schema, dict) and "$schema" not in schema:
                schema = dict(schema, **{"$schema": DRAFT7})
            for test in group["tests"]:
                name = "%s/%s: %s: %s" % (draft, os.path.basename(path), group["description"],
                                          test["description"])
                cases.append((name, schema, test["data"], test["valid"]))
    return cases


CASES = suite_cases()


def jsonschema_details(schema, params):
    """What taskq answered before issue 19: jsonschema's errors, as schema_errors renders them."""
    found = list(schemas.validator(schema).iter_errors(params))
    found.sort(key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [{"path": validation._path(e.absolute_path), "message": e.message} for e in found]


def keywords(schema):
    """Every keyword of a schema and its subschemas (names under properties are not)."""
    found = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for word, value in node.items():
                found.add(word)
                if word in ("properties", "definitions", "$defs", "patternProperties"):
                    stack.extend(value.values() if isinstance(value, dict) else ())
                elif word not in ("enum", "const", "default", "examples"):
                    stack.extend(value if isinstance(value, list) else [value])
    return found


def test_the_fast_path_says_what_the_suite_says_on_every_case_it_decides():
    decided = 0
    for name, schema, data, valid in CASES:
        verdict = schemas.fast_verdict(schema, data)
        if verdict is not None:
            decided += 1
            assert verdict is valid, name
    assert decided > 300, decided  # it does decide: not a path that always steps aside


def test_the_fast_path_steps_aside_only_for_what_it_does_not_cover():
    """A suite case left to jsonschema uses a keyword outside the fast path's (or a
    shape it does not take: items as an array, a root that is a boolean)."""
    left = [name for name, schema, data, valid in CASES
            if schemas.fast_verdict(schema, data) is None and keywords(schema) <= COVERED
            and isinstance(schema, dict)
            and not any(isinstance(node.get("items"), list)
                        for node in _nodes(schema) if isinstance(node, dict))]
    assert left == []


def _nodes(schema):
    stack, out = [schema], []
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, dict):
            for word, value in node.items():
                if word in ("enum", "const", "default", "examples"):
                    continue
                if isinstance(value, dict):
                    stack.extend(value.values() if word in ("properties", "$defs", "definitions")
                                 else [value])
                elif isinstance(value, list):
                    stack.extend(value)
    return out


def test_what_the_fast_path_accepts_the_installed_jsonschema_accepts_on_every_suite_case():
    for name, schema, data, valid in CASES:
        if schemas.fast_verdict(schema, data) is True:
            assert jsonschema_details(schema, data) == [], name


def test_taskq_answers_jsonschemas_own_details_for_every_suite_case():
    for name, schema, data, valid in CASES:
        if not isinstance(schema, dict):
            continue  # a param_schema is an object
        assert validation.schema_errors(schema, data) == jsonschema_details(schema, data), name


def test_a_failing_create_names_what_jsonschema_names():
    schema = {"type": "object", "required": ["url"], "additionalProperties": False,
              "properties": {"url": {"type": "string", "minLength": 1}, "n": {"maximum": 3}}}
    params = {"n": 4, "x": 1, "y": 2}
    assert validation.schema_errors(schema, params) == jsonschema_details(schema, params)
    assert {"path": "$", "message": "'url' is a required property"} in \
        validation.schema_errors(schema, params)


@pytest.mark.parametrize("schema", [
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"},  # 1.0 is not one
    {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 1, "exclusiveMaximum": True},
    {"$schema": "http://json-schema.org/draft-03/schema#"},
    {"$schema": "http://json-schema.org/schema#"},
    {"properties": {"a": {"$ref": "#/definitions/a"}}, "definitions": {"a": {}}},
    {"multipleOf": 2}, {"uniqueItems": True}, {"x-custom": 1}, {"items": [{}]},
    {"additionalProperties": False, "patternProperties": {"^a": {}}},
    {"required": "a"}, {"type": "date"}, {"minimum": True}, {"enum": {"a": 1}},
    {"properties": {"a": {"pattern": "("}}},
    {"properties": {"a": {"$schema": DRAFT7}}}, {"properties": {"a": {"$id": "#a"}}},
])
def test_schemas_beyond_the_fast_path_are_left_to_jsonschema(schema):
    assert schemas.fast_verdict(schema, {"a": "1"}) is None


def test_format_is_not_asserted_as_jsonschema_without_a_format_checker_does_not():
    for fmt, value in (("email", "not an address"), ("uri", "::"), ("date-time", "yesterday"),
                       ("ipv4", "999.1.1.1"), ("uuid", "x")):
        schema = {"type": "string", "format": fmt}
        assert schemas.fast_verdict(schema, value) is True
        assert jsonschema_details(schema, value) == []


def test_a_pattern_on_the_fast_path_still_runs_under_the_cpu_budget():
    from taskq.errors import BadRequest

    assert schemas.fast_verdict({"pattern": "^(a|a)*$"}, "a") is True
    with pytest.raises(BadRequest) as refused:
        validation.validate_params({"type": "string", "pattern": "^(a|a)*$"}, "a" * 60 + "!", [0.3])
    assert "CPU" in refused.value.message


# -- generated schemas and params ----------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NAMES = st.sampled_from(["a", "b", "c"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, 2.5, -1.0]),
                    st.sampled_from(["", "a", "ab", "abc", "b1", "\u00e9"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(NAMES, inner, max_size=3)), max_leaves=6)
TYPES = st.sampled_from(["array", "boolean", "integer", "null", "number", "object", "string"])
BOUND = st.one_of(st.integers(-2, 3), st.sampled_from([0.5, 1.0, 2.0]))
LENGTH = st.one_of(st.integers(0, 3), st.just(1.0))


def schemas_from(inner):
    return st.fixed_dictionaries({}, optional={
        "type": st.one_of(TYPES, st.lists(TYPES, min_size=1, max_size=3, unique=True)),
        "properties": st.dictionaries(NAMES, inner, max_size=3),
        "additionalProperties": st.one_of(st.booleans(), inner),
        "required": st.lists(NAMES, max_size=3, unique=True),
        "items": inner,
        "enum": st.lists(VALUES, min_size=1, max_size=3),
        "const": VALUES,
        "pattern": st.sampled_from(["^a", "b$", "^[a-c]*$", "\\d", "^$", "^(a|b)+$"]),
        "minimum": BOUND, "maximum": BOUND, "exclusiveMinimum": BOUND, "exclusiveMaximum": BOUND,
        "minLength": LENGTH, "maxLength": LENGTH, "minItems": LENGTH, "maxItems": LENGTH,
        "minProperties": LENGTH, "maxProperties": LENGTH,
        "format": st.sampled_from(["email", "uri", "date-time"]), "title": st.just("t"),
    })


SCHEMAS = st.recursive(st.one_of(st.booleans(), schemas_from(st.just({}))), schemas_from,
                       max_leaves=5)
ROOTS = st.tuples(schemas_from(SCHEMAS), st.sampled_from(
    [None, DRAFT7, "http://json-schema.org/draft-06/schema#",
     "https://json-schema.org/draft/2019-09/schema", "https://json-schema.org/draft/2020-12/schema"]))


def jsonschema_is_4_or_later():
    from importlib.metadata import version

    return int(version("jsonschema").split(".")[0]) >= 4


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(ROOTS, VALUES)
def test_on_generated_schemas_and_params_the_fast_path_agrees_with_jsonschema(root, params):
    schema, draft = root
    if draft:
        schema = dict(schema, **{"$schema": draft})
    verdict = schemas.fast_verdict(schema, params)
    assert verdict is not None, schema  # every generated keyword is one it covers
    valid = jsonschema_details(schema, params) == []
    if verdict:
        assert valid
    elif jsonschema_is_4_or_later():
        assert not valid  # exact; 3.2 matches [0] to an enum of [false], the suite does not
    assert validation.schema_errors(schema, params) == jsonschema_details(schema, params)
