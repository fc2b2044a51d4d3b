"""The controller's settings, read once from an environment mapping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.decider import ScalerConfig
from kambda.settings import (
    DEFAULT_ACCOUNT,
    DEFAULT_REGION,
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_str,
    state_dir,
)

#: Where a pod finds the namespace it runs in.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


INVOKER_SETTINGS = ("KAMBDA_REGION", "KAMBDA_ACCOUNT_ID", "KAMBDA_ZYGOTE", "KAMBDA_RUNTIME_CHANNEL",
                    "KAMBDA_INVOKER_DRAIN_TIMEOUT", "KAMBDA_LOG_LEVEL", "KAMBDA_LOG_FORMAT",
                    "KAMBDA_ENDPOINT_URL")


@dataclass(frozen=True)
class KubernetesSettings:
    """The Kubernetes orchestrator's and the leader elector's settings (the Helm chart sets them)."""

    namespace: str = "default"       # where function and pool Deployments live
    invoker_image: str = "kambda:latest"
    pool_size: int = 2               # warm pool pods per runtime; 0 disables the pool
    pool_runtimes: tuple[str, ...] = ("python3.12",)
    pod_template: dict[str, Any] = field(default_factory=dict)  # partial PodSpec merged into every pod
    nats_url: str = ""               # the NATS address pods use (may differ from the controller's)
    kubeconfig: str = ""             # empty: in-cluster config, else ~/.kube/config
    leader_election: bool = False
    lease_name: str = "kambda-controller"
    pod_name: str = ""               # this controller's pod: the leader's identity and the pod it labels
    pod_namespace: str = "default"   # where the Lease and this controller's pod live
    #: Settings the controller passes on to every invoker pod (region and account make the ARNs
    #: functions see; zygote and runtime channel tune the invoker), as set in its own environment.
    invoker_env: tuple[tuple[str, str], ...] = ()
    #: A Secret of the functions' namespace whose ``invoker.json`` is the invoker pods' NATS
    #: credentials (kambda/bus/identities.py); empty: they connect anonymously.
    nats_creds_secret: str = ""
    #: The account nkey seed with which the controller answers NATS's auth callout and mints each
    #: function version's credential (kambda/bus/callout.py); empty: no per-function credentials.
    callout_seed_file: str = ""
    #: The invoker pods' credentials file (its password is what they log in with through the callout).
    pod_creds_file: str = ""
    #: The key of execution-role credentials (kambda/aws/roles.py, the gateway's too): the controller
    #: mints each function pod's and sends them with its assignment; empty: pods get none.
    role_key_file: str = ""
    #: How long those credentials are good for; they are sent again when half of it is left.
    role_ttl_s: float = 12 * 3600.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str], nats_url: str,
                 sa_namespace: Path = SERVICE_ACCOUNT_NAMESPACE) -> KubernetesSettings:
        try:
            default_ns = sa_namespace.read_text().strip() or "default"
        except OSError:
            default_ns = "default"
        runtimes = tuple(r.strip() for r in env_str(environ, "KAMBDA_K8S_POOL_RUNTIMES", "python3.12").split(",")
                         if r.strip())
        raw_template = env_str(environ, "KAMBDA_K8S_POD_TEMPLATE", "{}")
        try:
            template = json.loads(raw_template)
        except ValueError as exc:
            raise SettingsError(f"KAMBDA_K8S_POD_TEMPLATE={raw_template!r} is not JSON ({exc})") from None
        if not isinstance(template, dict):
            raise SettingsError(f"KAMBDA_K8S_POD_TEMPLATE={raw_template!r} is not a JSON object (a partial PodSpec)")
        pod_name = env_str(environ, "KAMBDA_POD_NAME", "")
        leader_election = env_bool(environ, "KAMBDA_LEADER_ELECTION", False)
        if leader_election and not pod_name:
            raise SettingsError("KAMBDA_LEADER_ELECTION=true needs KAMBDA_POD_NAME (the leader's identity)")
        return cls(
            namespace=env_str(environ, "KAMBDA_K8S_NAMESPACE", default_ns),
            invoker_image=env_str(environ, "KAMBDA_K8S_INVOKER_IMAGE", "kambda:latest"),
            pool_size=env_int(environ, "KAMBDA_K8S_POOL_SIZE", 2, 0, 1000),
            pool_runtimes=runtimes,
            pod_template=template,
            nats_url=env_str(environ, "KAMBDA_K8S_NATS_URL", nats_url),
            kubeconfig=env_str(environ, "KAMBDA_KUBECONFIG", ""),
            leader_election=leader_election,
            lease_name=env_str(environ, "KAMBDA_LEADER_LEASE_NAME", "kambda-controller"),
            pod_name=pod_name,
            pod_namespace=env_str(environ, "KAMBDA_POD_NAMESPACE", default_ns),
            invoker_env=tuple((key, environ[key]) for key in INVOKER_SETTINGS if environ.get(key)),
            nats_creds_secret=env_str(environ, "KAMBDA_K8S_NATS_CREDS_SECRET", ""),
            callout_seed_file=env_str(environ, "KAMBDA_K8S_NATS_CALLOUT_SEED_FILE", ""),
            pod_creds_file=env_str(environ, "KAMBDA_K8S_NATS_POD_CREDS", ""),
            role_key_file=env_str(environ, "KAMBDA_ROLE_KEY_FILE", ""),
            role_ttl_s=env_float(environ, "KAMBDA_K8S_ROLE_TTL_S", 12 * 3600.0, 10.0, 12 * 3600.0),
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
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    #: Servers of the NATS cluster that keep each stream and bucket (3 on a 3-server cluster).
    stream_replicas: int = 1
    #: The controller's NATS credentials file, and the one it gives the invokers it starts
    #: (kambda/bus/identities.py); empty: anonymous.
    nats_creds: str = ""
    invoker_nats_creds: str = ""
    #: A file holding the token every gRPC caller must present (kambda/rpc.py); empty: none asked.
    token_file: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ControllerSettings:
        orchestrator = env_str(environ, "KAMBDA_ORCHESTRATOR", "local")
        if orchestrator not in ("local", "kubernetes"):
            raise SettingsError(f"KAMBDA_ORCHESTRATOR={orchestrator!r} is not one of: local, kubernetes")
        nats_url = env_str(environ, "KAMBDA_NATS_URL", "nats://127.0.0.1:4222")
        return cls(
            nats_url=nats_url,
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
            kubernetes=KubernetesSettings.from_env(environ, nats_url),
            stream_replicas=env_int(environ, "KAMBDA_NATS_STREAM_REPLICAS", 1, 1, 5),
            nats_creds=env_str(environ, "KAMBDA_NATS_CREDS", ""),
            invoker_nats_creds=env_str(environ, "KAMBDA_NATS_INVOKER_CREDS", ""),
            token_file=env_str(environ, "KAMBDA_CONTROLLER_TOKEN_FILE", ""),
        )
