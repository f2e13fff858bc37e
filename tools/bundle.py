#!/usr/bin/env python3
"""Build the upload bundle: dist/taskq-<version>-py<X.Y>.zip.

    python3 tools/bundle.py                         # for the running Python, manylinux x86_64
    python3 tools/bundle.py --python-version 3.8    # for a host that runs Python 3.8
    python3 tools/bundle.py --platform manylinux_2_28_aarch64 --python-version 3.12

The zip holds one folder, taskq/, with what a host needs and nothing else:
cgi-bin/api.py, install.py, passenger_wsgi.py, lib/taskq/, schema.sql,
migrations/, config.example.ini, the .htaccess files, an empty data/ folder
(denied to the web) and README.md, plus the runtime dependencies from
requirements.txt (PyMySQL, jsonschema and theirs) unpacked into lib/. Those
are downloaded by pip as wheels for the target Python and platform, never
built: a host without a compiler gets the same files.

Modes in the zip are 755 for cgi-bin/api.py and install.py and 644 for the
rest. The build refuses to run when a script lacks the `#!/usr/bin/env
python3` shebang or any shipped text file has CRLF line endings (a CRLF
shebang is the classic CGI "500 Internal Server Error").

Every .py file under lib/ also ships as hash-based bytecode (PEP 552) in its
__pycache__ folder, compiled by an interpreter of the target version (the
running one, or --compile-with, or pythonX.Y found on PATH or under pyenv): a
host whose lib/ the web server cannot write (or that sets
PYTHONDONTWRITEBYTECODE) would otherwise compile PyMySQL and taskq from source
on every request. Hashes, not timestamps, because unzip and FTP do not keep
those. taskq's own modules get checked hashes: Python compares the source's
hash with the .pyc's on import, so a .py edited or replaced on the host takes
effect on the next request. The vendored packages get unchecked hashes (the
source is not even read): nobody edits those on a host, and a zip brings
each of their .py files together with its .pyc.

lib/taskq/MANIFEST names the release (version + a hash of lib/taskq's
files), lists lib/taskq's files and the vendored distributions, and every
.py and .sql file of taskq ends with a line naming the release: the CGI
entry answers 503 naming the files when lib/ holds files of two releases
(taskq/release.py).

Needs pip for the running interpreter (`python3 -m pip --version`); pip's
cache is used, so a rebuild downloads nothing new.
"""

import argparse
import email.parser
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP = "taskq"
SHEBANG = b"#!/usr/bin/env python3\n"
EXECUTABLES = ("cgi-bin/api.py", "install.py")
DEFAULT_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64")

# Shipped from the project as they are (paths relative to the project root).
FILES = (
    ".htaccess",
    "cgi-bin/.htaccess",
    "cgi-bin/api.py",
    "install.py",
    "passenger_wsgi.py",
    "schema.sql",
    "config.example.ini",
    "README.md",
    "CHANGELOG.md",
    "data/.htaccess",
    "lib/.htaccess",
)
TREES = ("lib/taskq", "migrations")   # shipped whole, less caches
OPTIONAL = ("migrations", "LICENSE")  # shipped when the project has them
DENY_HTACCESS_FOR = ("migrations",)   # folders that get lib/.htaccess when they lack one
TEXT_SUFFIXES = (".py", ".sql", ".ini", ".htaccess", ".md", ".txt", ".json", ".html", ".css", ".js")
# Third-party files shipped byte for byte as their upstream release has them
# (docs_ui's Swagger UI): not checked for line endings, never rewritten.
VENDORED = ("lib/taskq/static/swagger-ui/",)
OWN = "lib/taskq/"  # taskq's own files: release lines, MANIFEST, checked-hash bytecode
SKIP_NAMES = ("__pycache__", ".DS_Store")
SKIP_SUFFIXES = (".pyc", ".pyo", ".orig", ".rej", ".swp", "~")
MAX_CLOSURE_ROUNDS = 5

# Fixed timestamp for every entry, so the same inputs give the same zip.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


class BundleError(Exception):
    """The bundle cannot be built; the message says why and what to fix."""


def project_version(root=ROOT):
    with open(os.path.join(root, "lib", "taskq", "__init__.py"), encoding="utf-8") as handle:
        found = re.search(r'^__version__\s*=\s*"([^"]+)"', handle.read(), re.M)
    if not found:
        raise BundleError("lib/taskq/__init__.py has no __version__")
    return found.group(1)


def project_files(root=ROOT):
    """Sorted relative paths of the project files that go into the bundle."""
    paths = []
    for rel in FILES + tuple(name for name in OPTIONAL if name not in TREES):
        full = os.path.join(root, rel)
        if os.path.isfile(full):
            paths.append(rel)
        elif rel not in OPTIONAL:
            raise BundleError("missing project file: %s" % rel)
    for tree in TREES:
        top = os.path.join(root, tree)
        if not os.path.isdir(top):
            if tree in OPTIONAL:
                continue
            raise BundleError("missing project folder: %s" % tree)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames
                                 if d not in SKIP_NAMES and not d.startswith("."))
            for name in sorted(filenames):
                if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES):
                    continue
                if name.startswith(".") and name != ".htaccess":
                    continue
                paths.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(set(paths))


def check_sources(root, paths):
    """Refuse CRLF text files and scripts without the portable shebang."""
    problems = []
    for rel in paths:
        with open(os.path.join(root, rel), "rb") as handle:
            content = handle.read()
        if rel.startswith(VENDORED):
            continue
        if rel.endswith(TEXT_SUFFIXES) or os.path.basename(rel) == ".htaccess":
            if b"\r" in content:
                problems.append("%s has CRLF (Windows) line endings; convert it to LF" % rel)
        if rel in EXECUTABLES and not content.startswith(SHEBANG):
            first = content.split(b"\n", 1)[0]
            problems.append("%s must start with the line %r, not %r"
                            % (rel, SHEBANG.decode().strip(), first.decode("utf-8", "replace")))
    if problems:
        raise BundleError("refusing to build:\n  " + "\n  ".join(problems))


# -- vendored dependencies ----------------------------------------------------
def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _markers():
    try:
        from packaging.markers import Marker
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.markers import Marker  # noqa: F401
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def target_environment(python_version, platforms):
    """Marker values for the target host (pip evaluates markers for the running one)."""
    found = re.search(r"(x86_64|aarch64|i686|ppc64le|s390x|armv7l)$", platforms[0] if platforms else "")
    machine = found.group(1) if found else "x86_64"
    return {"python_version": python_version, "python_full_version": python_version + ".0",
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "sys_platform": "linux", "os_name": "posix", "platform_system": "Linux",
            "platform_machine": machine, "extra": ""}


def wheel_metadata(path):
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                return email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))
    raise BundleError("%s has no METADATA" % os.path.basename(path))


def missing_requirements(wheel_dir, environment):
    """Requirements of the downloaded wheels that the target needs and no wheel provides."""
    Requirement = _markers()
    have, wanted = set(), []
    for name in sorted(os.listdir(wheel_dir)):
        if not name.endswith(".whl"):
            continue
        meta = wheel_metadata(os.path.join(wheel_dir, name))
        have.add(normalize(meta["Name"]))
        for line in meta.get_all("Requires-Dist") or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(environment):
                wanted.append(req)
    missing = {}
    for req in wanted:
        if normalize(req.name) not in have:
            spec = req.name + str(req.specifier)
            missing.setdefault(normalize(req.name), spec)
    return sorted(missing.values())


def pip_download(requirements, wheel_dir, python_version, platforms, pip_args=()):
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
               "--only-binary=:all:", "--implementation", "cp",
               "--python-version", python_version, "--dest", wheel_dir]
    for platform in platforms:
        command += ["--platform", platform]
    command += list(pip_args) + list(requirements)
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    if result.returncode != 0:
        raise BundleError("pip could not download wheels for Python %s (%s):\n%s"
                          % (python_version, " ".join(platforms), result.stdout[-3000:]))


def download_dependencies(root, wheel_dir, python_version, platforms, pip_args=()):
    """Wheels of requirements.txt and everything they need on the target."""
    with open(os.path.join(root, "requirements.txt"), encoding="utf-8") as handle:
        requirements = [line.split("#", 1)[0].strip() for line in handle]
    requirements = [line for line in requirements if line]
    pip_download(requirements, wheel_dir, python_version, platforms, pip_args)
    # pip evaluates environment markers (`; python_version < "3.9"`) for the
    # interpreter running it, not for --python-version: fetch what it skipped.
    # The same bug can bring wheels the target does not need: drop those.
    environment = target_environment(python_version, platforms)
    for _ in range(MAX_CLOSURE_ROUNDS):
        missing = missing_requirements(wheel_dir, environment)
        if not missing:
            break
        pip_download(missing, wheel_dir, python_version, platforms, pip_args)
    else:
        raise BundleError("dependencies still missing after %d rounds: %s"
                          % (MAX_CLOSURE_ROUNDS, ", ".join(missing)))
    prune_unneeded(wheel_dir, requirements, environment)


def prune_unneeded(wheel_dir, requirements, environment):
    """Delete wheels that nothing reaches from `requirements` on the target."""
    Requirement = _markers()
    wheels = {}
    for name in os.listdir(wheel_dir):
        if name.endswith(".whl"):
            meta = wheel_metadata(os.path.join(wheel_dir, name))
            wheels[normalize(meta["Name"])] = (name, meta)
    todo = [normalize(Requirement(line).name) for line in requirements]
    seen = set()
    while todo:
        key = todo.pop()
        if key in seen or key not in wheels:
            continue
        seen.add(key)
        for line in wheels[key][1].get_all("Requires-Dist") or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(environment):
                todo.append(normalize(req.name))
    for key, (name, _) in wheels.items():
        if key not in seen:
            os.remove(os.path.join(wheel_dir, name))


def wheel_files(path):
    """(relative path in lib/, bytes) for each file a wheel installs into site-packages."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename
            parts = name.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers and data files are not needed
                name = "/".join(parts[2:])
            if "__pycache__" in name.split("/") or name.endswith((".pyc", ".pyo")):
                continue
            if name.startswith("/") or ".." in name.split("/"):
                raise BundleError("%s holds an unsafe path %r" % (os.path.basename(path), name))
            yield name, archive.read(info)


# -- the release: manifest and release lines -------------------------------------
def release_module(root=ROOT):
    """lib/taskq/release.py of the project being bundled (the format lives there)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "taskq_release_for_bundle", os.path.join(root, "lib", "taskq", "release.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def own_files(entries):
    """Arcnames of taskq's own files (lib/taskq/...), vendored Swagger UI included."""
    return sorted(arc for arc in entries if arc.startswith(OWN))


def release_id(version, entries):
    """version + the first 12 hex digits of a hash over lib/taskq's paths and contents."""
    import hashlib

    tree = hashlib.sha256()
    for arc in own_files(entries):
        tree.update(arc.encode("utf-8") + b"\0" + hashlib.sha256(entries[arc][0]).digest())
    return "%s+%s" % (version, tree.hexdigest()[:12])


def stamp_release(entries, version, release_py):
    """Append the release line to taskq's .py/.sql files, add lib/taskq/MANIFEST; the id."""
    import hashlib

    release = release_id(version, entries)
    for arc in own_files(entries):
        if arc.endswith(release_py.STAMPED) and not arc.startswith(VENDORED):
            data, mode = entries[arc]
            if data and not data.endswith(b"\n"):
                data += b"\n"
            entries[arc] = (data + release_py.stamp_line(arc, release).encode("ascii"), mode)
    dists = {arc.split("/")[1] for arc in entries
             if arc.startswith("lib/") and arc.split("/")[1].endswith(".dist-info")}
    files = {arc[len(OWN):]: hashlib.sha256(entries[arc][0]).hexdigest() for arc in own_files(entries)}
    manifest = release_py.Manifest(release, files, dists)
    entries[OWN + release_py.MANIFEST] = (manifest.text().encode("utf-8"), 0o644)
    return release


# -- bytecode ----------------------------------------------------------------
# Run by the target interpreter: compile each listed file (relative to the
# folder given) to __pycache__/<name>.<cache tag>.pyc; each stdin line is
# "checked <path>" or "unchecked <path>" (the kind of PEP 552 hash).
COMPILE_SCRIPT = r"""
import os, py_compile, sys
root = sys.argv[1]
print("TAG " + sys.implementation.cache_tag)
modes = {"checked": py_compile.PycInvalidationMode.CHECKED_HASH,
         "unchecked": py_compile.PycInvalidationMode.UNCHECKED_HASH}
for line in sys.stdin.read().split("\n"):
    if not line:
        continue
    kind, rel = line.split(" ", 1)
    try:
        out = py_compile.compile(os.path.join(root, rel), dfile=rel, doraise=True,
                                 invalidation_mode=modes[kind])
    except py_compile.PyCompileError as exc:
        print("SKIP %s %s" % (rel, str(exc).splitlines()[-1:]))
    else:
        print("PYC " + os.path.relpath(out, root))
"""


def interpreter_version(python):
    try:
        result = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                universal_newlines=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def find_interpreter(python_version, compile_with=None):
    """A Python of the target version to compile the bytecode with, or BundleError."""
    if compile_with:
        found = interpreter_version(compile_with)
        if found != python_version:
            raise BundleError("--compile-with %s is Python %s, not the target %s"
                              % (compile_with, found or "(does not run)", python_version))
        return compile_with
    if "%d.%d" % sys.version_info[:2] == python_version:
        return sys.executable
    candidates = [shutil.which("python" + python_version), "/usr/bin/python" + python_version]
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    versions = os.path.join(pyenv, "versions")
    if os.path.isdir(versions):
        for name in sorted(os.listdir(versions), reverse=True):
            if name == python_version or name.startswith(python_version + "."):
                candidates.append(os.path.join(versions, name, "bin", "python" + python_version))
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and interpreter_version(candidate) == python_version:
            return candidate
    raise BundleError("the bytecode must be compiled by Python %s, and none was found (this is "
                      "Python %d.%d): run tools/bundle.py with python%s, pass --compile-with "
                      "/path/to/python%s, or --no-bytecode"
                      % ((python_version,) + sys.version_info[:2] + (python_version, python_version)))


def compile_bytecode(entries, python, work):
    """Add __pycache__/*.pyc entries for every lib/**/*.py (checked hashes for
    lib/taskq, unchecked for the vendored packages); returns the cache tag."""
    sources = sorted(arc for arc in entries if arc.startswith("lib/") and arc.endswith(".py"))
    tree = os.path.join(work, "compile")
    for arc in sources:
        path = os.path.join(tree, arc)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(entries[arc][0])
    listing = ["%s %s" % ("checked" if arc.startswith(OWN) else "unchecked", arc) for arc in sources]
    result = subprocess.run([python, "-I", "-c", COMPILE_SCRIPT, tree], input="\n".join(listing),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if result.returncode != 0:
        raise BundleError("compiling the bytecode with %s failed:\n%s" % (python, result.stdout[-3000:]))
    tag = None
    for line in result.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "TAG":
            tag = rest
        elif kind == "PYC":
            with open(os.path.join(tree, rest), "rb") as handle:
                entries[rest.replace(os.sep, "/")] = (handle.read(), 0o644)
    return tag


# -- the zip -----------------------------------------------------------------
def _add(archive, arcname, data, mode):
    info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
    info.create_system = 3  # Unix, so unzip applies the mode below
    info.external_attr = (0o100000 | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def _add_dir(archive, arcname):
    info = zipfile.ZipInfo(arcname.rstrip("/") + "/", date_time=ZIP_DATE)
    info.create_system = 3
    info.external_attr = ((0o040000 | 0o755) << 16) | 0x10
    archive.writestr(info, b"")


def build(root=ROOT, python_version=None, platforms=DEFAULT_PLATFORMS, output_dir=None,
          pip_args=(), log=print, bytecode=True, compile_with=None):
    """Build the bundle and return its path."""
    python_version = python_version or "%d.%d" % sys.version_info[:2]
    if not re.match(r"^3\.\d+$", python_version):
        raise BundleError("--python-version must look like 3.11, not %r" % python_version)
    platforms = tuple(platforms)
    version = project_version(root)
    paths = project_files(root)
    check_sources(root, paths)
    output_dir = output_dir or os.path.join(root, "dist")
    os.makedirs(output_dir, exist_ok=True)
    target = os.path.join(output_dir, "taskq-%s-py%s.zip" % (version, python_version))
    compiler = find_interpreter(python_version, compile_with) if bytecode else None

    entries = {}  # arcname -> (bytes, mode)
    for rel in paths:
        with open(os.path.join(root, rel), "rb") as handle:
            entries[rel] = (handle.read(), 0o755 if rel in EXECUTABLES else 0o644)
    deny = entries["lib/.htaccess"][0]
    for folder in DENY_HTACCESS_FOR:
        if any(rel.startswith(folder + "/") for rel in entries):
            entries.setdefault(folder + "/.htaccess", (deny, 0o644))

    work = tempfile.mkdtemp(prefix="taskq-bundle-")
    try:
        wheel_dir = os.path.join(work, "wheels")
        os.makedirs(wheel_dir)
        log("downloading wheels for Python %s (%s)" % (python_version, ", ".join(platforms)))
        download_dependencies(root, wheel_dir, python_version, platforms, pip_args)
        vendored = []
        for name in sorted(os.listdir(wheel_dir)):
            if not name.endswith(".whl"):
                raise BundleError("pip returned a non-wheel file: %s" % name)
            vendored.append(name)
            for rel, data in wheel_files(os.path.join(wheel_dir, name)):
                arcname = "lib/" + rel
                if arcname in entries and arcname != "lib/.htaccess":
                    raise BundleError("%s would overwrite %s" % (name, arcname))
                if arcname != "lib/.htaccess":
                    entries[arcname] = (data, 0o644)
        release = stamp_release(entries, version, release_module(root))
        log("release %s" % release)
        if compiler:
            tag = compile_bytecode(entries, compiler, work)
            log("bytecode: %s (checked hash for lib/taskq, unchecked for the vendored "
                "packages), compiled by %s" % (tag, compiler))
        partial = target + ".part"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            dirs = set()
            for arcname in sorted(entries):
                parts = arcname.split("/")[:-1]
                for depth in range(1, len(parts) + 1):
                    dirs.add("/".join(parts[:depth]))
            dirs.add("data")
            for folder in sorted(dirs | {""}):
                _add_dir(archive, TOP + ("/" + folder if folder else ""))
            for arcname in sorted(entries):
                data, mode = entries[arcname]
                _add(archive, TOP + "/" + arcname, data, mode)
        os.replace(partial, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log("vendored: %s" % ", ".join(vendored))
    log("wrote %s (%d files)" % (os.path.relpath(target), len(entries)))
    return target


def extract(zip_path, dest):
    """Unpack a bundle the way `unzip` does, modes included (zipfile alone drops them)."""
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            path = archive.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(path, mode)
    return os.path.join(dest, TOP)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Build dist/taskq-<version>-py<X.Y>.zip, the folder to upload to a web host.")
    parser.add_argument("--python-version", metavar="X.Y",
                        help="the host's Python (default: the one running this, %d.%d)"
                             % sys.version_info[:2])
    parser.add_argument("--platform", action="append", metavar="TAG",
                        help="wheel platform tag, repeatable (default: %s)"
                             % " ".join(DEFAULT_PLATFORMS))
    parser.add_argument("--output-dir", metavar="DIR", help="where the zip goes (default: dist/)")
    parser.add_argument("--compile-with", metavar="PYTHON",
                        help="the interpreter (of the target version) that compiles the bytecode")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="ship sources only (every request then compiles them where lib/ is "
                             "not writable)")
    args = parser.parse_args(argv)
    try:
        build(python_version=args.python_version, platforms=args.platform or DEFAULT_PLATFORMS,
              output_dir=args.output_dir, bytecode=not args.no_bytecode,
              compile_with=args.compile_with)
    except BundleError as exc:
        print("bundle: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
