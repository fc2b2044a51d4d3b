"""`kambda up` itself: readiness, status, scale to zero, restarts, clean shutdown, start-up errors."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS

from kambda import bus
from kambda.procs import descendants
from tests.conftest import REPO, Platform, alive, free_port, invoke_json, make_zip, unique, wait_for

COUNTER = "count = 0\ndef handler(event, context):\n    global count\n    count += 1\n    return count\n"


def create_counter(lam, name: str) -> None:  # type: ignore[no-untyped-def]
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": COUNTER})})


def test_health_status_and_metrics(platform, lam, create) -> None:
    code, body = platform.get_json("/_kambda/health")
    assert code == 200 and body["status"] == "ok"
    assert body["checks"] == {"gateway": True, "nats": True, "controller": True, "controller_nats": True}
    name = create(COUNTER)
    invoke_json(lam, name)
    # Environment counts come from the invoker's reports, a moment after the run.
    wait_for(lambda: platform.status(name)["environments"] == 1, what="the environment to be reported")
    status = platform.status(name)
    assert status["busy"] == 0 and status["queued"] == 0 and status["desired"] == 1
    code, body = platform.get_json("/_kambda/v1/functions/missing-fn")
    assert code == 404
    metrics = platform.metrics()
    assert f'kambda_invocations_total{{function="{name}",outcome="success",version="$LATEST"}} 1.0' in metrics
    assert f'kambda_cold_starts_total{{function="{name}",version="$LATEST"}} 1.0' in metrics
    assert f'kambda_invocation_duration_seconds_count{{function="{name}",version="$LATEST"}} 1.0' in metrics
    assert f'kambda_cold_start_duration_seconds_count{{function="{name}",version="$LATEST"}} 1.0' in metrics

    for line in (f'kambda_function_environments{{function="{name}"}} 1.0',
                 f'kambda_function_desired_environments{{function="{name}"}} 1.0',
                 f'kambda_function_queue_depth{{function="{name}"}} 0.0',
                 f'kambda_autoscaler_panic{{function="{name}"}}'):
        wait_for(lambda line=line: line in platform.metrics(), what=line)


def test_scale_to_zero_then_cold_start(tmp_path) -> None:
    platform = Platform(tmp_path / "state", ["--scale-to-zero-after", "1"]).start()
    try:
        lam = platform.lambda_client()
        name = unique("idle")
        create_counter(lam, name)
        first, _ = invoke_json(lam, name)
        assert first["ResponseMetadata"]["HTTPHeaders"].get("kambda-cold-start") == "true"
        second, count = invoke_json(lam, name)
        assert count == 2 and "kambda-cold-start" not in second["ResponseMetadata"]["HTTPHeaders"]
        # desired comes from the autoscaler itself; environments from the invoker's reports, which
        # lag a moment behind (right after a scale-up they may not count the new one yet).
        wait_for(lambda: platform.status(name)["desired"] == 0 and platform.status(name)["environments"] == 0,
                 timeout=30, what="scale to zero")
        third, count = invoke_json(lam, name)
        assert count == 1  # a new environment: module state starts over
        assert third["ResponseMetadata"]["HTTPHeaders"].get("kambda-cold-start") == "true"
    finally:
        platform.stop()


def test_restart_keeps_functions(tmp_path) -> None:
    state = tmp_path / "state"
    platform = Platform(state).start()
    names = [unique("keep") for _ in range(3)]
    try:
        lam = platform.lambda_client()
        for name in names:
            create_counter(lam, name)
        assert invoke_json(lam, names[0])[1] == 1
    finally:
        assert platform.stop() == 0
    platform = Platform(state).start()
    try:
        lam = platform.lambda_client()
        listed = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
        assert set(names) <= listed
        for name in names:
            assert invoke_json(lam, name)[1] == 1
    finally:
        platform.stop()


def test_sigterm_stops_everything_and_leaves_no_orphan(tmp_path) -> None:
    platform = Platform(tmp_path / "state").start()
    lam = platform.lambda_client()
    name = unique("orphan")
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role="r",
                        Code={"ZipFile": make_zip({"app.py": (
                            "import subprocess\n"
                            "def handler(event, context):\n"
                            "    subprocess.Popen(['sleep', '300'])\n"
                            "    return 'forked'\n")})})
    assert invoke_json(lam, name)[1] == "forked"
    assert platform.proc is not None
    tree = descendants(platform.proc.pid)
    assert len(tree) >= 5  # nats-server, controller, invoker, environment, its child, gateway
    started = time.monotonic()
    assert platform.stop(timeout=20) == 0
    assert time.monotonic() - started < 10
    wait_for(lambda: not any(alive(pid) for pid in tree), timeout=5, what="every child to exit")


def test_kill_9_of_kambda_up_leaves_no_orphan(tmp_path) -> None:
    platform = Platform(tmp_path / "state").start()
    lam = platform.lambda_client()
    name = unique("kill")
    create_counter(lam, name)
    invoke_json(lam, name)
    assert platform.proc is not None
    tree = descendants(platform.proc.pid)
    platform.proc.send_signal(signal.SIGKILL)
    platform.proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in tree), timeout=10, what="every child to die")
    platform.stop()


def run_up(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kambda.cli", "up", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env=os.environ.copy())


def test_port_in_use_is_a_one_line_error(tmp_path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = run_up(["--port", str(port), "--state-dir", str(tmp_path / "s")])
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


def test_unwritable_state_dir_is_a_one_line_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = run_up(["--port", "0", "--state-dir", str(blocker / "state")])
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not writable" in lines[0]


@pytest.mark.parametrize("args", [["--port", "notaport"]])
def test_bad_arguments_are_refused(args: list[str], tmp_path) -> None:
    done = run_up([*args, "--state-dir", str(tmp_path)])
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_a_second_kambda_up_on_the_same_state_dir_is_refused_naming_the_first(tmp_path) -> None:
    first = Platform(tmp_path / "state").start()
    try:
        assert first.proc is not None
        second = subprocess.Popen([sys.executable, "-m", "kambda.cli", "up", "--port", "0", "--state-dir",
                                   str(tmp_path / "state")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=REPO, env=first.env)
        try:
            out, err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            out, err = second.communicate()
            raise AssertionError(f"the second kambda up started on a live state dir:\n{out}{err}") from None
        assert second.returncode == 1, out + err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and f"pid {first.proc.pid}" in lines[0] and "in use" in lines[0], err
        assert "ready" not in out
        assert first.get_json("/_kambda/health")[0] == 200  # the first one is untouched
    finally:
        assert first.stop() == 0
    # Once the first has stopped, the state dir is free again.
    again = Platform(tmp_path / "state").start()
    assert again.stop() == 0


def test_ctrl_c_stops_cleanly_and_leaves_no_traceback_in_any_log(tmp_path) -> None:
    platform = Platform(tmp_path / "state", own_session=True).start()
    lam = platform.lambda_client()
    name = unique("ctrlc")
    create_counter(lam, name)
    assert invoke_json(lam, name)[1] == 1
    assert platform.proc is not None
    tree = descendants(platform.proc.pid)
    # A Ctrl-C in a terminal signals its whole foreground process group, not only kambda up.
    os.killpg(platform.proc.pid, signal.SIGINT)
    assert platform.proc.wait(20) == 0
    platform.stop()
    wait_for(lambda: not any(alive(pid) for pid in tree), timeout=10, what="every child to exit")
    logs = {path.name: path.read_text(errors="replace") for path in (tmp_path / "state").rglob("*.log")}
    assert {"controller.log", "gateway.log"} <= set(logs)
    dirty = {name: text[-3000:] for name, text in logs.items() if "Traceback" in text or "Error" in text}
    assert dirty == {}, dirty


def test_kambda_up_says_where_nats_listens_and_takes_a_fixed_nats_port(tmp_path) -> None:
    port = free_port()
    platform = Platform(tmp_path / "state", ["--nats-port", str(port)]).start()
    try:
        assert platform.proc is not None and platform.proc.stdout is not None
        url = f"nats://127.0.0.1:{port}"
        line = platform.proc.stdout.readline()  # the lines after the ready line
        while line and not line.startswith("  nats:"):
            line = platform.proc.stdout.readline()
        assert line.split()[:2] == ["nats:", url], line
        assert (tmp_path / "state" / "nats.url").read_text().strip() == url

        creds = line.rsplit("log in with ", 1)[1].rstrip(")\n ")
        assert creds == platform.nats_creds("admin")

        async def publish() -> None:
            anonymous = NATS()
            try:
                with pytest.raises(nats.errors.Error, match="Authorization Violation"):  # anonymous: refused
                    await anonymous.connect(url, max_reconnect_attempts=0, allow_reconnect=False, connect_timeout=2)
            finally:
                await anonymous.close()  # a refused client still holds its socket until closed
            nc = await bus.connect(url, "test-publisher", creds)
            await nc.publish("kambda.test", b"hello")
            await nc.flush(5)
            await nc.close()

        asyncio.run(publish())
    finally:
        assert platform.stop() == 0
    assert not (tmp_path / "state" / "nats.url").exists()
