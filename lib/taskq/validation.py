"""Checking request fields and task params: pure functions, no I/O.

Every check raises BadRequest (or ValidationFailed) before anything is
written, so a bad request changes nothing. jsonschema is imported only by the
two functions that need it: claim and complete never pay for it.
"""

import re

from .errors import BadRequest, ValidationFailed

TYPE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,255}\Z")
INT32_MAX = 2147483647
TASK_STATUSES = ("pending", "claimed", "completed", "failed", "cancelled")

_JSON_TYPE = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
              int: "an integer", float: "a number", type(None): "null"}


def json_type(value):
    return _JSON_TYPE.get(type(value), type(value).__name__)


def require_object(body, what="Request body"):
    if not isinstance(body, dict):
        raise BadRequest("%s must be a JSON object, not %s" % (what, json_type(body)))
    return body


def _missing(name):
    return BadRequest("Missing required field: %s" % name)


def _wrong(name, expected, value):
    return BadRequest("Field '%s' must be %s, not %s" % (name, expected, json_type(value)))


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


def type_name(value, name="name"):
    if not isinstance(value, str):
        raise _wrong(name, "a string", value)
    if not TYPE_NAME.match(value):
        raise BadRequest("Field '%s' must be 1-255 characters of A-Z a-z 0-9 _ . : -" % name)
    return value


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
    """Raise BadRequest saying why `schema` is not a valid JSON Schema."""
    from jsonschema.exceptions import SchemaError

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


def schema_errors(schema, params):
    """Every way `params` breaks `schema`, as a list of {path, message}."""
    cls = _validator_class(schema)
    errors = sorted(cls(schema).iter_errors(params), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [{"path": _path(e.absolute_path), "message": e.message} for e in errors]


def validate_params(schema, params):
    details = schema_errors(schema, params)
    if details:
        raise ValidationFailed(details=details)
