"""The worker's settings, read once from an environment mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kambda.settings import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    SettingsError,
    env_float,
    env_int,
    env_str,
    sandbox_uids,
    state_dir,
)


@dataclass(frozen=True)
class WorkerSettings:
    nats_url: str
    controller: str                 # host:port of the controller's gRPC server (Activate)
    #: host:port of the worker's own HTTP server (/metrics, /healthz); port 0 picks a free one.
    listen: str
    region: str
    account: str
    queue_timeout: float            # how long an async attempt may wait for an environment
    async_retry_base: float         # first retry delay of a failed async event; doubles per retry
    #: Asynchronous events this replica runs at once (the replicas' sum is the tier's).
    concurrency: int = 64
    #: Step Functions executions this replica runs at once (the work messages it holds).
    workflow_concurrency: int = 256
    #: On SIGTERM, how long running events may take to finish before they are given back.
    drain_timeout: float = 4.0
    #: Servers of the NATS cluster that keep each stream and bucket (as the controller's setting).
    stream_replicas: int = 1
    #: The worker's NATS credentials file (kambda/bus/identities.py); empty: anonymous.
    nats_creds: str = ""
    #: A file holding the token the controller asks of its callers (kambda/rpc.py); empty: none.
    controller_token_file: str = ""
    #: The uids sandboxed functions run as (as the gateway's setting): refused by /metrics and /healthz.
    sandbox_uids: range | None = None
    #: DynamoDB's database (as the gateway's): empty for SQLite under the state dir.
    tables_dsn: str = ""
    state_dir: str = ""
    #: ECS tasks this replica runs at once.
    task_concurrency: int = 64
    #: How long a replica may go without a heartbeat before another marks its ECS tasks STOPPED (it beats 5 times
    #: as often).
    task_lease: float = 10.0
    #: How often the TTL sweeper deletes expired items (DynamoDB: within days; kambda: within a minute).
    ttl_interval: float = 10.0
    #: Where Step Functions' AWS SDK integrations reach kambda's services (the gateway); empty: nowhere.
    endpoint_url: str = ""
    #: The key that signs execution-role credentials (kambda/aws/roles.py), for those integrations' calls.
    role_key_file: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], is_root: bool | None = None) -> WorkerSettings:
        listen = env_str(environ, "KAMBDA_WORKER_LISTEN", "127.0.0.1:0")
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise SettingsError(f"KAMBDA_WORKER_LISTEN={listen!r} is not HOST:PORT (port 0..65535)")
        return cls(
            nats_url=env_str(environ, "KAMBDA_NATS_URL", "nats://127.0.0.1:4222"),
            controller=env_str(environ, "KAMBDA_CONTROLLER", "127.0.0.1:50051"),
            listen=listen,
            region=env_str(environ, "KAMBDA_REGION", DEFAULT_REGION),
            account=env_str(environ, "KAMBDA_ACCOUNT_ID", DEFAULT_ACCOUNT),
            queue_timeout=env_float(environ, "KAMBDA_QUEUE_TIMEOUT", 30.0, 0.1, 3600.0),
            async_retry_base=env_float(environ, "KAMBDA_ASYNC_RETRY_BASE", 60.0, 0.01, 3600.0),
            concurrency=env_int(environ, "KAMBDA_WORKER_CONCURRENCY", 64, 1, 4096),
            workflow_concurrency=env_int(environ, "KAMBDA_WORKER_WORKFLOW_CONCURRENCY", 256, 1, 65536),
            drain_timeout=env_float(environ, "KAMBDA_WORKER_DRAIN_TIMEOUT", 4.0, 0.0, 300.0),
            stream_replicas=env_int(environ, "KAMBDA_NATS_STREAM_REPLICAS", 1, 1, 5),
            nats_creds=env_str(environ, "KAMBDA_NATS_CREDS", ""),
            controller_token_file=env_str(environ, "KAMBDA_CONTROLLER_TOKEN_FILE", ""),
            sandbox_uids=sandbox_uids(environ, os.geteuid() == 0 if is_root is None else is_root),
            tables_dsn=env_str(environ, "KAMBDA_TABLES_DSN", ""),
            state_dir=str(state_dir(environ)),
            task_concurrency=env_int(environ, "KAMBDA_WORKER_TASK_CONCURRENCY", 64, 1, 4096),
            task_lease=env_float(environ, "KAMBDA_WORKER_TASK_LEASE", 10.0, 0.5, 600.0),
            ttl_interval=env_float(environ, "KAMBDA_TABLES_TTL_INTERVAL", 10.0, 0.05, 60.0),
            endpoint_url=env_str(environ, "KAMBDA_ENDPOINT_URL", ""),
            role_key_file=env_str(environ, "KAMBDA_ROLE_KEY_FILE", ""),
        )
