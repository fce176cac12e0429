"""Real effects of a release, one function each: the Cloud Run job (migration, load test) and its
long-running operation, an authorized Google session, `git tag`, the live gate and the 0 % verification
bound to what they judged."""
from __future__ import annotations

import json
import subprocess
import time
from typing import TYPE_CHECKING, Callable, Optional

from infra.release import model as rel
from infra.release.state import OperationFailed, Target

if TYPE_CHECKING:
    from infra.release.revision import Release


def run_migration_job(job: dict, project: str, session=None, timeout_s: float = 1800.0, poll_s: float = 5.0,
                      sleep=time.sleep, log=print, overrides: dict | None = None) -> None:
    """Execute the Cloud Run job and wait for it (Cloud Run Admin API v2, jobs.run + operations.get)."""
    name = job["name"]
    if not name.startswith("projects/"):
        name = f"projects/{project}/locations/{job.get('region')}/jobs/{name}"
    if session is None:
        session = authorized_session()
    base = "https://run.googleapis.com/v2/"
    # overrides: per-execution env/args (RunJobRequest.overrides), e.g. the restore drill's DB_HOST
    r = session.post(base + name + ":run", json={"overrides": overrides} if overrides else {})
    if r.status_code >= 300:
        raise OperationFailed(f"migration job {name}: run returned HTTP {r.status_code}: {r.text[:200]}")
    op = r.json()
    log(f"migration job {name}: started ({op.get('name', '?')})")
    wait_run_operation(session, base, op, f"migration job {name}", timeout_s=timeout_s, poll_s=poll_s, sleep=sleep)
    log(f"migration job {name}: succeeded")


def wait_run_operation(session, base: str, op: dict, what: str, *, timeout_s: float, poll_s: float,
                       sleep=time.sleep) -> dict:
    """Poll a Cloud Run Admin API v2 long-running operation (`base` + its name) until done; raise
    OperationFailed naming `what` on timeout, a failed poll or an operation error."""
    waited = 0.0
    while not op.get("done"):
        if waited >= timeout_s:
            raise OperationFailed(f"{what}: not done after {timeout_s:.0f} s")
        sleep(poll_s)
        waited += poll_s
        r = session.get(base + op["name"], timeout=30)
        if r.status_code >= 300:
            raise OperationFailed(f"{what}: operation poll returned HTTP {r.status_code}")
        op = r.json()
    if op.get("error"):
        raise OperationFailed(f"{what} failed: {op['error'].get('message', op['error'])}")
    return op


def authorized_session():
    from infra.release import sandbox

    if sandbox.running() is not None:  # `--sandbox DIR`: the local Cloud Run Admin API
        return sandbox.google_session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return AuthorizedSession(creds)


def git_tag(name: str, message: str, cwd) -> None:
    r = subprocess.run(["git", "tag", "-a", name, "-m", message], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise OperationFailed(f"git tag {name}: {r.stderr.strip()}")


def between_intervals(log, between: Optional[Callable[[], None]]):
    """The gate's progress callback: log each interval's line, then look at the ledger (`between` raises
    Superseded when the rollback fence moved, so a rollback stops the gate within one interval)."""
    if between is None:
        return log

    def progress(line: str) -> None:
        log(line)
        between()

    return progress


def make_gate(settings, release: Release, log, session=None,
              between: Optional[Callable[[], None]] = None) -> Callable[[Target, int], rel.Verdict]:
    """The live gate (infra.canary.api) for one service at one stage; writes verdict-STACK-KEY-STAGE.json.

    It judges what Cloud Run serves (traffic tags), and first checks that this is what the rollout
    applied: the candidate under the `canary` tag at the stage's share. A mismatch, an unreadable
    deployed state or a gate ERROR raises, which the rollout turns into a rollback attempt and exit 4."""

    def gate(t: Target, stage: int) -> rel.Verdict:
        from infra.canary import api

        deployed = api.deployed_revisions(release.stack, t.key, session=session)
        if (deployed.candidate, deployed.canary_percent) != (t.candidate, stage):
            raise OperationFailed(f"{t.key}: Cloud Run serves {deployed.candidate} at {deployed.canary_percent} % under "
                                  f"the canary tag, not {t.candidate} at {stage} % as applied")
        verdict = api.judge(deployed, settings, stack=release.stack, progress=between_intervals(log, between))
        return rollout_verdict(verdict, f"verdict-{release.stack}-{t.key}-{stage}.json", deployed.candidate,
                               deployed.canary_percent, f"the gate for {t.key}")

    return gate


def rollout_verdict(verdict, path: str, candidate: str, stage: int, what: str) -> rel.Verdict:
    """The gate's verdict (infra.canary.api) written to `path` and bound to what was judged; ERROR raises
    OperationFailed (the rollout rolls back and exits 4, never mistaking an error for a verdict)."""
    from infra.canary import api

    doc = verdict.as_dict()
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
    if verdict.decision == api.Decision.ERROR:
        raise OperationFailed(f"{what} failed: {verdict.reason}")
    label = "promote" if verdict.decision == api.Decision.PROMOTE else (
        "rollback" if verdict.decision == api.Decision.ROLLBACK else "hold")
    return rel.Verdict(label, candidate, stage, rel.evidence_digest(doc), verdict.reason, by="gate",
                       worth=doc.get("value") or None)


def make_verify(settings, urls: dict[str, str], outputs: Optional[dict] = None, project: str = "",
                session=None, secret_manager: Optional[str] = None) -> Callable[[Target, int], rel.Verdict]:
    """The 0 % verification of one candidate: through the load balancer's canary route when the service is
    behind it (the token read once from Secret Manager as the deploy identity), else its tagged URL;
    `--verify-url` overrides. An unreadable token raises OperationFailed (exit 4, never a verdict)."""
    from infra.verify import SECRET_MANAGER, VerifyRouteError, read_token, route_for, verify_candidate

    tokens: dict[str, str] = {}

    def token(secret_id: str) -> str:
        if secret_id not in tokens:
            tokens[secret_id] = read_token(session or authorized_session(), project, secret_id,
                                           secret_manager or SECRET_MANAGER)
        return tokens[secret_id]

    def verify(t: Target, stage: int) -> rel.Verdict:
        try:
            route = route_for(t.key, t.url, outputs or {}, urls, token)
        except VerifyRouteError as exc:
            raise OperationFailed(f"verification of {t.key}: {exc}") from None
        return verify_candidate(t.key, t.candidate, stage, route, t.health_path, settings)

    return verify
