"""Child processes that never outlive their parent, and stopping them in order.

Every process kambda starts (nats-server, controller, gateway, invokers, execution environments)
is started through :func:`spawn`, which asks the kernel to SIGKILL the child when its parent dies
(``PR_SET_PDEATHSIG``), so even a ``kill -9`` of ``kambda up`` leaves no orphan behind.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_libc: Any = None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec."""
    global _libc
    if sys.platform.startswith("linux"):
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def preexec_new_group() -> None:
    """For children that get a process group of their own (killed as a group)."""
    os.setpgid(0, 0)
    _die_with_parent()


async def spawn(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    own_group: bool = False,
    stdout: int | None = None,
    stderr: int | None = None,
    stdin: int | None = subprocess.DEVNULL,
    pass_fds: Sequence[int] = (),
) -> asyncio.subprocess.Process:
    """Start a child that dies with this process; ``own_group`` makes it a process-group leader."""
    # Resolve libc in the parent so the child does no dlopen between fork and exec.
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return await asyncio.create_subprocess_exec(
        *argv,
        env=dict(env) if env is not None else None,
        cwd=str(cwd) if cwd is not None else None,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=preexec_new_group if own_group else _die_with_parent,
        pass_fds=tuple(pass_fds),
    )


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group (a child started with ``own_group``), ignoring one that is gone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def stop(proc: asyncio.subprocess.Process, timeout: float, sig: int = signal.SIGTERM) -> int:
    """Ask a child to stop, wait up to ``timeout`` seconds, then kill it. Returns its exit code."""
    if proc.returncode is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
            await proc.wait()
    return proc.returncode if proc.returncode is not None else -1


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def service_pids(up_pid: int, module: str) -> list[int]:
    """The processes below ``up_pid`` that run ``python -m module`` (a kambda service)."""
    found = []
    for pid in descendants(up_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", module.encode()]:
            found.append(pid)
    return found


def python_argv(module: str) -> list[str]:
    """argv that runs ``python -m module`` on this very interpreter (full path: no shims)."""
    return [sys.executable, "-m", module]
