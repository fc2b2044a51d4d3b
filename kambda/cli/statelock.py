"""One ``kambda up`` per state directory: an exclusive ``flock`` on ``<state>/kambda.lock``.

Two platforms on one state directory would run two nats-servers on one JetStream store. The lock
is held by the open file for the life of ``kambda up`` (the kernel releases it when the process
ends, however it ends), and the file names the holder's pid so that a refusal can say who.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "kambda.lock"


class StateDirBusy(RuntimeError):
    """Another process holds the state directory."""


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, pid: int | None = None) -> None:
        """Take the lock and write ``pid`` into the file; StateDirBusy if another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateDirBusy(f"state directory {self.path.parent} is in use by another kambda up (pid {holder}); "
                               "stop it or pass another --state-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid if pid is not None else os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None
