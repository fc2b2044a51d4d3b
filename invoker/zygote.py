"""The invoker's side of the Python zygote (runtimes/python_zygote.py): fork environments from it.

A forked environment is the zygote's child, not ours, so the zygote reaps it and reports its exit
code; :class:`ZygoteChild` turns that into the same ``pid`` / ``returncode`` / ``wait()`` surface an
asyncio subprocess has, so the environment code does not care how its process was made. If the
zygote dies, its children die with it (PR_SET_PDEATHSIG) and are reported killed; the next fork
starts a new zygote.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from invoker.runtimes import RUNTIME_DIR, privileges
from kambda import procs

log = logging.getLogger(__name__)

ZYGOTE = RUNTIME_DIR / "python_zygote.py"


class ZygoteChild:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def _set_exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


class Zygote:
    """A zygote; with ``preload`` (env, cwd, handler) it is a SnapStart zygote for one function.

    ``python`` is the interpreter it runs on. ``confine`` ({"uid", "gid", "limits"}) makes the whole
    zygote run as a sandboxed function (a SnapStart zygote runs the function's initialisation
    code, so it must never hold root); otherwise each fork request says whom the child becomes.
    The zygote gets a bare environment: what it holds in memory, its children inherit.
    """

    def __init__(self, preload: dict[str, object] | None = None, python: str = sys.executable,
                 confine: dict[str, object] | None = None) -> None:
        self._preload = preload
        self._python = python
        self._confine = confine
        self._preloaded: asyncio.Future[dict[str, object]] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._ready: asyncio.Future[None] | None = None
        self._forks: deque[asyncio.Future[ZygoteChild]] = deque()
        self._children: dict[int, ZygoteChild] = {}
        self._lock = asyncio.Lock()

    async def _ensure(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.returncode is None:
            return self._sock
        self._reset()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = await self._spawn(theirs.fileno())
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._readable)
        await asyncio.wait_for(asyncio.shield(self._ready), 30)
        if self._preload is not None:
            self._preloaded = loop.create_future()
            ours.send(json.dumps({"preload": self._preload}).encode())
            answer = await asyncio.wait_for(asyncio.shield(self._preloaded), 900)
            if not answer.get("preloaded"):
                log.warning("SnapStart initialisation failed; environments initialise on their own: %s",
                            answer.get("error"))
        return ours

    async def _spawn(self, fd: int) -> asyncio.subprocess.Process:
        argv = [self._python, str(ZYGOTE), str(fd)]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        confine = self._confine
        if confine is None:
            return await procs.spawn(argv, env=env, pass_fds=(fd,))

        def drop() -> None:
            privileges.drop(confine["uid"], confine["gid"], confine["limits"], confine.get("mask"))

        return await asyncio.create_subprocess_exec(*argv, env=env, cwd="/", stdin=asyncio.subprocess.DEVNULL,
                                                    pass_fds=(fd,), preexec_fn=drop)

    @property
    def children(self) -> int:
        return len(self._children)

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._reset()
                return
            message = json.loads(data)
            if "pid" in message:
                child = ZygoteChild(message["pid"])
                self._children[child.pid] = child
                if self._forks:
                    self._forks.popleft().set_result(child)
            elif "exit" in message:
                exited = self._children.pop(message["exit"], None)
                if exited is not None:
                    exited._set_exit(int(message["code"]))
            elif message.get("ready") and self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
            elif "preloaded" in message and self._preloaded is not None and not self._preloaded.done():
                self._preloaded.set_result(message)

    def _reset(self) -> None:
        """The zygote is gone: its children died with it; pending forks fail."""
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for child in self._children.values():
            child._set_exit(-signal.SIGKILL)
        self._children.clear()
        while self._forks:
            self._forks.popleft().set_exception(OSError("the zygote died"))
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(OSError("the zygote did not start"))
        if self._preloaded is not None and not self._preloaded.done():
            self._preloaded.set_exception(OSError("the zygote died while initialising"))

    async def start(self) -> None:
        """Start the zygote now, so that even the first cold start only forks."""
        async with self._lock:
            await self._ensure()

    async def fork(self, env: Mapping[str, str], cwd: Path, out_fd: int, channel_fd: int | None = None,
                   sandbox: Mapping[str, object] | None = None) -> ZygoteChild:
        async with self._lock:  # forks answer in order; one request in flight keeps that simple
            sock = await self._ensure()
            future: asyncio.Future[ZygoteChild] = asyncio.get_running_loop().create_future()
            self._forks.append(future)
            request: dict[str, object] = {"env": dict(env), "cwd": str(cwd)}
            if sandbox is not None:
                request["sandbox"] = dict(sandbox)
            payload = json.dumps(request).encode()
            fds = [out_fd] if channel_fd is None else [out_fd, channel_fd]
            sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            return await asyncio.wait_for(future, 30)

    async def stop(self) -> None:
        if self._proc is not None:
            await procs.stop(self._proc, 2.0, signal.SIGKILL)
        self._reset()
