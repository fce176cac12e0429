"""Shared fixtures: offline plans of the repo's own stacks (the real program under Pulumi's mocks)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from infra.config import ConfigError, load_stack_config
from infra.plan import plan_stack
from infra.plan.stackfile import encode
from infra.plan.stackfile import _strip_secure

from .pgserver import db, postgres  # noqa: F401  (fixtures: a real PostgreSQL 15, a fresh database per test)

ROOT = Path(__file__).resolve().parents[1]


def stack_config(stack: str) -> dict:
    """The `config:` mapping of Pulumi.<stack>.yaml, as a fresh copy tests may mutate; `secure:` values
    (even nested ones) become the offline plan's secret placeholder, as the CLI would decrypt them."""
    raw = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return copy.deepcopy({key: _strip_secure(value)[0] for key, value in raw.items()})


def flat(cfg: dict) -> dict:
    """A `config:` mapping as the engine hands it to the program (strings, objects JSON-encoded)."""
    return {k: encode(v) for k, v in cfg.items()}


def config_problems(cfg: dict, stack: str = "prod") -> dict[str, str]:
    """key -> message of every problem `cfg` has; fails the test if it has none."""
    with pytest.raises(ConfigError) as e:
        load_stack_config(flat(cfg), stack)
    return {p.key: p.message for p in e.value.problems}


def resources_of(doc: dict, type_token: str) -> list[dict]:
    return [r for r in doc["resources"] if r["type"] == type_token]


def one(doc: dict, type_token: str, name: str) -> dict:
    found = [r for r in resources_of(doc, type_token) if r["name"] == name]
    assert len(found) == 1, f"expected one {type_token} named {name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="session")
def prod_run():
    """The prod program run (wire-form inputs, secrets still wrapped), once per session."""
    from infra.plan import run_stack

    return run_stack("prod")


@pytest.fixture(scope="session")
def staging_run():
    from infra.plan import run_stack

    return run_stack("staging")


@pytest.fixture(scope="session")
def prod_plan(prod_run) -> dict:
    from infra.plan import plan_document

    return plan_document(prod_run, [])


@pytest.fixture(scope="session")
def staging_plan(staging_run) -> dict:
    from infra.plan import plan_document

    return plan_document(staging_run, [])
