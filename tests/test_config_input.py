"""The input loader (issue 12): every hostile stack file or --set value is refused naming its key and
origin, before any validation of meaning, and never with a traceback."""
from __future__ import annotations

import json
import shutil

import pytest

from infra.config import ConfigError, load_stack_config
from infra.config.source import decode_engine_value, parse_yaml, SourceError
from infra.plan.stackfile import read_stack, set_path

from .conftest import ROOT, config_problems, stack_config

PROD = (ROOT / "Pulumi.prod.yaml").read_text()
SECURE = "secure: v1:qT9Yv3XbE1m0c2Hh:ZG8tbm90LWRlY3J5cHQtb2ZmbGluZS1wbGFjZWhvbGRlcg=="
def line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


CANARY_LINE = line_of(PROD, "\n  netra:canaryPercent:") + 1
COST_LINE = line_of(PROD, "\n  netra:costCenter:") + 1
BOMB = "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


@pytest.fixture
def root(tmp_path):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    return tmp_path


def refused(root, text: str | bytes, sets=()) -> dict[str, tuple[str, str]]:
    """key -> (message, origin) of every problem of Pulumi.t.yaml = `text` (+ --set items)."""
    (root / "Pulumi.t.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as e:
        stack = read_stack("t", root, sets=sets)
        load_stack_config(stack.config, "prod", stack.origin_of)
    return {p.key: (p.message, p.origin) for p in e.value.problems}


def test_alias_bomb_and_recursive_alias_are_refused_not_expanded(root):
    found = refused(root, "a: &a [x, x, x, x, x, x, x, x, x]\n" + BOMB + "config:\n  netra:x: *i\n")
    # named at the alias that crosses the limit: its line, and the keys down to it
    assert found == {"e.5": ("alias *d expands to 7381 values: with it the document holds more than 50000 "
                             "(an alias bomb?)", "Pulumi.t.yaml:5")}
    found = refused(root, "config:\n  netra:x: &a [1, *a]\n")
    assert found == {"netra:x.1": ("alias *a is used inside its own anchor &a: a recursive alias has no JSON form",
                                   "Pulumi.t.yaml:2")}


def test_deep_nesting_too_many_documents_and_not_a_mapping(root):
    assert "nested deeper than 32 levels" in refused(root, "config:\n  netra:x: " + "[" * 3000 + "]" * 3000)["Pulumi.t.yaml"][0]
    assert "more than one YAML document" in refused(root, PROD + "---\nconfig: {}\n")["Pulumi.t.yaml"][0]
    assert refused(root, "- a\n- b\n") == {"Pulumi.t.yaml": ("must be a mapping with a `config:` key, got a list", "Pulumi.t.yaml")}
    assert "must be a mapping of KEY: VALUE" in refused(root, "config: [a]\n")["config"][0]
    assert "unknown top-level key" in refused(root, PROD + "confg: {}\n")["confg"][0]


def test_invalid_utf8_names_the_file(root):
    found = refused(root, PROD.encode().replace(b"llm-platform", b"llm-\xff"))
    at = PROD.index("llm-platform") + 4
    assert found == {"Pulumi.t.yaml": (f"is not valid UTF-8 (byte {at}: invalid start byte)",
                                       f"Pulumi.t.yaml:{line_of(PROD, 'netra:costCenter: llm-platform')}")}


@pytest.mark.parametrize("value, words", [
    ("2024-01-01", "a date/time"), ("!!binary aGk=", "!!binary"), ("!!set {a, b}", "!!set"),
    ("!!python/object/apply:os.system [ls]", "python/object"), (".inf", "not a finite number"), (".NaN", "not a finite number"),
    ("!!float '1e400'", "overflows to Infinity"), ("1e400", "overflows to Infinity"), ("!!int abc", "not a whole number"),
])
def test_values_with_no_json_form_are_refused_naming_the_key(root, value, words):
    found = refused(root, PROD.replace("netra:costCenter: llm-platform", f"netra:costCenter: {value}"))
    assert list(found) == ["netra:costCenter"] and words in found["netra:costCenter"][0]
    assert found["netra:costCenter"][1] == f"Pulumi.t.yaml:{COST_LINE}"


def test_non_string_and_duplicate_keys(root):
    found = refused(root, PROD.replace("    frontend:\n", "    1: {}\n    frontend:\n", 1) + "  netra:canaryPercent: 10\n")
    assert found["netra:services.1"][0].startswith("key '1' is not a string")
    assert found["netra:canaryPercent"] == (f"duplicate key (first at line {CANARY_LINE}); Pulumi refuses duplicate keys",
                                            f"Pulumi.t.yaml:{len(PROD.splitlines()) + 2}")


@pytest.mark.parametrize("secure, got", [("''", "empty"), ("5", "int"), ("[v1:x]", "list"), ("null", "NoneType")])
def test_malformed_secure_values(root, secure, got):
    found = refused(root, PROD.replace(SECURE, f"secure: {secure}"))
    message, origin = found["netra:observability.pagerduty.serviceKey"]
    assert f"secure: must be a non-empty ciphertext string, got {got}" in message
    assert origin == f"Pulumi.t.yaml:{line_of(PROD, SECURE)}"


def test_bare_keys_are_the_projects_and_unknown_namespaces_are_refused(root):
    found = refused(root, PROD.replace("netra:canaryPercent: 0", "canaryPercent: 15"), sets=["aws:region=us-east-1"])
    assert found == {"aws:region": ("unknown namespace 'aws'; this program reads netra:*, gcp:project, gcp:region, "
                                    "the gcp provider's own keys (gcp:zone, ...)", "--set")}
    found = refused(root, PROD.replace("netra:canaryPercent: 0", "canaryPercent: 15"))
    assert found == {"netra:canaryPercent": ("must be one of netra:stages [0, 10, 50, 100], got 15",
                                           f"Pulumi.t.yaml:{CANARY_LINE}")}
    found = refused(root, PROD, sets=["canaryPercent=10", "gcp:projet=x", "netra:project=x"])
    assert found["gcp:projet"][0].startswith("unknown key; did you mean 'gcp:project'?")
    assert found["netra:project"][0] == "is set through gcp:project, not netra:project"
    # the program's own path: the engine's flat config
    assert "unknown key; did you mean 'gcp:region'?" in config_problems({**stack_config("prod"), "gcp:regoin": "x"})["gcp:regoin"]


def test_yaml_1_2_booleans_and_the_set_values(root):
    found = refused(root, PROD.replace("sessionAffinity: true", "sessionAffinity: yes"))
    assert found["netra:services.backend.sessionAffinity"] == ("must be true or false, got 'yes'",
                                                                f"Pulumi.t.yaml:{line_of(PROD, 'sessionAffinity: true')}")
    found = refused(root, PROD, sets=["netra:services.frontend.image=[1", "netra:services..x=1", "novalue"])
    assert found["netra:services.frontend.image"][1] == "--set" and "column" in found["netra:services.frontend.image"][0]
    assert "empty path segment" in found["netra:services..x"][0]
    assert "expected KEY=VALUE" in found["--set"][0]


@pytest.mark.parametrize("key, value, words", [
    ("services.backend.stableRevision", "netra-backend-prod-" + "a" * 10_000, "at most 63 characters"),
    ("services.backend.stableRevision", "netra-backend-prod-1\n", "control or invisible characters, got U+000A"),
    ("services.backend.image", "us-central1-docker.pkg.dev/p/r/i@sha256:" + "0" * 64 + "\u200b", "U+200B"),
    ("platform.edge.domains", ["app.netra.ai\n"], "U+000A"),
    ("observability.emails", ["ops@netra.ai\u200b"], "U+200B"),
    ("observability.emails", ["ops@netra..ai"], "must be an email address"),
    ("services.auth.minInstances", True, "must be a whole number, got true"),
    ("observability.budget.monthlyAmountUsd", float("inf"), "finite"),
    ("app.costAlertThresholds.low", "nan", "must be a number, got 'nan'"),
    ("costCenter", "Ops Team", "a label value"),
    ("platform.featureFlags", {"x": float("nan")}, "finite"),
])
def test_strict_field_types(key, value, words):
    cfg = stack_config("prod")
    set_path(cfg, f"netra:{key}", value)
    # as the engine passes it (JSON; Infinity/NaN only to prove the program refuses them too)
    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()}
    with pytest.raises(ConfigError) as e:
        load_stack_config(flat, "prod")
    found = {p.key: p.message for p in e.value.problems}
    assert any(words in m for m in found.values()), found
    assert all(k.startswith(f"netra:{key}") for k in found), found  # the bad key, not a neighbour


def test_engine_json_is_held_to_the_same_rules():
    assert decode_engine_value('{"a": [1, 2]}') == {"a": [1, 2]}
    for text, words in [('{"a": Infinity}', "finite"), ('{"a": 1, "a": 2}', "duplicate key"),
                        ("[" * 100 + "]" * 100, "nested deeper")]:
        with pytest.raises(ValueError, match=words):
            decode_engine_value(text)
    with pytest.raises(SourceError):
        parse_yaml("{a: 1, a: 2}")


def test_a_service_name_with_a_trailing_newline_is_refused():
    cfg = stack_config("staging")
    cfg["netra:services"]["web\n"] = dict(cfg["netra:services"]["frontend"])
    found = config_problems(cfg, "staging")
    assert any("service name must be lowercase letters" in m for k, m in found.items() if k.startswith("netra:services")), found
