"""Every documented `pulumi config set|rm` command has, under the real CLI (modelled in pulumi_config_cli.py
from the CLI's source), the effect the offline plan gives the same key and value (`plan --set KEY=VALUE`)."""
from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from infra.config import ConfigError, load_stack_config
from infra.config.source import SourceError, parse_set
from infra.plan.stackfile import read_stack

from . import pulumi_config_cli as cli_model
from .pulumi_config_cli import CliError, config_set, parse_property_path

ROOT = Path(__file__).resolve().parents[1]
DIGEST = "@sha256:" + "ab" * 32
# Values for the documented placeholders (`<...>`, `…`), by config key path; a new placeholder fails the
# test until it has one here.
EXAMPLES = {
    "netra:observability.pagerduty.serviceKey": "0123456789abcdef0123456789abcdef",
    "netra:observability.budget.billingAccount": "012345-6789AB-CDEF01",
    "netra:platform.edge.domains[0]": "app.example.com",
    "netra:platform.migrations.image": "us-central1-docker.pkg.dev/netra-production/netra/migrate" + DIGEST,
    "netra:services.backend.image": "us-central1-docker.pkg.dev/netra-production/netra/backend" + DIGEST,
    "netra:verification.loadTest.image": "us-central1-docker.pkg.dev/netra-production/netra/loadtest" + DIGEST,
    "netra:services.backend.stableRevision": "netra-backend-prod-0123abcd",
    "netra:release.bake.backend.revision": "netra-backend-prod-0123abcd",
    "netra:release.bake.backend.previous": "netra-backend-prod-89abcdef",
    "netra:release.bake.backend.until": "2026-12-09T12:00:00Z",
    "netra:release.bake.backend": '{"revision": "netra-backend-prod-0123abcd", "previous": "netra-backend-prod-89abcdef", '
                                  '"until": "2026-12-09T12:00:00Z"}',
}
STDIN = "sk-ant-offline-example-key\n"  # `< file`: a secret read from a file


# ---------------------------------------------------------------- the CLI model against the CLI's own rules

def test_the_model_follows_the_cli_source():
    cfg: dict = {}
    config_set(cfg, "netra:canaryPercent", "10")
    config_set(cfg, "netra:canaryPercent2", "10", path=True)  # one segment: a top-level entry, always a string
    config_set(cfg, "netra:a.n", "10", path=True)
    config_set(cfg, "netra:a.b", "true", path=True)
    config_set(cfg, "netra:a.z", "0123", path=True)  # a leading 0 stays a string
    config_set(cfg, "netra:a.f", "1.5", path=True)  # only integers are typed
    config_set(cfg, "netra:a.j", '{"percent": 10}', path=True)  # JSON is a string
    config_set(cfg, "netra:a.t", "7", path=True, type_="string")
    config_set(cfg, "netra:names[1]", "x", path=True)
    config_set(cfg, 'netra:q["dotted.key"].v', "1", path=True)
    config_set(cfg, "netra:s.k", "hunter2", path=True, secret=True)
    assert cfg == {"netra:canaryPercent": "10", "netra:canaryPercent2": "10",
                   "netra:a": {"n": 10, "b": True, "z": "0123", "f": "1.5", "j": '{"percent": 10}', "t": "7"},
                   "netra:names": [None, "x"], "netra:q": {"dotted.key": {"v": 1}},
                   "netra:s": {"k": {"secure": cli_model.ciphertext("hunter2")}}}
    with pytest.raises(CliError, match="expected a map"):
        config_set(cfg, "netra:a.j.percent", "50", path=True)  # a scalar on the way
    with pytest.raises(CliError, match="array index out of range"):
        config_set(cfg, "netra:names[3]", "y", path=True)
    config_set(cfg, "netra:canaryPercent.x", "1", path=True)  # directly under the key: overwritten
    assert cfg["netra:canaryPercent"] == {"x": 1}
    assert parse_property_path('a.b[0]["c.d"]') == ["a", "b", 0, "c.d"]


# ---------------------------------------------------------------- the documented commands

STACK_CHOICE = re.compile(r"(?:--stack[ =]|pulumi stack (?:init|select) )(prod|staging)\b")


def documented_blocks() -> list[tuple[str, list[tuple[int, str, str]]]]:
    """(file, [(line, stack, command)]) of every `pulumi config set|rm` in the code blocks of README.md and
    docs/**.md, in order: a document is read as a sequence (a tutorial's later step builds on an earlier
    one). The stack is the last one the document chose (`stack init|select`, `--stack`), prod by default;
    commands run after `cd <dir>` belong to another Pulumi project (bootstrap/) and are left out."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        commands, fenced, pending, stack, elsewhere = [], False, "", "prod", False
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                fenced, elsewhere = not fenced, False
                continue
            stack = (STACK_CHOICE.findall(line) or [stack])[-1]
            if not fenced:
                continue
            text = pending + line.strip()
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            for part in re.split(r"\s*&&\s*", text):
                if re.match(r"cd\s+\S", part):
                    elsewhere = not re.match(r"cd\s+\.\.?\s*$", part)
                elif re.match(r"pulumi config (set|rm)\b", part) and not elsewhere:
                    commands.append((n, stack, part))
        if commands:
            out.append((str(path.relative_to(ROOT)), commands))
    return out


BLOCKS = documented_blocks()


def _effects(stack: str) -> dict:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]


def _offline(config: dict, key: str, text: str) -> None:
    """`plan --set KEY=TEXT`: the value parsed as YAML, set at the key's path (list indexes included). A
    value --set refuses as YAML (a date) is given quoted, as its message says to."""
    try:
        value = parse_set(f"{key}={text}", "netra").value
    except SourceError:
        value = parse_set(f"{key}={json.dumps(text)}", "netra").value
    config_key, path = cli_model.parse_config_key(key, "netra", True)
    if len(path) == 1:
        config[config_key] = value
        return
    node = config.setdefault(config_key, {})
    for step, nxt in zip(path[1:-1], path[2:]):
        if isinstance(node, list):
            node = node[step]
        else:
            node = node.setdefault(step, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(node, list):
        node[last:last + 1] = [value]
    else:
        node[last] = value


def _loaded(config: dict, stack: str, tmp: Path):
    """What `python -m infra plan` makes of a stack file holding `config`: the typed config or its problems."""
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", tmp / "Pulumi.yaml")
    (tmp / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=False))
    sf = read_stack(stack, tmp)
    try:
        return load_stack_config(sf.config, stack, secret_paths=sf.secret_paths)
    except ConfigError as e:
        return sorted((p.key, p.message) for p in e.problems)


def _argv(command: str) -> tuple[list[str], str | None]:
    tokens = shlex.split(command, comments=True)
    stdin = None
    if "<" in tokens:
        i = tokens.index("<")
        tokens, stdin = tokens[:i] + tokens[i + 2:], STDIN
    return tokens[1:], stdin  # after `pulumi`


def _with_examples(argv: list[str]) -> list[str]:
    args = [a for a in argv[2:] if not a.startswith("-")]
    if len(args) == 2 and ("<" in args[1] or "…" in args[1]):
        key = cli_model.parse_config_key(args[0], "netra", True)
        full = args[0] if ":" in args[0] else f"netra:{args[0]}"
        assert full in EXAMPLES, f"documented placeholder {args[1]!r} for {full}: add an example value to EXAMPLES"
        del key
        return [EXAMPLES[full] if a == args[1] else a for a in argv]
    return argv


def test_every_documented_config_command_is_checked():
    commands = [c for _, block in BLOCKS for _, _, c in block]
    assert len(commands) >= 15
    assert any("--secret" in c for c in commands) and any("config rm" in c for c in commands)


@pytest.mark.parametrize("where, block", BLOCKS, ids=[w for w, _ in BLOCKS])
def test_documented_commands_have_the_same_effect_under_the_cli_and_offline(where, block, tmp_path):
    configs = {s: (_effects(s), _effects(s)) for s in ("prod", "staging")}  # (the CLI's, the offline plan's)
    for line, stack, command in block:
        cli_cfg, offline_cfg = configs[stack]
        argv, stdin = _argv(command)
        argv = _with_examples(argv)
        try:
            cli_model.run(cli_cfg, argv, stdin or "")
        except CliError as e:
            pytest.fail(f"{where}:{line}: `{command}` fails under the Pulumi CLI: {e}")
        args = [a for a in argv[2:] if not a.startswith("-")]
        if argv[1] == "rm":
            cli_model.run(offline_cfg, argv)
        elif "--secret" in argv:  # the offline plan has no secret input: the stack file holds what the CLI wrote
            offline_cfg = copy.deepcopy(cli_cfg)
            configs[stack] = (cli_cfg, offline_cfg)
        else:
            _offline(offline_cfg, args[0], args[1] if len(args) > 1 else (stdin or "").rstrip("\n"))
        cli, offline = _loaded(cli_cfg, stack, tmp_path / "cli"), _loaded(offline_cfg, stack, tmp_path / "offline")
        assert cli == offline, f"{where}:{line}: `{command}`: the CLI's effect differs from the offline plan's"
    for stack, (cli_cfg, _) in configs.items():
        final = _loaded(cli_cfg, stack, tmp_path / "final")
        assert not isinstance(final, list), f"{where}: the documented commands leave {stack} invalid: {final}"


# ---------------------------------------------------------------- JSON strings where the schema takes an object

def test_a_json_string_is_decoded_only_where_the_schema_takes_an_object(tmp_path):
    cfg = _effects("prod")
    config_set(cfg, "netra:platform.featureFlags.semantic_cache", '{"percent": 10, "killSwitch": false}', path=True)
    config_set(cfg, "netra:platform.featureFlags.greeting", '{"not": "a ramp"}', path=True)
    loaded = _loaded(cfg, "prod", tmp_path)
    assert isinstance(loaded, list)  # a JSON object where a flag takes a ramp is validated as a ramp
    assert {k for k, _ in loaded} >= {"netra:platform.featureFlags.greeting.not"}
    assert all(k.startswith("netra:platform.featureFlags.greeting") for k, _ in loaded)
    del cfg["netra:platform"]["featureFlags"]["greeting"]
    flags = _loaded(cfg, "prod", tmp_path).platform.feature_flags
    assert flags["semantic_cache"].percent == 10 and flags["semantic_cache"].kill_switch is False
    config_set(cfg, "netra:services.backend.stableRevision", '["netra-backend-prod-0123abcd"]', path=True)
    problems = dict(_loaded(cfg, "prod", tmp_path))
    assert "netra:services.backend.stableRevision" in problems  # a string field keeps the string (then refuses it)
