"""The SDK workarounds in infra/compat/ (and the policy pack's _wire.py): each pinned to the SDK version it
was written for, each still doing what it claims with the installed SDK, and the partial pulumi_gcp.compute
import confined to the offline plan."""
from __future__ import annotations

import re
import subprocess
import sys

import pulumi
import pytest

from infra import compat
from infra.compat import WORKAROUNDS, gcp_compute, pulumi_sdk

from .conftest import ROOT
from .test_policy_rules import pack_path  # noqa: F401  (fixture: policies/ on sys.path)


@pytest.mark.parametrize("w", WORKAROUNDS, ids=lambda w: w.package)
def test_each_workaround_is_pinned_to_the_installed_sdk(w):
    installed = compat.installed_version(w.package)
    assert installed == w.written_for, (
        f"SDK pin moved: workaround '{w.name}' ({w.where}) was written for {w.package} {w.written_for}, "
        f"installed is {installed}. Re-check what it relies on ({w.relies_on}) with tests/test_compat.py, "
        f"then set written_for in infra/compat/__init__.py.")


@pytest.mark.parametrize("requirements", ["requirements.txt", "policies/requirements.txt"])
def test_requirements_pin_the_versions_the_workarounds_were_written_for(requirements):
    pins = {m.group(1).lower().replace("-", "_"): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / requirements).read_text(), re.M)}
    for w in WORKAROUNDS:
        if w.package in pins:
            assert pins[w.package] == w.written_for, (
                f"{requirements} moves {w.package} to {pins[w.package]}; workaround '{w.name}' ({w.where}) was "
                f"written for {w.written_for}: re-check {w.relies_on}, then update infra/compat/__init__.py")


# ---------------------------------------------------------------- private Pulumi runtime API

def test_secret_signature_and_a_second_run_in_the_same_process():
    """What the engine receives: secrets wrapped in the signature the compat layer names; and
    reset_root_resource lets the program run again with a fresh root Stack."""
    from infra.plan.engine import run_program

    def program():
        pulumi.export("s", pulumi.Output.secret("v"))
        pulumi.export("p", "plain")

    first = run_program(program, "p", "s", {})
    second = run_program(program, "p", "s", {})
    assert first.outputs == second.outputs == {"s": {pulumi_sdk.SIG_KEY: pulumi_sdk.SECRET_SIG, "value": "v"},
                                                "p": "plain"}


def test_input_type_helpers_read_pulumi_gcp_args_classes():
    from pulumi_gcp.storage import BucketArgs, BucketVersioningArgs

    assert pulumi_sdk.is_input_type(BucketVersioningArgs)
    assert pulumi_sdk.input_type_py_to_pulumi_names(BucketArgs)["uniform_bucket_level_access"] == "uniformBucketLevelAccess"
    assert "versioning" in pulumi_sdk.input_type_types(BucketArgs)


def test_a_vanished_private_name_is_reported_as_the_workaround():
    with pytest.raises(ImportError, match=r"private Pulumi runtime API .*pulumi.runtime.rpc._no_such_name is gone"):
        pulumi_sdk._require("pulumi.runtime.rpc", "_no_such_name")


# ---------------------------------------------------------------- pulumi_gcp.compute: partial only offline

def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


OFFLINE = """
import sys
import infra.plan                                          # the offline plan (python -m infra plan) imports it first
import pulumi_gcp
before = sys.modules['pulumi_gcp.compute']
from infra.components.gcp_compute import MODULES, compute
loaded = sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('pulumi_gcp.compute.'))
assert loaded == sorted(['outputs', '_inputs', *MODULES]), loaded
assert compute is before is pulumi_gcp.compute            # the same module object, never a second one
assert compute.SecurityPolicyRuleArgs.__module__ == 'pulumi_gcp.compute._inputs'
assert compute.get_network.__name__ == 'get_network'      # a submodule-level name: full init on demand
from pulumi_gcp.compute import Autoscaler, InstanceArgs   # anything else still resolves
print(len([m for m in sys.modules if m.startswith('pulumi_gcp.compute.')]))
"""

# What the Pulumi language host does for `pulumi up` / `preview`: import the project's __main__.py, whose
# program imports the components. Stopped before main() runs, which needs the engine.
REAL_ENGINE = """
import sys
import infra.program                                       # __main__.py: from infra.program import main
import pulumi_gcp
from infra.components.gcp_compute import compute
assert 'infra.plan.engine' not in sys.modules
assert compute is pulumi_gcp.compute is sys.modules['pulumi_gcp.compute']
assert not getattr(type(compute), '__netra_partial__', False), type(compute)
compute.Autoscaler                                         # first read executes the real package in full
assert 'Autoscaler' in compute.__dict__
print(len([m for m in sys.modules if m.startswith('pulumi_gcp.compute.')]))
"""


def test_partial_compute_in_the_offline_plan_real_package_under_the_engine():
    offline, real = _python(OFFLINE), _python(REAL_ENGINE)  # both at once: two cores
    out, err = offline.communicate(timeout=120)
    assert offline.returncode == 0, err
    assert int(out) > 200  # after the fallback every module is there
    out, err = real.communicate(timeout=120)
    assert real.returncode == 0, err
    assert int(out) > 200


def test_partial_compute_only_with_the_pulumi_gcp_it_was_written_for(monkeypatch):
    monkeypatch.setattr(gcp_compute, "_partial_wanted", True)
    assert gcp_compute.partial_compute_active()
    monkeypatch.setattr(compat, "pinned", lambda package: False)
    assert not gcp_compute.partial_compute_active()  # another pulumi_gcp: the real package, slower, never wrong
    monkeypatch.setattr(gcp_compute, "_partial_wanted", False)
    monkeypatch.setattr(compat, "pinned", lambda package: True)
    assert not gcp_compute.partial_compute_active()  # not in the offline plan


# ---------------------------------------------------------------- the policy pack's hooks into pulumi_policy

def test_pack_hooks_are_installed_on_the_pinned_pulumi_policy(pack_path):
    from netra_policies import _wire
    from pulumi_policy import policy as pp

    assert _wire.INSTALLED and getattr(pp.deserialize_properties, "_netra_recording", False), \
        "pulumi_policy.policy.deserialize_properties is no longer where _wire hooks the secret paths"
    assert _wire.CONVERSION_CACHED and isinstance(pp.json_format, _wire._ConvertOncePerRequest), \
        "pulumi_policy.policy no longer converts requests through json_format"
