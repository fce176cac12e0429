"""The application's structured-log signals (infra/signals.py) as log-based metrics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_gcp import logging

from infra import signals

COMPONENT_TYPE = "netra:observability:LogMetrics"


def log_filter(event: str, outcome: Optional[str] = None) -> str:
    parts = ['resource.type="cloud_run_revision"', f'jsonPayload.event="{event}"']
    if outcome is not None:
        parts.append(f'jsonPayload.outcome="{outcome}"')
    return " AND ".join(parts)


def _label(key: str) -> logging.MetricMetricDescriptorLabelArgs:
    return logging.MetricMetricDescriptorLabelArgs(key=key, value_type="STRING", description=f"jsonPayload.{key}")


def bucket_options(signal) -> logging.MetricBucketOptionsArgs:
    if signal.exponential is not None:
        n, growth, scale = signal.exponential
        return logging.MetricBucketOptionsArgs(exponential_buckets=logging.MetricBucketOptionsExponentialBucketsArgs(
            num_finite_buckets=n, growth_factor=growth, scale=scale))
    return logging.MetricBucketOptionsArgs(
        explicit_buckets=logging.MetricBucketOptionsExplicitBucketsArgs(bounds=list(signal.bounds)))


def metric_args(signal, project: str) -> logging.MetricArgs:
    if isinstance(signal, signals.ValueSignal):
        return logging.MetricArgs(
            project=project,
            name=signal.metric,
            description=signal.description,
            filter=log_filter(signal.event, signal.only_outcome),
            value_extractor=f"EXTRACT(jsonPayload.{signal.field})",
            label_extractors={k: f"EXTRACT(jsonPayload.{k})" for k in signal.labels} or None,
            bucket_options=bucket_options(signal),
            metric_descriptor=logging.MetricMetricDescriptorArgs(
                metric_kind="DELTA", value_type="DISTRIBUTION", unit=signal.unit,
                display_name=signal.metric, labels=[_label(k) for k in signal.labels] or None),
        )
    labels = signal.labels
    return logging.MetricArgs(
        project=project,
        name=signal.metric,
        description=signal.description,
        filter=log_filter(signal.event),
        label_extractors={k: f"EXTRACT(jsonPayload.{k})" for k in labels} or None,
        metric_descriptor=logging.MetricMetricDescriptorArgs(
            metric_kind="DELTA", value_type="INT64", unit="1",
            display_name=signal.metric, labels=[_label(k) for k in labels] or None),
    )


@dataclass(frozen=True)
class LogMetricsArgs:
    project: str
    signals: tuple = signals.ALL_SIGNALS


class LogMetrics(pulumi.ComponentResource):
    """Every signal in `infra.signals.ALL_SIGNALS`, named exactly as the canary gate queries them.

    Outputs: `metrics` (metric name -> logging.Metric)."""

    def __init__(self, name: str, args: LogMetricsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        self.metrics = {
            s.metric: logging.Metric(s.metric, metric_args(s, args.project), opts=pulumi.ResourceOptions(parent=self))
            for s in args.signals
        }
        self.register_outputs({})
