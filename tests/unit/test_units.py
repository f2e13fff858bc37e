"""Pure units: hashing, validation, config parsing, routing. No I/O."""

import pytest

from taskq import config, errors, hashing, validation
from taskq.router import ROUTES, Router


# -- hashing -------------------------------------------------------------------
def test_dedupe_key_ignores_key_order():
    assert hashing.dedupe_key("T", {"a": 1, "b": {"x": 1, "y": 2}}) == \
        hashing.dedupe_key("T", {"b": {"y": 2, "x": 1}, "a": 1})


def test_dedupe_key_differs_by_type_and_value():
    base = hashing.dedupe_key("T", {"a": 1})
    assert hashing.dedupe_key("U", {"a": 1}) != base
    assert hashing.dedupe_key("T", {"a": 2}) != base
    assert hashing.dedupe_key("T", {"a": "1"}) != base


def test_dedupe_key_is_sha256_of_type_colon_canonical_json():
    import hashlib

    expected = hashlib.sha256('T:{"a":"é","b":[1,2]}'.encode("utf-8")).hexdigest()
    assert hashing.dedupe_key("T", {"b": [1, 2], "a": "é"}) == expected


def test_canonical_json_keeps_unicode_and_has_no_spaces():
    assert hashing.canonical_json({"z": "ü", "a": [1, {"d": 1, "c": 2}]}) == '{"a":[1,{"c":2,"d":1}],"z":"ü"}'


# -- validation ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["PrismQ.Script.Generate", "a", "x:y-z_1", "A" * 255])
def test_type_name_accepts_allowed_characters(name):
    assert validation.type_name(name) == name


@pytest.mark.parametrize("name", ["", "has space", "a/b", "ü", "A" * 256, "a%", "x\n"])
def test_type_name_rejects_other_characters(name):
    with pytest.raises(errors.BadRequest):
        validation.type_name(name)


@pytest.mark.parametrize("value", [True, "1", 1.5, [1], {"a": 1}])
def test_integer_rejects_non_integers(value):
    with pytest.raises(errors.BadRequest, match="integer"):
        validation.integer({"priority": value}, "priority")


def test_integer_accepts_integral_float_and_bounds():
    assert validation.integer({"n": 3.0}, "n") == 3
    with pytest.raises(errors.BadRequest, match="between"):
        validation.integer({"n": 2 ** 31}, "n")


@pytest.mark.parametrize("value", ["true", 1, 0, None])
def test_boolean_is_strict(value):
    with pytest.raises(errors.BadRequest):
        validation.boolean({"success": value}, "success")


def test_string_length_limits():
    assert validation.string({"w": "x" * 255}, "w") == "x" * 255
    with pytest.raises(errors.BadRequest, match="1 to 255"):
        validation.string({"w": "x" * 256}, "w")
    with pytest.raises(errors.BadRequest, match="Missing"):
        validation.string({}, "w")


def test_check_schema_says_why_a_schema_is_invalid():
    with pytest.raises(errors.BadRequest, match="not a valid JSON Schema.*minLength"):
        validation.check_schema({"type": "object", "properties": {"a": {"minLength": "x"}}})


def test_schema_errors_list_every_failure_with_its_path():
    schema = {"type": "object", "required": ["topic"],
              "properties": {"topic": {"type": "string"}, "n": {"type": "integer", "maximum": 5}}}
    details = validation.schema_errors(schema, {"n": 9})
    assert {d["path"] for d in details} == {"$", "$.n"}
    assert all(d["message"] for d in details)
    assert validation.schema_errors(schema, {"topic": "x"}) == []


# -- config ----------------------------------------------------------------------
def test_config_without_file_runs_on_sqlite_defaults():
    parsed = config.parse("")
    assert parsed.backend == "sqlite"
    assert parsed.queue["claim_timeout"] == 300 and parsed.queue["max_attempts"] == 3
    assert parsed.api["max_body_bytes"] == 1048576


def test_config_with_only_api_section_keeps_sqlite_default():
    parsed = config.parse("[api]\napi_key = k\n")
    assert parsed.backend == "sqlite" and parsed.api["api_key"] == "k"


@pytest.mark.parametrize("text, fragment", [
    ("[database]\nbackend = postgres\n", "backend must be one of sqlite, mysql"),
    ("[queue]\nclaim_timeout = soon\n", "claim_timeout must be a whole number"),
    ("[queue]\nmax_attempts = 0\n", "max_attempts must be between"),
    ("[queue]\nhistory = maybe\n", "history must be true or false"),
    ("[nonsense]\n", "unknown section"),
    ("[api]\nkey = 1\n", "unknown key"),
    ("no section header\n", "Invalid configuration file"),
])
def test_malformed_config_names_the_problem(text, fragment):
    with pytest.raises(errors.ConfigError, match=fragment):
        config.parse(text)


def test_relative_sqlite_path_is_relative_to_the_config_file(tmp_path):
    path = tmp_path / "c.ini"
    path.write_text("[database]\nsqlite_path = db/x.sqlite3\n")
    assert config.load(str(path)).database["sqlite_path"] == str(tmp_path / "db" / "x.sqlite3")


def test_ssl_auto_is_off_for_localhost_and_sockets_on_for_remote():
    assert not config.parse("[database]\nhost = 127.0.0.1\n").mysql_ssl_enabled()
    assert not config.parse("[database]\nhost = db.example.com\nunix_socket = /s\n").mysql_ssl_enabled()
    assert config.parse("[database]\nhost = db.example.com\n").mysql_ssl_enabled()
    assert not config.parse("[database]\nhost = db.example.com\nssl = off\n").mysql_ssl_enabled()


# -- routing ---------------------------------------------------------------------
def test_router_matches_literal_before_parameter():
    router = Router()
    assert router.match("POST", "/tasks/claim") == ("claim", {})
    assert router.match("POST", "/tasks/complete") == ("complete_batch", {})
    assert router.match("POST", "/tasks/7/complete") == ("complete", {"id": 7})
    assert router.match("GET", "/tasks/12/") == ("get_task", {"id": 12})


def test_router_answers_405_with_allow_for_known_path():
    with pytest.raises(errors.MethodNotAllowed) as caught:
        Router().match("DELETE", "/tasks/3")
    assert dict(caught.value.headers())["Allow"] == "GET, OPTIONS"


def test_router_answers_404_for_unknown_path_and_non_numeric_id():
    for path in ("/nope", "/tasks/abc", "/tasks/1/unknown"):
        with pytest.raises(errors.NotFound):
            Router().match("GET", path)


def test_every_route_has_a_handler():
    from taskq import docs_ui
    from taskq.app import _handler
    from taskq.router import FILES

    for _, _, name in ROUTES:
        if name in FILES:  # /docs and its assets: files, served by docs_ui
            assert callable(getattr(docs_ui, FILES[name]))
        else:
            assert callable(_handler(name)), name


def test_spread_candidates_keeps_priorities_in_order_and_mixes_within_each():
    from taskq.store.base import spread_candidates

    rows = [(n, 5) for n in range(1, 21)] + [(n, 9) for n in range(21, 26)] + [(99, 0)]
    orders, firsts = set(), set()
    for salt in (0, 1, 7, 2 ** 31, 12345, 987654321, 2 ** 32 - 1) + tuple(range(100, 140)):
        out = spread_candidates(rows, salt)
        assert set(out[:5]) == set(range(21, 26))
        assert sorted(out[5:25]) == list(range(1, 21))
        assert out[25:] == [99]
        orders.add(tuple(out[5:25]))
        firsts.add(out[5])
    assert len(orders) > 40  # another order for (nearly) every salt
    assert len(firsts) > 10  # and claimers do not all start on the same task
    assert spread_candidates([], 1) == []


@pytest.mark.parametrize("code", [1114, 1021])
def test_mysql_table_or_disk_full_is_a_503_disk_full(code):
    import pymysql

    from taskq.store.mysql import translate

    error = translate(pymysql.err.OperationalError(code, "The table 'tasks' is full"))
    assert isinstance(error, errors.DiskFull) and error.status == 503
    assert ("Retry-After", "30") in error.headers()


@pytest.mark.parametrize("value,path", [
    ({"a": [1, {"b": float("inf")}]}, "a[1].b"),
    ({"k": "x\ud800"}, "k"),
    ([[{"z": float("-inf")}]], "body[0][0].z"),
])
def test_check_json_value_names_the_first_bad_field(value, path):
    with pytest.raises(errors.BadRequest) as caught:
        validation.check_json_value(value)
    assert "'%s'" % path in caught.value.message


def test_json_safe_replaces_what_json_cannot_carry():
    value = {"a": [float("nan"), 1.5, "\udc00x"], "\ud800": float("inf")}
    assert validation.json_safe(value) == {"a": [None, 1.5, "\ufffdx"], "\ufffd": None}


# -- task list orders, age durations (GET /tasks, the dashboard's tasks page) --------
@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("15m", 900), ("15 min", 900),
                                          ("2h", 7200), (" 7D ", 7 * 86400), ("1w", 604800),
                                          ("0", 0)])
def test_duration_reads_a_number_with_a_unit(text, seconds):
    from taskq.validation import duration

    assert duration(text, "older") == seconds


@pytest.mark.parametrize("text", ["", "h", "2 hours", "-1h", "1.5h", "2h30m", "١٢h", "9" * 13,
                                  "40000w"])
def test_duration_refuses_anything_else_naming_the_field(text):
    from taskq.validation import duration

    with pytest.raises(errors.BadRequest, match="older"):
        duration(text, "older")


@pytest.mark.parametrize("sort_by,sort_order,sql", [
    (None, None, "id DESC"), ("created_at", "ASC", "id ASC"), ("id", None, "id DESC"),
    ("priority", None, "priority DESC, id DESC"), ("attempts", "ASC", "attempts ASC, id ASC"),
    ("updated_at", "DESC", "updated_at DESC, id DESC")])
def test_list_order_breaks_ties_by_id_the_same_way(sort_by, sort_order, sql):
    from taskq.store.base import list_order

    assert list_order(sort_by, sort_order) == sql


def test_list_order_takes_only_its_columns():
    from taskq.store.base import list_order

    with pytest.raises(ValueError):
        list_order("type; DROP TABLE tasks", None)


@pytest.mark.parametrize("seconds,text", [(45, "45 s"), (60, "1 min"), (5400, "90 min"),
                                          (7200, "2 h"), (86400, "1 d"), (90000, "25 h")])
def test_schedule_interval_is_shown_in_its_largest_exact_unit(seconds, text):
    from taskq.dashboard import every_text

    assert every_text(seconds) == text
