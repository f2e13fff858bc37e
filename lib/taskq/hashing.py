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
    return sha256_hex(key)


def _sha256():
    """The built-in SHA-256: hashlib imports OpenSSL, which costs a CGI request a few
    milliseconds (about 3 ms of a create's 55 on Debian's python3)."""
    try:
        from _sha2 import sha256  # Python 3.12+
    except ImportError:
        try:
            from _sha256 import sha256
        except ImportError:  # pragma: no cover - a build without the built-in modules
            from hashlib import sha256
    return sha256


def sha256_hex(text):
    """SHA-256 of a string's UTF-8, as 64 hex digits."""
    return _sha256()(text.encode("utf-8", "replace")).hexdigest()


def dedupe_key(type_name, params):
    """sha256 of `type + ":" + canonical JSON of params`, as 64 hex digits."""
    payload = type_name + ":" + canonical_json(params)
    return _sha256()(payload.encode("utf-8")).hexdigest()
