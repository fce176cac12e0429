"""Managed Service for Prometheus on Cloud Run: the GMP sidecar in every service's revision.

The sidecar (Google's `cloud-run-gmp-sidecar`) scrapes the service's own container on localhost and
writes the series to Managed Service for Prometheus, so PromQL works against Cloud Monitoring (and
Grafana's Cloud Monitoring data source) without a Prometheus server. Its `RunMonitoring` config (port,
path, interval from `netra:observability.prometheus`) is the Secret Manager secret
`<env>-prometheus-config`, mounted at /etc/rungmp/config.yaml as Google documents.

The sidecar is a field of the revision spec (`MetricsSidecar`), so the revision name, a hash of the
spec, changes once when it is added and never again unless its config does; the services' own image,
env and probes are untouched. Its service account needs `roles/monitoring.metricWriter`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pulumi_gcp import cloudrunv2 as run

from infra.config.analytics import PrometheusConfig
from infra.config.platform import secret_id

CONFIG_KEY = "prometheus-config"  # platform secret key
MOUNT = "/etc/rungmp"
CONTAINER = "gmp-collector"
VOLUME = "gmp-config"
METRIC_WRITER = "roles/monitoring.metricWriter"


@dataclass(frozen=True)
class MetricsSidecar:
    image: str
    config_secret: str
    scrape_port: int
    scrape_path: str
    scrape_interval_seconds: int


def sidecar(prometheus: PrometheusConfig, environment: str) -> Optional[MetricsSidecar]:
    if not prometheus.enabled:
        return None
    return MetricsSidecar(prometheus.sidecar_image, secret_id(environment, CONFIG_KEY), prometheus.scrape_port,
                          prometheus.scrape_path, prometheus.scrape_interval_seconds)


def run_monitoring_yaml(prometheus: PrometheusConfig) -> str:
    """The sidecar's RunMonitoring config: what to scrape, and the target labels that identify the series."""
    return (
        "apiVersion: monitoring.googleapis.com/v1beta\n"
        "kind: RunMonitoring\n"
        "metadata:\n"
        "  name: netra\n"
        "spec:\n"
        "  endpoints:\n"
        f"  - port: {prometheus.scrape_port}\n"
        f"    path: {prometheus.scrape_path}\n"
        f"    interval: {prometheus.scrape_interval_seconds}s\n"
        "  targetLabels:\n"
        "    metadata:\n"
        "    - service\n"
        "    - revision\n"
        "    - instance\n"
    )


def volume(s: MetricsSidecar) -> run.ServiceTemplateVolumeArgs:
    return run.ServiceTemplateVolumeArgs(name=VOLUME, secret=run.ServiceTemplateVolumeSecretArgs(
        secret=s.config_secret, default_mode=0o444,
        items=[run.ServiceTemplateVolumeSecretItemArgs(path="config.yaml", version="latest", mode=0o444)]))


def container(s: MetricsSidecar, app_container: str) -> run.ServiceTemplateContainerArgs:
    """The collector: starts after the application container, no port of its own, liveness on :13133/liveness (the sidecar entrypoint serves it)."""
    return run.ServiceTemplateContainerArgs(
        name=CONTAINER, image=s.image, depends_ons=[app_container],
        volume_mounts=[run.ServiceTemplateContainerVolumeMountArgs(name=VOLUME, mount_path=MOUNT)],
        resources=run.ServiceTemplateContainerResourcesArgs(limits={"cpu": "500m", "memory": "256Mi"}, cpu_idle=True),
        startup_probe=run.ServiceTemplateContainerStartupProbeArgs(
            http_get=run.ServiceTemplateContainerStartupProbeHttpGetArgs(path="/liveness", port=13133),
            period_seconds=5, timeout_seconds=3, failure_threshold=12),
        liveness_probe=run.ServiceTemplateContainerLivenessProbeArgs(
            http_get=run.ServiceTemplateContainerLivenessProbeHttpGetArgs(path="/liveness", port=13133),
            period_seconds=30, timeout_seconds=5, failure_threshold=3))
