"""The claim filter task_type_id and the claim orders sort_by / sort_order,
single and batch, on SQLite and MariaDB (issue 7: the PrismQ frontend and the
later TaskManager's workers send them)."""

import pytest

from conftest import claim, create, db_execute, register, snapshot

ORDERS = [("created_at", "ASC"), ("created_at", "DESC"), ("priority", "ASC"),
          ("priority", "DESC"), ("id", "ASC"), ("id", "DESC"), ("attempts", "ASC"),
          ("attempts", "DESC")]
PRIORITIES = [1, 5, 1, 5, 3, 3]
ATTEMPTS = [2, 0, 0, 1, 2, 1]


def type_id(api, name):
    return api.get("/task-types/%s" % name).data["id"]


@pytest.fixture
def mixed(api, backend_config):
    """Six pending tasks of type 'mix', oldest first, whose priorities and attempts
    disagree with their age; returns (api, [(id, priority, attempts)])."""
    register(api, "mix", max_attempts=10)
    rows = []
    for n, (priority, attempts) in enumerate(zip(PRIORITIES, ATTEMPTS)):
        task_id = create(api, {"n": n}, type="mix", priority=priority)["id"]
        # attempts as earlier failed runs leave them (the retry path is tested below)
        db_execute(backend_config, "UPDATE tasks SET attempts = ? WHERE id = ?", (attempts, task_id))
        rows.append((task_id, priority, attempts))
    return api, rows


def expected(rows, sort_by, sort_order):
    """The order the API promises: the key, ASC or DESC, ties oldest (lowest id) first;
    created_at is creation order, which is id order."""
    sign = -1 if sort_order == "DESC" else 1
    if sort_by in ("created_at", "id"):
        return [r[0] for r in sorted(rows, key=lambda r: sign * r[0])]
    column = 1 if sort_by == "priority" else 2
    return [r[0] for r in sorted(rows, key=lambda r: (sign * r[column], r[0]))]


# -- sort_by / sort_order -------------------------------------------------------------
@pytest.mark.parametrize("sort_by,sort_order", ORDERS)
def test_single_claims_follow_the_requested_order_ties_oldest_first(mixed, sort_by, sort_order):
    api, rows = mixed
    got = []
    for _ in rows:
        response = claim(api, "w", sort_by=sort_by, sort_order=sort_order)
        assert response.status == 200, response
        got.append(response.data["id"])
    assert got == expected(rows, sort_by, sort_order)
    assert claim(api, "w", sort_by=sort_by, sort_order=sort_order).status == 404


@pytest.mark.parametrize("sort_by,sort_order", ORDERS)
def test_batch_claim_takes_the_head_of_the_requested_order(mixed, sort_by, sort_order):
    api, rows = mixed
    first = claim(api, "w", limit=4, sort_by=sort_by, sort_order=sort_order)
    rest = claim(api, "w", limit=4, sort_by=sort_by, sort_order=sort_order)
    want = expected(rows, sort_by, sort_order)
    assert [t["id"] for t in first.data["tasks"]] == want[:4]
    assert [t["id"] for t in rest.data["tasks"]] == want[4:]


def test_default_order_is_still_priority_then_oldest(mixed):
    api, rows = mixed
    got = [claim(api, "w").data["id"] for _ in rows]
    assert got == expected(rows, "priority", "DESC")


@pytest.mark.parametrize("body,want", [
    ({"sort_by": "priority"}, ("priority", "DESC")),
    ({"sort_by": "attempts"}, ("attempts", "ASC")),
    ({"sort_by": "created_at"}, ("created_at", "ASC")),
    ({"sort_order": "ASC"}, ("priority", "ASC")),
    ({"sort_by": "id", "sort_order": "desc"}, ("id", "DESC")),
])
def test_an_omitted_half_of_the_order_takes_its_default(mixed, body, want):
    api, rows = mixed
    assert claim(api, "w", **body).data["id"] == expected(rows, *want)[0]


@pytest.mark.parametrize("field,value", [("sort_by", "name"), ("sort_by", "PRIORITY"),
                                         ("sort_by", 1), ("sort_by", ""), ("sort_order", "up"),
                                         ("sort_order", True), ("sort_order", ["ASC"])])
def test_unknown_sort_field_or_order_is_400_naming_the_allowed_values(mixed, field, value):
    api, _ = mixed
    before = snapshot(api)
    for extra in ({}, {"limit": 3}):
        response = claim(api, "w", **dict(extra, **{field: value}))
        assert response.status == 400, response
        allowed = "created_at, priority, id, attempts" if field == "sort_by" else "ASC, DESC"
        assert field in response.error and allowed in response.error
        # in TaskManager's words (its later version says exactly this)
        assert response.json["message"] == ("Invalid sort_by field. Allowed values: %s" % allowed
                                            if field == "sort_by" else
                                            "Invalid sort_order. Allowed values: ASC, DESC")
    assert snapshot(api) == before


def test_attempts_order_sees_attempts_that_real_retries_left(api):
    register(api, "retry", max_attempts=5)
    first = create(api, {"n": 1}, type="retry")["id"]
    second = create(api, {"n": 2}, type="retry")["id"]
    assert claim(api, "w", sort_by="id", sort_order="DESC").data["id"] == second
    assert api.post("/tasks/%d/complete" % second,
                    {"worker_id": "w", "success": False, "error": "x"}).data["will_retry"]
    assert claim(api, "w", sort_by="attempts", sort_order="DESC").data["id"] == second
    assert claim(api, "w", sort_by="attempts", sort_order="DESC").data["id"] == first


# -- task_type_id ----------------------------------------------------------------------
@pytest.fixture
def two_types(api):
    register(api, "img.resize")
    register(api, "img.crop")
    register(api, "mail.send")
    ids = {name: [create(api, {"n": n}, type=name, priority=p)["id"]
                  for n, p in enumerate(prios)]
           for name, prios in (("img.resize", [0, 0]), ("img.crop", [9, 9]), ("mail.send", [5]))}
    return api, ids


def test_task_type_id_claims_only_that_type_single_and_batch(two_types):
    api, ids = two_types
    resize = type_id(api, "img.resize")
    one = claim(api, "w", task_type_id=resize)
    assert one.status == 200 and one.data["id"] == ids["img.resize"][0]
    assert one.data["type"] == "img.resize" and one.data["type_id"] == resize
    batch = claim(api, "w", task_type_id=resize, limit=10)
    assert [t["id"] for t in batch.data["tasks"]] == ids["img.resize"][1:]
    empty = claim(api, "w", task_type_id=resize)
    assert empty.status == 404 and empty.error == "No available tasks"
    assert claim(api, "w", task_type_id=resize, limit=5).data["tasks"] == []


def test_task_type_id_with_type_pattern_needs_both_to_hold(two_types):
    api, ids = two_types
    crop, mail = type_id(api, "img.crop"), type_id(api, "mail.send")
    assert claim(api, "w", task_type_id=mail, type_pattern="img.%").status == 404
    assert claim(api, "w", task_type_id=mail, type_pattern="img.%", limit=3).data["tasks"] == []
    got = claim(api, "w", task_type_id=crop, type_pattern="img.%", limit=5)
    assert [t["id"] for t in got.data["tasks"]] == ids["img.crop"]
    assert claim(api, "w", type_pattern="mail.%").data["id"] == ids["mail.send"][0]


def test_task_type_id_combines_with_an_order(two_types):
    api, ids = two_types
    resize = type_id(api, "img.resize")
    got = claim(api, "w", task_type_id=resize, sort_by="created_at", sort_order="DESC", limit=2)
    assert [t["id"] for t in got.data["tasks"]] == ids["img.resize"][::-1]


def test_unknown_task_type_id_is_no_available_tasks(two_types):
    api, _ = two_types
    response = claim(api, "w", task_type_id=999999)
    assert response.status == 404 and response.error == "No available tasks"


@pytest.mark.parametrize("value", ["1", 1.5, True, [1], {"id": 1}, 0, -3, 2 ** 40])
def test_task_type_id_that_is_not_a_positive_integer_is_400_and_claims_nothing(two_types, value):
    api, _ = two_types
    before = snapshot(api)
    for extra in ({}, {"limit": 2}):
        response = claim(api, "w", task_type_id=value, **extra)
        assert response.status == 400, response
        assert "task_type_id" in response.error
    assert snapshot(api) == before


# -- the claim answer is the task in full ---------------------------------------------------
def test_single_claim_answers_the_full_task_view_with_its_lease(two_types):
    api, _ = two_types
    got = claim(api, "w9", lease_seconds=120).data
    view = api.get("/tasks/%d" % got["id"]).data
    assert got == view
    assert got["status"] == "claimed" and got["claimed_by"] == "w9"
    assert got["lease_expires_at"] and got["claimed_at"] and got["created_at"]
    assert got["attempts"] == 1 and isinstance(got["type_id"], int)


def test_batch_claim_items_are_full_task_views(two_types):
    api, _ = two_types
    tasks = claim(api, "w9", limit=3).data["tasks"]
    assert len(tasks) == 3
    for task in tasks:
        assert task == api.get("/tasks/%d" % task["id"]).data
        assert task["status"] == "claimed" and task["lease_expires_at"]
