"""The application's structured-log signals that the stack turns into log-based metrics.

This module is the contract between three parts of the project: the observability component declares
these metrics, the canary gate queries them per revision, and the README documents the log fields the
application must write. A Cloud Run log entry's resource carries `revision_name`, so every metric here
can be grouped per revision without the application knowing its own revision.
"""
from __future__ import annotations

from dataclasses import dataclass

LOG_METRIC_PREFIX = "logging.googleapis.com/user/"


@dataclass(frozen=True)
class OutcomeSignal:
    """A counter of events split by `jsonPayload.outcome` into success and failure."""

    metric: str  # log-based metric name (the part after logging.googleapis.com/user/)
    event: str  # jsonPayload.event of the log entries counted
    outcome_label: str = "outcome"
    success: str = "success"
    failure: str = "failure"

    @property
    def metric_type(self) -> str:
        return LOG_METRIC_PREFIX + self.metric


# Behind the seed's rollback triggers "token optimization failure > 10 %" and
# "WebSocket connection failures > 5 %".
TOKEN_OPTIMIZATION = OutcomeSignal(metric="netra_token_optimization", event="token_optimization")
WEBSOCKET_CONNECTION = OutcomeSignal(metric="netra_websocket_connection", event="websocket_connection")
