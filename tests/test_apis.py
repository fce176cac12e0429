"""The stack enables every Google API its resources need (infra/components/apis.py), and each resource
waits for its API: the first `pulumi up` on an empty project has them."""
from __future__ import annotations

import pytest

from infra.components.apis import SERVICE_TYPE, apis_of

from .conftest import run_of


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_every_resource_type_maps_to_its_apis_and_waits_for_them(stack):
    run = run_of(stack)
    services = {r.inputs["service"]: r for r in run.resources if r.type == SERVICE_TYPE}
    unknown = sorted({r.type for r in run.resources if apis_of(r.type) is None})
    assert unknown == [], f"resource types with no API in infra/components/apis.py: {unknown}"
    missing = {}
    for r in run.resources:
        for api in apis_of(r.type):
            if api not in services or services[api].urn not in r.dependencies:
                missing.setdefault(r.type, set()).add(api)
    assert missing == {}
    # exactly the APIs used: none enabled that no resource needs
    used = {api for r in run.resources for api in apis_of(r.type)}
    assert set(services) == used
    for s in services.values():
        assert s.inputs["disableOnDestroy"] is False and s.inputs["disableDependentServices"] is False
        assert s.inputs["project"] == run.outputs["gcpProject"]


def test_the_core_apis_are_there(prod_run):
    enabled = {r.inputs["service"] for r in prod_run.resources if r.type == SERVICE_TYPE}
    assert {"sqladmin.googleapis.com", "redis.googleapis.com", "run.googleapis.com", "compute.googleapis.com",
            "secretmanager.googleapis.com", "servicenetworking.googleapis.com", "storage.googleapis.com",
            "monitoring.googleapis.com", "iam.googleapis.com", "cloudfunctions.googleapis.com"} <= enabled


def test_an_unmapped_type_is_caught():
    assert apis_of("gcp:alloydb/cluster:Cluster") is None
    assert apis_of("gcp:sql/database:Database") == ("sqladmin.googleapis.com",)
    assert apis_of("random:index/randomPassword:RandomPassword") == () and apis_of(SERVICE_TYPE) == ()
