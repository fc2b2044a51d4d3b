"""The local container runner (tasks/runner.py) with real bwrap over a busybox root filesystem."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from kambda import procs
from tasks import runner, tools
from tasks.oci import ImageConfig
from tasks.runner import Container, ContainerError, ContainerSpec
from tests.conftest import alive, until

#: The busybox applets the tests' containers use.
APPLETS = ("sh", "echo", "sleep", "cat", "env", "pwd", "id", "dd", "head", "kill", "true", "false", "wget", "ls")


def require_tools() -> tuple[Path, Path]:
    """bwrap and busybox, or a skip (a failure under CI=true: scripts/install-container-tools.sh installs them)."""
    try:
        return tools.bwrap_path(), tools.busybox_path()
    except tools.ToolMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"container tools are required in CI: {exc}")
        pytest.skip(str(exc))


def busybox_rootfs(path: Path) -> Path:
    """A root filesystem of a static busybox and its applets, an /etc/passwd with a user ``app`` (1000)."""
    _, busybox = require_tools()
    for directory in ("bin", "etc", "srv/app"):  # no /proc, /dev nor /tmp: bwrap makes its mount points
        (path / directory).mkdir(parents=True, exist_ok=True)
    (path / "bin" / "busybox").write_bytes(busybox.read_bytes())
    (path / "bin" / "busybox").chmod(0o755)
    for applet in APPLETS:
        (path / "bin" / applet).symlink_to("busybox")
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/srv/app:/bin/sh\n")
    (path / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    return path


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs(tmp_path_factory.mktemp("rootfs"))


async def run(spec: ContainerSpec) -> tuple[runner.Exit, list[tuple[str, str]]]:
    lines: list[tuple[str, str]] = []
    container = Container(spec, lambda stream, line: lines.append((stream, line)))
    await container.start()
    return await asyncio.wait_for(container.wait(), 60), lines


async def test_exit_codes_are_exact(rootfs: Path) -> None:
    assert (await run(ContainerSpec("c", rootfs, command=["sh", "-c", "exit 0"])))[0] == runner.Exit(0)
    assert (await run(ContainerSpec("c", rootfs, command=["sh", "-c", "exit 3"])))[0] == runner.Exit(3)
    assert (await run(ContainerSpec("c", rootfs, command=["false"])))[0] == runner.Exit(1)


async def test_output_lines_are_captured_by_stream(rootfs: Path) -> None:
    _, lines = await run(ContainerSpec("c", rootfs, command=["sh", "-c", "echo one; echo two >&2; printf three"]))
    assert lines == [("stdout", "one"), ("stderr", "two"), ("stdout", "three")] or \
        sorted(lines) == sorted([("stdout", "one"), ("stderr", "two"), ("stdout", "three")])


async def test_image_config_and_overrides(rootfs: Path) -> None:
    image = ImageConfig(env=("FROM_IMAGE=1", "SHARED=image"), entrypoint=("sh", "-c"),
                        cmd=("echo image-cmd",), working_dir="/srv/app", user="app")
    _, lines = await run(ContainerSpec("c", rootfs, image=image))
    assert lines == [("stdout", "image-cmd")]
    spec = ContainerSpec("c", rootfs, image=image, environment={"SHARED": "definition"},
                         command=["echo $FROM_IMAGE $SHARED $(pwd) $(id -u):$(id -g) $HOSTNAME"])
    _, lines = await run(spec)
    assert lines == [("stdout", "1 definition /srv/app 1000:1001 c")]
    # An entrypoint override drops the image's Cmd; a user override wins over the image's.
    spec = ContainerSpec("c", rootfs, image=image, entrypoint=["id"], user="0:50")
    _, lines = await run(spec)
    assert lines[0][1].startswith("uid=0") and "gid=50" in lines[0][1]


async def test_a_container_is_confined(rootfs: Path) -> None:
    # Its own PID namespace (bwrap's init is 1, the command 2), a read-only root, a private /tmp.
    _, lines = await run(ContainerSpec("c", rootfs, command=[
        "sh", "-c", "echo $$; touch /x 2>/dev/null || echo ro; echo hi > /tmp/f && cat /tmp/f; ls /proc | head -3"]))
    texts = [line for _, line in lines]
    assert texts[0] == "2" and "ro" in texts and "hi" in texts
    assert str(os.getpid()) not in texts


async def test_unusable_definitions_do_not_start(rootfs: Path) -> None:
    with pytest.raises(ContainerError, match="no command"):
        await Container(ContainerSpec("c", rootfs)).start()
    with pytest.raises(ContainerError, match="unable to find user nobody"):
        await Container(ContainerSpec("c", rootfs, command=["true"], user="nobody")).start()
    with pytest.raises(ContainerError, match="working directory /nowhere"):
        await Container(ContainerSpec("c", rootfs, command=["true"], working_dir="/nowhere")).start()
    # A command that is not in the image: the container starts and fails as Docker's does (127 from exec).
    exit_, lines = await run(ContainerSpec("c", rootfs, command=["no-such-binary"]))
    assert exit_.exit_code not in (0, None)
    assert any("no-such-binary" in line for _, line in lines)


async def test_stop_sends_sigterm_to_a_trap(rootfs: Path) -> None:
    lines: list[tuple[str, str]] = []
    container = Container(ContainerSpec("c", rootfs, command=[
        "sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done"]),
        lambda stream, line: lines.append((stream, line)))
    await container.start()
    await until(lambda: ("stdout", "ready") in lines, what="the trap to be set")
    await container.stop(timeout=30)
    assert await container.wait() == runner.Exit(7)
    assert ("stdout", "got-term") in lines


async def test_stop_kills_after_the_timeout(rootfs: Path) -> None:
    lines: list[tuple[str, str]] = []
    container = Container(ContainerSpec("c", rootfs, command=[
        "sh", "-c", "trap 'echo ignoring' TERM; echo ready; while true; do sleep 0.1; done"], stop_timeout=0.5),
        lambda stream, line: lines.append((stream, line)))
    await container.start()
    await until(lambda: ("stdout", "ready") in lines, what="the trap to be set")
    await container.stop()
    assert await container.wait() == runner.Exit(137)
    assert ("stdout", "ignoring") in lines
    # A command without a handler dies of the SIGTERM itself.
    plain = Container(ContainerSpec("c", rootfs, command=["sleep", "60"]))
    await plain.start()
    await plain.stop(timeout=30)
    assert await plain.wait() == runner.Exit(143)


async def test_memory_limit_kills_the_container(rootfs: Path) -> None:
    # dd holds a 200 MB block buffer while it copies: far above a 64 MiB limit.
    spec = ContainerSpec("c", rootfs, command=["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=100000"],
                         memory_mb=64)
    exit_, _ = await run(spec)
    assert exit_ == runner.Exit(137, runner.OOM_REASON)
    # Below the limit, the same work finishes.
    small = ContainerSpec("c", rootfs, command=["dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=10"],
                          memory_mb=64)
    assert (await run(small))[0] == runner.Exit(0)


async def test_nothing_outlives_a_killed_container(rootfs: Path) -> None:
    container = Container(ContainerSpec("c", rootfs, command=["sh", "-c", "sleep 300 & sleep 300 & wait"]))
    await container.start()
    await until(lambda: len(procs.descendants(container.pid)) >= 4,
                what="the container's processes")
    inside = procs.descendants(container.pid)
    container.kill()
    assert await container.wait() == runner.Exit(137)
    await until(lambda: not any(alive(pid) for pid in inside), what="the container's processes to be gone")


async def test_bwrap_start_cost(rootfs: Path) -> None:
    """Not an assertion on time: prints what a container start costs here (NOTES-tasks.md quotes it)."""
    samples = []
    for _ in range(10):
        started = time.perf_counter()
        exit_, _ = await run(ContainerSpec("c", rootfs, command=["true"]))
        samples.append((time.perf_counter() - started) * 1000)
        assert exit_ == runner.Exit(0)
    samples.sort()
    print(f"\nbwrap container start-to-exit of `true`: p50 {samples[len(samples) // 2]:.1f} ms, "
          f"min {samples[0]:.1f} ms")
