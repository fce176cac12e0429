"""The runtime/development split of the requirements (issue 23: a lean `make plan`).

requirements.txt is what `pulumi up`, `python -m infra plan` and the policy pack import, with its whole
dependency closure; requirements-dev.txt is the rest. Both are pinned. A plan-time import of a package
that only the dev file installs would break `make plan` on a fresh clone: the import test below catches it.
"""
from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import ROOT

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)==(?P<version>\S+)$")


def pins(path: str) -> dict[str, str]:
    """canonical name -> version of every `name==version` line; any other requirement line fails."""
    out: dict[str, str] = {}
    for n, line in enumerate((ROOT / path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line or line == "-r requirements.txt":
            continue
        m = PIN.match(line)
        assert m, f"{path} line {n}: {line!r} is not pinned as name==version"
        name = canonicalize_name(m.group("name"))
        assert name not in out, f"{path} line {n}: {name} pinned twice"
        out[name] = m.group("version")
    return out


RUNTIME, DEV = pins("requirements.txt"), pins("requirements-dev.txt")


def test_dev_requirements_extend_the_runtime_ones_without_repeating_them():
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert not set(RUNTIME) & set(DEV), f"pinned in both files: {sorted(set(RUNTIME) & set(DEV))}"
    assert {"pulumi", "pulumi-gcp", "pulumi-policy", "pydantic", "pyyaml"} <= set(RUNTIME)
    assert {"pytest", "scipy", "locust", "mkdocs", "mkdocs-material"} <= set(DEV)


def _closure_problems(pinned: dict[str, str], allowed: set[str]) -> list[str]:
    """Each pinned package's dependencies (as installed) must themselves be pinned in `allowed`."""
    problems = []
    for name in pinned:
        dist = md.distribution(name)
        if dist.version != pinned[name]:
            problems.append(f"{name}: installed {dist.version}, pinned {pinned[name]}")
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker and not req.marker.evaluate({"extra": ""}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in allowed and dep not in ("setuptools", "pip"):
                problems.append(f"{name} needs {dep}, which is not pinned")
    return problems


def test_each_file_pins_its_whole_dependency_closure():
    """`pip install -r requirements.txt` on a fresh machine then installs exactly these versions."""
    assert not _closure_problems(RUNTIME, set(RUNTIME)), _closure_problems(RUNTIME, set(RUNTIME))
    both = {**RUNTIME, **DEV}
    assert not _closure_problems(DEV, set(both)), _closure_problems(DEV, set(both))


def test_the_closure_check_catches_a_missing_dependency():
    without = {k: v for k, v in RUNTIME.items() if k != "grpcio"}
    assert any("needs grpcio" in p for p in _closure_problems(without, set(without)))


# Runs the offline plan of prod (both stacks run the same program) and loads the policy pack's modules in one fresh interpreter, then
# names the distribution of every module file it loaded.
_IMPORTS = r"""
import importlib.metadata as md, io, json, os, sys, contextlib
from infra.__main__ import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["plan", "--stack", "prod"]) == 0
sys.path.insert(0, "policies")
import pulumi_policy, netra_policies  # what policies/__main__.py imports
owner = {}
for d in md.distributions():
    for f in d.files or []:
        owner[os.path.realpath(d.locate_file(f))] = d.metadata["Name"]
used = {}
for name, m in list(sys.modules.items()):
    path = getattr(m, "__file__", None)
    if path and os.path.realpath(path) in owner:
        used.setdefault(owner[os.path.realpath(path)], name)
print(json.dumps(used))
"""


# Imported when present, skipped when not (checked: `make plan` in a runtime-only virtualenv passes).
OPTIONAL = {"psutil": "opentelemetry-sdk's resources module imports it inside try/except ImportError"}


def test_the_plan_and_the_pack_import_only_runtime_requirements():
    r = subprocess.run([sys.executable, "-c", _IMPORTS], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    used = json.loads(r.stdout.splitlines()[-1])
    outside = {dist: module for dist, module in used.items()
               if canonicalize_name(dist) not in RUNTIME and canonicalize_name(dist) not in ("setuptools", "pip", *OPTIONAL)}
    assert not outside, ("the plan or the policy pack imports packages that only requirements-dev.txt installs "
                         f"(`make plan` would fail on a fresh clone); move them to requirements.txt: {outside}")
    assert {"pulumi", "pulumi_gcp", "pulumi_policy", "pydantic"} <= set(used)
