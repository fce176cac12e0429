"""The README cannot drift from the code: its config reference is checked against the pydantic models
in infra/config/, and its offline command examples are run.

Config reference tables are the Markdown tables right after a `<!-- config-table: PREFIX -->` comment.
A row's key is the backticked text of its first cell, relative to PREFIX (`netra:platform` ->
`database.tier` is `netra:platform.database.tier`; an empty PREFIX means full keys like `gcp:project`).
Several keys may share a row: `database.maintenance.day` / `.hour`, `database.databaseName` / `userName`
(a bare or dot-led name replaces the last part of the key before it). `<a|b|c>` in a PREFIX stands for
each of a, b, c; any other `<name>` for every key of a map (`netra:services.<name>`).
"""
from __future__ import annotations

import json
import re
import shlex
import types
from dataclasses import dataclass
from typing import Annotated, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, RootModel

from infra.config.loader import NAMESPACE, PROVIDER_KEYS
from infra.config.stack import StackConfig

from .conftest import ROOT, cli

README = ROOT / "README.md"
MARKER = re.compile(r"^<!--\s*config-table:?\s*(?P<prefix>\S*?)\s*-->\s*$")
ANY = "*"  # one key of a map, shown as <name>


# ---------------------------------------------------------------- keys from the models

def _models(annotation) -> list[tuple[bool, type[BaseModel]]]:
    """(is a map of it, model) for each config model an annotation holds."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _models(arg)]
    if origin is dict:
        return [(True, model) for is_map, model in _models(get_args(annotation)[1]) if not is_map]
    if isinstance(annotation, type) and issubclass(annotation, RootModel):
        return _models(annotation.model_fields["root"].annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(False, annotation)]
    return []


def _walk(model: type[BaseModel], prefix: str, out: dict[str, bool]) -> None:
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        inner = _models(field.annotation)
        out[key] = not inner  # True: a leaf (a value a user writes), False: an object of keys
        for is_map, sub in inner:
            if issubclass(sub, RootModel):
                continue
            _walk(sub, f"{key}.{ANY}." if is_map else f"{key}.", out)


def model_keys() -> dict[str, bool]:
    """Every config key as users write it (camelCase, `netra:` / `gcp:`), -> whether it is a leaf."""
    provider = {field: key for key, field in PROVIDER_KEYS.items()}
    out: dict[str, bool] = {}
    for name, field in StackConfig.model_fields.items():
        alias = field.alias or name
        top = provider.get(name) or provider.get(alias) or f"{NAMESPACE}:{alias}"
        out[top] = not _models(field.annotation)
        for is_map, sub in _models(field.annotation):
            _walk(sub, f"{top}.{ANY}." if is_map else f"{top}.", out)
    return out


# ---------------------------------------------------------------- keys from the README

@dataclass(frozen=True)
class Table:
    marker: str  # as written in the README
    prefixes: tuple[str, ...]  # expanded, "" for full keys
    line: int  # the marker's line (1-based)
    heading: str


@dataclass(frozen=True)
class Row:
    key: str
    table: Table
    line: int


def _expand(prefix: str) -> tuple[str, ...]:
    out = [""]
    for part in prefix.split(".") if prefix else []:
        m = re.fullmatch(r"<([^>]+)>", part)
        choices = m.group(1).split("|") if m and "|" in m.group(1) else [ANY] if m else [part]
        out = [f"{o}.{c}" if o else c for o in out for c in choices]
    return tuple(out) if prefix else ("",)


def _row_keys(cell: str) -> list[str]:
    keys: list[str] = []
    for seg in re.findall(r"`([^`]+)`", cell):
        seg = seg.strip()
        if seg.startswith(".") and keys:
            keys.append(keys[-1].rsplit(".", 1)[0] + seg)
        elif "." not in seg and ":" not in seg and keys and "." in keys[-1]:
            keys.append(keys[-1].rsplit(".", 1)[0] + "." + seg)
        else:
            keys.append(seg)
    return keys


def readme_tables(text: str) -> tuple[list[Table], list[Row]]:
    tables, rows = [], []
    lines = text.splitlines()
    heading, table, in_table = "", None, False
    for n, line in enumerate(lines, 1):
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        m = MARKER.match(line.strip())
        if m:
            table = Table(m.group("prefix"), _expand(m.group("prefix")), n, heading)
            tables.append(table)
            in_table = False
            continue
        if table is None:
            continue
        if line.startswith("|"):
            in_table = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if set(cells[0]) <= set("-: ") or cells[0] == "key":
                continue
            for key in _row_keys(cells[0]):
                for prefix in table.prefixes:
                    rows.append(Row(f"{prefix}.{key}" if prefix else key, table, n))
        elif in_table:  # the table ended; prose between a marker and its table is allowed
            table, in_table = None, False
    return tables, rows


def _shown(key: str) -> str:
    return key.replace(f".{ANY}.", ".<name>.")


def _best_table(key: str, tables: list[Table]) -> Table:
    """The table with the longest prefix of `key`; the full-key table (empty prefix) when none fits."""
    def fit(t: Table) -> int:
        if t.prefixes == ("",):
            return 0
        return max((len(p) for p in t.prefixes if key.startswith(p + ".")), default=-1)

    return max(tables, key=fit)


def test_every_config_key_is_in_the_readme_and_every_documented_key_exists():
    tables, rows = readme_tables(README.read_text())
    assert tables and len(rows) > 50, "no config tables found: each needs a <!-- config-table: PREFIX --> line above it"
    keys = model_keys()
    documented = {r.key for r in rows}
    problems = []
    for key, leaf in keys.items():
        if leaf and key not in documented:
            t = _best_table(key, tables)
            prefix = next((p for p in t.prefixes if p and key.startswith(p + ".")), "")
            relative = key[len(prefix) + 1:] if prefix else key
            problems.append(f"{_shown(key)}: missing from the README; add a row | `{_shown(relative)}` | type / allowed "
                            f"| default | ... | to the table under `<!-- config-table: {t.marker} -->` "
                            f"(README.md line {t.line}, section \"{t.heading}\")")
    for r in rows:
        if r.key not in keys:
            problems.append(f"{_shown(r.key)}: documented in README.md line {r.line} (section \"{r.table.heading}\") "
                            f"but infra/config has no such key; fix the row's name or remove it")
    assert not problems, "README config reference out of date:\n" + "\n".join(sorted(set(problems)))


def test_the_key_check_would_catch_a_missing_and_an_invented_key():
    text = README.read_text()
    tables, rows = readme_tables(text)
    dropped = next(r for r in rows if r.key == "netra:platform.database.tier")
    lines = text.splitlines()
    lines[dropped.line - 1] = lines[dropped.line - 1].replace("`database.tier`", "`database.tierz`")
    _, changed = readme_tables("\n".join(lines))
    documented = {r.key for r in changed}
    assert "netra:platform.database.tier" not in documented and "netra:platform.database.tierz" in documented
    assert "netra:platform.database.tierz" not in model_keys()
    assert _row_keys("`database.maintenance.day` / `.hour`") == ["database.maintenance.day", "database.maintenance.hour"]
    assert _row_keys("`a.b` / `c` / `d`") == ["a.b", "a.c", "a.d"]
    assert _expand("netra:services.<a|b>") == ("netra:services.a", "netra:services.b")
    assert _expand("netra:services.<name>") == (f"netra:services.{ANY}",)
    assert _best_table("netra:platform.database.newKey", tables).marker == "netra:platform"
    assert _best_table("netra:newSection.key", tables).prefixes == ("",)  # a new top-level key: the main table


# ---------------------------------------------------------------- the README's offline commands

PROGRAM = re.compile(r"^(?:\.venv/bin/)?python -m (?P<module>infra(?:\.migrate)?) (?P<rest>.*)$")


def readme_commands(text: str) -> list[tuple[int, list[str], int]]:
    """(line, argv after `python -m infra`, expected exit) for every command in a code block that runs
    offline: `plan ...`, `rollout|rollback ... --dry-run`, `infra.migrate digest`. A trailing
    `# -> exit N` comment sets the expected exit code (default 0); `> file` redirections are dropped."""
    found, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or line.startswith("    ")):
            continue
        command, _, comment = line.strip().partition("#")
        m = PROGRAM.match(command.strip())
        if not m or "[" in command or "…" in command:
            continue
        argv = shlex.split(m.group("rest").split(">", 1)[0])
        module = m.group("module")
        offline = (module == "infra" and argv[:1] == ["plan"]) or \
                  (module == "infra" and argv[:1] in (["rollout"], ["rollback"]) and "--dry-run" in argv) or \
                  (module == "infra.migrate" and argv[:1] == ["digest"])
        if not offline:
            continue
        exit_code = re.search(r"->\s*exit\s+(\d)", comment)
        found.append((n, [module, *argv], int(exit_code.group(1)) if exit_code else 0))
    return found


COMMANDS = readme_commands(README.read_text())


def test_the_readme_has_offline_examples_to_run():
    kinds = {tuple(argv[:2]) for _, argv, _ in COMMANDS}
    assert ("infra", "plan") in kinds and len(COMMANDS) >= 5, COMMANDS


@pytest.mark.parametrize("line, argv, expected", COMMANDS, ids=[f"line{n}" for n, _, _ in COMMANDS])
def test_readme_command_runs(line, argv, expected, reuse_plans, capsys):
    module, args = argv[0], argv[1:]
    if module == "infra.migrate":
        from infra.migrate import main as migrate_main

        try:
            code = migrate_main(args)
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr().out
        assert code == expected and re.fullmatch(r"[0-9a-f]{64}\n", out), (line, out)
        return
    r = cli(*args)
    assert r.returncode == expected, f"README.md line {line}: python -m infra {' '.join(args)}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    if args[0] == "plan" and "--json" in args:
        doc = json.loads(r.stdout)
        assert {"resources", "outputs", "policy"} <= set(doc) and doc["resources"]
    elif args[0] == "plan" and "tfplan-json" in args:
        assert json.loads(r.stdout)["planned_values"]["root_module"]["resources"]
    elif args[0] == "plan" and "--against" in args:
        assert r.stdout.startswith("Plan diff of ") and "Services (revision, traffic):" in r.stdout
    elif args[0] == "plan":
        assert r.stdout.startswith("Plan of netra/") and "Traffic" in r.stdout
    else:
        assert "pulumi up" in r.stdout
    if expected == 1:
        assert "[mandatory]" in r.stdout
