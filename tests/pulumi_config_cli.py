"""`pulumi config set | rm` exactly as the Pulumi CLI does them, on a stack file's `config:` mapping.

A model of pulumi/pulumi's source, not of its documentation:
- pkg/cmd/pulumi/config/config.go, `configSetCmd.Run`: without `--path` the value is stored as given, a
  string (or typed with `--type string|int|bool|float`); `--secret` stores `{secure: <ciphertext>}`;
- sdk/go/common/resource/config/map.go, `Map.Set` / `Map.Remove` / `parseKeyPath`: with `--path` the key's
  name is a property path whose first segment is the config key; a one-segment path stores the value like
  a plain set (top-level entries are always strings);
- value.go `Value.coerceObject` and object.go `coerce`: below the top level an untyped value becomes `true` /
  `false`, or an integer (not one with a leading 0, like "0123"); everything else stays a string, so a
  value that looks like JSON is stored as a *string*;
- object.go `object.Set` / `newContainer`: missing containers are made from the next accessor (`[2]` makes
  a list of 3 with nulls before), an existing list grows by one at most, a scalar on the way is an error
  except directly under the config key (overwritten), and `{secure: ...}` cannot be spelled with --path.
"""
from __future__ import annotations

import base64
import re
from typing import Any, Optional

PATH_TOKEN = re.compile(r'\.?([A-Za-z0-9_$:-][^.\[\]]*)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]')
INT = re.compile(r"[+-]?[0-9]+")


class CliError(Exception):
    """What the CLI prints before exiting non-zero (nothing is saved)."""


def ciphertext(plain: str) -> str:
    """A stand-in for the stack's encrypter (the offline plan never decrypts: it sees a placeholder)."""
    return "v1:" + base64.b64encode(plain.encode()).decode()


def parse_property_path(text: str) -> list:
    """resource.ParsePropertyPathStrict: `a.b[0]["c.d"]` -> ["a", "b", 0, "c.d"]."""
    out, pos = [], 0
    while pos < len(text):
        m = PATH_TOKEN.match(text, pos)
        if not m or (pos == 0 and text.startswith(".")):
            raise CliError(f"invalid config key path: unexpected {text[pos:]!r}")
        name, index, quoted = m.groups()
        out.append(int(index) if index is not None else name if name is not None else quoted.replace('\\"', '"'))
        pos = m.end()
    if not out:
        raise CliError("empty config key path")
    return out


def parse_config_key(key: str, project: str, path: bool) -> tuple[str, list]:
    """ParseConfigKey + parseKeyPath: ("netra:platform", ["platform", "featureFlags", "x"])."""
    namespace, sep, name = key.partition(":")
    if not sep:
        namespace, name = project, key
    if not path:
        return f"{namespace}:{name}", [name]
    p = parse_property_path(name)
    if not isinstance(p[0], str):
        raise CliError("first path segement of config key must be a string")
    return f"{namespace}:{p[0]}", p


def coerce(value: str) -> Any:
    """object.go `coerce`: "true"/"false" -> bool; an int64/uint64 without a leading 0 -> int; else the string."""
    if value in ("true", "false"):
        return value == "true"
    if len(value) > 1 and value[0] == "0":
        return value
    if INT.fullmatch(value) and -2**63 <= int(value) < 2**64:
        return int(value)
    return value


def typed(value: str, type_: Optional[str]) -> Any:
    """Value.unmarshalObject for `--type`."""
    if type_ in (None, "string"):
        return value
    if type_ == "int":
        if not INT.fullmatch(value):
            raise CliError(f'strconv.Atoi: parsing "{value}": invalid syntax')
        return int(value)
    if type_ == "bool":
        return value.lower() in ("1", "t", "true")  # strconv.ParseBool; anything else: a warning and false
    if type_ == "float":
        return float(value)
    raise CliError(f"invalid type {type_!r}; must be one of string, int, bool, or float")


def _set(node: Any, prefix: list, path: list, new: Any) -> Any:
    """object.Set: `node` with `new` at `path`; returns the (possibly new) node."""
    if not path:
        return new
    head = path[0]
    if isinstance(node, dict) and set(node) == {"secure"}:
        node = "<ciphertext>"  # a secure value is a scalar to object.Set
    if not isinstance(node, (list, dict)):
        if node is None or len(prefix) == 1:
            node = [None] * (head + 1) if isinstance(head, int) else {}
        else:
            raise CliError(f"{_show(prefix)}: expected {'an array' if isinstance(head, int) else 'a map'}")
    prefix = prefix + [head]
    if isinstance(node, list):
        if not isinstance(head, int):
            raise CliError(f"{_show(prefix)}: key for an array must be an int")
        if head < 0 or head > len(node):
            raise CliError(f"{_show(prefix)}: array index out of range")
        if head == len(node):
            node.append(None)
        node[head] = _set(node[head], prefix, path[1:], new)
        return node
    if not isinstance(head, str):
        raise CliError(f"{_show(prefix)}: key for a map must be a string")
    if len(path) == 1 and not node and head == "secure" and isinstance(new, str):
        raise CliError('"secure" key in maps of length 1 are reserved')
    node[head] = _set(node.get(head), prefix, path[1:], new)
    return node


def _show(prefix: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(prefix))


def config_set(config: dict, key: str, value: str, *, path: bool = False, secret: bool = False,
               type_: Optional[str] = None, project: str = "netra") -> None:
    """`pulumi config set [--path] [--secret] [--type T] KEY VALUE` on `config` (changed in place)."""
    if secret and type_:
        raise CliError("if any flags in the group [secret plaintext type] are set none of the others can be")
    stored = {"secure": ciphertext(value)} if secret else typed(value, type_)
    config_key, p = parse_config_key(key, project, path)
    if len(p) == 1:
        config[config_key] = stored
        return
    new = stored if secret or type_ else coerce(value)
    import copy

    root = copy.deepcopy(config.get(config_key))
    if config_key not in config:
        root = [None] * (p[1] + 1) if isinstance(p[1], int) else {}
    config[config_key] = _set(root, p[:1], p[1:], new)


def config_rm(config: dict, key: str, *, path: bool = False, project: str = "netra") -> None:
    """`pulumi config rm [--path] KEY`: a missing key or path is not an error."""
    config_key, p = parse_config_key(key, project, path)
    if len(p) == 1:
        config.pop(config_key, None)
        return
    node = config.get(config_key)
    for i, step in enumerate(p[1:-1], 1):
        if isinstance(node, dict) and isinstance(step, str):
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            return
    last = p[-1]
    if isinstance(node, dict) and isinstance(last, str):
        node.pop(last, None)
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        node.pop(last)


def run(config: dict, argv: list[str], stdin: str = "", project: str = "netra") -> None:
    """`pulumi config set|rm ...` given as argv after `pulumi` (`--stack` is the caller's business)."""
    if argv[:1] != ["config"] or argv[1:2] not in (["set"], ["rm"]):
        raise CliError(f"not a config set/rm command: {argv}")
    flags = {"--path": False, "--secret": False, "--plaintext": False, "--raw": False}
    type_, args, it = None, [], iter(argv[2:])
    for a in it:
        if a in flags:
            flags[a] = True
        elif a == "--type":
            type_ = next(it)
        elif a.startswith("--type="):
            type_ = a.split("=", 1)[1]
        elif a in ("--stack", "-s"):
            next(it)
        elif a == "--":
            args += list(it)
        elif a.startswith("-"):
            raise CliError(f"unknown flag: {a}")
        else:
            args.append(a)
    if argv[1] == "rm":
        config_rm(config, args[0], path=flags["--path"], project=project)
        return
    if len(args) == 1:  # the value from stdin, trailing newline removed unless --raw
        args.append(stdin if flags["--raw"] else stdin.rstrip("\n"))
    if len(args) != 2:
        raise CliError(f"accepts between 1 and 2 arg(s), received {len(args)}")
    config_set(config, args[0], args[1], path=flags["--path"], secret=flags["--secret"], type_=type_, project=project)
