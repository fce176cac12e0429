"""Rollout events for people and machines: JSON lines on stdout, a chat webhook, the GitHub job summary.

Events: start, backup (the Cloud SQL backup before the migration job), stage_up (a `pulumi up` at a stage
succeeded), verdict (gate, verification or load test answered),
rollback, hold, finalize, released, failure, bake (a bake window closed, or a trigger with autoRollback
off), drift (live traffic differs from the release state: `python -m infra drift`). Every event is one JSON object on one stdout line; the
webhook (Slack incoming webhook or Google Chat space webhook: both take `{"text": ...}`) and
`$GITHUB_STEP_SUMMARY` get a one-line human rendering. A sink that fails never fails the rollout: the
failure is reported on stderr once per sink.

Each event has an overall deadline for the webhook (`deadline_s`, default 10 s): a socket timeout bounds
each read, not the request (an endpoint that trickles a byte every few seconds, or a hanging DNS lookup,
would hold the rollout far longer), so the post runs on a daemon thread and the event moves on when the
deadline passes; the late post is abandoned and reported like a failure.

The webhook URL is a credential (anyone holding it can post): it is read from the environment
(`NETRA_ROLLOUT_WEBHOOK`), never from stack config, and never printed.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, TextIO

WEBHOOK_ENV = "NETRA_ROLLOUT_WEBHOOK"
DEADLINE_S = 10.0  # the webhook post of one event, connect to last byte
SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
EVENTS = ("start", "backup", "stage_up", "verdict", "rollback", "hold", "finalize", "released", "failure", "bake",
          "drift", "superseded")
ICONS = {"start": "▶", "backup": "💾", "stage_up": "⬆", "verdict": "⚖", "rollback": "↩", "hold": "⏸", "finalize": "✔",
         "released": "✅", "failure": "❌", "bake": "⏲",
         "drift": "≠", "superseded": "⛔"}


def render(event: dict) -> str:
    """One readable line: `[prod] ⬆ stage_up 10 %: backend netra-backend-prod-1a2b3c4d`."""
    rest = {k: v for k, v in event.items() if k not in ("event", "stack", "at", "message")}
    detail = ", ".join(f"{k}={v}" for k, v in sorted(rest.items()))
    text = f"[{event.get('stack', '?')}] {ICONS.get(event['event'], '')} {event['event']}: {event.get('message', '')}"
    return text + (f" ({detail})" if detail else "")


def post_webhook(url: str, text: str, timeout_s: float = 10.0) -> None:
    """POST `{"text": text}` (Slack and Google Chat webhooks both accept it); raises on HTTP >= 300."""
    body = json.dumps({"text": text}).encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json; charset=UTF-8"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (https webhook or a test server)
        if resp.status >= 300:
            raise OSError(f"HTTP {resp.status}")


@dataclass
class Notifier:
    stack: str
    out: TextIO = field(default_factory=lambda: sys.stdout)
    webhook: str | None = None
    summary_path: str | None = None
    post: Callable[[str, str], None] = post_webhook
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
    deadline_s: float = DEADLINE_S
    events: list = field(default_factory=list)
    _broken: set = field(default_factory=set)

    @classmethod
    def from_env(cls, stack: str, env=os.environ, **kw) -> "Notifier":
        return cls(stack, webhook=env.get(WEBHOOK_ENV) or None, summary_path=env.get(SUMMARY_ENV) or None, **kw)

    def emit(self, event: str, message: str, **fields) -> dict:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        doc = {"event": event, "stack": self.stack, "at": self.clock().isoformat(timespec="seconds"),
               "message": message, **fields}
        self.events.append(doc)
        self.out.write(json.dumps(doc, sort_keys=True) + "\n")
        self.out.flush()
        text = render(doc)
        if self.summary_path:  # a local file first: a slow webhook must not cost the job summary its line
            self._safely("job summary", lambda: self._append_summary(text))
        if self.webhook:
            self._within_deadline("webhook", lambda: self.post(self.webhook, text))
        return doc

    def _within_deadline(self, sink: str, send: Callable[[], None]) -> None:
        """Send on a daemon thread and move on when the event's deadline passes (the late send is abandoned)."""
        worker = threading.Thread(target=self._safely, args=(sink, send), name=f"notify-{sink}", daemon=True)
        start = time.monotonic()
        worker.start()
        worker.join(self.deadline_s)
        if worker.is_alive():
            self._report(sink, f"no answer within the {self.deadline_s:g} s deadline "
                               f"(gave up after {time.monotonic() - start:.1f} s); the event went on without it")

    def _append_summary(self, text: str) -> None:
        with open(self.summary_path, "a", encoding="utf-8") as f:
            f.write(f"- {text}\n")

    def _safely(self, sink: str, send: Callable[[], None]) -> None:
        try:
            send()
        except Exception as exc:  # a notification never fails the rollout
            self._report(sink, f"{type(exc).__name__}: {exc}")

    def _report(self, sink: str, why: str) -> None:
        if sink not in self._broken:
            self._broken.add(sink)
            print(f"infra rollout: warning: could not notify the {sink}: {why}", file=sys.stderr)
