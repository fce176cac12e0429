"""The seeds' alert ids, dashboards and log retention: a self-contained copy of infra/seed_alerts.py.

The Pulumi CLI runs this pack from policies/ in its own virtualenv, where `infra` is not importable, so
the pack keeps its own copy; tests/test_policy_stack.py fails if it drifts from infra.seed_alerts.
"""
ALERT_LABEL = "netra_alert"
SEVERITY_LABEL = "severity"

# id -> severity
SEED_ALERTS = {
    "rollback-error-rate": "critical",
    "rollback-p95-latency": "critical",
    "rollback-token-optimization-failure": "critical",
    "rollback-websocket-connection-failures": "critical",
    "token-optimization-failure-rate": "critical",
    "cost-calculation-accuracy": "critical",
    "websocket-event-latency": "warning",
    "session-isolation-breach": "critical",
    "service-down": "critical",
    "cost-spike": "critical",
    "cache-hit-rate-drop": "critical",
    "performance-degradation": "warning",
    "budget-utilization-high": "warning",
    "memory-usage-high": "warning",
}
SEED_DASHBOARDS = (
    "Cost Optimization", "Performance Monitoring", "System Health",
    "Business Metrics", "Technical Performance", "Revenue Impact",
)
CANARY_DASHBOARD = "Canary"
LOG_RETENTION_DAYS = 30
