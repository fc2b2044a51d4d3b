"""The AWS Lambda API (2015-03-31): management calls and Invoke.

Management calls are operations of the front door (kambda/aws/front.py parses them against botocore's
model and renders results and errors), forwarded to the controller over gRPC. Invoke keeps a route of its
own, measured as the hot path: its payload is the body as it came, onto the bus through the dispatcher.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from functions import render
from functions.metrics import Metrics
from functions.registry_cache import RegistryCache
from kambda import bus, logs, rpc
from kambda.aws import auth, errors
from kambda.aws.bodies import read_capped
from kambda.aws.front import Context, Front
from kambda.bus.dispatch import Dispatcher
from kambda.names import Arns, FunctionRef, new_request_id, parse_function
from kambda.v1 import controller_pb2 as pb
from kambda.v1.controller_pb2_grpc import ControllerStub
from kambda.v1.function_pb2 import FunctionConfig
from kambda.v1.invocation_pb2 import Invocation, InvocationResult

log = logging.getLogger(__name__)

MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 256 * 1024
MAX_CLIENT_CONTEXT = 3583
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
LOG_TYPES = ("None", "Tail")
#: Slack on top of (queue allowance + function timeout) for the result to travel back.
RESULT_MARGIN_S = 5.0


class LambdaApi:
    def __init__(self, controller: ControllerStub, cache: RegistryCache, dispatcher: Dispatcher,
                 metrics: Metrics, arns: Arns, queue_timeout: float, throttle_wait: float) -> None:
        self._controller = controller
        self._cache = cache
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._arns = arns
        self._queue_timeout = queue_timeout
        self._throttle_wait = throttle_wait
        #: Called with a function's name after DeleteFunction (its triggers go with it).
        self.on_delete: list[Callable[[str], Awaitable[None]]] = []

    def _throttled(self, function: str, version: str, reason: str) -> None:
        self._metrics.invocations.labels(function, version, "throttled").inc()
        self._metrics.throttles.labels(function, reason).inc()

    def routes(self) -> list[web.RouteDef]:
        """Invoke's fast path: a route of its own, ahead of the front door (no model parse on the hot path)."""
        return [web.post("/2015-03-31/functions/{name}/invocations", self.invoke)]

    def register(self, front: Front) -> None:
        """Every management operation through the front door, authorized on the function's ARN (qualified
        when the request names a qualifier)."""
        function = function_resource(self._arns)
        for name, handler in {
            "CreateFunction": self.create_function, "GetFunction": self.get_function,
            "GetFunctionConfiguration": self.get_function_configuration, "DeleteFunction": self.delete_function,
            "UpdateFunctionConfiguration": self.update_function_configuration,
            "UpdateFunctionCode": self.update_function_code,
            "PutFunctionConcurrency": self.put_concurrency, "GetFunctionConcurrency": self.get_concurrency,
            "DeleteFunctionConcurrency": self.delete_concurrency,
            "PutProvisionedConcurrencyConfig": self.put_provisioned,
            "GetProvisionedConcurrencyConfig": self.get_provisioned,
            "DeleteProvisionedConcurrencyConfig": self.delete_provisioned,
            "PutFunctionEventInvokeConfig": self.put_event_invoke_config,
            "UpdateFunctionEventInvokeConfig": self.update_event_invoke_config,
            "GetFunctionEventInvokeConfig": self.get_event_invoke_config,
            "DeleteFunctionEventInvokeConfig": self.delete_event_invoke_config,
        }.items():
            front.register("lambda", name, handler, function)
        front.register("lambda", "ListFunctions", self.list_functions)

    # -- management --------------------------------------------------------------------------

    async def create_function(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"])
        code = params.get("Code")
        if not isinstance(code, dict) or "ZipFile" not in code:
            raise errors.InvalidParameterValue(
                "Please provide a source for function code: kambda accepts Code.ZipFile.")
        config, _ = render.parse_config(params, ref.name)
        created = await rpc.call(self._controller.CreateFunction,
                                 pb.CreateFunctionRequest(config=config, zip_file=render.decode_zip(code["ZipFile"])))
        self._cache.put(created)
        return await self._answer(params, created)

    async def get_function(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        config = await self._get(ref)
        location = auth.presign(ctx.request, f"/_kambda/v1/code/{config.code_sha256}")
        # Tags are the function's (TagResource changes $LATEST), whichever version is asked for.
        tagged = config if not ref.qualifier else await self._get(FunctionRef(ref.name, None))
        return {
            "Configuration": render.configuration(config, self._arns, qualifier=ref.qualifier),
            "Code": {"RepositoryType": "S3", "Location": location},
            "Tags": dict(tagged.tags),
        }

    async def get_function_configuration(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        return render.configuration(await self._get(ref), self._arns, qualifier=ref.qualifier)

    async def _get(self, ref: FunctionRef) -> Any:
        """The configuration the qualifier names (an alias: the version it points to)."""
        return await rpc.call(self._controller.GetFunction,
                              pb.GetFunctionRequest(name=ref.name, qualifier=ref.qualifier or ""))

    async def list_functions(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        max_items = params.get("MaxItems", 50)
        if not 1 <= max_items <= 10_000:
            raise errors.Validation(f"1 validation error detected: Value '{max_items}' at 'maxItems' failed to "
                                    "satisfy constraint: Member must have value between 1 and 10000")
        version = params.get("FunctionVersion")
        if version not in (None, "ALL"):
            raise errors.Validation(f"1 validation error detected: Value '{version}' at 'functionVersion' failed "
                                    "to satisfy constraint: Member must satisfy enum value set: [ALL]")
        answer = await rpc.call(self._controller.ListFunctions,
                                pb.ListFunctionsRequest(marker=params.get("Marker", ""), max_items=max_items,
                                                        all_versions=version == "ALL"))
        # With every version listed, each entry names its version in its ARN (as ListVersionsByFunction).
        body: dict[str, Any] = {"Functions": [render.configuration(c, self._arns, qualified=version == "ALL")
                                              for c in answer.functions]}
        if answer.next_marker:
            body["NextMarker"] = answer.next_marker
        return body

    async def update_function_code(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"])
        if "ZipFile" not in params:
            raise errors.InvalidParameterValue(
                "Please provide a source for function code: kambda accepts ZipFile.")
        updated = await rpc.call(self._controller.UpdateFunctionCode, pb.UpdateFunctionCodeRequest(
            name=ref.name, zip_file=render.decode_zip(params["ZipFile"]),
            revision_id=params.get("RevisionId") or "", dry_run=bool(params.get("DryRun"))))
        self._cache.put(updated)
        return await self._answer(params, updated)

    async def _answer(self, params: dict[str, Any], config: Any) -> dict[str, Any]:
        """The configuration, or with ``Publish: true`` (and no DryRun) the version published from it."""
        if params.get("Publish") is not True or params.get("DryRun") is True:
            return render.configuration(config, self._arns)
        version = await rpc.call(self._controller.PublishVersion, pb.PublishVersionRequest(name=config.name))
        self._cache.put(version)
        return render.configuration(version, self._arns, qualified=True)

    async def update_function_configuration(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"])
        config, mask = render.parse_config(params, ref.name)
        updated = await rpc.call(self._controller.UpdateFunctionConfiguration,
                                 pb.UpdateFunctionConfigurationRequest(
                                     name=ref.name, config=config, update_mask=mask,
                                     revision_id=params.get("RevisionId") or ""))
        self._cache.put(updated)
        return render.configuration(updated, self._arns)

    async def delete_function(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        await rpc.call(self._controller.DeleteFunction,
                       pb.DeleteFunctionRequest(name=ref.name, qualifier=ref.qualifier or ""))
        self._cache.forget(ref.name, ref.qualifier)
        if ref.qualifier is None:
            for hook in self.on_delete:
                await hook(ref.name)
        return {"StatusCode": 204}  # the model's status-code member: AWS answers 204

    # -- concurrency ---------------------------------------------------------------------------

    async def put_concurrency(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"])
        value = _count(params.get("ReservedConcurrentExecutions"), "reservedConcurrentExecutions", 0)
        config = await rpc.call(self._controller.PutFunctionConcurrency,
                                pb.ConcurrencyRequest(name=ref.name, value=value))
        self._cache.put(config)
        return {"ReservedConcurrentExecutions": config.reserved_concurrency}

    async def get_concurrency(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        config = await self._get(parse_function(params["FunctionName"]))
        if config.HasField("reserved_concurrency"):
            return {"ReservedConcurrentExecutions": config.reserved_concurrency}
        return {}

    async def delete_concurrency(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"])
        config = await rpc.call(self._controller.PutFunctionConcurrency,
                                pb.ConcurrencyRequest(name=ref.name, value=-1))
        self._cache.put(config)
        return {}

    async def put_provisioned(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        value = _count(params.get("ProvisionedConcurrentExecutions"), "provisionedConcurrentExecutions", 1)
        await rpc.call(self._controller.PutProvisionedConcurrency,
                       pb.ConcurrencyRequest(name=ref.name, qualifier=ref.qualifier or "", value=value))
        return await self._provisioned_status(ref.name, ref.qualifier or "")

    async def get_provisioned(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        return await self._provisioned_status(ref.name, ref.qualifier or "")

    async def _provisioned_status(self, name: str, qualifier: str) -> dict[str, Any]:
        config = await rpc.call(self._controller.GetFunction, pb.GetFunctionRequest(name=name, qualifier=qualifier))
        requested = config.provisioned_concurrency
        if not requested:
            raise errors.ProvisionedConcurrencyConfigNotFound(
                "No Provisioned Concurrency Config found for this function")
        status = await rpc.call(self._controller.GetFunctionStatus,
                                pb.GetFunctionRequest(name=name, qualifier=qualifier))
        ready = min(requested, status.environments)
        return {"RequestedProvisionedConcurrentExecutions": requested,
                "AllocatedProvisionedConcurrentExecutions": ready,
                "AvailableProvisionedConcurrentExecutions": ready,
                "Status": "READY" if ready >= requested else "IN_PROGRESS",
                "LastModified": config.provisioned_last_modified}

    async def delete_provisioned(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        await rpc.call(self._controller.PutProvisionedConcurrency,
                       pb.ConcurrencyRequest(name=ref.name, qualifier=ref.qualifier or "", value=-1))
        return {}

    # -- event invoke config -------------------------------------------------------------------

    async def put_event_invoke_config(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await self._event_invoke_config(params, "put")

    async def update_event_invoke_config(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await self._event_invoke_config(params, "update")

    async def delete_event_invoke_config(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        await rpc.call(self._controller.PutEventInvokeConfig, pb.EventInvokeConfigRequest(
            name=ref.name, qualifier=ref.qualifier or "", mode="delete"))
        return {}

    async def get_event_invoke_config(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        config = await self._get(parse_function(params["FunctionName"], params.get("Qualifier")))
        if not config.HasField("event_invoke_config"):
            raise errors.ResourceNotFound(
                f"The function {self._arns.function(config.name)} doesn't have an EventInvokeConfig")
        return render.event_invoke_config(config, self._arns)

    async def _event_invoke_config(self, params: dict[str, Any], mode: str) -> dict[str, Any]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        eic, fields = render.parse_event_invoke_config(params)
        config = await rpc.call(self._controller.PutEventInvokeConfig, pb.EventInvokeConfigRequest(
            name=ref.name, qualifier=ref.qualifier or "", config=eic, mode=mode, fields=fields))
        self._cache.put(config)
        return render.event_invoke_config(config, self._arns)

    # -- invoke ------------------------------------------------------------------------------

    @auth.requires("lambda:InvokeFunction")
    async def invoke(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        ref = parse_function(request.match_info["name"], request.query.get("Qualifier"))
        config, version, function = await self._cache.resolve(ref.name, ref.qualifier)
        invocation_type = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if invocation_type not in INVOCATION_TYPES:
            raise _enum_error("invocationType", invocation_type, INVOCATION_TYPES)
        log_type = request.headers.get("X-Amz-Log-Type", "None")
        if log_type not in LOG_TYPES:
            raise _enum_error("logType", log_type, LOG_TYPES)
        limit = MAX_ASYNC_PAYLOAD if invocation_type == "Event" else MAX_SYNC_PAYLOAD
        payload = await _read_limited(request, limit)
        if invocation_type == "DryRun":
            return web.Response(status=204)
        payload = _checked_json(payload)
        inv = Invocation(
            request_id=_received(ref.name), function=ref.name, version=version,
            invoked_arn=self._arns.function(ref.name, ref.qualifier),
            payload=payload, client_context=_client_context(request.headers.get("X-Amz-Client-Context")),
            trace_id=request.headers.get("X-Amzn-Trace-Id", ""), log_tail=log_type == "Tail",
            invocation_type=invocation_type, enqueued_ms=int(time.time() * 1000),
            code_sha256=config.code_sha256,
        )
        if invocation_type == "Event":
            # Stored durably first (file-backed stream), then 202; the controller runs and retries it.
            await self._dispatcher.store(bus.async_subject(ref.name, version), inv.SerializeToString())
            self._metrics.invocations.labels(ref.name, version, "queued").inc()
            return web.Response(status=202, headers={"x-amzn-RequestId": inv.request_id})
        result = await self._run(inv, config, function)
        headers = {"X-Amz-Executed-Version": result.executed_version or version,
                   "x-amzn-RequestId": inv.request_id, "Content-Type": "application/json"}
        if result.function_error:
            headers["X-Amz-Function-Error"] = result.function_error
        if inv.log_tail:
            headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail).decode()
        if result.cold_start:
            headers["Kambda-Cold-Start"] = "true"
        self._answered(ref.name, version, started, result)
        return web.Response(body=result.payload, headers=headers)

    def _answered(self, function: str, version: str, started: float, result: InvocationResult) -> None:
        """Count a sync invocation answered (metrics, and the debug line that ends its log)."""
        elapsed = time.monotonic() - started
        self._metrics.invoked(function, result.executed_version or version,
                              "function_error" if result.function_error else "success", elapsed, result.cold_start)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("invoke answered in %.2f ms%s", elapsed * 1000, " (cold start)" if result.cold_start else "",
                      extra={"event": "invoke.answered", "function": function})

    async def _run(self, inv: Invocation, config: FunctionConfig, function: FunctionConfig) -> InvocationResult:
        """Queue a sync invocation of ``config`` (the version that runs) and wait for its result, with the
        function-wide reserved concurrency of ``function`` ($LATEST) and throttles applied."""
        queue_wait, reason = self._queue_timeout, "ConcurrentInvocationLimitExceeded"
        if function.HasField("reserved_concurrency"):
            # Past its reserved concurrency a request waits only briefly for an environment.
            queue_wait, reason = self._throttle_wait, "ReservedFunctionConcurrentInvocationLimitExceeded"
            if function.reserved_concurrency == 0:
                self._throttled(inv.function, inv.version, reason)
                raise errors.TooManyRequests("Rate Exceeded.", Reason=reason)
        # The invoker says when the run starts, so a request that cannot start before its start
        # deadline (the invoker drops it then) is answered 429 at that deadline, not after the
        # function's timeout on top.
        inv.notify_start = True
        inv.start_deadline_ms = inv.enqueued_ms + int(queue_wait * 1000)
        try:
            result = await self._dispatcher.invoke(
                inv, queue_wait + config.timeout + RESULT_MARGIN_S, start_wait_s=queue_wait, throttle_reason=reason)
        except errors.TooManyRequests as exc:
            self._throttled(inv.function, inv.version, str(exc.extra.get("Reason", reason)))
            raise
        if result.error_code:
            self._metrics.invocations.labels(inv.function, inv.version, "error").inc()
            raise errors.from_code(result.error_code, result.error_message)
        return result

    async def call(self, ref: FunctionRef, payload: bytes, trace_id: str = "") -> InvocationResult:
        """A sync invoke on behalf of a trigger (HTTP routes, function URLs): the same path as Invoke.

        Raises ResourceNotFound for an unknown function, TooManyRequests when throttled, and any
        other KambdaError when kambda could not run it; a function error is in the result.
        """
        started = time.monotonic()
        config, version, function = await self._cache.resolve(ref.name, ref.qualifier)
        inv = Invocation(
            request_id=_received(ref.name), function=ref.name, version=version,
            invoked_arn=self._arns.function(ref.name, ref.qualifier), payload=payload, trace_id=trace_id,
            invocation_type="RequestResponse", enqueued_ms=int(time.time() * 1000), code_sha256=config.code_sha256,
        )
        result = await self._run(inv, config, function)
        self._answered(ref.name, version, started, result)
        return result


def _received(function: str) -> str:
    """A new invocation's request id, which every log line of the request now carries."""
    rid = new_request_id()
    logs.request_id.set(rid)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("invoke received", extra={"event": "invoke.received", "function": function})
    return rid


#: The largest count the registry stores (protobuf int32).
MAX_COUNT = 2**31 - 1


def _count(value: Any, field: str, least: int) -> int:
    """A concurrency count from a request body: an integer from ``least`` up to MAX_COUNT."""
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise errors.InvalidParameterValue(
            f"1 validation error detected: Value at '{field}' failed to satisfy "
            f"constraint: Member must have value greater than or equal to {least}")
    if value > MAX_COUNT:
        raise errors.InvalidParameterValue(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy "
            f"constraint: Member must have value less than or equal to {MAX_COUNT}")
    return value


def _enum_error(field: str, value: str, allowed: tuple[str, ...]) -> errors.Validation:
    return errors.Validation(
        f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
        f"Member must satisfy enum value set: [{', '.join(allowed)}]")


async def _read_limited(request: web.Request, limit: int) -> bytes:
    body = await read_capped(request, limit)
    if body is None:
        raise errors.RequestEntityTooLarge(
            f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
    return body


def _checked_json(payload: bytes) -> bytes:
    """The payload as the function will see it: JSON, with an empty body meaning {}."""
    if not payload.strip():
        return b"{}"
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise errors.InvalidRequestContent(
            f"Could not parse request body into json: Could not parse payload into json: {exc}") from None
    return payload


def _client_context(header: str | None) -> str:
    if not header:
        return ""
    if len(header) > MAX_CLIENT_CONTEXT:
        raise errors.InvalidRequestContent(
            f"Client context must be at most {MAX_CLIENT_CONTEXT} bytes, base64-encoded")
    try:
        decoded = base64.b64decode(header, validate=True)
        if not isinstance(orjson.loads(decoded), dict):
            raise ValueError("not an object")
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise errors.InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.") from None
    return decoded.decode()


def function_resource(arns: Arns) -> Callable[[Context, dict[str, Any]], list[str]]:
    """The IAM resource of an operation on one function: its ARN, qualified when the request names a qualifier."""

    def resources(ctx: Context, params: dict[str, Any]) -> list[str]:
        ref = parse_function(params["FunctionName"], params.get("Qualifier"))
        return [arns.function(ref.name, ref.qualifier)]

    return resources
