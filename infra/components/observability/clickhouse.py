"""Alerts and the dashboard row of the ClickHouse cluster.

Signals: the Ops Agent on every node scrapes the local ClickHouse / Keeper Prometheus endpoint into
Managed Service for Prometheus (job `clickhouse` or `clickhouse-keeper`, label `node`; ClickHouse names
its series ClickHouseMetrics_*, ClickHouseAsyncMetrics_*, ClickHouseProfileEvents_*) and reports the VM's
own disk use and heartbeat (agent.googleapis.com/*). The VMs carry the label `app: analytics`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
from pulumi_gcp import monitoring

from infra.components.clickhouse.render import job
from infra.config.analytics import ClickHouseConfig

from ..site import Site
from . import queries as q
from .channels import AlertRouting
from .dashboard_model import Aggregation, Filter, PromQL, Section, Series, Threshold, XyChart
from .policy import AlertSpec, Condition, declare, promql, threshold
from .runbook import Runbook

COMPONENT_TYPE = "netra:observability:ClickHouseAlerts"
CH, KEEPER = job("clickhouse"), job("keeper")
UPTIME = f'ClickHouseAsyncMetrics_Uptime{{job="{CH}"}}'
KEEPER_LEADER = f'ClickHouseAsyncMetrics_KeeperIsLeader{{job="{KEEPER}"}}'
REPLICA_DELAY = f'ClickHouseAsyncMetrics_ReplicasMaxAbsoluteDelay{{job="{CH}"}}'
KEEPER_SESSION = f'ClickHouseMetrics_ZooKeeperSession{{job="{CH}"}}'
QUERIES = f'ClickHouseProfileEvents_Query{{job="{CH}"}}'
VM_LABELS = {"app": "analytics"}
ALERT_IDS = ("clickhouse-node-down", "clickhouse-replica-lag", "clickhouse-disk-full", "clickhouse-keeper-quorum-lost")


def node_gone_query() -> str:
    """Nodes that reported 10 minutes ago and report nothing now: the process or the VM is down."""
    then = f"count by (node) ({UPTIME} offset 10m or {KEEPER_LEADER} offset 10m)"
    now = f"count by (node) ({UPTIME} or {KEEPER_LEADER})"
    return f"{then}\nunless\n{now}"


def disk_filter() -> q.MetricFilter:
    return q.MetricFilter(q.AGENT_DISK_USED, q.GCE_INSTANCE, metric_labels=(("state", "used"),),
                          metadata_labels=tuple(VM_LABELS.items()))


def alert_specs(ch: ClickHouseConfig) -> list[AlertSpec]:
    def spec(key: str, title: str, severity: str, rule: str, conditions: list[Condition], runbook: Runbook) -> AlertSpec:
        return AlertSpec(key=key, title=title, severity=severity, rule=rule, conditions=conditions, runbook=runbook,
                         labels={"netra_platform_alert": key, "component": "clickhouse"})

    return [
        spec("clickhouse-node-down", "ClickHouse node down", "critical",
             "a ClickHouse or Keeper node stopped reporting metrics (10 min ago it did), or its VM's agent went silent",
             [promql("node stopped reporting", node_gone_query(), duration="120s", rule="clickhouse-node-down",
                     severity="critical"),
              Condition(display_name="VM heartbeat absent", condition_absent=monitoring.AlertPolicyConditionConditionAbsentArgs(
                            filter=str(q.MetricFilter(q.AGENT_UPTIME, q.GCE_INSTANCE,
                                                      metadata_labels=tuple(VM_LABELS.items()))),
                            duration="300s",
                            aggregations=[monitoring.AlertPolicyConditionConditionAbsentAggregationArgs(
                                              alignment_period="60s", per_series_aligner="ALIGN_RATE",
                                              cross_series_reducer="REDUCE_SUM",
                                              group_by_fields=["resource.label.instance_id"])]))],
             Runbook("A node of the analytics cluster is not serving. Its managed instance group recreates it when "
                     "its health check keeps failing (same name, same data disk).",
                     ("System Health dashboard, ClickHouse row: which node, since when.",
                      "`gcloud compute instance-groups managed list-instances <node> --zone <zone>`: recreating?",
                      "Serial console / `journalctl -u clickhouse-server` over IAP: `gcloud compute ssh <node> --tunnel-through-iap`.",
                      "Queries still work while one replica per shard is up; writes to a shard need its Keeper quorum."),
                     rollback=False)),
        spec("clickhouse-replica-lag", "ClickHouse replica lag", "warning",
             f"a replica is more than {ch.replica_lag_seconds} s behind (ReplicasMaxAbsoluteDelay) for 5 min",
             [promql("replica delay", f"max by (node) ({REPLICA_DELAY}) > {ch.replica_lag_seconds}", duration="300s",
                     rule="clickhouse-replica-lag", severity="warning")],
             Runbook("A replica fetches parts from its peers slower than they are written: reads from it are stale.",
                     ("`SELECT * FROM system.replication_queue` on the node: stuck entries, last_exception.",
                      "Disk and network of the node; Keeper healthy (quorum alert)?",
                      "Large inserts or mutations running (`system.mutations`)?"),
                     rollback=False)),
        spec("clickhouse-disk-full", "ClickHouse disk above threshold", "warning",
             f"a ClickHouse or Keeper VM disk is more than {ch.disk_used_percent:g} % full for 10 min",
             [threshold("disk used", str(disk_filter()), ch.disk_used_percent, duration="600s", period="300s",
                        aligner="ALIGN_MEAN", reducer="REDUCE_MAX",
                        group_by=["resource.label.instance_id", "metric.label.device"])],
             Runbook("A node's disk is filling up; ClickHouse stops merging, then accepting inserts, when it is full.",
                     ("Which partitions are largest: `SELECT partition, sum(bytes_on_disk) FROM system.parts GROUP BY partition`.",
                      "Grow the disk: raise netra:platform.clickhouse.diskSizeGb and `pulumi up` (online), then `resize2fs`.",
                      "Shorten the table TTL if old data should go."),
                     rollback=False)),
        spec("clickhouse-keeper-quorum-lost", "ClickHouse Keeper quorum lost", "critical",
             "no Keeper node is leader (fewer than 2 of 3 up), or a ClickHouse node has no Keeper session, for 2 min",
             [promql("no Keeper leader", f"(sum({KEEPER_LEADER}) or vector(0)) < 1", duration="120s",
                     rule="clickhouse-keeper-quorum-lost", severity="critical"),
              promql("ClickHouse without a Keeper session", f"max by (node) ({KEEPER_SESSION}) < 1", duration="120s",
                     rule="clickhouse-keeper-session-lost", severity="critical")],
             Runbook("Replicated tables are read-only without Keeper: inserts into the analytics table fail.",
                     ("Keeper nodes up? `echo mntr | openssl s_client -quiet -connect <keeper>:9281` over IAP.",
                      "Two of three Keeper nodes must be up for a quorum; bring the failed ones back first.",
                      "Never wipe a Keeper's data disk to 'fix' it: that loses the replication log."),
                     rollback=False)),
    ]


def dashboard_row(ch: ClickHouseConfig) -> list:
    """The ClickHouse row of the System Health dashboard."""
    return [
        Section("ClickHouse", f"analytics cluster {ch.cluster_name}: {ch.shards} shard(s) x {ch.replicas} replica(s), 3 Keeper nodes"),
        XyChart("ClickHouse and Keeper nodes reporting", [
            Series(PromQL(f"count by (job) ({UPTIME} or {KEEPER_LEADER})"), "{{job}}")], "nodes",
            [Threshold(ch.shards * ch.replicas, "ClickHouse nodes configured", "YELLOW", "BELOW")]),
        XyChart("Replica delay (s)", [Series(PromQL(f"max by (node) ({REPLICA_DELAY})"), "{{node}}")], "s",
                [Threshold(ch.replica_lag_seconds, "alert", "YELLOW")]),
        XyChart("Disk used (%)", [Series(Filter(disk_filter(), Aggregation(
            "300s", "ALIGN_MEAN", "REDUCE_MAX", ("resource.label.instance_id", "metric.label.device"))))], "%",
            [Threshold(ch.disk_used_percent, "alert", "YELLOW")]),
        XyChart("Keeper leader and sessions", [
            Series(PromQL(f"sum({KEEPER_LEADER})"), "Keeper leaders"),
            Series(PromQL(f"sum by (node) ({KEEPER_SESSION})"), "session {{node}}")], "count",
            [Threshold(1, "quorum lost below", "RED", "BELOW")]),
        XyChart("Queries per second by node", [Series(PromQL(f"sum by (node) (rate({QUERIES}[5m]))"), "{{node}}")],
                "queries/s"),
    ]


@dataclass(frozen=True)
class ClickHouseAlertsArgs:
    site: Site
    clickhouse: ClickHouseConfig
    routing: AlertRouting = AlertRouting()


class ClickHouseAlerts(pulumi.ComponentResource):
    """The four cluster alerts, routed like the seed alerts (severity -> channels)."""

    def __init__(self, name: str, args: ClickHouseAlertsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(COMPONENT_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.specs = alert_specs(args.clickhouse)
        self.policies = {s.key: declare(s, args.site, args.routing, child) for s in self.specs}
        self.register_outputs({})
