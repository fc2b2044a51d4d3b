"""The invoker's settings, read once from an environment mapping."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kambda.settings import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    SANDBOX_UID_BASE,
    SANDBOX_UID_COUNT,
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_str,
    sandbox_enabled,
    state_dir,
)

_MB = 1024 * 1024


@dataclass(frozen=True)
class SandboxSettings:
    """How environments are confined when the invoker runs as root (README, "Sandbox")."""

    #: KAMBDA_SANDBOX: on when the invoker runs as root (the default), off otherwise or when false.
    enabled: bool = False
    #: KAMBDA_SANDBOX_UID_BASE / _UID_COUNT: the uids (and gids) functions get, one each.
    uid_base: int = SANDBOX_UID_BASE
    uid_count: int = SANDBOX_UID_COUNT
    #: KAMBDA_SANDBOX_DIR: functions' code copies and /tmp; every ancestor must be traversable.
    root: Path = Path("/nonexistent")
    #: KAMBDA_SANDBOX_PYTHON (or KAMBDA_PYTHON): the interpreter of sandboxed Python functions.
    python: str = ""
    #: Resource limits of every process of a function (KAMBDA_SANDBOX_NPROC, _NOFILE, _FSIZE_MB).
    limits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], state: Path, is_root: bool) -> SandboxSettings:
        enabled = sandbox_enabled(environ, is_root)
        digest = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
        default_root = Path(tempfile.gettempdir()) / f"kambda-sandbox-{digest}"
        return cls(
            enabled=enabled,
            uid_base=env_int(environ, "KAMBDA_SANDBOX_UID_BASE", SANDBOX_UID_BASE, 1000, 2**31 - 2**17),
            uid_count=env_int(environ, "KAMBDA_SANDBOX_UID_COUNT", SANDBOX_UID_COUNT, 16, 2**17),
            root=Path(env_str(environ, "KAMBDA_SANDBOX_DIR", str(default_root))),
            python=env_str(environ, "KAMBDA_PYTHON", ""),
            limits={
                "RLIMIT_NPROC": env_int(environ, "KAMBDA_SANDBOX_NPROC", 1024, 1, 1 << 22),
                "RLIMIT_NOFILE": env_int(environ, "KAMBDA_SANDBOX_NOFILE", 1024, 16, 1 << 20),
                "RLIMIT_FSIZE": env_int(environ, "KAMBDA_SANDBOX_FSIZE_MB", 10_240, 1, 1 << 24) * _MB,
                "RLIMIT_CORE": 0,
            },
        )


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
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    #: Seconds a stopping invoker waits for running requests (KAMBDA_INVOKER_DRAIN_TIMEOUT; keep it
    #: below the pod's terminationGracePeriodSeconds, 30).
    drain_timeout: float = 20.0
    #: This invoker's NATS credentials file (kambda/bus/identities.py); empty: anonymous.
    nats_creds: str = ""
    #: The key that signs the execution-role credentials each environment gets (kambda/aws/roles.py).
    role_key_file: str = ""
    #: The gateway as functions reach it: their SDKs' service endpoints (kambda/aws/endpoints.py); empty: none.
    endpoint_url: str = ""

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
    def from_env(cls, environ: Mapping[str, str], is_root: bool | None = None) -> InvokerSettings:
        state = state_dir(environ)
        root = os.geteuid() == 0 if is_root is None else is_root
        return cls(
            nats_url=env_str(environ, "KAMBDA_NATS_URL", "nats://127.0.0.1:4222"),
            invoker_id=env_str(environ, "KAMBDA_INVOKER_ID", "local-0"),
            state_dir=state,
            region=env_str(environ, "KAMBDA_REGION", DEFAULT_REGION),
            account=env_str(environ, "KAMBDA_ACCOUNT_ID", DEFAULT_ACCOUNT),
            zygote=env_bool(environ, "KAMBDA_ZYGOTE", True),
            runtime_channel=_channel(env_str(environ, "KAMBDA_RUNTIME_CHANNEL", "pipe")),
            sandbox=SandboxSettings.from_env(environ, state, root),
            drain_timeout=env_float(environ, "KAMBDA_INVOKER_DRAIN_TIMEOUT", 20.0, 0.0, 3600.0),
            nats_creds=env_str(environ, "KAMBDA_NATS_CREDS", ""),
            role_key_file=env_str(environ, "KAMBDA_ROLE_KEY_FILE", ""),
            endpoint_url=env_str(environ, "KAMBDA_ENDPOINT_URL", ""),
        )


def _channel(value: str) -> str:
    if value not in ("pipe", "http"):
        raise SettingsError(f"KAMBDA_RUNTIME_CHANNEL={value!r} is not one of: pipe, http")
    return value
