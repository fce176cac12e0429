"""Which IAM roles the deploy identity needs, computed from the resource types the main program registers.

Each GCP type token maps to the narrowest predefined role that can create, update and delete it (by
the type's module, with per-type entries where a module spans several roles). `deploy_roles(types)`
is then the union for the types the plans of both stacks register: a role no planned type needs is
never granted, and a type nobody mapped fails the bootstrap plan (and its test) by name, so adding a
resource type to the program is also a decision about the deploy identity's roles.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

ROLES_FILE = Path(__file__).resolve().parents[2] / "bootstrap" / "deploy-roles.json"

# module of `gcp:<module>/<type>:<Type>` -> role
MODULE_ROLE = {
    "artifactregistry": "roles/artifactregistry.admin",
    "cloudfunctionsv2": "roles/cloudfunctions.developer",
    "cloudrunv2": "roles/run.admin",  # run.developer cannot set a service's IAM policy (the invoker grants)
    "cloudscheduler": "roles/cloudscheduler.admin",
    "iap": "roles/iap.admin",
    "kms": "roles/cloudkms.admin",
    "logging": "roles/logging.configWriter",
    "monitoring": "roles/monitoring.editor",
    "pubsub": "roles/pubsub.admin",
    "redis": "roles/redis.admin",
    "secretmanager": "roles/secretmanager.admin",
    "servicenetworking": "roles/servicenetworking.networksAdmin",
    "sql": "roles/cloudsql.admin",
    "storage": "roles/storage.admin",
    "vpcaccess": "roles/vpcaccess.admin",
}

# type token -> role, where the module's resources need different roles
TYPE_ROLE = {
    "gcp:billing/budget:Budget": "roles/billing.costsManager",  # granted on the billing account, not the project
    "gcp:projects/iAMMember:IAMMember": "roles/resourcemanager.projectIamAdmin",
    "gcp:projects/service:Service": "roles/serviceusage.serviceUsageAdmin",
    "gcp:serviceaccount/account:Account": "roles/iam.serviceAccountAdmin",
    "gcp:serviceaccount/iAMMember:IAMMember": "roles/iam.serviceAccountAdmin",
    "gcp:storage/hmacKey:HmacKey": "roles/storage.hmacKeyAdmin",
    # Metric readiness (infra/components/observability/metric_ready.py) polls Cloud Monitoring.
    "pulumi-python:dynamic:Resource": "roles/monitoring.viewer",
}

COMPUTE_ROLE = {
    "roles/compute.networkAdmin": ("network", "subnetwork", "router", "routerNat", "address", "globalAddress"),
    "roles/compute.securityAdmin": ("firewall", "securityPolicy", "sSLPolicy", "regionSecurityPolicy"),
    "roles/compute.loadBalancerAdmin": (
        "backendBucket", "backendService", "regionBackendService", "forwardingRule", "globalForwardingRule",
        "healthCheck", "regionHealthCheck", "targetHttpProxy", "targetHttpsProxy", "uRLMap",
        "managedSslCertificate", "regionNetworkEndpointGroup", "globalNetworkEndpointGroup"),
    "roles/compute.instanceAdmin.v1": ("disk", "instanceTemplate", "instanceGroupManager", "perInstanceConfig",
                                       "regionInstanceGroupManager", "instance"),
}
_COMPUTE = {f"gcp:compute/{t}:{t[0].upper()}{t[1:]}": role for role, types in COMPUTE_ROLE.items() for t in types}

# Deploying a Cloud Run service, job, function or VM that runs as a service account needs actAs on it;
# those accounts are created by the same `pulumi up`, so the grant is project-wide.
ACT_AS = "roles/iam.serviceAccountUser"
RUNS_AS = ("gcp:cloudrunv2/service:Service", "gcp:cloudrunv2/job:Job", "gcp:cloudfunctionsv2/function:Function",
           "gcp:compute/instanceTemplate:InstanceTemplate")

BILLING_ROLES = frozenset({"roles/billing.costsManager"})
# Never granted by the bootstrap, whatever a mapping says: basic roles and org-level power.
FORBIDDEN = frozenset({"roles/owner", "roles/editor", "roles/viewer", "roles/iam.securityAdmin",
                       "roles/resourcemanager.organizationAdmin", "roles/iam.serviceAccountTokenCreator"})


class UnmappedType(ValueError):
    """A resource type the program registers that no role covers yet."""


def role_for(type_token: str) -> str | None:
    """The role that manages `type_token`; None for types that touch no GCP API (components, random, tls)."""
    if not type_token.startswith(("gcp:", "pulumi-python:dynamic:")):
        return None
    if type_token in TYPE_ROLE:
        return TYPE_ROLE[type_token]
    if type_token in _COMPUTE:
        return _COMPUTE[type_token]
    module = type_token.split(":")[1].split("/")[0]
    if module in MODULE_ROLE:
        return MODULE_ROLE[module]
    raise UnmappedType(f"{type_token}: no deploy role covers this resource type; add it to infra/bootstrap/roles.py "
                       "(MODULE_ROLE, TYPE_ROLE or COMPUTE_ROLE) with the narrowest predefined role that manages it")


def deploy_roles(types: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """role -> the planned types that need it (sorted), for the deploy identity. Raises UnmappedType
    naming every type no role covers."""
    types = sorted(set(types))
    needed: dict[str, set[str]] = {}
    unmapped = []
    for t in types:
        try:
            role = role_for(t)
        except UnmappedType as e:
            unmapped.append(str(e))
            continue
        if role:
            needed.setdefault(role, set()).add(t)
        if t in RUNS_AS:
            needed.setdefault(ACT_AS, set()).add(t)
    if unmapped:
        raise UnmappedType("\n".join(unmapped))
    bad = FORBIDDEN & set(needed)
    if bad:
        raise UnmappedType(f"refusing to grant {sorted(bad)}")
    return {role: tuple(sorted(ts)) for role, ts in sorted(needed.items())}


def planned_types(stacks: Iterable[str] = ("staging", "prod")) -> set[str]:
    """Every resource type the main program registers in the offline plans of these stacks."""
    from infra.plan import run_stack

    return {r.type for stack in stacks for r in run_stack(stack).resources}


def render_roles() -> str:
    """bootstrap/deploy-roles.json as generated from today's plans (`make docs-reference` writes it)."""
    return json.dumps(deploy_roles(planned_types()), indent=1) + "\n"


def committed_roles() -> dict[str, tuple[str, ...]]:
    return {role: tuple(types) for role, types in json.loads(ROLES_FILE.read_text()).items()}


# One permission each deploy role grants that `pulumi up` uses, for `preflight`'s testIamPermissions: a
# caller missing it lacks the role (or an equivalent). tests/test_bootstrap.py keeps it complete.
ROLE_PERMISSION = {
    "roles/artifactregistry.admin": "artifactregistry.repositories.create",
    "roles/billing.costsManager": "billing.budgets.create",
    "roles/cloudfunctions.developer": "cloudfunctions.functions.create",
    "roles/cloudkms.admin": "cloudkms.cryptoKeys.create",
    "roles/cloudscheduler.admin": "cloudscheduler.jobs.create",
    "roles/cloudsql.admin": "cloudsql.instances.create",
    "roles/compute.instanceAdmin.v1": "compute.instanceTemplates.create",
    "roles/compute.loadBalancerAdmin": "compute.urlMaps.create",
    "roles/compute.networkAdmin": "compute.networks.create",
    "roles/compute.securityAdmin": "compute.securityPolicies.create",
    "roles/iam.serviceAccountAdmin": "iam.serviceAccounts.create",
    "roles/iam.serviceAccountUser": "iam.serviceAccounts.actAs",
    "roles/iap.admin": "iap.webServices.setIamPolicy",
    "roles/logging.configWriter": "logging.logMetrics.create",
    "roles/monitoring.editor": "monitoring.alertPolicies.create",
    "roles/monitoring.viewer": "monitoring.metricDescriptors.get",
    "roles/pubsub.admin": "pubsub.topics.create",
    "roles/redis.admin": "redis.instances.create",
    "roles/resourcemanager.projectIamAdmin": "resourcemanager.projects.setIamPolicy",
    "roles/run.admin": "run.services.setIamPolicy",
    "roles/secretmanager.admin": "secretmanager.secrets.create",
    "roles/servicenetworking.networksAdmin": "servicenetworking.services.addPeering",
    "roles/serviceusage.serviceUsageAdmin": "serviceusage.services.enable",
    "roles/storage.admin": "storage.buckets.create",
    "roles/storage.hmacKeyAdmin": "storage.hmacKeys.create",
    "roles/vpcaccess.admin": "vpcaccess.connectors.create",
}
