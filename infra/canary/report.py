"""What the judge says, separate from how it decides: evidence per test, the one-line reason of a
decision, and the gate's progress line. Reads a BatchJudge's state; computes nothing it decides with."""
from __future__ import annotations

import math

from infra.canary.judge import BatchJudge
from infra.canary.sequential import AbsoluteTest, RelativeTest
from infra.canary.verdict import Decision

E_CAP = 1e12  # JSON has no infinity; decisions use the log values


def _e(log_e: float) -> float:
    return float(math.exp(min(log_e, math.log(E_CAP))))


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _rate(x: float, n: float):
    return float(x / n) if n > 0 else None


SIGNAL_WORDS = {"errors": "5xx", "latency": "p95 latency", "token": "token-optimization failures",
                "websocket": "WebSocket connection failures"}


def evidence(b: BatchJudge, i: int = 0) -> dict:
    cfg = b.config
    out = {}
    for t in b.tests:
        ev = {
            "signal": t.signal,
            "kind": t.kind,
            "e_value": _e(float(t.log_e()[i])),
            "threshold": round(1.0 / t.alpha, 3),
            "recent_e_value": _e(float(t.log_recent()[i])),
            "canary_events": int(t.events_c[i]),
            "canary_observations": int(t.trials_c[i]),
            "canary_rate": _rate(t.events_c[i], t.trials_c[i]),
        }
        if isinstance(t, RelativeTest):
            ev["stable_events"] = int(t.events_s[i])
            ev["stable_observations"] = int(t.trials_s[i])
            ev["stable_rate"] = _rate(t.events_s[i], t.trials_s[i])
            ev["tolerance"] = round(float(t.effective_tolerance[i]), 4)
            ev["ratio"] = (ev["canary_rate"] / ev["stable_rate"]) if ev["canary_rate"] is not None and ev["stable_rate"] else None
            if t.signal == "latency":
                v = float(b.slow_above_ms[i])
                ev["slow_above_ms"] = v if math.isfinite(v) else None
            ratio, rate = t.upper_bounds(cfg.beta)
            ev["promote_evidence"] = {
                "ratio_upper_bound": _finite(ratio[i]),
                "rate_upper_bound": _finite(rate[i]),
                "confidence": 1 - cfg.beta,
                "ratio": round(float(t.margin(cfg.beta)[i]), 3),
                "floor": t.safe_floor,
                "reached": bool(t.safe(cfg.beta)[i]),
                "required": bool(t.matters()[i]),
            }
        else:
            assert isinstance(t, AbsoluteTest)
            ev["limit"] = t.limit
            ev["min_observations"] = t.min_count
            if t.signal == "latency":
                ev["p95_limit_ms"] = cfg.max_p95_ms
                ev["slow_above_ms"] = (b.layout.lower_bound(b.p95_index) if b.p95_index < b.layout.num_buckets
                                       else None)
            ev["shared_incident_s"] = float(b.incident_s[t.signal][i])
        ev["over_threshold"] = bool(t.raw_over()[i])
        out[t.name] = ev
    return out


def _describe_test(t, i: int) -> str:
    e = float(t.log_e()[i])
    if isinstance(t, RelativeTest):
        return (f"{t.name}: canary {int(t.events_c[i])}/{int(t.trials_c[i])} vs stable "
                f"{int(t.events_s[i])}/{int(t.trials_s[i])}, e-value {_e(e):.3g} >= {1 / t.alpha:g} "
                f"(H0: canary <= {float(t.effective_tolerance[i]):.3g} x stable)")
    return (f"{t.name}: canary {int(t.events_c[i])}/{int(t.trials_c[i])} above the {t.limit:.0%} limit, "
            f"e-value {_e(e):.3g} >= {1 / t.alpha:g}")


def incident_text(b: BatchJudge, i: int = 0) -> str:
    cfg = b.config
    parts = []
    for s in b.incident_signals(i):
        limit = f"p95 > {cfg.max_p95_ms:g} ms" if s == "latency" else f"{SIGNAL_WORDS[s]} > {cfg.limit(s):.0%}"
        parts.append(f"{limit} for {b.incident_s[s][i]:.0f} s")
    return "incident: the stable revision breaches the same limit (" + ", ".join(parts) + \
        f"); no rollback and no promote while it lasts (the seed's rule applies again after {cfg.incident_max_s:g} s)"


def reason(b: BatchJudge, i: int = 0) -> str:
    cfg = b.config
    d = Decision(int(b.decision[i]))
    v = b.value
    if b.not_met[i]:
        missed = "; ".join(v.describe_criterion(n, i) for n in v.missed_names(i))
        head = "rollback" if d == Decision.ROLLBACK else "hold"
        return f"{head}: does not deliver: {missed}"
    if d == Decision.ROLLBACK:
        parts = [_describe_test(t, i) for j, t in enumerate(b.tests) if b.fired[i, j]]
        parts += [v.breach_text(name, i) for name, f in b.value_fired.items() if f[i]]
        return "rollback: " + "; ".join(parts)
    if d == Decision.PROMOTE:
        met = [v.describe_criterion(n, i) for n in (v.criteria.names() if v.criteria else [])]
        return (
            f"promote: {b.soak_s[i]:.0f} s clean soak, {int(b.canary_requests[i])} canary and "
            f"{int(b.stable_requests[i])} stable requests, no test at or trending to its threshold, "
            f"every signal with data shown below {_margins(b, i)} or its floor"
            + (f"; every criterion met: {'; '.join(met)}" if met else "")
        )
    missing = []
    if b.incident_signals(i):
        missing.append(incident_text(b, i))
    faults = [n for n in b.fault_names(i) if n != "upstream"]
    if faults:
        missing.append("data fault: " + "; ".join(faults))
    if b.soak_s[i] < cfg.min_soak_s:
        missing.append(f"soak {b.soak_s[i]:.0f}/{cfg.min_soak_s:.0f} s")
    if b.canary_requests[i] < cfg.min_canary_requests:
        missing.append(f"canary requests {int(b.canary_requests[i])}/{cfg.min_canary_requests}")
    if b.stable_requests[i] < cfg.min_stable_requests:
        missing.append(f"stable requests {int(b.stable_requests[i])}/{cfg.min_stable_requests}")
    safe = b.safe()[i]
    for t, ok in zip(b.relative(), safe):
        if not ok:
            missing.append(f"{t.name}: not yet shown below {t.margin(cfg.beta)[i]:.2f} x stable (or below {t.safe_floor:.2%})")
    if not b.value.promote_ok()[i]:
        unmet = b.value.unmet_names(i)
        missing.append("value: " + ("; ".join(f"not yet met: {b.value.describe_criterion(n, i)}" for n in unmet)
                                    if unmet else "cost, quality or memory not yet shown within limits"))
    trend = b.recent_trend()[i]
    for t, tr in zip(b.tests, trend):
        if tr:
            missing.append(f"{t.name}: the last {cfg.recent_intervals} intervals trend over its limit")
    for t in b.tests:
        if t.raw_over()[i] and not t.guard()[i]:
            missing.append(f"{t.name} over threshold but below its minimum count")
        elif t.raw_over()[i]:
            missing.append(f"{t.name} over threshold")
    return "no decision yet: " + (", ".join(missing) if missing else "last interval not clean")


def _fmt_elapsed(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(label: str, elapsed: float, iv, b: BatchJudge, decision: str, fault: str | None) -> str:
    if fault:
        now = f"no evidence: {fault}"
    else:
        now = (f"stable {int(iv.stable_requests)} req {int(iv.stable_errors)} 5xx | "
               f"canary {int(iv.canary_requests)} req {int(iv.canary_errors)} 5xx")
    tests = " ".join(
        f"{t.name}={_e(float(t.log_e()[0])):.3g}/{1 / t.alpha:g}" for t in b.tests if t.trials_c[0] > 0
    )
    incident = f" | INCIDENT {', '.join(b.incident_signals(0))} shared with stable" if b.incident_signals(0) else ""
    worth = value_line(b)
    return (f"[{label}] {_fmt_elapsed(elapsed)} {now} | total stable {int(b.stable_requests[0])} canary "
            f"{int(b.canary_requests[0])} | e {tests or '-'}{incident}{' | ' + worth if worth else ''} | {decision}")


def value_line(b: BatchJudge, i: int = 0) -> str:
    """What the release is worth so far (empty: no value data): `verdict.worth_summary` of `worth`."""
    from infra.canary.verdict import worth_summary

    return worth_summary(worth(b, i)) if any(h[i] for h in b.value.has.values()) else ""


def worth(b: BatchJudge, i: int = 0) -> dict:
    """The verdict's `value`: realised effect per signal with its anytime-valid interval, the criteria
    and the projected saving at 100 % from the traffic observed (both revisions' requests per second)."""
    from infra.canary.value import projected_saving

    v = b.value
    effects = v.effects(i)
    out: dict = {"effects": effects}
    if v.criteria is not None:
        states = v._criterion_states()
        out["criteria"] = {name: {"met": bool(met[i]), "missed": bool(miss[i]), "measured": v.describe_criterion(name, i)}
                           for name, (met, miss) in states.items()}
        out["criteria_config"] = v.criteria.as_dict()
    elapsed = float(b.elapsed_s[i])
    if elapsed > 0:
        rps = (float(b.stable_requests[i]) + float(b.canary_requests[i])) / elapsed
        saving = projected_saving(effects, rps)
        if saving:
            out["projected_saving"] = saving
    return out


def _margins(b, i: int) -> str:
    """The promote margin, and which signals' traffic widened it (see RelativeTest.margin)."""
    cfg = b.config
    wide = [(t.name, float(t.margin(cfg.beta)[i])) for t in b.relative() if t.matters()[i]]
    wide = [(n, m) for n, m in wide if m > cfg.promote_max_ratio + 1e-9]
    text = f"{cfg.promote_max_ratio:g} x stable"
    if wide:
        text += " (" + ", ".join(f"{n} {m:.2f} x: what this traffic resolves in the stage" for n, m in wide) + ")"
    return text
