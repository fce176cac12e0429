"""The application's structured-log signals that the stack turns into log-based metrics.

This module is the contract between three parts of the project: the observability component declares
these metrics, the canary gate queries them per revision, and the README documents the log fields the
application must write. A Cloud Run log entry's resource carries `revision_name`, so every metric here
can be grouped per revision without the application knowing its own revision.
"""
from __future__ import annotations

from dataclasses import dataclass

LOG_METRIC_PREFIX = "logging.googleapis.com/user/"
# Cloud Run's built-in per-revision memory metric (a DELTA distribution of utilization fractions): the
# gate's memory test reads it per revision; a flag's arms share the containers, so it has no per-arm form.
RUN_MEMORY_UTILIZATIONS = "run.googleapis.com/container/memory/utilizations"


@dataclass(frozen=True)
class OutcomeSignal:
    """A counter of events split by `jsonPayload.outcome` into success and failure."""

    metric: str  # log-based metric name (the part after logging.googleapis.com/user/)
    event: str  # jsonPayload.event of the log entries counted
    outcome_label: str = "outcome"
    success: str = "success"
    failure: str = "failure"
    extra_labels: tuple[str, ...] = ()  # further jsonPayload fields kept as metric labels
    description: str = ""

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.outcome_label, *self.extra_labels)

    @property
    def metric_type(self) -> str:
        return LOG_METRIC_PREFIX + self.metric


# Behind the seed's rollback triggers "token optimization failure > 10 %" and
# "WebSocket connection failures > 5 %".
# `flag_arm` ("<flag>=on" | "<flag>=off", infra/flags.py) splits these by feature-flag arm while a flag
# ramps, so the gate can compare the arms like canary against stable (infra/flag_gate.py).
FLAG_ARM = "flag_arm"

TOKEN_OPTIMIZATION = OutcomeSignal(
    metric="netra_token_optimization", event="token_optimization", extra_labels=(FLAG_ARM,),
    description="Token optimizations attempted, by outcome (success | failure) and flag arm.")
WEBSOCKET_CONNECTION = OutcomeSignal(
    metric="netra_websocket_connection", event="websocket_connection", extra_labels=(FLAG_ARM,),
    description="WebSocket connection attempts, by outcome (success | failure) and flag arm.")
# Cloud Run's request metrics split by revision only; within one revision the arms are told apart by
# the application's own request log (outcome failure = a 5xx answer).
REQUEST = OutcomeSignal(
    metric="netra_request", event="request", extra_labels=(FLAG_ARM,),
    description="Requests served, by outcome (success | failure = 5xx) and flag arm.")


# ---- the other signals (observability declares them; the README documents the log fields) ----

@dataclass(frozen=True)
class CountSignal:
    """A counter of log entries with `jsonPayload.event == event` (no outcome split)."""

    metric: str
    event: str
    labels: tuple[str, ...] = ()
    description: str = ""

    @property
    def metric_type(self) -> str:
        return LOG_METRIC_PREFIX + self.metric


@dataclass(frozen=True)
class ValueSignal:
    """A distribution of a numeric `jsonPayload.<field>` of entries with `jsonPayload.event == event`."""

    metric: str
    event: str
    field: str  # jsonPayload field holding the value
    unit: str  # UCUM, as Cloud Monitoring shows it: "ms", "USD", "%", "1"
    bounds: tuple[float, ...]  # explicit histogram bucket bounds, in `unit` (or the exponential layout's)
    labels: tuple[str, ...] = ()
    description: str = ""
    only_outcome: str | None = None  # count only entries whose `outcome` equals this
    exponential: tuple[int, float, float] | None = None  # (finite buckets, growth, scale) instead of `bounds`

    @property
    def metric_type(self) -> str:
        return LOG_METRIC_PREFIX + self.metric


# "cost calculation accuracy below 95 %": success = the computed cost matched the reference within tolerance
COST_CALCULATION = OutcomeSignal(
    metric="netra_cost_calculation", event="cost_calculation_check",
    description="Cost calculations checked against the provider's usage, by outcome "
                "(success = within tolerance | failure).")
# "cache hit rate < 50 %", per cache: prompt (exact prompt cache) and semantic (embedding match); the
# success criteria of prompt and semantic caching ("hit rate > 85 %") per flag arm
CACHE_LOOKUP = OutcomeSignal(
    metric="netra_cache_lookup", event="cache_lookup", success="hit", failure="miss", extra_labels=("cache", FLAG_ARM),
    description="Cache lookups, by outcome (hit | miss), cache (prompt | semantic) and flag arm.")
# semantic caching's "match accuracy > 90 %": a sample of semantic hits re-checked against a fresh answer
SEMANTIC_MATCH = OutcomeSignal(
    metric="netra_semantic_match_check", event="semantic_match_check", success="correct", failure="incorrect",
    extra_labels=(FLAG_ARM,),
    description="Semantic-cache hits checked against a fresh answer, by outcome (correct | incorrect) and flag arm.")
# token budget enforcement's "budget tracking accuracy > 98 %": tracked usage reconciled with the provider's
BUDGET_TRACKING = OutcomeSignal(
    metric="netra_budget_tracking_check", event="budget_tracking_check", success="accurate", failure="inaccurate",
    extra_labels=(FLAG_ARM,),
    description="Budget tracking reconciled with the provider's usage, by outcome (accurate | inaccurate) and flag arm.")
# "user session isolation breach > 0": zero tolerance, each entry is one breach
SESSION_ISOLATION_BREACH = CountSignal(
    metric="netra_session_isolation_breach", event="session_isolation_breach",
    description="Detected cross-session data access (each log entry is one breach).")

_LATENCY_MS = (5, 10, 25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750, 1000, 2000, 5000, 10000)
_USD = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25)
_TOKENS = (10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000)
_PERCENT = (10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 100, 110, 125, 150, 200)

TOKENS_SAVED = ValueSignal(
    metric="netra_tokens_saved", event="token_optimization", field="tokens_saved", unit="1", bounds=_TOKENS,
    only_outcome="success", description="Tokens saved per successful optimization (tokens).")
COST_SAVED = ValueSignal(
    metric="netra_cost_saved", event="token_optimization", field="saved_usd", unit="USD", bounds=_USD,
    only_outcome="success", description="LLM cost avoided per successful optimization (USD).")
# Cost and tokens per LLM request are heavy-tailed; the gate compares revisions (and flag arms) by shifting
# one histogram against the other, which needs exponential buckets of growth 1.5^(1/4): 4 buckets = the
# seed's 1.5x cost spike (infra/canary/value.py).
_VALUE_GROWTH = 1.5 ** 0.25
LLM_REQUEST_COST = ValueSignal(
    metric="netra_llm_request_cost", event="llm_request", field="cost_usd", unit="USD", bounds=(),
    exponential=(136, _VALUE_GROWTH, 1e-5), labels=("model", FLAG_ARM),
    description="Cost of each LLM request after optimization (USD), by model and flag arm; hourly cost is its sum.")
LLM_REQUEST_TOKENS = ValueSignal(
    metric="netra_llm_request_tokens", event="llm_request", field="tokens", unit="1", bounds=(),
    exponential=(136, _VALUE_GROWTH, 1.0), labels=("model", FLAG_ARM),
    description="Tokens used by each LLM request (prompt + completion), by model and flag arm.")
QUALITY_SCORE = ValueSignal(
    metric="netra_quality_score", event="quality_score", field="score", unit="1",
    bounds=tuple(round(0.05 * i, 2) for i in range(21)), labels=(FLAG_ARM,),
    description="Conversation quality score of a scored response, 0..1, by flag arm.")
CACHE_LOOKUP_LATENCY = ValueSignal(
    metric="netra_cache_lookup_latency", event="cache_lookup", field="latency_ms", unit="ms", bounds=_LATENCY_MS,
    labels=("cache", FLAG_ARM), description="Cache lookup latency (milliseconds), by cache and flag arm.")
REQUEST_LATENCY = ValueSignal(
    metric="netra_request_latency", event="request", field="latency_ms", unit="ms", bounds=_LATENCY_MS,
    labels=(FLAG_ARM,), description="Request latency as the application measured it, by flag arm (milliseconds).")
WEBSOCKET_EVENT_LATENCY = ValueSignal(
    metric="netra_websocket_event_latency", event="websocket_event", field="latency_ms", unit="ms",
    bounds=_LATENCY_MS, description="Server-to-client WebSocket event delivery latency (milliseconds).")
BUDGET_UTILIZATION = ValueSignal(
    metric="netra_budget_utilization", event="budget_check", field="utilization_percent", unit="%",
    bounds=_PERCENT, description="A tenant's token-budget utilization when checked (percent of its budget).")

OUTCOME_SIGNALS = (TOKEN_OPTIMIZATION, WEBSOCKET_CONNECTION, COST_CALCULATION, CACHE_LOOKUP, REQUEST, SEMANTIC_MATCH,
                   BUDGET_TRACKING)
COUNT_SIGNALS = (SESSION_ISOLATION_BREACH,)
VALUE_SIGNALS = (TOKENS_SAVED, COST_SAVED, LLM_REQUEST_COST, WEBSOCKET_EVENT_LATENCY, BUDGET_UTILIZATION, REQUEST_LATENCY,
                 LLM_REQUEST_TOKENS, QUALITY_SCORE, CACHE_LOOKUP_LATENCY)
ALL_SIGNALS = (*OUTCOME_SIGNALS, *COUNT_SIGNALS, *VALUE_SIGNALS)
