"""Analytics: the ClickHouse artefacts rendered from config, checked by the engines available offline.

- chdb (a current ClickHouse engine, pinned in requirements-dev.txt) runs the analytics table's DDL (the
  single-node MergeTree equivalent: a Replicated engine needs Keeper, which chdb does not run) and every
  ClickHouse query the dashboards use, on generated rows; it parses (EXPLAIN AST) the cluster DDL with
  the Replicated and Distributed engines.
- The server, users and Keeper XML are parsed with xml.etree and walked against the keys ClickHouse
  documents for the sections we render (remote_servers, macros, zookeeper, keeper_server, ...), plus the
  cross-file invariants (every replica a node, every Keeper in the Raft set, macros the DDL needs).
- The boot script passes `bash -n` and shellcheck.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from infra.components.clickhouse import render, schema, topology
from infra.wiring import cluster_spec
from infra.config import load_stack_config
from tests.conftest import config_problems, flat, stack_config

LEAF = None
ANY = "any"
PORT = "port"
BOOL = "bool"
INT = "int"

# The keys ClickHouse documents for each section we render (server settings reference: remote_servers,
# zookeeper, macros, openSSL, prometheus, storage_configuration, backups; Keeper's keeper_server reference).
REPLICA = {"host": LEAF, "port": PORT, "user": LEAF, "password": LEAF, "secure": BOOL, "compression": BOOL,
           "priority": INT, "bind_host": LEAF}
SHARD = {"internal_replication": BOOL, "weight": INT, "replica": REPLICA}
CLUSTER = {"shard": SHARD, "secret": LEAF, "allow_distributed_ddl_queries": BOOL}
ZOOKEEPER = {"node": {"host": LEAF, "port": PORT, "secure": BOOL, "availability_zone": LEAF},
             "session_timeout_ms": INT, "operation_timeout_ms": INT, "connection_timeout_ms": INT, "root": LEAF,
             "identity": LEAF, "zookeeper_load_balancing": LEAF, "fallback_session_lifetime": ANY,
             "use_compression": BOOL, "availability_zone_autodetect": BOOL, "prefer_local_availability_zone": BOOL,
             "implementation": LEAF, "enable_fault_injections_during_startup": BOOL, "send_receive_timeout_ms": INT}
OPENSSL_SIDE = {"certificateFile": LEAF, "privateKeyFile": LEAF, "caConfig": LEAF, "verificationMode": LEAF,
                "loadDefaultCAFile": BOOL, "cacheSessions": BOOL, "disableProtocols": LEAF, "preferServerCiphers": BOOL,
                "cipherList": LEAF, "dhParamsFile": LEAF, "invalidCertificateHandler": {"name": LEAF},
                "requireTLSv1_2": BOOL}
OPENSSL = {"server": OPENSSL_SIDE, "client": OPENSSL_SIDE}
PROMETHEUS = {"endpoint": LEAF, "port": PORT, "metrics": BOOL, "events": BOOL, "asynchronous_metrics": BOOL, "errors": BOOL}
S3_DISK = {"type": LEAF, "endpoint": LEAF, "access_key_id": LEAF, "secret_access_key": LEAF,
           "support_batch_delete": BOOL, "region": LEAF, "use_environment_credentials": BOOL, "metadata_path": LEAF}
SERVER = {
    "listen_host": LEAF, "interserver_http_host": LEAF, "tcp_port": PORT, "http_port": PORT,
    "interserver_http_port": PORT, "tcp_port_secure": PORT, "https_port": PORT, "interserver_https_port": PORT,
    "interserver_http_credentials": {"user": LEAF, "password": LEAF, "allow_empty": BOOL},
    "openSSL": OPENSSL, "remote_servers": ANY, "zookeeper": ZOOKEEPER, "macros": ANY,
    "distributed_ddl": {"path": LEAF, "profile": LEAF, "pool_size": INT, "task_max_lifetime": INT,
                        "cleanup_delay_period": INT, "max_tasks_in_queue": INT},
    "prometheus": PROMETHEUS,
    "storage_configuration": {"disks": ANY, "policies": ANY},
    "backups": {"allowed_disk": LEAF, "allowed_path": LEAF},
}
COORDINATION = {k: INT for k in (
    "operation_timeout_ms", "min_session_timeout_ms", "session_timeout_ms", "dead_session_check_period_ms",
    "heart_beat_interval_ms", "election_timeout_lower_bound_ms", "election_timeout_upper_bound_ms",
    "rotate_log_storage_interval", "reserved_log_items", "snapshot_distance", "snapshots_to_keep", "stale_log_gap",
    "fresh_log_gap", "max_requests_batch_size", "shutdown_timeout", "startup_timeout")}
COORDINATION.update({"raft_logs_level": LEAF, "force_sync": BOOL, "quorum_reads": BOOL, "auto_forwarding": BOOL,
                     "async_replication": BOOL, "compress_logs": BOOL})
KEEPER_SERVER = {
    "tcp_port": PORT, "tcp_port_secure": PORT, "server_id": INT, "log_storage_path": LEAF,
    "snapshot_storage_path": LEAF, "four_letter_word_white_list": LEAF, "hostname_checks_enabled": BOOL,
    "enable_reconfiguration": BOOL, "max_memory_usage_soft_limit": INT, "digest_enabled": BOOL,
    "create_snapshot_on_exit": BOOL, "coordination_settings": COORDINATION,
    "raft_configuration": {"secure": BOOL, "server": {"id": INT, "hostname": LEAF, "port": PORT,
                                                      "can_become_leader": BOOL, "priority": INT,
                                                      "start_as_follower": BOOL}},
    "http_control": ANY,
}
KEEPER = {"listen_host": LEAF, "keeper_server": KEEPER_SERVER, "openSSL": OPENSSL, "prometheus": PROMETHEUS,
          "logger": ANY}
USERS = {"profiles": ANY, "users": ANY, "quotas": ANY}
USER = {"password_sha256_hex": LEAF, "networks": {"ip": LEAF, "host": LEAF}, "profile": LEAF, "quota": LEAF,
        "allow_databases": {"database": LEAF}, "access_management": BOOL}


def check(element: ET.Element, schema_: dict, path: str = "") -> list[str]:
    """Every child a documented key of its section, every value of the documented kind."""
    found = []
    for child in element:
        where = f"{path}/{child.tag}"
        if child.tag not in schema_:
            found.append(f"{where}: not a documented key here")
            continue
        kind = schema_[child.tag]
        if child.get("remove") or child.get("from_env"):  # ClickHouse's documented substitution attributes
            if (child.text or "").strip() or len(child):
                found.append(f"{where}: remove/from_env with a value")
        elif isinstance(kind, dict):
            found += check(child, kind, where)
        elif kind != ANY and len(child):
            found.append(f"{where}: a value, not a section")
        elif kind in (PORT, INT) and not (child.text or "").isdigit():
            found.append(f"{where}: not an integer: {child.text!r}")
        elif kind == PORT and not 1 <= int(child.text) <= 65535:
            found.append(f"{where}: not a port: {child.text}")
        elif kind == BOOL and (child.text or "").lower() not in ("true", "false", "1", "0"):
            found.append(f"{where}: not a boolean: {child.text!r}")
    return found


def parse(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0"?>\n')
    root = ET.fromstring(text)
    assert root.tag == "clickhouse"
    return root


def cfg_of(stack: str):
    return load_stack_config(flat(stack_config(stack)), stack)


@pytest.fixture(scope="module", params=["prod", "staging"])
def cluster(request):
    return cluster_spec(cfg_of(request.param))


# ---------------------------------------------------------------- server, users and Keeper XML

def test_server_xml_uses_only_documented_keys(cluster):
    for node in cluster.nodes:
        root = parse(render.server_xml(cluster, node))
        assert check(root, SERVER) == []
        topo = root.find(f"remote_servers/{cluster.name}")
        assert topo is not None and check(topo, CLUSTER) == []
        assert {d.tag for d in root.find("storage_configuration/disks")} == {render.BACKUP_DISK}
        assert check(root.find(f"storage_configuration/disks/{render.BACKUP_DISK}"), S3_DISK) == []


def test_a_misspelt_key_is_caught():
    root = ET.fromstring("<clickhouse><zookeeper><node><hots>k</hots></node></zookeeper><tcp_port>x</tcp_port></clickhouse>")
    assert check(root, SERVER) == ["/zookeeper/node/hots: not a documented key here", "/tcp_port: not an integer: 'x'"]


def test_topology_one_zone_per_replica_every_replica_a_node(cluster):
    root = parse(render.server_xml(cluster, cluster.nodes[0]))
    shards = root.findall(f"remote_servers/{cluster.name}/shard")
    by_shard = topology.shards(list(cluster.nodes))
    assert len(shards) == len(by_shard)
    for shard, nodes in zip(shards, by_shard.values()):
        assert shard.findtext("internal_replication") == "true"
        hosts = [r.findtext("host") for r in shard.findall("replica")]
        assert hosts == [n.fqdn for n in nodes]
        assert len({n.zone for n in nodes}) == len(nodes), "one zone per replica"
        assert {r.findtext("port") for r in shard.findall("replica")} == {str(topology.NATIVE_TLS_PORT)}
        assert {r.findtext("secure") for r in shard.findall("replica")} == {"1"}


def test_macros_are_per_node_and_what_the_replicated_ddl_needs(cluster):
    replicas, shards = set(), {}
    for node in cluster.nodes:
        macros = parse(render.server_xml(cluster, node)).find("macros")
        values = {m.tag: m.text for m in macros}
        assert set(schema.MACROS) <= set(values)
        replicas.add(values["replica"])
        shards.setdefault(node.shard, set()).add(values["shard"])
        assert values["replica"] == node.name
    assert len(replicas) == len(cluster.nodes), "a replica name is unique"
    assert all(len(v) == 1 for v in shards.values()) and len({min(v) for v in shards.values()}) == len(shards)
    needed = {m for stmt in schema.ddl("analytics", "netra") for m in re.findall(r"\{(\w+)\}", stmt)}
    assert needed == set(schema.MACROS)


def test_zookeeper_section_lists_the_keeper_nodes_over_tls(cluster):
    zk = parse(render.server_xml(cluster, cluster.nodes[0])).find("zookeeper")
    assert [(n.findtext("host"), n.findtext("port"), n.findtext("secure")) for n in zk.findall("node")] == [
        (k.fqdn, str(topology.KEEPER_CLIENT_PORT), "1") for k in cluster.keepers]
    assert len(cluster.keepers) == 3 and len({k.zone for k in cluster.keepers}) == 3


def test_keeper_xml_documented_keys_and_raft_membership(cluster):
    ids = set()
    for keeper in cluster.keepers:
        root = parse(render.keeper_xml(cluster, keeper))
        assert check(root, KEEPER) == []
        ks = root.find("keeper_server")
        assert ks.findtext("tcp_port_secure") == str(topology.KEEPER_CLIENT_PORT)
        servers = {int(s.findtext("id")): (s.findtext("hostname"), s.findtext("port"))
                   for s in ks.findall("raft_configuration/server")}
        assert servers == {k.keeper_id: (k.fqdn, str(topology.KEEPER_RAFT_PORT)) for k in cluster.keepers}
        assert int(ks.findtext("server_id")) == keeper.keeper_id and ks.findtext("raft_configuration/secure") == "true"
        ids.add(keeper.keeper_id)
    assert ids == {1, 2, 3}


def test_tls_only_and_no_secret_in_any_rendered_file(cluster):
    server = parse(render.server_xml(cluster, cluster.nodes[0]))
    for plain in ("tcp_port", "http_port", "interserver_http_port"):
        assert server.find(plain).get("remove") == "1", plain
    assert server.findtext("openSSL/client/verificationMode") == "strict"
    users = parse(render.users_xml(cluster))
    docs = [server, users, parse(render.keeper_xml(cluster, cluster.keepers[0]))]
    for doc in docs:
        for e in doc.iter():
            if re.search(r"password|secret|access_key", e.tag):
                assert e.get("from_env") and not (e.text or "").strip(), f"{e.tag} carries a value"


def test_users_xml(cluster):
    root = parse(render.users_xml(cluster))
    assert check(root, USERS) == []
    users = root.find("users")
    assert users.find("default").get("remove") == "remove", "no passwordless default user"
    for user in users:
        if user.tag == "default":
            continue
        assert check(user, USER) == [], user.tag
        assert user.find("password_sha256_hex").get("from_env") in {f"{v}_SHA256" for v in render.HASHED}
    assert [ip.text for ip in users.find(f"{render.ADMIN_USER}/networks")][:2] == ["127.0.0.1", "::1"]
    assert root.findtext(f"users/{render.GRAFANA_USER}/profile") == "readonly"
    assert root.findtext("profiles/readonly/readonly") == "1"
    assert {d.text for d in users.findall(f"{cluster.app_user}/allow_databases/database")} == {cluster.database}


def test_boot_script_passes_bash_n_and_shellcheck(cluster):
    ids = {k: f"prod-{k}" for k in (*render.NODE_SECRETS, *render.TLS_SECRETS)}
    scripts = [render.startup_script("clickhouse", cluster.version, ids, "netra-production", ("02:30", 7)),
               render.startup_script("keeper", cluster.version, ids, "netra-production")]
    for script in scripts:
        assert cluster.version in script and "apt-mark hold" in script
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)
        if shutil.which("shellcheck"):
            out = subprocess.run(["shellcheck", "-s", "bash", "-"], input=script, text=True, capture_output=True)
            assert out.returncode == 0, out.stdout
    assert "BACKUP DATABASE" in scripts[0] and "BACKUP" not in scripts[1]
    assert "SETTINGS base_backup" in scripts[0]  # incremental between the full backups
    for secret_id in ids.values():
        assert "secret-value" not in secret_id


def test_ops_agent_config_scrapes_the_local_prometheus_endpoint(cluster):
    import yaml

    for node in (*cluster.nodes, *cluster.keepers):
        doc = yaml.safe_load(render.ops_agent_yaml(node))
        scrape = doc["metrics"]["receivers"]["prometheus"]["config"]["scrape_configs"][0]
        assert scrape["job_name"] == render.job(node.role)
        assert scrape["static_configs"][0] == {"targets": [f"localhost:{topology.PROMETHEUS_PORT}"],
                                               "labels": {"node": node.name}}
        assert doc["logging"]["service"]["pipelines"]


# ---------------------------------------------------------------- DDL and queries in a real ClickHouse engine (chdb)

@pytest.fixture(scope="module")
def chdb_session():
    from chdb import session

    s = session.Session()
    for stmt in schema.ddl("analytics"):
        s.query(stmt)
    # 2000 rows over 10 users, two agents, November 2026; every 5th row inserted twice (a retried batch).
    rows = """SELECT toUUID(concat('00000000-0000-0000-0000-', leftPad(toString(number), 12, '0'))) AS id,
                     toUUID(concat('00000000-0000-0000-0001-', leftPad(toString(number % 10), 12, '0'))),
                     concat('s-', toString(number % 50)), ['triage', 'optimizer'][number % 2 + 1], 'gpt-4',
                     100 + number % 900, toDecimal64(0.01, 6), toDecimal64(if(number % 3 = 0, 0.004, 0), 6),
                     number % 3 = 0, toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + number * 600
              FROM numbers(2000)"""
    s.query(f"INSERT INTO analytics.{schema.TABLE} {rows}")
    s.query(f"INSERT INTO analytics.{schema.TABLE} SELECT * FROM ({rows}) WHERE toUInt64(right(toString(id), 4)) % 5 = 0")
    return s


def test_chdb_runs_the_mergetree_ddl_and_deduplicates_like_the_primary_key(chdb_session):
    raw = int(chdb_session.query(f"SELECT count() FROM analytics.{schema.TABLE}", "CSV").bytes())
    final = int(chdb_session.query(f"SELECT count() FROM analytics.{schema.TABLE} FINAL", "CSV").bytes())
    assert raw == 2400 and final == 2000
    engine = chdb_session.query(f"SELECT engine, sorting_key FROM system.tables WHERE name = '{schema.TABLE}'", "CSV").bytes()
    assert engine.decode().strip() == '"ReplacingMergeTree","user_id, created_at, id"'


def test_chdb_runs_every_dashboard_query(chdb_session):
    results = {}
    for name, query in schema.queries("analytics").items():
        out = chdb_session.query(query.bound("2026-11-01 00:00:00", "2026-12-01 00:00:00"), "JSON")
        import json

        results[name] = json.loads(out.bytes())["data"]
        assert results[name], name
    assert len(results["cost_savings_per_user"]) == 10
    assert {r["agent_name"] for r in results["optimized_share_by_agent"]} == {"triage", "optimizer"}
    month = results["monthly_cost_reduction"]
    assert len(month) == 1 and 0 < float(month[0]["reduction"]) < 1
    # 2000 distinct rows x 0.01 USD spent, every third saved 0.004 USD: FINAL counts each row once
    assert float(month[0]["spent_usd"]) == pytest.approx(20.0) and float(month[0]["saved_usd"]) == pytest.approx(667 * 0.004)


def test_chdb_runs_the_sql_of_every_dashboard_panel(chdb_session):
    """The SQL as the dashboards carry it (not a copy): every ClickHouse panel of both stacks' dashboards."""
    from infra.components.observability.dashboard_model import SqlPanel
    from infra.components.observability.dashboards import build_dashboards
    from infra.wiring import dashboards_args

    seen = set()
    for stack in ("prod", "staging"):
        cfg = cfg_of(stack)
        for d in build_dashboards(dashboards_args(cfg, {k: "r" for k in cfg.services})):
            for w in d.widgets:
                if isinstance(w, SqlPanel):
                    out = chdb_session.query(w.sql.bound("2026-11-01 00:00:00", "2026-12-01 00:00:00"), "CSV")
                    assert out.bytes().strip(), (d.display_name, w.title)
                    seen.add(w.sql.text)
    assert seen == {q.text for q in schema.queries("analytics").values()}


def test_chdb_parses_the_replicated_and_distributed_ddl():
    """A Replicated engine needs Keeper (chdb has none): the cluster DDL is parsed, not executed."""
    from chdb import session

    s = session.Session()
    stmts = schema.ddl("analytics", "netra")
    asts = [s.query("EXPLAIN AST " + stmt, "TSVRaw").bytes().decode() for stmt in stmts]
    assert "Function ReplicatedReplacingMergeTree" in asts[1]
    assert "Literal '/clickhouse/tables/{shard}/analytics/token_usage_tracking'" in asts[1]
    assert "Function Distributed" in asts[2] and "Function cityHash64" in asts[2]
    with pytest.raises(Exception):
        s.query("EXPLAIN AST CREATE TABLE t (id UUID) ENGINE = ReplicatedMergeTree('/p/{shard}', '{replica}' ORDER BY id")


# ---------------------------------------------------------------- config

def test_both_stacks_declare_a_cluster_staging_smaller():
    prod, staging = cfg_of("prod").platform.clickhouse, cfg_of("staging").platform.clickhouse
    assert prod.version == staging.version and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", prod.version)
    # staging rehearses prod's topology (sharding, replication, Keeper quorum) on smaller VMs and disks
    assert (prod.shards, prod.replicas) == (staging.shards, staging.replicas)
    assert prod.disk_size_gb > staging.disk_size_gb and prod.machine_type != staging.machine_type


@pytest.mark.parametrize("key,value,message", [
    ("version", "latest", "should match pattern"),
    ("replicas", 4, "must be <= the number of zones (3: one zone per replica), got 4"),
    ("zones", ["a", "b"], "at least 3 different zone letters"),
    ("subnetCidr", "10.8.0.0/24", "overlaps network.subnetCidr 10.8.0.0/22"),
    ("subnetCidr", "8.8.8.0/24", "private IPv4 range"),
    ("replicas", 1, "must be >= 2 in prod"),
    ("diskType", "pd-standard", "pd-ssd"),
])
def test_bad_clickhouse_config_names_its_key(key, value, message):
    cfg = stack_config("prod")
    cfg["netra:platform"]["clickhouse"][key] = value
    found = config_problems(cfg)
    hits = {k: m for k, m in found.items() if k.startswith(f"netra:platform.clickhouse.{key}")}
    assert hits and any(message in m for m in hits.values()), found


@pytest.mark.parametrize("key,value,message", [
    ("prometheus", {"sidecarImage": "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar"},
     "pinned to a version tag or digest"),
    ("prometheus", {"scrapeIntervalSeconds": 1}, "greater than or equal to 5"),
    ("grafana", {"domain": "https://grafana", "viewers": ["group:x@y.z"]}, "fully qualified hostname"),
    ("grafana", {"domain": "grafana.netra.ai", "viewers": []}, "at least 1 item"),
    ("grafana", {"domain": "grafana.netra.ai", "viewers": ["x@y.z"]}, "must be an IAM member (user:name@netra.ai, group:name@netra.ai, domain:netra.ai"),
])
def test_bad_prometheus_and_grafana_config_name_their_key(key, value, message):
    cfg = stack_config("prod")
    cfg["netra:observability"][key] = value
    found = config_problems(cfg)
    assert any(k.startswith(f"netra:observability.{key}") and message in m for k, m in found.items()), found


def test_the_backup_script_inside_the_boot_script_passes_shellcheck(cluster):
    ids = {k: f"prod-{k}" for k in (*render.NODE_SECRETS, *render.TLS_SECRETS)}
    script = render.startup_script("clickhouse", cluster.version, ids, "netra-production", ("02:30", 7))
    inner = script.split("<<'BACKUP'\n", 1)[1].split("\nBACKUP\n", 1)[0]
    subprocess.run(["bash", "-n"], input=inner, text=True, check=True)
    if shutil.which("shellcheck"):
        out = subprocess.run(["shellcheck", "-s", "bash", "-"], input=inner, text=True, capture_output=True)
        assert out.returncode == 0, out.stdout


# ---------------------------------------------------------------- one dashboard model, two renderers

def _cm_filter(text: str) -> frozenset:
    clauses = []
    for part in text.split(" AND "):
        m = re.fullmatch(r'([\w.]+)(!=|=)(?:one_of\((.*)\)|"(.*)")', part)
        assert m, part
        values = re.findall(r'"([^"]*)"', m.group(3)) if m.group(3) is not None else [m.group(4)]
        clauses.append((m.group(1), m.group(2), frozenset(values)))
    return frozenset(clauses)


def _grafana_filter(tokens: list[str]) -> frozenset:
    clauses = []
    for i in range(0, len(tokens), 4):
        key, op, value = tokens[i:i + 3]
        assert i + 3 == len(tokens) or tokens[i + 3] == "AND"
        values = [re.sub(r"\\(.)", r"\1", v) for v in value.split("|")] if op in ("=~", "!=~") else [value]
        clauses.append((key, op.rstrip("~"), frozenset(values)))
    return frozenset(clauses)


def _cm_agg(agg: dict) -> tuple:
    return (agg["alignmentPeriod"], agg["perSeriesAligner"], agg.get("crossSeriesReducer", "REDUCE_NONE"),
            tuple(agg.get("groupByFields", ())))


def _grafana_agg(tsl: dict) -> tuple:
    return (tsl["alignmentPeriod"].lstrip("+"), tsl["perSeriesAligner"], tsl["crossSeriesReducer"],
            tuple(tsl.get("groupBys", ())))


def cloud_monitoring_panels(doc: dict) -> list[tuple]:
    """(title, kind, queries) of every tile, queries in a renderer-neutral form."""
    out = []
    for tile in doc["mosaicLayout"]["tiles"]:
        w = tile["widget"]
        if "sectionHeader" in w:
            out.append((w["title"], "row", ()))
        elif "text" in w:
            sql = re.search(r"```sql\n(.*)\n```", w["text"]["content"], re.S)
            out.append((w["title"], "sql", (sql.group(1),)) if sql else (w["title"], "text", (w["text"]["content"],)))
        else:
            sets = [w["scorecard"]] if "scorecard" in w else w["xyChart"]["dataSets"]
            queries = []
            for s in sets:
                q = s["timeSeriesQuery"]
                if "prometheusQuery" in q:
                    queries.append(("promql", q["prometheusQuery"]))
                elif "timeSeriesFilter" in q:
                    f = q["timeSeriesFilter"]
                    queries.append(("filter", _cm_filter(f["filter"]), _cm_agg(f["aggregation"])))
                else:
                    r = q["timeSeriesFilterRatio"]
                    queries.append(("ratio", *((_cm_filter(r[p]["filter"]), _cm_agg(r[p]["aggregation"]))
                                                for p in ("numerator", "denominator"))))
            out.append((w["title"], "chart", tuple(queries)))
    return out


def grafana_panels(doc: dict) -> list[tuple]:
    out = []
    for p in doc["panels"]:
        if p["type"] == "row":
            out.append((p["title"], "row", ()))
        elif p["type"] == "text":
            out.append((p["title"], "text", (p["options"]["content"],)))
        elif p["datasource"]["type"] == "grafana-clickhouse-datasource":
            out.append((p["title"], "sql", tuple(t["rawSql"] for t in p["targets"])))
        else:
            by_ref = {t["refId"]: t for t in p["targets"]}
            queries = []
            for t in p["targets"]:
                if t.get("hide"):
                    continue
                if t.get("queryType") == "promQL":
                    queries.append(("promql", t["promQLQuery"]["expr"]))
                elif t.get("queryType") == "timeSeriesList":
                    tsl = t["timeSeriesList"]
                    queries.append(("filter", _grafana_filter(tsl["filters"]), _grafana_agg(tsl)))
                else:
                    a, b = re.fullmatch(r"\$(\w+) / \$(\w+)", t["expression"]).groups()
                    queries.append(("ratio", *((_grafana_filter(by_ref[x]["timeSeriesList"]["filters"]),
                                                _grafana_agg(by_ref[x]["timeSeriesList"])) for x in (a, b))))
            out.append((p["title"], "chart", tuple(queries)))
    return out


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_both_renderers_list_the_same_panels_and_queries(stack):
    import json

    from infra.components.observability import grafana_render
    from infra.components.observability.dashboards import build_dashboards

    cfg = cfg_of(stack)
    from infra.wiring import dashboards_args
    models = build_dashboards(dashboards_args(cfg, {k: f"netra-{k}-{stack}-0123abcd" for k in cfg.services}))
    kinds = set()
    for model in models:
        cm = cloud_monitoring_panels(json.loads(model.dumps()))
        gf = grafana_panels(json.loads(grafana_render.dumps(model, cfg.project)))
        assert cm == gf, model.display_name
        assert len(cm) == len(model.widgets)
        kinds |= {kind if kind == "sql" else q[0] for _, kind, qs in cm for q in qs if kind in ("sql", "chart")}
    assert kinds == {"filter", "ratio", "promql", "sql"}


def test_parity_check_would_catch_a_renderer_that_drops_a_clause():
    from infra.components.observability import grafana_render

    f = grafana_render.filter_tokens(__import__("infra.components.observability.queries", fromlist=["x"]).metric_filter_of(
        "run.googleapis.com/request_count", "cloud_run_revision", ["a-b", "c.d"], {"response_code_class": "5xx"}))
    assert _grafana_filter(f) == _cm_filter(str(__import__("infra.components.observability.queries", fromlist=["x"]).metric_filter_of(
        "run.googleapis.com/request_count", "cloud_run_revision", ["a-b", "c.d"], {"response_code_class": "5xx"})))
    assert _grafana_filter(f[:-4]) != _cm_filter(
        'metric.type="run.googleapis.com/request_count" AND resource.type="cloud_run_revision" AND '
        'resource.label.service_name=one_of("a-b","c.d") AND metric.label.response_code_class="5xx"')


# ---------------------------------------------------------------- Managed Prometheus sidecar config

# The RunMonitoring schema as the sidecar itself reads it (GoogleCloudPlatform/run-gmp-sidecar,
# confgenerator/config.go: RunMonitoringConfig, ScrapeEndpoint, RunTargetLabels; allowedTargetMetadata).
RUN_MONITORING = {"apiVersion", "kind", "metadata", "spec"}
RUN_SPEC = {"endpoints", "targetLabels", "limits"}
SCRAPE_ENDPOINT = {"port", "scheme", "path", "params", "proxyUrl", "interval", "timeout", "metricRelabeling"}
TARGET_METADATA = {"instance", "revision", "service", "configuration"}
PROM_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_run_monitoring_config_is_what_the_sidecar_accepts(stack):
    import yaml

    from infra.components import prometheus

    prom = cfg_of(stack).observability.prometheus
    doc = yaml.safe_load(prometheus.run_monitoring_yaml(prom))
    assert set(doc) <= RUN_MONITORING and set(doc["spec"]) <= RUN_SPEC
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.googleapis.com/v1beta", "RunMonitoring")
    [endpoint] = doc["spec"]["endpoints"]
    assert set(endpoint) <= SCRAPE_ENDPOINT
    assert endpoint == {"port": prom.scrape_port, "path": prom.scrape_path, "interval": f"{prom.scrape_interval_seconds}s"}
    assert PROM_DURATION.match(endpoint["interval"])
    assert set(doc["spec"]["targetLabels"]["metadata"]) <= TARGET_METADATA
    assert {"service", "revision"} <= set(doc["spec"]["targetLabels"]["metadata"]), "the canary compares revisions"


# ---------------------------------------------------------------- Grafana and the sidecar, in the stack's plan

GRAFANA_OBJECT = "gcp:storage/bucketObject:BucketObject"
RUN = "gcp:cloudrunv2/service:Service"


def test_grafana_is_provisioned_with_the_same_dashboards_as_cloud_monitoring(prod_plan):
    """From the plan itself: each Cloud Monitoring dashboard and the Grafana JSON file provisioned for it list
    the same panels and queries; the data sources are provisioned from code."""
    import json

    from infra.plan.engine import is_secret, unwrap
    from tests.conftest import resources_of, run_of

    cm = {json.loads(r["inputs"]["dashboardJson"])["displayName"]: json.loads(r["inputs"]["dashboardJson"])
          for r in resources_of(prod_plan, "gcp:monitoring/dashboard:Dashboard")}
    # pulumi_gcp marks an object's `content` secret: read the wire form, where the value travels wrapped
    objects = [r for r in run_of("prod").resources if r.type == GRAFANA_OBJECT and "Grafana" in r.urn]
    assert objects and all(is_secret(r.inputs["content"]) for r in objects)
    files = {r.inputs["name"]: unwrap(r.inputs["content"]) for r in objects}
    grafana = {json.loads(t)["title"]: json.loads(t) for p, t in files.items() if p.startswith("dashboards/json/")}
    assert set(grafana) == set(cm) and len(cm) == 7
    for title in cm:
        assert cloud_monitoring_panels(cm[title]) == grafana_panels(grafana[title]), title
    sources = json.loads(files["datasources/netra.yaml"])["datasources"]
    assert [(d["type"], d["jsonData"].get("authenticationType")) for d in sources][0] == ("stackdriver", "gce")
    assert sources[1]["type"] == "grafana-clickhouse-datasource" and sources[1]["jsonData"]["secure"] is True
    assert "$__env{CLICKHOUSE_GRAFANA_PASSWORD}" == sources[1]["secureJsonData"]["password"]


def test_grafana_service_is_stateless_behind_iap_with_its_own_identity(prod_plan):
    from tests.conftest import one, resources_of

    svc = one(prod_plan, RUN, "grafana")["inputs"]
    env = {e["name"]: e.get("value") for e in svc["template"]["containers"][0]["envs"]}
    assert svc["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" and svc["labels"]["app"] == "grafana"
    assert env["GF_AUTH_JWT_HEADER_NAME"] == "X-Goog-Iap-Jwt-Assertion" and env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_DATABASE_TYPE" not in env and [v["name"] for v in svc["template"]["volumes"]][0] == "provisioning"
    assert svc["template"]["serviceAccount"].startswith("netra-grafana-prod@")
    backend = one(prod_plan, "gcp:compute/backendService:BackendService", "grafana-backend")["inputs"]
    assert backend["iap"] == {"enabled": True}
    grants = {(r["inputs"]["role"], r["inputs"]["member"]) for r in resources_of(prod_plan, "gcp:projects/iAMMember:IAMMember")
              if "grafana" in r["inputs"]["member"]}
    assert grants == {("roles/monitoring.viewer", "serviceAccount:netra-grafana-prod@netra-production.iam.gserviceaccount.com")}
    url_map = one(prod_plan, "gcp:compute/uRLMap:URLMap", "https")["inputs"]
    assert {"hosts": ["grafana.netra.ai"], "pathMatcher": "grafana"} in url_map["hostRules"]


@pytest.mark.parametrize("plan_name", ["prod_plan", "staging_plan"])
def test_every_service_revision_carries_the_gmp_sidecar(request, plan_name):
    from infra.components import prometheus
    from tests.conftest import resources_of

    plan = request.getfixturevalue(plan_name)
    services = [r for r in resources_of(plan, RUN) if r["name"] != "grafana"]
    assert services
    for r in services:
        tpl = r["inputs"]["template"]
        app, sidecar = tpl["containers"]
        assert app["name"] == "app" and app["ports"]["containerPort"]
        assert sidecar["name"] == prometheus.CONTAINER and sidecar["dependsOns"] == ["app"] and "ports" not in sidecar
        assert sidecar["image"].startswith("us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/")
        assert {"name": prometheus.VOLUME, "mountPath": prometheus.MOUNT} in sidecar["volumeMounts"]
        config = next(v for v in tpl["volumes"] if v["name"] == prometheus.VOLUME)["secret"]
        assert config["secret"].endswith("-prometheus-config") and config["items"][0]["path"] == "config.yaml"


def test_sidecar_is_a_field_of_the_revision_spec():
    """Adding the sidecar changes each revision name once; its config changes it again, nothing else does."""
    from infra.release import model as release
    from infra.wiring import candidate_revisions

    cfg = stack_config("prod")
    with_sidecar = candidate_revisions(load_stack_config(flat(cfg), "prod"))
    cfg["netra:observability"]["prometheus"]["enabled"] = False
    without = candidate_revisions(load_stack_config(flat(cfg), "prod"))
    assert all(with_sidecar[k] != without[k] for k in with_sidecar)
    cfg["netra:observability"]["prometheus"].update(enabled=True, scrapeIntervalSeconds=60)
    slower = candidate_revisions(load_stack_config(flat(cfg), "prod"))
    assert all(slower[k] != with_sidecar[k] for k in with_sidecar)
    assert release.candidate_revision  # the names are the spec's hash (infra/release.py)


# ---------------------------------------------------------------- policy: Grafana not public without auth

from .test_policy_rules import pack, pack_path  # noqa: E402,F401  (fixtures: the real pack over the analyzer protocol)


def _grafana_front(prod_plan, mutate=None, drop: str = ""):
    """Grafana's service, NEG and backend service from the prod plan, one of them mutated or dropped."""
    import copy

    from infra.plan.engine import PlannedResource

    picks = {("gcp:cloudrunv2/service:Service", "grafana"), ("gcp:compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup",
             "grafana-neg"), ("gcp:compute/backendService:BackendService", "grafana-backend")}
    out = []
    for r in prod_plan["resources"]:
        if (r["type"], r["name"]) in picks and r["name"] != drop:
            inputs = copy.deepcopy(r["inputs"])
            if mutate:
                mutate(r["name"], inputs)
            out.append(PlannedResource(r["urn"], r["type"], r["name"], r["parent"], inputs, True))
    return out


def _grafana_violations(pack, resources) -> list[str]:
    return [v.message for v in pack.analyze_stack(resources) if v.policy == "grafana-behind-auth"]


def _set_env(name, value):
    def m(rname, i):
        if rname == "grafana":
            for e in i["template"]["containers"][0]["envs"]:
                if e["name"] == name:
                    e["value"] = value
    return m


@pytest.mark.parametrize("mutate,drop,expect", [
    (lambda n, i: n == "grafana" and i.update(ingress="INGRESS_TRAFFIC_ALL"), "", "ingress INGRESS_TRAFFIC_ALL"),
    (_set_env("GF_AUTH_ANONYMOUS_ENABLED", "true"), "", "without sign-in"),
    (_set_env("GF_AUTH_JWT_ENABLED", "false"), "", "IAP's signed header"),
    (lambda n, i: n == "grafana-backend" and i.update(iap={"enabled": False}), "", "without IAP"),
    (None, "grafana-backend", "no load-balancer backend service"),
    # issue 21: the issuer alone lets an IAP token minted for another app (another project's backend) sign in
    (_set_env("GF_AUTH_JWT_EXPECT_CLAIMS", '{"iss": "https://cloud.google.com/iap"}'), "", "another app signs in"),
    (_set_env("GF_AUTH_JWT_EXPECT_CLAIMS", '{"iss": "https://cloud.google.com/iap", "aud": "netra"}'), "",
     "another app signs in"),
    (_set_env("GF_AUTH_JWT_EXPECT_CLAIMS", '{"iss": "https://cloud.google.com/iap", "aud": "$__env{GF_LOG_MODE}"}'), "",
     "not an env var read from Secret Manager"),
    (_set_env("GF_AUTH_JWT_EXPECT_CLAIMS", '{"iss": "https://accounts.google.com", "aud": "$__env{IAP_AUDIENCE}"}'), "",
     "does not expect iss"),
], ids=["public-ingress", "anonymous", "no-iap-jwt", "iap-off", "not-behind-lb", "issuer-only", "audience-not-a-backend",
        "audience-from-plain-env", "other-issuer"])
def test_grafana_behind_auth_policy(pack, prod_plan, mutate, drop, expect):
    assert _grafana_violations(pack, _grafana_front(prod_plan)) == []  # the stack as built passes
    found = _grafana_violations(pack, _grafana_front(prod_plan, mutate, drop))
    assert len(found) == 1 and expect in found[0], found


def test_a_release_of_one_service_does_not_restart_grafana(prod_plan):
    """The canary dashboard names each release's candidate: Grafana re-reads dashboard files, so its own
    revision stays (no cross-service cascade)."""
    from tests.conftest import one, plan_of

    image = "us-central1-docker.pkg.dev/netra-production/netra/backend@sha256:" + "2" * 64
    after = plan_of("prod", {"netra:services.backend.image": image})
    assert (one(after, RUN, "grafana")["inputs"]["template"]["revision"]
            == one(prod_plan, RUN, "grafana")["inputs"]["template"]["revision"])
