"""Races between OS processes: start several, let them go at once, read what each saw.

Concurrency is proved with processes, never threads in one interpreter. Two
kinds are used: forked workers that write a JSON record of what they were
answered (`start` and `join`), and CGI processes held at their request body
until all of them are ready, then released together (`spawn_cgi`, `release`).
"""

import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time

import pytest

from cgi_runner import SCRIPT, cgi_environ, parse_cgi_output

FORK = multiprocessing.get_context("fork")


# -- forked workers ----------------------------------------------------------------
def start(jobs):
    """Start one forked process per (target, args, out_path); target writes
    its JSON record to out_path. Returns the handles for `join`."""
    processes = []
    for target, args, out in jobs:
        process = FORK.Process(target=target, args=tuple(args))
        process.start()
        processes.append((process, str(out)))
    return processes


def join(processes, deadline, what="worker process"):
    """The records of processes started by `start`, in order; a process still
    running at `deadline` (time.time()) is killed and fails the test."""
    records = []
    for process, out in processes:
        process.join(timeout=max(1, deadline - time.time()))
        if process.is_alive():
            process.kill()
            process.join()
            pytest.fail("%s did not finish" % what)
        assert process.exitcode == 0
        with open(out, encoding="utf-8") as handle:
            records.append(json.load(handle))
    return records


# -- CGI processes released together ----------------------------------------------
def spawn_cgi(method, path, body, config_path, out_dir, n):
    """Start a CGI process now; it blocks on stdin until the body is written.

    Output goes to files, so twenty processes never block on full pipes."""
    raw = json.dumps(body).encode()
    environ = cgi_environ(method, path, raw, config_path=config_path)
    out = open(str(out_dir / ("cgi-%d.out" % n)), "w+b")
    err = open(str(out_dir / ("cgi-%d.err" % n)), "w+b")
    proc = subprocess.Popen([sys.executable, SCRIPT], env=environ, stdin=subprocess.PIPE,
                            stdout=out, stderr=err)
    return proc, raw, out, err


def wait_reading_stdin(procs, timeout=60):
    """Return once every process sits in read(0, ...): started, imported, waiting for its body."""
    read_nr = {"x86_64": "0", "aarch64": "63"}.get(platform.machine())
    if read_nr is None or not os.path.exists("/proc/self/syscall"):
        time.sleep(3)  # no way to look: give them time instead
        return
    deadline = time.time() + timeout
    waiting = list(procs)
    while waiting and time.time() < deadline:
        still = []
        for proc in waiting:
            assert proc.poll() is None, "CGI process exited before getting its body"
            with open("/proc/%d/syscall" % proc.pid) as handle:
                call = handle.read().split()
            if call[:2] != [read_nr, "0x0"]:
                still.append(proc)
        waiting = still
        if waiting:
            time.sleep(0.05)
    assert not waiting, "CGI processes never reached their body"


def release(procs):
    """Wait until every spawned CGI process waits for its body, write all the
    bodies at once, and return each one's (status, JSON payload), in order."""
    responses = []
    try:
        wait_reading_stdin([proc for proc, _, _, _ in procs])
        for proc, raw, _, _ in procs:
            proc.stdin.write(raw)
            proc.stdin.close()
        for proc, _, out, err in procs:
            proc.wait(timeout=120)
            out.seek(0)
            err.seek(0)
            assert proc.returncode == 0, err.read()
            status, _, body = parse_cgi_output(out.read())
            responses.append((status, json.loads(body.decode())))
    finally:
        for proc, _, out, err in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
            err.close()
    return responses
