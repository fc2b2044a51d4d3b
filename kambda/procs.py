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


def python_argv(module: str) -> list[str]:
    """argv that runs ``python -m module`` on this very interpreter (full path: no shims)."""
    return [sys.executable, "-m", module]
