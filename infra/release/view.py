"""The stack config as the ledger says it must be: what every actor reads, and what the program renders.

- `current(backend)`: the stack config with the ledger's config overlay applied and `netra:release`
  replaced by the ledger's release record (stamped): the one view every step and command decides on.
- `render(backend, snap)`: write that view's ledger-owned keys into the stack config, stamped with the
  ledger generation and `release_digest` (what the program checks before it gives any share above 0).
- `commit(backend, by, what, change)`: a compare-and-swap update of the ledger, then `render`.
- `check_rendered(backend, snap)`: before a `pulumi up`: the stack config must carry exactly the release
  state of the ledger read just now; else the up is refused (it could move traffic on stale state).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional

from infra.release.ledger import Ledger, MemoryStore, Snapshot, empty
from infra.release.model import evidence_digest
from infra.release.state import RELEASE_KEY, OperationFailed, decode, read_release_doc, remove_path

STAMP = "ledger"  # netra:release.ledger: {generation, digest}


AUTHORIZING = ("approvals", "flagApprovals")  # the records that let a candidate (or a flag) get traffic


def adopt(config: dict, stack: str) -> dict:
    """The first ledger document of a stack that has none: its `netra:release` as recorded in stack config
    (so a stack in the middle of a release keeps its journal, rejections and bake windows; once). An
    approval is adopted only from a record rendered from a ledger (its stamp's digest matches): a
    hand-written one never becomes evidence; its candidate is verified again."""
    doc = empty(stack)
    release = read_release_doc(config)
    stamp = release.pop(STAMP, None) or {}
    if stamp.get("digest") != release_digest(release, config):
        for key in AUTHORIZING:
            release[key] = {k: a for k, a in (release.get(key) or {}).items() if isinstance(a, dict) and a.get("rejected")}
    doc["release"] = release
    return doc


def foreign_records(config: dict, snap: Snapshot) -> list[str]:
    """The approval records of a stack config not rendered from the ledger (hand-written or edited: its
    stamp's digest does not match), that the ledger does not hold as they are, as config keys: they are
    never used, the config is rendered again. A stamped record of an earlier generation is the ledger's
    own history (every write renders over the previous one), not foreign."""
    decoded = {k: decode(v) for k, v in config.items()}
    recorded = read_release_doc(decoded)
    if (recorded.get(STAMP) or {}).get("digest") == release_digest(recorded, decoded):
        return []
    out = []
    for key in AUTHORIZING:
        mine, theirs = snap.release.get(key) or {}, recorded.get(key) or {}
        out += [f"{RELEASE_KEY}.{key}.{k}" for k in sorted(theirs) if theirs[k] != mine.get(k)]
    return out


def memory_ledger(config: dict, stack: str = "") -> Ledger:
    return Ledger(MemoryStore(adopt(config, stack)), stack)


def stables(config: dict) -> dict[str, Optional[str]]:
    services = decode(config.get("netra:services")) or {}
    if not isinstance(services, dict):
        return {}
    return {k: ((s or {}).get("stableRevision") or None) if isinstance(s, dict) else None
            for k, s in sorted(services.items())}


def release_digest(release: dict, config: dict) -> str:
    """SHA-256 over what authorizes traffic: the release record (approvals, journals, bake windows) and the
    stable revisions. The program recomputes it from the config it renders."""
    return evidence_digest({"release": {k: v for k, v in release.items() if k != STAMP}, "stables": stables(config)})


def overlay_of(config: dict, snap: Snapshot) -> dict:
    """`config` with the ledger's config overlay of `snap` applied (decoded, a copy)."""
    from infra.plan.stackfile import set_path

    out = {k: copy.deepcopy(decode(v)) for k, v in config.items()}
    for path, value in sorted(snap.config.items()):
        if value is None:
            remove_path(out, path)
        else:
            set_path(out, path, copy.deepcopy(value))
    return out


def stamped(snap: Snapshot, overlaid: dict) -> dict:
    release = {k: v for k, v in copy.deepcopy(snap.release).items() if k != STAMP}
    release[STAMP] = {"generation": str(snap.generation), "digest": release_digest(release, overlaid)}
    return release


def current(backend) -> tuple[dict, Snapshot]:
    """(the stack config as the ledger says it is, the ledger snapshot it came from)."""
    snap = backend.ledger.read()
    view = overlay_of(backend.read(), snap)
    view[RELEASE_KEY] = stamped(snap, view)
    return view, snap


def render(backend, snap: Snapshot) -> list[str]:
    """Write the ledger-owned keys into the stack config (values, removals, the stamped release record).
    Returns the approval records the config held that the ledger does not (now overwritten)."""
    config = backend.read()
    foreign = foreign_records(config, snap)
    values: dict[str, Any] = {p: v for p, v in sorted(snap.config.items()) if v is not None}
    remove = tuple(p for p, v in sorted(snap.config.items()) if v is None and _present(config, p))
    values[RELEASE_KEY] = stamped(snap, overlay_of(config, snap))
    backend.write(values, remove)
    return foreign


def _present(config: dict, path: str) -> bool:
    key, _, rest = path.partition(".")
    node = decode(config.get(key))
    for part in rest.split(".") if rest else []:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return node is not None


def commit(backend, by: str, what: str, change: Callable[[dict], Any]) -> tuple[Snapshot, Any]:
    snap, result = backend.ledger.update(change, by, what)
    render(backend, snap)
    return snap, result


def check_rendered(backend, snap: Snapshot) -> None:
    """The stack config must carry the release state of `snap` (stamp and digest), else OperationFailed."""
    config = {k: decode(v) for k, v in backend.read().items()}
    recorded = read_release_doc(config)
    stamp = recorded.get(STAMP) or {}
    want = stamped(snap, overlay_of(config, snap))[STAMP]
    if stamp.get("generation") != want["generation"] or release_digest(recorded, config) != want["digest"]:
        raise OperationFailed(f"the stack config's {RELEASE_KEY} (ledger generation {stamp.get('generation', 'none')}) "
                              f"disagrees with the ledger (generation {want['generation']}): pulumi up refused, no "
                              f"traffic moved")
