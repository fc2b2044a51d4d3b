"""A mini ReplicaSet controller: keeps ``spec.replicas`` pods for every Deployment, and its status.

The real chain is Deployment -> ReplicaSet -> Pods; here the Deployment owns its pods directly
(ownerReferences kind Deployment), and a changed pod template replaces all pods at once
(Recreate) instead of rolling. What matters to a client is kept faithfully:

- pods are named ``<deployment>-<pod-template-hash>-<5 random>``, labelled with the template's
  labels plus ``pod-template-hash``, and created in phase Pending (a kubelet makes them Ready);
- a pod whose labels stop matching the selector is released (its ownerReference removed) and
  replaced, which is how a warm-pool pod is claimed (Fission's pool manager); an unowned pod
  that matches the selector and the pod-template-hash is adopted;
- scaling down deletes not-ready pods first, then the newest;
- Failed, Succeeded and Terminating pods (deletionTimestamp set) do not count as replicas;
- ``status.replicas``, ``readyReplicas``, ``availableReplicas``, ``updatedReplicas`` and
  ``observedGeneration`` follow the pods (fields that are 0 are left out, as the real one does).

It runs on a thread of its own, woken by every write to the store, so it acts asynchronously,
like the real controller: clients must wait for its effects, never assume them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading

from .objects import ApiError, Obj
from .selectors import from_label_selector, matches
from .store import Event, Store, _rand, now

log = logging.getLogger(__name__)
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj) -> str:
    digest = int.from_bytes(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()[:8], "big")
    out = ""
    for _ in range(10):
        digest, index = divmod(digest, len(_ALPHABET))
        out += _ALPHABET[index]
    return out


def is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _controller_uid(obj: Obj) -> str:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid", "")
    return ""


class ReplicaSetController:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fakekube-replicasets", daemon=True)
        self._unsubscribe = store.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.resource.plural in ("deployments", "pods"):
            self._wake.set()

    def start(self) -> None:
        self._wake.set()
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._unsubscribe()
        self._wake.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            deployments, _ = self.store.list("deployments")
            for deployment in deployments:
                try:
                    with self.store.lock:  # atomic against clients: no pod for a Deployment deleted meanwhile
                        meta = deployment["metadata"]
                        self.reconcile(self.store.get("deployments", meta["namespace"], meta["name"]))
                except ApiError as exc:  # raced with a client's delete: the next event retries
                    log.debug("reconcile of %s: %s", deployment["metadata"]["name"], exc)
                    self._wake.set()
                except Exception:  # a bug in the fake must not stop it silently
                    log.exception("fake ReplicaSet controller: reconcile of %s failed", deployment["metadata"]["name"])

    def reconcile(self, deployment: Obj) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        namespace, uid = meta["namespace"], meta["uid"]
        selector = from_label_selector(spec.get("selector"))
        pod_hash = template_hash(spec["template"])
        current = selector + [("pod-template-hash", "=", (pod_hash,))]
        pods, _ = self.store.list("pods", namespace)
        owned = []
        for pod in pods:
            labels = pod["metadata"].get("labels")
            owner = _controller_uid(pod)
            if owner == uid and not matches(selector, labels):
                self.store.mutate("pods", namespace, pod["metadata"]["name"], lambda p: _release(p, uid))
            elif owner == uid and not matches(current, labels):
                if not pod["metadata"].get("deletionTimestamp"):
                    self.store.delete("pods", namespace, pod["metadata"]["name"])  # an old template's pod
            elif owner == uid:
                owned.append(pod)
            elif not owner and matches(current, labels) and not pod["metadata"].get("deletionTimestamp"):
                self.store.mutate("pods", namespace, pod["metadata"]["name"],
                                  lambda p: p["metadata"].setdefault("ownerReferences", []).append(_ref(deployment)))
                owned.append(pod)
        active = [p for p in owned if _active(p)]
        want = spec.get("replicas", 1)
        for _ in range(want - len(active)):
            self.store.create("pods", namespace, self._new_pod(deployment, pod_hash))
        if len(active) > want:
            ranked = sorted(active, key=lambda p: (is_ready(p), -self.store.created_order(p)))
            for pod in ranked[: len(active) - want]:
                self.store.delete("pods", namespace, pod["metadata"]["name"])
        self._write_status(deployment, pod_hash)

    def _new_pod(self, deployment: Obj, pod_hash: str) -> Obj:
        template = copy.deepcopy(deployment["spec"]["template"])
        tmeta = template.get("metadata") or {}
        name = deployment["metadata"]["name"]
        metadata: Obj = {
            "name": f"{name}-{pod_hash}-{_rand()}",
            "generateName": f"{name}-{pod_hash}-",
            "labels": {**(tmeta.get("labels") or {}), "pod-template-hash": pod_hash},
            "ownerReferences": [_ref(deployment)],
        }
        if tmeta.get("annotations"):
            metadata["annotations"] = tmeta["annotations"]
        return {"metadata": metadata, "spec": template.get("spec") or {}}

    def _write_status(self, deployment: Obj, pod_hash: str) -> None:
        meta = deployment["metadata"]
        pods, _ = self.store.list("pods", meta["namespace"])
        active = [p for p in pods if _controller_uid(p) == meta["uid"] and _active(p)]
        ready = sum(1 for p in active if is_ready(p))
        updated = sum(1 for p in active if (p["metadata"].get("labels") or {}).get("pod-template-hash") == pod_hash)
        want = deployment["spec"].get("replicas", 1)
        counts = {"replicas": len(active), "updatedReplicas": updated, "readyReplicas": ready,
                  "availableReplicas": ready, "unavailableReplicas": max(want - ready, 0)}
        status: Obj = {"observedGeneration": meta.get("generation", 1)}
        status.update({key: value for key, value in counts.items() if value})
        available = "True" if ready >= want else "False"
        old = deployment.get("status") or {}
        old_condition = next((c for c in old.get("conditions") or [] if c.get("type") == "Available"), None)
        if old_condition and old_condition.get("status") == available:
            condition = old_condition
        else:
            stamp = now()
            condition = {"type": "Available", "status": available, "lastUpdateTime": stamp,
                         "lastTransitionTime": stamp,
                         "reason": "MinimumReplicasAvailable" if available == "True" else "MinimumReplicasUnavailable",
                         "message": "Deployment has minimum availability." if available == "True"
                         else "Deployment does not have minimum availability."}
        status["conditions"] = [condition]
        if status != old:
            self.store.mutate("deployments", meta["namespace"], meta["name"],
                              lambda d: d.__setitem__("status", status))


def _active(pod: Obj) -> bool:
    """Counts as a replica: neither ended (Failed, Succeeded) nor Terminating."""
    return (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded") \
        and not pod["metadata"].get("deletionTimestamp")


def _ref(deployment: Obj) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"],
            "uid": deployment["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _release(pod: Obj, uid: str) -> None:
    refs = [ref for ref in pod["metadata"].get("ownerReferences") or [] if ref.get("uid") != uid]
    if refs:
        pod["metadata"]["ownerReferences"] = refs
    else:
        pod["metadata"].pop("ownerReferences", None)
