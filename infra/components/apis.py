"""The Google APIs the stack's resources need, enabled by the stack itself (docs/data-safety.md, "APIs").

A fresh project has almost no API enabled, so the first `pulumi up` would fail on its first resource.
Each resource type maps to the APIs its create calls (`API_OF`, by the type token's module, with the
exceptions below); one stack transformation registers a `gcp.projects.Service` for each API the first
time a resource needs it and makes that resource (and every later one of the same API) depend on it.
So exactly the APIs the configured stack uses are enabled, each before its first resource.
`disable_on_destroy=False`: removing a resource (or the whole stack) never disables an API another
workload of the project may use. Service Usage itself (serviceusage.googleapis.com, on by default in new
projects) is what enables the others; it cannot enable itself.
"""
from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_gcp as gcp

COMPONENT_TYPE = "netra:platform:Apis"
SERVICE_TYPE = "gcp:projects/service:Service"

# type-token module ("gcp:<module>/...") -> the APIs its resources are created through
API_OF_MODULE: dict[str, tuple[str, ...]] = {
    "billing": ("billingbudgets.googleapis.com",),
    # a v2 function builds with Cloud Build into Artifact Registry, runs on Cloud Run, its Pub/Sub trigger is Eventarc
    "cloudfunctionsv2": ("cloudfunctions.googleapis.com", "cloudbuild.googleapis.com", "artifactregistry.googleapis.com",
                         "run.googleapis.com", "eventarc.googleapis.com"),
    "cloudrunv2": ("run.googleapis.com",),
    "compute": ("compute.googleapis.com",),
    "iap": ("iap.googleapis.com",),
    "logging": ("logging.googleapis.com",),
    "monitoring": ("monitoring.googleapis.com",),
    "projects": ("cloudresourcemanager.googleapis.com",),  # project IAM members
    "pubsub": ("pubsub.googleapis.com",),
    "redis": ("redis.googleapis.com",),
    "secretmanager": ("secretmanager.googleapis.com",),
    "serviceaccount": ("iam.googleapis.com",),
    "servicenetworking": ("servicenetworking.googleapis.com",),
    "sql": ("sqladmin.googleapis.com",),
    "storage": ("storage.googleapis.com",),
}
# types outside gcp:<module> that call a Google API when created
API_OF_TYPE: dict[str, tuple[str, ...]] = {
    "pulumi-python:dynamic:Resource": ("monitoring.googleapis.com",),  # MetricReady polls Cloud Monitoring
}
# types that call no Google API: local providers (random, tls) and components (their children do)
NO_API_PREFIXES = ("random:", "tls:", "netra:", "pulumi:")


def apis_of(type_token: str) -> Optional[tuple[str, ...]]:
    """The APIs a resource of `type_token` needs; () for none; None when this table does not know it."""
    if type_token == SERVICE_TYPE or type_token.startswith(NO_API_PREFIXES):
        return ()
    if type_token in API_OF_TYPE:
        return API_OF_TYPE[type_token]
    if type_token.startswith("gcp:"):
        return API_OF_MODULE.get(type_token[4:].split("/", 1)[0])
    return None


class Apis(pulumi.ComponentResource):
    """One `gcp.projects.Service` per API a registered resource needs, created on first need."""

    def __init__(self, name: str, project: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self.project = project
        self.services: dict[str, gcp.projects.Service] = {}
        self.register_outputs({})

    def service(self, api: str) -> gcp.projects.Service:
        if api not in self.services:
            self.services[api] = gcp.projects.Service(
                api.split(".", 1)[0], gcp.projects.ServiceArgs(
                    project=self.project, service=api, disable_on_destroy=False, disable_dependent_services=False),
                opts=pulumi.ResourceOptions(parent=self))
        return self.services[api]

    def transformation(self, args: pulumi.ResourceTransformationArgs) -> Optional[pulumi.ResourceTransformationResult]:
        needed = apis_of(args.type_)
        if not needed:
            return None
        after = [self.service(api) for api in needed]
        return pulumi.ResourceTransformationResult(args.props, pulumi.ResourceOptions.merge(
            args.opts, pulumi.ResourceOptions(depends_on=after)))


def install(project: str) -> Apis:
    """Register the Apis component and its stack transformation; call before the first resource."""
    apis = Apis("apis", project)
    pulumi.runtime.register_stack_transformation(apis.transformation)
    return apis
