"""The Kubernetes objects of kambda: names, labels and the manifests of function and pool Deployments.

Pure functions of the settings and the function's configuration, so they are tested without a server.

- A function version's Deployment is named ``fn-<function>-<version>-<hash>``, cut to fit and made
  DNS-safe; the hash (of the exact name and version) keeps two names that sanitise alike apart.
  Label values cannot hold every function name (``$LATEST`` is not a valid label value), so the
  labels carry sanitised values for selection and the annotations the exact ones.
- Each pod runs one ``kambda-invoker`` whose invoker id is its own pod name (downward API): the
  controller sends it its Assignment over NATS, like the local orchestrator does. One pod holds
  one execution environment, so replicas = environments.
- Pool pods are generic invokers of one runtime, assigned nothing until the controller claims one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any

from controller.settings import KubernetesSettings

Obj = dict[str, Any]

PART_OF = "app.kubernetes.io/part-of"
ROLE = "kambda.dev/role"
FUNCTION = "kambda.dev/function"
VERSION = "kambda.dev/version"
RUNTIME = "kambda.dev/runtime"
INSTANCE = "kambda.dev/instance"    # a function Deployment's own pods (claimed pods lack it)
CLAIMED = "kambda.dev/claimed"
SPEC_HASH = "kambda.dev/spec-hash"        # what the controller last wrote (the server adds defaults)
NAME_ANNOTATION = "kambda.dev/function-name"
VERSION_ANNOTATION = "kambda.dev/function-version"
RUNTIME_ANNOTATION = "kambda.dev/runtime-name"

ROLE_FUNCTION = "function"
ROLE_POOL = "pool"
ROLE_LEADER = "leader"

#: Selects every function Deployment and every function pod, claimed ones included.
FUNCTION_SELECTOR = f"{PART_OF}=kambda,{ROLE}={ROLE_FUNCTION}"
POOL_SELECTOR = f"{PART_OF}=kambda,{ROLE}={ROLE_POOL}"
#: Every kambda-managed pod the orchestrator cares about (function and pool).
PODS_SELECTOR = f"{PART_OF}=kambda,{ROLE} in ({ROLE_FUNCTION},{ROLE_POOL})"

CODE_DIR = "/tmp/kambda"
#: Where an invoker pod finds its NATS credentials (a Secret volume).
NATS_CREDS_DIR = "/etc/kambda/nats"
#: The invoker's readiness file (InvokerSettings.ready_file), tested with the container's own env.
READY_TEST = 'test -e "$KAMBDA_STATE_DIR/invokers/$KAMBDA_INVOKER_ID/ready"'
INVOKER_COMMAND = ["kambda-invoker"]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def _dns_part(value: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", value.lower())).strip("-")


def deployment_name(function: str, version: str) -> str:
    """DNS-1123 label (63 chars at most), unique per (function, version)."""
    readable = _dns_part(f"{function}-{'latest' if version == '$LATEST' else version}")[:48].strip("-")
    return f"fn-{readable}-{_digest(function, version)}" if readable else f"fn-{_digest(function, version)}"


def pool_name(runtime: str) -> str:
    return f"kambda-pool-{_dns_part(runtime)[:40].strip('-')}"


def label_value(value: str) -> str:
    """A valid label value for any string: itself when it is one, else sanitised plus a hash."""
    if re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", value) and len(value) <= 63:
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "", value)[:54].strip("-_.")
    return f"{cleaned}-{_digest(value)}" if cleaned else _digest(value)


def function_labels(function: str, version: str) -> dict[str, str]:
    return {PART_OF: "kambda", ROLE: ROLE_FUNCTION, FUNCTION: label_value(function), VERSION: label_value(version)}


def function_key(obj: Obj) -> tuple[str, str] | None:
    """The (function, version) a Deployment or pod belongs to, from its annotations."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    name, version = annotations.get(NAME_ANNOTATION), annotations.get(VERSION_ANNOTATION)
    return (name, version) if name and version else None


def merge(base: Any, overlay: Any) -> Any:
    """Deep-merge a partial object onto another: maps merge key by key; containers merge by name;
    other lists and scalars of the overlay replace the base's."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(overlay, list) and all(
            isinstance(x, dict) and "name" in x for x in base + overlay):
        by_name = {x["name"]: x for x in base}
        out = [merge(by_name[x["name"]], x) if x["name"] in by_name else copy.deepcopy(x) for x in overlay]
        names = {x["name"] for x in overlay}
        return [x for x in base if x["name"] not in names] + out
    return copy.deepcopy(overlay)


def pod_spec(settings: KubernetesSettings, runtime: str) -> Obj:
    """An invoker pod: restricted security context, no service account token, /tmp as an emptyDir."""
    env = [
        {"name": "KAMBDA_INVOKER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "KAMBDA_NATS_URL", "value": settings.nats_url},
        {"name": "KAMBDA_STATE_DIR", "value": CODE_DIR},
        *({"name": key, "value": value} for key, value in settings.invoker_env),
    ]
    spec: Obj = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "invoker",
            "image": settings.invoker_image,
            "command": INVOKER_COMMAND,
            "env": env,
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            # Ready once the invoker is connected to NATS and takes assignments (invoker/__main__.py).
            "readinessProbe": {"exec": {"command": ["sh", "-c", READY_TEST]}, "periodSeconds": 1,
                               "failureThreshold": 1},
        }],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "terminationGracePeriodSeconds": 30,
    }
    if settings.nats_creds_secret:
        env.append({"name": "KAMBDA_NATS_CREDS", "value": f"{NATS_CREDS_DIR}/invoker.json"})
        spec["containers"][0]["volumeMounts"].append({"name": "nats-credentials", "mountPath": NATS_CREDS_DIR,
                                                      "readOnly": True})
        spec["volumes"].append({"name": "nats-credentials", "secret": {
            "secretName": settings.nats_creds_secret, "defaultMode": 0o440,
            "items": [{"key": "invoker.json", "path": "invoker.json"}]}})
    return merge(spec, settings.pod_template)


def _with_hash(deployment: Obj) -> Obj:
    spec = deployment["spec"]
    digest = hashlib.sha256(json.dumps([spec["selector"], spec["template"]], sort_keys=True).encode()).hexdigest()
    deployment["metadata"]["annotations"][SPEC_HASH] = digest[:16]
    return deployment


def function_deployment(settings: KubernetesSettings, function: str, version: str, runtime: str,
                        replicas: int) -> Obj:
    name = deployment_name(function, version)
    labels = function_labels(function, version)
    annotations = {NAME_ANNOTATION: function, VERSION_ANNOTATION: version}
    pod_labels = {**labels, INSTANCE: name}
    return _with_hash({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels,
                     "annotations": dict(annotations)},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,   # thousands of functions: keep few old ReplicaSets around
            "selector": {"matchLabels": {INSTANCE: name, ROLE: ROLE_FUNCTION}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": annotations},
                "spec": pod_spec(settings, runtime),
            },
        },
    })


def pool_deployment(settings: KubernetesSettings, runtime: str) -> Obj:
    name = pool_name(runtime)
    labels = {PART_OF: "kambda", ROLE: ROLE_POOL, RUNTIME: label_value(runtime)}
    return _with_hash({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels,
                     "annotations": {RUNTIME_ANNOTATION: runtime}},
        "spec": {
            "replicas": settings.pool_size,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {ROLE: ROLE_POOL, RUNTIME: label_value(runtime)}},
            "template": {"metadata": {"labels": labels, "annotations": {RUNTIME_ANNOTATION: runtime}},
                         "spec": pod_spec(settings, runtime)},
        },
    })


def claim_patch(pod: Obj, function: str, version: str) -> Obj:
    """A merge patch that moves a pool pod out of the pool's selector and in to the function (not
    into its Deployment's selector). It carries the resourceVersion the controller saw, so the API
    server refuses it (409) if the pod changed since: of two racing claims, one wins."""
    labels = {**function_labels(function, version), CLAIMED: "true"}
    return {"metadata": {
        "resourceVersion": pod["metadata"].get("resourceVersion"),
        "labels": labels,
        "annotations": {NAME_ANNOTATION: function, VERSION_ANNOTATION: version},
        # The ReplicaSet lets go of a pod that leaves its selector; say so at once.
        "ownerReferences": None,
    }}


def pod_ready(pod: Obj) -> bool:
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def template_differs(current: Obj, wanted: Obj) -> bool:
    """Whether a Deployment's pod template (or selector) is not the one the controller wants now
    (compared by the hash the controller wrote: the API server adds defaults to what it stores)."""
    def spec_hash(obj: Obj) -> str | None:
        return (obj.get("metadata", {}).get("annotations") or {}).get(SPEC_HASH)
    return spec_hash(current) != spec_hash(wanted)
