"""IAM the pack cannot miss: every IAM resource shape pulumi-gcp has, parsed into (role, member) grants.

Shapes (docs/iam.md): `*IamMember` (role, member), `*IamBinding` (role, members), `*IamPolicy` (policyData,
the JSON of a whole policy: bindings[].role/members); at organization, folder, project, billing-account,
service-account or single-resource level (the level comes from the type token's module).

Unknowns: in a first `pulumi preview`, a member such as `account.member` is not known yet. These policies read
the raw inputs (not pulumi_policy's proxy, which would skip the policy as "can't run during preview"): an
unknown role or member is a violation naming what could not be seen, unless the shape proves it safe (an
unknown member whose only property dependency is a service account of this stack is that account).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional

from pulumi_policy import Severity
from pulumi_policy import proxy as _proxy

from ._util import CIS_GCP, get, of_type, resource_policy, stack_policy

UNKNOWNS = frozenset({_proxy.UNKNOWN_STRING_VALUE, _proxy.UNKNOWN_ARRAY_VALUE, _proxy.UNKNOWN_OBJECT_VALUE,
                      _proxy.UNKNOWN_BOOLEAN_VALUE, _proxy.UNKNOWN_NUMBER_VALUE})
# Resource classes: ...IamMember / ...IAMBinding / ...IamPolicy (never the get... data sources: not resources)
IAM_CLASS = re.compile(r"^(?!get)\w*I[aA][mM](Member|Binding|Policy)$")
ACCOUNT = "gcp:serviceaccount/account:Account"
SECRET = "gcp:secretmanager/secret:Secret"
TOPIC = "gcp:pubsub/topic:Topic"
BUDGET = "gcp:billing/budget:Budget"
CUSTOM_ROLE_TYPES = ("gcp:projects/iAMCustomRole:IAMCustomRole", "gcp:organizations/iAMCustomRole:IAMCustomRole")
LEVELS = {"projects": "project", "folder": "folder", "organizations": "organization"}

PUBLIC = {"allusers", "allauthenticatedusers", "principalset://goog/public:all"}
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
IMPERSONATION_ROLES = {"roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountUser",
                       "roles/iam.workloadIdentityUser", "roles/iam.serviceAccountOpenIdTokenCreator",
                       "roles/iam.serviceAccountKeyAdmin"}
# Roles that change who may do what (IAM) or own the keys (KMS): never granted by this stack.
ADMIN_ROLE = re.compile(r"^roles/(iam|cloudkms|resourcemanager|orgpolicy|accesscontextmanager)\.\w*admin$", re.I)
ADMIN_ROLES_EXTRA = {"roles/iam.securityAdmin", "roles/iam.roleAdmin", "roles/iam.organizationRoleAdmin",
                     "roles/resourcemanager.projectIamAdmin", "roles/resourcemanager.folderIamAdmin",
                     "roles/resourcemanager.organizationAdmin", "roles/cloudkms.importer",
                     "roles/cloudkms.cryptoOperator"}
SECRET_ROLE = re.compile(r"^roles/secretmanager\.", re.I)
SECRET_METADATA_ROLES = {"roles/secretmanager.viewer"}
PUBLISH_ROLES = {"roles/pubsub.publisher", "roles/pubsub.editor", "roles/pubsub.admin"}
BILLING_PUBLISHER = "serviceAccount:billing-budget-alert@system.gserviceaccount.com"
# Permissions of a custom role that escalate (grant themselves more, act as another identity) or read secrets.
ESCALATION = re.compile(r"(\.setIamPolicy$|^iam\.serviceAccounts\.(actAs|getAccessToken|getOpenIdToken|implicitDelegation|"
                        r"signBlob|signJwt)$|^iam\.serviceAccountKeys\.create$|^iam\.roles\.(create|update)$|"
                        r"^secretmanager\.versions\.access$|^\*$)")


# ---------------------------------------------------------------- raw inputs, unknowns, grants

def raw(value: Any) -> Any:
    """pulumi_policy's unknown-checking proxy unwrapped into plain dicts/lists; unknowns stay sentinels."""
    target = getattr(value, "_DictProxy__target", None)
    if target is None:
        target = getattr(value, "_ListProxy__target", None)
    if target is not None:
        value = target
    if isinstance(value, dict):
        return {k: raw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [raw(v) for v in value]
    return value


def unknown(value: Any) -> bool:
    return isinstance(value, str) and value in UNKNOWNS


def is_iam(type_token: str) -> bool:
    return bool(IAM_CLASS.match(type_token.rsplit(":", 1)[-1]))


def level(type_token: str) -> str:
    """organization / folder / project / billing-account / service-account / resource."""
    module = type_token.split(":")[1].split("/")[0] if ":" in type_token else ""
    if module == "billing":
        return "billing-account"
    if module == "serviceaccount":
        return "service-account"
    return LEVELS.get(module, "resource")


@dataclass(frozen=True)
class Grant:
    role: Optional[str]  # None: unknown in this preview
    member: Optional[str]  # None: unknown in this preview
    where: str  # the input path it came from, for messages
    conditional: bool = False


def grants(type_token: str, props: dict) -> tuple[list[Grant], list[str]]:
    """(grants, problems): every (role, member) an IAM resource grants; problems say what could not be read."""
    kind = type_token.rsplit(":", 1)[-1].lower()
    found: list[Grant] = []
    problems: list[str] = []
    if kind.endswith("policy"):
        data = props.get("policyData")
        if unknown(data):
            return [], ["policyData is unknown in this preview: the policy's bindings cannot be checked"]
        try:
            doc = json.loads(data) if isinstance(data, str) else data
        except ValueError as e:
            return [], [f"policyData is not JSON ({e}): the policy's bindings cannot be checked"]
        if not isinstance(doc, dict):
            return [], ["policyData is not a policy object: the policy's bindings cannot be checked"]
        bindings = doc.get("bindings") or []
        if not isinstance(bindings, list):
            return [], ["policyData.bindings is not a list: the policy's bindings cannot be checked"]
        for i, b in enumerate(bindings):
            b = b if isinstance(b, dict) else {}
            members = b.get("members")
            if not isinstance(members, list):
                problems.append(f"policyData.bindings[{i}].members is not a list")
                members = []
            found += [Grant(_known(b.get("role")), _known(m), f"policyData.bindings[{i}]", bool(b.get("condition")))
                      for m in members]
        return found, problems
    role = _known(props.get("role"))
    conditional = bool(props.get("condition")) and not unknown(props.get("condition"))
    if kind.endswith("binding"):
        members = props.get("members")
        if unknown(members):
            return [Grant(role, None, "members", conditional)], []
        return [Grant(role, _known(m), f"members[{i}]", conditional) for i, m in enumerate(members or [])], []
    return [Grant(role, _known(props.get("member")), "member", conditional)], []


def _known(value: Any) -> Optional[str]:
    return None if value is None or unknown(value) else str(value)


def role_is(role: Optional[str], names: Iterable[str]) -> bool:
    return role is not None and role.lower() in {n.lower() for n in names}


def public(member: Optional[str]) -> bool:
    return member is not None and member.lower() in PUBLIC


def short_type(type_token: str) -> str:
    return type_token.rsplit(":", 1)[-1]


# ---------------------------------------------------------------- iam-role-deny-list (per resource)

def denied(role: str, lvl: str) -> Optional[str]:
    """Why `role` may not be granted at `lvl`, or None."""
    if role_is(role, BASIC_ROLES):
        return f"{role} is a basic role (thousands of permissions): grant the predefined role of what is needed"
    if ADMIN_ROLE.match(role) or role_is(role, ADMIN_ROLES_EXTRA):
        return f"{role} administers IAM or KMS: whoever holds it can grant themselves anything or own the keys"
    if lvl in ("project", "folder", "organization") and role.lower().endswith("admin"):
        return f"{role} is an admin role at {lvl} level: it covers every resource of the {lvl}; grant it on the resource"
    return None


def _deny_list(props, config, args):
    props = raw(args.props)
    lvl = level(args.resource_type)
    allowed = [(a.get("role", ""), a.get("member", "")) for a in config.get("allowedImpersonation", [])]
    extra = set(config.get("extraDeniedRoles", []))
    found, problems = grants(args.resource_type, props)
    yield from problems
    for g in found:
        where = f"{short_type(args.resource_type)} {args.name} ({g.where})"
        if g.role is None:
            yield f"{where}: the role is unknown in this preview, so it cannot be checked against the deny-list"
            continue
        why = denied(g.role, lvl) or (f"{g.role} is on this stack's extraDeniedRoles" if g.role in extra else None)
        if why:
            yield f"{where}: {g.member or 'a member unknown in this preview'} granted {why}"
        elif role_is(g.role, IMPERSONATION_ROLES):
            if g.member is None:
                yield (f"{where}: {g.role} lets its member act as a service account, and the member is unknown in "
                       f"this preview: it cannot be matched against allowedImpersonation")
            elif (g.role, g.member) not in allowed:
                yield (f"{where}: {g.member} granted {g.role}, which lets it act as (impersonate) a service account; "
                       f"not on the allowedImpersonation list")


# ---------------------------------------------------------------- stack helpers

def iam_resources(resources) -> Iterator[tuple[Any, dict, list[Grant], list[str]]]:
    for r in resources:
        if is_iam(r.resource_type):
            props = raw(r.props)
            found, problems = grants(r.resource_type, props)
            yield r, props, found, problems


def account_emails(resources) -> dict[str, str]:
    """URN -> email of each service account of the stack whose id and project are known."""
    out = {}
    for a in of_type(resources, ACCOUNT):
        props = raw(a.props)
        account_id, project = props.get("accountId"), props.get("project")
        if account_id and project and not unknown(account_id) and not unknown(project):
            out[a.urn] = f"{account_id}@{project}.iam.gserviceaccount.com"
    return out


# Resources whose computed output is a Google-managed service agent's email (Cloud SQL's
# serviceAccountEmailAddress): a member computed from one of them alone is that agent, never public.
SERVICE_AGENT_SOURCES = {"gcp:sql/databaseInstance:DatabaseInstance": "Cloud SQL service agent"}


def resolve_member(r, g: Grant, emails: dict[str, str]) -> Optional[str]:
    """The grant's member; an unknown `member` whose only property dependency is one of this stack's service
    accounts is `serviceAccount:<that account's email>` (what `account.member` evaluates to), one whose only
    dependency is a resource that computes a service agent's email is that agent."""
    if g.member is not None or g.where != "member":
        return g.member
    deps = list((getattr(r, "property_dependencies", None) or {}).get("member", []))
    if len(deps) == 1 and deps[0].urn in emails:
        return f"serviceAccount:{emails[deps[0].urn]}"
    if len(deps) == 1 and deps[0].resource_type in SERVICE_AGENT_SOURCES:
        return f"serviceAccount:<{SERVICE_AGENT_SOURCES[deps[0].resource_type]} of {deps[0].name}>"
    return None


def workload_account(r, account: Any, prop: str, emails: dict[str, str]) -> Any:
    """A workload's service account email; while unknown (preview), the one account of this stack that the
    engine names among the sources of `prop` (the property holding the account)."""
    if not unknown(account):
        return account
    accounts = {d.urn for d in (getattr(r, "property_dependencies", None) or {}).get(prop, []) if d.urn in emails}
    return emails[accounts.pop()] if len(accounts) == 1 else account


def last_segment(value: Optional[str], collection: str) -> Optional[str]:
    """`projects/p/secrets/x` -> x (also plain x)."""
    if value is None:
        return None
    return value.rsplit(f"{collection}/", 1)[-1] if f"{collection}/" in value else value


# ---------------------------------------------------------------- iam-no-public-members

INTERNAL_INGRESS = {"INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", "INGRESS_TRAFFIC_INTERNAL_ONLY"}
RUN_SERVICE = "gcp:cloudrunv2/service:Service"
RUN_INVOKER_TYPES = {"gcp:cloudrunv2/serviceIamMember:ServiceIamMember", "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding",
                     "gcp:cloudrunv2/serviceIamPolicy:ServiceIamPolicy"}
BUCKET_IAM_TYPES = {"gcp:storage/bucketIAMMember:BucketIAMMember", "gcp:storage/bucketIAMBinding:BucketIAMBinding",
                    "gcp:storage/bucketIAMPolicy:BucketIAMPolicy"}


IAP_AGENT = re.compile(r"^serviceAccount:service-\d+@gcp-sa-iap\.iam\.gserviceaccount\.com$")


def iap_fronted(resources) -> set[str]:
    """Cloud Run service names served by a load-balancer backend service with IAP on (through a serverless NEG)."""
    negs = {n.urn: get(raw(n.props), "cloudRun.service")
            for n in of_type(resources, "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup")}
    out = set()
    for b in of_type(resources, "gcp:compute/backendService:BackendService"):
        if get(raw(b.props), "iap.enabled") is True:
            out |= {negs[d.urn] for d in (b.dependencies or []) if d.urn in negs and negs[d.urn]}
    return out


def _public_members(resources, config):
    label = config.get("publicByDesignLabel", "public-by-design")
    bucket_roles = set(config.get("publicBucketRoles", ["roles/storage.legacyObjectReader"]))
    public_buckets = {get(raw(b.props), "name") for b in of_type(resources, "gcp:storage/bucket:Bucket")
                      if (get(raw(b.props), "labels", {}) or {}).get(label) == "true"}
    internal = {get(raw(s.props), "name") for s in of_type(resources, RUN_SERVICE)
                if get(raw(s.props), "ingress") in INTERNAL_INGRESS}
    behind_iap = iap_fronted(resources)
    emails = account_emails(resources)
    for r, props, found, problems in iam_resources(resources):
        for p in problems:
            yield f"{short_type(r.resource_type)} {r.name}: {p}, so it may grant allUsers", r.urn
        for g in found:
            member = resolve_member(r, g, emails)
            if member is None:
                yield (f"{short_type(r.resource_type)} {r.name} ({g.where}): the member is unknown in this preview, so it "
                       f"may be allUsers; use a service account of this stack or a literal member"), r.urn
                continue
            if (r.resource_type in RUN_INVOKER_TYPES and props.get("name") in behind_iap and g.role == "roles/run.invoker"
                    and not public(member) and not IAP_AGENT.match(member)):
                yield (f"{member} may invoke Cloud Run service {props.get('name')}, which is behind IAP: it would reach "
                       f"the run.app URL past IAP; only IAP's service agent invokes it"), r.urn
                continue
            if not public(member):
                continue
            role = g.role or "an unknown role"
            if r.resource_type in BUCKET_IAM_TYPES:
                bucket = props.get("bucket")
                if bucket not in public_buckets:
                    yield f"{member} granted {role} on bucket {bucket}, which is not labelled {label}=true", r.urn
                elif g.role not in bucket_roles:
                    yield (f"{member} granted {role} on public bucket {bucket}; only {', '.join(sorted(bucket_roles))} "
                           f"(read an object by name, no listing)"), r.urn
            elif r.resource_type in RUN_INVOKER_TYPES and g.role == "roles/run.invoker":
                name = props.get("name")
                if name in behind_iap:
                    yield (f"{member} may invoke Cloud Run service {name}, which is behind IAP: its run.app URL must "
                           f"admit only the IAP service agent (service-<number>@gcp-sa-iap.iam.gserviceaccount.com)"), r.urn
                elif name not in internal:
                    yield (f"{member} may invoke Cloud Run service {name}, whose ingress is not internal / "
                           f"load balancer only: its run.app URL is open to the internet"), r.urn
            else:
                yield f"{member} granted {role} by {short_type(r.resource_type)} {r.name}: never public", r.urn


# ---------------------------------------------------------------- iam-secret-access

SECRET_REF = re.compile(r"[A-Za-z0-9_-]+")


def declared_secrets(resources, secret_ids: set[str]) -> dict[str, set[str]]:
    """Service account email -> secret ids its workloads declare: Cloud Run services and jobs (env secretKeyRef,
    secret volumes), Cloud Functions (secret env/volumes, and env vars named *_SECRET that hold a secret id the
    function reads through the API), VMs (secret ids their metadata scripts name)."""
    out: dict[str, set[str]] = {}
    emails = account_emails(resources)

    def add(account, secrets):
        if account and not unknown(account):
            out.setdefault(account, set()).update(s for s in (last_segment(x, "secrets") for x in secrets) if s)

    for r in resources:
        props = raw(r.props)
        t = r.resource_type
        if t in (RUN_SERVICE, "gcp:cloudrunv2/job:Job"):
            tpl = props.get("template") or {}
            if t.endswith(":Job"):
                tpl = tpl.get("template") or {}
            refs = [get(e, "valueSource.secretKeyRef.secret") for c in tpl.get("containers") or [] for e in c.get("envs") or []]
            refs += [get(v, "secret.secret") for v in tpl.get("volumes") or []]
            add(workload_account(r, tpl.get("serviceAccount"), "template", emails), [x for x in refs if isinstance(x, str)])
        elif t == "gcp:cloudfunctionsv2/function:Function":
            sc = props.get("serviceConfig") or {}
            refs = [e.get("secret") for e in sc.get("secretEnvironmentVariables") or []]
            refs += [v.get("secret") for v in sc.get("secretVolumes") or []]
            refs += [v for k, v in (sc.get("environmentVariables") or {}).items() if k.endswith("_SECRET")]
            add(workload_account(r, sc.get("serviceAccountEmail"), "serviceConfig", emails),
                [x for x in refs if isinstance(x, str)])
        elif t in ("gcp:compute/instanceTemplate:InstanceTemplate", "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate",
                   "gcp:compute/instance:Instance"):
            text = " ".join(str(v) for v in (props.get("metadata") or {}).values())
            words = set(SECRET_REF.findall(text))
            add(workload_account(r, get(props, "serviceAccount.email"), "serviceAccount", emails),
                [s for s in secret_ids if s in words])
    return out


def _secret_access(resources, config):
    secret_ids = {raw(s.props).get("secretId") for s in of_type(resources, SECRET)} - {None}
    declared = declared_secrets(resources, secret_ids)
    extra = {(e.get("secret"), e.get("member")) for e in config.get("extraAccess", [])}
    emails = account_emails(resources)
    for r, props, found, _ in iam_resources(resources):
        lvl = level(r.resource_type)
        on_secret = r.resource_type.startswith("gcp:secretmanager/")
        for g in found:
            if not on_secret:
                if lvl != "resource" and g.role and SECRET_ROLE.match(g.role) and not role_is(g.role, SECRET_METADATA_ROLES):
                    yield (f"{g.member or 'a member unknown in this preview'} granted {g.role} at {lvl} level by "
                           f"{short_type(r.resource_type)} {r.name}: that reaches every secret of the {lvl}; grant "
                           f"it on the secrets the workload declares"), r.urn
                continue
            secret = last_segment(_known(props.get("secretId")), "secrets")
            member = resolve_member(r, g, emails)
            what = f"{g.role or 'an unknown role'} on secret {secret or '(unknown)'}"
            if secret is None or member is None or g.role is None:
                yield (f"{short_type(r.resource_type)} {r.name}: {what} to {member or 'an unknown member'}: the "
                       f"{'secret' if secret is None else 'member' if member is None else 'role'} is unknown in this "
                       f"preview, so it cannot be matched to a workload that declares the secret"), r.urn
                continue
            if (secret, member) in extra:
                continue
            account = member.split(":", 1)[1] if member.startswith("serviceAccount:") else None
            if account is None or secret not in declared.get(account, set()):
                yield (f"{member} granted {what}, but no workload running as {account or member} declares that "
                       f"secret (Cloud Run env/volume, function secret or *_SECRET env, VM metadata script)"), r.urn


# ---------------------------------------------------------------- iam-budget-topic-publishers

def budget_topics(resources) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Topic name -> topic resource for every topic a billing budget notifies; and problems."""
    topics = {raw(t.props).get("name"): t for t in of_type(resources, TOPIC)}
    out, problems = {}, []
    for b in of_type(resources, BUDGET):
        ref = raw(b.props).get("allUpdatesRule", {}) or {}
        ref = ref.get("pubsubTopic")
        if ref is None:
            continue
        name = last_segment(_known(ref), "topics")
        if name in topics:
            out[name] = topics[name]
            continue
        deps = [t for t in of_type(b.dependencies or [], TOPIC)]
        if deps:
            out.update({raw(t.props).get("name"): t for t in deps})
        else:
            problems.append((f"budget {raw(b.props).get('displayName')}: notifies topic {ref if name else '(unknown)'}, "
                             f"which is not a topic of this stack: its publishers cannot be checked", b.urn))
    return out, problems


def _budget_publishers(resources, config):
    allowed = set(config.get("publishers", [BILLING_PUBLISHER]))
    topics, problems = budget_topics(resources)
    yield from problems
    if not topics:
        return
    emails = account_emails(resources)
    for r, props, found, _ in iam_resources(resources):
        lvl = level(r.resource_type)
        if r.resource_type.startswith("gcp:pubsub/topicIAM"):
            topic = last_segment(_known(props.get("topic")), "topics")
            if topic is not None and topic not in topics:
                continue
            for g in found:
                member = resolve_member(r, g, emails)
                if topic is None:
                    yield f"{short_type(r.resource_type)} {r.name}: the topic is unknown in this preview", r.urn
                elif g.role != "roles/pubsub.publisher" or member not in allowed:
                    yield (f"{member or 'an unknown member'} granted {g.role or 'an unknown role'} on budget topic "
                           f"{topic}: only {', '.join(sorted(allowed))} may publish there (a forged budget message "
                           f"can trigger or suppress the emergency limits)"), r.urn
        elif lvl != "resource":
            for g in found:
                if g.role is None or role_is(g.role, PUBLISH_ROLES):
                    yield (f"{g.member or 'an unknown member'} granted {g.role or 'an unknown role'} at {lvl} level by "
                           f"{short_type(r.resource_type)} {r.name}: it may publish to budget topic(s) "
                           f"{', '.join(sorted(topics))}"), r.urn


# ---------------------------------------------------------------- iam-custom-roles

def _custom_roles(resources, config):
    defined: dict[str, tuple[Any, list[str]]] = {}
    for r in resources:
        if r.resource_type not in CUSTOM_ROLE_TYPES:
            continue
        props = raw(r.props)
        perms = props.get("permissions")
        if unknown(perms):
            yield f"custom role {props.get('roleId')}: permissions unknown in this preview", r.urn
            continue
        bad = sorted(p for p in perms or [] if isinstance(p, str) and ESCALATION.search(p))
        if bad:
            yield (f"custom role {props.get('roleId')} has {', '.join(bad)}: whoever holds it can escalate "
                   f"(change IAM, act as another identity) or read every secret"), r.urn
        defined[str(props.get("roleId"))] = (r, perms or [])
    for r, _, found, _ in iam_resources(resources):
        for g in found:
            if g.role and re.match(r"^(projects|organizations)/[^/]+/roles/", g.role):
                role_id = g.role.rsplit("/", 1)[-1]
                if role_id not in defined:
                    yield (f"{short_type(r.resource_type)} {r.name} grants custom role {g.role}, which this stack does "
                           f"not define: its permissions cannot be checked"), r.urn


class _AnyIam(tuple):
    """Stands in for the `types` tuple: membership is 'an IAM resource type' (there are >400)."""

    def __contains__(self, item) -> bool:  # type: ignore[override]
        return isinstance(item, str) and is_iam(item)


POLICIES = [
    resource_policy(
        "iam-role-deny-list",
        "No basic, impersonation, IAM/KMS admin or project-level admin roles, in any IAM resource shape.",
        "Grant the predefined role of what the identity needs, on the resource it needs it on. roles/owner, "
        "roles/editor, roles/viewer, roles/iam.*Admin, roles/cloudkms.admin and project-level *Admin are never "
        "granted by the stack; impersonation roles (serviceAccountUser, serviceAccountTokenCreator, "
        "workloadIdentityUser) only as listed in allowedImpersonation (docs/iam.md).",
        _AnyIam(), _deny_list, severity=Severity.CRITICAL, framework=CIS_GCP,
        schema={"allowedImpersonation": {"type": "array", "default": [], "items": {
                    "type": "object", "required": ["role", "member"],
                    "properties": {"role": {"type": "string"}, "member": {"type": "string"}}}},
                "extraDeniedRoles": {"type": "array", "items": {"type": "string"}, "default": []}},
        tags=["CIS-1.5", "CIS-1.6", "CIS-1.9", "CKV_GCP_41", "CKV_GCP_42", "CKV_GCP_49"]),
    stack_policy(
        "iam-no-public-members", "allUsers / allAuthenticatedUsers only where the design says so.",
        "Grant public members nothing, except roles/storage.legacyObjectReader on the bucket labelled "
        "public-by-design=true and roles/run.invoker on Cloud Run services with load-balancer-only ingress that "
        "are not behind IAP; a service behind IAP is invoked by IAP's service agent only (docs/iam.md).",
        _public_members, severity=Severity.CRITICAL, framework=CIS_GCP,
        schema={"publicByDesignLabel": {"type": "string", "default": "public-by-design"},
                "publicBucketRoles": {"type": "array", "items": {"type": "string"},
                                      "default": ["roles/storage.legacyObjectReader"]}},
        tags=["CIS-5.1", "CKV_GCP_28", "CKV_GCP_102"]),
    stack_policy(
        "iam-secret-access",
        "Secret Manager roles go only to the identities whose workloads declare the secret, never project-wide.",
        "Grant roles/secretmanager.secretAccessor on a secret to the service account of the Cloud Run service, job, "
        "function or VM that reads it (netra:services.<svc>.secrets); list a deliberate exception in extraAccess.",
        _secret_access, severity=Severity.CRITICAL,
        schema={"extraAccess": {"type": "array", "default": [], "items": {
            "type": "object", "required": ["secret", "member"],
            "properties": {"secret": {"type": "string"}, "member": {"type": "string"}}}}}),
    stack_policy(
        "iam-budget-topic-publishers",
        "Only Cloud Billing publishes to the budget's Pub/Sub topic.",
        "Grant roles/pubsub.publisher on the budget topic to serviceAccount:billing-budget-alert@system.gserviceaccount.com "
        "only, and no project-level Pub/Sub publisher/editor/admin role.",
        _budget_publishers, severity=Severity.CRITICAL,
        schema={"publishers": {"type": "array", "items": {"type": "string"}, "default": [BILLING_PUBLISHER]}}),
    stack_policy(
        "iam-custom-roles",
        "Custom roles are defined in the stack and hold no escalation or secret-reading permission.",
        "Define custom roles with gcp.projects.IAMCustomRole in this stack, without *.setIamPolicy, "
        "iam.serviceAccounts.actAs/getAccessToken/sign*, iam.serviceAccountKeys.create, iam.roles.* or "
        "secretmanager.versions.access.",
        _custom_roles, severity=Severity.CRITICAL),
]
