"""The release ledger: one JSON document per stack, the single source of truth for release state.

    {"stack": "prod",
     "release": {...},   the journal(s), approvals with evidence, rejections, bake windows (was netra:release)
     "config":  {...},   what the program renders, config path -> value (None: removed), e.g.
                         netra:canaryPercent, netra:services.auth.stableRevision
     "fence":   {...},   the rollback fence: seq, by, at, why, rejected revisions; a rollback bumps seq
     "lease":   {...},   the lock lease: holder, host, run, started, heartbeat, expires (epoch seconds)
     "history": [...]}   the last writes: seq, by, what, at (who changed what, in order)

Every write is a compare-and-swap of a fresh read (`Ledger.update`): read the document and its
generation, apply the change to that copy, save it only if the generation is still the one read
(`if_generation_match`), and on a conflict read again and re-apply. Nothing ever writes back a copy read
before a long effect. Stores:

- `GcsStore`: an object in a GCS bucket (google-cloud-storage), saved with `if_generation_match`
  (0: the object must not exist yet); a 412 is a conflict. The bucket is versioned, so every
  generation stays readable (an audit trail).
- `DirStore`: a directory offline (sandboxes, tests, a laptop): `ledger.json` holds the document and its
  generation; a save takes an exclusive `fcntl` lock on `ledger.lock`, compares the generation on disk,
  writes `ledger.json.tmp`, fsyncs and renames it over `ledger.json` (readers never see half a file).
- `MemoryStore`: the same semantics in memory (the dry run, unit tests).
"""
from __future__ import annotations

import copy
import fcntl
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

HISTORY_LIMIT = 500
LEDGER_OBJECT = "ledger/{stack}.json"


class Conflict(Exception):
    """The document changed since it was read (generation mismatch): read again and re-apply."""


class LedgerError(Exception):
    """The ledger cannot be read or written (not a conflict): the actor stops, exit 4."""


class Store(Protocol):
    def load(self) -> tuple[Optional[dict], int]:
        """(document, generation); (None, 0) when there is none yet."""

    def save(self, doc: dict, if_generation_match: int) -> int:
        """Write `doc` only if the stored generation is `if_generation_match`; return the new generation,
        or raise Conflict."""


def _encode(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class MemoryStore:
    def __init__(self, doc: Optional[dict] = None):
        self._doc = copy.deepcopy(doc)
        self._generation = 1 if doc is not None else 0
        self._mutex = threading.Lock()

    def load(self) -> tuple[Optional[dict], int]:
        with self._mutex:
            return copy.deepcopy(self._doc), self._generation

    def save(self, doc: dict, if_generation_match: int) -> int:
        with self._mutex:
            if if_generation_match != self._generation:
                raise Conflict(f"generation {self._generation}, not {if_generation_match}")
            self._doc = json.loads(_encode(doc))  # what a real store keeps: JSON, no shared references
            self._generation += 1
            return self._generation


class DirStore:
    """`DIR/ledger.json` = {"generation": n, "doc": {...}}, replaced atomically under an fcntl lock."""

    def __init__(self, directory: Path | str):
        self.dir = Path(directory)
        self.path = self.dir / "ledger.json"

    def load(self) -> tuple[Optional[dict], int]:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None, 0
        except (OSError, ValueError) as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from None
        return data["doc"], int(data["generation"])

    def save(self, doc: dict, if_generation_match: int) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "ledger.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for microseconds: compare, write, rename
            _, current = self.load()
            if current != if_generation_match:
                raise Conflict(f"generation {current}, not {if_generation_match}")
            tmp = self.path.with_suffix(".json.tmp")
            with open(tmp, "wb") as f:
                f.write(json.dumps({"generation": current + 1, "doc": doc}, sort_keys=True, indent=1).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            return current + 1
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class GcsStore:
    """The ledger object in a GCS bucket through google-cloud-storage; saves carry `if_generation_match`."""

    def __init__(self, bucket: str, stack: str, client=None):
        from google.auth.exceptions import GoogleAuthError
        from google.cloud import storage

        try:
            self.client = client or storage.Client()
        except GoogleAuthError as exc:  # no credentials: an operator's setup problem, not a crash
            raise LedgerError(f"cannot open the release ledger gs://{bucket}: no usable Google credentials ({exc}); "
                              f"run `gcloud auth application-default login`, or set $NETRA_LEDGER to a directory "
                              f"to use a local ledger") from None
        self.bucket = self.client.bucket(bucket)
        self.name = LEDGER_OBJECT.format(stack=stack)

    @property
    def url(self) -> str:
        return f"gs://{self.bucket.name}/{self.name}"

    def load(self) -> tuple[Optional[dict], int]:
        from google.api_core import exceptions

        blob = self.bucket.blob(self.name)
        try:
            data = blob.download_as_bytes()  # sets blob.generation from the response (x-goog-generation)
        except exceptions.NotFound:
            return None, 0
        except exceptions.GoogleAPICallError as exc:
            raise LedgerError(f"cannot read {self.url}: {exc}") from None
        try:
            return json.loads(data), int(blob.generation)
        except (TypeError, ValueError) as exc:
            raise LedgerError(f"{self.url} is not a ledger document: {exc}") from None

    def save(self, doc: dict, if_generation_match: int) -> int:
        from google.api_core import exceptions

        blob = self.bucket.blob(self.name)
        try:
            blob.upload_from_string(_encode(doc), content_type="application/json",
                                    if_generation_match=if_generation_match)
        except exceptions.PreconditionFailed:
            raise Conflict(f"{self.url} changed since generation {if_generation_match}") from None
        except exceptions.GoogleAPICallError as exc:
            raise LedgerError(f"cannot write {self.url}: {exc}") from None
        return int(blob.generation)


def open_store(location: str, stack: str) -> Store:
    """`gs://BUCKET` (the object ledger/<stack>.json in it) or a local directory (its <stack>/ledger.json)."""
    if location.startswith("gs://"):
        bucket = location[len("gs://"):].strip("/")
        if not bucket or "/" in bucket:
            raise LedgerError(f"ledger location must be gs://BUCKET or a directory, got {location!r}")
        return GcsStore(bucket, stack)
    return DirStore(Path(location) / stack)


# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    doc: dict
    generation: int

    @property
    def release(self) -> dict:
        return self.doc["release"]

    @property
    def config(self) -> dict:
        return self.doc["config"]

    @property
    def fence(self) -> dict:
        return self.doc["fence"]

    @property
    def lease(self) -> Optional[dict]:
        return self.doc.get("lease")


class Abort(Exception):
    """Raised inside a change to write nothing (e.g. the fence moved); propagates to the caller."""


def empty(stack: str) -> dict:
    return {"stack": stack, "release": {"approvals": {}}, "config": {}, "fence": {"seq": 0}, "lease": None,
            "history": []}


class Ledger:
    """Read-modify-write with compare-and-swap over a Store. `seed` (a function returning an initial
    document) adopts an existing stack's release state the first time the ledger is used."""

    def __init__(self, store: Store, stack: str = "", seed: Optional[Callable[[], dict]] = None,
                 retries: int = 50, sleep=time.sleep):
        self.store = store
        self.stack = stack
        self.seed = seed
        self.retries = retries
        self.sleep = sleep
        self.conflicts = 0  # conflicts met (measured by tests and the benchmark)

    def _normal(self, doc: Optional[dict]) -> dict:
        if doc is None:
            doc = self.seed() if self.seed is not None else empty(self.stack)
        base = empty(self.stack)
        base.update(doc)
        base["release"].setdefault("approvals", {})
        return base

    def read(self) -> Snapshot:
        doc, generation = self.store.load()
        return Snapshot(self._normal(doc), generation)

    def update(self, change: Callable[[dict], Any], by: str, what: str) -> tuple[Snapshot, Any]:
        """Apply `change(doc)` to a fresh read and save it with the generation read; on a conflict read again
        and re-apply (so `change` must decide from the doc it is given, never from an older copy).
        Returns the saved snapshot and what `change` returned. `change` may raise Abort to write nothing."""
        for attempt in range(self.retries):
            snap = self.read()
            doc = copy.deepcopy(snap.doc)
            result = change(doc)
            history = doc.setdefault("history", [])
            history.append({"seq": (history[-1]["seq"] + 1) if history else 1, "by": by, "what": what,
                            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            del history[:-HISTORY_LIMIT]
            try:
                generation = self.store.save(doc, snap.generation)
            except Conflict:
                self.conflicts += 1
                self.sleep(min(0.05 * (attempt + 1), 0.5) * random.random())
                continue
            return Snapshot(doc, generation), result
        raise LedgerError(f"the ledger kept changing under {what!r} ({self.retries} conflicts in a row)")
