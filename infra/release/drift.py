"""Drift: does Cloud Run serve what the release state says it should? (`python -m infra drift`, cli/drift.py)

Expected traffic per service is what the program renders from the release ledger (the stack config with
the ledger-owned keys overlaid, cli/drift.py `ledger_outputs`, planned offline: `services.<key>.traffic`,
stable and candidate with their tags and shares, a bake's `previous` at 0 %), exactly what the next
`pulumi up` would set. Live traffic is the service's `trafficStatuses` (what
serves; `traffic` when absent) from the Cloud Run Admin API v2.

Drift is a difference in who gets how much: a revision's share, or the revision under the `stable` tag.
A different 0 % tag alone (e.g. the `canary` tag gone after `rollback --direct`) is listed as a note, not
drift: nobody is served differently. A service the release state names that Cloud Run does not have is
drift too. An `gcloud run services update-traffic` done out of band shows up here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

EXIT_CLEAN, EXIT_DRIFT, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 4
LATEST = "LATEST"


class DriftError(Exception):
    """Live traffic could not be read (API error, transport error, unreadable answer)."""


@dataclass(frozen=True)
class Entry:
    revision: str  # LATEST for a latest-revision target
    percent: int
    tag: Optional[str] = None

    def show(self) -> str:
        return f"{self.revision} {self.percent} %" + (f" ({self.tag})" if self.tag else "")


@dataclass(frozen=True)
class ServiceDrift:
    key: str
    service_name: str
    expected: tuple[Entry, ...]
    live: Optional[tuple[Entry, ...]]  # None: the service does not exist in Cloud Run
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def drifted(self) -> bool:
        return bool(self.problems)

    def as_dict(self) -> dict:
        return {"service": self.key, "serviceName": self.service_name, "drift": self.drifted,
                "expected": [e.__dict__ for e in self.expected],
                "live": None if self.live is None else [e.__dict__ for e in self.live],
                "problems": list(self.problems), "notes": list(self.notes)}


@dataclass
class Report:
    stack: str
    services: list[ServiceDrift] = field(default_factory=list)

    @property
    def drifted(self) -> list[ServiceDrift]:
        return [s for s in self.services if s.drifted]

    def as_dict(self) -> dict:
        return {"stack": self.stack, "drift": bool(self.drifted), "services": [s.as_dict() for s in self.services]}


def entries(traffic: Any) -> tuple[Entry, ...]:
    """Traffic targets (the plan's {revision, percent, tag} or the API's {type, revision, percent, tag})."""
    out = []
    for t in traffic or ():
        if not isinstance(t, dict):
            raise DriftError(f"unreadable traffic target {t!r}")
        kind = str(t.get("type") or "")
        revision = LATEST if kind.endswith("_LATEST") else t.get("revision")
        if not revision:
            raise DriftError(f"traffic target without a revision: {t!r}")
        out.append(Entry(str(revision), int(t.get("percent") or 0), t.get("tag") or None))
    return tuple(out)


def shares(traffic: tuple[Entry, ...]) -> dict[str, int]:
    """Revision -> its total share, revisions at 0 % left out."""
    out: dict[str, int] = {}
    for e in traffic:
        out[e.revision] = out.get(e.revision, 0) + e.percent
    return {r: p for r, p in out.items() if p}


def tags(traffic: tuple[Entry, ...]) -> dict[str, str]:
    return {e.tag: e.revision for e in traffic if e.tag}


def compare(key: str, service_name: str, expected: tuple[Entry, ...], live: Optional[tuple[Entry, ...]]) -> ServiceDrift:
    if live is None:
        return ServiceDrift(key, service_name, expected, None,
                            (f"{service_name} does not exist in Cloud Run; the release state expects "
                             f"{', '.join(e.show() for e in expected)}",))
    problems, notes = [], []
    want, got = shares(expected), shares(live)
    for revision in sorted(set(want) | set(got)):
        if want.get(revision, 0) != got.get(revision, 0):
            problems.append(f"{revision}: serves {got.get(revision, 0)} %, the release state says {want.get(revision, 0)} %")
    want_tags, got_tags = tags(expected), tags(live)
    if want_tags.get("stable") != got_tags.get("stable"):
        problems.append(f"tag stable: on {got_tags.get('stable') or 'no revision'}, the release state says "
                        f"{want_tags.get('stable') or 'none'}")
    for tag in sorted((set(want_tags) | set(got_tags)) - {"stable"}):
        if want_tags.get(tag) != got_tags.get(tag):
            notes.append(f"tag {tag}: on {got_tags.get(tag) or 'no revision'}, the release state says "
                         f"{want_tags.get(tag) or 'none'} (0 %: nobody is served differently)")
    return ServiceDrift(key, service_name, expected, live, tuple(problems), tuple(notes))


def read_live(session, endpoint: str, project: str, region: str, service_name: str) -> Optional[tuple[Entry, ...]]:
    """The service's live traffic via the Admin API v2 services.get; None when it does not exist (404)."""
    url = f"{endpoint.rstrip('/')}/v2/projects/{project}/locations/{region}/services/{service_name}"
    try:
        r = session.get(url, timeout=30)
    except Exception as exc:  # transport errors of any HTTP library
        raise DriftError(f"Cloud Run Admin API: GET {url}: {type(exc).__name__}: {exc}") from None
    if r.status_code == 404:
        return None
    if r.status_code != 200:
        raise DriftError(f"Cloud Run Admin API: GET {url}: HTTP {r.status_code}: {r.text[:200]}")
    try:
        doc = r.json()
    except ValueError as exc:
        raise DriftError(f"Cloud Run Admin API: GET {url}: not JSON ({exc})") from None
    return entries(doc.get("trafficStatuses") or doc.get("traffic"))


def check(stack: str, outputs: Mapping[str, Any], session, endpoint: str) -> Report:
    """Every service of the plan outputs, expected vs live. Raises DriftError when live state is unreadable."""
    project, region = outputs.get("gcpProject", ""), outputs.get("region", "")
    report = Report(stack)
    for key, svc in sorted((outputs.get("services") or {}).items()):
        expected = entries(svc.get("traffic"))
        live = read_live(session, endpoint, project, region, svc["serviceName"])
        report.services.append(compare(key, svc["serviceName"], expected, live))
    return report


def render(report: Report) -> list[str]:
    lines = []
    for s in report.services:
        if s.drifted:
            lines.append(f"DRIFT {s.key} ({s.service_name}):")
            lines += [f"  - {p}" for p in s.problems]
            lines.append(f"  expected: {', '.join(e.show() for e in s.expected)}")
            lines.append(f"  live:     {', '.join(e.show() for e in s.live) if s.live is not None else 'no such service'}")
        else:
            lines.append(f"ok    {s.key} ({s.service_name}): {', '.join(e.show() for e in s.live or ())}")
        lines += [f"  note: {n}" for n in s.notes]
    return lines
