"""docs/architecture.md agrees with the code: the floors it writes down are
the imports lib/taskq has, and every file and function it names exists.

The floors are read from the page itself, so the page and this test cannot
disagree; the imports are read from the source (ast), the function-level
ones included, plus the route modules router.ROUTES names as strings.
"""

import ast
import os
import re

import pytest

from conftest import ROOT

PAGE = os.path.join(ROOT, "docs", "architecture.md")
LIB = os.path.join(ROOT, "lib")


def page():
    with open(PAGE, encoding="utf-8") as handle:
        return handle.read()


def section(title):
    text = page()
    start = text.index("\n## %s\n" % title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def table_rows(text):
    """The cells of each body row of the markdown tables in text."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s\-|]+\|$", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [row for row in rows if row[0] not in ("floor", "decision")]


def floors():
    """{module: floor}: a number, or 'client' for the modules a worker host installs alone."""
    placed = {}
    for cells in table_rows(section("Floors")):
        level = cells[0] if cells[0] == "client" else int(cells[0])
        for name in re.findall(r"`([\w.]+)`", cells[1]):
            assert name not in placed, "%s is on two floors" % name
            placed[name] = level
    return placed


def modules():
    """{dotted name below taskq (taskq itself for the package): path}."""
    found = {}
    top = os.path.join(LIB, "taskq")
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for file in files:
            if file.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, file), top)[:-3].replace(os.sep, ".")
                if rel == "__init__":
                    name = "taskq"
                else:
                    name = rel[:-len(".__init__")] if rel.endswith(".__init__") else rel
                found[name] = os.path.join(folder, file)
    return found


def imports(name, path, known):
    """Modules of taskq that module `name` imports, anywhere in its source."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = package.split(".") if package and package != "taskq" else []
            parts = parts[:len(parts) - (node.level - 1)] if node.level > 1 else parts
            base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = (base + "." if base else "") + alias.name
                found.add(candidate if candidate in known else (base or "taskq"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "taskq":
            found.add(node.module[len("taskq."):] if node.module != "taskq" else "taskq")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "taskq":
                    found.add(alias.name[len("taskq."):] if alias.name != "taskq" else "taskq")
    found.discard(name)
    return {module for module in found if module in known}


def import_graph():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    from taskq.router import ROUTES

    graph["app"] |= {handler.rpartition(".")[0] for _, _, handler in ROUTES if "." in handler}
    return graph


def test_every_module_of_lib_taskq_stands_on_exactly_one_floor_of_the_page():
    placed, known = floors(), modules()
    assert sorted(set(known) - set(placed)) == [], "modules on no floor of docs/architecture.md"
    assert sorted(set(placed) - set(known)) == [], "floors name modules that are gone"


def test_no_module_imports_one_on_a_higher_floor():
    placed, graph = floors(), import_graph()
    upward = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            if placed[name] == "client":
                if target != "taskq" and placed[target] != "client":
                    upward.append("%s (client) imports %s: a worker host installs the client "
                                  "alone" % (name, target))
            elif placed[target] == "client" or placed[target] > placed[name]:
                upward.append("%s (floor %s) imports %s (floor %s)"
                              % (name, placed[name], target, placed[target]))
    assert upward == []


def test_no_import_circle_between_modules():
    graph = import_graph()
    state, circles = {}, []

    def visit(name, trail):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                circles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def defined(path, dotted):
    """True if `dotted` (a function, a constant or Class.method) is defined at the top of path."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    head, _, rest = dotted.partition(".")
    for node in tree.body:
        names = []
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        if head in names:
            if not rest:
                return True
            return isinstance(node, ast.ClassDef) and any(
                isinstance(item, ast.FunctionDef) and item.name == rest for item in node.body)
    return False


def named_places():
    """(file, function) pairs the page names: its decision table, and each
    `file`, `function` pair written in its prose."""
    pairs = [(cells[1].strip("`"), cells[2].strip("`"))
             for cells in table_rows(section("Where is it decided"))]
    prose = section("One claim under CGI") + section("Adding a route")
    pairs += re.findall(r"`((?:lib|cgi-bin)/[\w/.]+\.py)`, `([\w.]+)`", prose)
    return pairs


@pytest.mark.parametrize("path,function", named_places())
def test_every_file_and_function_the_page_names_exists(path, function):
    assert os.path.isfile(os.path.join(ROOT, path)), "%s is gone" % path
    assert defined(os.path.join(ROOT, path), function), "%s has no %s" % (path, function)


def test_every_path_the_page_mentions_exists():
    mentioned = set(re.findall(r"`((?:lib|cgi-bin|tests|bench|docs)/[\w/.<>-]+)`", page()))
    gone = [p for p in sorted(mentioned)
            if "<" not in p and not os.path.exists(os.path.join(ROOT, p))]
    assert gone == []


def test_the_decision_table_has_rows_and_the_prose_names_places():
    assert len(table_rows(section("Where is it decided"))) >= 20
    assert len(named_places()) > len(table_rows(section("Where is it decided")))
