"""Property-based fuzzing of everything a user types: the real stack files, mutated, and `--set` values.

The invariant (issue 12), for ANY input:
- `python -m infra plan` never raises (no traceback) and exits 0 or 2 (the policy pack is off here: 1 is
  its code); `--json` stdout is always one valid JSON document (no Infinity/NaN);
- exit 2: the JSON object lists every problem with a key, a message and where it came from (file:line or
  --set), and nothing was registered; the Pulumi program itself, given the same engine config, refuses
  it too (pulumi.RunError) before registering anything;
- exit 0: the config validated completely and the whole program ran (no crash after the first resource).

Runs in-process (`infra.plan.cli.run`, the CLI's own function) on copies of the repo's stack files.
CI runs a few derandomized examples of every mutation class (profile "ci"); `make fuzz` runs the long
random one over all classes ("fuzz", FUZZ_EXAMPLES examples) and prints per-class and per-exit-code statistics.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import pulumi
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from infra import program
from infra.config import ConfigError
from infra.plan import cli, engine
from infra.plan.stackfile import StackFileError, read_stack

from .conftest import ROOT, ledger_stamped

KINDS = ("value", "edge", "delete", "rename", "add", "yaml-text", "bytes", "set", "document")
settings.register_profile("ci", max_examples=int(os.environ.get("FUZZ_EXAMPLES_PER_CLASS", 3)), derandomize=True,
                          deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz", max_examples=int(os.environ.get("FUZZ_EXAMPLES", 2000)), deadline=None,
                          database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = os.environ.get("FUZZ_PROFILE", "ci")

STACKS = ("prod", "staging")
TEXTS = {s: (ROOT / f"Pulumi.{s}.yaml").read_text() for s in STACKS}
DOCS = {s: yaml.safe_load(TEXTS[s]) for s in STACKS}


def leaf_paths(value, path=()):
    """Every path in a config mapping (to objects, lists and scalars alike)."""
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += leaf_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += leaf_paths(v, path + (i,))
    return out


PATHS = {s: leaf_paths(DOCS[s]["config"]) for s in STACKS}
DOTTED = sorted({".".join(map(str, p)) for s in STACKS for p in PATHS[s]})

hostile_scalars = st.sampled_from([
    True, False, None, 0, -1, 1, 15, 99, 100, 101, 2**53 + 1, 2**63, 10**400, 1e308, -0.0, 0.5, 1e-320,
    float("inf"), float("-inf"), float("nan"), "", " ", "a" * 10_000, "x\n", "netra-backend-prod-1\n",
    "a\u200bb", "\u202e", "\x00", "\x1b[31m", "true", "yes", "on", "1", ".inf", "NaN", "Infinity", "null",
    "{", "[", "{}", "[1]", '{"a": Infinity}', "gcr.io/x/y:latest", "app.netra.ai\n", "ops@netra.ai\u200b",
    "us-central1-docker.pkg.dev/p/r/i@sha256:" + "0" * 64, "netra-frontend-prod-" + "a" * 60,
    datetime.date(2024, 1, 1), datetime.datetime(2024, 1, 1, 12, 0), b"\x00binary", frozenset({"a"}),
    "v1:abc", "7.2", 7.2, 8, "2", 2, "4Gi", "db-custom-2-7680",
])
hostile_values = st.one_of(
    hostile_scalars,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(hostile_scalars, max_size=3),
    st.dictionaries(st.one_of(st.text(max_size=8), st.integers(-3, 3), st.booleans()), hostile_scalars, max_size=3),
    st.sampled_from([{"secure": ""}, {"secure": 5}, {"secure": ["x"]}, {"secure": "v1:x", "also": 1}, {"secure": "v1:ok"},
                     {"secure": None}, {"secure": "a b"}]),
)

# text-level mutations: YAML constructs a dump of a Python value never produces
YAML_SNIPPETS = [
    "!!binary aGk=", "!!set {a, b}", "!!python/object/apply:os.system [ls]", "!!timestamp 2020-01-01",
    "!custom x", "2020-01-01", "2020-01-01T10:00:00Z", ".inf", "-.Inf", ".NaN", "yes", "No", "0x1F", "0o17",
    "1_000", "~", "'a\u200b'", '"tab\\t"', '"nl\\n"', "&a [*a]", "[" * 40 + "]" * 40, "{a: 1, a: 2}",
    "{1: x}", "{[1]: x}", "{? [a] : b}", "<<: {x: 1}", "|\n    multi\n    line", "!!str 5", "!!int '5'",
    "!!float '1e400'", "'\x01'", "*undefined_alias",
]
BOMB = ("a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n")


def set_at(doc, path, value):
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def get_at(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def edge_value(draw, old):
    if isinstance(old, bool):
        return not old
    if isinstance(old, (int, float)):
        return draw(st.sampled_from([0, 1, -1, 2, old - 1, old + 1, old * 10, old / 3, 1e-9, 0.01, 1e15, 2**53, 63, 64, 100]))
    if isinstance(old, str):
        return draw(st.sampled_from([old.upper(), old + "-x", old[:-1], old * 2, old + "a" * 63, "x", old.replace("-", "_")]))
    if isinstance(old, list):
        return draw(st.sampled_from([old + old[:1], [], old[::-1], old * 30]))
    if isinstance(old, dict):
        return draw(st.sampled_from([{}, {**old, "extra": 1}, {k: v for k, v in list(old.items())[:1]}]))
    return old


def delete_at(doc, path):
    node = doc
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]


def rename_at(doc, path, new):
    node = doc
    for p in path[:-1]:
        node = node[p]
    if isinstance(node, dict):
        node[new] = node.pop(path[-1])


def dump(doc) -> str:
    try:
        return yaml.dump(doc, Dumper=yaml.Dumper, allow_unicode=True, sort_keys=False, width=10_000)
    except (yaml.YAMLError, TypeError, RecursionError):
        return yaml.dump({"config": {}}, sort_keys=False)


@st.composite
def mutated_inputs(draw, kinds=KINDS):
    """(mutation class, stack, stack file bytes, --set items)."""
    import copy

    stack = draw(st.sampled_from(STACKS))
    kind = draw(st.sampled_from(kinds))
    doc = copy.deepcopy(DOCS[stack])
    config = doc["config"]
    text = TEXTS[stack]
    sets: list[str] = []
    if kind in ("value", "edge", "delete", "rename", "add"):
        path = draw(st.sampled_from(PATHS[stack]))
        if kind == "value":
            set_at(config, path, draw(hostile_values))
        elif kind == "edge":  # plausible values of the same type: the valid-but-odd configs that break components
            set_at(config, path, edge_value(draw, get_at(config, path)))
        elif kind == "delete":
            delete_at(config, path)
        elif kind == "rename":
            key = str(path[-1])
            new = draw(st.sampled_from([key.upper(), key[:-1], key + "s", key.split(":")[-1], "aws:" + key.split(":")[-1],
                                        "gcp:projet", key.replace(":", "."), "", ":", "a:b:c", 7, True, None]))
            rename_at(config, path, new)
        else:
            parent = path[:-1]
            node = config
            for p in parent:
                node = node[p]
            if isinstance(node, dict):
                node[draw(st.sampled_from(["typo", "canaryPercent", "netra:canaryPrecent", "aws:region", "gcp:zone",
                                           "secure", "<<", "pulumi:x"]))] = draw(hostile_values)
        text = dump(doc)
    elif kind == "yaml-text":
        lines = text.splitlines()
        candidates = [i for i, ln in enumerate(lines) if ": " in ln and not ln.lstrip().startswith("#")]
        i = draw(st.sampled_from(candidates))
        head = lines[i].split(": ", 1)[0]
        how = draw(st.sampled_from(["replace", "duplicate", "bomb", "second-doc"]))
        if how == "replace":
            lines[i] = f"{head}: {draw(st.sampled_from(YAML_SNIPPETS))}"
        elif how == "duplicate":
            lines.insert(i + 1, lines[i])
        elif how == "bomb":
            lines = BOMB.splitlines() + lines[:i] + [f"{head}: *f"] + lines[i + 1:]
        else:
            lines += ["---", "config: {}"]
        text = "\n".join(lines) + "\n"
    elif kind == "bytes":
        data = text.encode()
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["insert", "truncate", "replace"]))
        junk = draw(st.binary(min_size=1, max_size=8))
        data = data[:at] + junk + data[at:] if how == "insert" else data[:at] if how == "truncate" else \
            data[:at] + junk + data[at + len(junk):]
        return kind, stack, data, sets
    elif kind == "document":
        text = draw(st.sampled_from(["", "[1, 2]\n", "42\n", "config: [a]\n", "config: null\n", "confg: {}\n",
                                     BOMB + "config: {netra:x: *f}\n", "config: &a\n  netra:x: *a\n",
                                     "config:\n  netra:x: " + "[" * 5000 + "]" * 5000 + "\n",
                                     text + "x" * (1 << 20)]))
    else:  # set
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.one_of(st.sampled_from(DOTTED), st.sampled_from([
                "canaryPercent", "netra:canaryPercent", "gcp:projet", "aws:region", "netra:", ":x", "netra:services.",
                "netra:services..backend", "services.backend.minInstances", "netra:observability.budget.monthlyAmountUsd",
                "netra:platform.cache.redisVersion", "netra:services.backend.stableRevision"]), st.text(max_size=12)))
            value = draw(st.one_of(st.sampled_from(YAML_SNIPPETS + ["10", "true", "", "[1", "{a: b", ".inf", "1e400",
                                                                     "{secure: ''}", "{secure: v1:x}", "netra-backend-prod-" + "a" * 60]),
                                   st.text(max_size=20)))
            sets.append(f"{key}={value}" if draw(st.booleans()) or "=" in key else key)
    return kind, stack, text.encode("utf-8", "surrogatepass"), sets


class Registrations:
    """Counts resources registered (besides the root Stack) while active."""

    def __init__(self):
        self.count = 0
        self._original = engine._RecordingMonitor.RegisterResource

    def __enter__(self):
        outer = self

        def register(monitor, request):
            if request.type != "pulumi:pulumi:Stack":
                outer.count += 1
            return outer._original(monitor, request)

        self._patch = mock.patch.object(engine._RecordingMonitor, "RegisterResource", register)
        self._patch.start()
        return self

    def __exit__(self, *exc):
        self._patch.stop()


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def fuzz_root():
    root = Path(tempfile.mkdtemp(prefix="netra-fuzz-"))
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def check_invariant(root: Path, kind: str, stack: str, data: bytes, sets: list[str],
                    in_hypothesis: bool = False) -> tuple[int, dict]:
    (root / f"Pulumi.{stack}.yaml").write_bytes(data)
    args = argparse.Namespace(stack=stack, json=True, set=sets, root=root, policy=False)
    out, err = io.StringIO(), io.StringIO()
    with Registrations() as registered, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.run(args)  # any exception here is a traceback for the user: the test fails with the input
    if in_hypothesis:
        event(f"class {kind}")
        event(f"exit {code}")
    assert code in (cli.EXIT_OK, cli.EXIT_USAGE), (code, err.getvalue())
    doc = strict_json(out.getvalue())  # one valid JSON document, never Infinity/NaN
    if code == cli.EXIT_USAGE:
        assert registered.count == 0
        assert doc["problems"], doc
        for problem in doc["problems"]:
            assert problem["key"] and problem["message"], problem
        assert all(p.get("origin") for p in doc["problems"] if p["key"] != "--stack"), doc
        check_program_refuses(root, stack, sets)
    else:
        assert registered.count == len(doc["resources"]) > 0
        urns = [r["urn"] for r in doc["resources"]]
        assert len(urns) == len(set(urns)), "a resource registered twice: the engine stops halfway through an update"
    return code, doc


def check_program_refuses(root: Path, stack: str, sets: list[str]) -> None:
    """The `pulumi up` path: the program, given the engine's config, refuses it before registering anything.
    (When the stack file's form itself is refused, the CLI would refuse it before starting the program.)"""
    try:
        stack_file = read_stack(stack, root, sets=sets)
    except (ConfigError, StackFileError):
        return
    with Registrations() as registered:
        with pytest.raises(pulumi.RunError) as e:
            engine.run_program(program.main, stack_file.project, stack, stack_file.config, stack_file.secret_keys)
    assert registered.count == 0
    assert "invalid stack config" in str(e.value)


@pytest.mark.parametrize("kind", KINDS)
def test_each_mutation_class(fuzz_root, kind):
    """CI: a few derandomized examples of every mutation class (FUZZ_EXAMPLES_PER_CLASS, default 3)."""

    @settings(settings.get_profile("ci"))
    @given(case=mutated_inputs(kinds=(kind,)))
    def run(case):
        check_invariant(fuzz_root, *case, in_hypothesis=True)

    run()


@pytest.mark.skipif(PROFILE != "fuzz", reason="the long random run: `make fuzz`")
@settings(settings.get_profile("fuzz"))
@given(case=mutated_inputs())
def test_any_input_is_refused_cleanly_or_planned_completely(fuzz_root, case):
    check_invariant(fuzz_root, *case, in_hypothesis=True)


@pytest.mark.parametrize("sets, key", [
    (["netra:observability.budget.monthlyAmountUsd=.inf"], "netra:observability.budget.monthlyAmountUsd"),
    (["netra:services.backend.stableRevision=netra-backend-prod-" + "a" * 60], "netra:services.backend.stableRevision"),
    (["canaryPercent=15"], "netra:canaryPercent"),
    (["netra:platform.cache.redisVersion=[7.2]"], "netra:platform.cache.redisVersion"),
    (["netra:services.auth.minInstances=true"], "netra:services.auth.minInstances"),
    (["gcp:projet=x"], "gcp:projet"),
])
def test_issue_examples_exit_2_naming_the_key(fuzz_root, sets, key):
    code, doc = check_invariant(fuzz_root, "set", "prod", TEXTS["prod"].encode(), sets)
    assert code == cli.EXIT_USAGE and key in {p["key"] for p in doc["problems"]}, doc


def test_a_skipped_stage_is_refused_before_the_first_registration(fuzz_root, prod_plan):
    """A check that needs the candidate revision (an approval at 0 %, canaryPercent 50) still runs before
    anything registers: in the plan and in the program itself (`pulumi up` would otherwise apply the
    resources registered before the refusal)."""
    cand = prod_plan["outputs"]["services"]["backend"]["candidateRevision"]
    record = json.dumps({"approvals": {"backend": {"revision": cand, "stage": 0, "by": "verify", "evidence": "0" * 64}}})
    sets = ["netra:canaryPercent=50", f"netra:release={record}"]
    stamp = ledger_stamped("prod", sets=sets)["netra:release.ledger"]
    sets.append(f"netra:release.ledger={json.dumps(stamp)}")  # rendered by the ledger: only the stage is wrong
    code, doc = check_invariant(fuzz_root, "set", "prod", TEXTS["prod"].encode(), sets)
    assert code == cli.EXIT_USAGE and [p["key"] for p in doc["problems"]] == ["netra:canaryPercent"], doc
    assert "skips a stage" in doc["problems"][0]["message"]
