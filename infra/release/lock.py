"""The stack lock: one rollout (or bake) of a stack at a time on this machine."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from infra.release.state import now


class LockBusy(Exception):
    pass


class StackLock:
    """An exclusive `flock` on `<dir>/rollout-<stack>.lock`, released when the process ends (also when it
    is killed). Pulumi's own update lock guards each `up`; this one guards the whole rollout, gates and
    config writes included. Across machines, run rollouts of a stack from one place (deploy.yml has a
    per-stack concurrency group)."""

    def __init__(self, stack: str, directory: Path):
        self.path = Path(directory) / f"rollout-{stack}.lock"
        self.fd: Optional[int] = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockBusy(f"another rollout of this stack is running ({holder}); nothing was done") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {os.uname().nodename} since {now()}".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        import fcntl

        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


