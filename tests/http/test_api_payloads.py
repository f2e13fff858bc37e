"""Large and unusual payloads are stored and returned intact. On SQLite and MariaDB.

The PHP original kept params and results in 64 KB TEXT columns and answered
500 beyond that.
"""

import json

from conftest import claim, create, register


def big_value(kilobytes):
    # mixed ASCII and multi-byte text, nested, so truncation or re-encoding shows
    chunk = "taskq-ü€😀-" * 8
    items = []
    size = 0
    n = 0
    while size < kilobytes * 1024:
        items.append({"i": n, "s": chunk + str(n)})
        size += len(json.dumps(items[-1], ensure_ascii=False).encode("utf-8"))
        n += 1
    return {"items": items, "blob": "x" * 1000}


def test_params_over_64kb_are_stored_and_returned_intact(api):
    register(api, schema={"type": "object"})
    params = big_value(200)
    assert len(json.dumps(params, ensure_ascii=False).encode("utf-8")) > 200 * 1024
    created = api.post("/tasks", {"type": "demo", "params": params})
    assert created.status == 201
    task_id = created.data["id"]
    assert api.get("/tasks/%d" % task_id).data["params"] == params
    claimed = claim(api, "w1").data
    assert claimed["id"] == task_id and claimed["params"] == params
    again = api.post("/tasks", {"type": "demo", "params": params})
    assert again.status == 200 and again.data["id"] == task_id


def test_result_over_64kb_is_stored_and_returned_intact(api):
    register(api, schema={"type": "object"})
    task_id = create(api, {})["id"]
    claim(api, "w1")
    result = big_value(200)
    response = api.post("/tasks/%d/complete" % task_id, {"worker_id": "w1", "success": True,
                                                          "result": result})
    assert response.status == 200
    assert api.get("/tasks/%d" % task_id).data["result"] == result


def test_error_message_over_64kb_is_stored_intact(api_factory):
    api = api_factory(queue={"max_attempts": 1})
    register(api, schema={"type": "object"})
    task_id = create(api, {})["id"]
    claim(api, "w1")
    error = "E" * 60000
    response = api.post("/tasks/%d/complete" % task_id, {"worker_id": "w1", "success": False,
                                                          "error": error})
    assert response.status == 200
    assert api.get("/tasks/%d" % task_id).data["error_message"] == error


def test_body_just_under_max_body_bytes_is_accepted(api_factory):
    api = api_factory(api={"max_body_bytes": 300 * 1024})
    register(api, schema={"type": "object"})
    params = {"s": "y" * (300 * 1024 - 100)}
    raw = json.dumps({"type": "demo", "params": params}).encode()
    assert len(raw) <= 300 * 1024
    response = api.request("POST", "/tasks", raw=raw)
    assert response.status == 201
    assert api.get("/tasks/%d" % response.data["id"]).data["params"] == params


def test_unicode_params_and_worker_ids_round_trip(api):
    register(api, schema={"type": "object"})
    params = {"名前": "タスク", "emoji": "🚀", "nul-ish": "a\u0000b", "rtl": "שלום", "esc": "\"\\/\n\t"}
    task_id = create(api, params)["id"]
    claimed = claim(api, "wörker-😀").data
    assert claimed["params"] == params
    assert api.get("/tasks/%d" % task_id).data["claimed_by"] == "wörker-😀"
    response = api.post("/tasks/%d/complete" % task_id, {"worker_id": "wörker-😀", "success": True,
                                                          "result": params})
    assert response.status == 200
    assert api.get("/tasks/%d" % task_id).data["result"] == params


def test_large_numbers_in_params_round_trip(api):
    register(api, schema={"type": "object"})
    params = {"big": 2 ** 62, "neg": -(2 ** 53) - 1, "frac": 0.1, "exp": 1e300}
    task_id = create(api, params)["id"]
    assert api.get("/tasks/%d" % task_id).data["params"] == params
