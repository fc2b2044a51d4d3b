"""The controller's settings, read once from an environment mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from controller.decider import ScalerConfig
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
    scaler: ScalerConfig            # the autoscaler's knobs (decider.py explains each)
    max_environments: int           # per function version, unless the function sets its own
    concurrency_limit: int          # environments of all functions together
    tick: float                     # seconds between autoscaler passes
    queue_timeout: float            # how long an async attempt may wait for an environment
    async_retry_base: float         # first retry delay of a failed async event; doubles per retry

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
            scaler=ScalerConfig(
                scale_to_zero_after=env_float(environ, "KAMBDA_SCALE_TO_ZERO_AFTER", 300.0, 0.1, 86400.0),
                target_per_environment=env_float(environ, "KAMBDA_TARGET_CONCURRENCY", 1.0, 0.01, 1000.0),
                stable_window=env_float(environ, "KAMBDA_STABLE_WINDOW", 60.0, 1.0, 3600.0),
                panic_window=env_float(environ, "KAMBDA_PANIC_WINDOW", 6.0, 0.1, 3600.0),
                panic_threshold=env_float(environ, "KAMBDA_PANIC_THRESHOLD", 2.0, 1.0, 1000.0),
                max_scale_up_rate=env_float(environ, "KAMBDA_MAX_SCALE_UP_RATE", 1000.0, 1.0, 1e6),
            ),
            max_environments=env_int(environ, "KAMBDA_MAX_ENVIRONMENTS", 10, 1, 1000),
            concurrency_limit=env_int(environ, "KAMBDA_CONCURRENCY_LIMIT", 1000, 1, 1_000_000),
            tick=env_float(environ, "KAMBDA_SCALER_TICK", 0.5, 0.01, 60.0),
            queue_timeout=env_float(environ, "KAMBDA_QUEUE_TIMEOUT", 30.0, 0.1, 3600.0),
            async_retry_base=env_float(environ, "KAMBDA_ASYNC_RETRY_BASE", 60.0, 0.01, 3600.0),
        )
