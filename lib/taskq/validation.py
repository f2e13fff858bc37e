"""Checking request fields and task params: pure functions, no I/O.

Every check raises BadRequest (or ValidationFailed) before anything is
written, so a bad request changes nothing. jsonschema is imported only by the
functions that need it: claim and complete never pay for it, and a create only
when its params fail or its schema is beyond schemas.fast_verdict.
"""

import re

from .errors import BadRequest, ValidationFailed

TYPE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,255}\Z")
REQUEST_KEY = re.compile(r"[\x21-\x7e]{1,128}\Z")
INT32_MAX = 2147483647
TASK_STATUSES = ("pending", "claimed", "completed", "failed", "cancelled", "scheduled", "waiting")
REF = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
MAX_DELAY_SECONDS = 10 * 366 * 86400  # run_at / delay_seconds: at most ten years ahead

_JSON_TYPE = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
              int: "an integer", float: "a number", type(None): "null"}


# -- values JSON cannot carry ------------------------------------------------
# RFC 8259 has no NaN or Infinity, a lone UTF-16 surrogate is not Unicode
# (UTF-8 cannot encode it, so neither the database nor the answer could),
# and Python's decoder and encoder recurse once per level. One pass over the
# parsed body finds them and names the field, before any handler runs.
MAX_JSON_DEPTH = 100  # as MySQL's JSON type; jsonschema and json.dumps stay far from the stack limit
MAX_INT_DIGITS = 4300  # Python's own limit for int(str) (3.11, and 3.8.14+ / 3.9.14+ / 3.10.7+)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def loads_body(text):
    """Parse a request body into Python values; 400 naming the field of any
    value JSON cannot carry (non-finite number, lone surrogate, nesting deeper
    than MAX_JSON_DEPTH).

    Ordinary bodies pay little: a float literal goes through one Python call
    (to see 1e400 become inf), the walk that names a field runs only when
    something was found or the text holds a surrogate escape, and the depth
    count only when the text has more brackets than MAX_JSON_DEPTH. Integers
    of more than 4300 digits are refused by Python itself (3.8.14+)."""
    import json

    found = []

    def parse_float(literal):
        value = float(literal)
        if value - value != 0.0:  # inf (nan cannot come from a literal)
            found.append(literal)
        return value

    try:
        body = json.loads(text, parse_float=parse_float, parse_constant=_reject_constant)
    except RecursionError:
        raise BadRequest("Request body is nested too deeply: JSON may nest at most %d levels"
                         % MAX_JSON_DEPTH) from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise BadRequest("Request body holds an integer of more than %d digits"
                             % MAX_INT_DIGITS) from None
        raise BadRequest("Request body is not valid JSON: %s" % exc) from None
    if (found or ("\\u" in text and _SURROGATE_ESCAPE.search(text))
            or (text.count("[") + text.count("{") > MAX_JSON_DEPTH and _too_deep(body))):
        check_json_value(body)
    return body


def _too_deep(value):
    """True when containers nest deeper than MAX_JSON_DEPTH: level by level,
    containers only, no paths (a third of json.loads' time on a 1 MB body
    of 20,000 small objects)."""
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return True
        below = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    below.append(child)
        level = below
    return False


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def check_json_value(value, where=None):
    """Raise BadRequest naming the first field (as `params.items[2].x`) whose
    value JSON cannot carry; `where` prefixes the path. Pure and iterative, so
    any depth is safe."""
    stack = [(value, where, 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth >= MAX_JSON_DEPTH and isinstance(node, (dict, list)):  # the body is level 1
            raise BadRequest("Field '%s' is nested deeper than %d levels"
                             % (_field(path, 60), MAX_JSON_DEPTH))
        if isinstance(node, str):
            found = _SURROGATE.search(node)
            if found:
                raise BadRequest("Field '%s' holds a lone UTF-16 surrogate (\\u%04x), which is "
                                 "not a Unicode character" % (_field(path), ord(found.group())))
        elif isinstance(node, float):
            if node - node != 0.0:
                raise BadRequest("Field '%s' holds a number JSON cannot carry (out of range "
                                 "of a 64-bit float)" % _field(path))
        elif isinstance(node, dict):
            for key, item in node.items():
                name = key if path is None else "%s.%s" % (path, key)
                if _SURROGATE.search(key):
                    raise BadRequest("Field '%s' has a key holding a lone UTF-16 surrogate"
                                     % _field(path or "body"))
                stack.append((item, name, depth + 1))
        elif isinstance(node, list):
            for index in range(len(node) - 1, -1, -1):
                stack.append((node[index], "%s[%d]" % (path or "body", index), depth + 1))
    return value


def _field(path, limit=200):
    path = path or "body"
    return path if len(path) <= limit else path[:limit] + "..."


def json_safe(value):
    """`value` with what JSON cannot carry replaced: a non-finite number by
    null (as JavaScript's JSON.stringify does), a lone surrogate by U+FFFD.
    For rows stored before those were refused, so one old row cannot make a
    whole answer invalid JSON."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, float):
        return value if value - value == 0.0 else None
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def check_text(value, name, what="Field"):
    """A string from outside JSON (a query parameter): same rule as in a body."""
    if _SURROGATE.search(value):
        raise BadRequest("%s '%s' holds a lone UTF-16 surrogate, which is not a Unicode "
                         "character" % (what, name))
    return value


def like_pattern(value, name, what="Field"):
    """A LIKE pattern on type names: no control characters. SQLite ends a
    pattern at NUL and MariaDB does not, so "%\\0" matched every type on one
    and none on the other; type names never hold a control character."""
    if value is not None and _CONTROL.search(value):
        raise BadRequest("%s '%s' must not contain control characters" % (what, name))
    return value


def no_nul(value, name):
    """Text searched for inside the database: no NUL, where SQLite's string
    functions stop and MySQL's do not."""
    if value is not None and "\x00" in value:
        raise BadRequest("Field '%s' must not contain NUL (U+0000)" % name)
    return value


def json_type(value):
    return _JSON_TYPE.get(type(value), type(value).__name__)


def require_object(body, what="Request body"):
    if not isinstance(body, dict):
        raise BadRequest("%s must be a JSON object, not %s" % (what, json_type(body)))
    return body


def _missing(name):
    return BadRequest("Missing required field: %s" % name,
                      summary="Missing required fields: %s" % name)


def required_fields(body, names):
    """400 naming every missing one at once, in TaskManager's words."""
    missing = [name for name in names if body.get(name) is None]
    if missing:
        text = "Missing required fields: %s" % ", ".join(missing)
        raise BadRequest(text, summary=text)


def _wrong(name, expected, value):
    return BadRequest("Field '%s' must be %s, not %s" % (name, expected, json_type(value)))


def known_fields(body, allowed, what):
    """400 naming the first field (in sorted order) of `body` that `allowed` lacks."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest("Unknown field %r in %s (it would be ignored): allowed are %s"
                         % (unknown[0], what, ", ".join(sorted(allowed))))


def name_list(body, name, max_items):
    """An optional non-empty array of type names (each as type_name checks it)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not 1 <= len(value) <= max_items:
        raise BadRequest("Field '%s' must be an array of 1 to %d type names" % (name, max_items))
    return [type_name(item, name) for item in value]


def string(body, name, required=True, max_length=255, min_length=1, default=None):
    value = body.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return default
    if not isinstance(value, str):
        raise _wrong(name, "a string", value)
    if not min_length <= len(value) <= max_length:
        raise BadRequest("Field '%s' must be %d to %d characters long" % (name, min_length, max_length))
    return value


def request_key(body):
    """A claim's optional request_key: 1-128 printable ASCII characters, no spaces."""
    value = string(body, "request_key", required=False, max_length=128)
    if value is not None and not REQUEST_KEY.match(value):
        raise BadRequest("Field 'request_key' must be printable ASCII without spaces")
    return value


def integer(body, name, required=False, low=-INT32_MAX, high=INT32_MAX, default=None):
    value = body.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise _wrong(name, "an integer", value)
    if not low <= value <= high:
        raise BadRequest("Field '%s' must be between %d and %d" % (name, low, high))
    return value


def number(body, name, low, high, default=None):
    """An optional JSON number between low and high (a float)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(name, "a number", value)
    if not low <= value <= high:
        raise BadRequest("Field '%s' must be between %s and %s" % (name, low, high))
    return float(value)


def boolean(body, name, required=True, default=None):
    value = body.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return default
    if not isinstance(value, bool):
        raise _wrong(name, "a boolean", value)
    return value


def obj(body, name, required=True):
    value = body.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return None
    if not isinstance(value, dict):
        raise _wrong(name, "an object", value)
    return value


def choice(body, name, allowed, upper=False):
    """An optional field that must be one of `allowed` (upper: compared in upper case)."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str) and (value in allowed or upper and value.upper() in allowed
                                   and value in (value.upper(), value.lower())):
        return value.upper() if upper else value
    summary = CHOICE_SUMMARIES.get(name)
    raise BadRequest("Field '%s' must be one of %s" % (name, ", ".join(allowed)),
                     summary=summary and summary % ", ".join(allowed))


# TaskManager's own words for a bad sort (its later version's, on claims and lists)
CHOICE_SUMMARIES = {"sort_by": "Invalid sort_by field. Allowed values: %s",
                    "sort_order": "Invalid sort_order. Allowed values: %s"}


def schema_object(body, name):
    """A JSON Schema given as an object or as a JSON string holding one (PHP clients send either)."""
    value = body.get(name)
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise BadRequest("Field '%s' is a string but not valid JSON" % name,
                             summary="Invalid JSON schema format") from None
        if value == []:
            return {}
        if not isinstance(value, dict):
            raise BadRequest("Field '%s' must hold a JSON object, not %s" % (name, json_type(value)))
        return value
    return php_obj(body, name)


def php_obj(body, name, required=True):
    """An object field that also takes [] for {}: PHP's json_encode writes an empty
    array for an empty object, and both TaskManager versions accept it."""
    if body.get(name) == []:
        return {}
    return obj(body, name, required)


def type_name(value, name="name"):
    if not isinstance(value, str):
        raise _wrong(name, "a string", value)
    if not TYPE_NAME.match(value):
        raise BadRequest("Field '%s' must be 1-255 characters of A-Z a-z 0-9 _ . : -" % name)
    return value


_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
                        r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?\Z")


def timestamp(body, name, required=False):
    """An ISO-8601 date-time as an aware UTC datetime; without an offset it is UTC."""
    from datetime import datetime, timedelta, timezone

    value = body.get(name)
    if value is None:
        if required:
            raise _missing(name)
        return None
    if not isinstance(value, str):
        raise _wrong(name, "an ISO-8601 date-time string", value)
    match = _TIMESTAMP.match(value.strip())
    if not match:
        raise BadRequest("Field '%s' must be an ISO-8601 date-time like 2026-01-31T09:30:00Z" % name)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute),
                          int(second or 0), int((fraction or "0")[:6].ljust(6, "0")),
                          tzinfo=timezone.utc)
    except ValueError as exc:
        raise BadRequest("Field '%s' is not a real date-time: %s" % (name, exc)) from None
    if offset and offset.upper() != "Z":
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
        moment -= delta if offset[0] == "+" else -delta
    if not 2000 <= moment.year <= 9000:
        raise BadRequest("Field '%s' must be a date between the years 2000 and 9000" % name)
    return moment


def iso_utc(moment):
    """An aware datetime as the API writes times: 2026-01-31T09:30:00Z (whole seconds)."""
    from datetime import timezone

    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_time(body):
    """(run_at, delay_seconds) of a create body: at most one of them, or (None, None)."""
    if body.get("run_at") is not None and body.get("delay_seconds") is not None:
        raise BadRequest("Fields 'run_at' and 'delay_seconds' exclude each other; give one")
    delay = integer(body, "delay_seconds", low=0, high=MAX_DELAY_SECONDS)
    return timestamp(body, "run_at"), delay or None


MAX_AGE_SECONDS = 100 * 366 * 86400  # the widest age filter of a task list
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text, name):
    """Seconds from '90', '90s', '15m', '2h', '7d' or '1w' (the dashboard's age fields); pure."""
    found = re.match(r"^\s*([0-9]{1,12})\s*([a-z]*)\s*$", text.lower())
    if not found or found.group(2) not in DURATION_UNITS:
        raise BadRequest("'%s' must be a duration such as 90s, 30m, 2h or 7d" % name)
    seconds = int(found.group(1)) * DURATION_UNITS[found.group(2)]
    if seconds > MAX_AGE_SECONDS:
        raise BadRequest("'%s' must be at most 100 years" % name)
    return seconds


def query_int(query, name, default, low, high):
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("Query parameter '%s' must be a whole number" % name) from None
    if not low <= value <= high:
        raise BadRequest("Query parameter '%s' must be between %d and %d" % (name, low, high))
    return value


def query_bool(query, name, default):
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    low = raw.lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no"):
        return False
    raise BadRequest("Query parameter '%s' must be true or false" % name)


def _validator_class(schema):
    from jsonschema import validators

    return validators.validator_for(schema)


def check_schema(schema):
    """Raise BadRequest saying why `schema` is not a valid JSON Schema, or not a safe
    one (remote $ref, $ref cycles, exponential patterns, sizes: schemas.check)."""
    from . import schemas
    from jsonschema.exceptions import SchemaError

    schemas.check(schema)

    cls = _validator_class(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = _path(exc.path)
        raise BadRequest("param_schema is not a valid JSON Schema: %s (at %s)" % (exc.message, where)) from None


def _path(parts):
    out = "$"
    for part in parts:
        out += "[%d]" % part if isinstance(part, int) else "." + str(part)
    return out


def schema_errors(schema, params, budget=None):
    """Every way `params` breaks `schema`, as a list of {path, message}; within a CPU
    budget (a one-item list of seconds left, shared by a request's items)."""
    from . import schemas

    if budget is None:
        budget = [schemas.VALIDATION_CPU_SECONDS]
    found = schemas.errors_within_budget(schema, params, budget)
    errors = sorted(found, key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [{"path": _path(e.absolute_path), "message": e.message} for e in errors]


def stored_schema(schema_json):
    """A type's stored param_schema, checked as register does: one stored before
    these checks (or written straight into the table) may be hostile."""
    import json

    from . import schemas

    schema = json.loads(schema_json)
    try:
        schemas.check(schema)
    except BadRequest as exc:
        raise BadRequest("This type's stored param_schema is unsafe and is not used (%s); an "
                         "admin must register the type again" % exc.message) from None
    return schema


def validate_params(schema, params, budget=None):
    details = schema_errors(schema, params, budget)
    if details:
        raise ValidationFailed(details=details)


def ref(body, name="ref"):
    """A batch item's optional `ref`: 1-64 characters of A-Z a-z 0-9 _ . : -."""
    value = string(body, name, required=False, max_length=64)
    if value is not None and not REF.match(value):
        raise BadRequest("Field '%s' must be 1 to 64 characters of A-Z a-z 0-9 _ . : -" % name)
    return value


def depends_on(body, max_parents):
    """(task ids, refs) of a create item's optional `depends_on`: an array of
    at most max_parents entries, each a task id (an integer) or the ref of an
    earlier item of the same batch (a string). Repeats count once."""
    value = body.get("depends_on")
    if value is None:
        return [], []
    if not isinstance(value, list):
        raise _wrong("depends_on", "an array of task ids and refs", value)
    if len(value) > max_parents:
        raise BadRequest("Field 'depends_on' may name at most %d parents, not %d"
                         % (max_parents, len(value)))
    ids, refs = [], []
    for index, entry in enumerate(value):
        name = "depends_on[%d]" % index
        if isinstance(entry, int) and not isinstance(entry, bool):
            if not 1 <= entry <= 2 ** 62:
                raise BadRequest("Field '%s' must be a task id between 1 and %d" % (name, 2 ** 62))
            if entry not in ids:
                ids.append(entry)
        elif isinstance(entry, str):
            if not REF.match(entry):
                raise BadRequest("Field '%s' must be a ref: 1 to 64 characters of "
                                 "A-Z a-z 0-9 _ . : -" % name)
            if entry not in refs:
                refs.append(entry)
        else:
            raise BadRequest("Field '%s' must be a task id (an integer) or the ref of an earlier "
                             "item of the batch (a string), not %s" % (name, json_type(entry)))
    return ids, refs
