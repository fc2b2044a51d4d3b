"""The fake API server's storage: objects, one resourceVersion counter, a bounded event history.

Like etcd behind the real API server, every write gets the next global resourceVersion and is
appended to a history that watches replay from; the history keeps the last ``history`` events,
so a watch from an older resourceVersion is answered 410 Gone (as after an etcd compaction).

The store is thread-safe (one lock): the server's event loop, the mini ReplicaSet controller,
the test's "kubelet" and the test itself may all write to it. Everything it returns is a copy.
"""

from __future__ import annotations

import copy
import itertools
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import patches
from .objects import (
    RESOURCES,
    ApiError,
    Obj,
    Resource,
    already_exists,
    apply_defaults,
    conflict,
    immutable_change,
    invalid,
    not_found,
    validate,
)
from .selectors import (
    Requirement,
    fields_match,
    from_label_selector,
    matches,
    parse_fields,
    parse_labels,
    to_string,
)


@dataclass(frozen=True)
class Event:
    """One write. ``old`` is the object before a MODIFIED (for watches with a selector)."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: Resource
    obj: Obj
    old: Obj | None = None


def now(later_s: float = 0) -> str:
    return datetime.fromtimestamp(datetime.now(UTC).timestamp() + later_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _rand(n: int = 5) -> str:
    # The alphabet Kubernetes uses for generated names (no vowels, no confusable digits).
    return "".join(random.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(n))


class Store:
    def __init__(self, history: int = 1000) -> None:
        self._lock: threading.RLock = threading.RLock()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {plural: {} for plural in RESOURCES}
        self._rv = 0
        self._history: deque[Event] = deque(maxlen=history)
        self._compacted = 0  # watches from a resourceVersion below this answer 410
        self._watchers: list[Callable[[Event], None]] = []
        self._ips = itertools.count(10)
        self._created: dict[str, int] = {}  # uid -> resourceVersion at creation
        self.create("namespaces", "", {"metadata": {"name": "default"}})

    @property
    def lock(self) -> threading.RLock:
        """Held for a series of reads and writes that must see no other writer in between."""
        return self._lock

    # -- reading --------------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, plural: str, namespace: str, name: str) -> Obj:
        with self._lock:
            obj = self._objects[plural].get((namespace if RESOURCES[plural].namespaced else "", name))
            if obj is None:
                raise not_found(RESOURCES[plural], name)
            return copy.deepcopy(obj)

    def list(self, plural: str, namespace: str | None = None, labels: str | list[Requirement] = "",
             fields: str | list[Requirement] = "") -> tuple[list[Obj], int]:
        """Objects in key order (namespace ``None``: all namespaces), and the resourceVersion of the list.

        ``labels`` and ``fields`` are selectors, as strings (``"app=x,tier!=db"``) or parsed.
        """
        if isinstance(labels, str):
            labels = parse_labels(labels)
        if isinstance(fields, str):
            fields = parse_fields(fields)
        with self._lock:
            items = [copy.deepcopy(obj) for key, obj in sorted(self._objects[plural].items())
                     if (namespace is None or key[0] == namespace)
                     and matches(labels or [], obj["metadata"].get("labels"))
                     and fields_match(fields or [], obj)]
            return items, self._rv

    def created_order(self, obj: Obj) -> int:
        """When an object was created, as a resourceVersion (finer than creationTimestamp's seconds)."""
        return self._created.get(obj["metadata"].get("uid", ""), 0)

    # -- writing --------------------------------------------------------------------------------------------

    def _commit(self, resource: Resource, kind: str, obj: Obj, old: Obj | None = None) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        if kind == "DELETED":
            self._objects[resource.plural].pop(_key(obj), None)
        else:
            self._objects[resource.plural][_key(obj)] = obj
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        event = Event(self._rv, kind, resource, copy.deepcopy(obj), copy.deepcopy(old) if old else None)
        self._history.append(event)
        for watcher in list(self._watchers):
            watcher(event)
        return copy.deepcopy(obj)

    def create(self, plural: str, namespace: str, body: Obj) -> Obj:
        resource = RESOURCES[plural]
        obj = copy.deepcopy(body)
        obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        meta = obj.setdefault("metadata", {})
        with self._lock:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + _rand()
            if resource.namespaced:
                meta["namespace"] = namespace
                if ("", namespace) not in self._objects["namespaces"]:
                    self.create("namespaces", "", {"metadata": {"name": namespace}})
            else:
                meta.pop("namespace", None)
            if meta.get("resourceVersion"):  # what a client gets for posting back an object it read
                raise ApiError(500, "resourceVersion should not be set on objects to be created")
            validate(resource, obj)
            if _key(obj) in self._objects[plural]:
                raise already_exists(resource, meta["name"])
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(field, None)
            if resource.has_status:
                obj.pop("status", None)  # a new object starts with the status the server gives it
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if "spec" in obj:
                meta["generation"] = 1
            ip = next(self._ips)
            apply_defaults(resource, obj, cluster_ip=f"10.96.{ip // 250}.{ip % 250 + 1}")
            self._created[meta["uid"]] = self._rv + 1
            return self._commit(resource, "ADDED", obj)

    def replace(self, plural: str, namespace: str, name: str, body: Obj, subresource: str = "") -> Obj:
        """PUT: a stale ``metadata.resourceVersion`` is a 409; none at all is an unconditional update."""
        resource = RESOURCES[plural]
        with self._lock:
            old = self.get(plural, namespace, name)
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise conflict(resource, name)
            if (body.get("metadata") or {}).get("name", name) != name:
                raise ApiError(400, "the name of the object does not match the name on the URL")
            if subresource == "status":
                new = copy.deepcopy(old)
                new["status"] = copy.deepcopy(body.get("status") or {})
            else:
                new = copy.deepcopy(body)
                new["kind"], new["apiVersion"] = resource.kind, resource.api_version
                meta = new.setdefault("metadata", {})
                for field in ("uid", "creationTimestamp", "namespace", "generation", "deletionTimestamp",
                              "deletionGracePeriodSeconds"):
                    if field in old["metadata"]:
                        meta[field] = old["metadata"][field]
                    else:
                        meta.pop(field, None)
                meta["name"] = name
                if resource.has_status:
                    if "status" in old:
                        new["status"] = old["status"]
                    else:
                        new.pop("status", None)
                apply_defaults(resource, new)
                validate(resource, new)
                problem = immutable_change(resource, old, new)
                if problem:
                    raise invalid(resource, name, [(problem.split(":")[0], problem.split(": ", 1)[1])])
                if resource.kind == "Service" and not (new.get("spec") or {}).get("clusterIP"):
                    for key in ("clusterIP", "clusterIPs"):  # an update that leaves it out keeps it
                        if key in old.get("spec", {}):
                            new.setdefault("spec", {})[key] = old["spec"][key]
                if new.get("spec") != old.get("spec"):
                    meta["generation"] = old["metadata"].get("generation", 0) + 1
            if new == old:
                return old  # a no-op update writes nothing, as in the real server
            return self._commit(resource, "MODIFIED", new, old)

    def patch(self, plural: str, namespace: str, name: str, content_type: str, patch: Any,
              subresource: str = "") -> Obj:
        with self._lock:
            old = self.get(plural, namespace, name)
            try:
                patched = patches.apply(content_type, old, patch)
            except patches.PatchError as exc:
                raise ApiError(422 if "test" in str(exc) or "exist" in str(exc) else 400, str(exc)) from None
            # A resourceVersion in the patch is a precondition (how clients make a patch optimistic).
            if patched.get("metadata", {}).get("resourceVersion") != old["metadata"]["resourceVersion"]:
                raise conflict(RESOURCES[plural], name)
            return self.replace(plural, namespace, name, patched, subresource)

    def mutate(self, plural: str, namespace: str, name: str, change: Callable[[Obj], None],
               bump_generation: bool = True) -> Obj:
        """Change an object in place, unconditionally (for the fake's own controllers and test hooks).

        A changed spec bumps ``metadata.generation`` unless ``bump_generation`` is False (a pod's binding).
        """
        with self._lock:
            old = self.get(plural, namespace, name)
            new = copy.deepcopy(old)
            change(new)
            if new == old:
                return old
            if bump_generation and new.get("spec") != old.get("spec") and "generation" in new["metadata"]:
                new["metadata"]["generation"] += 1
            return self._commit(RESOURCES[plural], "MODIFIED", new, old)

    def delete(self, plural: str, namespace: str, name: str, options: Obj | None = None) -> Obj:
        """Delete; dependents (by ownerReferences) go too unless ``propagationPolicy`` is Orphan.

        A pod bound to a node (``spec.nodeName``: a kubelet runs it) is deleted gracefully, as on a
        real cluster: it gets ``deletionTimestamp`` and stays (Terminating) until its kubelet has
        stopped it and deletes it with ``gracePeriodSeconds: 0``. Anything else goes at once.
        """
        options = options or {}
        resource = RESOURCES[plural]
        with self._lock:
            obj = self.get(plural, namespace, name)
            pre = options.get("preconditions") or {}
            if (pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]) or \
                    (pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]):
                raise conflict(resource, name)
            grace = options.get("gracePeriodSeconds")
            if plural == "pods" and (obj.get("spec") or {}).get("nodeName") and grace != 0:
                if obj["metadata"].get("deletionTimestamp"):
                    return obj  # already terminating
                grace = int(grace if grace is not None else obj["spec"].get("terminationGracePeriodSeconds", 30))

                def terminating(pod: Obj) -> None:
                    pod["metadata"]["deletionTimestamp"] = now(grace)
                    pod["metadata"]["deletionGracePeriodSeconds"] = grace
                return self.mutate(plural, namespace, name, terminating)
            obj["metadata"].setdefault("deletionTimestamp", now())
            obj["metadata"].setdefault("deletionGracePeriodSeconds", 0)
            gone = self._commit(resource, "DELETED", obj)
            uid = obj["metadata"]["uid"]
            orphan = options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True
            for dependent_plural, objects in self._objects.items():
                for key, dependent in list(objects.items()):
                    refs = dependent["metadata"].get("ownerReferences") or []
                    if not any(ref.get("uid") == uid for ref in refs):
                        continue
                    if orphan:
                        self.mutate(dependent_plural, key[0], key[1], lambda o, uid=uid: _drop_owner(o, uid))
                    elif key in objects:
                        self.delete(dependent_plural, key[0], key[1])
            if plural == "namespaces":
                for other, objects in self._objects.items():
                    for key in [k for k in objects if k[0] == name and RESOURCES[other].namespaced]:
                        if key in objects:
                            self.delete(other, key[0], key[1])
            return gone

    # -- the scale subresource (autoscaling/v1 Scale) -------------------------------------------------------

    def get_scale(self, namespace: str, name: str) -> Obj:
        deployment = self.get("deployments", namespace, name)
        meta = deployment["metadata"]
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion",
                                                    "creationTimestamp") if key in meta},
            "spec": {"replicas": deployment["spec"].get("replicas", 1)},
            "status": {"replicas": (deployment.get("status") or {}).get("replicas", 0),
                       "selector": to_string(from_label_selector(deployment["spec"].get("selector")))},
        }

    def replace_scale(self, namespace: str, name: str, body: Obj) -> Obj:
        with self._lock:
            scale = self.get_scale(namespace, name)
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != scale["metadata"]["resourceVersion"]:
                raise conflict(RESOURCES["deployments"], name)
            replicas = (body.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise invalid(RESOURCES["deployments"], name,
                              [("spec.replicas", f"Invalid value: {replicas!r}: must be greater than or equal to 0")])
            self.mutate("deployments", namespace, name, lambda d: d["spec"].__setitem__("replicas", replicas))
            return self.get_scale(namespace, name)

    def patch_scale(self, namespace: str, name: str, content_type: str, patch: Any) -> Obj:
        with self._lock:
            scale = self.get_scale(namespace, name)
            try:
                patched = patches.apply(content_type, scale, patch)
            except patches.PatchError as exc:
                raise ApiError(400, str(exc)) from None
            if patched.get("metadata", {}).get("resourceVersion") != scale["metadata"]["resourceVersion"]:
                raise conflict(RESOURCES["deployments"], name)
            return self.replace_scale(namespace, name, patched)

    # -- watching and history -------------------------------------------------------------------------------

    def watch(self, plural: str, since: int | None, deliver: Callable[[Event], None]) -> Callable[[], None]:
        """Deliver the events after ``since`` (``None``: an ADDED for every object), then every new one.

        ``deliver`` runs under the store's lock, in order; it must only hand the event over. Raises
        410 Gone when ``since`` is older than the history kept. Returns the function that stops it.
        """
        resource = RESOURCES[plural]

        def mine(event: Event) -> None:
            if event.resource.plural == plural:
                deliver(event)

        with self._lock:
            if since is None:
                for obj in sorted(self._objects[plural].values(), key=_key):
                    deliver(Event(int(obj["metadata"]["resourceVersion"]), "ADDED", resource, copy.deepcopy(obj)))
            else:
                if since < self._compacted:
                    raise ApiError(410, f"too old resource version: {since} ({self._compacted})", "Expired")
                for event in self._history:
                    if event.rv > since:
                        mine(event)
            self._watchers.append(mine)

        def stop() -> None:
            with self._lock:
                if mine in self._watchers:
                    self._watchers.remove(mine)

        return stop

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Every future event of every kind (the fake's controllers use this to wake up)."""
        with self._lock:
            self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def compact(self) -> None:
        """Forget the history: a watch from any resourceVersion before now gets 410 Gone."""
        with self._lock:
            self._history.clear()
            self._compacted = self._rv


def _drop_owner(obj: Obj, uid: str) -> None:
    refs = [ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("uid") != uid]
    if refs:
        obj["metadata"]["ownerReferences"] = refs
    else:
        obj["metadata"].pop("ownerReferences", None)


__all__ = ["ApiError", "Event", "Store", "now"]
