"""The gateway's aiohttp application: the Lambda API, kambda's own endpoints and the error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apis.api import HttpRoutesApi, load_routes_file
from apis.config import HttpConfig, UrlConfig
from apis.triggers import Triggers
from events.api import EventsApi
from events.store import Store
from functions import permissions
from functions.api import LambdaApi
from functions.mappings_api import MappingsApi
from functions.metrics import Metrics
from functions.permissions import PermissionsApi
from functions.registry_cache import RegistryCache
from functions.urls import FunctionUrls
from functions.versions_api import VersionsApi
from gateway.settings import GatewaySettings
from iam.api import IamApi
from iam.roles import RolePermissions, RoleStore
from kambda import bus, rpc, scrape
from kambda.aws import auth, errors, roles, sts
from kambda.aws.front import Front
from kambda.bus import chunks
from kambda.bus.dispatch import Dispatcher
from kambda.names import Arns, parse_function
from kambda.sql import Database
from kambda.v1 import controller_pb2 as pb
from kambda.v1.controller_pb2_grpc import ControllerStub
from kambda.v1.invocation_pb2 import LogBatch
from kambda.v1.invoker_pb2 import ScaleEvent
from objects import notifications
from objects.api import S3Api
from objects.notifications import Notifications, NotificationsApi
from objects.store import Store as ObjectStore
from objects.web import WebApi
from tables.api import TablesApi, open_database
from tables.streams_api import StreamsApi
from tasks import records as ecs_records
from tasks.api import EcsApi
from tasks.ecr import EcrApi
from tasks.registry import ImageStore, Registry
from workflows import lambdas
from workflows.api import StepFunctionsApi
from workflows.records import Records
from workflows.sdk import AwsSdk

log = logging.getLogger(__name__)

#: CreateFunction carries a 50 MB zip as base64 inside JSON.
MAX_REQUEST = 72 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def authenticator_of(settings: GatewaySettings) -> auth.Authenticator:
    """Raises CredentialsError when the configured file cannot be used."""
    store = auth.CredentialStore(Path(settings.credentials_file)) if settings.credentials_file else None
    return auth.Authenticator(store, Arns(settings.region, settings.account), settings.insecure,
                              settings.public_metrics, role_key=roles.read_key(settings.role_key_file),
                              sandbox_uids=settings.sandbox_uids)


async def _authorize(request: web.Request, action: str, resources: Iterable[str]) -> None:
    for resource in resources:
        auth.authorize(request, action, resource)


def error_response(err: errors.KambdaError, json11: bool = False) -> web.Response:
    """The one place a KambdaError becomes the AWS wire shape (``json11``: the JSON 1.1 protocol's body,
    ``{"__type", "message"}``, for APIs called with X-Amz-Target such as EventBridge's)."""
    body = {"__type": err.code, "message": err.message} if json11 else err.body()
    return web.Response(
        status=err.status, body=orjson.dumps(body), content_type="application/json",
        headers={"x-amzn-ErrorType": err.code, "x-amzn-RequestId": str(uuid.uuid4())},
    )


@web.middleware
async def aws_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.KambdaError as err:
        return error_response(err, json11="X-Amz-Target" in request.headers)
    except web.HTTPRequestEntityTooLarge:
        return error_response(errors.RequestEntityTooLarge(
            f"Request must be smaller than {MAX_REQUEST} bytes"))
    except web.HTTPNotFound:
        return error_response(errors.UnknownOperation(f"No operation at {request.method} {request.path}"))
    except web.HTTPMethodNotAllowed:
        return error_response(errors.UnknownOperation(f"No operation at {request.method} {request.path}"))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected failure on %s %s", request.method, request.path)
        return error_response(errors.ServiceError("Internal error in the gateway"))


class Gateway:
    def __init__(self, settings: GatewaySettings, nc: NATS, authenticator: auth.Authenticator | None = None) -> None:
        self.settings = settings
        self._nc = nc
        self._js = nc.jetstream()
        self._arns = Arns(settings.region, settings.account)
        self._channel = rpc.channel(settings.controller, rpc.read_token(settings.controller_token_file))
        self._controller = ControllerStub(self._channel)
        self.metrics = Metrics()
        self._cache = RegistryCache(self._js, self._arns)
        self._http = HttpConfig(self._js)
        self._dispatcher = Dispatcher(nc, self._activate, self._on_scale)
        watch = bus.watch_of(nc)
        if watch is not None:
            watch.listeners.append(lambda reason: self.metrics.nats_disconnects.labels("gateway").inc())
        #: The disconnects each invoker last reported (its stats carry its running total).
        self._invoker_disconnects: dict[str, int] = {}
        self._environments: dict[str, dict[tuple[str, str], int]] = {}
        self._gauged: set[str] = set()  # functions the environments gauge has a series for
        self._scale: dict[str, dict[str, ScaleEvent]] = {}  # the latest scale event of each version
        self._stats_sub: Any = None
        self.authenticator = authenticator or authenticator_of(settings)
        self.authenticator.resource_policy = permissions.resource_policy(self._cache, self._arns)
        self._roles = RoleStore(self._js)
        self._role_permissions = RolePermissions(self._js, settings.account)
        self.authenticator.role_permissions = self._role_permissions.permissions_of

    async def _call_lambda(self, function: str, payload: bytes, timeout: int | None) -> lambdas.LambdaResult:
        """A Lambda task of an EXPRESS execution that StartSyncExecution runs here."""
        async def resolve(name: str, qualifier: str | None) -> tuple[str, int]:
            resolved = await self._cache.resolve(name, qualifier)
            return resolved.version, int(resolved.config.timeout or 3)

        return await lambdas.call_in_memory(self._dispatcher, resolve, function, payload, timeout)

    async def _activate(self, function: str, version: str, in_flight: int) -> int:
        answer = await rpc.call(self._controller.Activate,
                                pb.ActivateRequest(function=function, version=version, in_flight=in_flight),
                                timeout=10)
        return int(answer.desired)

    def app(self) -> web.Application:
        api = LambdaApi(self._controller, self._cache, self._dispatcher, self.metrics, self._arns,
                        self.settings.queue_timeout, self.settings.throttle_wait)
        urls = FunctionUrls(self._http, self._cache, self.settings)
        api.on_delete.append(urls.forget_function)
        self.triggers = Triggers(self._http, api.call, self.settings)
        self.triggers.authorize_iam = self._url_iam
        middlewares = [aws_errors, auth.middleware]
        if self.settings.http_host or self.settings.url_domain:
            middlewares.insert(0, self.triggers.by_host)
        app = web.Application(client_max_size=MAX_REQUEST, middlewares=middlewares)
        app[auth.AUTHENTICATOR] = self.authenticator
        app.add_routes(api.routes())  # Invoke's fast path
        app.add_routes(HttpRoutesApi(self._http, self._arns).routes())
        app.add_routes(self.triggers.routes())
        app.add_routes([
            web.get("/_kambda/health", self.health),
            web.get("/_kambda/v1/functions/{name}", self.function_status),
            web.get("/_kambda/v1/functions/{name}/logs", self.function_logs),
            web.get("/_kambda/v1/code/{sha}", self.code),
            web.get("/metrics", self.prometheus),
        ])
        self.images = ImageStore(self._js)
        app.add_routes(Registry(self.images, self._arns).routes())  # the OCI distribution API under /v2/
        self.front = Front(account=self.settings.account, region=self.settings.region,
                           domain=self.settings.url_domain or "localhost", authorize=_authorize,
                           max_body=MAX_REQUEST,
                           # no credentials, no signatures checked: nor a signed stream's chunks
                           secret_of=self.authenticator.secret_of if self.authenticator.store is not None else None,
                           authenticate=auth.authenticate, fallback="s3")
        sts.register(self.front, self.settings.account)
        api.register(self.front)
        urls.register(self.front)
        MappingsApi(self._controller, self._arns).register(self.front)
        VersionsApi(self._controller, self._cache, self._arns).register(self.front)
        PermissionsApi(self._controller, self._cache, self._arns).register(self.front)
        EventsApi(Store(self._js), self._dispatcher, self._arns).register(self.front)
        IamApi(self._roles, self.settings.account).register(self.front)
        self.tables = TablesApi(open_database(self.settings.tables_dsn, self.settings.state_dir),
                                self.settings.region, self.settings.account, nudge=self._nudge_outbox,
                                collection_limit=self.settings.tables_collection_limit)
        self.tables.register(self.front)
        StreamsApi(self.tables).register(self.front)
        self._sdk = AwsSdk(self.settings.endpoint_url, self.settings.region,
                           roles.read_key(self.settings.role_key_file) or None)
        StepFunctionsApi(self._nc, Records(self._js), self._arns, self._call_lambda, self._sdk).register(self.front)
        self.objects = ObjectStore(self._js, self._objects_database(), region=self.settings.region)
        S3Api(self.objects).register(self.front)
        WebApi(self.objects, self.settings.account).install(self.front, app)
        # S3 bucket notifications: the outbox in the store's transactions, published before a write is answered.
        self.notifications = Notifications(self.objects.db, self._nc, self._js, self._dispatcher.store,
                                           notifications.resolver(self._cache.resolve), self._arns)
        self.notifications.attach(self.objects)
        NotificationsApi(self.objects, notifications.function_checker(self._cache.resolve),
                         self.notifications).register(self.front)
        app.add_routes(notifications.external_routes(self.notifications, self.objects))
        EcsApi(self._nc, ecs_records.Arns(self.settings.region, self.settings.account)).register(self.front)
        EcrApi(self.images, self._arns, self.authenticator.secret_of).register(self.front)
        app.router.add_route("*", "/{tail:.*}", self.front_door)  # last: every route above matches first
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    def _objects_database(self) -> Database:
        """S3's metadata: SQLite under the state dir, or the tables' PostgreSQL DSN (its own tables there)."""
        return Database.open(self.settings.tables_dsn or None, Path(self.settings.state_dir) / "objects" / "objects.db")

    async def _nudge_outbox(self) -> None:
        with contextlib.suppress(Exception):
            await self._nc.publish(bus.DDB_OUTBOX_SUBJECT, b"")

    @auth.requires(auth.ITSELF)
    async def front_door(self, request: web.Request) -> web.StreamResponse:
        """Every AWS API kambda speaks that has no route of its own here: the front door authenticates
        (so that a refusal is in the service's own protocol) and authorizes each operation on the resources
        it names."""
        return await self.front.handle(request)

    async def _url_iam(self, request: web.Request, config: UrlConfig) -> bool:
        """A function URL with AuthType AWS_IAM: the caller must sign, and may InvokeFunctionUrl."""
        arn = self._arns.function(config.function, config.qualifier or None)
        return await auth.allowed(request, "lambda:InvokeFunctionUrl", arn)

    async def _startup(self, app: web.Application) -> None:
        # A bad routes file stops the start before anything starts (aiohttp runs no cleanup for a failed start).
        routes = load_routes_file(Path(self.settings.routes_file)) if self.settings.routes_file else []
        await self.tables.start()
        await self.objects.start()
        await self.notifications.start()
        await self._cache.start()
        await self._http.start()
        await self._role_permissions.start()
        for route in routes:
            await self._http.upsert_route(route)
        await self._dispatcher.start()
        self._stats_sub = await self._nc.subscribe(bus.ALL_STATS, cb=self._on_stats)

    async def _cleanup(self, app: web.Application) -> None:
        await self.tables.db.close()
        await self._sdk.close()
        await self.notifications.stop()
        await self.objects.close()
        await self.objects.db.close()
        await self._dispatcher.stop()
        await self._cache.stop()
        await self._http.stop()
        await self._role_permissions.stop()
        with contextlib.suppress(Exception):
            await self._stats_sub.unsubscribe()
        await self._channel.close()

    def _on_scale(self, event: ScaleEvent) -> None:
        """Scale events come per version; the gauges are per function: the sum of its versions'
        desired environments and queues, and panic while any version panics."""
        versions = self._scale.setdefault(event.function, {})
        versions[event.version] = event
        self.metrics.desired.labels(event.function).set(sum(e.desired for e in versions.values()))
        self.metrics.queue_depth.labels(event.function).set(sum(e.queued for e in versions.values()))
        self.metrics.panic.labels(event.function).set(1 if any(e.panic for e in versions.values()) else 0)

    async def _on_stats(self, msg: Msg) -> None:
        stats = bus.stats_of(msg)
        if stats is None:
            return
        self._environments[stats.invoker_id] = {(f.function, f.version): f.environments
                                                for f in stats.functions}
        lost = stats.nats_disconnects - self._invoker_disconnects.get(stats.invoker_id, 0)
        if lost > 0:
            self._invoker_disconnects[stats.invoker_id] = stats.nats_disconnects
            self.metrics.nats_disconnects.labels("invokers").inc(lost)
        totals: dict[str, int] = {}
        for per_invoker in self._environments.values():
            for (function, _), count in per_invoker.items():
                totals[function] = totals.get(function, 0) + count
        for function in self._gauged | set(totals):
            self.metrics.environments.labels(function).set(totals.get(function, 0))
        self._gauged |= set(totals)

    # -- kambda's own endpoints ----------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        checks = {"gateway": True, "nats": self._nc.is_connected, "controller": False}
        try:
            answer = await rpc.call(self._controller.Ping, pb.PingRequest(), timeout=2)
            checks["controller"] = True
            checks["controller_nats"] = answer.nats_connected
        except errors.KambdaError:
            pass
        ok = all(checks.values())
        return web.json_response({"status": "ok" if ok else "unavailable", "checks": checks},
                                 status=200 if ok else 503)

    @auth.requires("kambda:GetFunctionStatus")
    async def function_status(self, request: web.Request) -> web.Response:
        ref = parse_function(request.match_info["name"], request.query.get("Qualifier"))
        status = await rpc.call(self._controller.GetFunctionStatus,
                                pb.GetFunctionRequest(name=ref.name, qualifier=ref.qualifier or ""))
        return web.json_response({
            "function": status.function, "version": status.version,
            "environments": status.environments, "busy": status.busy, "queued": status.queued,
            "desired": status.desired,
        })

    @auth.requires("kambda:GetFunctionLogs")
    async def function_logs(self, request: web.Request) -> web.StreamResponse:
        """Recent log records of a function as NDJSON; ``follow=true`` keeps streaming new ones."""
        ref = parse_function(request.match_info["name"])
        await self._cache.resolve(ref.name, ref.qualifier)  # ResourceNotFound for a function that is not there
        try:
            limit = max(1, min(10_000, int(request.query.get("limit", "100"))))
        except ValueError:
            raise errors.InvalidParameterValue("limit must be an integer") from None
        follow = request.query.get("follow", "").lower() in ("1", "true", "yes")
        subject = bus.logs_subject(ref.name)
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_msg(msg: Msg) -> None:
            await queue.put(msg)

        backlog = 0
        try:
            info = await self._js.stream_info(bus.LOGS_STREAM, subjects_filter=subject)
            backlog = (info.state.subjects or {}).get(subject, 0)
        except NotFoundError:
            pass
        sub = await self._js.subscribe(subject, cb=on_msg, ordered_consumer=True,
                                       deliver_policy=DeliverPolicy.ALL if backlog else DeliverPolicy.NEW)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        try:
            recent: deque[bytes] = deque(maxlen=limit)
            while backlog:
                msg = await asyncio.wait_for(queue.get(), 10)
                recent.extend(_log_lines(msg))
                if msg.metadata.num_pending == 0:
                    break
            for line in recent:
                await response.write(line)
            while follow:
                for line in _log_lines(await queue.get()):
                    await response.write(line)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await response.write_eof()
        return response

    @auth.requires("lambda:GetFunction")
    async def code(self, request: web.Request) -> web.Response:
        """The code package behind GetFunction's Code.Location."""
        sha = request.match_info["sha"]
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise errors.ResourceNotFound("No such code package")
        try:
            data = await chunks.read_object(self._js, bus.CODE_BUCKET, sha)
        except NotFoundError:
            raise errors.ResourceNotFound("No such code package") from None
        return web.Response(body=data, content_type="application/zip")

    async def prometheus(self, request: web.Request) -> web.Response:
        """The gateway's metrics, then the controller's, then the workers' (async retries and drops,
        event source lag; one series per name, kambda/scrape.py), in one scrape."""
        body = generate_latest(self.metrics.registry)
        try:
            body += (await rpc.call(self._controller.Metrics, pb.PingRequest(), timeout=2)).text
        except errors.KambdaError:
            pass  # the gateway's own figures are still worth serving
        if self.settings.worker_metrics:
            texts = await asyncio.gather(*(self._scrape(url) for url in self.settings.worker_metrics))
            body += scrape.merge([text for text in texts if text is not None])
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _scrape(self, url: str) -> bytes | None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session, \
                    session.get(url) as response:
                return await response.read() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None  # a worker that is away leaves its figures out of this scrape


def _log_lines(msg: Msg) -> list[bytes]:
    return [orjson.dumps({
        "time": datetime.fromtimestamp(record.time_ms / 1000, UTC).isoformat(timespec="milliseconds"),
        "function": record.function, "version": record.version, "requestId": record.request_id,
        "logStream": record.environment_id, "text": record.text,
    }) + b"\n" for record in LogBatch.FromString(msg.data).records]
