#!/usr/bin/env python3
"""Build the wheel a worker host installs: dist/taskq-<version>-py3-none-any.whl.

    python3 tools/wheel.py                   # into dist/
    python3 tools/wheel.py --output-dir DIR

On the worker host: `pip install taskq-<version>-py3-none-any.whl` gives the
client (taskq.client), the worker (`taskq-worker`, `python3 -m
taskq.worker`) and nothing else: they need only the standard library, so
the wheel requires no package. The server's packages (PyMySQL, jsonschema)
are the `server` extra; the upload zip (tools/bundle.py) vendors them.

The wheel holds all of lib/taskq (less caches, as the zip ships it) and the
metadata of pyproject.toml. It is built here with the standard library
(setuptools is not needed, nor any download), from the same inputs to the
same bytes.
"""

import argparse
import base64
import hashlib
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bundle import ROOT, SKIP_NAMES, SKIP_SUFFIXES, ZIP_DATE, project_version  # noqa: E402

PACKAGE = "taskq"
TAG = "py3-none-any"


class WheelError(Exception):
    """The wheel cannot be built; the message says why."""


def _toml():
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        from pip._vendor import tomli as tomllib  # what pip itself reads pyproject.toml with
    return tomllib


def project_metadata(root=ROOT):
    """[project] of pyproject.toml, with the version filled in from taskq.__version__."""
    with open(os.path.join(root, "pyproject.toml"), "rb") as handle:
        project = dict(_toml().load(handle)["project"])
    if "version" in project.get("dynamic", ()):
        project["version"] = project_version(root)
    return project


def package_files(root=ROOT):
    """Sorted paths under lib/ of the files that go into the wheel."""
    top = os.path.join(root, "lib", PACKAGE)
    paths = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES and not d.startswith("."))
        for name in sorted(filenames):
            if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES) or name.startswith("."):
                continue
            paths.append(os.path.relpath(os.path.join(dirpath, name),
                                         os.path.join(root, "lib")).replace(os.sep, "/"))
    return sorted(paths)


def metadata_text(project, root=ROOT):
    lines = ["Metadata-Version: 2.1", "Name: %s" % project["name"],
             "Version: %s" % project["version"]]
    if project.get("description"):
        lines.append("Summary: %s" % project["description"])
    if project.get("requires-python"):
        lines.append("Requires-Python: %s" % project["requires-python"])
    lines += ["Classifier: %s" % c for c in project.get("classifiers", ())]
    lines += ["Requires-Dist: %s" % dep for dep in project.get("dependencies", ())]
    for extra, deps in sorted(project.get("optional-dependencies", {}).items()):
        lines.append("Provides-Extra: %s" % extra)
        lines += ['Requires-Dist: %s; extra == "%s"' % (dep, extra) for dep in deps]
    readme = project.get("readme")
    body = ""
    if readme:
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(root, readme), encoding="utf-8") as handle:
            body = handle.read()
    return "\n".join(lines) + "\n\n" + body


def dist_info_files(project, root=ROOT):
    """{name: text} of the .dist-info folder, RECORD aside."""
    scripts = project.get("scripts", {})
    files = {
        "METADATA": metadata_text(project, root),
        "WHEEL": "Wheel-Version: 1.0\nGenerator: taskq tools/wheel.py\nRoot-Is-Purelib: true\n"
                 "Tag: %s\n" % TAG,
        "top_level.txt": PACKAGE + "\n",
    }
    if scripts:
        files["entry_points.txt"] = "[console_scripts]\n" + "".join(
            "%s = %s\n" % item for item in sorted(scripts.items()))
    return files


def _record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _add(archive, arcname, data, mode=0o644):
    info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
    info.create_system = 3
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def build(root=ROOT, output_dir=None, log=print):
    """Build the wheel and return its path."""
    project = project_metadata(root)
    name, version = project["name"], project["version"]
    if name != PACKAGE:
        raise WheelError("pyproject.toml names the project %r, not %r" % (name, PACKAGE))
    output_dir = output_dir or os.path.join(root, "dist")
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, "%s-%s-%s.whl" % (name, version, TAG))
    info_dir = "%s-%s.dist-info" % (name, version)

    entries = []
    for rel in package_files(root):
        with open(os.path.join(root, "lib", rel), "rb") as handle:
            entries.append((rel, handle.read()))
    if not any(rel == PACKAGE + "/__init__.py" for rel, _ in entries):
        raise WheelError("lib/%s/__init__.py is missing" % PACKAGE)
    for filename, text in sorted(dist_info_files(project, root).items()):
        entries.append((info_dir + "/" + filename, text.encode("utf-8")))
    record = "".join("%s,%s,%d\n" % (rel, _record_hash(data), len(data)) for rel, data in entries)
    record += "%s/RECORD,,\n" % info_dir
    entries.append((info_dir + "/RECORD", record.encode("utf-8")))

    partial = target + ".part"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, data in entries:
            _add(archive, rel, data)
    os.replace(partial, target)
    log("wrote %s (%d files)" % (os.path.relpath(target), len(entries)))
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Build dist/taskq-<version>-py3-none-any.whl: the client and worker for "
                    "`pip install` on a worker host.")
    parser.add_argument("--output-dir", metavar="DIR", help="where the wheel goes (default: dist/)")
    args = parser.parse_args(argv)
    try:
        build(output_dir=args.output_dir)
    except WheelError as exc:
        print("wheel: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
