"""The controller's settings, read once from an environment mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kambda.settings import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    SettingsError,
    env_float,
    env_int,
    env_str,
    state_dir,
)


@dataclass(frozen=True)
class ControllerSettings:
    nats_url: str
    listen: str                     # host:port of the gRPC server; port 0 picks a free one
    state_dir: Path
    region: str
    account: str
    orchestrator: str
    scale_to_zero_after: float      # seconds an environment may idle before it is stopped
    max_environments: int           # per function version, unless the function sets its own
    tick: float                     # seconds between autoscaler passes

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ControllerSettings:
        orchestrator = env_str(environ, "KAMBDA_ORCHESTRATOR", "local")
        if orchestrator not in ("local",):
            raise SettingsError(f"KAMBDA_ORCHESTRATOR={orchestrator!r} is not one of: local")
        return cls(
            nats_url=env_str(environ, "KAMBDA_NATS_URL", "nats://127.0.0.1:4222"),
            listen=env_str(environ, "KAMBDA_CONTROLLER_LISTEN", "127.0.0.1:0"),
            state_dir=state_dir(environ),
            region=env_str(environ, "KAMBDA_REGION", DEFAULT_REGION),
            account=env_str(environ, "KAMBDA_ACCOUNT_ID", DEFAULT_ACCOUNT),
            orchestrator=orchestrator,
            scale_to_zero_after=env_float(environ, "KAMBDA_SCALE_TO_ZERO_AFTER", 300.0, 0.1, 86400.0),
            max_environments=env_int(environ, "KAMBDA_MAX_ENVIRONMENTS", 10, 1, 1000),
            tick=env_float(environ, "KAMBDA_SCALER_TICK", 0.5, 0.01, 60.0),
        )
