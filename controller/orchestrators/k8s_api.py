"""The Kubernetes API as the controller uses it: plain-dict calls with retries, and resumable watches.

The official ``kubernetes`` client is synchronous, so every call runs on a small thread pool of its
own (never the event loop's default one, which gRPC and code extraction share) and every watch
stream runs on a thread of its own, feeding events to the loop. Objects travel as plain JSON dicts
(``_preload_content=False``): the controller reads a few fields and writes whole manifests, and
dicts keep it independent of the client's model classes.

Errors, in one place (kopf's pattern, STYLE.md): 404 is :class:`NotFound`, 409 :class:`Conflict`
(a stale resourceVersion or an existing name: the caller re-reads and decides), 410 :class:`Gone`
(a watch's resourceVersion is too old: relist); 429, 5xx and connection failures are retried here
with exponential backoff and jitter (honouring Retry-After), and become :class:`KubeUnavailable`
once the retries are spent. Nothing of the client library leaks past this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import random
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from kambda.backoff import KUBE_API

log = logging.getLogger(__name__)

Obj = dict[str, Any]
#: Delays between retries of a throttled or failing call (seconds, before jitter), kopf-style as data.
MERGE_PATCH = "application/merge-patch+json"
#: How long one watch request stays open before it is renewed from the last resourceVersion.
WATCH_TIMEOUT_S = 60


class KubeError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Gone(KubeError):
    pass


class KubeUnavailable(KubeError):
    """Throttled or failing for longer than the backoff sequence lasts."""


def _error(exc: Exception) -> KubeError:
    """Map a client exception to ours."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        retry_after = None
        if exc.headers and exc.headers.get("Retry-After"):
            try:
                retry_after = float(exc.headers["Retry-After"])
            except ValueError:
                retry_after = None
        message = f"{status} {exc.reason}: {(exc.body or b'')[:300]!r}"
        kind = {404: NotFound, 409: Conflict, 410: Gone}.get(status, KubeError)
        return kind(message, status, retry_after)
    return KubeError(f"no answer from the Kubernetes API: {exc}", 0)


def retryable(err: KubeError) -> bool:
    return err.status == 0 or err.status == 429 or err.status >= 500


def load_client(kubeconfig: str = "") -> client.ApiClient:
    """KAMBDA_KUBECONFIG if set; else the in-cluster service account; else ~/.kube/config."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    except ConfigException:
        return config.new_client_from_config(config_file=os.path.expanduser("~/.kube/config"))


def _decode(response: Any) -> Obj:
    data = response.data if hasattr(response, "data") else response
    return json.loads(data) if data else {}


class KubeApi:
    """Async, dict-based access to the few resources the controller uses.

    ``sleep`` and ``rng`` are injectable so that tests can see the backoff without waiting for it.
    """

    def __init__(self, api_client: client.ApiClient, max_attempts: int = len(KUBE_API.steps) + 1,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, rng: random.Random | None = None) -> None:
        self.api_client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="kube")
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._rng = rng or random.Random()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        """Run one API call; retry 429, 5xx and connection failures with backoff; map errors."""
        loop = asyncio.get_running_loop()
        kwargs.setdefault("_preload_content", False)
        kwargs.setdefault("_request_timeout", 10)
        attempt = 0
        while True:
            try:
                response = await loop.run_in_executor(self._pool, lambda: method(*args, **kwargs))
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                err = _error(exc)
            except ValueError as exc:  # the client checks bodies against its models (pydantic's errors)
                raise KubeError(f"invalid request: {exc}", 422) from None
            else:
                try:
                    return _decode(response)
                except ValueError as exc:
                    raise KubeError(f"undecodable answer from the Kubernetes API: {exc}", 0) from None
            if not retryable(err):
                raise err
            attempt += 1
            if attempt >= self._max_attempts:
                raise KubeUnavailable(f"giving up after {attempt} attempts: {err}", err.status) from None
            delay = KUBE_API.delay(attempt - 1, self._rng, at_least=err.retry_after or 0.0)
            log.info("Kubernetes API %s; retrying in %.2f s", err, delay)
            await self._sleep(delay)


@dataclass
class Informer:
    """A list-then-watch cache of one kind of object, resumed from the last resourceVersion.

    ``list_method`` is a namespaced list call (``list_namespaced_deployment``). A watch that ends
    (its timeout, a dropped connection) resumes from the last resourceVersion it saw; a 410 Gone
    relists and reports what changed meanwhile, deletions included. ``on_event(kind, obj)`` runs
    on the event loop for every ADDED, MODIFIED and DELETED object, in order.
    """

    api: KubeApi
    list_method: Callable[..., Any]
    namespace: str
    label_selector: str
    on_event: Callable[[str, Obj], Awaitable[None]]
    cache: dict[str, Obj] = field(default_factory=dict)
    resource_version: str = ""
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _task: asyncio.Task[None] | None = None
    _response: Any = None

    async def start(self) -> None:
        await self._relist()
        self.synced.set()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopped.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # unblocks the reading thread at once
            except Exception:  # noqa: BLE001 - best effort on an already closed connection
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    async def _relist(self) -> None:
        listing = await self.api.call(self.list_method, self.namespace, label_selector=self.label_selector)
        fresh = {item["metadata"]["name"]: item for item in listing.get("items", [])}
        self.resource_version = listing.get("metadata", {}).get("resourceVersion", "")
        gone = [obj for name, obj in self.cache.items() if name not in fresh]
        for obj in gone:
            self.cache.pop(obj["metadata"]["name"], None)
            await self._emit("DELETED", obj)
        for name, obj in fresh.items():
            old = self.cache.get(name)
            self.cache[name] = obj
            if old is None or old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                await self._emit("ADDED" if old is None else "MODIFIED", obj)

    async def _emit(self, kind: str, obj: Obj) -> None:
        try:
            await self.on_event(kind, obj)
        except Exception:
            log.exception("handling %s of %s failed", kind, obj.get("metadata", {}).get("name"))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopped.is_set():
            queue: asyncio.Queue[tuple[str, Obj] | BaseException | None] = asyncio.Queue()
            thread = threading.Thread(target=self._stream, args=(loop, queue, self.resource_version),
                                      daemon=True, name=f"watch-{self.label_selector}")
            thread.start()
            error: BaseException | None = None
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    error = item
                    break
                failures = 0
                kind, obj = item
                await self._apply(kind, obj)
            if self._stopped.is_set():
                return
            if isinstance(error, Gone):
                log.info("watch of %s expired (410); relisting", self.label_selector)
                await self._relist_until_done()
            elif error is not None:
                failures += 1
                delay = KUBE_API.delay(failures - 1, self.api._rng, at_least=getattr(error, "retry_after", None) or 0.0)
                log.warning("watch of %s failed (%s); resuming in %.2f s", self.label_selector, error, delay)
                await self.api._sleep(delay)

    async def _relist_until_done(self) -> None:
        while not self._stopped.is_set():
            try:
                await self._relist()
                return
            except KubeError as exc:
                log.warning("relist of %s failed: %s", self.label_selector, exc)
                await self.api._sleep(1.0)

    async def _apply(self, kind: str, obj: Obj) -> None:
        metadata = obj.get("metadata", {})
        if metadata.get("resourceVersion"):
            self.resource_version = metadata["resourceVersion"]
        if kind == "BOOKMARK":
            return
        name = metadata.get("name", "")
        if kind == "DELETED":
            self.cache.pop(name, None)
        else:
            self.cache[name] = obj
        await self._emit(kind, obj)

    def _stream(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any], resource_version: str) -> None:
        """Runs on a thread: one watch request, its events put on the loop's queue."""

        def put(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for this watch
                loop.call_soon_threadsafe(queue.put_nowait, item)

        try:
            for event in self._lines(resource_version):
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    code = int(status.get("code") or 500)
                    put(Gone(status.get("message", "gone"), 410) if code == 410
                        else KubeError(status.get("message", "watch error"), code))
                    return
                put((event["type"], event.get("object") or {}))
            put(None)
        except ApiException as exc:
            put(_error(exc))
        except Exception as exc:  # noqa: BLE001 - a dropped connection ends this watch; the loop resumes it
            put(None if self._stopped.is_set() else KubeError(f"watch stream ended: {exc}", 0))

    def _lines(self, resource_version: str) -> Iterator[Obj]:
        response = self.list_method(
            self.namespace, label_selector=self.label_selector, watch=True, allow_watch_bookmarks=True,
            resource_version=resource_version, timeout_seconds=WATCH_TIMEOUT_S,
            _preload_content=False, _request_timeout=(10, WATCH_TIMEOUT_S + 30))
        self._response = response
        try:
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=False):
                if self._stopped.is_set():
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(buffer)
        finally:
            self._response = None
            response.release_conn()
