"""What a registered param_schema may hold, and params checked against one within a CPU budget.

A schema comes from a producer key, so it is hostile until shown otherwise:
- `$ref` reaches only inside the schema itself (`#` or `#/json/pointer`): no
  URL, file or relative reference, no nested `$id` moving the base URI, no
  `$schema` but the drafts jsonschema ships; jsonschema is also handed an empty
  registry (4.18+) or a resolver that refuses remote documents (3.2-4.17), so a
  schema stored before these checks cannot fetch anything either.
- every `$ref` resolves, and no chain of `$ref`/`allOf`/`not`/... comes back to
  where it started without descending into the instance (that recursion never
  ends); recursion through `properties`, `items` and the like is fine.
- `pattern` and `patternProperties` are parsed and refused when a repeated group
  holds another variable repeat or overlapping alternatives (`(a+)+`, `(a|a)*`),
  the shapes whose backtracking is exponential.
- sizes are bounded (SCHEMA_LIMITS, docs/api.md#schema-limits).
Python's `re` has no timeout, so validation also runs under a CPU timer
(ITIMER_PROF): CPython's regex engine and jsonschema's loops check for signals,
and the timer's exception ends a costly validation with a 400 instead of a
process that burns until the web server kills it. Signals exist only in the
main thread: a threaded persistent server relies on the static checks alone.
"""

import json

from .errors import BadRequest

SCHEMA_LIMITS = {
    "bytes": 65536,        # the schema as canonical JSON
    "depth": 32,           # nested objects and arrays in the schema document
    "patterns": 100,       # pattern / patternProperties entries
    "pattern_length": 1000,
    "size_keyword": 10000000,  # maxLength, minItems, maxProperties, ... at most this
}
VALIDATION_CPU_SECONDS = 1.0  # one request's CPU for checking params against schemas

SIZE_KEYWORDS = ("maxLength", "minLength", "maxItems", "minItems", "maxProperties",
                 "minProperties", "maxContains", "minContains")
# keywords whose value is one subschema, a list of them, or a map of name -> subschema
ONE = ("additionalItems", "additionalProperties", "contains", "propertyNames", "not", "if",
       "then", "else", "unevaluatedItems", "unevaluatedProperties", "contentSchema")
MANY = ("allOf", "anyOf", "oneOf", "prefixItems")
NAMED = ("properties", "patternProperties", "definitions", "$defs", "dependentSchemas")
# of those, the ones applied to the same instance (no descent): a cycle through only
# these, and $ref, never ends
SAME_INSTANCE = ("not", "if", "then", "else", "allOf", "anyOf", "oneOf", "dependentSchemas")
REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
KNOWN_DRAFTS = ("json-schema.org/schema", "json-schema.org/draft-03/schema",
                "json-schema.org/draft-04/schema", "json-schema.org/draft-06/schema",
                "json-schema.org/draft-07/schema", "json-schema.org/draft/2019-09/schema",
                "json-schema.org/draft/2020-12/schema")


def _refuse(message):
    raise BadRequest("param_schema refused: " + message)


def _where(path):
    out = "$"
    for part in path:
        out += "[%d]" % part if isinstance(part, int) else "." + str(part)
    return out


def check(schema):
    """Raise BadRequest naming what makes `schema` unsafe to keep or to use."""
    if len(json.dumps(schema, separators=(",", ":"))) > SCHEMA_LIMITS["bytes"]:
        _refuse("larger than %d bytes as JSON" % SCHEMA_LIMITS["bytes"])
    _check_depth(schema, 0)
    draft = schema.get("$schema") if isinstance(schema, dict) else None
    if draft is not None:
        bare = str(draft).split("://", 1)[-1].rstrip("#")
        if not isinstance(draft, str) or bare not in KNOWN_DRAFTS:
            _refuse("$schema %r is not a JSON Schema draft this server knows "
                    "(nothing is fetched)" % (draft,))
    walker = _Walker(schema)
    walker.visit(schema, ())
    walker.check_cycles()


def _check_depth(value, depth):
    if depth > SCHEMA_LIMITS["depth"]:
        _refuse("nested deeper than %d levels" % SCHEMA_LIMITS["depth"])
    if isinstance(value, dict):
        for item in value.values():
            _check_depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)


class _Walker:
    """Visits every subschema (and every $ref target) once, checking each, and
    records same-instance edges between them for the cycle check."""

    def __init__(self, root):
        self.root = root
        self.seen = set()
        self.edges = {}  # pointer -> [pointers applied to the same instance]
        self.patterns = 0

    def visit(self, node, path):
        key = _pointer(path)
        if key in self.seen:
            return
        self.seen.add(key)
        edges = self.edges.setdefault(key, [])
        if not isinstance(node, dict):
            return  # true / false schemas (or junk check_schema refuses)
        for word, value in node.items():
            here = path + (word,)
            if word in REF_KEYWORDS:
                target = self.resolve(value, word, here)
                edges.append(_pointer(target))
                self.visit(_at(self.root, target), target)
            elif word in ("$id", "id") and path and isinstance(value, str) and not value.startswith("#"):
                _refuse("%s %r at %s moves the base URI inside the schema; only the root may "
                        "carry one" % (word, value, _where(here)))
            elif word in SIZE_KEYWORDS:
                if isinstance(value, (int, float)) and value > SCHEMA_LIMITS["size_keyword"]:
                    _refuse("%s at %s is over %d" % (word, _where(here), SCHEMA_LIMITS["size_keyword"]))
            elif word == "pattern" and isinstance(value, str):
                self.pattern(value, here)
            elif word in ONE or (word == "items" and isinstance(value, dict)):
                if word in SAME_INSTANCE:
                    edges.append(_pointer(here))
                self.visit(value, here)
            elif word in MANY or (word == "items" and isinstance(value, list)):
                for index, item in enumerate(value if isinstance(value, list) else ()):
                    if word in SAME_INSTANCE:
                        edges.append(_pointer(here + (index,)))
                    self.visit(item, here + (index,))
            elif word in NAMED or word == "dependencies":
                for name, item in (value.items() if isinstance(value, dict) else ()):
                    if word == "patternProperties":
                        self.pattern(name, here + (name,))
                    if not isinstance(item, (dict, bool)):
                        continue  # dependencies: a list of names
                    if word in SAME_INSTANCE or word == "dependencies":
                        edges.append(_pointer(here + (name,)))
                    self.visit(item, here + (name,))

    def resolve(self, ref, word, where):
        if not isinstance(ref, str):
            _refuse("%s at %s must be a string" % (word, _where(where)))
        if ref != "#" and not ref.startswith("#/"):
            _refuse("%s %r at %s does not point inside this schema: only '#' and '#/...' "
                    "references resolve (nothing is fetched)" % (word, ref, _where(where)))
        from urllib.parse import unquote

        path = []
        node = self.root
        for raw in ref[2:].split("/") if ref != "#" else ():
            part = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                path.append(int(part))
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                path.append(part)
                node = node[part]
            else:
                _refuse("%s %r at %s does not resolve: nothing is there" % (word, ref, _where(where)))
        return tuple(path)

    def pattern(self, text, where):
        self.patterns += 1
        if self.patterns > SCHEMA_LIMITS["patterns"]:
            _refuse("more than %d patterns" % SCHEMA_LIMITS["patterns"])
        if len(text) > SCHEMA_LIMITS["pattern_length"]:
            _refuse("the pattern at %s is longer than %d characters"
                    % (_where(where), SCHEMA_LIMITS["pattern_length"]))
        problem = pattern_problem(text)
        if problem:
            _refuse("the pattern %r at %s %s" % (text, _where(where), problem))

    def check_cycles(self):
        """A cycle of same-instance edges: validation would follow it forever."""
        state = {}
        for start in self.edges:
            if start in state:
                continue
            stack = [(start, iter(self.edges.get(start, ())))]
            state[start] = 1
            while stack:
                node, children = stack[-1]
                child = next(children, None)
                if child is None:
                    state[node] = 2
                    stack.pop()
                elif state.get(child) == 1:
                    _refuse("$ref cycle through %s never descends into the params, so "
                            "validation would never end" % ("#" + child))
                elif child not in state:
                    state[child] = 1
                    stack.append((child, iter(self.edges.get(child, ()))))


def _pointer(path):
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _at(root, path):
    node = root
    for part in path:
        node = node[part]
    return node


def pattern_problem(text):
    """Why `text` may not be a pattern (None when it may): it does not compile, or it can
    backtrack exponentially (see _risky)."""
    try:
        from re import _parser as sre_parse  # Python 3.11+
    except ImportError:  # pragma: no cover - 3.8-3.10
        import sre_parse
    try:
        tree = sre_parse.parse(text)
    except Exception as exc:  # noqa: BLE001 - re.error, RecursionError, OverflowError
        return "is not a valid regular expression (%s)" % exc
    if _risky(list(tree)):
        return ("can backtrack exponentially (a repeated group whose body holds a repeat or "
                "alternatives, and can end with a character it can start with, like (a+)+ "
                "or (a|a)*); rewrite it so each repetition is unambiguous")
    return None


# Character sets are computed over a sample alphabet: ASCII and a few others.
_ALPHABET = [chr(c) for c in range(128)] + ["\u00e9", "\u00a0", "\u4e00", "\u0663"]
_ALL = frozenset(range(len(_ALPHABET)))


def _category(name):
    import re

    test = {"DIGIT": r"\d", "SPACE": r"\s", "WORD": r"\w"}
    negate = "_NOT_" in name
    kind = name.rsplit("_", 1)[-1]
    if kind not in test:
        return _ALL
    hits = frozenset(i for i, ch in enumerate(_ALPHABET) if re.match(test[kind], ch))
    return _ALL - hits if negate else hits


def _chars(op, arg):
    """The sample characters one single-character item matches."""
    name = str(op)
    if name == "LITERAL":
        return frozenset(i for i, ch in enumerate(_ALPHABET) if ord(ch) == arg) or frozenset([-arg])
    if name == "NOT_LITERAL":
        return _ALL - frozenset(i for i, ch in enumerate(_ALPHABET) if ord(ch) == arg)
    if name == "IN":
        found, negate = set(), False
        for sub_op, sub_arg in arg:
            sub = str(sub_op)
            if sub == "NEGATE":
                negate = True
            elif sub == "RANGE":
                found |= {i for i, ch in enumerate(_ALPHABET) if sub_arg[0] <= ord(ch) <= sub_arg[1]}
            elif sub == "CATEGORY":
                found |= _category(str(sub_arg))
            else:
                found |= _chars(sub_op, sub_arg)
        return _ALL - found if negate else frozenset(found)
    return _ALL  # ANY, CATEGORY at top level, back-references: anything


def _ends(items, last=False):
    """(characters a sequence can start with (or end with), whether it can match empty)."""
    found = set()
    for op, arg in (reversed(items) if last else items):
        chars, nullable = _ends_of(op, arg, last)
        found |= chars
        if not nullable:
            return found, False
    return found, True


def _ends_of(op, arg, last):
    name = str(op)
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        chars, nullable = _ends(list(arg[2]), last)
        return chars, nullable or arg[0] == 0
    if name in ("SUBPATTERN", "ATOMIC_GROUP"):
        return _ends(list(arg[-1] if name == "SUBPATTERN" else arg), last)
    if name == "BRANCH":
        found, nullable = set(), False
        for branch in arg[1]:
            chars, empty = _ends(list(branch), last)
            found |= chars
            nullable = nullable or empty
        return found, nullable
    if name in ("AT", "ASSERT", "ASSERT_NOT"):
        return set(), True
    if name == "GROUPREF" or name.startswith("GROUPREF"):
        return set(_ALL), True
    return set(_chars(op, arg)), False


def _has_choice(items):
    """Does a sequence hold a variable repeat or alternatives (ways to match differently)?"""
    for op, arg in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            if arg[0] != arg[1] or _has_choice(list(arg[2])):
                return True
        elif name == "SUBPATTERN" and _has_choice(list(arg[-1])):
            return True
        elif name == "BRANCH":
            return True
    return False


def _overlapping_branches(items):
    for op, arg in items:
        name = str(op)
        if name == "BRANCH":
            seen = set()
            for branch in arg[1]:
                chars, empty = _ends(list(branch))
                if empty or chars & seen:
                    return True
                seen |= chars
        elif name == "SUBPATTERN" and _overlapping_branches(list(arg[-1])):
            return True
    return False


def _risky(items):
    """A repeat whose body can be split across repetitions in more than one way:
    the body holds a choice (a repeat, alternatives) and can end with a character it can
    also start with ((a+)+, (\\d+\\.?)+, (x+x+)+), or its alternatives overlap ((a|a)*).
    (-[a-z]+)* and ([a-z]+,)* are unambiguous and pass. Possessive repeats and atomic
    groups (3.11+) never backtrack into themselves and are not looked into."""
    for op, arg in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, body = arg
            body = list(body)
            if high > 1 and _has_choice(body):  # (.*a){12} is as bad as (.*a)*
                first, _ = _ends(body)
                last, _ = _ends(body, last=True)
                if first & last or _overlapping_branches(body):
                    return True
            elif high != low and high > 1 and _overlapping_branches(body):
                return True
            if _risky(body):
                return True
        elif name == "SUBPATTERN":
            if _risky(list(arg[-1])):
                return True
        elif name == "BRANCH":
            if any(_risky(list(branch)) for branch in arg[1]):
                return True
        elif name in ("ASSERT", "ASSERT_NOT"):
            if _risky(list(arg[1])):
                return True
    return False


class _OverBudget(BaseException):
    """Raised by the CPU timer; a BaseException so no `except Exception` on the way swallows it."""


def _on_timer(signum, frame):
    raise _OverBudget()


def validator(schema):
    """A jsonschema validator for `schema` that resolves references only inside it."""
    from jsonschema import validators

    cls = validators.validator_for(schema)
    try:
        from referencing import Registry

        return cls(schema, registry=Registry())  # jsonschema 4.18+: nothing outside resolves
    except (ImportError, TypeError):
        return cls(schema, resolver=_local_resolver(schema, cls))


def _local_resolver(schema, cls):
    from jsonschema import RefResolver
    from jsonschema.exceptions import RefResolutionError

    class LocalResolver(RefResolver):
        def resolve_remote(self, uri):
            raise RefResolutionError("remote references are not resolved: %s" % uri)

    id_of = getattr(cls, "ID_OF", None)
    if id_of is None:
        return LocalResolver.from_schema(schema)
    return LocalResolver.from_schema(schema, id_of=id_of)


def errors_within_budget(schema, params, budget):
    """Every error of `params` against `schema`, sorted; `budget` is a one-item list of
    the CPU seconds this request may still spend (shared by a batch's items)."""
    import time

    try:  # the C module: signal.py's enum wrapping costs a CGI create about 0.7 ms
        import _signal as signal
    except ImportError:  # pragma: no cover - every CPython 3.8-3.13 has it
        import signal

    started = time.process_time()
    timed = False
    previous = None
    if budget[0] <= 0:
        raise _too_costly()
    try:
        previous = signal.signal(signal.SIGPROF, _on_timer)
        signal.setitimer(signal.ITIMER_PROF, budget[0])
        timed = True
    except (ValueError, AttributeError, OSError):  # not the main thread, or no timers here
        pass
    try:
        try:
            found = [] if valid_without_jsonschema(schema, params) else list(
                validator(schema).iter_errors(params))
        finally:
            if timed:
                signal.setitimer(signal.ITIMER_PROF, 0)
                signal.signal(signal.SIGPROF, previous if previous is not None else signal.SIG_DFL)
            budget[0] -= time.process_time() - started
    except _OverBudget:  # also when the timer fired as validation ended: it was over budget
        raise _too_costly() from None
    except RecursionError:
        raise BadRequest("params nest too deeply for this type's param_schema") from None
    except Exception as exc:  # noqa: BLE001 - a stored schema jsonschema cannot use
        if type(exc).__name__ in ("RefResolutionError", "Unresolvable", "PointerToNowhere",
                                  "Unretrievable", "NoSuchResource", "SchemaError"):
            raise BadRequest("This type's param_schema cannot be used (%s); an admin must "
                             "register it again" % type(exc).__name__) from None
        raise
    return found


def _too_costly():
    return BadRequest("Checking params against this type's param_schema took more than %g s "
                      "of CPU (a costly pattern or uniqueItems on a large array); nothing "
                      "was created" % VALIDATION_CPU_SECONDS)


# -- params accepted without importing jsonschema (issue 19) --------------------------
# A CGI create pays jsonschema's import (100+ ms) on every request, more than the rest of
# the request. Most param_schemas use only keywords that mean the same in drafts 6, 7,
# 2019-09 and 2020-12: the drafts every supported jsonschema release picks for a schema
# without $schema (3.2: draft 7; 4.x: 2020-12) or naming one of them. Params such a schema
# accepts are accepted here, jsonschema never loaded. Everything else goes to jsonschema:
# any other keyword or $schema, a keyword value of an unexpected shape, and every params
# that fails, so an error's message and path are always jsonschema's own.
# tests/unit/test_schema_fast_path.py holds this to the JSON-Schema-Test-Suite and to
# jsonschema on generated schemas.
FAST_DRAFTS = ("json-schema.org/draft-06/schema", "json-schema.org/draft-07/schema",
               "json-schema.org/draft/2019-09/schema", "json-schema.org/draft/2020-12/schema")
# no effect on validity: annotations, and `format`, which jsonschema asserts only when
# given a format checker (validator() gives none); $defs matter only through a $ref
FAST_IGNORED = frozenset(("title", "description", "default", "examples", "$comment", "format",
                          "readOnly", "writeOnly", "deprecated", "definitions", "$defs"))
_TYPES = {"array": lambda x: type(x) is list, "boolean": lambda x: type(x) is bool,
          "null": lambda x: x is None, "object": lambda x: type(x) is dict,
          "string": lambda x: type(x) is str,
          "number": lambda x: type(x) in (int, float),
          "integer": lambda x: type(x) is int or type(x) is float and x.is_integer()}


class _Unsupported(Exception):
    """The schema uses something the fast path does not decide: jsonschema must."""


def valid_without_jsonschema(schema, params):
    """True when `params` meets `schema` by the keywords decided here; False when it
    fails or when jsonschema must decide (and name the errors)."""
    try:
        return fast_verdict(schema, params) is True
    except RecursionError:
        return False


def fast_verdict(schema, instance):
    """True (valid) or False (invalid) by the fast path's keywords, None when it cannot say."""
    if type(schema) is not dict:
        return None
    draft = schema.get("$schema")
    if draft is not None and (type(draft) is not str
                              or draft.split("://", 1)[-1].rstrip("#") not in FAST_DRAFTS):
        return None
    if "$id" in schema and type(schema["$id"]) is not str:
        return None
    try:
        return _valid(schema, instance, True)
    except _Unsupported:
        return None


def _number(value):
    if type(value) not in (int, float):
        raise _Unsupported()
    return value


def _valid(schema, instance, root=False):
    if schema is True or schema is False:
        return schema
    if type(schema) is not dict:
        raise _Unsupported()
    for word in schema:  # every keyword known before any decides (no sibling overrides)
        if word not in _KEYWORDS and word not in FAST_IGNORED and not (
                root and word in ("$schema", "$id")):
            raise _Unsupported()
    for word, value in schema.items():
        check = _KEYWORDS.get(word)
        if check is not None and not check(value, instance, schema):
            return False
    return True


def _type(value, instance, schema):
    names = value if type(value) is list else [value]
    found = False
    for name in names:
        test = _TYPES.get(name) if type(name) is str else None
        if test is None:
            raise _Unsupported()
        found = found or test(instance)
    return found


def _properties(value, instance, schema):
    if type(value) is not dict:
        raise _Unsupported()
    if type(instance) is not dict:
        return True
    return all(_valid(sub, instance[name]) for name, sub in value.items() if name in instance)


def _additional(value, instance, schema):
    named = schema.get("properties", {})
    if type(value) not in (dict, bool) or type(named) is not dict or "patternProperties" in schema:
        raise _Unsupported()
    if type(instance) is not dict:
        return True
    return all(_valid(value, item) for name, item in instance.items() if name not in named)


def _required(value, instance, schema):
    if type(value) is not list or any(type(name) is not str for name in value):
        raise _Unsupported()
    return type(instance) is not dict or all(name in instance for name in value)


def _items(value, instance, schema):
    if type(value) not in (dict, bool):
        raise _Unsupported()  # the array form: draft 7's tuples, refused by 2020-12
    return type(instance) is not list or all(_valid(value, item) for item in instance)


def _equal(one, two):
    """JSON equality: 1 == 1.0, true is not 1, containers compared item by item."""
    if type(one) is bool or type(two) is bool:
        return one is two
    if type(one) is list:
        return (type(two) is list and len(one) == len(two)
                and all(_equal(a, b) for a, b in zip(one, two)))
    if type(one) is dict:
        return (type(two) is dict and one.keys() == two.keys()
                and all(_equal(item, two[key]) for key, item in one.items()))
    if type(two) in (list, dict):
        return False
    return one == two


def _enum(value, instance, schema):
    if type(value) is not list:
        raise _Unsupported()
    return any(_equal(each, instance) for each in value)


def _pattern(value, instance, schema):
    """As jsonschema: re.search, in this process under the same CPU timer; check() has
    refused patterns that backtrack exponentially."""
    import re

    if type(value) is not str:
        raise _Unsupported()
    if type(instance) is not str:
        return True
    try:
        return re.search(value, instance) is not None
    except re.error:
        raise _Unsupported() from None


def _bound(kind, compare):
    def check(value, instance, schema):
        _number(value)
        if kind == "number":
            return type(instance) not in (int, float) or compare(instance, value)
        return type(instance) is not kind or compare(len(instance), value)
    return check


_KEYWORDS = {
    "type": _type, "properties": _properties, "additionalProperties": _additional,
    "required": _required, "items": _items, "enum": _enum,
    "const": lambda value, instance, schema: _equal(value, instance),
    "pattern": _pattern,
    "minimum": _bound("number", lambda x, v: x >= v),
    "maximum": _bound("number", lambda x, v: x <= v),
    "exclusiveMinimum": _bound("number", lambda x, v: x > v),
    "exclusiveMaximum": _bound("number", lambda x, v: x < v),
    "minLength": _bound(str, lambda n, v: n >= v), "maxLength": _bound(str, lambda n, v: n <= v),
    "minItems": _bound(list, lambda n, v: n >= v), "maxItems": _bound(list, lambda n, v: n <= v),
    "minProperties": _bound(dict, lambda n, v: n >= v),
    "maxProperties": _bound(dict, lambda n, v: n <= v),
}
