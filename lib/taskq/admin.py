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
# A lottery round doubles its batch while batches come back full, up to this
# many tasks per kind (and HISTORY_BATCH_FACTOR times as many history rows):
# bigger batches cost less per row, and one stays a short transaction.
MAX_ROUND_BATCH = 800
PER_TASK_KINDS = ("history", "claim_requests")  # batches of HISTORY_BATCH_FACTOR x size


def _batch(store, config, batch):
    return store.purge(config.retention_seconds(), config.retention["history_days"], batch)


def _full(done, size):
    """True when some kind filled its batch, so old rows of it may remain
    (task_runs: any row deleted, since a batch takes at most 12 periods)."""
    for kind, n in done.items():
        if kind == "runs":
            if n:
                return True
        elif n >= size * (HISTORY_BATCH_FACTOR if kind in PER_TASK_KINDS else 1):
            return True
    return False


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
        if not _full(done, size):  # every kind ran out of old rows
            more = False
            break
    return totals, more


def retention_view(config):
    """[retention] as an answer shows it: days (a fraction for hours) and seconds."""
    seconds = dict(config.retention_seconds(), history=config.retention["history_days"])
    return ({kind: (s // 86400 if s % 86400 == 0 else round(s / 86400.0, 6))
             for kind, s in seconds.items()}, seconds)


def purge(ctx):
    body = ctx.request.json() if ctx.request.content_length() else {}
    max_rows = v.integer(body, "max_rows", low=1, high=MAX_PURGE_ROWS, default=DEFAULT_PURGE_ROWS)
    totals, more = purge_until(ctx.store, ctx.config, max_rows)
    days, seconds = retention_view(ctx.config)
    return 200, "Purged %d row(s)" % sum(totals.values()), {
        "deleted": totals, "total": sum(totals.values()), "more": more,
        "retention": days, "retention_seconds": seconds}


def recount(ctx):
    """The counters GET /stats and the types show, recounted from the rows
    (the upgrade step runs this too): for a drift nobody can explain later."""
    fixed = ctx.store.recount()
    changed = len(fixed["task_counts"]) + len(fixed["usage_count"])
    return 200, ("Counters recounted: %d corrected" % changed if changed else
                 "Counters recounted: all were right"), fixed


def collect(ctx):
    """The lottery's round, sized from the backlog: batch after batch while
    batches come back full (each twice the last, up to MAX_ROUND_BATCH) and the
    next one, at the last one's pace, still ends within gc_time_ms; so a round
    with nothing old costs one batch, and one that is behind works up to the
    time budget. Returns ({kind: rows}, batches)."""
    import time

    r = ctx.config.retention
    budget = r["gc_time_ms"] / 1000.0
    size = r["gc_batch"]
    top = max(size, MAX_ROUND_BATCH)
    totals = {}
    batches = 0
    start = time.monotonic()
    while True:
        began = time.monotonic()
        done = _batch(ctx.store, ctx.config, size)
        batches += 1
        for kind, n in done.items():
            totals[kind] = totals.get(kind, 0) + n
        if not _full(done, size):
            break
        now = time.monotonic()
        grown = min(size * 2, top)
        if now - start + (now - began) * grown / size > budget:
            break
        size = grown
    return totals, batches
