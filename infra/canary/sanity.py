"""Metric data is untrusted input: the checks that turn an interval into a fault (no evidence, no
promote) instead of evidence. Vectorised over runs; each check has a name the verdict reports."""
from __future__ import annotations

import numpy as np

from infra.canary.counts import Batch

CHECKS = (
    "upstream",  # the source could not read the interval (API error, malformed series): named by the source
    "non-finite value (NaN or infinity) in the counts",
    "negative count",
    "series without a revision label",
    "no requests for either revision",
    "no request_count series for the canary revision",
    "no request_count series for the stable revision",
    "no request_latencies series for the canary revision",
    "no request_latencies series for the stable revision",
    "request_count and request_latencies disagree for the canary revision (a 5xx or other series missing?)",
    "request_count and request_latencies disagree for the stable revision (a 5xx or other series missing?)",
    "more 5xx than requests",
    "realised canary share far from the configured percentage (swapped or duplicated series?)",
)
UPSTREAM = 0


def describe(code: int, configured_share: float | None = None) -> list[str]:
    names = []
    for i, name in enumerate(CHECKS):
        if i and code & (1 << i):
            if i == len(CHECKS) - 1 and configured_share is not None:
                name = name.replace("configured percentage", f"configured {configured_share:.0%}")
            names.append(name)
    return names


class DataChecks:
    """Per-interval checks plus the cumulative request/latency count agreement of each revision."""

    def __init__(self, runs: int, configured_share: float | None, mismatch_tolerance: float,
                 share_tolerance: float):
        self.configured_share = configured_share if configured_share is not None and 0 < configured_share < 1 else None
        self.mismatch_tolerance = mismatch_tolerance
        self.share_tolerance = share_tolerance
        self.cum = {k: np.zeros(runs) for k in ("n_s", "n_c", "h_s", "h_c")}

    def check(self, b: Batch, active: np.ndarray) -> np.ndarray:
        """Fault bit mask (R,) int; 0 = the interval may be used."""
        R = b.runs
        arrays = [b.n_s, b.n_c, b.e_s, b.e_c]
        arrays += [h for h in (b.h_s, b.h_c) if h is not None]
        for pair in (b.token_s, b.token_c, b.websocket_s, b.websocket_c):
            if pair is not None:
                arrays += list(pair)
        if b.unlabelled is not None:
            arrays.append(b.unlabelled)
        if b.value is not None:
            arrays += b.value.arrays()

        def per_run(a: np.ndarray) -> np.ndarray:
            return a if a.ndim == 1 else a.reshape(R, -1)

        nonfinite = np.zeros(R, bool)
        negative = np.zeros(R, bool)
        for a in arrays:
            a = np.asarray(a, float)
            fin = np.isfinite(a)
            nonfinite |= ~fin if a.ndim == 1 else ~fin.reshape(R, -1).all(axis=1)
            with np.errstate(invalid="ignore"):
                neg = a < 0
            negative |= neg if a.ndim == 1 else per_run(neg).any(axis=1)
        code = np.zeros(R, int)

        def flag(i: int, mask: np.ndarray) -> None:
            nonlocal code
            code = code | np.where(mask, 1 << i, 0)

        if b.upstream_fault is not None:
            flag(0, np.asarray(b.upstream_fault, bool))
        flag(1, nonfinite)
        flag(2, negative)
        bad = nonfinite | negative
        n_s, n_c = np.where(bad, 0.0, b.n_s), np.where(bad, 0.0, b.n_c)
        if b.unlabelled is not None:
            flag(3, np.where(bad, False, b.unlabelled > 0))
        flag(4, (n_s + n_c) == 0)
        flag(5, (n_c == 0) & (n_s > 0))
        flag(6, (n_s == 0) & (n_c > 0))
        if b.h_s is None or b.h_c is None:
            flag(7, n_c > 0)
            flag(8, n_s > 0)
        else:
            H_s = np.where(bad, 0.0, np.asarray(b.h_s, float).sum(axis=1))
            H_c = np.where(bad, 0.0, np.asarray(b.h_c, float).sum(axis=1))
            flag(7, (H_c == 0) & (n_c > 0))
            flag(8, (H_s == 0) & (n_s > 0))
            ok = active & ~bad
            for side, H, n, bit in (("c", H_c, n_c, 9), ("s", H_s, n_s, 10)):
                self.cum[f"n_{side}"] += np.where(ok, n, 0.0)
                self.cum[f"h_{side}"] += np.where(ok, H, 0.0)
                now = np.abs(H - n) > np.maximum(3.0, self.mismatch_tolerance * n)
                cn, ch = self.cum[f"n_{side}"], self.cum[f"h_{side}"]
                cumulative = np.abs(ch - cn) > np.maximum(3.0, self.mismatch_tolerance * cn)
                flag(bit, (now & (H > 0)) | cumulative)
        with np.errstate(invalid="ignore"):
            flag(11, (b.e_c > b.n_c) | (b.e_s > b.n_s))
        if self.configured_share is not None:
            p = self.configured_share
            total = n_s + n_c
            share = np.divide(n_c, total, out=np.full(R, p), where=total > 0)
            sd = np.sqrt(p * (1 - p) / np.maximum(total, 1.0))
            limit = np.maximum(self.share_tolerance * min(p, 1 - p), 5 * sd)
            flag(12, (total > 0) & (np.abs(share - p) > limit))
        return code
