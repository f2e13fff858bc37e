"""A small template renderer that escapes by default (stdlib only).

Markup lives in `templates/*.html` beside this module, never in handlers.
The syntax is a deliberately small subset of Jinja's:

    {{ task.type }}               the value, HTML-escaped (quotes too)
    {{ task.params | json }}      pretty-printed JSON, escaped
    {{ body }}                    a Markup value (a rendered template) is not escaped again
    {% if x %} {% elif not y %} {% else %} {% endif %}
    {% if status == "failed" %}   comparison with a string or number literal (==, !=)
    {% for t in tasks %} ... {% else %} shown when empty {% endfor %}

There is no way to print a raw string from a template: only Markup (the
output of render()) passes unescaped, so one forgotten call cannot open an
XSS. Templates are parsed once per process and cached.
"""

import json
import os
import re

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")

_TOKEN = re.compile(r"({{.*?}}|{%.*?%})", re.S)
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
_ESCAPE = re.compile(r"[&<>\"']")


class TemplateError(Exception):
    """A template that cannot be parsed or rendered; names the file and line."""


class Markup(str):
    """HTML that is already safe (the output of render()); printed as it is."""


def escape(value):
    """The HTML text for any value: None is empty, Markup passes unchanged."""
    if isinstance(value, Markup):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], str(value))


def _to_json(value):
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, allow_nan=False)


FILTERS = {
    "json": _to_json,
    "length": lambda value: len(value) if value is not None else 0,
    "upper": lambda value: str(value).upper(),
}


def _lookup(path, scope):
    """`a.b.c` against nested dicts (keys) or objects (attributes); missing is None."""
    value = scope
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        else:
            value = getattr(value, part, None)
        if value is None:
            return None
    return value


_LITERAL = re.compile(r'^(?:"([^"]*)"|(-?\d+))$')


def _operand(text, scope):
    text = text.strip()
    literal = _LITERAL.match(text)
    if literal:
        return literal.group(1) if literal.group(1) is not None else int(literal.group(2))
    return _lookup(text, scope)


def _truth(expr, scope):
    expr = expr.strip()
    if expr.startswith("not "):
        return not _truth(expr[4:], scope)
    for op in ("==", "!="):
        if op in expr:
            left, right = expr.split(op, 1)
            equal = _operand(left, scope) == _operand(right, scope)
            return equal if op == "==" else not equal
    return bool(_operand(expr, scope))


class _Node:
    __slots__ = ("kind", "arg", "body", "alt")

    def __init__(self, kind, arg=None):
        self.kind, self.arg, self.body, self.alt = kind, arg, [], []


def parse(text, name="<string>"):
    """The template as a tree of nodes; TemplateError on unbalanced blocks.

    The stack holds frames [node, list text goes to, chained]; an elif is an
    else holding a chained if, closed by the same endif.
    """
    root = _Node("root")
    stack = [[root, root.body, False]]
    line = 1
    for piece in _TOKEN.split(text):
        target = stack[-1][1]
        if piece.startswith("{{") and piece.endswith("}}"):
            expr, _, filters = piece[2:-2].partition("|")
            names = [f.strip() for f in filters.split("|")] if filters.strip() else []
            for filter_name in names:
                if filter_name not in FILTERS:
                    raise TemplateError("%s:%d: unknown filter %r" % (name, line, filter_name))
            target.append(_Node("expr", (expr.strip(), names)))
        elif piece.startswith("{%") and piece.endswith("%}"):
            keyword, _, rest = piece[2:-2].strip().partition(" ")
            rest = rest.strip()
            frame = stack[-1]
            if keyword == "if":
                node = _Node("if", rest)
                target.append(node)
                stack.append([node, node.body, False])
            elif keyword == "for":
                var, sep, seq = rest.partition(" in ")
                if not sep or not var.strip().isidentifier():
                    raise TemplateError("%s:%d: write {%% for x in items %%}" % (name, line))
                node = _Node("for", (var.strip(), seq.strip()))
                target.append(node)
                stack.append([node, node.body, False])
            elif keyword == "elif":
                if frame[0].kind != "if" or frame[1] is frame[0].alt:
                    raise TemplateError("%s:%d: elif outside if" % (name, line))
                inner = _Node("if", rest)
                frame[0].alt.append(inner)
                frame[1] = frame[0].alt
                stack.append([inner, inner.body, True])
            elif keyword == "else":
                if frame[0].kind not in ("if", "for") or frame[1] is frame[0].alt:
                    raise TemplateError("%s:%d: else outside if/for" % (name, line))
                frame[1] = frame[0].alt
            elif keyword in ("endif", "endfor"):
                if len(stack) < 2 or frame[0].kind != keyword[3:]:
                    raise TemplateError("%s:%d: unexpected %s" % (name, line, keyword))
                while stack.pop()[2]:
                    pass
            else:
                raise TemplateError("%s:%d: unknown tag %r" % (name, line, keyword))
        elif piece:
            target.append(_Node("text", piece))
        line += piece.count("\n")
    if len(stack) != 1:
        raise TemplateError("%s: {%% %s %%} is never closed" % (name, stack[-1][0].kind))
    return root


def _render(nodes, scope, out):
    for node in nodes:
        kind = node.kind
        if kind == "text":
            out.append(node.arg)
        elif kind == "expr":
            expr, filters = node.arg
            value = _operand(expr, scope)
            for filter_name in filters:
                value = FILTERS[filter_name](value)
            out.append(escape(value))
        elif kind == "if":
            _render(node.body if _truth(node.arg, scope) else node.alt, scope, out)
        elif kind == "for":
            var, seq = node.arg
            items = _operand(seq, scope) or ()
            if not items:
                _render(node.alt, scope, out)
                continue
            inner = dict(scope)
            for index, item in enumerate(items):
                inner[var] = item
                inner["loop"] = {"index": index + 1, "first": index == 0,
                                 "last": index == len(items) - 1}
                _render(node.body, inner, out)


_CACHE = {}


def load(name):
    """The parsed template `templates/<name>`, cached for the process."""
    tree = _CACHE.get(name)
    if tree is None:
        if "/" in name or "\\" in name or name.startswith("."):
            raise TemplateError("template names are plain file names: %r" % name)
        with open(os.path.join(TEMPLATE_DIR, name), encoding="utf-8") as handle:
            tree = _CACHE[name] = parse(handle.read(), name)
    return tree


def render(name, **scope):
    """Render templates/<name> with `scope`; the result is Markup."""
    out = []
    _render(load(name).body, scope, out)
    return Markup("".join(out))


def render_string(text, **scope):
    out = []
    _render(parse(text).body, scope, out)
    return Markup("".join(out))
