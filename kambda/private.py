"""Files only the platform's user may read: credentials, tokens and keys that kambda up writes anew at
every start (a restart rotates them)."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str, owner: tuple[int, int] | None = None) -> None:
    """Write ``text`` to ``path`` with mode 0600 (owned by ``owner`` (uid, gid) when given), atomically:
    a reader sees the old file or the new one, never a part, and never a moment with wider rights."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a tmp file left by an earlier run
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, path)
