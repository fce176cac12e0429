"""What the judge reads each interval: per-revision counts, for one gate (`Interval`) or vectorised over
simulated runs (`Batch`, the benchmark's form; the gate's Interval becomes a batch of one)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infra.canary.buckets import BucketLayout
from infra.canary.value import ValueData


@dataclass
class Interval:
    """One interval's counts for one gate (the gate's unit of evidence)."""

    duration_s: float
    stable_requests: float = 0
    canary_requests: float = 0
    stable_errors: float = 0
    canary_errors: float = 0
    stable_latency: list[float] | None = None  # bucket counts (underflow .. overflow)
    canary_latency: list[float] | None = None
    layout: BucketLayout | None = None
    canary_token: tuple[float, float] | None = None  # (success, failure)
    canary_websocket: tuple[float, float] | None = None
    stable_token: tuple[float, float] | None = None
    stable_websocket: tuple[float, float] | None = None
    unlabelled_requests: float = 0  # requests in series that carry no revision label
    fault: str | None = None  # set when the interval must not count (API error, malformed series, ...)
    value: ValueData | None = None  # value signals as arrays of one run (infra.canary.value)
    notes: list[str] = field(default_factory=list)


Outcome = tuple[np.ndarray, np.ndarray]  # (attempts, failures), each (R,)


@dataclass
class Batch:
    """One interval for R runs. Counts are floats so that NaN and infinity can reach the data checks."""

    duration_s: float
    n_s: np.ndarray
    n_c: np.ndarray
    e_s: np.ndarray
    e_c: np.ndarray
    h_s: np.ndarray | None = None  # (R, B)
    h_c: np.ndarray | None = None
    token_s: Outcome | None = None
    token_c: Outcome | None = None
    websocket_s: Outcome | None = None
    websocket_c: Outcome | None = None
    unlabelled: np.ndarray | None = None  # (R,) requests in series without a revision label
    upstream_fault: np.ndarray | None = None  # (R,) bool: the source already knows the interval is bad
    value: ValueData | None = None  # cost, tokens, quality, cache, memory (infra.canary.value)

    @property
    def runs(self) -> int:
        return len(self.n_s)


def _outcome(pair) -> Outcome | None:
    """(success, failure) of one gate -> (attempts, failures) arrays of one run."""
    if pair is None:
        return None
    ok, fail = (float(v) for v in pair)
    return np.array([ok + fail]), np.array([fail])


def batch_of_one(iv: Interval, buckets: int) -> Batch:
    def hist(h):
        v = np.zeros((1, buckets))
        if h is not None:
            h = [float(x) for x in list(h)[:buckets]]
            v[0, : len(h)] = h
        return v

    has_hist = iv.stable_latency is not None or iv.canary_latency is not None
    return Batch(
        duration_s=float(iv.duration_s),
        n_s=np.array([float(iv.stable_requests)]),
        n_c=np.array([float(iv.canary_requests)]),
        e_s=np.array([float(iv.stable_errors)]),
        e_c=np.array([float(iv.canary_errors)]),
        h_s=hist(iv.stable_latency) if has_hist else None,
        h_c=hist(iv.canary_latency) if has_hist else None,
        token_s=_outcome(iv.stable_token),
        token_c=_outcome(iv.canary_token),
        websocket_s=_outcome(iv.stable_websocket),
        websocket_c=_outcome(iv.canary_websocket),
        unlabelled=np.array([float(iv.unlabelled_requests)]),
        upstream_fault=np.array([iv.fault is not None]),
        value=iv.value,
    )
