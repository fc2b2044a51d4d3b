"""An in-process fake Kubernetes API server: real REST paths and JSON, on 127.0.0.1, for the official client.

It serves core/v1 (pods, services, configmaps, secrets, serviceaccounts, namespaces), apps/v1
deployments (with the ``scale`` and ``status`` subresources) and coordination.k8s.io/v1 leases:
list (label and field selectors), watch, get, create, replace, patch (merge, strategic-merge as
merge, JSON patch), delete (with cascading to dependents, preconditions) and deletecollection.
Errors are ``Status`` objects with the real reasons (NotFound, AlreadyExists, Conflict, Invalid,
Expired). A mini ReplicaSet controller keeps every Deployment's pods (see replicasets.py).

The server runs its own event loop on a thread of its own, so synchronous tests and the
synchronous ``kubernetes`` client can use it; the test hooks (:meth:`FakeKube.drop_watches`,
:meth:`FakeKube.inject_errors`, :meth:`FakeKube.compact`) may be called from any thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
from aiohttp import web

from .objects import RESOURCES, ApiError, Obj, Resource, lookup
from .replicasets import ReplicaSetController
from .selectors import Requirement, SelectorError, fields_match, matches, parse_fields, parse_labels
from .store import Event, Store

log = logging.getLogger(__name__)
#: How long a watch stays open when the client gives no timeoutSeconds (the real server: 30 to 60 min).
DEFAULT_WATCH_TIMEOUT_S = 1800


@dataclass
class Fault:
    pattern: re.Pattern[str]
    status: int
    count: int
    method: str | None
    retry_after: float | None


@dataclass
class Target:
    """What a request path names."""

    resource: Resource
    namespace: str | None  # None: every namespace (or a cluster-scoped kind)
    name: str = ""
    subresource: str = ""


def parse_path(path: str) -> Target | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and lookup(group, version, rest[2]):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    resource = lookup(group, version, rest[0])
    if resource is None or (namespace is not None and not resource.namespaced):
        return None
    if not resource.namespaced:
        namespace = ""
    target = Target(resource, namespace, *rest[1:])
    if target.name and target.namespace is None:
        return None  # a namespaced object needs its namespace
    allowed = {"", "status"} if resource.has_status else {""}
    if resource.plural == "deployments":
        allowed.add("scale")
    if target.subresource not in allowed:
        return None
    return target


def handover(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> Callable[[Any], None]:
    """A store watcher that hands events to a queue of ``loop`` (and ignores a loop already closed)."""
    def deliver(event: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        except RuntimeError:
            pass
    return deliver


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json", headers=headers)


def _error(exc: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    return _json(exc.status(), exc.code, headers)


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


class FakeKube:
    """The fake API server. ``with FakeKube() as kube:`` starts it; ``kube.url`` is its address."""

    def __init__(self, history: int = 1000, bookmark_interval: float = 1.0) -> None:
        self.store = Store(history)
        self.bookmark_interval = bookmark_interval
        self.url = ""
        self._replicasets = ReplicaSetController(self.store)
        self._faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self._streams: dict[int, tuple[web.Request, asyncio.Queue[Any]]] = {}
        self._clients: list[kubernetes.client.ApiClient] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.requests: list[tuple[str, str]] = []  # (method, path?query) of every request, for tests
        self.errors: list[str] = []  # requests that failed by a bug of the fake itself (answered 500)

    # -- life cycle -----------------------------------------------------------------------------------------

    def start(self) -> FakeKube:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                app = web.Application(client_max_size=16 * 1024 * 1024)
                app.router.add_route("*", "/{tail:.*}", self._handle)
                self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
                loop.run_until_complete(self._runner.setup())
                site = web.TCPSite(self._runner, "127.0.0.1", 0)
                loop.run_until_complete(site.start())
                port = self._runner.addresses[0][1]
                self.url = f"http://127.0.0.1:{port}"
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fakekube-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        self._replicasets.start()
        return self

    def stop(self) -> None:
        self._replicasets.stop()
        for api_client in self._clients:
            api_client.close()
        if self._loop is not None and self._thread is not None:
            self.drop_watches()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for clients ----------------------------------------------------------------------------------------

    def configuration(self) -> kubernetes.client.Configuration:
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return configuration

    def api_client(self) -> kubernetes.client.ApiClient:
        """An official client pointed at this server (closed when the server stops)."""
        api_client = kubernetes.client.ApiClient(self.configuration())
        self._clients.append(api_client)
        return api_client

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        """A kubeconfig file for this server, for a process of its own (JSON is YAML too)."""
        path = Path(path)
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fakekube",
            "clusters": [{"name": "fakekube", "cluster": {"server": self.url}}],
            "users": [{"name": "fakekube", "user": {"token": "fakekube"}}],
            "contexts": [{"name": "fakekube",
                          "context": {"cluster": "fakekube", "user": "fakekube", "namespace": namespace}}],
        }))
        return path

    def pods(self, namespace: str | None = None, selector: str = "") -> list[Obj]:
        """The pods now (all namespaces when ``namespace`` is None), optionally by label selector."""
        return self.store.list("pods", namespace, selector)[0]

    # -- test hooks -----------------------------------------------------------------------------------------

    def inject_errors(self, path_regex: str, status: int, count: int = 1, method: str | None = None,
                      retry_after: float | None = None) -> None:
        """Answer the next ``count`` requests whose path matches (re.search) with ``status``.

        429 carries ``Retry-After`` (``retry_after``, default 1 s); ``method`` limits it to one verb.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._faults_lock:
            self._faults.append(Fault(re.compile(path_regex), status, count, method and method.upper(), retry_after))

    def drop_watches(self) -> int:
        """Cut every open watch stream abruptly (no final chunk). Returns how many were open."""
        if self._loop is None:
            return 0
        future = asyncio.run_coroutine_threadsafe(self._drop_watches(), self._loop)
        return future.result(10)

    async def _drop_watches(self) -> int:
        streams = list(self._streams.values())
        for request, queue in streams:
            queue.put_nowait(None)
            if request.transport is not None:
                request.transport.abort()
        return len(streams)

    def open_watches(self) -> int:
        return len(self._streams)

    def compact(self) -> None:
        """Forget the event history: a watch from an earlier resourceVersion is answered 410 Gone."""
        self.store.compact()

    # -- request handling -----------------------------------------------------------------------------------

    def _fault(self, request: web.Request) -> web.Response | None:
        with self._faults_lock:
            for fault in self._faults:
                if fault.count > 0 and fault.pattern.search(request.path) and fault.method in (None, request.method):
                    fault.count -= 1
                    headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
                    messages = {429: "Too many requests, please try again later.",
                                500: "Internal error occurred: injected by the test",
                                409: "Operation cannot be fulfilled: injected conflict"}
                    return _error(ApiError(fault.status, messages.get(fault.status, "injected error")), headers)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        fault = self._fault(request)
        if fault is not None:
            return fault
        if request.path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if request.path == "/version":
            return _json({"major": "1", "minor": "31", "gitVersion": "v1.31.0-fakekube", "platform": "linux/amd64"})
        target = parse_path(request.path)
        if target is None:
            return _error(ApiError(404, "the server could not find the requested resource", "NotFound"))
        try:
            return await self._dispatch(request, target)
        except ApiError as exc:
            return _error(exc)
        except Exception as exc:  # a bug of the fake: kept for the test to see, answered as a real 500
            log.exception("fake API server: %s %s failed", request.method, request.path_qs)
            self.errors.append(f"{request.method} {request.path_qs}: {exc!r}")
            return _error(ApiError(500, f"fake API server bug: {exc!r}"))

    async def _body(self, request: web.Request) -> Any:
        text = await request.text()
        if not text:
            return {}
        try:
            return json.loads(text)
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON") from None

    async def _dispatch(self, request: web.Request, target: Target) -> web.StreamResponse:
        store, method, query = self.store, request.method, request.query
        plural, namespace, name, sub = target.resource.plural, target.namespace, target.name, target.subresource
        if not name:
            try:
                labels = parse_labels(query.get("labelSelector", ""))
                fields = parse_fields(query.get("fieldSelector", ""))
            except SelectorError as exc:
                raise ApiError(400, str(exc)) from None
            if method == "GET" and _flag(query.get("watch")):
                return await self._watch(request, target, labels, fields)
            if method == "GET":
                items, rv = store.list(plural, namespace, labels, fields)
                for item in items:  # list items carry no kind and apiVersion, as in the real answer
                    item.pop("kind", None)
                    item.pop("apiVersion", None)
                return _json({"kind": f"{target.resource.kind}List", "apiVersion": target.resource.api_version,
                              "metadata": {"resourceVersion": str(rv)}, "items": items})
            if method == "POST" and namespace is not None:
                body = await self._body(request)
                sent = (body.get("metadata") or {}).get("namespace")
                if target.resource.namespaced and sent and sent != namespace:
                    raise ApiError(400, "the namespace of the provided object does not match the namespace "
                                        "sent on the request")
                return _json(store.create(plural, namespace, body), 201)
            if method == "DELETE" and namespace is not None:
                options = await self._body(request)
                for item in store.list(plural, namespace, labels, fields)[0]:
                    try:
                        store.delete(plural, namespace, item["metadata"]["name"], options)
                    except ApiError as exc:
                        if exc.code != 404:
                            raise
                return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
            raise ApiError(405, f"method {method} is not allowed here")
        assert namespace is not None
        if sub == "scale":
            if method == "GET":
                return _json(store.get_scale(namespace, name))
            if method == "PUT":
                return _json(store.replace_scale(namespace, name, await self._body(request)))
            if method == "PATCH":
                return _json(store.patch_scale(namespace, name, request.content_type, await self._body(request)))
        elif method == "GET":
            return _json(store.get(plural, namespace, name))
        elif method == "PUT":
            return _json(store.replace(plural, namespace, name, await self._body(request), sub))
        elif method == "PATCH":
            content_type = request.headers.get("Content-Type", "")
            if "apply-patch" in content_type:
                raise ApiError(415, "server-side apply is not supported by the fake API server")
            return _json(store.patch(plural, namespace, name, content_type, await self._body(request), sub))
        elif method == "DELETE" and not sub:
            options = await self._body(request)
            if "propagationPolicy" in query:
                options.setdefault("propagationPolicy", query["propagationPolicy"])
            if "gracePeriodSeconds" in query:
                try:
                    options.setdefault("gracePeriodSeconds", int(query["gracePeriodSeconds"]))
                except ValueError:
                    raise ApiError(400, f"invalid gracePeriodSeconds {query['gracePeriodSeconds']!r}") from None
            deleted = store.delete(plural, namespace, name, options)
            if plural == "pods":
                return _json(deleted)  # a pod's deletion answers the pod (Terminating, or as it was last)
            return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                          "details": {"name": name, "group": target.resource.group, "kind": plural,
                                      "uid": deleted["metadata"]["uid"]}})
        raise ApiError(405, f"method {method} is not allowed here")

    # -- watch ----------------------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, target: Target, labels: list[Requirement],
                     fields: list[Requirement]) -> web.StreamResponse:
        query = request.query
        loop = asyncio.get_running_loop()
        sent_rv = query.get("resourceVersion", "")
        try:
            since = int(sent_rv) if sent_rv not in ("", "0") else None
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT_S)
        except ValueError:
            raise ApiError(400, f"invalid resourceVersion or timeoutSeconds: {query}") from None
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        queue: asyncio.Queue[Any] = asyncio.Queue()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            stop = self.store.watch(target.resource.plural, since, handover(loop, queue))
        except ApiError as exc:  # a too old resourceVersion: 200, one ERROR event, end of stream
            await response.prepare(request)
            await response.write(json.dumps({"type": "ERROR", "object": exc.status()}).encode() + b"\n")
            await response.write_eof()
            return response
        self._streams[id(request)] = (request, queue)
        try:
            await response.prepare(request)
            deadline = loop.time() + timeout
            while (remaining := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(queue.get(), min(remaining, self.bookmark_interval)
                                                  if bookmarks else remaining)
                except TimeoutError:
                    if bookmarks:
                        self._request_bookmark(loop, queue)
                    continue
                if item is None:  # dropped by the test
                    return response
                if isinstance(item, tuple):  # ("BOOKMARK", rv): after every event up to rv
                    line: Obj | None = {"type": "BOOKMARK", "object": {
                        "kind": target.resource.kind, "apiVersion": target.resource.api_version,
                        "metadata": {"resourceVersion": str(item[1])}}}
                else:
                    line = self._event_for(item, target, labels, fields)
                if line is not None:
                    await response.write(json.dumps(line).encode() + b"\n")
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            stop()
            self._streams.pop(id(request), None)
        return response

    def _request_bookmark(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        # Queued under the store's lock, so it lands after every event it vouches for.
        with self.store.lock:
            loop.call_soon_threadsafe(queue.put_nowait, ("BOOKMARK", self.store.resource_version))

    @staticmethod
    def _event_for(event: Event, target: Target, labels: list[Requirement],
                   fields: list[Requirement]) -> Obj | None:
        """The event as this watch sees it: an object that leaves its selector is DELETED for it."""
        def visible(obj: Obj | None) -> bool:
            if obj is None:
                return False
            if target.namespace is not None and target.resource.namespaced \
                    and obj["metadata"].get("namespace") != target.namespace:
                return False
            return matches(labels, obj["metadata"].get("labels")) and fields_match(fields, obj)

        now_visible = visible(event.obj)
        if event.type == "MODIFIED":
            was_visible = visible(event.old)
            kind = {(True, True): "MODIFIED", (False, True): "ADDED", (True, False): "DELETED"}.get(
                (was_visible, now_visible))
        else:
            kind = event.type if now_visible else None
        return {"type": kind, "object": event.obj} if kind else None


__all__ = ["DEFAULT_WATCH_TIMEOUT_S", "FakeKube", "RESOURCES", "parse_path"]
