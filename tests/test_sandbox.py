"""Sandboxed environments (issue 9, part 4): as root, a function runs as a uid of its own and
reaches neither another function's code, the state directory, nor the platform's environment."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from invoker.sandbox import Sandbox, SandboxError, mask_plan
from invoker.settings import InvokerSettings, SandboxSettings
from kambda.procs import service_pids
from tests.conftest import Platform, invoke_json, make_zip, unique, wait_for

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox applies only when kambda runs as root")

NPROC = 16
FSIZE_MB = 1

VICTIM = """
import os
def handler(event, context):
    return {"root": os.getcwd(), "uid": os.getuid(), "api": os.environ["AWS_LAMBDA_RUNTIME_API"]}
"""

PROBE = r"""
import os, resource, urllib.error, urllib.request

def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as exc:
        return type(exc).__name__

def read(path):
    with open(path, "rb") as f:
        f.read(1)

def handler(event, context):
    out = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "euid": os.geteuid()}
    out["victim_file"] = attempt(lambda: read(event["victim_file"]))
    out["victim_dir"] = attempt(lambda: os.listdir(event["victim_root"]))
    out["shared_cache"] = attempt(lambda: read(event["shared_copy"]))
    out["state_dir"] = attempt(lambda: os.listdir(event["state_dir"]))
    out["controller_environ"] = attempt(lambda: read(f"/proc/{event['controller_pid']}/environ"))
    out["own_code_write"] = attempt(lambda: open(os.path.join(os.getcwd(), "new.txt"), "w").close())
    try:
        url = f"http://{event['victim_api']}/2018-06-01/runtime/invocation/next"
        with urllib.request.urlopen(url, timeout=20) as r:
            out["victim_next"] = r.status
    except urllib.error.HTTPError as exc:
        out["victim_next"] = exc.code
    out["tmp"] = os.environ["TMPDIR"]
    with open(os.path.join(os.environ["TMPDIR"], "scratch"), "w") as f:
        f.write("mine")
    with open("/proc/self/environ", "rb") as f:
        initial = [v.decode(errors="replace") for v in f.read().split(b"\0")]
    variables = [f"{k}={v}" for k, v in os.environ.items()] + initial
    out["leaks"] = [v for v in variables if v.startswith(("KAMBDA_", "NATS")) or "nats://" in v]
    out["core_limit"] = resource.getrlimit(resource.RLIMIT_CORE)
    return out
"""

BOMB = r"""
import os

def handler(event, context):
    if event.get("op") == "write":
        try:
            with open(os.path.join(os.environ["TMPDIR"], "big"), "wb") as f:
                for _ in range(event["mb"]):
                    f.write(b"x" * (1024 * 1024))
            return {"wrote": "all"}
        except OSError as exc:
            return {"error": exc.errno, "size": os.path.getsize(os.path.join(os.environ["TMPDIR"], "big"))}
    read_end, write_end = os.pipe()
    children, refused = 0, None
    while children < 10_000:
        try:
            pid = os.fork()
        except OSError as exc:
            refused = exc.errno
            break
        if pid == 0:
            os.close(write_end)
            os.read(read_end, 1)  # ends when the parent closes its end
            os._exit(0)
        children += 1
    os.close(write_end)
    for _ in range(children):
        os.wait()
    os.close(read_end)
    return {"children": children, "refused": refused}
"""


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = Path(tempfile.mkdtemp(prefix="kambda-sandbox-test-"))  # under /tmp: reachable by any uid
    running = Platform(tmp_path_factory.mktemp("kambda-sandbox-state"), env={
        "KAMBDA_SANDBOX": "true", "KAMBDA_SANDBOX_DIR": str(root), "KAMBDA_SANDBOX_NPROC": str(NPROC),
        "KAMBDA_SANDBOX_FSIZE_MB": str(FSIZE_MB)}).start()
    yield running
    running.stop()
    shutil.rmtree(root, ignore_errors=True)


def _create(lam, code: str, memory: int = 128) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    name = unique("sbx")
    package = make_zip({"app.py": code, "secret.txt": "victim's secret"})
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": package}, Timeout=60, MemorySize=memory)
    return name, package


@as_root
def test_a_function_reaches_nothing_of_another_function_or_the_platform(sandboxed: Platform) -> None:
    lam = sandboxed.lambda_client()
    victim, package = _create(lam, VICTIM)
    probe, _ = _create(lam, PROBE)
    _, where = invoke_json(lam, victim)
    assert isinstance(where, dict) and where["uid"] != 0
    assert sandboxed.proc is not None
    controller = service_pids(sandboxed.proc.pid, "controller")
    assert controller, "the controller process was not found"
    shared = sandboxed.state_dir / "code" / hashlib.sha256(package).hexdigest() / "secret.txt"
    assert shared.read_text() == "victim's secret"  # the shared cache holds it, for root only
    event = {"victim_root": where["root"], "victim_file": os.path.join(where["root"], "secret.txt"),
             "shared_copy": str(shared), "victim_api": where["api"], "state_dir": str(sandboxed.state_dir),
             "controller_pid": controller[0]}
    response, out = invoke_json(lam, probe, event)
    assert "FunctionError" not in response, out
    assert isinstance(out, dict)
    assert out["uid"] not in (0, where["uid"]) and out["euid"] == out["uid"] and out["gid"] != 0
    assert out["groups"] == []
    for what in ("victim_file", "victim_dir", "shared_cache", "state_dir", "controller_environ", "own_code_write"):
        assert out[what] == "PermissionError", (what, out[what])
    assert out["leaks"] == []
    assert out["victim_next"] == 403  # another environment's Runtime API refuses a stranger
    assert out["core_limit"] == [0, 0]
    tmp = Path(out["tmp"])
    assert tmp.stat().st_uid == out["uid"] and (tmp.stat().st_mode & 0o777) == 0o700
    # The platform itself still reads the state directory and serves the victim.
    assert invoke_json(lam, victim)[1]["root"] == where["root"]  # type: ignore[index]


@as_root
def test_process_and_file_size_limits_hold_and_the_platform_keeps_serving(sandboxed: Platform) -> None:
    lam = sandboxed.lambda_client()
    bomb, _ = _create(lam, BOMB, memory=2048)  # the forks' resident memory is counted together
    other, _ = _create(lam, VICTIM)
    response, out = invoke_json(lam, bomb)
    assert "FunctionError" not in response, out
    assert isinstance(out, dict)
    assert out["refused"] == 11  # EAGAIN: RLIMIT_NPROC
    assert out["children"] < NPROC
    response, out = invoke_json(lam, bomb, {"op": "write", "mb": FSIZE_MB * 4})
    assert "FunctionError" not in response, out
    assert out == {"error": 27, "size": FSIZE_MB * 1024 * 1024}  # EFBIG at RLIMIT_FSIZE
    _, where = invoke_json(lam, other)
    assert isinstance(where, dict) and where["uid"] != 0
    # The bomb's environment survived its own refusals and serves again.
    response, out = invoke_json(lam, bomb, {"op": "write", "mb": 0})
    assert out == {"wrote": "all"}


@as_root
def test_two_functions_never_share_a_uid_and_keep_theirs(sandboxed: Platform) -> None:
    lam = sandboxed.lambda_client()
    names = [_create(lam, VICTIM)[0] for _ in range(3)]
    uids = [invoke_json(lam, n)[1]["uid"] for n in names]  # type: ignore[index]
    assert len(set(uids)) == 3 and all(u >= 200_000 for u in uids)
    lam.update_function_code(FunctionName=names[0], ZipFile=make_zip({"app.py": VICTIM + "\n# v2\n"}))
    waiter = lam.get_waiter("function_updated_v2")
    waiter.wait(FunctionName=names[0])
    assert invoke_json(lam, names[0])[1]["uid"] == uids[0]  # type: ignore[index]


SNAP = """
import os
INIT_UID = os.getuid()
def handler(event, context):
    return [INIT_UID, os.getuid(), os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]]
"""


@as_root
def test_snap_start_initialises_as_the_function_never_as_root(sandboxed: Platform) -> None:
    lam = sandboxed.lambda_client()
    name = unique("sbx-snap")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": SNAP})}, SnapStart={"ApplyOn": "PublishedVersions"})
    response, (init_uid, uid, kind) = invoke_json(lam, name)
    assert "FunctionError" not in response
    assert kind == "snap-start" and init_uid == uid and uid >= 200_000


@as_root
def test_node_functions_run_sandboxed_too(sandboxed: Platform) -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the Node.js runtime needs it (see the README)")
    lam = sandboxed.lambda_client()
    name = unique("sbx-node")
    code = "exports.handler = async () => [process.getuid(), require('fs').existsSync('/proc/1/environ') && " \
           "(() => { try { require('fs').readFileSync('/proc/1/environ'); return 'read'; } " \
           "catch (e) { return e.code; } })()];"
    lam.create_function(FunctionName=name, Runtime="nodejs20.x", Handler="index.handler", Role="r",
                        Code={"ZipFile": make_zip({"index.js": code})})
    response, (uid, environ) = invoke_json(lam, name)
    assert "FunctionError" not in response
    assert uid >= 200_000 and environ == "EACCES"


def test_uids_are_stable_distinct_and_bounded(tmp_path: Path) -> None:
    settings = SandboxSettings(enabled=True, uid_base=300_000, uid_count=16, root=tmp_path / "sbx")
    first = Sandbox(settings, tmp_path)
    uids = {f"fn-{i}": first._allocate(f"fn-{i}") for i in range(16)}
    assert len(set(uids.values())) == 16 and all(300_000 <= u < 300_016 for u in uids.values())
    again = Sandbox(settings, tmp_path)  # another invoker, or after a restart
    assert {n: again._allocate(n) for n in uids} == uids
    with pytest.raises(SandboxError, match="KAMBDA_SANDBOX_UID_COUNT"):
        again._allocate("one-too-many")


def test_sandbox_settings() -> None:
    on = InvokerSettings.from_env({"KAMBDA_STATE_DIR": "/s", "KAMBDA_SANDBOX_NPROC": "7"}, is_root=True).sandbox
    assert on.enabled and on.limits["RLIMIT_NPROC"] == 7 and on.limits["RLIMIT_CORE"] == 0
    assert not InvokerSettings.from_env({"KAMBDA_SANDBOX": "false"}, is_root=True).sandbox.enabled
    assert not InvokerSettings.from_env({}, is_root=False).sandbox.enabled
    with pytest.raises(ValueError, match="KAMBDA_SANDBOX_UID_BASE"):
        InvokerSettings.from_env({"KAMBDA_SANDBOX_UID_BASE": "0"}, is_root=True)


def test_mask_plan_keeps_only_the_subtree_below_the_private_directory() -> None:
    base = Path(tempfile.mkdtemp(prefix="kambda-mask-test-"))  # under /tmp: searchable above it
    try:
        base.chmod(0o755)
        private = base / "home"
        (private / "tools" / "bin").mkdir(parents=True)
        python = private / "tools" / "bin" / "python"
        python.write_text("")
        private.chmod(0o700)
        assert mask_plan(str(python)) == {"hide": str(private), "keep": [str(private / "tools")]}
        private.chmod(0o755)
        assert mask_plan(str(python)) is None
    finally:
        shutil.rmtree(base, ignore_errors=True)


@as_root
def test_superseded_and_deleted_code_leaves_the_disk_once_nothing_runs_it(sandboxed: Platform) -> None:
    """A node that sees many deploys keeps only the packages that may still run, not every old one,
    nor those of deleted functions."""
    lam = sandboxed.lambda_client()
    name, old = _create(lam, "def handler(event, context):\n    return 'old'\n")
    sandbox_root = Path(sandboxed.env["KAMBDA_SANDBOX_DIR"])

    def copies(package: bytes) -> list[Path]:  # the shared extraction and the function's sealed copy
        sha = hashlib.sha256(package).hexdigest()
        return [p for p in [sandboxed.state_dir / "code" / sha, *sandbox_root.glob(f"*/code/{sha}")] if p.is_dir()]

    try:
        assert invoke_json(lam, name, {})[1] == "old"
        assert len(copies(old)) == 2
        new = make_zip({"app.py": "def handler(event, context):\n    return 'new'\n"})
        lam.update_function_code(FunctionName=name, ZipFile=new)
        wait_for(lambda: invoke_json(lam, name, {})[1] == "new", what="the new code to serve")
        wait_for(lambda: not copies(old), what="the old package to leave the disk")
        assert len(copies(new)) == 2 and invoke_json(lam, name, {})[1] == "new"
    finally:
        lam.delete_function(FunctionName=name)
    wait_for(lambda: not copies(new), what="a deleted function's package to leave the disk")
