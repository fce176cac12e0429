"""The Netra go-live policy pack: builds the PolicyPack and nothing else (policies live in netra_policies/).

The Pulumi CLI runs this file with policies/ as the working directory and on sys.path
(`pulumi preview --policy-pack policies --policy-pack-config policies/config.<stack>.json`); the offline
plan (`python -m infra plan`) starts it the same way and speaks the same analyzer gRPC protocol.
"""
from pulumi_policy import EnforcementLevel, PolicyPack

from netra_policies import ALL, PACK_NAME

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=ALL,
    description="Netra go-live checks: Cloud Run, Cloud SQL, Memorystore, Cloud Storage, TLS, Secret Manager, stack",
)
