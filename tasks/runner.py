"""The local runner: one container under bubblewrap.

A container is its image's root filesystem (unpacked once, shared read-only by every container of the image:
Fargate's ``readonlyRootFilesystem``, with a private tmpfs on /tmp), run in user, mount, PID and IPC namespaces of
its own (``--unshare-user`` maps the image's User onto the caller, so root and an unprivileged worker run it
alike). The network is the host's: the containers of one task (and every task) share the machine's loopback, so a
port a container listens on is reachable at 127.0.0.1 by its sidecars, as in a Fargate task's awsvpc network.

bwrap's own init is PID 1 inside the container and the command is its child, so a SIGTERM from :meth:`stop` kills
a command that has no handler for it (exit 143) and reaches a shell's ``trap``; after the stop timeout the whole
sandbox is SIGKILLed (exit 137). The container dies with the worker that started it (``--die-with-parent``, and
bwrap itself is spawned with PR_SET_PDEATHSIG), so a dead worker leaves no orphans. Memory is watched as the
functions' is (kambda/memory.py): above the limit, the container is SIGKILLed and reported as ECS reports an
out-of-memory kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kambda import memory, procs
from tasks.oci import ImageConfig
from tasks.tools import bwrap_path

#: ECS's reason for a container its memory limit killed.
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
#: The PATH a container gets when neither its image nor its definition sets one (Docker's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The longest line a container's output is cut into (CloudWatch Logs takes events of up to 256 KB).
MAX_LINE = 256 * 1024

#: (stream, line) -> None: where a container's output goes, one line at a time ("stdout" or "stderr").
LineSink = Callable[[str, str], None]


class ContainerError(Exception):
    """A container that cannot start (its image, user or working directory is not usable)."""


@dataclass(frozen=True)
class ContainerSpec:
    """One container to run: the image's root filesystem and config, and what the task definition (with the
    RunTask overrides) says on top."""

    name: str
    rootfs: Path
    image: ImageConfig = ImageConfig()
    #: None: the image's; a list (even empty) replaces it, as Docker does.
    entrypoint: Sequence[str] | None = None
    command: Sequence[str] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    user: str = ""
    #: The hard limit in MiB; None: no limit.
    memory_mb: int | None = None
    #: Seconds between SIGTERM and SIGKILL when the container is stopped (ECS's stopTimeout, 30 by default).
    stop_timeout: float = 30.0


@dataclass(frozen=True)
class Exit:
    """How a container ended: its exit code (None when it never ran) and ECS's reason, if any."""

    exit_code: int | None
    reason: str = ""


def command_of(spec: ContainerSpec) -> list[str]:
    """argv as Docker builds it: the entrypoint, then the command; an entrypoint override drops the image's Cmd."""
    return spec.image.argv(spec.entrypoint, spec.command)


def environment_of(spec: ContainerSpec) -> dict[str, str]:
    """The image's Env, then the definition's environment over it; PATH defaults to Docker's."""
    env: dict[str, str] = {}
    for item in spec.image.env:
        key, sep, value = item.partition("=")
        if sep and key:
            env[key] = value
    env.update(spec.environment)
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOSTNAME", spec.name)
    return env


def resolve_user(rootfs: Path, user: str) -> tuple[int, int]:
    """uid and gid of an image's ``user``, ``uid``, ``user:group`` or ``uid:gid`` (names from its /etc files)."""
    if not user:
        return 0, 0
    name, _, group = user.partition(":")

    def lookup(table: str, key: str) -> tuple[int, int] | None:
        try:
            lines = (rootfs / "etc" / table).read_text(errors="replace").splitlines()
        except OSError:
            return None
        for line in lines:
            parts = line.split(":")
            if len(parts) >= 4 and parts[0] == key and parts[2].isdigit():
                return int(parts[2]), int(parts[3]) if parts[3].isdigit() else int(parts[2])
        return None

    if name.isdigit():
        uid, gid = int(name), int(name)
        found = lookup("passwd", name)
        if found is not None:
            gid = found[1]
    else:
        entry = lookup("passwd", name)
        if entry is None:
            raise ContainerError(f"CannotStartContainerError: unable to find user {name}: no matching entries "
                                 "in passwd file")
        uid, gid = entry
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            entry = lookup("group", group)
            if entry is None:
                raise ContainerError(f"CannotStartContainerError: unable to find group {group}")
            gid = entry[0]
    return uid, gid


def bwrap_argv(spec: ContainerSpec, bwrap: str | None = None, info_fd: int | None = None) -> list[str]:
    """The bwrap command line that runs ``spec`` (pure: tests read it)."""
    argv = command_of(spec)
    if not argv:
        raise ContainerError(f"CannotStartContainerError: container {spec.name} has no command: its image has no "
                             "Entrypoint or Cmd, and its definition no command")
    uid, gid = resolve_user(spec.rootfs, spec.user or spec.image.user)
    workdir = spec.working_dir or spec.image.working_dir or "/"
    if not workdir.startswith("/"):
        workdir = "/" + workdir
    if not (spec.rootfs / workdir.lstrip("/")).is_dir() and not workdir.startswith("/tmp"):
        raise ContainerError(f"CannotStartContainerError: working directory {workdir} is not a directory of the "
                             "image")
    out = [bwrap or str(bwrap_path()),
           "--unshare-user", "--uid", str(uid), "--gid", str(gid),
           "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", spec.name[:63] or "container",
           "--die-with-parent", "--new-session",
           # Bound writable only while bwrap makes its mount points (an image need not have /proc, /dev, /tmp):
           # the container sees it read-only.
           "--bind", str(spec.rootfs), "/",
           "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for name in ("resolv.conf", "hosts"):
        host = Path("/etc") / name
        if host.is_file() and (spec.rootfs / "etc" / name).exists():
            out += ["--ro-bind", str(host), f"/etc/{name}"]
    out += ["--remount-ro", "/"]
    if info_fd is not None:
        out += ["--info-fd", str(info_fd)]
    out += ["--chdir", workdir, "--clearenv"]
    for key, value in environment_of(spec).items():
        out += ["--setenv", key, value]
    return [*out, "--", *argv]


class Container:
    """One running container: :meth:`start`, then :meth:`wait` for its :class:`Exit`; :meth:`stop` ends it."""

    def __init__(self, spec: ContainerSpec, on_line: LineSink | None = None, bwrap: str | None = None) -> None:
        self.spec = spec
        self._on_line = on_line or (lambda stream, line: None)
        self._bwrap = bwrap
        self._proc: asyncio.subprocess.Process | None = None
        self._child_pid = 0
        self._readers: list[asyncio.Task[None]] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self._oom = False
        self._stopping: asyncio.Task[None] | None = None
        self.peak_kb = 0

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pids(self) -> list[int]:
        """bwrap's own process and the container's PID 1 (bwrap's init), as the host numbers them."""
        return [pid for pid in (self.pid, self._child_pid) if pid]

    async def start(self) -> None:
        """Start the container; ContainerError when it cannot be (its exit is then never waited for)."""
        read_fd, write_fd = os.pipe()
        try:
            argv = bwrap_argv(self.spec, self._bwrap, info_fd=write_fd)
            try:
                self._proc = await procs.spawn(argv, env={}, stdout=asyncio.subprocess.PIPE,
                                               stderr=asyncio.subprocess.PIPE, pass_fds=(write_fd,))
            except OSError as exc:
                raise ContainerError(f"CannotStartContainerError: {exc}") from None
        finally:
            os.close(write_fd)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [asyncio.ensure_future(self._read(self._proc.stdout, "stdout")),
                         asyncio.ensure_future(self._read(self._proc.stderr, "stderr"))]
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, _read_all, read_fd)
        with contextlib.suppress(ValueError):
            self._child_pid = int(json.loads(info or b"{}").get("child-pid", 0))
        if self.spec.memory_mb:
            self._watchdog = loop.call_later(memory.POLL_S, self._check_memory)

    async def _read(self, stream: asyncio.StreamReader, name: str) -> None:
        buffered = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                self._on_line(name, line[:MAX_LINE].decode("utf-8", errors="replace"))
            while len(buffered) > MAX_LINE:
                self._on_line(name, buffered[:MAX_LINE].decode("utf-8", errors="replace"))
                buffered = buffered[MAX_LINE:]
        if buffered:
            self._on_line(name, buffered.decode("utf-8", errors="replace"))

    def _check_memory(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or self.spec.memory_mb is None:
            return
        rss = memory.tree_rss_kb(proc.pid)
        self.peak_kb = max(self.peak_kb, rss)
        if rss > self.spec.memory_mb * 1024:
            self._oom = True
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return
        self._watchdog = asyncio.get_running_loop().call_later(memory.POLL_S, self._check_memory)

    async def wait(self) -> Exit:
        """Wait until the container has exited (and its output is read)."""
        if self._proc is None:
            return Exit(None, "CannotStartContainerError: the container was never started")
        code = await self._proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self._watchdog is not None:
            self._watchdog.cancel()
        if code < 0:  # bwrap itself was killed (the watchdog, or the stop timeout): the sandbox went with it
            code = 128 - code
        if self._oom:
            return Exit(code, OOM_REASON)
        return Exit(code)

    async def stop(self, timeout: float | None = None) -> None:
        """SIGTERM to the container's command, then SIGKILL to all of it after ``timeout`` (the spec's
        stop timeout); returns once it has exited."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        limit = self.spec.stop_timeout if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + limit
        # Just after start, bwrap's init may not have forked the command yet: look again until it has.
        while not (pids := self._command_pids()) and proc.returncode is None \
                and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        limit = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), limit)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def kill(self) -> None:
        """SIGKILL the container now."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()

    def _command_pids(self) -> list[int]:
        """The command's process (the child of bwrap's init, PID 1 of the container) as the host numbers it."""
        if not self._child_pid:
            return []
        found: list[int] = []
        with contextlib.suppress(OSError, ValueError):
            for task in os.listdir(f"/proc/{self._child_pid}/task"):
                with open(f"/proc/{self._child_pid}/task/{task}/children") as children:
                    found.extend(int(c) for c in children.read().split())
        return found


def host_id() -> str:
    """This machine's boot (a pid recorded under another boot, or on another machine, names another process)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{os.uname().nodename}/{boot}"


def kill_left_over(pids: Sequence[int], marker: str) -> int:
    """SIGKILL those of ``pids`` that still run a container whose command line holds ``marker`` (its task's
    ARN): what a worker that died left running if its containers outlived it after all. Returns how many."""
    killed = 0
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline.split(b"\0"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _read_all(fd: int) -> bytes:
    """What bwrap writes on its info fd (it closes it once the sandbox runs)."""
    with os.fdopen(fd, "rb") as handle:
        return handle.read()
