"""``python -m controller.callout_key --secret NAME``: the account key of NATS's auth callout, made once.

Per-function NATS credentials (kambda/bus/callout.py) need an account nkey: the controller signs
with its seed, nats-server names its public key as the callout's issuer. Helm cannot make an nkey
(ed25519 with a CRC16 in base32), so the chart runs this as a pre-install and pre-upgrade hook: it
creates the Secret (keys ``seed`` and ``issuer``) when it does not exist and leaves an existing one
alone, so that upgrades keep the key (the tokens already minted stay good). nats-server reads the
issuer from the Secret through an environment variable (``$KAMBDA_CALLOUT_ISSUER`` in its config);
the controller mounts the seed. Delete the Secret and upgrade to rotate the key.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

import nkeys
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from controller.orchestrators.k8s_api import load_client
from kambda.bus import callout

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def issuer_of(seed: bytes) -> str:
    return str(nkeys.from_seed(bytearray(seed)).public_key.decode())


def ensure(core: client.CoreV1Api, namespace: str, name: str) -> tuple[str, bool]:
    """The issuer in Secret ``name`` (made with a fresh key if there is none), and whether it was made now."""
    for _ in range(2):
        try:
            # Unparsed (_preload_content=False): the raw JSON response, not a V1Secret.
            secret: Any = core.read_namespaced_secret(name, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
        else:
            data = json.loads(secret.data).get("data") or {}
            seed = base64.b64decode(data.get("seed", ""))
            if not seed:
                raise SystemExit(f"Secret {namespace}/{name} has no key `seed`: delete it or name another")
            return issuer_of(seed), False
        seed = callout.new_account_seed()
        body: Any = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "kambda",
                                                      "app.kubernetes.io/component": "nats"}},
                "data": {"seed": base64.b64encode(seed).decode(),
                         "issuer": base64.b64encode(issuer_of(seed).encode()).decode()}}
        try:
            core.create_namespaced_secret(namespace, body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:  # another run made it first: read theirs
                raise
            continue
        return issuer_of(seed), True
    raise SystemExit(f"Secret {namespace}/{name} was made and removed while being read")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret", required=True, help="the Secret to hold the key")
    parser.add_argument("--namespace", default="", help="its namespace (default: this pod's)")
    parser.add_argument("--kubeconfig", default="", help="default: in-cluster")
    args = parser.parse_args(argv)
    namespace = args.namespace or SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    with load_client(args.kubeconfig) as api_client:
        issuer, made = ensure(client.CoreV1Api(api_client), namespace, args.secret)
    print(f"{'made' if made else 'kept'} Secret {namespace}/{args.secret}: issuer {issuer}")


if __name__ == "__main__":
    main(sys.argv[1:])
