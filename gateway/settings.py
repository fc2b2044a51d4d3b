"""The gateway's settings, read once from an environment mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kambda.settings import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    env_bool,
    env_float,
    env_int,
    env_str,
    sandbox_uids,
    state_dir,
)


@dataclass(frozen=True)
class GatewaySettings:
    host: str
    port: int
    nats_url: str
    controller: str                 # host:port (or unix:/path) of the controller's gRPC server
    region: str
    account: str
    #: How long a sync request may wait in the queue for an environment (the cold-start
    #: allowance) before it is answered 429; the function's own timeout comes on top.
    queue_timeout: float
    #: How long a request to a function at its reserved concurrency waits before its 429.
    throttle_wait: float = 1.0
    #: A YAML or JSON file of HTTP API routes, added or updated at start (apis/api.py).
    routes_file: str = ""
    #: Requests whose Host is this name are HTTP API traffic with the full path (besides /http/...).
    http_host: str = ""
    #: Function URLs are also served on <url-id>.lambda-url.<region>.<url_domain>, and FunctionUrl says so.
    url_domain: str = ""
    #: JSON credentials file (see kambda/aws/auth.py); empty: unsigned requests from loopback only.
    credentials_file: str = ""
    #: Serve unsigned requests from anywhere when no credentials are configured.
    insecure: bool = False
    #: Serve /metrics unsigned to any address (for a Prometheus scraper that cannot sign).
    public_metrics: bool = False
    #: A connection that has not sent a whole request head this long after it opened (or after its
    #: last answer) is closed: idle keep-alive connections and slow-header clients alike.
    idle_timeout: float = 75.0
    #: The workers' /metrics URLs, merged into the gateway's /metrics (``kambda up`` sets them; on
    #: Kubernetes, Prometheus scrapes each worker pod itself).
    worker_metrics: tuple[str, ...] = ()
    #: The gateway's NATS credentials file (kambda/bus/identities.py); empty: anonymous.
    nats_creds: str = ""
    #: A file holding the token the controller asks of its callers (kambda/rpc.py); empty: none.
    controller_token_file: str = ""
    #: The key of functions' execution-role credentials (kambda/aws/roles.py); empty: none accepted.
    role_key_file: str = ""
    #: The gateway's own address as functions and Step Functions' AWS SDK integrations reach it; empty: none.
    endpoint_url: str = ""
    #: The uids of sandboxed functions, whose requests are never loopback-admin (None: not sandboxed).
    sandbox_uids: range | None = None
    #: DynamoDB's database: empty for SQLite under the state dir, else sqlite:///path or postgresql://...
    tables_dsn: str = ""
    state_dir: str = ""
    #: The size of an item collection of a table with local secondary indexes (DynamoDB: 10 GB).
    tables_collection_limit: int = 10 * 1024 ** 3

    @classmethod
    def from_env(cls, environ: Mapping[str, str], is_root: bool | None = None) -> GatewaySettings:
        return cls(
            host=env_str(environ, "KAMBDA_HOST", "127.0.0.1"),
            port=env_int(environ, "KAMBDA_PORT", 8042, 0, 65535),
            nats_url=env_str(environ, "KAMBDA_NATS_URL", "nats://127.0.0.1:4222"),
            controller=env_str(environ, "KAMBDA_CONTROLLER", "127.0.0.1:50051"),
            region=env_str(environ, "KAMBDA_REGION", DEFAULT_REGION),
            account=env_str(environ, "KAMBDA_ACCOUNT_ID", DEFAULT_ACCOUNT),
            queue_timeout=env_float(environ, "KAMBDA_QUEUE_TIMEOUT", 30.0, 0.1, 3600.0),
            throttle_wait=env_float(environ, "KAMBDA_THROTTLE_WAIT", 1.0, 0.0, 60.0),
            routes_file=env_str(environ, "KAMBDA_ROUTES_FILE", ""),
            http_host=env_str(environ, "KAMBDA_HTTP_HOST", "").lower(),
            url_domain=env_str(environ, "KAMBDA_URL_DOMAIN", "").lower().strip("."),
            credentials_file=env_str(environ, "KAMBDA_CREDENTIALS_FILE", ""),
            insecure=env_bool(environ, "KAMBDA_INSECURE", False),
            public_metrics=env_bool(environ, "KAMBDA_METRICS_PUBLIC", False),
            idle_timeout=env_float(environ, "KAMBDA_IDLE_TIMEOUT", 75.0, 1.0, 3600.0),
            worker_metrics=tuple(url.strip() for url in env_str(environ, "KAMBDA_WORKER_METRICS", "").split(",")
                                 if url.strip()),
            nats_creds=env_str(environ, "KAMBDA_NATS_CREDS", ""),
            controller_token_file=env_str(environ, "KAMBDA_CONTROLLER_TOKEN_FILE", ""),
            role_key_file=env_str(environ, "KAMBDA_ROLE_KEY_FILE", ""),
            endpoint_url=env_str(environ, "KAMBDA_ENDPOINT_URL", ""),
            tables_dsn=env_str(environ, "KAMBDA_TABLES_DSN", ""),
            tables_collection_limit=env_int(environ, "KAMBDA_TABLES_COLLECTION_LIMIT", 10 * 1024 ** 3, 1024,
                                            10 * 1024 ** 3),
            state_dir=str(state_dir(environ)),
            sandbox_uids=sandbox_uids(environ, os.geteuid() == 0 if is_root is None else is_root),
        )
