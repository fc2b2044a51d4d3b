"""The controller's gRPC service: function management, versions and aliases, activation and status."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

from grpc import aio
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, generate_latest

from controller import validation, versions
from controller.orchestrators.base import Orchestrator
from controller.registry import Registry, now_timestamp
from controller.scaler import Autoscaler
from events.mappings import Mappings
from kambda import bus, rpc
from kambda.aws import errors
from kambda.names import LATEST, Arns, check_qualifier, is_published_version
from kambda.v1 import controller_pb2 as pb
from kambda.v1.controller_pb2_grpc import ControllerServicer
from kambda.v1.function_pb2 import Alias, FunctionConfig
from kambda.v1.invoker_pb2 import ScaleEvent

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Fields UpdateFunctionConfiguration may change, by their FunctionConfig names.
UPDATABLE = frozenset({
    "role", "handler", "description", "timeout", "memory_size", "environment", "runtime",
    "ephemeral_storage", "tracing_mode", "layers", "log_format", "log_group", "max_environments", "snap_start",
    "dead_letter_target",
})


MUTATIONS = frozenset({"CreateFunction", "UpdateFunctionCode", "UpdateFunctionConfiguration", "DeleteFunction",
                       "PutFunctionConcurrency", "PutProvisionedConcurrency", "PutEventInvokeConfig",
                       "PublishVersion", "Aliases", "ChangeFunction"})
#: AWS's limit on a function's resource-based policy (all its statements together).
POLICY_LIMIT = 20 * 1024
#: A function's tags at most (TagResource and CreateFunction's Tags together).
TAG_LIMIT = 50


def _guard(method: Callable):  # type: ignore[type-arg]
    """Turn KambdaErrors into gRPC statuses, and anything unexpected into a ServiceException.

    Calls that change a function run one at a time per function name."""

    async def wrapper(self: ControllerService, request: object, context: aio.ServicerContext) -> object:
        try:
            if method.__name__ in MUTATIONS:
                name = request.config.name if method.__name__ == "CreateFunction" else request.name  # type: ignore[attr-defined]
                async with self._registry.lock(f"function:{name}"):
                    return await method(self, request, context)
            return await method(self, request, context)
        except errors.KambdaError as err:
            await rpc.abort_with(context, err)
        except aio.AbortError:
            raise
        except Exception:
            log.exception("%s failed", method.__name__)
            await rpc.abort_with(context, errors.ServiceError("Internal error in the controller"))
        return None  # unreachable: abort raises

    wrapper.__name__ = method.__name__
    return wrapper


class ControllerService(ControllerServicer):
    def __init__(self, nc: NATS, js: JetStreamContext, registry: Registry, autoscaler: Autoscaler,
                 orchestrator: Orchestrator, arns: Arns, max_environments: int,
                 clock: Callable[[], float], metrics_registry: CollectorRegistry,
                 mappings: Mappings) -> None:
        self._nc = nc
        self._js = js
        self._registry = registry
        self._autoscaler = autoscaler
        self._orchestrator = orchestrator
        self._arns = arns
        self._max_environments = max_environments
        self._clock = clock
        self._metrics_registry = metrics_registry
        self._mappings = mappings

    def _resolve(self, name: str, qualifier: str = "") -> FunctionConfig:
        """The configuration a qualifier names: $LATEST (none given), a published version, or the
        version an alias points to (its primary one; weights matter only when invoking)."""
        if not qualifier or qualifier == LATEST:
            return self._registry.get(name)
        if is_published_version(qualifier):
            return self._registry.get_version(name, qualifier)
        check_qualifier(qualifier)
        if not self._registry.has_alias(name, qualifier):
            self._registry.get(name)
            raise errors.function_not_found(self._arns.function(name, qualifier))
        return self._registry.get_version(name, self._registry.get_alias(name, qualifier).function_version)

    async def _reapply_all(self, name: str) -> None:
        """A function-wide setting changed: every version's scale is decided again."""
        for config in self._registry.versions(name):
            await self._autoscaler.reapply((name, config.version), self._clock())

    @_guard
    async def CreateFunction(self, request: pb.CreateFunctionRequest, context: aio.ServicerContext
                             ) -> FunctionConfig:
        config = FunctionConfig()
        config.CopyFrom(request.config)
        validation.apply_defaults(config, self._arns.role())
        validation.validate(config)
        validation.validate_destination(config.dead_letter_target, self._registry)
        if config.name in self._registry:
            raise errors.ResourceConflict(f"Function already exist: {config.name}")
        if not request.zip_file:
            raise errors.InvalidParameterValue("Please provide a source for function code.")
        info = await self._registry.store_code(request.zip_file)
        config.code_sha256 = info.sha256_hex
        config.code_size = info.size
        config.version = LATEST
        config.state = "Active"
        config.last_update_status = "Successful"
        await bus.ensure_consumer(self._js, config.name, LATEST, config.timeout)
        created = await self._registry.create(config)
        # AWS answers Pending and the function turns Active once ready; here it is ready as soon
        # as its code and queue exist, so the registry holds Active and the answer says Pending.
        answer = FunctionConfig()
        answer.CopyFrom(created)
        answer.state, answer.state_reason_code = "Pending", "Creating"
        answer.state_reason = "The function is being created."
        return answer

    @_guard
    async def GetFunction(self, request: pb.GetFunctionRequest, context: aio.ServicerContext
                          ) -> FunctionConfig:
        return self._resolve(request.name, request.qualifier)

    @_guard
    async def ListFunctions(self, request: pb.ListFunctionsRequest, context: aio.ServicerContext
                            ) -> pb.ListFunctionsResponse:
        max_items = request.max_items or 50
        if not 1 <= max_items <= 10000:
            raise errors.InvalidParameterValue(
                f"1 validation error detected: Value '{max_items}' at 'maxItems' failed to satisfy "
                "constraint: Member must have value between 1 and 10000")
        if request.all_versions:
            names = sorted({c.name for c in self._registry.all()})
            every = [c for name in names for c in self._registry.versions(name)]
            page, marker = _page(every, lambda c: f"{c.name}:{c.version}", request.marker, max_items)
        else:
            page, marker = self._registry.list(request.marker, max_items)
        return pb.ListFunctionsResponse(functions=page, next_marker=marker)

    @_guard
    async def UpdateFunctionCode(self, request: pb.UpdateFunctionCodeRequest,
                                 context: aio.ServicerContext) -> FunctionConfig:
        current = self._registry.get(request.name)
        if not request.zip_file:
            raise errors.InvalidParameterValue("Please provide a source for function code.")
        info = await self._registry.store_code(request.zip_file)
        config = FunctionConfig()
        config.CopyFrom(current)
        config.code_sha256, config.code_size = info.sha256_hex, info.size
        if request.dry_run:
            return config
        updated = await self._registry.update(config, request.revision_id)
        await self._autoscaler.reapply((updated.name, LATEST), self._clock())
        return self._in_progress(updated)

    @_guard
    async def UpdateFunctionConfiguration(self, request: pb.UpdateFunctionConfigurationRequest,
                                          context: aio.ServicerContext) -> FunctionConfig:
        current = self._registry.get(request.name)
        config = FunctionConfig()
        config.CopyFrom(current)
        for field in request.update_mask:
            if field not in UPDATABLE:
                raise errors.InvalidParameterValue(f"{field} cannot be updated")
            config.ClearField(field)
            if field in ("environment",):
                config.environment.update(request.config.environment)
            elif field in ("layers",):
                config.layers.extend(request.config.layers)
            else:
                setattr(config, field, getattr(request.config, field))
        validation.apply_defaults(config, self._arns.role())
        validation.validate(config)
        validation.validate_destination(config.dead_letter_target, self._registry)
        if config.timeout != current.timeout:
            await bus.ensure_consumer(self._js, config.name, LATEST, config.timeout)
        updated = await self._registry.update(config, request.revision_id)
        await self._autoscaler.reapply((updated.name, LATEST), self._clock())
        return self._in_progress(updated)

    @_guard
    async def PutFunctionConcurrency(self, request: pb.ConcurrencyRequest, context: aio.ServicerContext
                                     ) -> FunctionConfig:
        config = FunctionConfig()
        config.CopyFrom(self._registry.get(request.name))
        if request.value < 0:
            config.ClearField("reserved_concurrency")
        else:
            provisioned = sum(v.provisioned_concurrency for v in self._registry.versions(request.name))
            if request.value < provisioned:
                raise errors.InvalidParameterValue(
                    "ReservedConcurrentExecutions must be at least the function's provisioned "
                    f"concurrency ({provisioned}, all versions together)")
            config.reserved_concurrency = request.value
        updated = await self._registry.update(config)
        await self._reapply_all(updated.name)
        return updated

    @_guard
    async def ChangeFunction(self, request: pb.ChangeFunctionRequest, context: aio.ServicerContext
                             ) -> FunctionConfig:
        """Tags, resource-policy statements and the runtime management config: kept on $LATEST (tags and
        policies are the function's, whatever the qualifier); tags change no RevisionId, a policy change
        gives a new one (AddPermission's and RemovePermission's RevisionId checks it)."""
        config = FunctionConfig()
        config.CopyFrom(self._registry.get(request.name))
        if request.tag or request.untag:
            for key in request.untag:
                config.tags.pop(key, None)
            config.tags.update(request.tag)
            if len(config.tags) > TAG_LIMIT:
                raise errors.InvalidParameterValue(f"Number of tags exceeds resource tag limit ({TAG_LIMIT}).")
        if request.add_statement or request.remove_statement:
            if request.qualifier:
                self._resolve(request.name, request.qualifier)  # a version or alias that is not there: 404
            if request.revision_id and request.revision_id != config.revision_id:
                raise errors.PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. Call the "
                    "GetFunction/GetAlias API to retrieve the latest Revision Id")
            statements = list(config.policies[request.qualifier].statements)
            sids = [json.loads(s).get("Sid") for s in statements]
            if request.add_statement:
                sid = json.loads(request.add_statement).get("Sid")
                if sid in sids:
                    raise errors.ResourceConflict(
                        f"The statement id ({sid}) provided already exists. Please provide a new statement id, "
                        "or remove the existing statement.")
                statements.append(request.add_statement)
                size = sum(len(s) for s in statements)
                if size > POLICY_LIMIT:
                    raise errors.PolicyLengthExceeded(
                        f"The final policy size ({size}) is bigger than the limit ({POLICY_LIMIT}).")
            else:
                if request.remove_statement not in sids:
                    raise errors.ResourceNotFound(
                        f"Statement {request.remove_statement} is not found in resource policy.")
                del statements[sids.index(request.remove_statement)]
            if statements:
                config.policies[request.qualifier].ClearField("statements")
                config.policies[request.qualifier].statements.extend(statements)
            else:
                del config.policies[request.qualifier]
            config.revision_id = str(uuid.uuid4())
        if request.runtime_update_mode:
            config.runtime_update_mode = request.runtime_update_mode
            config.runtime_version_arn = request.runtime_version_arn
        return await self._registry.update(config, touch=False)

    @_guard
    async def PutProvisionedConcurrency(self, request: pb.ConcurrencyRequest, context: aio.ServicerContext
                                        ) -> FunctionConfig:
        config = FunctionConfig()
        config.CopyFrom(self._resolve(request.name, request.qualifier))
        function = self._registry.get(request.name)  # reserved concurrency and the cap are function-wide
        value = max(0, request.value)
        if request.value >= 0 and value < 1:
            raise errors.InvalidParameterValue(
                "1 validation error detected: Value '0' at 'provisionedConcurrentExecutions' failed to "
                "satisfy constraint: Member must have value greater than or equal to 1")
        if function.HasField("reserved_concurrency") and value > function.reserved_concurrency:
            raise errors.InvalidParameterValue(
                f"Provisioned concurrency ({value}) cannot exceed the function's reserved concurrency "
                f"({function.reserved_concurrency})")
        if value > self._max_environments and not function.max_environments:
            raise errors.InvalidParameterValue(
                f"Provisioned concurrency ({value}) cannot exceed the per-function limit of "
                f"{self._max_environments} environments")
        if request.value < 0 and not config.provisioned_concurrency:
            raise errors.ResourceNotFound(
                f"No Provisioned Concurrency Config found for this function: "
                f"{self._arns.function(request.name, request.qualifier or LATEST)}")
        config.provisioned_concurrency = value
        config.provisioned_last_modified = now_timestamp() if value else ""
        updated = await self._registry.update(config, touch=config.version == LATEST)
        await self._autoscaler.reapply((updated.name, updated.version), self._clock())
        return updated

    @_guard
    async def PutEventInvokeConfig(self, request: pb.EventInvokeConfigRequest, context: aio.ServicerContext
                                   ) -> FunctionConfig:
        config = FunctionConfig()
        config.CopyFrom(self._resolve(request.name, request.qualifier))
        arn = self._arns.function(request.name, request.qualifier or None)
        if request.mode == "delete":
            if not config.HasField("event_invoke_config"):
                raise errors.ResourceNotFound(f"The function {arn} doesn't have an EventInvokeConfig")
            config.ClearField("event_invoke_config")
        else:
            if request.mode == "update":
                if not config.HasField("event_invoke_config"):
                    raise errors.ResourceNotFound(f"The function {arn} doesn't have an EventInvokeConfig")
                eic = config.event_invoke_config
                for field in request.fields:
                    if field in ("on_success", "on_failure") or request.config.HasField(field):
                        setattr(eic, field, getattr(request.config, field))
            else:
                config.event_invoke_config.CopyFrom(request.config)
            validation.validate_event_invoke_config(config.event_invoke_config, self._registry)
            config.event_invoke_config.last_modified = now_timestamp()
        return await self._registry.update(config, touch=config.version == LATEST)

    @_guard
    async def EventSourceMappings(self, request: pb.MappingRequest, context: aio.ServicerContext
                                  ) -> pb.MappingResponse:
        sources = self._mappings
        if request.op == "create":
            return pb.MappingResponse(mappings=[await sources.create(request.mapping)])
        if request.op == "get":
            return pb.MappingResponse(mappings=[sources.get(request.uuid)])
        if request.op == "update":
            return pb.MappingResponse(mappings=[await sources.update(request.uuid, request.mapping,
                                                                     list(request.fields))])
        if request.op == "delete":
            return pb.MappingResponse(mappings=[await sources.delete(request.uuid)])
        if request.op == "list":
            page, marker = sources.list(request.function, request.event_source_arn, request.marker,
                                        request.max_items or 100)
            return pb.MappingResponse(mappings=page, next_marker=marker)
        raise errors.InvalidParameterValue(f"Unknown event source mapping operation {request.op!r}")

    @_guard
    async def Metrics(self, request: pb.PingRequest, context: aio.ServicerContext) -> pb.MetricsResponse:
        return pb.MetricsResponse(text=generate_latest(self._metrics_registry))

    @staticmethod
    def _in_progress(config: FunctionConfig) -> FunctionConfig:
        answer = FunctionConfig()
        answer.CopyFrom(config)
        answer.last_update_status = "InProgress"
        return answer

    @_guard
    async def DeleteFunction(self, request: pb.DeleteFunctionRequest, context: aio.ServicerContext
                             ) -> pb.DeleteFunctionResponse:
        name, qualifier = request.name, request.qualifier
        if qualifier == LATEST:
            raise errors.InvalidParameterValue(
                "$LATEST version cannot be deleted without deleting the function.")
        if not qualifier:
            for config in self._registry.versions(name):
                await self._autoscaler.forget((name, config.version))
            for config in await self._registry.delete(name):
                await self._retire(name, config.version)
            return pb.DeleteFunctionResponse()
        if not is_published_version(qualifier):
            self._resolve(name, qualifier)  # an alias that does not exist is a 404
            raise errors.InvalidParameterValue(
                f"Qualifier {qualifier} is an alias: delete it with DeleteAlias, or give a version number")
        self._registry.get_version(name, qualifier)
        users = [a.name for a in self._registry.aliases(name)
                 if qualifier == a.function_version or qualifier in a.additional_version_weights]
        if users:
            raise errors.ResourceConflict(
                f"Unable to delete version because the following aliases reference it: [{', '.join(users)}]")
        await self._autoscaler.forget((name, qualifier))
        await self._registry.delete_version(name, qualifier)
        await self._retire(name, qualifier)
        return pb.DeleteFunctionResponse()

    async def _retire(self, name: str, version: str) -> None:
        """A version is gone (its environments were scaled to zero while it still existed, so the
        orchestrator could be told): no queue, no consumer left for it. The gateways hear that it has
        no environment, so a version made again under the same name is activated afresh."""
        await self._nc.publish(bus.scale_subject(name), ScaleEvent(function=name, version=version).SerializeToString())
        await self._orchestrator.forget(name, version)
        await bus.delete_consumer(self._js, name, version)
        try:
            await self._js.purge_stream(bus.SYNC_STREAM, subject=bus.sync_subject(name, version))
        except NotFoundError:
            pass

    # -- versions and aliases ------------------------------------------------------------------

    @_guard
    async def PublishVersion(self, request: pb.PublishVersionRequest, context: aio.ServicerContext
                             ) -> FunctionConfig:
        latest = FunctionConfig()
        latest.CopyFrom(self._registry.get(request.name))
        versions.check_preconditions(latest, request.code_sha256, request.revision_id)
        newest = self._registry.versions(request.name)[-1]
        if versions.unchanged_since(latest, newest if newest.version != LATEST else None):
            return newest
        # The counter is committed before the version, so a number is never given out twice.
        latest.last_published += 1
        await self._registry.update(latest, touch=False)
        description = request.description if request.HasField("description") else None
        version = versions.new_version(latest, latest.last_published, description)
        await bus.ensure_consumer(self._js, version.name, version.version, version.timeout)
        return await self._registry.add_version(version)

    @_guard
    async def ListVersions(self, request: pb.ListVersionsRequest, context: aio.ServicerContext
                           ) -> pb.ListFunctionsResponse:
        every = self._registry.versions(request.name)
        page, marker = _page(every, lambda c: c.version, request.marker, request.max_items)
        return pb.ListFunctionsResponse(functions=page, next_marker=marker)

    @_guard
    async def Aliases(self, request: pb.AliasRequest, context: aio.ServicerContext) -> pb.AliasResponse:
        name, registry = request.name, self._registry
        registry.get(name)
        if request.op == "list":
            found = [a for a in registry.aliases(name)
                     if not request.function_version or a.function_version == request.function_version]
            page, marker = _page(found, lambda a: a.name, request.marker, request.max_items)
            return pb.AliasResponse(aliases=page, next_marker=marker)
        alias_name = request.alias.name
        if request.op == "get":
            return pb.AliasResponse(aliases=[registry.get_alias(name, alias_name)])
        if request.op == "delete":
            await registry.delete_alias(name, alias_name)
            return pb.AliasResponse()
        if request.op == "create":
            alias = Alias()
            alias.CopyFrom(request.alias)
            alias.function = name
            validation.validate_alias(alias, lambda v: registry.has_version(name, v), self._arns)
            if registry.has_alias(name, alias.name):
                raise errors.ResourceConflict(f"Alias already exists: {self._arns.function(name, alias.name)}")
            return pb.AliasResponse(aliases=[await registry.put_alias(alias)])
        if request.op == "update":
            current = registry.get_alias(name, alias_name)
            if request.revision_id and request.revision_id != current.revision_id:
                raise errors.PreconditionFailed(
                    "The Revision Id provided does not match the latest Revision Id. Call the "
                    "GetFunction/GetAlias API to retrieve the latest Revision Id")
            alias = Alias()
            alias.CopyFrom(current)
            for field in request.fields:
                if field == "additional_version_weights":
                    alias.ClearField(field)
                    alias.additional_version_weights.update(request.alias.additional_version_weights)
                else:
                    setattr(alias, field, getattr(request.alias, field))
            validation.validate_alias(alias, lambda v: registry.has_version(name, v), self._arns)
            return pb.AliasResponse(aliases=[await registry.put_alias(alias)])
        raise errors.InvalidParameterValue(f"Unknown alias operation {request.op!r}")

    @_guard
    async def Activate(self, request: pb.ActivateRequest, context: aio.ServicerContext
                       ) -> pb.ActivateResponse:
        version = request.version or LATEST
        self._registry.get_version(request.function, version)
        desired = await self._autoscaler.activate((request.function, version), self._clock(),
                                                  request.in_flight)
        return pb.ActivateResponse(desired=desired)

    @_guard
    async def GetFunctionStatus(self, request: pb.GetFunctionRequest, context: aio.ServicerContext
                                ) -> pb.FunctionStatus:
        version = self._resolve(request.name, request.qualifier).version
        stats = await self._orchestrator.current(request.name, version)
        info = await self._js.consumer_info(bus.SYNC_STREAM, bus.consumer_name(request.name, version))
        return pb.FunctionStatus(
            function=request.name, version=version, environments=stats.environments,
            busy=info.num_ack_pending or 0, queued=info.num_pending or 0,
            desired=self._autoscaler.desired((request.name, version)),
        )

    @_guard
    async def Ping(self, request: pb.PingRequest, context: aio.ServicerContext) -> pb.PingResponse:
        return pb.PingResponse(nats_connected=self._nc.is_connected)



def _page(items: list[T], key: Callable[[T], str], marker: str, max_items: int) -> tuple[list[T], str]:
    """One page of ``items`` after the item whose key is ``marker``; the next marker, or ""."""
    max_items = max_items or 50
    if not 1 <= max_items <= 10000:
        raise errors.InvalidParameterValue(
            f"1 validation error detected: Value '{max_items}' at 'maxItems' failed to satisfy "
            "constraint: Member must have value between 1 and 10000")
    keys = [key(item) for item in items]
    start = keys.index(marker) + 1 if marker in keys else 0
    page = items[start:start + max_items]
    return page, key(page[-1]) if page and start + max_items < len(items) else ""
