"""Canonical JSON and the dedupe key: pure functions, no I/O."""

import json


def canonical_json(value):
    """One spelling per JSON value: sorted keys, no spaces, UTF-8 kept as is.

    The PHP original hashed the JSON as sent, so {"a":1,"b":2} and
    {"b":2,"a":1} became two tasks. Sorting keys fixes that.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


KEY_PREFIX = "tqk_"


def api_key_hash(key):
    """sha256 of an API key, as 64 hex digits: what the database keeps.

    No slow hash (bcrypt, scrypt) is needed: those protect guessable
    passwords, while a key holds 256 random bits, so even a stolen table
    cannot be reversed by trying keys; a fast hash keeps the check per
    request in microseconds."""
    import hashlib

    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def dedupe_key(type_name, params):
    """sha256 of `type + ":" + canonical JSON of params`, as 64 hex digits."""
    import hashlib

    payload = type_name + ":" + canonical_json(params)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
