"""Where config comes from, with the rules the Pulumi CLI applies: stack files, `--set` values, engine strings.

One set of rules for every way a value reaches the program, so a value refused in one is refused in all:
- YAML is parsed safely with the YAML 1.2 core schema (what the CLI's yaml.v3 reads: `yes` / `on` are
  strings, not booleans), one document, no duplicate keys, string keys only, bounded size, nesting and
  alias expansion (an alias bomb fails in milliseconds, a recursive alias is refused);
- values must have a JSON form, as the engine hands config to programs as JSON: no dates, `!!binary`,
  `!!set`, custom tags, `.inf` or `.nan`;
- `secure:` values have Pulumi's shape, `{secure: <non-empty ciphertext string>}` and nothing else;
- keys without a namespace belong to the project (`canaryPercent` is `netra:canaryPercent`), and only the
  project's namespace and the provider keys this program reads are accepted.
Every problem is `(path, message)` with the path of keys down to the bad value.
"""
from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import yaml
from yaml import events as ev
from yaml import nodes

MAX_BYTES = 1 << 20  # a stack file is a few KiB; 1 MiB leaves room and bounds the parser's work
MAX_DEPTH = 32  # nesting levels after alias expansion (the real files use 5)
MAX_NODES = 50_000  # values after alias expansion (the real files have about 300)
MAX_ALIASES = 1_000

# Keys read from the provider's namespace rather than the project's.
PROVIDER_KEYS = {"gcp:project": "project", "gcp:region": "region"}


@functools.lru_cache(maxsize=1)
def gcp_provider_keys() -> dict[str, str]:
    """Every `gcp:` key the provider itself reads -> "string" | "boolean": its config schema as the
    installed pulumi_gcp ships it (pulumi_gcp/config/vars.py, one `__config__.get[_bool]('<key>')` each).
    A stack may set them (gcp:zone, gcp:impersonateServiceAccount, ...); the program reads only PROVIDER_KEYS."""
    spec = importlib.util.find_spec("pulumi_gcp.config.vars")
    text = open(spec.origin, encoding="utf-8").read() if spec and spec.origin else ""
    found = {name: "boolean" if kind == "_bool" else "string"
             for kind, name in re.findall(r"__config__\.get(_bool)?\('([A-Za-z0-9_]+)'\)", text)}
    if not found:
        raise RuntimeError(f"no gcp provider config keys found in {spec.origin if spec else 'pulumi_gcp.config.vars'}")
    return found


def provider_value_problem(key: str, value: Any) -> str | None:
    """Why `value` is not one the gcp provider accepts for its own `key` (the CLI stores strings), or None."""
    kind = gcp_provider_keys().get(key.partition(":")[2])
    if kind == "boolean" and not (isinstance(value, bool) or str(value).lower() in ("true", "false")):
        return f"the gcp provider reads {key} as a boolean: true or false, got {value!r}"
    return None  # string keys: any value (objects such as gcp:defaultLabels arrive JSON-encoded)

Path = tuple[Any, ...]


@dataclass
class SourceProblem:
    path: Path  # keys from the document root (or from the --set key) down to the value
    message: str
    line: int | None = None  # 1-based line in the YAML text, when known


class SourceError(Exception):
    def __init__(self, problems: list[SourceProblem]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p.path)) or '(document)'}: {p.message}" for p in problems))


# --- YAML 1.2 core schema -------------------------------------------------------------------------

STR, INT, FLOAT, BOOL, NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))
SEQ, MAP, MERGE = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map", "tag:yaml.org,2002:merge"
JSON_TAGS = {STR, INT, FLOAT, BOOL, NULL, SEQ, MAP}
TAG_WORDS = {
    "tag:yaml.org,2002:timestamp": "a date/time (the engine passes config as JSON, which has no dates); quote it for a string",
    "tag:yaml.org,2002:binary": "!!binary data (config values are JSON: strings, numbers, booleans, lists, objects)",
    "tag:yaml.org,2002:set": "a !!set (config values are JSON: use a list)",
    "tag:yaml.org,2002:omap": "an !!omap (config values are JSON: use a mapping)",
    "tag:yaml.org,2002:pairs": "!!pairs (config values are JSON: use a mapping)",
}
_INT = re.compile(r"^[-+]?[0-9]+$|^0o[0-7]+$|^0x[0-9a-fA-F]+$")


class _CoreLoader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit types (plus dates, so they can be refused)."""

    yaml_implicit_resolvers: dict = {}

    def construct_core_int(self, node: nodes.ScalarNode) -> int:
        text = self.construct_scalar(node)
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)


for _tag, _regex, _first in [
    (BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (INT, _INT.pattern, "-+0123456789"),
    (FLOAT, r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$",
     "-+0123456789."),
    (MERGE, r"^(?:<<)$", "<"),
    ("tag:yaml.org,2002:timestamp",
     r"^(?:[0-9]{4}-[0-9][0-9]?-[0-9][0-9]?(?:(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?"
     r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)?)$", "0123456789"),
]:
    _CoreLoader.add_implicit_resolver(_tag, re.compile(_regex), list(_first))
_CoreLoader.add_constructor(INT, _CoreLoader.construct_core_int)


def _marked(e: yaml.YAMLError) -> SourceProblem:
    if not isinstance(e, yaml.MarkedYAMLError):
        return SourceProblem((), f"not valid YAML: {e}")
    mark = e.problem_mark or e.context_mark
    text = " ".join(str(x) for x in (e.context, e.problem) if x)
    return SourceProblem((), f"column {mark.column + 1}: {text}" if mark else text, mark.line + 1 if mark else None)


def parse_yaml(data: bytes | str) -> tuple[Any, dict[Path, int]]:
    """The one JSON-shaped value of a YAML text, and the line of each path in it; raise SourceError
    (each problem with the path of keys to the value and its line; the caller names the text)."""
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise SourceError([SourceProblem((), f"is {len(data)} bytes; at most {MAX_BYTES} allowed")])
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SourceError([SourceProblem((), f"is not valid UTF-8 (byte {e.start}: {e.reason})",
                                             data.count(b"\n", 0, e.start) + 1)]) from None
    if len(data) > MAX_BYTES:
        raise SourceError([SourceProblem((), f"is {len(data)} characters; at most {MAX_BYTES} allowed")])
    try:
        _check_events(yaml.parse(data, Loader=_CoreLoader))
        loader = _CoreLoader(data)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except _AliasProblem as e:
        raise SourceError([e.problem]) from None
    except yaml.YAMLError as e:
        raise SourceError([_marked(e)]) from None
    if root is None:
        return None, {}
    lines: dict[Path, int] = {}
    problems = _check_nodes(root, lines)
    if problems:
        raise SourceError(problems)
    loader = _CoreLoader("")
    try:
        value = loader.construct_document(root)
    except yaml.YAMLError as e:  # e.g. a malformed merge: report it, never a traceback
        raise SourceError([_marked(e)]) from None
    except (ValueError, TypeError, OverflowError) as e:  # a constructor refusing a tagged scalar
        raise SourceError([SourceProblem((), f"a value cannot be read: {e}", root.start_mark.line + 1)]) from None
    finally:
        loader.dispose()
    return value, lines


class _AliasProblem(Exception):
    """An alias refused where it is used: its line and the path of keys down to it."""

    def __init__(self, problem: SourceProblem):
        self.problem = problem
        super().__init__(problem.message)


@dataclass
class _Frame:
    """An open mapping or sequence of the event stream: its anchor, expanded size and depth so far, and
    where in it the parser is (children seen; a mapping's last key)."""

    mapping: bool
    anchor: str | None
    size: int = 1
    depth: int = 0
    seen: int = 0
    key: Any = None


def _check_events(stream: Iterable[ev.Event]) -> None:
    """Depth, size and document count from the event stream, before the (recursive) composer runs; every
    alias is checked where it is used (a recursive one, one that expands past the limits), naming its
    line and the keys down to it."""
    depth = count = aliases = documents = 0
    frames: list[_Frame] = []
    expanded: dict[str, tuple[int, int]] = {}  # anchor -> (values, nesting levels) it expands to
    total = 0  # values of the document with every alias expanded so far

    def path() -> Path:
        return tuple(f.key if f.mapping else f.seen for f in frames if not f.mapping or f.seen % 2)

    def done(size: int, levels: int, scalar: Any = None) -> None:  # a complete child of the open container
        if frames:
            f = frames[-1]
            if f.mapping and f.seen % 2 == 0:
                f.key = scalar if isinstance(scalar, str) else "?"
            f.seen += 1
            f.size = min(MAX_NODES + 1, f.size + size)
            f.depth = max(f.depth, levels)

    for event in stream:
        count += 1
        anchor = getattr(event, "anchor", None)
        if isinstance(event, (ev.MappingStartEvent, ev.SequenceStartEvent)):
            depth += 1
            total += 1
            if depth > MAX_DEPTH:
                raise yaml.MarkedYAMLError(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=event.start_mark)
            frames.append(_Frame(isinstance(event, ev.MappingStartEvent), anchor))
        elif isinstance(event, (ev.MappingEndEvent, ev.SequenceEndEvent)):
            depth -= 1
            f = frames.pop()
            if f.anchor:
                expanded[f.anchor] = (f.size, f.depth + 1)
            done(f.size, f.depth + 1)
        elif isinstance(event, ev.ScalarEvent):
            total += 1
            if anchor:
                expanded[anchor] = (1, 0)
            done(1, 0, event.value)
        elif isinstance(event, ev.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise yaml.MarkedYAMLError(problem=f"more than {MAX_ALIASES} aliases", problem_mark=event.start_mark)
            line, where = event.start_mark.line + 1, path()
            if any(f.anchor == anchor for f in frames):
                raise _AliasProblem(SourceProblem(where, f"alias *{anchor} is used inside its own anchor &{anchor}: a "
                                                         "recursive alias has no JSON form", line))
            if anchor not in expanded:
                continue  # undefined: the composer says so, with its line
            size, levels = expanded[anchor]
            total += size
            if total > MAX_NODES:
                raise _AliasProblem(SourceProblem(where, f"alias *{anchor} expands to {size} values: with it the "
                                                         f"document holds more than {MAX_NODES} (an alias bomb?)", line))
            if depth + levels > MAX_DEPTH:
                raise _AliasProblem(SourceProblem(where, f"alias *{anchor} nests {levels} levels here: more than "
                                                         f"{MAX_DEPTH} in all", line))
            done(size, levels)
        elif isinstance(event, ev.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise yaml.MarkedYAMLError(problem="more than one YAML document (`---`); a stack file is one mapping",
                                           problem_mark=event.start_mark)
        if count > MAX_NODES * 2:
            raise yaml.MarkedYAMLError(problem=f"more than {MAX_NODES} values", problem_mark=event.start_mark)


def _check_nodes(root: nodes.Node, lines: dict[Path, int]) -> list[SourceProblem]:
    """Alias expansion bounded, no cycles, JSON tags only, string keys, no duplicates, finite numbers."""
    problems: list[SourceProblem] = []
    expanded = _expanded_sizes(root)
    if expanded is None:
        return [SourceProblem((), "a recursive alias (an anchor used inside itself) has no JSON form",
                              root.start_mark.line + 1)]
    size, depth = expanded
    if size > MAX_NODES:
        return [SourceProblem((), f"aliases expand to more than {MAX_NODES} values (an alias bomb?)", root.start_mark.line + 1)]
    if depth > MAX_DEPTH:
        return [SourceProblem((), f"aliases expand to more than {MAX_DEPTH} nesting levels", root.start_mark.line + 1)]
    stack: list[tuple[nodes.Node, Path]] = [(root, ())]
    seen: set[tuple[int, Path]] = set()
    while stack:
        node, path = stack.pop()
        if (id(node), path) in seen:
            continue
        seen.add((id(node), path))
        line = node.start_mark.line + 1
        lines.setdefault(path, line)
        if node.tag not in JSON_TAGS:
            problems.append(SourceProblem(path, f"is {TAG_WORDS.get(node.tag, f'tagged {node.tag} (no JSON form)')}", line))
            continue
        if isinstance(node, nodes.ScalarNode):
            problem = _number_problem(node)
            if problem:
                problems.append(SourceProblem(path, problem, line))
            continue
        if isinstance(node, nodes.SequenceNode):
            stack.extend((item, path + (i,)) for i, item in reversed(list(enumerate(node.value))))
            continue
        keys: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                stack.append((value_node, path))  # merged mappings are checked where they are defined too
                continue
            if not (isinstance(key_node, nodes.ScalarNode) and key_node.tag == STR):
                shown = key_node.value if isinstance(key_node, nodes.ScalarNode) else f"a {key_node.id}"
                problems.append(SourceProblem(path + (str(shown),), f"key {shown!r} is not a string "
                                              f"(quote it: config keys are strings)", key_node.start_mark.line + 1))
                continue
            key = key_node.value
            if key in keys:
                problems.append(SourceProblem(path + (key,), f"duplicate key (first at line {keys[key]}); "
                                              "Pulumi refuses duplicate keys", key_node.start_mark.line + 1))
                continue
            keys[key] = key_node.start_mark.line + 1
            stack.append((value_node, path + (key,)))
    problems.sort(key=lambda p: (p.line or 0, [str(x) for x in p.path]))
    return problems


def _number_problem(node: nodes.ScalarNode) -> str | None:
    """Why an int- or float-tagged scalar (implicit or an explicit `!!float '1e400'`) is no finite JSON number."""
    text = node.value.replace("_", "")
    if node.tag == INT and not _INT.match(text):
        return f"{node.value!r} is tagged !!int but is not a whole number"
    if node.tag != FLOAT:
        return None
    lowered = text.lower().lstrip("+-")
    if lowered in (".inf", ".nan"):
        return f"{node.value} is not a finite number (JSON has no Infinity or NaN)"
    try:
        value = float(text)
    except ValueError:
        return f"{node.value!r} is tagged !!float but is not a number"
    if not math.isfinite(value):
        return f"{node.value} is not a finite number (it overflows to Infinity, which JSON cannot carry)"
    return None


def _expanded_sizes(root: nodes.Node) -> tuple[int, int] | None:
    """(values, depth) of the document with every alias expanded, without expanding it; None on a cycle.
    Iterative, memoized per node: an alias bomb costs one visit per distinct node."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    state: dict[int, int] = {}  # 1 = on the path, 2 = done
    stack: list[tuple[nodes.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = _children(node)
        if children_done:
            size[key] = min(MAX_NODES + 1, 1 + sum(size[id(k)] for k in kids))
            depth[key] = min(MAX_DEPTH + 1, 1 + max((depth[id(k)] for k in kids), default=0))
            state[key] = 2
            continue
        if state.get(key) == 2:
            continue
        if state.get(key) == 1:
            return None
        state[key] = 1
        stack.append((node, True))
        for kid in kids:
            if state.get(id(kid)) == 1:
                return None
            if state.get(id(kid)) != 2:
                stack.append((kid, False))
    return size[id(root)], depth[id(root)]


def _children(node: nodes.Node) -> list[nodes.Node]:
    if isinstance(node, nodes.SequenceNode):
        return list(node.value)
    if isinstance(node, nodes.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


# --- values as the engine passes them ---------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


class EngineValueError(ValueError):
    """A config value the CLI would never hand a program; `path` leads from the key to the bad part."""

    def __init__(self, message: str, path: Path = ()):
        self.path = path
        super().__init__(message)


def decode_engine_value(value: Any) -> Any:
    """A config value as the engine hands it to a program: a string, JSON-encoded when structured.
    Raise EngineValueError for JSON the CLI would never produce (Infinity, NaN, duplicate keys, too deep)."""
    if not (isinstance(value, str) and value[:1] in ("{", "[")):
        return value
    if len(value) > MAX_BYTES:
        raise EngineValueError(f"is {len(value)} characters; at most {MAX_BYTES} allowed")
    try:
        decoded = json.loads(value, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise EngineValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        if not isinstance(e, json.JSONDecodeError):
            raise EngineValueError(str(e)) from None  # a duplicate key
        return value  # a plain string that happens to start with { or [: the field's type decides
    found = json_shape_problem(decoded)
    if found:
        raise EngineValueError(found[1], found[0])
    return decoded


def json_shape_problem(value: Any) -> tuple[Path, str] | None:
    """(path, why) when `value` exceeds the nesting or size limits or holds a non-finite number, else None."""
    count = 0
    stack: list[tuple[Any, Path]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        count += 1
        if len(path) >= MAX_DEPTH:
            return path, f"nested deeper than {MAX_DEPTH} levels"
        if count > MAX_NODES:
            return (), f"more than {MAX_NODES} values"
        if isinstance(node, float) and not math.isfinite(node):
            return path, f"{node} is not a finite number (JSON has no Infinity or NaN)"
        if isinstance(node, dict):
            stack.extend((v, path + (k,)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, path + (i,)) for i, v in enumerate(node))
    return None


# --- keys and secure values -----------------------------------------------------------------------

CONFIG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


def full_key(key: str, project: str) -> str:
    """`canaryPercent` -> `netra:canaryPercent`: the CLI reads a key without a namespace as the project's."""
    return key if ":" in key else f"{project}:{key}"


def key_problem(key: str, project: str) -> str | None:
    """Why `key` (a full `namespace:name` key) is not one this program reads, or None."""
    namespace, _, name = key.partition(":")
    if not namespace or not name or ":" in name or not CONFIG_KEY.match(name) or not CONFIG_KEY.match(namespace):
        return "not a config key; expected NAMESPACE:NAME like netra:canaryPercent (letters, digits, _ . -)"
    if namespace == project:
        return None if key not in {f"{project}:{v}" for v in PROVIDER_KEYS.values()} else (
            f"is set through gcp:{name}, not {key}")
    if key in PROVIDER_KEYS or (namespace == "gcp" and name in gcp_provider_keys()):
        return None
    allowed = [f"{project}:*", *PROVIDER_KEYS, "the gcp provider's own keys (gcp:zone, ...)"]
    close = difflib.get_close_matches(key, [*PROVIDER_KEYS, *(f"gcp:{k}" for k in gcp_provider_keys())], n=1, cutoff=0.75)
    hint = f"did you mean '{close[0]}'? " if close else ""
    what = "unknown key" if namespace == "gcp" else f"unknown namespace {namespace!r}"
    return f"{what}; {hint}this program reads {', '.join(allowed)}"


SECURE_HINT = "a secure value is {secure: <ciphertext>} as written by `pulumi config set --secret`"


def secure_problems(value: Any, path: Path = ()) -> list[SourceProblem]:
    """Every mapping with a `secure` key must be exactly {secure: <non-empty ciphertext string>}."""
    found: list[SourceProblem] = []
    stack = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            if "secure" in node:
                cipher = node["secure"]
                if set(node) != {"secure"}:
                    found.append(SourceProblem(where, f"has `secure` beside other keys ({', '.join(sorted(k for k in node if k != 'secure'))}); {SECURE_HINT}"))
                elif not isinstance(cipher, str) or not cipher or not re.fullmatch(r"[\x21-\x7e]+", cipher):
                    got = type(cipher).__name__ if not isinstance(cipher, str) else ("empty" if not cipher else "whitespace or non-ASCII characters")
                    found.append(SourceProblem(where, f"secure: must be a non-empty ciphertext string, got {got}; {SECURE_HINT}"))
                continue
            stack.extend((v, where + (k,)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, where + (i,)) for i, v in enumerate(node))
    return found


def is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


@dataclass
class SetValue:
    """One `--set KEY=VALUE`: the key as given, its full key, and the value parsed as YAML."""

    given: str
    key: str
    value: Any = field(default=None)


def parse_set(item: str, project: str) -> SetValue:
    """`KEY=VALUE` -> SetValue; raise SourceError naming the key."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise SourceError([SourceProblem((), f"--set: expected KEY=VALUE, got {item!r}")])
    head, dot, rest = key.partition(".")
    head = full_key(head, project)
    full = head + dot + rest
    problem = key_problem(head, project)
    if problem is None and dot and (not rest or "" in rest.split(".")):
        problem = "empty path segment; expected KEY.PART.PART like netra:services.backend.minInstances"
    if problem:
        raise SourceError([SourceProblem((full,), problem)])
    try:
        value, _ = parse_yaml(text)
    except SourceError as e:
        raise SourceError([SourceProblem((full, *p.path), p.message) for p in e.problems]) from None
    found = secure_problems(value, (full,))
    if found:
        raise SourceError(found)
    return SetValue(given=key, key=full, value=value)
