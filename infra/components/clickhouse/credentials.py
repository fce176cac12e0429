"""What the ClickHouse cluster and its clients authenticate with, created before the nodes and kept in
Secret Manager (the platform's Secrets component): passwords, the TLS CA and node certificate, the GCS
HMAC key of the backup identity, and the internal load balancer's address (the clients' endpoint).

All are Pulumi secrets (random passwords and TLS keys are secret outputs of their providers; the HMAC
secret is marked secret by pulumi_gcp). TLS: a private CA for the cluster (10 years) signs one server
certificate (2 years, renewed 30 days early on the next `pulumi up`) whose names are every node's
internal DNS name, localhost and the load balancer's address; clients verify with `clickhouse-ca`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random
import pulumi_tls as tls

from infra.components.gcp_compute import compute

from . import topology as t
from .render import Cluster

COMPONENT_TYPE = "netra:analytics:ClickHouseCredentials"
PASSWORDS = ("clickhouse-password", "clickhouse-admin-password", "clickhouse-grafana-password",
             "clickhouse-interserver-password")
BACKUP_PREFIX = "clickhouse/"


def backup_condition(bucket: str) -> str:
    """IAM condition of the backup account's objectAdmin on the backups bucket: objects under the prefix, and a
    listing (storage.objects.list is checked on the bucket) only with a prefix under it, so the account cannot
    see the database exports or anything else in the bucket."""
    return (f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{BACKUP_PREFIX}") || '
            f'(resource.type == "storage.googleapis.com/Bucket" && '
            f'api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("{BACKUP_PREFIX}"))')


@dataclass(frozen=True)
class ClickHouseCredentialsArgs:
    project: str
    region: str
    environment: str
    cluster: Cluster
    subnet: pulumi.Input[str]  # the analytics subnet (the load balancer's address is taken from it)
    backups_bucket: pulumi.Input[str]


class ClickHouseCredentials(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClickHouseCredentialsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        prefix = t.prefix(args.environment)

        self.passwords = {key: random.RandomPassword(key, random.RandomPasswordArgs(length=32, special=False), opts=child)
                          for key in PASSWORDS}
        self.address = compute.Address(
            "clickhouse-ilb", compute.AddressArgs(
                name=f"{prefix}-clickhouse", project=args.project, region=args.region, address_type="INTERNAL",
                purpose="GCE_ENDPOINT", subnetwork=args.subnet,
                description="ClickHouse internal load balancer: what services connect to"),
            opts=child)

        self.ca_key = tls.PrivateKey("clickhouse-ca", tls.PrivateKeyArgs(algorithm="ECDSA", ecdsa_curve="P256"), opts=child)
        self.ca = tls.SelfSignedCert(
            "clickhouse-ca", tls.SelfSignedCertArgs(
                private_key_pem=self.ca_key.private_key_pem, is_ca_certificate=True, validity_period_hours=87600,
                allowed_uses=["cert_signing", "crl_signing"],
                subject=tls.SelfSignedCertSubjectArgs(common_name=f"{prefix} ClickHouse CA", organization="Netra")),
            opts=child)
        self.server_key = tls.PrivateKey("clickhouse-server", tls.PrivateKeyArgs(algorithm="ECDSA", ecdsa_curve="P256"),
                                         opts=child)
        nodes = (*args.cluster.nodes, *args.cluster.keepers)
        request = tls.CertRequest(
            "clickhouse-server", tls.CertRequestArgs(
                private_key_pem=self.server_key.private_key_pem,
                dns_names=[n.fqdn for n in nodes] + [n.name for n in nodes] + ["localhost"],
                ip_addresses=[self.address.address, "127.0.0.1"],
                subject=tls.CertRequestSubjectArgs(common_name=f"{prefix}-clickhouse", organization="Netra")),
            opts=child)
        self.server_cert = tls.LocallySignedCert(
            "clickhouse-server", tls.LocallySignedCertArgs(
                cert_request_pem=request.cert_request_pem, ca_private_key_pem=self.ca_key.private_key_pem,
                ca_cert_pem=self.ca.cert_pem, validity_period_hours=17520, early_renewal_hours=720,
                allowed_uses=["digital_signature", "key_encipherment", "server_auth", "client_auth"]),
            opts=child)

        # Backups: a dedicated identity whose only right is writing objects under clickhouse/ in the
        # backups bucket; its HMAC key is what BACKUP ... TO Disk('backups') signs S3 requests with.
        self.backup_account = gcp.serviceaccount.Account(
            "clickhouse-backup", gcp.serviceaccount.AccountArgs(
                account_id=f"{prefix}-ch-backup"[:30], project=args.project, display_name=f"{prefix} ClickHouse backups",
                description="HMAC identity of BACKUP ... TO Disk('backups'): objects under clickhouse/ only"),
            opts=child)
        self.backup_grant = gcp.storage.BucketIAMMember(
            "clickhouse-backup-writes", gcp.storage.BucketIAMMemberArgs(
                bucket=args.backups_bucket, role="roles/storage.objectAdmin", member=self.backup_account.member,
                condition=gcp.storage.BucketIAMMemberConditionArgs(
                    title="clickhouse-prefix-only", description="ClickHouse backups only: objects and listings under the prefix",
                    expression=pulumi.Output.from_input(args.backups_bucket).apply(backup_condition))),
            opts=child)
        self.hmac = gcp.storage.HmacKey(
            "clickhouse-backup", gcp.storage.HmacKeyArgs(service_account_email=self.backup_account.email,
                                                         project=args.project),
            opts=child)
        self.register_outputs({"address": self.address.address})

    def secret_payloads(self) -> Mapping[str, pulumi.Input[str]]:
        """Secret Manager key -> payload (the platform's Secrets stores each as a secret version)."""
        return {
            "clickhouse-host": self.address.address,
            "clickhouse-ca": self.ca.cert_pem,
            "clickhouse-tls-cert": self.server_cert.cert_pem,
            "clickhouse-tls-key": self.server_key.private_key_pem,
            "clickhouse-backup-hmac-id": self.hmac.access_id,
            "clickhouse-backup-hmac-secret": self.hmac.secret,
            **{key: p.result for key, p in self.passwords.items()},
        }
