# Sourced by ./serve and ./test: make (once) and refresh a virtual environment
# for the chosen interpreter, then export VENV_PY and PYTHONPATH.
# VENV_KIND=runtime (./serve) installs requirements.txt only, into its own
# .venv/pyX.Y-runtime; the default (./test) adds the test tools of
# requirements-dev.txt in .venv/pyX.Y.
PY="${TASKQ_PYTHON:-python3}"
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "${VENV_KIND:-dev}" = runtime ]; then
    REQUIREMENTS=requirements.txt
    VENV="${TASKQ_VENV:-.venv/py$PY_VERSION-runtime}"
else
    REQUIREMENTS=requirements-dev.txt
    VENV="${TASKQ_VENV:-.venv/py$PY_VERSION}"
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment $VENV with $PY ($PY_VERSION)" >&2
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha"
# TASKQ_PIP_EXTRA pins extra packages, e.g. "jsonschema==3.2.0" to test the oldest supported release.
WANT="$( (cat requirements.txt "$REQUIREMENTS"; echo "${TASKQ_PIP_EXTRA:-}") | sha1sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "installing $REQUIREMENTS into $VENV" >&2
    # the pip that ships with Python 3.8 backtracks for an hour over the test
    # tools' dependencies; a current one resolves them in seconds
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "pip>=24.2" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS" >&2
    if [ -n "${TASKQ_PIP_EXTRA:-}" ]; then
        # shellcheck disable=SC2086
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check $TASKQ_PIP_EXTRA >&2
    fi
    echo "$WANT" > "$STAMP"
fi
VENV_PY="$VENV/bin/python"
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}"
