"""Building a task for the store from a create item (POST /tasks, a batch's item, a
schedule's occurrence): validated against its type, with its dedupe key. Below
both of its users (handlers.py and schedules.py), so neither imports the other.
"""

from . import validation as v
from .errors import BadRequest, NotFound


def prepare_task(ctx, item, types):
    """Validate one create item into a store item (raises BadRequest & co)."""
    from .hashing import dedupe_key

    v.required_fields(item, ("type", "params"))
    name = v.type_name(item.get("type"), "type") if "type" in item else v.string(item, "type")
    params = v.php_obj(item, "params")
    priority = v.integer(item, "priority", default=0)
    run_at, delay_seconds = v.run_time(item)
    from .store.dependencies import MAX_PARENTS, ON_PARENT_FAILURE

    parent_ids, parent_refs = v.depends_on(item, MAX_PARENTS)
    on_parent_failure = v.choice(item, "on_parent_failure", ON_PARENT_FAILURE) or "cancel"
    ref = v.ref(item)
    if name not in types:
        types[name] = ctx.store.get_type(name)
    task_type = types[name]
    if task_type is None:
        raise NotFound("Task type not found: %s" % name)
    if not task_type["is_active"]:
        raise BadRequest("Task type is inactive: %s" % name, summary="Task type is not active")
    if ctx.config.queue["schema_validation"]:
        if "_schema" not in task_type:
            task_type["_schema"] = v.stored_schema(task_type["param_schema_json"])
        if ctx.schema_budget is None:  # CPU seconds the whole request may spend validating
            from .schemas import VALIDATION_CPU_SECONDS

            ctx.schema_budget = [VALIDATION_CPU_SECONDS]
        v.validate_params(task_type["_schema"], params, ctx.schema_budget)
    from .hashing import canonical_json

    scope = task_type.get("dedupe_scope") or "always"
    return {"type_id": task_type["id"], "type": name, "params_json": canonical_json(params),
            "dedupe_key": dedupe_key(name, params) if scope != "off" else _unshared_key(),
            "dedupe_scope": scope, "priority": priority,
            "max_attempts": task_type["max_attempts"] or ctx.config.queue["max_attempts"],
            "claim_timeout": task_type["claim_timeout"],
            "run_at": run_at, "delay_seconds": delay_seconds,
            "depends_on": parent_ids, "depends_on_refs": parent_refs,
            "on_parent_failure": on_parent_failure, "ref": ref}


def _unshared_key():
    """A dedupe_key no other task can have: for types whose dedupe scope is off."""
    import os

    return "~" + os.urandom(16).hex()
