"""The OpenAPI document says exactly what the server does: schemathesis
(`--checks all`) against the dev server on SQLite, bounded to about a
thousand generated requests; any failed check fails the test."""

import os
import subprocess
import sys

import pytest

from conftest import IN_CI, make_config

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 60   # per operation: ~800 requests, about 80 s on a loaded 2-core machine
KEY = "schemathesis-key"


def schemathesis_command():
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("schemathesis (requirements-dev.txt) is required in CI")
        pytest.skip("schemathesis is not installed for this Python")
    return [os.path.join(os.path.dirname(sys.executable), "schemathesis")]


def test_schemathesis_finds_no_mismatch_between_the_openapi_document_and_the_server(tmp_path):
    from live_server import LiveServer

    command = schemathesis_command()
    config = make_config("sqlite", tmp_path, api={"api_key": KEY})
    server = LiveServer(config.path, tmp_path / "server.log")
    try:
        base = server.url.rstrip("/")
        result = subprocess.run(
            command + ["run", base + "/openapi.json", "--base-url", base, "--checks", "all",
                       "--experimental=openapi-3.1", "-H", "X-API-Key: " + KEY,
                       "--hypothesis-max-examples", str(MAX_EXAMPLES), "--hypothesis-seed", "7",
                       "--request-timeout", "20000"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=400, cwd=str(tmp_path))
    finally:
        server.close()
    output = result.stdout.decode("utf-8", "replace")
    assert result.returncode == 0, output[-6000:]
    assert "FAILED" not in output and " passed" in output, output[-6000:]
