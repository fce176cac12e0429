"""Compute Engine VMs (the ClickHouse and Keeper nodes) and Grafana: private, shielded, encrypted, behind auth."""
from __future__ import annotations

import json
import re

from pulumi_policy import Severity

from ._util import CIS_GCP, UNKNOWN, get, items, of_type, peek, resource_policy, serves, stack_policy

VM_TYPES = ("gcp:compute/instanceTemplate:InstanceTemplate", "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate",
            "gcp:compute/instance:Instance")
DISK = "gcp:compute/disk:Disk"
RUN_SERVICE = "gcp:cloudrunv2/service:Service"
NEG = "gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup"
BACKEND_SERVICE = "gcp:compute/backendService:BackendService"
ENCRYPTION_LABEL = "disk-encryption"
GRAFANA_LABEL = ("app", "grafana")
IAP_JWT_HEADER = "X-Goog-Iap-Jwt-Assertion"


def _no_external_ip(props, config, args):
    for i, nic in enumerate(items(props, "networkInterfaces")):
        if items(nic, "accessConfigs"):
            yield f"networkInterfaces[{i}].accessConfigs is set: the VM gets an external IP (reach it through IAP)"
        if items(nic, "ipv6AccessConfigs"):
            yield f"networkInterfaces[{i}].ipv6AccessConfigs is set: the VM gets an external IPv6 address"


def _shielded(props, config, args):
    for flag in ("enableSecureBoot", "enableVtpm", "enableIntegrityMonitoring"):
        if get(props, f"shieldedInstanceConfig.{flag}") is not True:
            yield f"shieldedInstanceConfig.{flag} is not true"


def _os_login(props, config, args):
    metadata = get(props, "metadata", {}) or {}
    if str(metadata.get("enable-oslogin", "")).upper() != "TRUE":
        yield "metadata enable-oslogin is not TRUE: SSH keys in metadata instead of IAM-controlled OS Login"
    if str(metadata.get("block-project-ssh-keys", "")).upper() != "TRUE":
        yield "metadata block-project-ssh-keys is not TRUE: project-wide SSH keys would open every VM"


def _encryption_problem(disk, config, where: str):
    """A disk is encrypted with a Cloud KMS key, or (unless CMEK is required) says so explicitly by label."""
    if get(disk, "diskEncryptionKey.kmsKeySelfLink") or get(disk, "diskEncryptionKey.rawKey") \
            or get(disk, "diskEncryptionKey.rsaEncryptedKey"):
        return None
    label = (get(disk, "labels", {}) or {}).get(ENCRYPTION_LABEL)
    if config.get("requireCmek", False):
        return f"{where}has no diskEncryptionKey.kmsKeySelfLink: CMEK is required here"
    if label != "google-managed":
        return (f"{where}declares no encryption: set diskEncryptionKey.kmsKeySelfLink (CMEK) or label "
                f"{ENCRYPTION_LABEL}=google-managed to record that Google-managed keys are the decision")
    return None


def _disk_encrypted(props, config, args):
    problem = _encryption_problem(props, config, "")
    if problem:
        yield problem


def _template_disks_encrypted(props, config, args):
    for i, disk in enumerate(items(props, "disks")):
        problem = _encryption_problem(disk, config, f"disks[{i}] ")
        if problem:
            yield problem


def _is_grafana(r) -> bool:
    return (get(r.props, "labels", {}) or {}).get(GRAFANA_LABEL[0]) == GRAFANA_LABEL[1]


def _env(props) -> dict:
    """name -> value of every env var (`UNKNOWN` for a value computed from a resource not created yet)."""
    out = {}
    for c in items(props, "template.containers"):
        for e in items(c, "envs"):
            out[get(e, "name")] = peek(e, "value")
    return out


IAP_ISSUER = "https://cloud.google.com/iap"
IAP_AUDIENCE = re.compile(r"^/projects/\d+/global/backendServices/\d+$")
ENV_REF = re.compile(r"^\$(?:__env)?\{([^}]+)\}$")  # Grafana's $__env{VAR} (and ${VAR}) expansion, whole value


def _secret_env(props) -> set[str]:
    return {get(e, "name") for c in items(props, "template.containers") for e in items(c, "envs")
            if get(e, "valueSource.secretKeyRef.secret")}


def _audience_problems(name, props):
    """Grafana must expect IAP's issuer and this backend service's audience: any IAP token (same Google keys,
    same issuer) minted for another app would sign in otherwise."""
    raw = _env(props).get("GF_AUTH_JWT_EXPECT_CLAIMS")
    try:
        claims = json.loads(raw) if raw else {}
    except ValueError:
        claims = None
    if not isinstance(claims, dict):
        yield f"Grafana service {name}: GF_AUTH_JWT_EXPECT_CLAIMS is not a JSON object, so Grafana refuses to start"
        return
    if claims.get("iss") != IAP_ISSUER:
        yield f"Grafana service {name}: GF_AUTH_JWT_EXPECT_CLAIMS does not expect iss {IAP_ISSUER!r}"
    aud = claims.get("aud")
    ref = ENV_REF.match(aud) if isinstance(aud, str) else None
    if ref and ref.group(1) not in _secret_env(props):
        yield (f"Grafana service {name}: GF_AUTH_JWT_EXPECT_CLAIMS takes aud from ${ref.group(1)}, which is not "
               f"an env var read from Secret Manager")
    elif not ref and not (isinstance(aud, str) and IAP_AUDIENCE.match(aud)):
        yield (f"Grafana service {name}: GF_AUTH_JWT_EXPECT_CLAIMS does not expect the audience of its IAP backend "
               f"(/projects/<number>/global/backendServices/<id>), so an IAP token minted for another app signs in")


def _grafana_behind_auth(resources, config):
    """Grafana answers only through the load balancer, with IAP in front and Grafana trusting only IAP's identity."""
    negs, backends = of_type(resources, NEG), of_type(resources, BACKEND_SERVICE)
    for svc in of_type(resources, RUN_SERVICE):
        if not _is_grafana(svc):
            continue
        name = get(svc.props, "name")
        ingress = get(svc.props, "ingress", "INGRESS_TRAFFIC_ALL")
        if ingress == "INGRESS_TRAFFIC_ALL":
            yield f"Grafana service {name}: ingress {ingress} lets the internet reach its run.app URL past IAP", svc.urn
        env = _env(svc.props)
        unseen = [k for k in ("GF_AUTH_ANONYMOUS_ENABLED", "GF_AUTH_JWT_ENABLED", "GF_AUTH_JWT_HEADER_NAME")
                  if env.get(k) is UNKNOWN]
        if unseen:
            yield (f"fails closed: Grafana service {name}: env {', '.join(unseen)} unknown until created, so its "
                   f"sign-in cannot be checked"), svc.urn
        if str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "true":
            yield f"Grafana service {name}: GF_AUTH_ANONYMOUS_ENABLED=true serves dashboards without sign-in", svc.urn
        if str(env.get("GF_AUTH_JWT_ENABLED", "")).lower() != "true" or env.get("GF_AUTH_JWT_HEADER_NAME") != IAP_JWT_HEADER:
            yield (f"Grafana service {name}: does not authenticate users by IAP's signed header "
                   f"(GF_AUTH_JWT_ENABLED=true, GF_AUTH_JWT_HEADER_NAME={IAP_JWT_HEADER})"), svc.urn
        yield from ((m, svc.urn) for m in _audience_problems(name, svc.props))
        serving = [n for n in negs if get(n.props, "cloudRun.service") == name]
        fronts = [b for b in backends if any(serves(b, n) for n in serving)]
        if not fronts:
            yield f"Grafana service {name}: no load-balancer backend service serves it (so no IAP in front)", svc.urn
        for b in fronts:
            if get(b.props, "iap.enabled") is not True:
                yield f"backend service {get(b.props, 'name')} serves Grafana without IAP (iap.enabled is not true)", b.urn


POLICIES = [
    resource_policy("gce-no-external-ip", "Compute Engine VMs (ClickHouse, Keeper) have no external IP.",
                    "Remove accessConfigs from networkInterfaces; operators connect through IAP TCP forwarding and "
                    "the VMs reach the internet through Cloud NAT.", VM_TYPES, _no_external_ip,
                    framework=CIS_GCP, severity=Severity.CRITICAL, tags=["CIS-4.9", "CKV_GCP_40"]),
    resource_policy("gce-shielded-vm", "Compute Engine VMs run as Shielded VMs (secure boot, vTPM, integrity monitoring).",
                    "Set shieldedInstanceConfig {enableSecureBoot, enableVtpm, enableIntegrityMonitoring} to true.",
                    VM_TYPES, _shielded, framework=CIS_GCP, tags=["CIS-4.8", "CKV_GCP_39"]),
    resource_policy("gce-os-login", "Compute Engine VMs use OS Login and refuse project-wide SSH keys.",
                    "Set metadata enable-oslogin=TRUE and block-project-ssh-keys=TRUE.", VM_TYPES, _os_login,
                    framework=CIS_GCP, tags=["CIS-4.3", "CIS-4.4", "CKV_GCP_32", "CKV_GCP_34"]),
    resource_policy("gce-disk-encryption", "Compute Engine disks are encrypted with CMEK or declare Google-managed keys.",
                    "Set diskEncryptionKey.kmsKeySelfLink (netra:platform.clickhouse.kmsKey) or label the disk "
                    "disk-encryption=google-managed; with requireCmek the key is mandatory.", (DISK,), _disk_encrypted,
                    schema={"requireCmek": {"type": "boolean", "default": False}}, tags=["CKV_GCP_37"]),
    resource_policy("gce-template-disk-encryption",
                    "Instance template disks are encrypted with CMEK or declare Google-managed keys.",
                    "Set disks[].diskEncryptionKey.kmsKeySelfLink or label each disk disk-encryption=google-managed.",
                    VM_TYPES[:2], _template_disks_encrypted,
                    schema={"requireCmek": {"type": "boolean", "default": False}}, tags=["CKV_GCP_37"]),
    stack_policy("grafana-behind-auth", "Grafana is reachable only through the load balancer with IAP and no anonymous access.",
                 "Give the Grafana Cloud Run service ingress INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER, IAP JWT auth "
                 "(GF_AUTH_JWT_*) expecting iss https://cloud.google.com/iap and the IAP backend's audience (from Secret "
                 "Manager), no GF_AUTH_ANONYMOUS_ENABLED, and enable iap on its backend service.",
                 _grafana_behind_auth, severity=Severity.CRITICAL),
]
