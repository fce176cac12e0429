"""The analytics schema: seed 001's `token_usage_tracking`, as ClickHouse tables, and the SQL the dashboards run.

Seed 001 declares the table for PostgreSQL (UUID primary key, an index on (user_id, created_at)).
In ClickHouse the sorting key plays the index's part: ORDER BY (user_id, created_at, id) serves
"one user's usage over a period" from a contiguous range; ReplacingMergeTree on that key drops a
row inserted twice (a retried batch), which is what the PostgreSQL primary key guaranteed.
Two columns are added beyond the seed's: `model` and `cost_saved_usd`, which the business and
revenue dashboards need (savings per user, per model).

On the cluster (`cluster` given): each shard holds `<table>_local` (ReplicatedReplacingMergeTree,
Keeper path keyed by the `{shard}` and `{replica}` macros the server XML defines) and
`<table>` is a Distributed table over them, sharded by user so one user's rows live on one shard.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

TABLE = "token_usage_tracking"
COLUMNS = """(
    id UUID,
    user_id UUID,
    session_key String,
    agent_name LowCardinality(String),
    model LowCardinality(String) DEFAULT '',
    tokens_used UInt32,
    cost_usd Decimal(10, 6),
    cost_saved_usd Decimal(10, 6) DEFAULT 0,
    optimization_applied Bool DEFAULT false,
    created_at DateTime64(3, 'UTC') DEFAULT now64(3)
)"""
TABLE_SETTINGS = """PARTITION BY toYYYYMM(created_at)
ORDER BY (user_id, created_at, id)
TTL toDateTime(created_at) + INTERVAL {ttl_days} DAY DELETE
SETTINGS index_granularity = 8192"""
MACROS = ("shard", "replica")  # what the Replicated engine's path needs from <macros>


def ddl(database: str, cluster: Optional[str] = None, ttl_days: int = 730) -> list[str]:
    """CREATE statements in order. `cluster=None`: the single-node MergeTree equivalent (what chdb runs)."""
    settings = TABLE_SETTINGS.format(ttl_days=ttl_days)
    if cluster is None:
        return [f"CREATE DATABASE IF NOT EXISTS {database}",
                f"CREATE TABLE IF NOT EXISTS {database}.{TABLE}\n{COLUMNS}\nENGINE = ReplacingMergeTree\n{settings}"]
    on = f" ON CLUSTER {cluster}"
    keeper_path = f"/clickhouse/tables/{{shard}}/{database}/{TABLE}"
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}{on}",
        f"CREATE TABLE IF NOT EXISTS {database}.{TABLE}_local{on}\n{COLUMNS}\n"
        f"ENGINE = ReplicatedReplacingMergeTree('{keeper_path}', '{{replica}}')\n{settings}",
        f"CREATE TABLE IF NOT EXISTS {database}.{TABLE}{on} AS {database}.{TABLE}_local\n"
        f"ENGINE = Distributed({cluster}, {database}, {TABLE}_local, cityHash64(user_id))",
    ]


@dataclass(frozen=True)
class Sql:
    """A ClickHouse query behind a dashboard panel. `$__fromTime` / `$__toTime` are the Grafana
    ClickHouse data source's macros for the dashboard's time range."""

    text: str
    database: str = "analytics"

    def bound(self, start: str, end: str) -> str:
        """The query with the time-range macros replaced by literal DateTime values (what the data source sends)."""
        return (self.text.replace("$__fromTime", f"toDateTime('{start}')")
                .replace("$__toTime", f"toDateTime('{end}')"))


def _range(column: str = "created_at") -> str:
    return f"{column} >= $__fromTime AND {column} < $__toTime"


# Seed 001, Business Metrics and Revenue Impact dashboards, from the analytics table.
COST_SAVINGS_PER_USER = Sql(f"""SELECT user_id, sum(cost_saved_usd) AS saved_usd, sum(cost_usd) AS spent_usd
FROM {{db}}.{TABLE} FINAL
WHERE {_range()}
GROUP BY user_id
ORDER BY saved_usd DESC
LIMIT 20""")
MONTHLY_COST_REDUCTION = Sql(f"""SELECT toStartOfMonth(created_at) AS month,
       sum(cost_saved_usd) AS saved_usd,
       sum(cost_usd) AS spent_usd,
       if(saved_usd + spent_usd = 0, 0, toFloat64(saved_usd / (saved_usd + spent_usd))) AS reduction
FROM {{db}}.{TABLE} FINAL
WHERE {_range()}
GROUP BY month
ORDER BY month""")
OPTIMIZED_SHARE_BY_AGENT = Sql(f"""SELECT agent_name, countIf(optimization_applied) / count() AS optimized_share,
       sum(tokens_used) AS tokens
FROM {{db}}.{TABLE} FINAL
WHERE {_range()}
GROUP BY agent_name
ORDER BY tokens DESC""")
DAILY_ACTIVE_COST_USERS = Sql(f"""SELECT toDate(created_at) AS day, uniqExact(user_id) AS users
FROM {{db}}.{TABLE}
WHERE {_range()}
GROUP BY day
ORDER BY day""")


def queries(database: str) -> dict[str, Sql]:
    """The dashboard queries against `database` (the stack's analytics database)."""
    return {name: Sql(q.text.replace("{db}", database), database) for name, q in (
        ("cost_savings_per_user", COST_SAVINGS_PER_USER),
        ("monthly_cost_reduction", MONTHLY_COST_REDUCTION),
        ("optimized_share_by_agent", OPTIMIZED_SHARE_BY_AGENT),
        ("daily_active_cost_users", DAILY_ACTIVE_COST_USERS),
    )}
