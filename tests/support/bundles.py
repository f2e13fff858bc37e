"""Build the upload bundle once per test session, with tools/bundle.py.

    from support.bundles import built_bundle, bundle_tool
    zip_path = built_bundle()            # for the running Python
    zip_path = built_bundle("3.8")       # for another target

Building downloads wheels (pip keeps its cache), so each target is built
once per process and the zips live in a temporary folder removed at exit.
"""

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BUILT = {}
_tool = None


def bundle_tool():
    """tools/bundle.py as a module."""
    global _tool
    if _tool is None:
        spec = importlib.util.spec_from_file_location("taskq_bundle_tool",
                                                      os.path.join(ROOT, "tools", "bundle.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _tool = module
    return _tool


def built_bundle(python_version=None):
    """Path of a bundle zip for `python_version` (default: the running Python)."""
    python_version = python_version or "%d.%d" % sys.version_info[:2]
    if python_version not in _BUILT:
        out = tempfile.mkdtemp(prefix="taskq-dist-")
        atexit.register(shutil.rmtree, out, True)
        _BUILT[python_version] = bundle_tool().build(
            python_version=python_version, output_dir=out, log=lambda *args: None)
    return _BUILT[python_version]


# The last landed commit of release 0.1.0 (schema v8 on MySQL, v7 on SQLite), which
# the lifecycle tests build a bundle from to upgrade and to upload over a newer tree.
RELEASE_0_1_COMMIT = "20f0e726c2c4408b5bd65bab5cdccf0a023d92d5"


def bundle_at_commit(commit=RELEASE_0_1_COMMIT, python_version=None):
    """Path of a bundle that tools/bundle.py builds at `commit` (checked out in a
    git worktree for the purpose), for the running Python; once per process."""
    import subprocess

    python_version = python_version or "%d.%d" % sys.version_info[:2]
    if (commit, python_version) not in _BUILT:
        work = tempfile.mkdtemp(prefix="taskq-old-")
        tree, out = os.path.join(work, "tree"), os.path.join(work, "dist")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "--force", tree, commit],
                       check=True, capture_output=True, timeout=120)

        def remove():
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree],
                           capture_output=True, timeout=120)
            shutil.rmtree(work, True)

        atexit.register(remove)
        subprocess.run([sys.executable, os.path.join(tree, "tools", "bundle.py"),
                        "--python-version", python_version, "--output-dir", out],
                       check=True, capture_output=True, timeout=900)
        zips = [name for name in os.listdir(out) if name.endswith(".zip")]
        _BUILT[(commit, python_version)] = os.path.join(out, zips[0])
    return _BUILT[(commit, python_version)]
