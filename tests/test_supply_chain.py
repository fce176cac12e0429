"""Supply chain (docs/supply-chain.md): the function's lock, Dockerfile base images by digest, placeholder
digests refused by a real preview/up and only warned about offline, the ClickHouse VMs' pinned image and
fingerprint-checked packages."""
from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import textwrap
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from infra import program, supply_chain
from infra.components.clickhouse import render
from infra.plan import engine
from infra.plan.stackfile import read_stack

from .conftest import ROOT, config_problems, plan_of, stack_config

FN = ROOT / "functions" / "emergency_budget"
LINE = re.compile(r"^(?P<name>[a-z0-9-]+)==(?P<version>\S+)(?P<hashes>( --hash=sha256:[0-9a-f]{64})+)$")
# the Cloud Functions python311 builder: Linux x86_64, CPython 3.11
TARGET = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.9", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython", "extra": ""}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


LOCKED = (FN, ROOT / "loadtest", ROOT / "migrations")  # the function and the two images


def locked(d: Path) -> dict[str, str]:
    out = {}
    for line in (d / "requirements.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"not `name==version --hash=sha256:...`: {line!r}"
        out[m["name"]] = m["version"]
    return out


def closure(names, extras=None) -> set[str]:
    """Every distribution the direct dependencies (with their extras) need on the target, from the installed
    metadata; an extra's package that is not installed here counts, its own dependencies cannot be read."""
    extras = extras or {}
    seen, todo = set(), [canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or ()
        except md.PackageNotFoundError:
            continue
        for raw in requires:
            req = Requirement(raw)
            if req.marker is None or any(req.marker.evaluate({**TARGET, "extra": e}) for e in ("", *extras.get(name, ()))):
                todo.append(canonical(req.name))
    return seen


@pytest.mark.parametrize("d", LOCKED, ids=lambda d: d.name)
def test_each_lock_is_complete_hashed_and_the_tested_versions(d):
    lock = locked(d)
    direct = [Requirement(line.strip()) for line in (d / "requirements.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    extras = {canonical(r.name): r.extras for r in direct}
    # psycopg[binary]: the extra's package is not installed here (the tests use the system libpq)
    expected = closure([r.name for r in direct], extras)
    assert set(lock) == expected, f"run `python functions/lock.py {d.relative_to(ROOT)}`: {set(lock) ^ expected}"
    for name, version in lock.items():
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            continue  # an extra's package the test environment does not install (psycopg-binary)
        assert installed == version, f"{name}: locked {version}, the tests ran {installed}"
    assert "--index-url" not in (d / "requirements.txt").read_text()  # no other index


def test_the_images_install_their_locks_in_hash_checking_mode():
    for d in ("loadtest", "migrations"):
        text = (ROOT / d / "Dockerfile").read_text()
        (install,) = [line for line in text.splitlines() if "pip install" in line]
        assert "--require-hashes -r" in install and "requirements.txt" in install, install


def test_lock_tool_usage_error_names_the_file(tmp_path):
    p = subprocess.run(["python", str(ROOT / "functions" / "lock.py"), str(tmp_path)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "requirements.in: no such file" in p.stderr and "Traceback" not in p.stderr


# ---- Dockerfiles ---------------------------------------------------------------------------------------

def test_every_dockerfile_pins_its_base_images_by_digest():
    files = supply_chain.dockerfiles()
    assert {f.relative_to(ROOT).as_posix() for f in files} >= {"loadtest/Dockerfile", "migrations/Dockerfile"}
    for f in files:
        assert supply_chain.dockerfile_problems(f.read_text(), str(f)) == []


@pytest.mark.parametrize("line, refused", [
    ("FROM python:3.11-slim", True),
    ("FROM python:latest", True),
    ("FROM --platform=linux/amd64 python:3.11-slim AS build", True),
    ("FROM python@sha256:" + "a" * 63, True),
    ("FROM python:3.11-slim@sha256:" + "a" * 64, False),
    ("FROM --platform=linux/amd64 python@sha256:" + "b" * 64 + " AS build", False),
])
def test_an_unpinned_from_line_is_refused(line, refused):
    found = supply_chain.dockerfile_problems(f"{line}\nRUN true\n", "x/Dockerfile")
    assert bool(found) == refused, found
    if refused:
        assert found[0].startswith("x/Dockerfile:1: ") and "docker buildx imagetools inspect" in found[0]


def test_a_later_stage_may_start_from_an_earlier_one():
    text = f"FROM python@sha256:{'c' * 64} AS build\nRUN true\nFROM build\nFROM scratch\n"
    assert supply_chain.dockerfile_problems(text) == ["Dockerfile:4: base image 'scratch' is not pinned by digest: use "
                                                      "scratch@sha256:<64 hex>, " + supply_chain.HOW_TO_PIN]


def test_dockerfile_placeholders_are_listed_for_the_docs():
    assert supply_chain.dockerfile_placeholders() == ["loadtest/Dockerfile:5", "migrations/Dockerfile:6"]


# ---- placeholder digests: the offline plan warns, a real preview/up refuses -------------------------------

ZERO = "@" + supply_chain.PLACEHOLDER_DIGEST


def test_the_offline_plan_warns_and_lists_what_to_supply():
    plan = plan_of("prod")
    (warning,) = [w for w in plan["warnings"] if "placeholder digest" in w]
    assert "netra:observability.grafana.image: docker.io/grafana/grafana-oss:12.1.1" + ZERO in warning
    assert "netra:observability.prometheus.sidecarImage: " in warning and "docker buildx imagetools inspect" in warning


@pytest.mark.parametrize("stack, key, image", [
    ("prod", None, None),  # the stack file's own placeholders
    ("staging", "netra:services.backend.image", "us-central1-docker.pkg.dev/netra-staging/netra/backend" + ZERO),
])
def test_a_real_preview_or_up_refuses_placeholders_before_registering_anything(monkeypatch, stack, key, image):
    monkeypatch.setattr(program, "under_offline_plan", lambda: False)  # as under `pulumi preview` / `pulumi up`
    stack_file = read_stack(stack, overrides={key: image} if key else {})
    registered = []
    with pytest.raises(Exception) as e:
        engine.run_program(program.main, stack_file.project, stack, stack_file.config, stack_file.secret_keys,
                           on_resource=registered.append)
    text = str(e.value)
    assert f"stack {stack} pins" in text and "placeholder digest" in text and registered == []
    if key:
        assert f"{key}: {image}" in text
    else:
        assert "netra:observability.grafana.image" in text and "netra:observability.prometheus.sidecarImage" in text


def test_no_placeholder_no_refusal():
    assert supply_chain.placeholder_images({"netra:x": '{"image": "a/b@sha256:' + "1" * 64 + '"}'}) == []
    assert supply_chain.placeholder_images({"netra:x": '{"i": ["a/b@sha256:' + "0" * 64 + '"]}'}) == [
        ("netra:x.i[0]", "a/b@sha256:" + "0" * 64)]


# ---- ClickHouse VMs: a specific image, pinned packages, pinned key fingerprints ----------------------------

def test_clickhouse_boots_a_specific_image_never_a_family():
    cfg = stack_config("prod")
    cfg["netra:platform"]["clickhouse"]["image"] = "projects/debian-cloud/global/images/family/debian-12"
    problems = config_problems(cfg)
    assert "a family boots whatever image it points to" in problems["netra:platform.clickhouse.image"]
    plan = plan_of("prod")
    images = {d["sourceImage"] for r in plan["resources"] if r["type"] == "gcp:compute/instanceTemplate:InstanceTemplate"
              for d in r["inputs"]["disks"] if d.get("boot")}
    assert images == {"projects/debian-cloud/global/images/debian-12-bookworm-v20251209"}


def _scripts():
    ids = {k: f"prod-{k}" for k in (*render.NODE_SECRETS, *render.TLS_SECRETS)}
    return [render.startup_script("clickhouse", "25.8.29.51", ids, "netra-production", ("02:30", 7)),
            render.startup_script("keeper", "25.8.29.51", ids, "netra-production")]


def test_boot_scripts_run_no_downloaded_script_and_install_only_pinned_packages():
    for script in _scripts():
        assert "add-google-cloud-ops-agent-repo" not in script and not re.search(r"\|\s*(ba)?sh\b", script)
        assert not re.search(r"\bbash\s+/tmp/", script)
        third_party = re.findall(r"apt-get install -y -qq --allow-downgrades (.+)", script)
        assert third_party and all(re.fullmatch(r"[a-z0-9-]+=\S+", p) for line in third_party for p in line.split())
        assert "google-cloud-ops-agent=" + render.OPS_AGENT_VERSION in script
        # every third-party repository is signed-by a keyring built from pinned fingerprints only
        for repo in re.findall(r'echo "deb \[signed-by=(\S+)\] (\S+)', script):
            assert re.search(rf"keyring \S+ {re.escape(repo[0])} [0-9A-F]{{40}}", script), repo
        assert f"clickhouse-keyring.gpg {render.CLICKHOUSE_KEY_FINGERPRINT}" in script


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two real OpenPGP keys (ed25519, no passphrase) made locally: (key file URL, fingerprints)."""
    home = tmp_path_factory.mktemp("gnupg")
    fprs = []
    for who in ("repo", "attacker"):
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "", "--quick-gen-key",
                        f"{who} <{who}@example.test>", "ed25519", "sign", "never"], check=True, capture_output=True, timeout=60)
        out = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-keys", f"{who}@example.test"],
                             check=True, capture_output=True, text=True).stdout
        fprs.append(re.search(r"^fpr:::::::::([0-9A-F]{40}):", out, re.M)[1])
    files = {}
    for who, fpr in zip(("repo", "attacker"), fprs):
        f = home / f"{who}.asc"
        f.write_bytes(subprocess.run(["gpg", "--homedir", str(home), "--batch", "--armor", "--export", fpr],
                                     check=True, capture_output=True).stdout)
        files[who] = f
    return files, dict(zip(("repo", "attacker"), fprs))


def run_keyring(url: str, out: Path, *fprs: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f"""\
        set -euo pipefail
        {render.KEYRING_FN}
        keyring {url} {out} {' '.join(fprs)}
        """)
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)


def fingerprints_in(keyring: Path) -> set[str]:
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--show-keys", str(keyring)], capture_output=True, text=True,
                         check=True).stdout
    return set(re.findall(r"^fpr:::::::::([0-9A-F]{40}):", out, re.M))


def test_the_keyring_keeps_only_the_pinned_key(keys, tmp_path):
    files, fpr = keys
    both = tmp_path / "both.asc"  # a key file carrying an extra key: only the pinned one is trusted
    both.write_bytes(files["repo"].read_bytes() + files["attacker"].read_bytes())
    out = tmp_path / "repo.gpg"
    p = run_keyring(f"file://{both}", out, fpr["repo"])
    assert p.returncode == 0, p.stderr
    assert fingerprints_in(out) == {fpr["repo"]}


def test_a_substituted_key_file_stops_the_boot(keys, tmp_path):
    files, fpr = keys
    out = tmp_path / "repo.gpg"
    p = run_keyring(f"file://{files['attacker']}", out, fpr["repo"])
    assert p.returncode == 1 and not out.exists()
    assert f"holds none of the pinned keys ({fpr['repo']}): refusing its packages" in p.stderr
