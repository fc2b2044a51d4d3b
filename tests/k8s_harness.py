"""Real services for the Kubernetes end-to-end tests: nats-server, the controller and the gateway as
processes (the controller with KAMBDA_ORCHESTRATOR=kubernetes, pointed at the fake API server by a
kubeconfig file), each started on free ports and waited for by its ready line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kambda.bus.natsserver import find_binary, write_config
from tests.conftest import REPO


def write_kubeconfig(path: Path, server: str, namespace: str = "default") -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": "fake"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
    }))
    return path


class Service:
    """One service process whose stdout says when it is ready; its log goes to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=self._log,
                                     start_new_session=True)

    def wait_ready(self, prefix: str, timeout: float = 60.0) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith(prefix):
                return line
            if time.monotonic() > deadline:
                break
        self.stop()
        raise AssertionError(f"{self.name} did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class NatsProcess:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        config = write_config(state_dir)
        self._log = open(state_dir / "nats.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([find_binary(), "-c", str(config)], stdout=self._log, stderr=self._log)
        ports = state_dir / "run" / f"nats-server_{self.proc.pid}.ports"
        deadline = time.monotonic() + 15
        self.url = ""
        while not self.url:
            try:
                self.url = json.loads(ports.read_text())["nats"][0]
            except (OSError, ValueError, KeyError, IndexError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("nats-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._log.close()


def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAMBDA_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["GRPC_VERBOSITY"] = "ERROR"
    env.update(extra)
    return env


def start_controller(env: dict[str, str], log_dir: Path, name: str = "controller") -> tuple[Service, str]:
    service = Service(name, [sys.executable, "-m", "controller"], env, log_dir)
    line = service.wait_ready("kambda-controller ready grpc=")
    return service, line.split("=", 1)[1].split()[0]


def start_gateway(env: dict[str, str], log_dir: Path) -> tuple[Service, str]:
    service = Service("gateway", [sys.executable, "-m", "gateway"], env, log_dir)
    line = service.wait_ready("kambda-gateway ready ")
    return service, line.rsplit(" ", 1)[1]
