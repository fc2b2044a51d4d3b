"""The invoker's settings, read once from an environment mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kambda.settings import DEFAULT_ACCOUNT, DEFAULT_REGION, SettingsError, env_bool, env_float, env_str, state_dir


@dataclass(frozen=True)
class InvokerSettings:
    nats_url: str
    invoker_id: str
    state_dir: Path
    region: str
    account: str
    #: Fork Python environments from a pre-initialised zygote (KAMBDA_ZYGOTE, default true).
    zygote: bool = True
    #: How the built-in Python runtime talks to the invoker: "pipe" (a private socket, the
    #: default: ~10x cheaper per call) or "http" (the Lambda Runtime API, as every other runtime).
    runtime_channel: str = "pipe"
    #: Seconds a stopping invoker waits for running requests (KAMBDA_INVOKER_DRAIN_TIMEOUT; keep it
    #: below the pod's terminationGracePeriodSeconds, 30).
    drain_timeout: float = 20.0

    @property
    def code_dir(self) -> Path:
        """Extracted code packages, by sha256; shared by the invokers of one machine."""
        return self.state_dir / "code"

    @property
    def ready_file(self) -> Path:
        """Exists while the invoker takes assignments (a pod's readiness probe tests for it)."""
        return self.work_dir / "ready"

    @property
    def work_dir(self) -> Path:
        """Per-environment scratch directories (their TMPDIR) of this invoker."""
        return self.state_dir / "invokers" / self.invoker_id

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> InvokerSettings:
        return cls(
            nats_url=env_str(environ, "KAMBDA_NATS_URL", "nats://127.0.0.1:4222"),
            invoker_id=env_str(environ, "KAMBDA_INVOKER_ID", "local-0"),
            state_dir=state_dir(environ),
            region=env_str(environ, "KAMBDA_REGION", DEFAULT_REGION),
            account=env_str(environ, "KAMBDA_ACCOUNT_ID", DEFAULT_ACCOUNT),
            zygote=env_bool(environ, "KAMBDA_ZYGOTE", True),
            runtime_channel=_channel(env_str(environ, "KAMBDA_RUNTIME_CHANNEL", "pipe")),
            drain_timeout=env_float(environ, "KAMBDA_INVOKER_DRAIN_TIMEOUT", 20.0, 0.0, 3600.0),
        )


def _channel(value: str) -> str:
    if value not in ("pipe", "http"):
        raise SettingsError(f"KAMBDA_RUNTIME_CHANNEL={value!r} is not one of: pipe, http")
    return value
