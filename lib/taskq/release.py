"""Which release the files under lib/ belong to, checked before anything else is imported.

An FTP client uploading a zip over an older (or newer) tree replaces the
files the zip holds and leaves the others; an interrupted upload replaces
some. Modules and SQL files of two releases then run together and fail in
ways no error message explains. tools/bundle.py therefore writes
lib/taskq/MANIFEST (the release id, every file of lib/taskq with its
sha256, the vendored distributions) and ends every .py and .sql file of
taskq with a line naming the release (`# taskq-release: 0.1.0+3f2a...`).

`check(lib)` says whether lib/ holds one release: every file the manifest
lists is there, each .py/.sql file names the manifest's release, no .py/.sql
file and no *.dist-info folder is there that the manifest does not list. A
file edited on the host keeps its release line, so a hotfix passes (its
content is not compared with the sha256: that is what makes it a hotfix);
up to HOTFIX_UNSTAMPED files without any line (copied from a git checkout)
pass as hotfixes too, when nothing else is wrong.
Without a MANIFEST (a git checkout, ./serve, the tests) nothing is checked.

Cost: one small read per .py/.sql file and a scandir per folder, about
0.5 ms per request (docs/performance.md, bench/bytecode_modes.py). This
module imports nothing of taskq and only `os`: it has to work when every
other file, errors.py included, is from another release.
"""

import os

MANIFEST = "MANIFEST"
STAMP = "taskq-release: "
STAMPED = (".py", ".sql")
COMMENT = {".py": "#", ".sql": "--"}
TAIL = 200  # bytes at the end of a file that hold its release line
SKIP_DIRS = ("__pycache__",)
# A file that names no release (taken from a git checkout to fix one thing, say) is a
# hotfix while at most this many do and nothing else is wrong; more of them is another
# release's tree (an older zip's lib/, whose files carry no line), refused.
HOTFIX_UNSTAMPED = 3
SHOWN = 5  # problems named in the message; details list up to LISTED
LISTED = 50
FIX = ("Delete the lib folder on the server and upload the lib folder of one zip again "
       "(docs/deploy.md, \"Uploading over an older tree / hotfixes\").")


def stamp_line(path, release):
    """The line tools/bundle.py appends to a .py or .sql file of `release`."""
    comment = COMMENT[os.path.splitext(path)[1]]
    return "%s %s%s (keep this line when you edit the file)\n" % (comment, STAMP, release)


def stamp_of(data):
    """The release named by the last release line (one of stamp_line's) in `data`, or None."""
    best, end = -1, 0
    for comment in COMMENT.values():
        marker = ("\n%s %s" % (comment, STAMP)).encode("ascii")
        at = data.rfind(marker)
        if at > best:
            best, end = at, at + len(marker)
    if best < 0:
        return None
    rest = data[end:].split(None, 1)
    return rest[0].decode("ascii", "replace") if rest else None


class Manifest:
    def __init__(self, release, files, dists):
        self.release = release  # "0.1.0+3f2a9c1b7e4d"
        self.files = files      # {path under lib/taskq: sha256 hex}
        self.dists = dists      # set of *.dist-info folder names in lib/

    def text(self):
        lines = ["# What tools/bundle.py put into lib/taskq (docs/deploy.md, \"Uploading over "
                 "an older tree / hotfixes\"). Checked on every request.",
                 "release %s" % self.release]
        lines += ["dist %s" % name for name in sorted(self.dists)]
        lines += ["file %s %s" % (self.files[path], path) for path in sorted(self.files)]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text):
        release, files, dists = None, {}, set()
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "release":
                release = rest.strip()
            elif kind == "dist":
                dists.add(rest.strip())
            elif kind == "file":
                digest, _, path = rest.partition(" ")
                files[path] = digest
        if not release or not files:
            raise ValueError("not a taskq manifest")
        return cls(release, files, dists)


class Mismatch:
    """lib/ does not hold one release: what the 503 answer and the log line say."""

    status = 503

    def __init__(self, release, problems):
        self.release = release    # the manifest's release id, or None
        self.problems = problems  # sorted [(path under the site, what is wrong)]

    @property
    def summary(self):
        named = "; ".join("%s %s" % pair for pair in self.problems[:SHOWN])
        if len(self.problems) > SHOWN:
            named += "; and %d more" % (len(self.problems) - SHOWN)
        return named

    @property
    def message(self):
        return ("The uploaded files are from two different taskq releases (lib/taskq/MANIFEST "
                "says %s): %s. %s" % (self.release or "unreadable", self.summary, FIX))

    def details(self):
        return {"release": self.release, "fix": FIX,
                "files": [{"path": path, "problem": what} for path, what in self.problems[:LISTED]]}


def _stamp(path):
    """The release a file names: its last TAIL bytes hold the line, unless code
    was added after it on the host (then the whole file is searched)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size > TAIL:
            os.lseek(fd, size - TAIL, 0)
        found = stamp_of(os.read(fd, TAIL))
        if found is None and size > TAIL:
            os.lseek(fd, 0, 0)
            found = stamp_of(os.read(fd, size))
        return found
    finally:
        os.close(fd)


def _walk(top, rel=""):
    """Relative paths of the files under `top` (no __pycache__)."""
    found = []
    with os.scandir(os.path.join(top, rel)) as entries:
        for entry in entries:
            name = rel + entry.name
            if entry.is_dir():
                if entry.name not in SKIP_DIRS:
                    found.extend(_walk(top, name + "/"))
            else:
                found.append(name)
    return found


def check(lib):
    """None when lib/ holds one release (or has no MANIFEST), else a Mismatch."""
    top = os.path.join(lib, "taskq")
    try:
        with open(os.path.join(top, MANIFEST), encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return Mismatch(None, [("lib/taskq/MANIFEST", "cannot be read")])
    try:
        manifest = Manifest.parse(text)
    except ValueError:
        return Mismatch(None, [("lib/taskq/MANIFEST", "is not a taskq manifest")])
    release = manifest.release
    problems, unstamped = [], []
    present = set(_walk(top))
    for path in present:
        if path.endswith(STAMPED) and path not in manifest.files:
            problems.append((path, "is not part of release %s" % release))
    for path in manifest.files:
        if path not in present:
            problems.append((path, "is missing"))
        elif path.endswith(STAMPED):
            try:
                found = _stamp(os.path.join(top, path))
            except OSError:
                problems.append((path, "cannot be read"))
                continue
            if found is None:
                unstamped.append((path, "names no release (it is from a release older than "
                                        "%s, or its taskq-release line was removed)" % release))
            elif found != release:
                problems.append((path, "is from release %s" % found))
    problems = [("lib/taskq/" + path, what) for path, what in problems]
    try:
        dists = {name for name in os.listdir(lib) if name.endswith(".dist-info")}
    except OSError:
        dists = set()
    problems += [("lib/" + name, "is not part of release %s" % release)
                 for name in dists - manifest.dists]
    problems += [("lib/" + name, "is missing") for name in manifest.dists - dists]
    if problems or len(unstamped) > HOTFIX_UNSTAMPED:
        problems += [("lib/taskq/" + path, what) for path, what in unstamped]
    if not problems:
        return None
    return Mismatch(release, sorted(problems))
