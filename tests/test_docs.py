"""The docs cannot drift from the code: the reference pages under docs/reference/ are generated
(docsgen/, `make docs-reference`) and must equal what the code renders today; the config reference is also
checked against the keys walked here from the pydantic models (an oracle apart from the generator); and
every offline command in the README and the docs pages is run.
"""
from __future__ import annotations

import json
import re
import shlex
import types
from typing import Annotated, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, RootModel

from infra.config.loader import NAMESPACE, PROVIDER_KEYS
from infra.config.stack import StackConfig

from docsgen import PAGES

from .conftest import ROOT, cli

README = ROOT / "README.md"
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


# ---------------------------------------------------------------- the generated reference pages

def documented_keys(text: str) -> set[str]:
    """Full keys of every row of docs/reference/config.md: each `## `PREFIX`` heading starts a table whose
    first cells are keys relative to PREFIX (`## Top-level keys`: full keys)."""
    keys, prefix = set(), None
    for line in text.splitlines():
        if line.startswith("## "):
            m = re.fullmatch(r"## `([^`]+)`", line)
            prefix = m.group(1).replace(".<name>.", f".{ANY}.").replace(".<name>", f".{ANY}") if m else ""
        elif prefix is not None and line.startswith("| `"):
            key = re.match(r"\| `([^`]+)`", line).group(1).replace(".<name>.", f".{ANY}.")
            keys.add(f"{prefix}.{key}" if prefix else key)
    return keys


def test_the_config_reference_documents_every_key_and_only_existing_keys():
    """An oracle apart from the generator: the keys walked here from StackConfig's annotations."""
    documented = documented_keys((ROOT / "docs/reference/config.md").read_text())
    leaves = {k for k, leaf in model_keys().items() if leaf}
    assert len(documented) > 200
    assert leaves <= documented, f"missing from docs/reference/config.md (run `make docs-reference`): {sorted(leaves - documented)}"
    assert documented <= set(model_keys()), f"documented but not in infra/config: {sorted(documented - set(model_keys()))}"


def test_every_config_key_says_what_it_does():
    from docsgen.config_reference import leaves

    missing = [key for key, row in leaves().items() if not row.description]
    assert not missing, ("config keys without a description: give each field `Field(..., description=\"what it does\")` "
                         f"in infra/config/, then run `make docs-reference`: {missing}")


@pytest.mark.parametrize("page", sorted(PAGES))
def test_generated_page_is_current(page, reuse_plans):
    """docs/reference/* are rendered from the code; a change to the code regenerates them (`make docs-reference`)."""
    committed = (ROOT / page).read_text() if (ROOT / page).exists() else ""
    assert PAGES[page]() == committed, f"{page} is stale: run `make docs-reference` and commit the result"


def test_the_staleness_check_sees_a_changed_description(monkeypatch):
    from infra.config.platform import DatabaseConfig

    before = PAGES["docs/reference/config.md"]()
    field = DatabaseConfig.model_fields["tier"]
    monkeypatch.setattr(field, "description", "changed for this test")
    after = PAGES["docs/reference/config.md"]()
    assert before != after and "changed for this test" in after


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
        if not m or re.search(r"\[-|<|…", command):  # usage notation ([--json], <stack>) is not a command
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


DOC_FILES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
COMMANDS = [(f"{path.relative_to(ROOT)}:{n}", argv, code)
            for path in DOC_FILES for n, argv, code in readme_commands(path.read_text())]


def test_the_docs_have_offline_examples_to_run():
    kinds = {tuple(argv[:2]) for _, argv, _ in COMMANDS}
    assert ("infra", "plan") in kinds and len(COMMANDS) >= 5, COMMANDS


@pytest.mark.parametrize("line, argv, expected", COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_doc_command_runs(line, argv, expected, reuse_plans, capsys):
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
    assert r.returncode == expected, f"{line}: python -m infra {' '.join(args)}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    if expected == 2:  # a documented refusal: one line naming what to fix
        assert r.stderr.strip() and not r.stdout.strip(), r.stdout
        return
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


# ---------------------------------------------------------------- every documented command parses

SHELL_OPS = {"&&", "||", ";", "|", "&", ">", ">>", "<", "2>", "("}


def documented_invocations(text: str) -> list[tuple[int, list[str]]]:
    """(line, argv after `python -m infra`) of every such command in a code block (indented or fenced),
    shell syntax removed (comments, redirections, `&&` chains) and `$VAR` expanded from the block's own
    `VAR=...` lines (a command substitution stands for a path; an unknown variable for one value)."""
    import shlex as _shlex

    found, fenced, variables = [], False, {}
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            fenced, variables = not fenced, {}
            continue
        if not (fenced or line.startswith("    ")):
            continue
        assignment = re.fullmatch(r"\s*([A-Z_]+)=(.*)", line)
        if assignment:
            value = assignment.group(2).strip()
            try:
                variables[assignment.group(1)] = ["/tmp/dir"] if value.startswith("$(") else " ".join(_shlex.split(value)).split()
            except ValueError:
                pass
            continue
        if "python -m infra " not in line or re.search(r"\[-|<[a-z]|…", line):  # usage notation: not a command
            continue
        lexer = _shlex.shlex(line.split("python -m infra ", 1)[1], posix=True, punctuation_chars="&|;<>()")
        lexer.whitespace_split, lexer.commenters = True, "#"
        try:
            tokens = list(lexer)
        except ValueError:  # unbalanced quotes: prose with an apostrophe, not a command
            continue
        argv: list[str] = []
        for token in tokens:
            if token in SHELL_OPS or set(token) <= set("&|;<>()"):
                break
            var = re.fullmatch(r"\$\{?([A-Z_]+)\}?(.*)", token)
            argv.extend([*variables.get(var.group(1), ["VALUE"])[:-1], variables.get(var.group(1), ["VALUE"])[-1] + var.group(2)]
                        if var else [token])
        found.append((n, argv))
    return found


INVOCATIONS = [(f"{path.relative_to(ROOT)}:{n}", argv)
               for path in DOC_FILES for n, argv in documented_invocations(path.read_text())]


def test_every_documented_command_parses():
    """Commands the runner above does not execute (they need a cloud or a sandbox) must at least still be
    valid: sub-command, flags and choices as the parsers accept them today."""
    import contextlib
    import io

    from infra.__main__ import build_parser

    assert len(INVOCATIONS) > 30
    problems = []
    for where, argv in INVOCATIONS:
        if "--sandbox" in argv and "--stack" not in argv:
            argv = [*argv, "--stack", "prod"]  # infra.release.sandbox.prepare() adds the sandbox's stack
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                build_parser().parse_args(argv)
        except SystemExit as e:
            if e.code:
                problems.append(f"{where}: python -m infra {' '.join(argv)}: {err.getvalue().strip().splitlines()[-1]}")
    assert not problems, "documented commands the CLI refuses:\n" + "\n".join(problems)


def test_the_parse_check_sees_shell_syntax_and_a_bad_flag():
    text = ("```bash\nFAST=\"--interval 1 --lag 0\"\nSBX=$(mktemp -d)/x\n"
            "python -m infra rollout --sandbox \"$SBX\" --service b $FAST > out 2> log &  # note\n```\n"
            "    python -m infra plan --stack prod --nope\n")
    assert documented_invocations(text) == [
        (4, ["rollout", "--sandbox", "/tmp/dir", "--service", "b", "--interval", "1", "--lag", "0"]),
        (6, ["plan", "--stack", "prod", "--nope"])]
