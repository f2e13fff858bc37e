# Sourced by ./serve and ./test: make (once) and refresh a virtual environment
# for the chosen interpreter, then export VENV_PY and PYTHONPATH.
PY="${TASKQ_PYTHON:-python3}"
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
VENV="${TASKQ_VENV:-.venv/py$PY_VERSION}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment $VENV with $PY ($PY_VERSION)" >&2
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha"
WANT="$(cat requirements.txt requirements-dev.txt | sha1sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "installing requirements into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt >&2
    echo "$WANT" > "$STAMP"
fi
VENV_PY="$VENV/bin/python"
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}"
