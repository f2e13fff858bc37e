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
