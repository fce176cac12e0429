"""Canary gate: Cloud Monitoring queries per revision, the sequential judge and the gate loop.

Kept import-light on purpose: `infra.canary.cli` is imported by `python -m infra` for every command, so
google.cloud, grpc, numpy and scipy are only imported when a gate actually runs.
"""
