"""Admin routes: scoped API keys and retention (POST /admin/purge, the lottery).

A key is `tqk_` + 43 URL-safe characters (256 random bits). It is shown once,
when it is made; the database keeps its SHA-256 (hashing.api_key_hash says
why a fast hash is enough) and its first 12 characters as a prefix, which
lists and logs may show. install.py's --create-key / --list-keys /
--revoke-key / --purge call the same functions as these routes.
"""

import re

from . import validation as v
from .errors import BadRequest, NotFound
from .router import ROLES
from .store.base import HISTORY_BATCH_FACTOR

KEY_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
PREFIX_LENGTH = 12
MAX_PURGE_ROWS = 100000
DEFAULT_PURGE_ROWS = 10000


def key_name(value, field="name"):
    if not isinstance(value, str):
        raise BadRequest("Field '%s' must be a string, not %s" % (field, v.json_type(value)))
    if not KEY_NAME.match(value):
        raise BadRequest("Field '%s' must be 1-64 characters of A-Z a-z 0-9 _ . : -" % field)
    return value


def role_name(value, field="role"):
    if value not in ROLES:
        raise BadRequest("Field '%s' must be one of %s" % (field, ", ".join(ROLES)))
    return value


def key_view(row):
    """What a listing shows of a key: never the key, never its hash."""
    return {"id": row["id"], "name": row["name"], "role": row["role"], "prefix": row["prefix"],
            "created_at": row["created_at"], "last_used_at": row["last_used_at"]}


def make_key(store, name, role):
    """Create a key; returns its view plus `key`, the only time the key exists outside its holder."""
    import secrets

    from .hashing import KEY_PREFIX, api_key_hash

    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = store.create_key(key_name(name), role_name(role), key[:PREFIX_LENGTH], api_key_hash(key))
    view = key_view(row)
    view["key"] = key
    return view


def create_key(ctx):
    body = ctx.request.json()
    if "name" not in body:
        raise BadRequest("Missing required field: name")
    if "role" not in body:
        raise BadRequest("Missing required field: role")
    view = make_key(ctx.store, body["name"], body["role"])
    return 201, "API key created: copy it now, it is not shown again", view


def list_keys(ctx):
    keys = [key_view(row) for row in ctx.store.list_keys()]
    return 200, "API keys", {"keys": keys, "count": len(keys)}


def revoke_key(ctx, name):
    key_name(name)
    if not ctx.store.revoke_key(name):
        raise NotFound("API key not found: %s" % name)
    return 200, "API key revoked", {"name": name, "revoked": True}


# -- retention ---------------------------------------------------------------
def _batch(store, config, batch):
    r = config.retention
    return store.purge(config.retention_days(), r["history_days"], batch)


def purge_until(store, config, max_rows, batch=None):
    """Purge batch after batch until nothing old is left or max_rows are gone;
    returns ({kind: rows}, more) where more says old rows may remain."""
    batch = batch or config.retention["gc_batch"]
    totals = {}
    deleted = 0
    more = True
    while deleted < max_rows:
        size = min(batch, max_rows - deleted)
        done = _batch(store, config, size)
        for kind, n in done.items():
            totals[kind] = totals.get(kind, 0) + n
        deleted += sum(done.values())
        if all(n < size * (HISTORY_BATCH_FACTOR if kind == "history" else 1)
               for kind, n in done.items()):  # every kind ran out of old rows
            more = False
            break
    return totals, more


def purge(ctx):
    body = ctx.request.json() if ctx.request.content_length() else {}
    max_rows = v.integer(body, "max_rows", low=1, high=MAX_PURGE_ROWS, default=DEFAULT_PURGE_ROWS)
    totals, more = purge_until(ctx.store, ctx.config, max_rows)
    return 200, "Purged %d row(s)" % sum(totals.values()), {
        "deleted": totals, "total": sum(totals.values()), "more": more,
        "retention": dict(ctx.config.retention_days(),
                          history=ctx.config.retention["history_days"])}


def collect(ctx):
    """The lottery's share: one batch of each kind, at most gc_batch rows each."""
    _batch(ctx.store, ctx.config, ctx.config.retention["gc_batch"])
