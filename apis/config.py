"""HTTP triggers' configuration: routes and function URL configs in the ``kambda_http`` KV bucket.

Every gateway replica keeps a copy, current through a KV watch (as RegistryCache does for
functions), and serves traffic from it. Writes go straight to the bucket with revision checks:
creating a key that exists is a conflict, and an update applies only on top of the revision it
read (a concurrent writer makes it read and try again), so two replicas never overwrite each
other. The writer applies its own write at once; other replicas see it when the watch delivers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from apis.routes import Router, parse_route_key
from kambda import bus
from kambda.aws import errors
from kambda.backoff import CAS_RETRY
from kambda.bus.kvwatch import KvWatch

log = logging.getLogger(__name__)

#: How often an update re-reads and retries when another writer got in between (pausing as
#: kambda.backoff.CAS_RETRY says before each new try).
UPDATE_ATTEMPTS = 20


def _digest(text: str, length: int) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode().lower()[:length]


#: What _digest can produce: anything else is no id of ours (and may not even be a valid KV key).
_ID_RE = re.compile(r"[a-z2-7]{1,32}")


def is_id(text: str) -> bool:
    """Whether ``text`` can be a route id or url id (checked before it is used as a KV key)."""
    return _ID_RE.fullmatch(text) is not None


def route_id(route_key: str) -> str:
    """Stable per route key (7 characters, like API Gateway's route ids)."""
    return _digest(route_key, 7)


def url_id(account: str, region: str, function: str, qualifier: str) -> str:
    """Stable per (function, qualifier): 32 lower-case letters and digits, like Lambda's url ids."""
    return _digest(f"{account}/{region}/{function}/{qualifier}", 32)


@dataclass(frozen=True)
class Route:
    route_id: str
    route_key: str
    function: str
    qualifier: str = ""
    payload_format: str = "2.0"
    created: str = ""


@dataclass(frozen=True)
class UrlConfig:
    url_id: str
    function: str
    qualifier: str = ""
    auth_type: str = "NONE"
    cors: dict[str, Any] = field(default_factory=dict)
    invoke_mode: str = "BUFFERED"
    created: str = ""
    modified: str = ""


class HttpConfig:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None
        self.routes: dict[str, Route] = {}
        self.urls: dict[str, UrlConfig] = {}
        self._router: Router[Route] | None = None
        self._watch = KvWatch(js, bus.HTTP_BUCKET, self._apply, "HTTP trigger")

    async def start(self) -> None:
        await self._watch.start()
        self._kv = self._watch.kv

    async def stop(self) -> None:
        await self._watch.stop()

    def _apply(self, key: str, value: bytes | None) -> None:
        kind, _, ident = key.partition(".")
        try:
            if kind == "route":
                if value is None:
                    self.routes.pop(ident, None)
                else:
                    self.routes[ident] = Route(**orjson.loads(value))
                self._router = None
            elif kind == "url":
                if value is None:
                    self.urls.pop(ident, None)
                else:
                    self.urls[ident] = UrlConfig(**orjson.loads(value))
        except (TypeError, orjson.JSONDecodeError) as exc:
            log.warning("ignoring unreadable HTTP trigger entry %s: %s", key, exc)

    def router(self) -> Router[Route]:
        if self._router is None:
            self._router = Router((parse_route_key(r.route_key), r) for r in self.routes.values())
        return self._router

    # -- revision-checked writes ---------------------------------------------------------------

    async def create(self, key: str, item: Route | UrlConfig, conflict: errors.KambdaError) -> None:
        assert self._kv is not None
        value = orjson.dumps(asdict(item))
        try:
            await self._kv.create(key, value)
        except KeyWrongLastSequenceError:
            raise conflict from None
        self._apply(key, value)

    async def modify(self, key: str, change: Callable[[Any], Route | UrlConfig],
                     missing: errors.KambdaError) -> Route | UrlConfig:
        """Read, change and write back; retried when another writer updated the key in between."""
        assert self._kv is not None
        kind = Route if key.startswith("route.") else UrlConfig
        for attempt in range(UPDATE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(CAS_RETRY.delay(attempt - 1))
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                raise missing from None
            item = change(kind(**orjson.loads(entry.value or b"{}")))
            value = orjson.dumps(asdict(item))
            try:
                await self._kv.update(key, value, last=entry.revision)
            except KeyWrongLastSequenceError:
                continue
            self._apply(key, value)
            return item
        raise errors.Conflict(f"{key} is being changed by someone else; try again")

    async def delete(self, key: str, missing: errors.KambdaError) -> None:
        assert self._kv is not None
        try:
            entry = await self._kv.get(key)
            await self._kv.delete(key, last=entry.revision)
        except KeyNotFoundError:
            raise missing from None
        except KeyWrongLastSequenceError:
            raise errors.Conflict(f"{key} was changed while it was being deleted; try again") from None
        self._apply(key, None)

    async def upsert_route(self, route: Route) -> Route:
        """Create the route, or point the existing one with this key at the given target."""
        key = f"route.{route.route_id}"
        try:
            await self.create(key, route, errors.Conflict("exists"))
            return route
        except errors.Conflict:
            pass
        result = await self.modify(key, lambda old: replace(route, created=old.created or route.created),
                                   errors.NotFound("route vanished"))
        assert isinstance(result, Route)
        return result
