"""What the input fuzz still found (issue 20 item 6): integer bounds from the APIs, IAM member syntax as the
IAM API accepts it, alias errors naming the alias's line and key, and migrations whose files were deleted."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra import migrate
from infra.config import ConfigError, load_stack_config
from infra.config.source import MAX_NODES, SourceError, parse_set, parse_yaml
from infra.plan.stackfile import read_stack

from .conftest import ROOT, cli, config_problems, flat, stack_config

BACKUPS = "netra:platform.storage.backups"


def _backups_key() -> str:
    """The path of the backups bucket's lifecycle settings in the stack config (found, not assumed)."""
    cfg = stack_config("prod")

    def walk(node, path):
        if isinstance(node, dict):
            if "archiveAfterDays" in node:
                return path
            for k, v in node.items():
                found = walk(v, f"{path}.{k}")
                if found:
                    return found
        return None

    for key, value in cfg.items():
        found = walk(value, key)
        if found:
            return found
    return BACKUPS


# ---------------------------------------------------------------- integers the APIs accept

@pytest.mark.parametrize("value, ok", [(2147483647, True), (2147483648, False), (2**53, False), ("2147483648", False)])
def test_an_int_beyond_the_apis_32_bits_is_refused_naming_the_key(value, ok):
    path = _backups_key()
    cfg = stack_config("prod")
    node = cfg[path.split(".")[0]]
    for part in path.split(".")[1:]:
        node = node[part]
    node["archiveAfterDays"] = value
    key = f"{path}.archiveAfterDays"
    if ok:
        load_stack_config(flat(cfg), "prod")
        return
    assert config_problems(cfg)[key] == ("must be between -2147483648 and 2147483647 (the Google APIs' 32-bit "
                                         f"integers), got {int(value)}")


def test_plan_refuses_the_fuzz_example(reuse_plans):
    key = f"{_backups_key()}.archiveAfterDays"
    proc = cli("plan", "--stack", "prod", "--set", f"{key}=2147483648")
    assert proc.returncode == 2 and key in proc.stderr and "32-bit" in proc.stderr


# ---------------------------------------------------------------- IAM members

GRAFANA_VIEWERS = "netra:observability.grafana.viewers"


@pytest.mark.parametrize("member, ok", [
    ("group:platform@netra.ai", True), ("user:jane.doe+ops@netra.ai", True), ("domain:netra.ai", True),
    ("group:platform@netra.ai😀", False), ("group:platform@netra", False), ("domain:netra.ai/x", False),
    ("serviceAccount:ci@netra-production.iam.gserviceaccount.com", False),  # not a kind IAP viewers take here
    ("group:@netra.ai", False), ("group:plat form@netra.ai", False), ("allUsers", False),
])
def test_grafana_viewers_are_iam_members_the_api_accepts(member, ok):
    cfg = stack_config("prod")
    cfg["netra:observability"]["grafana"]["viewers"] = ["group:sre@netra.ai", member]
    if ok:
        load_stack_config(flat(cfg), "prod")
        return
    msg = config_problems(cfg)[f"{GRAFANA_VIEWERS}.1"]
    assert msg.startswith("must be an IAM member (user:name@netra.ai, group:name@netra.ai, domain:netra.ai; ASCII")


# ---------------------------------------------------------------- aliases: the alias's line and key

def _stack_root(tmp_path: Path, text: str) -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "Pulumi.prod.yaml").write_text(text)
    return tmp_path


def test_a_recursive_alias_is_refused_at_its_line_and_key(tmp_path):
    text = (ROOT / "Pulumi.prod.yaml").read_text() + "  netra:loop: &me\n    again: *me\n"
    line = len(text.splitlines())
    with pytest.raises(ConfigError) as e:
        read_stack("prod", _stack_root(tmp_path, text))
    [p] = e.value.problems
    assert (p.key, p.origin) == ("netra:loop.again", f"Pulumi.prod.yaml:{line}")
    assert p.message == "alias *me is used inside its own anchor &me: a recursive alias has no JSON form"


def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_limit(tmp_path):
    layers = ["  netra:l0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 5):
        layers.append(f"  netra:l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    text = (ROOT / "Pulumi.prod.yaml").read_text() + "\n".join(layers) + "\n"
    with pytest.raises(ConfigError) as e:
        read_stack("prod", _stack_root(tmp_path, text))
    [p] = e.value.problems
    assert p.key.startswith("netra:l4.") and p.origin == f"Pulumi.prod.yaml:{len(text.splitlines())}"
    assert p.message.startswith("alias *a3 expands to 11111 values") and str(MAX_NODES) in p.message


def test_aliases_in_a_set_value_are_named_by_the_set_key():
    with pytest.raises(SourceError) as e:
        parse_set("netra:platform.x=&a [*a]", "netra")
    [p] = e.value.problems
    assert p.path == ("netra:platform.x", 0) and "recursive alias" in p.message


def test_plain_aliases_and_merges_still_work():
    value, _ = parse_yaml("a: &x {b: 1}\nc: *x\nd:\n  <<: *x\n  e: 2\n")
    assert value == {"a": {"b": 1}, "c": {"b": 1}, "d": {"b": 1, "e": 2}}


# ---------------------------------------------------------------- migrations whose files were deleted

def test_status_lists_an_applied_migration_whose_files_are_gone_and_up_refuses(db, tmp_path, capsys):
    files = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", files)
    assert migrate.up(db, files, log=lambda _: None) == ["001", "002"]
    for f in files.glob("001_*.sql"):
        f.unlink()
    (files / "003_later.up.sql").write_text("CREATE TABLE later (id int PRIMARY KEY);\n")
    (files / "003_later.down.sql").write_text("DROP TABLE later;\n")
    assert migrate.status(db, files) == [("001", "token_usage_tracking", migrate.MISSING), ("002", "pgaudit", "applied"),
                                         ("003", "later", "pending")]
    code = migrate.main(["status", "--dir", str(files), "--dsn", db])
    out, err = capsys.readouterr()
    assert code == migrate.EXIT_FAILED
    assert "001 token_usage_tracking: applied, files missing (no 001_token_usage_tracking.up/down.sql in" in out
    assert "003 later: pending" in out and "`up` refuses" in err
    code = migrate.main(["up", "--dir", str(files), "--dsn", db])
    out, err = capsys.readouterr()
    assert code == migrate.EXIT_REFUSED and "applied migration(s) 001 have no files" in err
    assert migrate.status(db, files)[-1] == ("003", "later", "pending")  # nothing ran
