"""What every step and actor of the release domain shares: the recorded release state (`netra:release`),
what a step sees (`State`), what it may answer (`Outcome`), the step table row (`Step`), the interface a
release kind implements (`Kind`), exit codes and errors. Pure: no Pulumi, no cloud, no other module of
the package.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional, Protocol

if TYPE_CHECKING:  # annotations only: the driver imports this module, never the other way round
    from infra.release.driver import Driver

EXIT_RELEASED, EXIT_ROLLED_BACK, EXIT_USAGE, EXIT_HELD, EXIT_FAILED = 0, 1, 2, 3, 4
RELEASE_KEY = "netra:release"
STACK_PERCENT_KEY = "netra:canaryPercent"


class OperationFailed(Exception):
    """An effect failed in a way the rollout handles (a failed `pulumi up`, migration, tag)."""


class Superseded(BaseException):
    """The rollback fence moved while this actor ran: it stops at once, writing nothing more (a BaseException,
    so no `except Exception` of a step mistakes it for a failure to roll back from)."""

    def __init__(self, fence: dict):
        super().__init__(f"superseded by the rollback of {fence.get('by')} at {fence.get('at')}")
        self.fence = fence


class Killed(BaseException):
    """Tests: the process dies here (not an Exception, so no handler of the rollout sees it)."""


@dataclass(frozen=True)
class Target:
    """One thing a release moves: a service's candidate revision (or a flag's `on` arm) and its stable one."""

    key: str
    service_name: str
    candidate: str
    stable: Optional[str]
    url: str = ""
    health_path: str = "/health"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def decode(value: Any) -> Any:
    """A config value as the program sees it: JSON objects/lists stored as strings are decoded."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def read_release_doc(config: dict) -> dict:
    doc = decode(config.get(RELEASE_KEY)) or {}
    doc = dict(doc) if isinstance(doc, dict) else {}  # a copy: callers change it, never the config read
    doc.setdefault("approvals", {})
    return doc


def remove_path(config: dict, path: str) -> None:
    key, _, rest = path.partition(".")
    node = config.get(key)
    if not rest:
        config.pop(key, None)
        return
    parts = rest.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict):
            return
        node = node.get(part)
    if isinstance(node, dict):
        node.pop(parts[-1], None)


class Kind(Protocol):
    """What the Driver and the shared steps ask of the thing being released (a release kind). A new kind is
    one module that defines such a class and its step table (see revision.py and flag.py)."""

    stack: str
    targets: tuple[Target, ...]
    journal_key: ClassVar[str]  # netra:release.<journal_key>

    @property
    def steps(self) -> tuple["Step", ...]: ...
    @property
    def ladder(self) -> tuple[int, ...]: ...
    @property
    def keys(self) -> list[str]: ...
    @property
    def candidates(self) -> dict[str, str]: ...
    @property
    def checked_stages(self) -> list[int]: ...
    @property
    def describe(self) -> str: ...
    @property
    def nothing_live(self) -> str: ...
    @property
    def rolled_back_state(self) -> str: ...
    def stage_keys(self) -> list[str]: ...
    def desired(self, config: dict) -> float: ...
    def approved(self, doc: dict, stage: float) -> bool: ...
    def record_check(self, doc: dict, verdicts: dict, rejected: Optional[str]) -> None: ...
    def forget_approvals(self, doc: dict) -> None: ...
    def mark_reached(self, doc: dict, stage: float) -> None: ...
    def closing_removals(self) -> tuple[str, ...]: ...
    def up_message(self, why: str) -> str: ...
    def stage_fields(self) -> dict: ...


@dataclass(frozen=True)
class State:
    """Everything a step may look at, read fresh before every step."""

    release: Kind
    config: dict  # top-level key -> decoded value
    doc: dict  # netra:release
    desired: int  # the stage the config asks for
    tag: bool = False  # --tag given
    ledger: dict = field(default_factory=dict)  # the ledger document this state was read from

    @property
    def journal(self) -> Optional[dict]:
        return self.doc.get(self.release.journal_key)

    @property
    def live(self) -> int:
        return int(self.journal.get("live", -1)) if self.journal else -1

    def approval(self, key: str) -> Optional[dict]:
        return (self.doc.get("approvals") or {}).get(key)

    def approved_at(self, stage: int) -> bool:
        return self.release.approved(self.doc, stage)


def read_state(release: Kind, backend, tag: bool = False) -> State:
    """The state from a fresh read of the ledger and the stack config (infra/release/view.py)."""
    from infra.release.view import current  # view -> ledger; state stays importable alone

    config, snap = current(backend)
    return State(release, config, read_release_doc(config), release.desired(config), tag, snap.doc)


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    reason: str


@dataclass(frozen=True)
class Step:
    """A row of a kind's step table: the first row whose `when` holds on the fresh state runs."""

    name: str
    when: Callable[[State], bool]
    run: Callable[["Driver", State], Optional[Outcome]]
