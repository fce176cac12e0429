"""Cloud Run v2 services: what Checkov, Trivy and CIS do not cover, from the seeds and the release design."""
from __future__ import annotations

import math
import re
from collections import Counter

from pulumi_policy import Severity

from . import _wire
from ._util import get, items, of_type, resource_policy, stack_policy

SERVICE = "gcp:cloudrunv2/service:Service"
REVISION = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
PREVIOUS = "previous"  # the traffic tag of the revision a bake window keeps one step away (0 %)
LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
DEFAULT_LADDER = [0, 10, 50, 100]
# Seed 001's gated canary stages; a copy of infra.config.stack.PROD_REQUIRED_STAGES (the pack cannot
# import infra; tests pin the two equal). Staging relaxes them in config.staging.json.
PROD_REQUIRED_STAGES = [10, 50]
DEFAULT_LABELS = ["env", "service", "cost-center", "managed-by"]
RESTRICTED_INGRESS = ["INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"]
DEFAULT_ACCOUNT = re.compile(r"^(\d+-compute@developer\.gserviceaccount\.com|[^@]+@appspot\.gserviceaccount\.com)$")

# An env var NAME that says "credential": the last word(s) name a secret. TOKEN_OPTIMIZATION_ENABLED is
# fine (the word is not last); GITHUB_TOKEN, DB_PASSWORD, OPENAI_API_KEY are not.
SECRET_NAME = re.compile(
    r"(^|_)(PASSWORD|PASSWD|PWD|SECRET|SECRET_KEY|CLIENT_SECRET|PRIVATE_KEY|API_?KEY|ACCESS_KEY|"
    r"AUTH_TOKEN|ACCESS_TOKEN|REFRESH_TOKEN|BEARER_TOKEN|TOKEN|CREDENTIALS?|DSN|CONNECTION_STRING|DATABASE_URL)$",
    re.IGNORECASE)
# A VALUE that looks like a credential, whatever its name.
SECRET_VALUES = [
    ("an OpenAI/Anthropic-style API key", re.compile(r"\bsk-(ant-)?[A-Za-z0-9_\-]{16,}")),
    ("a PEM private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}")),
    ("a JWT", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")),
    ("a URL with an embedded password", re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@")),
]


def shannon_bits(s: str) -> float:
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values())


def high_entropy(value: str) -> bool:
    """A long random-looking token: >= 24 chars, no spaces, >= 3 character classes, >= 4.2 bits/char."""
    if len(value) < 24 or any(ch.isspace() for ch in value):
        return False
    classes = sum([any(c.islower() for c in value), any(c.isupper() for c in value),
                   any(c.isdigit() for c in value), any(not c.isalnum() for c in value)])
    return classes >= 3 and shannon_bits(value) >= 4.2


def secret_looking(name: str, value: str) -> str | None:
    if SECRET_NAME.search(name):
        return "its name says credential"
    for what, pattern in SECRET_VALUES:
        if pattern.search(value):
            return f"its value looks like {what}"
    if high_entropy(value):
        return "its value is a long high-entropy string"
    return None


def containers(props):
    return items(props, "template.containers")


def _min_instances(props, config, args):
    minimum = int(config.get("minInstances", 2))
    got = get(props, "template.scaling.minInstanceCount", 0)
    if got < minimum:
        yield (f"{get(props, 'name', args.name)}: template.scaling.minInstanceCount is {got}; "
               f"production needs at least {minimum} (seed 001: 2-100 instances)")


def _image_digest(props, config, args):
    for i, c in enumerate(containers(props)):
        image = get(c, "image", "")
        if not DIGEST.search(image):
            yield f"template.containers[{i}].image {image!r} is not pinned by digest (@sha256:<64 hex>)"


def _plain_secret_env(props, config, args):
    secret = _wire.secret_paths(args) or frozenset()
    for i, c in enumerate(containers(props)):
        for j, env in enumerate(items(c, "envs")):
            name, value = get(env, "name", ""), get(env, "value")
            if value is None:  # valueSource (Secret Manager reference) or unset
                continue
            path = f"template.containers[{i}].envs[{j}].value"
            if path in secret:
                yield (f"env {name}: a Pulumi secret is passed as a plain env value, readable by anyone who can "
                       f"view the revision")
                continue
            why = secret_looking(name, str(value))
            if why:
                yield f"env {name} is a plain value but {why}"


def _ingress(props, config, args):
    allowed = list(config.get("allowed", RESTRICTED_INGRESS))
    ingress = get(props, "ingress", "INGRESS_TRAFFIC_ALL")
    if ingress not in allowed:
        yield f"ingress is {ingress}; allowed: {', '.join(allowed)}"


def _probes(props, config, args):
    for i, c in enumerate(containers(props)):
        for probe in ("startupProbe", "livenessProbe"):
            p = get(c, probe)
            if not p or not any(get(p, k) is not None for k in ("httpGet", "grpc", "tcpSocket")):
                yield f"template.containers[{i}] has no {probe} (httpGet, grpc or tcpSocket)"


def _traffic(props, config, args):
    ladder = [int(x) for x in config.get("stages", DEFAULT_LADDER)]
    traffics = items(props, "traffics")
    total = sum(int(get(t, "percent", 0)) for t in traffics)
    if traffics and total != 100:
        yield f"traffic percents sum to {total}, not 100"
    candidate = get(props, "template.revision")
    share = sum(int(get(t, "percent", 0)) for t in traffics
                if get(t, "type") == REVISION and get(t, "revision") == candidate)
    if traffics and share not in ladder:
        yield f"the candidate revision {candidate}'s share is {share} %, not on the ladder {ladder}"
    for i, t in enumerate(traffics):
        if get(t, "tag") == PREVIOUS and int(get(t, "percent", 0)) != 0:
            yield (f"traffics[{i}] gives the `previous` revision {get(t, 'revision')} {get(t, 'percent')} %: it is "
                   f"kept at 0 % during the bake; a rollback makes it the stableRevision instead")


def _ladder_stages(props, config, args):
    """The ladder the program climbs (the `netra.dev/stages` annotation it renders from netra:stages)
    keeps every required stage, so no config line skips the seed's gated 10 % and 50 % steps."""
    notes = get(props, "annotations", {}) or {}
    if ANNOTATION + "first-deploy" not in notes:
        return  # not a service of this program: it carries no release record
    required = [int(x) for x in config.get("requiredStages", PROD_REQUIRED_STAGES)]
    raw = notes.get(ANNOTATION + "stages")
    if not raw:
        yield f"annotation {ANNOTATION}stages is missing: the ladder cannot be checked for stages {required}"
        return
    ladder = [int(x) for x in str(raw).split(",") if x.strip().lstrip("-").isdigit()]
    missing = [s for s in required if s not in ladder]
    if missing:
        yield (f"the release ladder {ladder} (netra:stages) skips the required stages "
               f"{', '.join(map(str, missing))}: a candidate would reach 100 % without a gate at each of {required}")


def _revision_prefix(props, config, args):
    name = get(props, "name")
    if not name:
        yield "the service has no explicit name, so its revision names cannot be checked"
        return
    revision = get(props, "template.revision")
    if not revision:
        yield "template.revision is not set: the revision gets a random name and cannot be targeted by traffic"
    elif not revision.startswith(name + "-"):
        yield f"template.revision {revision!r} does not start with {name + '-'!r}"
    for i, t in enumerate(items(props, "traffics")):
        rev = get(t, "revision")
        if rev and not rev.startswith(name + "-"):
            yield f"traffics[{i}].revision {rev!r} does not start with {name + '-'!r}"


def _no_latest(props, config, args):
    traffics = items(props, "traffics")
    if not traffics:
        yield "no traffic block: Cloud Run sends 100 % to LATEST"
    for i, t in enumerate(traffics):
        if get(t, "type") == LATEST or (get(t, "type") is None and not get(t, "revision")):
            yield f"traffics[{i}] targets LATEST ({get(t, 'percent', 0)} %)"


def _labels(props, config, args):
    required = list(config.get("labels", DEFAULT_LABELS))
    labels = get(props, "labels", {}) or {}
    missing = [k for k in required if not labels.get(k)]
    if missing:
        yield f"labels missing: {', '.join(missing)}"


def _deletion_protection(props, config, args):
    if get(props, "deletionProtection") is not True:
        yield "deletionProtection is not set to true"


def _service_accounts(resources, config):
    services = of_type(resources, SERVICE)
    by_account: dict[str, list[str]] = {}
    for r in services:
        sa = get(r.props, "template.serviceAccount")
        name = get(r.props, "name", r.name)
        if not sa:
            yield f"{name}: template.serviceAccount is not set (the default compute account is used)", r.urn
        elif DEFAULT_ACCOUNT.match(sa):
            yield f"{name}: runs as the default account {sa}", r.urn
        else:
            by_account.setdefault(sa, []).append(name)
    for sa, names in by_account.items():
        if len(names) > 1:
            yield f"{sa} is shared by {', '.join(sorted(names))}; each service needs its own", None


ANNOTATION = "netra.dev/"


def _approved_share(r) -> tuple[str, int, str | None]:
    """(candidate, its stage, why it may not have it or None) of one service, from traffic + annotations."""
    props = r.props
    notes = get(props, "annotations", {}) or {}
    candidate = get(props, "template.revision", "")
    first = notes.get(ANNOTATION + "first-deploy")
    if first is None:
        return candidate, 0, None  # not a service of this program: no approval record to check
    all_traffic = items(props, "traffics")
    traffics = [t for t in all_traffic if get(t, "revision") == candidate]
    share = sum(int(get(t, "percent", 0)) for t in traffics)
    if first == "true":  # the only revision carries 100 %; the `stable` tag marks stage 100
        share = 100 if any(get(t, "tag") == "stable" for t in traffics) else 0
        ladder = [0, 100]
    elif share == 100 and all(get(t, "tag") == PREVIOUS and int(get(t, "percent", 0)) == 0
                              for t in all_traffic if get(t, "revision") != candidate):
        return candidate, share, None  # finalized: stableRevision is the candidate (and `previous` bakes at 0 %)
    else:
        ladder = [int(x) for x in str(notes.get(ANNOTATION + "stages", "0,10,50,100")).split(",") if x.strip()]
    if share == 0:
        return candidate, 0, None
    approved = notes.get(ANNOTATION + "approved-revision")
    if approved != candidate:
        return candidate, share, (f"has {share} % but no approval for this revision"
                                  + (f" (the approval names {approved})" if approved else ""))
    if notes.get(ANNOTATION + "approval-rejected") == "true":
        return candidate, share, f"has {share} % but was rejected (rolled back)"
    stage = int(notes.get(ANNOTATION + "approved-stage", "0"))
    allowed = next((s for s in ladder if s > stage), ladder[-1])
    if share > allowed:
        return candidate, share, f"has {share} % but is approved only at {stage} %: the next stage is {allowed} %"
    return candidate, share, None


def _traffic_approved(resources, config):
    for r in of_type(resources, SERVICE):
        candidate, share, why = _approved_share(r)
        if why:
            yield f"{get(r.props, 'name', r.name)}: candidate {candidate} {why}", r.urn


T = (SERVICE,)
POLICIES = [
    resource_policy(
        "cloudrun-prod-min-instances", "Production Cloud Run services keep at least 2 instances warm.",
        "Set netra:services.<svc>.minInstances to 2 or more in Pulumi.prod.yaml (seed 001: frontend/backend "
        "2-100, auth 2-50).", T, _min_instances,
        schema={"minInstances": {"type": "integer", "minimum": 1, "default": 2}}),
    resource_policy(
        "cloudrun-image-digest", "Cloud Run images are pinned by digest, so a revision runs exactly what was tested.",
        "Use `<registry>/<image>@sha256:<digest>` (e.g. from `gcloud artifacts docker images describe`), not a tag.",
        T, _image_digest, severity=Severity.HIGH),
    resource_policy(
        "cloudrun-no-plain-secret-env", "Cloud Run env values carry no credentials: secrets come from Secret Manager.",
        "Move the value to Secret Manager and reference it with netra:services.<svc>.secrets "
        "(env valueSource.secretKeyRef); never pass a Pulumi secret or a key as a plain env value.",
        T, _plain_secret_env, severity=Severity.CRITICAL),
    resource_policy(
        "cloudrun-ingress-restricted", "Cloud Run services accept traffic only through the load balancer or internally.",
        "Set ingress to INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER (behind the HTTPS load balancer) or "
        "INGRESS_TRAFFIC_INTERNAL_ONLY.", T, _ingress,
        schema={"allowed": {"type": "array", "items": {"type": "string"}, "default": RESTRICTED_INGRESS}}),
    resource_policy(
        "cloudrun-probes", "Every Cloud Run container has a startup and a liveness probe.",
        "Set netra:services.<svc>.healthCheckPath to an endpoint that answers 200 when the service is ready.",
        T, _probes, severity=Severity.MEDIUM),
    resource_policy(
        "cloudrun-traffic-ladder", "Traffic sums to 100 %, the candidate's share is a stage of the ladder, and a "
        "`previous` revision (bake window) has 0 %.",
        "Set netra:canaryPercent (or netra:services.<svc>.canaryPercent) to a stage: 0, 10, 50 or 100.",
        T, _traffic,
        schema={"stages": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 100},
                           "default": DEFAULT_LADDER}}),
    resource_policy(
        "cloudrun-prod-ladder-stages", "The release ladder keeps the seed's gated canary stages (10 % and 50 %).",
        "Set netra:stages to a ladder containing 10 and 50, e.g. [0, 10, 50, 100] (the default); the rollout "
        "gates each stage.", T, _ladder_stages, severity=Severity.CRITICAL,
        schema={"requiredStages": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 99},
                                   "default": PROD_REQUIRED_STAGES}}),
    resource_policy(
        "cloudrun-revision-name-prefix", "Revision names start with the service name, as the Cloud Run API requires.",
        "Name revisions `<service name>-<suffix>` (infra.release does) and fix stableRevision in the stack config.",
        T, _revision_prefix),
    resource_policy(
        "cloudrun-no-latest-traffic", "Traffic names revisions explicitly: no LATEST target.",
        "Route traffic with type TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION to the stable and candidate revisions.",
        T, _no_latest),
    resource_policy(
        "cloudrun-required-labels", "Cloud Run services carry the env, service, cost-center and managed-by labels.",
        "Add the missing labels (infra.components.service.labels_for sets them).", T, _labels,
        severity=Severity.LOW,
        schema={"labels": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_LABELS}}),
    resource_policy(
        "cloudrun-deletion-protection", "Production Cloud Run services have deletion protection on.",
        "Set deletionProtection: true (the program does for netra:environment prod).", T, _deletion_protection),
    stack_policy(
        "cloudrun-traffic-approved",
        "A candidate revision gets a share above 0 only at the stage above the one that exact revision was approved at.",
        "Climb one stage at a time with `python -m infra rollout`, or record an approval with `python -m infra approve` "
        "(netra:release.approvals.<svc>); a new template starts at 0 %.",
        _traffic_approved, severity=Severity.CRITICAL),
    stack_policy(
        "cloudrun-dedicated-service-account",
        "Each Cloud Run service runs as its own service account, never the default compute account.",
        "Create a gcp.serviceaccount.Account per service and set template.serviceAccount to its email.",
        _service_accounts),
]
