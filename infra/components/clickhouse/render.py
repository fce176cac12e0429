"""The files each node boots from, rendered from config: ClickHouse server and users XML, Keeper XML,
the Ops Agent config and the startup script.

No secret is ever rendered. Passwords, the cluster secret and the GCS HMAC key are read from Secret
Manager by the startup script at boot into a root-only environment file that systemd hands to the
server; the XML names them with `from_env` (ClickHouse's documented substitution). Passwords reach
users.xml only as SHA-256 hashes computed on the node.
"""
from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Mapping, Sequence

from . import topology as t
from .topology import Node

TLS_DIR = "/etc/clickhouse-tls"
CERT, KEY, CA = f"{TLS_DIR}/server.crt", f"{TLS_DIR}/server.key", f"{TLS_DIR}/ca.crt"
ENV_FILE = "/etc/default/netra-clickhouse"
BACKUP_DISK = "backups"
# Secret Manager key -> environment variable on the node. `_SHA256` ones are hashed at boot.
NODE_SECRETS = {
    "clickhouse-interserver-password": "CLICKHOUSE_INTERSERVER_PASSWORD",
    "clickhouse-admin-password": "CLICKHOUSE_ADMIN_PASSWORD",
    "clickhouse-password": "CLICKHOUSE_APP_PASSWORD",
    "clickhouse-grafana-password": "CLICKHOUSE_GRAFANA_PASSWORD",
    "clickhouse-backup-hmac-id": "GCS_HMAC_ACCESS_ID",
    "clickhouse-backup-hmac-secret": "GCS_HMAC_SECRET",
}
HASHED = ("CLICKHOUSE_ADMIN_PASSWORD", "CLICKHOUSE_APP_PASSWORD", "CLICKHOUSE_GRAFANA_PASSWORD")
TLS_SECRETS = {"clickhouse-tls-cert": CERT, "clickhouse-tls-key": KEY, "clickhouse-ca": CA}
KEEPER_SECRETS = TLS_SECRETS  # Keeper needs only its TLS files
ADMIN_USER, GRAFANA_USER, INTERSERVER_USER = "netra_admin", "grafana_ro", "interserver"


@dataclass(frozen=True)
class Cluster:
    """Everything the renderers need, as plain values."""

    name: str  # remote_servers cluster name
    database: str
    app_user: str
    nodes: tuple[Node, ...]
    keepers: tuple[Node, ...]
    client_cidrs: tuple[str, ...]  # who may log in as the app / Grafana users (the service subnet)
    node_cidr: str  # the analytics subnet (interserver, Distributed queries)
    backup_endpoint: str  # https://storage.googleapis.com/<bucket>/clickhouse/
    version: str


def _el(parent: ET.Element, tag: str, text: object = None, **attrs: str) -> ET.Element:
    e = ET.SubElement(parent, tag, attrs)
    if text is not None:
        e.text = str(text).lower() if isinstance(text, bool) else str(text)
    return e


def _doc(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _openssl(root: ET.Element) -> None:
    """Server side: our certificate; client side (Distributed, interserver, Keeper): verify against our CA."""
    ssl = _el(root, "openSSL")
    server = _el(ssl, "server")
    _el(server, "certificateFile", CERT)
    _el(server, "privateKeyFile", KEY)
    _el(server, "caConfig", CA)
    _el(server, "verificationMode", "relaxed")  # clients are not asked for certificates; passwords authenticate
    _el(server, "disableProtocols", "sslv2,sslv3,tlsv1,tlsv1_1")
    _el(server, "preferServerCiphers", True)
    client = _el(ssl, "client")
    _el(client, "caConfig", CA)
    _el(client, "verificationMode", "strict")
    _el(client, "loadDefaultCAFile", False)
    _el(client, "disableProtocols", "sslv2,sslv3,tlsv1,tlsv1_1")
    handler = _el(client, "invalidCertificateHandler")
    _el(handler, "name", "RejectCertificateHandler")


def _prometheus(root: ET.Element) -> None:
    prom = _el(root, "prometheus")
    _el(prom, "endpoint", "/metrics")
    _el(prom, "port", t.PROMETHEUS_PORT)
    for kind in ("metrics", "events", "asynchronous_metrics"):
        _el(prom, kind, True)


def server_xml(cluster: Cluster, node: Node) -> str:
    """config.d/netra.xml of one ClickHouse node."""
    root = ET.Element("clickhouse")
    _el(root, "listen_host", "0.0.0.0")
    _el(root, "interserver_http_host", node.fqdn)
    # TLS only: drop the plaintext ports the package's config.xml declares.
    for plain in ("tcp_port", "http_port", "interserver_http_port"):
        _el(root, plain, remove="1")
    _el(root, "tcp_port_secure", t.NATIVE_TLS_PORT)
    _el(root, "https_port", t.HTTPS_PORT)
    _el(root, "interserver_https_port", t.INTERSERVER_HTTPS_PORT)
    creds = _el(root, "interserver_http_credentials")
    _el(creds, "user", INTERSERVER_USER)
    _el(creds, "password", from_env=NODE_SECRETS["clickhouse-interserver-password"])
    _openssl(root)

    servers = _el(root, "remote_servers")
    topo = _el(servers, cluster.name)
    # Distributed queries between nodes authenticate with the shared cluster secret, as the initial user.
    _el(topo, "secret", from_env=NODE_SECRETS["clickhouse-interserver-password"])
    for _, replicas in sorted(t.shards(list(cluster.nodes)).items()):
        shard = _el(topo, "shard")
        _el(shard, "internal_replication", True)  # ReplicatedMergeTree replicates; Distributed writes one replica
        for r in replicas:
            replica = _el(shard, "replica")
            _el(replica, "host", r.fqdn)
            _el(replica, "port", t.NATIVE_TLS_PORT)
            _el(replica, "secure", 1)

    zk = _el(root, "zookeeper")
    for k in cluster.keepers:
        n = _el(zk, "node")
        _el(n, "host", k.fqdn)
        _el(n, "port", t.KEEPER_CLIENT_PORT)
        _el(n, "secure", 1)
    _el(zk, "session_timeout_ms", 30000)
    _el(zk, "operation_timeout_ms", 10000)
    _el(zk, "root", f"/{cluster.name}")

    macros = _el(root, "macros")
    _el(macros, "cluster", cluster.name)
    _el(macros, "shard", f"{node.shard:02d}")
    _el(macros, "replica", node.name)

    _el(root, "distributed_ddl").append(_text("path", "/clickhouse/task_queue/ddl"))
    _prometheus(root)

    # BACKUP ... TO Disk('backups', ...): an S3 disk on the GCS bucket (GCS's XML API speaks S3 with HMAC keys).
    storage = _el(root, "storage_configuration")
    disks = _el(storage, "disks")
    disk = _el(disks, BACKUP_DISK)
    _el(disk, "type", "s3")
    _el(disk, "endpoint", cluster.backup_endpoint)
    _el(disk, "access_key_id", from_env=NODE_SECRETS["clickhouse-backup-hmac-id"])
    _el(disk, "secret_access_key", from_env=NODE_SECRETS["clickhouse-backup-hmac-secret"])
    _el(disk, "support_batch_delete", False)  # GCS has no S3 DeleteObjects
    backups = _el(root, "backups")
    _el(backups, "allowed_disk", BACKUP_DISK)
    _el(backups, "allowed_path", "/var/lib/clickhouse/backups/")
    return _doc(root)


def _text(tag: str, text: object) -> ET.Element:
    e = ET.Element(tag)
    e.text = str(text)
    return e


def users_xml(cluster: Cluster) -> str:
    """users.d/netra.xml: no passwordless `default`; the app, a read-only Grafana user and a local-only admin."""
    root = ET.Element("clickhouse")
    profiles = _el(root, "profiles")
    ro = _el(profiles, "readonly")
    _el(ro, "readonly", 1)
    _el(ro, "max_execution_time", 60)
    users = _el(root, "users")
    _el(users, "default", remove="remove")

    def user(name: str, env: str, cidrs: Sequence[str], profile: str, databases: Sequence[str] = (),
             manage: bool = False) -> None:
        u = _el(users, name)
        _el(u, "password_sha256_hex", from_env=f"{env}_SHA256")
        nets = _el(u, "networks")
        for c in cidrs:
            _el(nets, "ip", c)
        _el(u, "profile", profile)
        _el(u, "quota", "default")
        if databases:
            allowed = _el(u, "allow_databases")
            for d in databases:
                _el(allowed, "database", d)
        if manage:
            _el(u, "access_management", 1)

    user(cluster.app_user, NODE_SECRETS["clickhouse-password"], (*cluster.client_cidrs, cluster.node_cidr), "default",
         (cluster.database,))
    user(GRAFANA_USER, NODE_SECRETS["clickhouse-grafana-password"], (*cluster.client_cidrs, cluster.node_cidr),
         "readonly", (cluster.database,))
    # Operators: SSH through IAP, then clickhouse-client on the node itself.
    user(ADMIN_USER, NODE_SECRETS["clickhouse-admin-password"], ("127.0.0.1", "::1", cluster.node_cidr), "default",
         manage=True)
    return _doc(root)


def keeper_xml(cluster: Cluster, node: Node) -> str:
    """keeper_config.d/netra.xml of one Keeper node."""
    root = ET.Element("clickhouse")
    _el(root, "listen_host", "0.0.0.0")
    ks = _el(root, "keeper_server")
    _el(ks, "tcp_port_secure", t.KEEPER_CLIENT_PORT)
    _el(ks, "server_id", node.keeper_id)
    _el(ks, "log_storage_path", "/var/lib/clickhouse-keeper/coordination/log")
    _el(ks, "snapshot_storage_path", "/var/lib/clickhouse-keeper/coordination/snapshots")
    _el(ks, "four_letter_word_white_list", "conf,cons,crst,envi,ruok,srst,srvr,stat,wchs,dirs,mntr,isro")
    coord = _el(ks, "coordination_settings")
    _el(coord, "operation_timeout_ms", 10000)
    _el(coord, "session_timeout_ms", 30000)
    _el(coord, "raft_logs_level", "warning")
    raft = _el(ks, "raft_configuration")
    _el(raft, "secure", True)
    for k in cluster.keepers:
        server = _el(raft, "server")
        _el(server, "id", k.keeper_id)
        _el(server, "hostname", k.fqdn)
        _el(server, "port", t.KEEPER_RAFT_PORT)
    _openssl(root)
    _prometheus(root)
    return _doc(root)


def job(role: str) -> str:
    """The Prometheus job name of a role's scrape (a label of every series it writes)."""
    return "clickhouse" if role == "clickhouse" else "clickhouse-keeper"


def ops_agent_yaml(node: Node) -> str:
    """Ops Agent: the server's error log to Cloud Logging, its Prometheus endpoint to Managed Prometheus,
    every series labelled with the node's name (`node`)."""
    role = node.role
    log = ("/var/log/clickhouse-server/clickhouse-server.err.log" if role == "clickhouse"
           else "/var/log/clickhouse-keeper/clickhouse-keeper.err.log")
    job_name = job(role)
    receiver = job_name.replace("-", "_")
    return f"""logging:
  receivers:
    {receiver}:
      type: files
      include_paths: [{log}]
  service:
    pipelines:
      {receiver}:
        receivers: [{receiver}]
metrics:
  receivers:
    prometheus:
      type: prometheus
      config:
        scrape_configs:
          - job_name: {job_name}
            scrape_interval: 30s
            static_configs:
              - targets: ['localhost:{t.PROMETHEUS_PORT}']
                labels:
                  node: {node.name}
  service:
    pipelines:
      prometheus:
        receivers: [prometheus]
"""


# Third-party packages of the nodes (docs/supply-chain.md): apt repositories trusted only with the key whose
# fingerprint is pinned here. ClickHouse's repository key (the fingerprint ClickHouse's own server images
# receive); Google's packages key: the Rapture signing key and the Artifact Registry repository signer.
CLICKHOUSE_APT = "https://packages.clickhouse.com/deb"
CLICKHOUSE_KEY_URL = "https://packages.clickhouse.com/rpm/lts/repodata/repomd.xml.key"
CLICKHOUSE_KEY_FINGERPRINT = "3A9EA1193A97B548BE1457D48919F6BD2B48D754"
GOOGLE_APT = "https://packages.cloud.google.com/apt"
GOOGLE_KEY_URL = "https://packages.cloud.google.com/apt/doc/apt-key.gpg"
GOOGLE_KEY_FINGERPRINTS = ("A362B822F6DEDC652817EA46B53DC80D13EDEF05", "35BAA0B33E9EB396F59CA838C0BA5CE6DC6315A3")
# The Ops Agent (logs, Prometheus metrics), pinned exactly like ClickHouse; bump it deliberately.
OPS_AGENT_VERSION = "2.51.0~debian12"
# keyring URL OUT FPR...: fetch a key file, keep only the keys with a pinned fingerprint, fail when none is
# there (a substituted key file never becomes trusted; a rotated key stops the boot with this message).
KEYRING_FN = r"""keyring() {
  local url="$1" out="$2" home listing found=()
  shift 2
  home="$(mktemp -d)"
  curl -fsSL "$url" -o "$home/key"
  gpg --homedir "$home" --batch --quiet --import "$home/key" 2>/dev/null || true
  for fpr in "$@"; do
    listing="$(gpg --homedir "$home" --batch --with-colons --list-keys "$fpr" 2>/dev/null || true)"
    if grep -q "^fpr:::::::::$fpr:" <<<"$listing"; then
      found+=("$fpr")
    fi
  done
  if [[ ${#found[@]} -eq 0 ]]; then
    echo "netra: $url holds none of the pinned keys ($*): refusing its packages" >&2
    rm -rf "$home"
    return 1
  fi
  gpg --homedir "$home" --batch --export "${found[@]}" > "$out"
  rm -rf "$home"
}"""


def startup_script(role: str, version: str, secret_ids: Mapping[str, str], project: str,
                   backup: tuple[str, int] | None = None) -> str:
    """Boot script of a node (role clickhouse or keeper), identical for every node of the role.

    Idempotent: runs on every boot. The node's own XML comes from its per-instance metadata
    (`netra-config-xml`), shared files from the template's metadata. `secret_ids` maps the secret
    keys above to Secret Manager ids. `backup` = (HH:MM, full every N days) on ClickHouse nodes.
    """
    server = role == "clickhouse"
    pkg = "clickhouse-server" if server else "clickhouse-keeper"
    conf_dir = "/etc/clickhouse-server/config.d" if server else "/etc/clickhouse-keeper/keeper_config.d"
    data_dir = "/var/lib/clickhouse" if server else "/var/lib/clickhouse-keeper"
    packages = (f"clickhouse-common-static={version} clickhouse-server={version} clickhouse-client={version}"
                if server else f"clickhouse-keeper={version}")
    lines = []
    for key, var in (NODE_SECRETS.items() if server else ()):
        lines.append(f'val="$(secret {shlex.quote(secret_ids[key])})"; put {var} "$val"')
        if var in HASHED:
            lines.append(f'put {var}_SHA256 "$(printf \'%s\' "$val" | sha256sum | cut -d\' \' -f1)"')
    fetch_env = "\n".join(lines) or ":"
    fetch_tls = "\n".join(f"secret {shlex.quote(secret_ids[k])} > {path}" for k, path in TLS_SECRETS.items())
    backup_unit = ""
    if server and backup:
        at, full_every = backup
        backup_unit = f"""
# Daily backup (first replica of each shard): BACKUP ... TO Disk('{BACKUP_DISK}'), full every {full_every} days.
if [[ "$(meta instance/attributes/netra-backup)" == "true" ]]; then
  cat > /usr/local/bin/netra-clickhouse-backup <<'BACKUP'
#!/bin/bash
set -euo pipefail
set -a
# shellcheck source=/dev/null
source {ENV_FILE}
set +a
shard="$(curl -fsS -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/instance/attributes/netra-shard)"
day=$(( $(date -u +%s) / 86400 ))
full=$(( day - day % {full_every} ))
name() {{ date -u -d "@$(( $1 * 86400 ))" +%Y-%m-%d; }}
target="Disk('{BACKUP_DISK}', 'shard-${{shard}}/$(name "$day")')"
settings=""
if (( day != full )); then settings=" SETTINGS base_backup = Disk('{BACKUP_DISK}', 'shard-${{shard}}/$(name "$full")')"; fi
clickhouse-client --secure --host localhost --port {t.NATIVE_TLS_PORT} --user {ADMIN_USER} \\
  --password "$CLICKHOUSE_ADMIN_PASSWORD" --query "BACKUP DATABASE $NETRA_DATABASE TO ${{target}}${{settings}}"
BACKUP
  chmod 0750 /usr/local/bin/netra-clickhouse-backup
  cat > /etc/systemd/system/netra-clickhouse-backup.service <<'UNIT'
[Unit]
Description=Netra ClickHouse backup to GCS
After=clickhouse-server.service
[Service]
Type=oneshot
ExecStart=/usr/local/bin/netra-clickhouse-backup
UNIT
  cat > /etc/systemd/system/netra-clickhouse-backup.timer <<'UNIT'
[Unit]
Description=Daily Netra ClickHouse backup
[Timer]
OnCalendar=*-*-* {at}:00 UTC
Persistent=true
[Install]
WantedBy=timers.target
UNIT
  systemctl daemon-reload
  systemctl enable --now netra-clickhouse-backup.timer
fi
"""
    return f"""#!/bin/bash
# Netra {role} node boot script (rendered by infra/components/clickhouse/render.py). Runs on every boot.
set -euo pipefail
umask 077

meta() {{ curl -fsS -H 'Metadata-Flavor: Google' "http://metadata.google.internal/computeMetadata/v1/$1"; }}
secret() {{ gcloud secrets versions access latest --project={shlex.quote(project)} --secret="$1"; }}

# 1. Data disk: a separate persistent disk that outlives the instance; formatted only when blank.
dev=/dev/disk/by-id/google-{t.DATA_DEVICE}
if ! blkid "$dev" >/dev/null 2>&1; then mkfs.ext4 -m 0 -E lazy_itable_init=0,lazy_journal_init=0 -L netra-data "$dev"; fi
mkdir -p {data_dir}
grep -q "LABEL=netra-data" /etc/fstab || echo "LABEL=netra-data {data_dir} ext4 defaults,nofail,noatime 0 2" >> /etc/fstab
mountpoint -q {data_dir} || mount {data_dir}

# 2. Packages, pinned and verified: two third-party apt repositories, each trusted only with the signing
#    key whose fingerprint is pinned here (no installer script runs), each package at an exact version.
DEBIAN_FRONTEND=noninteractive
export DEBIAN_FRONTEND
{KEYRING_FN}
codename="$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)"
if ! dpkg -s {pkg} 2>/dev/null | grep -q "^Version: {version}$"; then
  apt-get update -qq
  apt-get install -y -qq ca-certificates curl gnupg
  keyring {CLICKHOUSE_KEY_URL} /usr/share/keyrings/clickhouse-keyring.gpg {CLICKHOUSE_KEY_FINGERPRINT}
  echo "deb [signed-by=/usr/share/keyrings/clickhouse-keyring.gpg] {CLICKHOUSE_APT} stable main" \\
    > /etc/apt/sources.list.d/clickhouse.list
  apt-get update -qq
  apt-get install -y -qq --allow-downgrades {packages}
  apt-mark hold {pkg}
fi
if ! dpkg -s google-cloud-ops-agent 2>/dev/null | grep -q "^Version: {OPS_AGENT_VERSION}$"; then
  apt-get update -qq
  apt-get install -y -qq ca-certificates curl gnupg
  keyring {GOOGLE_KEY_URL} /usr/share/keyrings/netra-google-cloud.gpg {' '.join(GOOGLE_KEY_FINGERPRINTS)}
  echo "deb [signed-by=/usr/share/keyrings/netra-google-cloud.gpg] {GOOGLE_APT} google-cloud-ops-agent-${{codename}}-2 main" \\
    > /etc/apt/sources.list.d/google-cloud-ops-agent.list
  apt-get update -qq
  apt-get install -y -qq --allow-downgrades google-cloud-ops-agent={OPS_AGENT_VERSION}
  apt-mark hold google-cloud-ops-agent
fi
meta instance/attributes/netra-ops-agent-yaml > /etc/google-cloud-ops-agent/config.yaml

# 3. Secrets from Secret Manager (never in metadata): TLS files, then passwords into a root-only env file.
mkdir -p {TLS_DIR}
{fetch_tls}
chown -R clickhouse:clickhouse {TLS_DIR} && chmod 0600 {KEY}
envfile="$(mktemp)"
put() {{ printf '%s=%s\\n' "$1" "$2" >> "$envfile"; }}
db="$(meta instance/attributes/netra-database)"; put NETRA_DATABASE "$db"
{fetch_env}
install -m 0600 "$envfile" {ENV_FILE} && rm -f "$envfile"
mkdir -p /etc/systemd/system/{pkg}.service.d
printf '[Service]\\nEnvironmentFile={ENV_FILE}\\n' > /etc/systemd/system/{pkg}.service.d/netra.conf

# 4. Configuration rendered from stack config.
mkdir -p {conf_dir}
meta instance/attributes/netra-config-xml > {conf_dir}/netra.xml
{"mkdir -p /etc/clickhouse-server/users.d" if server else ":"}
{"meta instance/attributes/netra-users-xml > /etc/clickhouse-server/users.d/netra.xml" if server else ":"}
chown -R clickhouse:clickhouse {data_dir}
systemctl daemon-reload
systemctl enable {pkg}
systemctl restart {pkg} google-cloud-ops-agent
{backup_unit}"""
