"""GET /stats and GET /metrics: the queue at a glance, from maintained counters.

Counts per type and status come from task_counts, which every status change
updates in its own transaction (Store._tally); finished attempts of the last
hour and day come from task_runs (5-minute periods with a run-time
histogram); the oldest pending task and the live leases are one index read
each. Nothing here scans tasks or task_history, so the answer costs the same
at 1M tasks as at 10 (bench/stats_scale.py, docs/performance.md). /metrics
also counts the retention backlog (Store.backlog: index reads of the rows past
their retention, at most BACKLOG_CAP per table, so it costs nothing while
retention keeps up). The figures are computed by pure functions from the
store's raw rows.
"""

from .store.base import BACKLOG_CAP, RUN_BUCKETS

OUTCOMES = ("completed", "failed", "retry")
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _window(runs):
    """Finished attempts of one window: per type and outcome counts, run-time figures."""
    by_type = {}
    totals = {outcome: 0 for outcome in OUTCOMES}
    histogram = [0] * len(RUN_BUCKETS)
    run_n = run_ms = 0
    for task_type, outcome, bucket, n, ms in runs:
        counts = by_type.setdefault(task_type, {o: 0 for o in OUTCOMES})
        counts[outcome] = counts.get(outcome, 0) + n
        totals[outcome] = totals.get(outcome, 0) + n
        if outcome == "completed" and bucket >= 0:
            histogram[bucket] += n
            run_n += n
            run_ms += ms
    return {"totals": totals, "by_type": by_type,
            "run_seconds": {"count": run_n,
                            "avg": round(run_ms / 1000.0 / run_n, 3) if run_n else None,
                            "p95": quantile(histogram, 0.95)}}


def quantile(histogram, q):
    """The q-quantile of a bucket histogram (counts per RUN_BUCKETS bound), as
    Prometheus' histogram_quantile: linear inside the bucket; None when empty."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            upper = RUN_BUCKETS[index]
            lower = RUN_BUCKETS[index - 1] if index else 0.0
            if upper == float("inf"):
                return lower
            return round(lower + (upper - lower) * (rank - seen) / count, 3)
        seen += count
    return RUN_BUCKETS[-2]


def figures(raw):
    """The /stats document from Store.stats()'s raw rows (pure)."""
    types = {}
    by_status = {}
    for task_type, status, n in raw["counts"]:
        types.setdefault(task_type, {})[status] = n
        by_status[status] = by_status.get(status, 0) + n
    hour = _window(raw["runs_hour"])
    day = _window(raw["runs_day"])
    for task_type in types:
        types[task_type] = {"counts": types[task_type],
                            "last_hour": hour["by_type"].get(task_type, {o: 0 for o in OUTCOMES}),
                            "last_day": day["by_type"].get(task_type, {o: 0 for o in OUTCOMES})}
    oldest = raw["oldest_pending_seconds"]
    return {
        "counts": by_status,
        "total": sum(by_status.values()),
        "oldest_pending_age_seconds": None if oldest is None else round(oldest, 3),
        "last_hour": {"completed": hour["totals"]["completed"], "failed": hour["totals"]["failed"],
                      "retried": hour["totals"]["retry"], "run_seconds": hour["run_seconds"]},
        "last_day": {"completed": day["totals"]["completed"], "failed": day["totals"]["failed"],
                     "retried": day["totals"]["retry"], "run_seconds": day["run_seconds"]},
        "types": types,
        "leases": {worker: n for worker, n in raw["leases"]},
    }


def show(ctx):
    return 200, "Queue statistics", figures(ctx.store.stats())


# -- Prometheus text exposition format 0.0.4 ---------------------------------
def _label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value):
    if value is None:
        return "NaN"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def backlog(ctx):
    """{table: rows past their [retention] still present} (Store.backlog)."""
    config = ctx.config
    return ctx.store.backlog(config.retention_seconds(), config.retention["history_days"])


def exposition(stats, backlog=None):
    """The /stats figures (and the retention backlog) as Prometheus text
    (pure): gauges, since every figure is a current value or a sliding
    window, not a running total."""
    lines = []

    def family(name, help_text, samples):
        lines.append("# HELP %s %s" % (name, help_text))
        lines.append("# TYPE %s gauge" % name)
        for labels, value in samples:
            text = ",".join('%s="%s"' % (k, _label(v)) for k, v in labels)
            lines.append("%s%s %s" % (name, "{%s}" % text if text else "", _number(value)))

    family("taskq_tasks", "Tasks by type and status (pending, scheduled, waiting, claimed, "
           "completed, failed, cancelled).",
           [((("type", t), ("status", s)), n)
            for t, info in sorted(stats["types"].items()) for s, n in sorted(info["counts"].items())])
    family("taskq_oldest_pending_age_seconds", "Age of the oldest pending task (NaN when none).",
           [((), stats["oldest_pending_age_seconds"])])
    for window in ("last_hour", "last_day"):
        family("taskq_finished_%s" % window,
               "Attempts finished in the %s by type and outcome (completed, failed, retry)."
               % window.replace("_", " "),
               [((("type", t), ("outcome", o)), n)
                for t, info in sorted(stats["types"].items()) for o, n in sorted(info[window].items())])
        runs = stats[window]["run_seconds"]
        family("taskq_run_seconds_avg_%s" % window,
               "Mean run time of tasks completed in the %s (NaN when none)." % window.replace("_", " "),
               [((), runs["avg"])])
        family("taskq_run_seconds_p95_%s" % window,
               "95th percentile run time of tasks completed in the %s, from histogram buckets."
               % window.replace("_", " "),
               [((), runs["p95"])])
    family("taskq_live_leases", "Live leases per worker.",
           [((("worker", w),), n) for w, n in sorted(stats["leases"].items())])
    if backlog is not None:
        family("taskq_retention_backlog",
               "Rows past their [retention] still present, per table (counted up to %d: "
               "that value means at least)." % BACKLOG_CAP,
               [((("table", table),), n) for table, n in sorted(backlog.items())])
    return "\n".join(lines) + "\n"


def metrics(ctx):
    from .web import RawResponse

    text = exposition(figures(ctx.store.stats()), backlog(ctx))
    return RawResponse(200, [("Content-Type", PROMETHEUS_TYPE), ("Cache-Control", "no-store")],
                       text.encode("utf-8"))
