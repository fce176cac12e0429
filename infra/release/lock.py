"""The lease lock: one rollout, flag ramp or bake of a stack at a time, across machines.

The lease lives in the ledger (`lease`: holder, host, run URL, pid, started, heartbeat, expires) and is
taken, renewed and released with compare-and-swap writes. A live lease of someone else makes a second
actor stop at once (exit 4, naming the holder); a lease whose holder died expires `ttl_s` after its last
heartbeat and may then be taken over. `rollback` never takes it and never waits for it: it writes the
fence, and the lease holder stops at its next look at the ledger.
"""
from __future__ import annotations

import getpass
import os
import threading
import time
import uuid
from typing import Callable, Optional

from infra.release.ledger import Abort, Ledger

DEFAULT_TTL_S = 900.0  # 15 min: a holder renews every ttl/3 (a heartbeat thread, and before every effect)


class LockBusy(Exception):
    pass


class LeaseLost(Abort):
    """Our lease was taken over (it expired): stop without writing."""


def run_url() -> str:
    """The CI run holding the lease (GitHub Actions), or ''."""
    server, repo, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else ""


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def describe(lease: dict) -> str:
    return (f"{lease.get('holder')} on {lease.get('host')} (pid {lease.get('pid')}"
            + (f", {lease['run']}" if lease.get("run") else "") + f"), {lease.get('what', 'a release')} since "
            f"{iso(lease.get('started', 0))}, heartbeat {iso(lease.get('heartbeat', 0))}, expires "
            f"{iso(lease.get('expires', 0))}")


class Lease:
    def __init__(self, ledger: Ledger, what: str, holder: Optional[str] = None, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.time, heartbeat: bool = True):
        self.ledger = ledger
        self.what = what
        self.holder = holder or getpass.getuser()
        self.ttl_s = ttl_s
        self.clock = clock
        self.heartbeat_thread = heartbeat
        self.id = uuid.uuid4().hex
        self.renewed = 0.0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def acquire(self) -> None:
        now = self.clock()

        def take(doc: dict) -> None:
            held = doc.get("lease")
            if held and held.get("id") != self.id and float(held.get("expires", 0)) > now:
                raise LockBusy(f"another {held.get('what', 'release')} of this stack holds the lease: {describe(held)}; "
                               f"nothing was done")
            doc["lease"] = {"id": self.id, "holder": self.holder, "host": os.uname().nodename, "pid": os.getpid(),
                            "run": run_url(), "what": self.what, "started": now, "heartbeat": now,
                            "expires": now + self.ttl_s}

        self.ledger.update(take, by=self.holder, what=f"lease taken ({self.what})")
        self.renewed = now

    def renew(self, force: bool = False) -> None:
        """Heartbeat: due every ttl/3 (or `force`); raises LeaseLost when someone took the lease over."""
        now = self.clock()
        if not force and now - self.renewed < self.ttl_s / 3:
            return

        def beat(doc: dict) -> None:
            held = doc.get("lease") or {}
            if held.get("id") != self.id:
                raise LeaseLost(f"the lease was taken over ({describe(held) if held else 'released'})")
            held.update(heartbeat=now, expires=now + self.ttl_s)

        self.ledger.update(beat, by=self.holder, what="lease heartbeat")
        self.renewed = now

    def release(self) -> None:
        def drop(doc: dict) -> None:
            if (doc.get("lease") or {}).get("id") == self.id:
                doc["lease"] = None
            else:
                raise Abort("not ours any more")

        try:
            self.ledger.update(drop, by=self.holder, what=f"lease released ({self.what})")
        except Abort:
            pass

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew(force=True)
            except Exception:  # noqa: BLE001 - the actor's own next look at the ledger reports it
                return

    def __enter__(self):
        self.acquire()
        if self.heartbeat_thread:
            self._thread = threading.Thread(target=self._beat, daemon=True, name="ledger-lease-heartbeat")
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.release()


class FenceWatch:
    """The rollback fence as an actor saw it when it started: `check` (a fresh ledger read, or the document
    about to be written) raises Superseded once a rollback moved it."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger
        self.seq = int(ledger.read().fence.get("seq", 0))

    def check(self, doc: Optional[dict] = None) -> None:
        from infra.release.state import Superseded

        doc = doc if doc is not None else self.ledger.read().doc
        if int((doc.get("fence") or {}).get("seq", 0)) != self.seq:
            raise Superseded(doc["fence"])

    def moved_by_us(self, fence: dict) -> None:
        self.seq = int(fence["seq"])
