"""Confining execution environments when the invoker runs as root.

Every function gets a uid and gid of its own (KAMBDA_SANDBOX_UID_BASE onwards, derived from the
function's name and recorded in the state directory, so a function keeps its uid across restarts
and two functions never share one). Its environments drop to that uid before any of its code runs
(runtimes/privileges.py), with no supplementary groups, no capabilities, no_new_privs and resource
limits. What it may touch lives under the sandbox directory, one home per function:

    <sandbox dir>/             root 0711   (traversable, not listable)
      <uid>/                   root:<gid> 0750
        code/<sha256>/         root:<gid> 0550 dirs, 0440 files (0550 executables): read-only
        tmp/env-.../           <uid> 0700, the environment's TMPDIR (Lambda's /tmp)

The state directory (NATS data, the shared code cache, credentials, logs) is made 0700 root, so a
function reaches neither it nor another function's home. The platform's environment variables
never reach a function: its environment is built from scratch (environment.function_environment),
and a uid of its own keeps it out of the platform's /proc/<pid>/environ.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from invoker.settings import SandboxSettings

log = logging.getLogger(__name__)


class SandboxError(Exception):
    """The sandbox cannot be set up as configured (the message says what to change)."""


@dataclass(frozen=True)
class Identity:
    """Who a function's processes run as, and where its files are."""

    uid: int
    gid: int
    home: Path

    @property
    def code_root(self) -> Path:
        return self.home / "code"

    @property
    def tmp_root(self) -> Path:
        return self.home / "tmp"


def reachable_by_others(path: Path, need: int = stat.S_IROTH) -> bool:
    """Can a user with no relation to the owner reach ``path`` (every ancestor searchable) and use it
    as ``need`` says (readable by default)?"""
    try:
        real = path.resolve(strict=True)
    except OSError:
        return False
    for ancestor in reversed(real.parents):
        if not os.stat(ancestor).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(real).st_mode & need)


def _python_reachable(executable: str) -> bool:
    """An interpreter a sandboxed uid can start and import its standard library with."""
    path = Path(executable)
    if not reachable_by_others(path):
        return False
    stdlib = path.resolve().parent.parent / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return not stdlib.is_dir() or reachable_by_others(stdlib / "os.py")


def mask_plan(executable: str) -> dict[str, object] | None:
    """When ``executable`` sits below one directory other users cannot search (a Python under
    /root/.pyenv, say), the mask that makes it reachable: cover that directory, keep its subtree
    that holds the interpreter (runtimes/privileges.py mask)."""
    real = Path(executable).resolve()
    blocked = [a for a in reversed(real.parents) if not os.stat(a).st_mode & stat.S_IXOTH]
    if len(blocked) != 1 or blocked[0] == Path("/"):
        return None
    hide = blocked[0]
    return {"hide": str(hide), "keep": [str(hide / real.relative_to(hide).parts[0])]}


def _can_mask() -> bool:
    """Can this invoker give a child a mount namespace of its own (CAP_SYS_ADMIN, no seccomp veto)?"""
    probe = "import ctypes,sys; sys.exit(ctypes.CDLL(None, use_errno=True).unshare(0x00020000) != 0)"
    try:
        return subprocess.run([sys.executable, "-c", probe], timeout=30, capture_output=True).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def find_python(configured: str) -> str | None:
    """The interpreter for sandboxed Python functions: the configured one, else this one if an
    unprivileged uid can run it, else the first ``python3.X``/``python3`` on PATH that it can."""
    if configured:
        return configured
    if _python_reachable(sys.executable):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/local/bin", "/usr/bin"]:
        for name in (version, "python3"):
            candidate = Path(directory) / name
            if candidate.is_file() and _python_reachable(str(candidate)):
                return str(candidate)
    return None


class Sandbox:
    def __init__(self, settings: SandboxSettings, state_dir: Path) -> None:
        self.settings = settings
        self._state_dir = state_dir
        self._uids_file = state_dir / "sandbox-uids.json"
        self._identities: dict[str, Identity] = {}
        self.python: str | None = None
        #: Applied in every function process when this invoker's own Python is out of others' reach.
        self.mask: dict[str, object] | None = None

    @property
    def limits(self) -> dict[str, int]:
        return dict(self.settings.limits)

    def prepare(self) -> None:
        """Lock the state directory away and make the sandbox directory; refuse an unsafe one."""
        os.chmod(self._state_dir, 0o700)
        root = self.settings.root
        with contextlib.suppress(FileExistsError):
            root.mkdir(mode=0o711)
        info = os.lstat(root)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
            raise SandboxError(f"KAMBDA_SANDBOX_DIR={root} must be a directory owned by root (not a symlink)")
        os.chmod(root, 0o711)
        if not reachable_by_others(root, stat.S_IXOTH):
            raise SandboxError(f"KAMBDA_SANDBOX_DIR={root} is not reachable by unprivileged users: every "
                               "directory above it must be searchable by others (o+x)")
        plan = None if self.settings.python else mask_plan(sys.executable)
        if plan is not None and _can_mask():
            self.mask, self.python = plan, sys.executable
            log.info("sandbox: functions see %s only through a mask that keeps %s", plan["hide"], plan["keep"])
        else:
            self.python = find_python(self.settings.python)
        if self.python is None:
            log.error("sandbox: no Python interpreter that an unprivileged uid can run was found (this one, %s, "
                      "lives where other users cannot read); set KAMBDA_PYTHON, or Python functions fail",
                      sys.executable)
        log.info("sandbox on: functions run as uids from %d, files under %s, limits %s, Python %s",
                 self.settings.uid_base, root, self.settings.limits, self.python)

    def confinement(self, ident: Identity) -> dict[str, object]:
        """What a process needs to become the function (runtimes/privileges.py drop)."""
        return {"uid": ident.uid, "gid": ident.gid, "limits": self.limits, "mask": self.mask}

    def identity(self, function: str) -> Identity:
        """The function's uid (allocated and recorded on first use; blocking: call in a thread)."""
        known = self._identities.get(function)
        if known is not None:
            return known
        uid = self._allocate(function)
        ident = Identity(uid=uid, gid=uid, home=self.settings.root / str(uid))
        for path, owner, mode in ((ident.home, 0, 0o750), (ident.code_root, 0, 0o750), (ident.tmp_root, 0, 0o750)):
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            os.lchown(path, owner, ident.gid)
            os.chmod(path, mode)
        self._identities[function] = ident
        return ident

    def _allocate(self, function: str) -> int:
        """base + hash(name) mod count, probing past uids taken by other names; kept in a locked file
        shared by every invoker that uses this state directory."""
        base, count = self.settings.uid_base, self.settings.uid_count
        with open(self._uids_file, "a+") as handle:
            os.fchmod(handle.fileno(), 0o600)
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            text = handle.read()
            table: dict[str, int] = json.loads(text) if text.strip() else {}
            if function in table:
                return table[function]
            taken = set(table.values())
            start = int.from_bytes(hashlib.sha256(function.encode()).digest()[:8], "big") % count
            for step in range(count):
                uid = base + (start + step) % count
                if uid not in taken:
                    break
            else:
                raise SandboxError(f"all {count} sandbox uids from {base} are taken; raise KAMBDA_SANDBOX_UID_COUNT")
            table[function] = uid
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(table, sort_keys=True))
            handle.flush()
            os.fsync(handle.fileno())
            return uid

    def code_dir(self, ident: Identity, shared: Path) -> Path:
        """The function's read-only copy of an extracted package (blocking: call in a thread)."""
        dest = ident.code_root / shared.name
        if dest.is_dir():
            return dest
        staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=ident.code_root))
        try:
            shutil.copytree(shared, staging / "pkg", symlinks=True)
            _seal(staging / "pkg", ident.gid)
            try:
                os.rename(staging / "pkg", dest)
            except OSError:
                if not dest.is_dir():  # another environment won the race otherwise
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return dest

    def drop_code(self, sha256_hex: str) -> None:
        """Delete every function's copy of a package (blocking: call in a thread)."""
        if not sha256_hex:
            return
        for ident in list(self._identities.values()):
            shutil.rmtree(ident.code_root / sha256_hex, ignore_errors=True)  # sealed, but this is root

    def tmp_dir(self, ident: Identity, prefix: str) -> Path:
        """A fresh private TMPDIR owned by the function's uid."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=ident.tmp_root))
        os.chown(path, ident.uid, ident.gid)
        return path


def _seal(root: Path, gid: int) -> None:
    """root:gid, directories 0550, files 0440 (0550 when executable): readable, not writable."""
    for directory, dirs, files in os.walk(root):
        for name in files + dirs:
            path = Path(directory) / name
            info = os.lstat(path)
            os.lchown(path, 0, gid)
            if stat.S_ISLNK(info.st_mode):
                continue
            if stat.S_ISDIR(info.st_mode):
                os.chmod(path, 0o550)
            else:
                os.chmod(path, 0o550 if info.st_mode & 0o111 else 0o440)
    os.lchown(root, 0, gid)
    os.chmod(root, 0o550)
