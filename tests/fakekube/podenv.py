"""What a kubelet makes of a container before it starts it: the command line and the environment.

The environment is resolved as a real kubelet resolves it: ``envFrom`` first, then ``env`` with
``$(VAR)`` references to variables defined before, ``valueFrom.fieldRef`` (metadata.name,
metadata.namespace, metadata.uid, metadata.labels['k'], status.podIP ...), ``resourceFieldRef``
(rounded up after the divisor), ``configMapKeyRef`` and ``secretKeyRef``. What cannot be resolved
is a :class:`ContainerConfigError`, which keeps a real pod Pending (CreateContainerConfigError).
"""

from __future__ import annotations

import base64
import os
import re
import sys
from typing import Any

from kambda import procs

from .objects import ApiError, Obj

#: Console scripts of the image, as modules of this checkout.
CONSOLE_SCRIPTS = {"kambda-invoker": "invoker", "kambda-gateway": "gateway", "kambda-controller": "controller",
                   "kambda": "kambda.cli"}
POD_IP = "127.0.0.1"


class ContainerConfigError(Exception):
    """The pod's container cannot be configured (a missing ConfigMap key ...): it stays Pending."""


def argv_of(container: Obj) -> list[str]:
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    if not argv:
        raise ContainerConfigError("the container has no command: the fake kubelet cannot run an image's entrypoint")
    if argv[0] in CONSOLE_SCRIPTS:
        return [*procs.python_argv(CONSOLE_SCRIPTS[argv[0]]), *argv[1:]]
    if argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_UNITS = {"": 1, "m": 0.001, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text: str) -> float:
    match = _QUANTITY.match(str(text))
    if not match or match[2] not in _UNITS:
        raise ContainerConfigError(f"invalid quantity {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def _field(pod: Obj, path: str) -> str:
    meta = pod["metadata"]
    if match := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
        return (meta.get(match[1]) or {}).get(match[2], "")
    values = {
        "metadata.name": meta["name"], "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "status.podIP": POD_IP, "status.hostIP": POD_IP,
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName", "fakekube-node"),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
    }
    if path not in values:
        raise ContainerConfigError(f"unsupported fieldPath {path!r}")
    return values[path]


def _resource(container: Obj, ref: Obj) -> str:
    resources = container.get("resources") or {}
    kind, _, name = ref["resource"].partition(".")
    value = (resources.get(kind) or {}).get(name) or (resources.get("limits") or {}).get(name)
    if value is None:  # no limit: the node's capacity
        value = str(os.cpu_count() or 1) if name == "cpu" else str(os.sysconf("SC_PAGE_SIZE") *
                                                                   os.sysconf("SC_PHYS_PAGES"))
    amount = quantity(value) / quantity(ref.get("divisor") or "1")
    return str(int(-(-amount // 1)))  # rounded up, as the kubelet does


def resolve_env(pod: Obj, container: Obj, lookup: Any) -> dict[str, str]:
    """The container's env as a kubelet gives it; ``lookup(plural, name)`` reads ConfigMaps and Secrets.

    ``envFrom`` comes first and ``env`` overrides it, as in a real kubelet.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        plural, ref = ("configmaps", source["configMapRef"]) if "configMapRef" in source \
            else ("secrets", source.get("secretRef") or {})
        try:
            data = lookup(plural, ref.get("name", "")).get("data") or {}
        except ApiError:
            if ref.get("optional"):
                continue
            raise ContainerConfigError(f"{plural[:-1]} {ref.get('name')!r} not found") from None
        for key, value in data.items():
            env[source.get("prefix", "") + key] = base64.b64decode(value).decode() if plural == "secrets" else value
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                               lambda m: env.get(m[1], m[0]), str(var.get("value", "")))
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = _field(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = _resource(container, source["resourceFieldRef"])
        else:
            plural, ref = ("configmaps", source.get("configMapKeyRef")) if "configMapKeyRef" in source \
                else ("secrets", source.get("secretKeyRef"))
            if ref is None:
                raise ContainerConfigError(f"unsupported valueFrom for {name}")
            try:
                obj = lookup(plural, ref["name"])
            except ApiError:
                obj = None
            data = (obj or {}).get("data") or {}
            if ref["key"] in data:
                value = data[ref["key"]]
                env[name] = base64.b64decode(value).decode() if plural == "secrets" else value
            elif not ref.get("optional"):
                raise ContainerConfigError(f"{plural[:-1]} {ref['name']!r} has no key {ref['key']!r}")
    return env
