"""Shared test helpers. Read this before writing a test: `make test` must stay under a minute on 2 cores.

Writing tests (what keeps the suite fast)
- A whole-stack plan costs ~0.5 s in process and ~3 s as a subprocess. Never plan per test:
  * `prod_plan` / `staging_plan` (session fixtures) are the repo's stacks as planned once per session
    (`prod_run` / `staging_run`: the same runs as `ProgramRun`s, wire-form inputs);
  * `plan_of(stack, overrides)` is any other whole-stack plan ("prod with canaryPercent 10"), computed
    once per session per (stack, overrides, policy) and shared by every test that asks for it.
  Both return READ-ONLY views (mutating one raises TypeError); `copy.deepcopy(view)` gives a plain,
  mutable copy. `run_of(stack, overrides)` is the same for `run_stack` (a fresh `ProgramRun` copy).
- Code under test that plans by itself (`python -m infra plan|gate|rollout` in process, the rollout's
  `plan_release`, the gate's `--stack`): take the `reuse_plans` fixture, which makes
  `infra.plan.plan_stack` / `run_stack` / `checked_run` answer from the same session cache.
- Commands: `cli("plan", "--stack", "prod", ...)` runs `python -m infra ...` IN PROCESS (exit code,
  stdout, stderr; a traceback fails the test). Keep one real subprocess per entry point (that
  `python -m infra` itself works); everything else about a command goes through `cli`.
- Testing one component: run a tiny program with just that component under
  `infra.plan.engine.run_program` (milliseconds), not the whole stack.
- Config errors: `config_problems(cfg)` (no program run at all).
- Servers (PostgreSQL, the Monitoring emulator, the policy pack): one per session or module, bound to
  127.0.0.1 port 0. Tests run in two pytest-xdist workers under `make test`: nothing may write into
  the repo's tree except under `build/` with a name of its own, or rely on another test's side effect.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import io
import json
import pickle
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pytest
import yaml

import infra.plan as _plan
from infra.config import ConfigError, load_stack_config
from infra.plan.stackfile import encode
from infra.plan.stackfile import _strip_secure

from .pgserver import db, postgres  # noqa: F401  (fixtures: a real PostgreSQL 15, a fresh database per test)

ROOT = Path(__file__).resolve().parents[1]

# The real functions, kept before `reuse_plans` patches the module attributes.
_REAL = {"plan_stack": _plan.plan_stack, "run_stack": _plan.run_stack, "checked_run": _plan.checked_run}


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


def routes_of(url_map: dict) -> dict[str, str]:
    """Path (path-rule form, `/api/*`) -> service of the URL map's first path matcher, from its route rules
    (the canary verification route needs them; header-matched rules are not paths) or path rules."""
    matcher = url_map["pathMatchers"][0]
    out = {p: r["service"] for r in matcher.get("pathRules") or () for p in r["paths"]}
    for r in matcher.get("routeRules") or ():
        prefixes = [m["prefixMatch"] for m in r["matchRules"] if "prefixMatch" in m and not m.get("headerMatches")]
        # `/api/*` is two matches (prefix `/api/`, path `/api`); an exact path rule is one
        paths = [p + "*" for p in prefixes] or [m["fullPathMatch"] for m in r["matchRules"] if "fullPathMatch" in m]
        out.update({p: r["service"] for p in paths})
    return out


def one(doc: dict, type_token: str, name: str) -> dict:
    found = [r for r in resources_of(doc, type_token) if r["name"] == name]
    assert len(found) == 1, f"expected one {type_token} named {name}, found {len(found)}"
    return found[0]


# ------------------------------------------------------------------ read-only views of shared plans

_SHARED = "this plan is shared by the whole test session: copy.deepcopy(...) it before changing it"


def _refuse(self, *args, **kwargs):
    raise TypeError(_SHARED)


class ReadOnlyDict(dict):
    """A dict that refuses changes; json.dumps, ==, isinstance(dict) work; deepcopy gives a plain dict."""

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __deepcopy__(self, memo):
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __copy__(self):
        return dict(self)

    def __reduce__(self):
        return dict, (dict(self),)


class ReadOnlyList(list):
    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = extend = insert = pop = remove = clear = \
        sort = reverse = _refuse

    def __deepcopy__(self, memo):
        return [copy.deepcopy(v, memo) for v in self]

    def __copy__(self):
        return list(self)

    def __reduce__(self):
        return list, (list(self),)


def read_only(value: Any) -> Any:
    if isinstance(value, dict):
        return ReadOnlyDict((k, read_only(v)) for k, v in value.items())
    if isinstance(value, list):
        return ReadOnlyList(read_only(v) for v in value)
    return value


# ------------------------------------------------------------------ the session's plan cache

_runs: dict[str, bytes] = {}  # checked_run's arguments -> pickled (ProgramRun, violations)
_views: dict[str, Any] = {}  # the same key -> read-only plan document


@contextlib.contextmanager
def _real_plan_functions():
    """infra.plan's functions call each other through the module: while the cache computes a run they
    must be the real ones, even when `reuse_plans` has replaced them for the test."""
    saved = {name: getattr(_plan, name) for name in _REAL}
    for name, fn in _REAL.items():
        setattr(_plan, name, fn)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(_plan, name, fn)


def _arguments(name: str, args: tuple, kwargs: dict) -> dict:
    """The call's arguments by parameter name, defaults filled in (whatever infra.plan's signature is)."""
    bound = inspect.signature(_REAL[name]).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _checked(*args, **kwargs):
    """`checked_run(...)`, computed once per session per argument set; a fresh copy each call.
    A ConfigError / StackFileError is raised each time, never cached."""
    arguments = _arguments("checked_run", args, kwargs)
    key = json.dumps(arguments, sort_keys=True, default=str)
    if key not in _runs:
        with _real_plan_functions():
            _runs[key] = pickle.dumps(_plan.checked_run(**arguments))
    return pickle.loads(_runs[key])


def plan_of(stack: str, overrides: Mapping[str, Any] | None = None, *, policy: bool = False) -> dict:
    """`plan_stack(stack, overrides=overrides, policy=policy)` as a read-only view, planned once per session."""
    key = json.dumps([stack, overrides, policy], sort_keys=True, default=str)
    if key not in _views:
        _views[key] = read_only(_plan.plan_document(*_checked(stack, overrides=overrides, policy=policy)))
    return _views[key]


def ledger_stamped(stack: str, overrides: Mapping[str, Any] = (), sets=()) -> dict:
    """`overrides` plus the stamp the release commands write beside netra:release (infra/release/view.py),
    computed on the config as the program sees it: a test's approvals then stand for ledger-rendered ones
    (unstamped, the program refuses them as hand-written)."""
    from infra.plan.stackfile import read_stack
    from infra.release.state import decode, read_release_doc
    from infra.release.view import STAMP, release_digest

    config = {k: decode(v) for k, v in read_stack(stack, overrides=dict(overrides), sets=sets).config.items()}
    stamp = {"generation": "1", "digest": release_digest(read_release_doc(config), config)}
    return {**dict(overrides), f"netra:release.{STAMP}": stamp}


def run_of(stack: str, overrides: Mapping[str, Any] | None = None):
    """`run_stack(stack, overrides=overrides)` (a ProgramRun, yours to change), run once per session."""
    return _checked(stack, overrides=overrides, policy=False)[0]


@pytest.fixture(scope="session")
def prod_run():
    """The prod program run (wire-form inputs, secrets still wrapped), once per session (shared: read only)."""
    return run_of("prod")


@pytest.fixture(scope="session")
def staging_run():
    return run_of("staging")


@pytest.fixture(scope="session")
def prod_plan() -> dict:
    return plan_of("prod")


@pytest.fixture(scope="session")
def staging_plan() -> dict:
    return plan_of("staging")


@pytest.fixture
def reuse_plans(monkeypatch):
    """`infra.plan.plan_stack` / `run_stack` / `checked_run` answer from the session cache (fresh copies),
    for code under test that plans by itself. A test that changes the program or its inputs some other
    way than `overrides` (monkeypatching a component, a custom root) must not use it."""

    def plan_stack(*args, **kwargs):  # = plan_document(*checked_run(same arguments))
        return _plan.plan_document(*_checked(**_arguments("plan_stack", args, kwargs)))

    def run_stack(*args, **kwargs):  # = checked_run(same arguments, policy=False)[0]
        arguments = _arguments("run_stack", args, kwargs)
        if arguments.pop("on_resource", None) is not None:  # the caller watches registrations: a real run
            return _REAL["run_stack"](*args, **kwargs)
        return _checked(**arguments, policy=False)[0]

    monkeypatch.setattr(_plan, "plan_stack", plan_stack)
    monkeypatch.setattr(_plan, "checked_run", _checked)
    monkeypatch.setattr(_plan, "run_stack", run_stack)


# ------------------------------------------------------------------ the command line, in process

@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli(*argv: str) -> CliResult:
    """`python -m infra ARGV` in this process: its exit code (returned or via SystemExit), stdout and
    stderr. An exception escaping the command fails the test with its traceback (a user must never see one)."""
    from infra.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except Exception:  # noqa: BLE001 (reported as the failure it is)
            pytest.fail(f"`python -m infra {' '.join(argv)}` raised instead of reporting:\n{traceback.format_exc()}")
    return CliResult(code, out.getvalue(), err.getvalue())


DIGEST = "@sha256:" + "c" * 64
# A fifth and a sixth service, added the way a user would: YAML only (README "Add a service").
WORKER = {"image": "us-central1-docker.pkg.dev/netra-production/netra/worker" + DIGEST,
          "public": False, "minInstances": 2, "maxInstances": 10, "secrets": {"FEATURE_FLAGS": "feature-flags"}}
SEARCH = {"image": "us-central1-docker.pkg.dev/netra-production/netra/search" + DIGEST,
          "routes": ["/search/*"], "minInstances": 2, "maxInstances": 20}


@pytest.fixture(scope="session")
def prod_plan_with_more_services() -> dict:
    """prod plus a worker (not public) and a public `search` service, policy pack included."""
    return plan_of("prod", {"netra:services.worker": WORKER, "netra:services.search": SEARCH}, policy=True)
