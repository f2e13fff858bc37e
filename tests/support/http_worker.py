"""A worker process that claims and completes tasks over HTTP until none are left.

    python tests/support/http_worker.py BASE_API_URL WORKER_ID TYPE_PATTERN [API_KEY]

BASE_API_URL is e.g. http://127.0.0.1:8080/taskq/api. Prints one JSON line:
{"claimed": [ids], "completed": [ids], "errors": ["..."]}. Stops at the first
"No available tasks" (404), or after MAX_ROUNDS claims, whichever is first.
"""

import json
import sys
import urllib.error
import urllib.request

MAX_ROUNDS = 2000


def call(url, body, key):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-API-Key"] = key
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw.decode("utf-8"))
        except ValueError:
            return exc.code, {"raw": raw[:300].decode("utf-8", "replace")}


def main(argv):
    base, worker_id, pattern = argv[1], argv[2], argv[3]
    key = argv[4] if len(argv) > 4 else ""
    claimed, completed, errors = [], [], []
    for _ in range(MAX_ROUNDS):
        status, body = call(base + "/tasks/claim", {"worker_id": worker_id,
                                                    "type_pattern": pattern}, key)
        if status == 404:
            break
        if status != 200:
            errors.append("claim %d %s" % (status, body))
            break
        task_id = body["data"]["id"]
        claimed.append(task_id)
        status, body = call(base + "/tasks/%d/complete" % task_id,
                            {"worker_id": worker_id, "success": True,
                             "result": {"by": worker_id}}, key)
        if status == 200:
            completed.append(task_id)
        else:
            errors.append("complete %d: %d %s" % (task_id, status, body))
    print(json.dumps({"claimed": claimed, "completed": completed, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
