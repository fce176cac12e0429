"""`python -m infra preflight --stack S`: what a real `pulumi up` of the stack needs that its config does not
have yet, before anything is created.

Checked from the stack file alone: the stack is initialized with a secrets provider, images are pinned by
real digests (no all-zero placeholders; in prod no bare tags), every `secure:` value can be decrypted by
this stack. Checked through Google's APIs when Application Default Credentials exist (google-auth): the
project exists and its number, each `stableRevision` exists in Cloud Run, the APIs a first `up` needs
before it can enable the rest are on, and the caller holds the deploy roles (testIamPermissions with one
permission per role of bootstrap/deploy-roles.json). Without credentials those are reported as not
checked, with what to run. Exit 0 nothing missing, 1 something missing, 2 usage or invalid config,
4 an API answered with an error.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

EXIT_OK, EXIT_MISSING, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 4
OK, MISSING, UNCHECKED, ERROR = "ok", "missing", "not checked", "error"
ZERO_DIGEST = re.compile(r"@sha256:0{64}$")
# `secure:` values the repository ships: v1:<salt>:<base64 of this text> (no stack can decrypt them)
SHIPPED_PLACEHOLDER = b"do-not-decrypt-offline-placeholder"
# A first `up` enables every other API itself (gcp.projects.Service); these must be on before it can.
PREREQUISITE_APIS = ("cloudresourcemanager.googleapis.com", "serviceusage.googleapis.com")
NO_CREDENTIALS = "no Google credentials; run: gcloud auth application-default login"
# One base URL for every Google API (tests, emulators); empty = the real endpoints.
ENDPOINT_ENV = "NETRA_GOOGLE_API_ENDPOINT"


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # ok | missing | not checked | error
    what: str
    fix: str = ""


@dataclass(frozen=True)
class Endpoints:
    resourcemanager: str = "https://cloudresourcemanager.googleapis.com"
    run: str = "https://run.googleapis.com"
    serviceusage: str = "https://serviceusage.googleapis.com"

    @classmethod
    def from_env(cls) -> "Endpoints":
        base = os.environ.get(ENDPOINT_ENV, "").rstrip("/")
        return cls(base, base, base) if base else cls()


class ApiError(Exception):
    pass


class Cloud:
    """The four reads preflight makes, through an authorized `requests` session."""

    def __init__(self, session: Any, endpoints: Endpoints = Endpoints()):
        self.session, self.endpoints = session, endpoints

    def _call(self, method: str, url: str, **kw) -> dict | None:
        try:
            r = self.session.request(method, url, timeout=20, **kw)
        except Exception as e:  # network, TLS, auth refresh
            raise ApiError(f"{method} {url}: {type(e).__name__}: {e}") from None
        if r.status_code in (403, 404):
            return None
        if r.status_code >= 300:
            raise ApiError(f"{method} {url}: HTTP {r.status_code}: {r.text[:200]}")
        return r.json()

    def project(self, project: str) -> dict | None:
        return self._call("GET", f"{self.endpoints.resourcemanager}/v1/projects/{project}")

    def revision_exists(self, project: str, region: str, service: str, revision: str) -> bool:
        url = f"{self.endpoints.run}/v2/projects/{project}/locations/{region}/services/{service}/revisions/{revision}"
        return self._call("GET", url) is not None

    def enabled_apis(self, project: str) -> set[str]:
        found, token = set(), ""
        while True:
            page = self._call("GET", f"{self.endpoints.serviceusage}/v1/projects/{project}/services",
                              params={"filter": "state:ENABLED", "pageSize": 200, **({"pageToken": token} if token else {})})
            if page is None:
                raise ApiError(f"cannot list the enabled APIs of {project} (403/404)")
            found |= {s["config"]["name"] for s in page.get("services", [])}
            token = page.get("nextPageToken", "")
            if not token:
                return found

    def held_permissions(self, project: str, permissions: list[str]) -> set[str]:
        answer = self._call("POST", f"{self.endpoints.resourcemanager}/v1/projects/{project}:testIamPermissions",
                            json={"permissions": permissions})
        return set((answer or {}).get("permissions", []))


def default_cloud() -> tuple[Cloud | None, str]:
    """A Cloud on Application Default Credentials, or (None, why not)."""
    try:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession
    except ImportError:
        return None, "google-auth is not installed (pip install -r requirements-dev.txt)"
    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except google.auth.exceptions.DefaultCredentialsError:
        return None, NO_CREDENTIALS
    return Cloud(AuthorizedSession(credentials), Endpoints.from_env()), ""


# ---------------------------------------------------------------- the checks

def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def _is_image_key(path: str) -> bool:
    last = path.rsplit(".", 1)[-1]
    return last == "image" or last.endswith("Image")


def _shipped_placeholder(ciphertext: str) -> bool:
    try:
        return base64.b64decode(ciphertext.rsplit(":", 1)[-1], validate=True) == SHIPPED_PLACEHOLDER
    except (binascii.Error, ValueError):
        return False


def _secure_paths(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if set(node) == {"secure"}:
            yield path, str(node["secure"])
            return
        for k, v in node.items():
            yield from _secure_paths(v, f"{path}.{k}" if path else str(k))


def check_stack_file(stack: str, doc: dict, cfg) -> list[Finding]:
    out = []
    initialized = bool(doc.get("secretsprovider") or doc.get("encryptionsalt"))
    out.append(Finding("stack", OK if initialized else MISSING,
                       f"Pulumi.{stack}.yaml " + ("has a secrets provider" if initialized else
                                                  "has no secretsprovider/encryptionsalt: the stack is not initialized"),
                       "" if initialized else f"pulumi stack init {stack} --secrets-provider gcpkms://projects/"
                                               f"{cfg.project}/locations/{cfg.region}/keyRings/netra-pulumi/cryptoKeys/"
                                               "pulumi-secrets  (the bootstrap's secretsProvider output)"))
    raw = doc.get("config") or {}
    images = [(k, v) for k, v in _strings(raw, "") if _is_image_key(k)]
    for key, value in images:
        if ZERO_DIGEST.search(value):
            out.append(Finding("images", MISSING, f"{key} is an all-zero placeholder digest ({value.split('@')[0]})",
                               f"pulumi config set --path '{key}' '{value.split('@')[0]}@sha256:<the real digest>'"))
        elif cfg.is_prod and "@sha256:" not in value:
            out.append(Finding("images", MISSING, f"{key} is not pinned by digest ({value}); prod requires one",
                               f"pulumi config set --path '{key}' '{value}@sha256:<digest>'"))
    if not any(f.check == "images" for f in out):
        out.append(Finding("images", OK, f"{len(images)} image references, none a placeholder"))
    secrets = list(_secure_paths(raw, ""))
    for key, ciphertext in secrets:
        if not initialized or _shipped_placeholder(ciphertext):
            why = "the repository's placeholder" if _shipped_placeholder(ciphertext) else "encrypted for another stack"
            out.append(Finding("secrets", MISSING, f"{key}: {why}; no key of this stack decrypts it",
                               f"pulumi config set --secret --path '{key}' < value-file"))
        else:
            out.append(Finding("secrets", OK, f"{key} is set (encrypted)"))
    return out


def check_cloud(cfg, cloud: Cloud | None, why_not: str, apis: list[str], env: str) -> list[Finding]:
    from infra.bootstrap.roles import BILLING_ROLES, ROLE_PERMISSION, committed_roles
    from infra.config.services import service_name

    stables = [(k, s.stable_revision) for k, s in cfg.services.items() if s.stable_revision]
    if cloud is None:
        out = [Finding("project", UNCHECKED, f"{cfg.project}: exists, its number ({why_not})",
                       f"gcloud projects describe {cfg.project}")]
        out += [Finding("stable revisions", UNCHECKED, f"netra:services.{k}.stableRevision {rev} ({why_not})",
                        f"on a new project: pulumi config rm --path 'netra:services.{k}.stableRevision' (first deploy)")
                for k, rev in stables]
        out.append(Finding("APIs", UNCHECKED, f"{', '.join(PREREQUISITE_APIS)} enabled ({why_not}); the stack enables "
                           f"{len(apis)} more itself", f"gcloud services enable {' '.join(PREREQUISITE_APIS)} "
                           f"--project {cfg.project}"))
        out.append(Finding("permissions", UNCHECKED, f"the caller holds the deploy roles ({why_not})",
                           "python -m infra bootstrap --stack <yours> lists them"))
        return out
    out = []
    project = cloud.project(cfg.project)
    if project is None:
        return [Finding("project", MISSING, f"{cfg.project} does not exist or you cannot see it",
                        f"gcloud projects create {cfg.project}, or set gcp:project to yours")]
    out.append(Finding("project", OK, f"{cfg.project} exists, number {project.get('projectNumber', '?')}"))
    for key, rev in stables:
        exists = cloud.revision_exists(cfg.project, cfg.region, service_name(key, env), rev)
        out.append(Finding("stable revisions", OK if exists else MISSING,
                           f"netra:services.{key}.stableRevision {rev}" + (" exists" if exists else " does not exist"),
                           "" if exists else f"pulumi config rm --path 'netra:services.{key}.stableRevision' "
                                             "(first deploy: the candidate goes 0 -> 100 % after verification)"))
    enabled = cloud.enabled_apis(cfg.project)
    off = [a for a in PREREQUISITE_APIS if a not in enabled]
    out.append(Finding("APIs", MISSING if off else OK,
                       f"not enabled: {', '.join(off)}" if off else
                       f"{', '.join(PREREQUISITE_APIS)} enabled; {len(set(apis) - enabled)} more enabled by the first up",
                       f"gcloud services enable {' '.join(off)} --project {cfg.project}" if off else ""))
    wanted = {ROLE_PERMISSION[r]: r for r in committed_roles() if r not in BILLING_ROLES}
    held = cloud.held_permissions(cfg.project, sorted(wanted))
    lacking = sorted(wanted[p] for p in wanted if p not in held)
    out.append(Finding("permissions", MISSING if lacking else OK,
                       f"you lack {len(lacking)} deploy role(s): {', '.join(lacking)}" if lacking else
                       f"you hold a permission of each of the {len(wanted)} deploy roles",
                       "run `up` as the bootstrap's deploy service account, or grant these roles" if lacking else ""))
    return out


def preflight(stack: str, cloud: Cloud | None, why_not: str = NO_CREDENTIALS, root: Path | None = None) -> list[Finding]:
    """Every finding for `stack`. Raises StackFileError / ConfigError (usage), ApiError (an API failed)."""
    from infra.config import load_stack_config
    from infra.plan import PROJECT_ROOT, run_stack
    from infra.plan.stackfile import read_stack

    root = root or PROJECT_ROOT
    stack_file = read_stack(stack, root)
    cfg = load_stack_config(stack_file.config, stack, stack_file.origin_of, stack_file.secret_paths)
    doc = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text()) or {}
    apis = sorted({r.inputs.get("service") for r in run_stack(stack, root).resources
                   if r.type == "gcp:projects/service:Service"} - {None})
    return check_stack_file(stack, doc, cfg) + check_cloud(cfg, cloud, why_not, apis, cfg.environment)


# ---------------------------------------------------------------- CLI

def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("preflight", help="what a real `pulumi up` of a stack still needs (config, project, "
                                                 "revisions, APIs, your permissions)",
                              description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.add_argument("--stack", required=True, help="stack name: reads Pulumi.STACK.yaml")
    p.add_argument("--offline", action="store_true", help="do not call Google's APIs even when credentials exist")
    p.add_argument("--json", action="store_true", help="print one JSON object: findings and counts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from infra.config import ConfigError
    from infra.plan import StackFileError

    cloud, why_not = (None, "--offline") if args.offline else default_cloud()
    try:
        findings = preflight(args.stack, cloud, why_not)
    except StackFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as e:
        print(f"error: invalid config for stack {args.stack!r}; fix it first (python -m infra plan --stack "
              f"{args.stack}):\n" + "".join(f"  {p}\n" for p in e.problems), file=sys.stderr, end="")
        return EXIT_USAGE
    except ApiError as e:
        print(f"error: a Google API call failed: {e}", file=sys.stderr)
        return EXIT_ERROR
    counts = {s: sum(f.status == s for f in findings) for s in (OK, MISSING, UNCHECKED)}
    if args.json:
        print(json.dumps({"stack": args.stack, "findings": [asdict(f) for f in findings], "counts": counts}, indent=2))
    else:
        print(f"Preflight of stack {args.stack}: what a real `pulumi up` needs")
        for f in findings:
            print(f"  {f.status.upper():12} {f.check:17} {f.what}")
            if f.fix and f.status != OK:
                print(f"  {'':12} {'':17} -> {f.fix}")
        print(f"{counts[MISSING]} missing, {counts[UNCHECKED]} not checked, {counts[OK]} ok")
    return EXIT_MISSING if counts[MISSING] else EXIT_OK
