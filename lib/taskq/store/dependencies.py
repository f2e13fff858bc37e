"""Task dependencies: where a child's release, cancellation and return are decided.

A task created with `depends_on` waits (status 'waiting') until each of its
parents is settled; tasks.waiting_on counts the parents not settled yet, and
task_dependencies holds the edges (task_id waits for parent_id). Everything
happens inside the request that changes a parent, in its own transaction:
no sweep, no daemon.

The rules, in one place:
- a parent that ends `completed` settles it for every waiting child;
- a parent that ends `failed` (attempts used up, lease expired on the last
  one) or `cancelled` settles it per the child's on_parent_failure: `run`
  counts it settled; `cancel` (the default) cancels the child, naming the
  parent (cancelled_by), and the child's own waiting children are settled
  the same way in turn;
- a child whose waiting_on reaches 0 becomes pending (or scheduled while
  its run_at is ahead) in the same transaction;
- a retry of a failed or cancelled parent brings back the children its
  failure cancelled (back to waiting, their count of unsettled parents read
  again), and their descendants cancelled because of them; waiting `run`
  children wait for it again. The retried task itself waits again for any of
  its own parents not finished yet (a retry is the operator's word that its
  failed or cancelled parents no longer stop it);
- a rerun of a completed parent changes nothing for its children.

Each parent costs a fixed number of set-based statements, whatever its
number of children: one locking read of its waiting children, then one
UPDATE per kind of change (cancel, decrement, release), keyed by the
parent through task_dependencies_parent. A cascade walks level by level,
only through the cancelled children that have children of their own.

The backends (sqlite.py, mysql.py) supply the SQL, under the same query
names, and five small hooks: _dq (run a named query in the current
transaction), _dep_now (the clock value the queries compare with),
_dep_events (history events), _dep_read (a read outside a write) and
_dep_integrity (their driver's duplicate-key error).
"""

# At most this many parents per task, and this many child links shown by
# GET /tasks/{id}; the graph route answers at most GRAPH_MAX_NODES tasks.
MAX_PARENTS = 100
CHILDREN_SHOWN = 100
GRAPH_MAX_NODES = 1000
# A claim answer carries its parents' results up to this many bytes in all
# (the stored JSON text, in parent id order); the rest say result_omitted.
FAN_IN_BYTES = 64 * 1024
ON_PARENT_FAILURE = ("cancel", "run")
# Statuses a parent is finished in; FAILED_END ones settle per on_parent_failure.
FAILED_END = ("failed", "cancelled")
CHUNK = 500


def _chunks(values, size=CHUNK):
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _marks(values, mark):
    return ", ".join([mark] * len(values))


def creation_plan(parents, mode):
    """(status, waiting_on, cancelled_by) of a new child from its parents'
    [(id, status)] (pure): status None means "as without parents" (pending
    or scheduled). A parent already failed or cancelled cancels a `cancel`
    child at once and is settled for a `run` child; a completed one is settled."""
    unsettled = 0
    for parent_id, status in parents:
        if status == "completed":
            continue
        if status in FAILED_END:
            if mode == "cancel":
                return "cancelled", 0, parent_id
            continue
        unsettled += 1
    return ("waiting" if unsettled else None), unsettled, None


def unsettled_count(mode, statuses):
    """How many of a child's parents (their statuses) are not settled for it (pure)."""
    return sum(1 for status in statuses
               if status != "completed" and not (mode == "run" and status in FAILED_END))


def cancel_message(parent_id, outcome):
    return "cancelled: parent task %d %s" % (parent_id, outcome)


def fan_in(parents, budget=FAN_IN_BYTES):
    """The `parents` member of a claim answer from [(id, type, status, result
    text or None, size)] in id order (pure): results while they fit in
    `budget` bytes together, then `result_omitted` for the others."""
    import json

    out, used = [], 0
    for parent_id, parent_type, status, text, size in parents:
        entry = {"id": parent_id, "type": parent_type, "status": status}
        if size is None:
            entry["result"] = None
        elif text is not None and used + size <= budget:
            entry["result"] = json.loads(text)
            used += size
        else:
            entry["result_omitted"] = True
        out.append(entry)
    return out


class DependencyRules:
    """The dependency half of a store; mixed into SQLiteStore and MySQLStore."""

    # -- creation ------------------------------------------------------
    def _plan_children(self, item, made):
        """(status, waiting_on, cancelled_by, parent ids) for a create item that
        has parents, with the parents locked (MySQL) so none finishes unseen
        meanwhile; or the BadRequest the item gets. made: the ids (or None)
        the earlier items of this create got."""
        from ..errors import BadRequest

        parent_ids = list(item.get("depends_on") or ())
        for position, label in item.get("depends_on_items") or ():
            if made[position] is None:
                return BadRequest("Field 'depends_on' names %s, which was not created" % label)
            parent_ids.append(made[position])
        parent_ids = list(dict.fromkeys(parent_ids))
        found = {}
        for chunk in _chunks(sorted(parent_ids)):
            for parent_id, status in self._dq("dep_lock_parents", chunk,
                                              ids=_marks(chunk, self._mark)).fetchall():
                found[parent_id] = status
        missing = [p for p in parent_ids if p not in found]
        if missing:
            return BadRequest("Field 'depends_on' names task %d, which does not exist" % missing[0],
                              details=[{"path": "depends_on", "message": "no task %d" % missing[0]}])
        status, waiting_on, cancelled_by = creation_plan(
            [(p, found[p]) for p in sorted(parent_ids)], item.get("on_parent_failure") or "cancel")
        return status, waiting_on, cancelled_by, parent_ids, found

    def _link_child(self, task_id, plan, now):
        """Write a new child's edges; cancel it at once when a parent had failed."""
        status, _, cancelled_by, parent_ids, found = plan
        self._dq_many("dep_insert_edge", [(task_id, parent_id) for parent_id in parent_ids])
        if status == "cancelled":
            message = cancel_message(cancelled_by, found[cancelled_by])
            self._dq("dep_cancel_new", (cancelled_by, message, now, now, task_id))
            self._dep_events([(task_id, "cancelled", None, message)], now)

    # -- a parent finishes ---------------------------------------------
    def _settle_children(self, parents, changes, now=None):
        """Parents [(id, outcome)] just ended completed, failed or cancelled:
        settle their waiting children (and the cascade) per the rules above.
        Counter changes go to `changes`."""
        work = list(parents)
        while work:
            parent_id, outcome = work.pop(0)
            rows = self._dq("dep_waiting_children", (parent_id,)).fetchall()
            if not rows:
                continue
            if now is None:
                now = self._dep_now()
            if outcome == "completed":
                cancel, count = [], rows
            else:
                cancel = [row for row in rows if row[2] == "cancel"]
                count = [row for row in rows if row[2] == "run"]
            events = []
            if cancel:
                message = cancel_message(parent_id, outcome)
                self._dq("dep_cancel_children", (parent_id, message, now, now, parent_id))
                for task_id, task_type, _, _, _ in cancel:
                    events.append((task_id, "cancelled", None, message))
                    changes.append((task_type, "waiting", "cancelled"))
                work.extend((task_id, "cancelled") for task_id in self._with_children(
                    [row[0] for row in cancel]))
            if count:
                self._dq("dep_count_settled" if outcome == "completed" else "dep_count_settled_run",
                         (parent_id,))
                released = [row for row in count if row[3] <= 1]
                if released:
                    self._dq("dep_release", (now, now, parent_id))
                    note = "released: parent task %d %s, the last it waited for" % (parent_id,
                                                                                  outcome)
                    for task_id, task_type, _, _, run_at in released:
                        later = run_at is not None and run_at > now
                        events.append((task_id, "released", None, note))
                        changes.append((task_type, "waiting", "scheduled" if later else "pending"))
            self._dep_events(events, now)

    def _with_children(self, task_ids):
        """Those of task_ids that are some task's parent."""
        out = []
        for chunk in _chunks(task_ids):
            out.extend(row[0] for row in self._dq("dep_having_children", chunk,
                                                  ids=_marks(chunk, self._mark)).fetchall())
        return sorted(out)

    # -- a parent is retried -------------------------------------------
    def _retried(self, task_id, task_type, changes, now=None):
        """A failed or cancelled task was just reset to pending (retry): it waits
        again for its own unfinished parents, and brings back what its failure
        cancelled. Returns its status now ('pending' or 'waiting')."""
        if now is None:
            now = self._dep_now()
        status = "pending"
        statuses = [row[0] for row in self._dq("dep_parent_statuses", (task_id,)).fetchall()]
        unfinished = sum(1 for s in statuses if s not in ("completed",) + FAILED_END)
        self._dq("dep_set_waiting", ("waiting" if unfinished else "pending", unfinished, task_id))
        if unfinished:  # its own parents first: a retry never runs a task before them
            status = "waiting"
            changes.append((task_type, "pending", "waiting"))
        self._bring_back([task_id], changes, now)
        return status

    def _bring_back(self, parent_ids, changes, now):
        work = list(parent_ids)
        while work:
            parent_id = work.pop(0)
            self._dq("dep_unsettle_run", (parent_id,))
            rows = self._dq("dep_cancelled_children", (parent_id, parent_id)).fetchall()
            if not rows:
                continue
            modes = {row[0]: row for row in rows}
            parents = {}
            for chunk in _chunks(sorted(modes)):
                for child, parent, status in self._dq("dep_parents_status_of", chunk,
                                                      ids=_marks(chunk, self._mark)).fetchall():
                    parents.setdefault(child, []).append((parent, status))
            events, back = [], {}
            for child, (_, task_type, mode, scope, key, params_json) in sorted(modes.items()):
                statuses = [status for _, status in parents.get(child, [])]
                blockers = sorted(p for p in parents.get(child, []) if p[1] in FAILED_END)
                if mode == "cancel" and blockers:  # another parent still stops it: named instead
                    self._dq("dep_recancel", (blockers[0][0], cancel_message(*blockers[0]), child))
                    continue
                waiting_on = unsettled_count(mode, statuses)
                if scope == "active" and key.startswith("~"):
                    from .base import steer_key

                    try:
                        self._dq("dep_back_keyed", (steer_key({"dedupe_key": key, "dedupe_scope": scope,
                                                               "type": task_type,
                                                               "params_json": params_json}),
                                                    waiting_on, now, child))
                    except self._dep_integrity:  # another active task holds the key now
                        continue
                else:
                    back.setdefault(waiting_on, []).append(child)
                events.append((child, "restored",  None,
                               "brought back: parent task %d was retried" % parent_id))
                changes.append((task_type, "cancelled", "waiting"))
            for waiting_on, ids in sorted(back.items()):
                for chunk in _chunks(ids):
                    self._dq("dep_back", [waiting_on, now] + chunk, ids=_marks(chunk, self._mark))
            self._dep_events(events, now)
            work.extend(self._with_children([event[0] for event in events]))

    # -- reads -----------------------------------------------------------
    def dependencies(self, task_id, child_limit=CHILDREN_SHOWN):
        """{parents, children, children_count, waiting_on, on_parent_failure,
        cancelled_by} of a task ([{id, type, status}] by id; at most
        child_limit children), or None when there is no such task."""
        def work():
            state = self._dq("dep_task_state", (task_id,)).fetchone()
            if state is None:
                return None
            view = lambda rows: [{"id": r[0], "type": r[1], "status": r[2]} for r in rows]  # noqa: E731
            return {"parents": view(self._dq("dep_parents", (task_id,)).fetchall()),
                    "children": view(self._dq("dep_children", (task_id, child_limit)).fetchall()),
                    "children_count": self._dq("dep_children_count", (task_id,)).fetchone()[0],
                    "waiting_on": state[0], "on_parent_failure": state[1],
                    "cancelled_by": state[2]}

        return self._dep_read(work)

    def parents_of(self, task_ids, budget=FAN_IN_BYTES):
        """{task_id: the `parents` of its claim answer (fan_in)} for those of
        task_ids that have parents."""
        def work():
            rows = {}
            for chunk in _chunks(sorted(set(task_ids))):
                for child, parent_id, parent_type, status, text, size in self._dq(
                        "dep_parents_results", [budget] + chunk,
                        ids=_marks(chunk, self._mark)).fetchall():
                    rows.setdefault(child, []).append((parent_id, parent_type, status, text,
                                                       None if size is None else int(size)))
            return {child: fan_in(parents, budget) for child, parents in rows.items()}

        return self._dep_read(work) if task_ids else {}

    def graph(self, task_id, max_nodes=GRAPH_MAX_NODES):
        """The workflow a task belongs to: every task linked to it through
        dependencies either way, (nodes [{id, type, status}] by id, edges
        [{parent, child}], truncated), at most max_nodes nodes; None when
        there is no such task."""
        def work():
            first = self._dq("dep_node", (task_id,)).fetchone()
            if first is None:
                return None
            nodes = {first[0]: first}
            edges = set()
            frontier, truncated = [task_id], False
            while frontier and not truncated:
                found, seen = [], set()
                for chunk in _chunks(frontier):
                    marks = _marks(chunk, self._mark)
                    for child, parent in self._dq("dep_edges_around", chunk + chunk,
                                                  ids=marks).fetchall():
                        edges.add((parent, child))
                        for other in (parent, child):
                            if other not in nodes and other not in seen:
                                seen.add(other)
                                found.append(other)
                if len(nodes) + len(found) > max_nodes:
                    found, truncated = found[:max_nodes - len(nodes)], True
                for chunk in _chunks(found):
                    for row in self._dq("dep_nodes", chunk,
                                        ids=_marks(chunk, self._mark)).fetchall():
                        nodes[row[0]] = row
                frontier = [n for n in found if n in nodes]
            return {"nodes": [{"id": r[0], "type": r[1], "status": r[2]}
                              for _, r in sorted(nodes.items())],
                    "edges": [{"parent": p, "child": c} for p, c in sorted(edges)
                              if p in nodes and c in nodes],
                    "truncated": truncated}

        return self._dep_read(work)

    # -- retention -------------------------------------------------------
    def _forget_edges(self, task_ids):
        """Retention deleted these tasks: their edges go with them."""
        for chunk in _chunks(task_ids):
            marks = _marks(chunk, self._mark)
            self._dq("dep_delete_child_edges", chunk, ids=marks)
            self._dq("dep_delete_parent_edges", chunk, ids=marks)
