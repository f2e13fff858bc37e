"""Canonical JSON and the dedupe key: pure functions, no I/O."""

import json


def canonical_json(value):
    """One spelling per JSON value: sorted keys, no spaces, UTF-8 kept as is.

    The PHP original hashed the JSON as sent, so {"a":1,"b":2} and
    {"b":2,"a":1} became two tasks. Sorting keys fixes that.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def dedupe_key(type_name, params):
    """sha256 of `type + ":" + canonical JSON of params`, as 64 hex digits."""
    import hashlib

    payload = type_name + ":" + canonical_json(params)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
