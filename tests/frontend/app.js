// The PrismQ frontend's contract, nothing more: ApiResponse<T> {success, message?, data?, error?},
// PaginatedResponse<T> {success, data: T[], pagination: {total, page, per_page, total_pages}},
// Task and TaskType as its TypeScript types name them. Anything else is shown as an error.
(function () {
  "use strict";
  var params = new URLSearchParams(window.location.search);
  var API = params.get("api");
  var KEY = params.get("key");
  var TASK_FIELDS = ["id", "type", "type_id", "status", "params", "result", "error_message",
    "priority", "attempts", "max_attempts", "progress", "claimed_by", "claimed_at",
    "completed_at", "created_at", "updated_at"];
  var current = null;

  function $(id) { return document.getElementById(id); }

  function request(method, path, body) {
    var init = {method: method, headers: {"X-API-Key": KEY}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(API + path, init).then(function (response) {
      return response.json();
    }).then(function (json) {
      if (!json.success) {
        throw new Error(json.message || json.error);  // the frontend shows message, else error
      }
      if (typeof json.timestamp !== "number") { throw new Error("no timestamp"); }
      return json;
    });
  }

  function checkTask(task) {
    TASK_FIELDS.forEach(function (field) {
      if (!(field in task)) { throw new Error("task lacks " + field); }
    });
    return task;
  }

  function fail(err) { $("error").textContent = err.message; }
  function ok() { $("error").textContent = ""; }

  function paginated(json) {
    if (!Array.isArray(json.data)) { throw new Error("data is not an array"); }
    var p = json.pagination;
    ["total", "page", "per_page", "total_pages"].forEach(function (field) {
      if (typeof p[field] !== "number") { throw new Error("pagination lacks " + field); }
    });
    return json;
  }

  function loadList() {
    var q = new URLSearchParams();
    if ($("filter-status").value) { q.set("status", $("filter-status").value); }
    if ($("filter-type").value) { q.set("type", $("filter-type").value); }
    q.set("limit", $("filter-limit").value);
    q.set("offset", $("filter-offset").value);
    return request("GET", "/tasks?" + q.toString()).then(paginated).then(function (json) {
      var rows = $("rows");
      rows.textContent = "";
      json.data.forEach(function (task) {
        checkTask(task);
        var tr = document.createElement("tr");
        tr.className = "task-row";
        tr.dataset.id = task.id;
        [task.id, task.type, task.type_id, task.status, task.priority].forEach(function (value) {
          var td = document.createElement("td");
          td.textContent = String(value);
          tr.appendChild(td);
        });
        tr.addEventListener("click", function () { openTask(task.id).catch(fail); });
        rows.appendChild(tr);
      });
      var p = json.pagination;
      $("pagination").textContent = "total " + p.total + ", page " + p.page + " of " +
        p.total_pages + ", " + p.per_page + " per page";
      ok();
    });
  }

  function loadTypes() {
    return request("GET", "/task-types?active_only=true").then(paginated).then(function (json) {
      ["create-type", "claim-type"].forEach(function (id) {
        var select = $(id);
        select.textContent = "";
        json.data.forEach(function (type) {
          if (typeof type.usage_count !== "number") { throw new Error("type lacks usage_count"); }
          var option = document.createElement("option");
          option.value = id === "claim-type" ? String(type.id) : type.name;
          option.textContent = type.name;
          select.appendChild(option);
        });
      });
    });
  }

  function show(task) {
    checkTask(task);
    current = task;
    $("detail-id").textContent = String(task.id);
    var dl = $("detail-fields");
    dl.textContent = "";
    TASK_FIELDS.forEach(function (field) {
      var dt = document.createElement("dt");
      dt.textContent = field;
      var dd = document.createElement("dd");
      dd.id = "field-" + field;
      var value = task[field];
      dd.textContent = value !== null && typeof value === "object" ? JSON.stringify(value) : String(value);
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
  }

  function openTask(id) {
    return request("GET", "/tasks/" + id).then(function (json) { show(json.data); ok(); });
  }

  $("refresh").addEventListener("click", function () { loadList().catch(fail); });
  $("create-submit").addEventListener("click", function () {
    request("POST", "/tasks", {type: $("create-type").value,
                               params: JSON.parse($("create-params").value),
                               priority: parseInt($("create-priority").value, 10)})
      .then(function (json) {
        checkTask(json.data);
        return loadList().then(function () { return openTask(json.data.id); });
      }).catch(fail);
  });
  $("claim-submit").addEventListener("click", function () {
    var body = {worker_id: $("claim-worker").value,
                task_type_id: parseInt($("claim-type").value, 10)};
    if ($("claim-sort-by").value) { body.sort_by = $("claim-sort-by").value; }
    if ($("claim-sort-order").value) { body.sort_order = $("claim-sort-order").value; }
    request("POST", "/tasks/claim", body).then(function (json) {
      show(json.data);  // the claim answer is shown as the task
      ok();
    }).catch(fail);
  });
  function finish(body) {
    body.worker_id = $("claim-worker").value;
    request("POST", "/tasks/" + current.id + "/complete", body)
      .then(function () { return openTask(current.id); }).catch(fail);
  }
  $("complete-submit").addEventListener("click", function () {
    finish({success: true, result: JSON.parse($("complete-result").value)});
  });
  $("fail-submit").addEventListener("click", function () {
    finish({success: false, error: $("fail-error").value});
  });

  Promise.all([loadTypes(), loadList()]).then(function () {
    document.body.dataset.ready = "yes";
  }).catch(fail);
})();
