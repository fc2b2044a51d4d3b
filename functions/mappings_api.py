"""The event source mapping operations of the Lambda API (2015-03-31/event-source-mappings), served through
the front door."""

from __future__ import annotations

import json
from typing import Any

from functions.render import expect, max_items
from kambda import rpc
from kambda.aws import errors
from kambda.aws.front import Context, Front
from kambda.names import Arns, parse_function
from kambda.v1 import controller_pb2 as pb
from kambda.v1.controller_pb2_grpc import ControllerStub
from kambda.v1.mapping_pb2 import EventSourceMapping

BASE = "/2015-03-31/event-source-mappings"


def render(mapping: EventSourceMapping, arns: Arns) -> dict[str, Any]:
    body: dict[str, Any] = {
        "UUID": mapping.uuid, "BatchSize": mapping.batch_size,
        "MaximumBatchingWindowInSeconds": int(mapping.batching_window),
        "EventSourceArn": mapping.event_source_arn, "FunctionArn": arns.function(mapping.function),
        "LastModified": mapping.last_modified, "State": mapping.state,
        "StateTransitionReason": mapping.state_transition_reason,
        "FunctionResponseTypes": list(mapping.function_response_types),
        "DestinationConfig": {"OnFailure": {"Destination": mapping.on_failure} if mapping.on_failure else {}},
        "ScalingConfig": {"MaximumConcurrency": mapping.maximum_concurrency},
    }
    if mapping.HasField("maximum_retry_attempts"):
        body["MaximumRetryAttempts"] = mapping.maximum_retry_attempts
    if mapping.starting_position:  # a DynamoDB stream's mapping
        body.update({"StartingPosition": mapping.starting_position,
                     "BisectBatchOnFunctionError": mapping.bisect_batch_on_function_error,
                     "ParallelizationFactor": mapping.parallelization_factor,
                     "MaximumRecordAgeInSeconds": mapping.maximum_record_age})
        del body["ScalingConfig"]
    if mapping.filter_criteria:
        body["FilterCriteria"] = json.loads(mapping.filter_criteria)
    return body


def parse(body: dict[str, Any]) -> tuple[EventSourceMapping, list[str]]:
    mapping = EventSourceMapping()
    fields: list[str] = []
    name = expect(body, "FunctionName", str, "a string")
    if name is not None:
        mapping.function = parse_function(name).name
        fields.append("function")
    source = expect(body, "EventSourceArn", str, "a string")
    if source is not None:
        mapping.event_source_arn = source
    for key, field, kind, what in (("BatchSize", "batch_size", int, "an integer"),
                                   ("MaximumBatchingWindowInSeconds", "batching_window", int, "an integer"),
                                   ("Enabled", "enabled", bool, "a boolean"),
                                   ("MaximumRetryAttempts", "maximum_retry_attempts", int, "an integer"),
                                   ("StartingPosition", "starting_position", str, "a string"),
                                   ("BisectBatchOnFunctionError", "bisect_batch_on_function_error", bool,
                                    "a boolean"),
                                   ("MaximumRecordAgeInSeconds", "maximum_record_age", int, "an integer"),
                                   ("ParallelizationFactor", "parallelization_factor", int, "an integer")):
        value = expect(body, key, kind, what)
        if value is not None:
            setattr(mapping, field, value)
            fields.append(field)
    types = expect(body, "FunctionResponseTypes", list, "a list")
    if types is not None:
        mapping.function_response_types.extend(str(t) for t in types)
        fields.append("function_response_types")
    destination = ((expect(body, "DestinationConfig", dict, "an object") or {}).get("OnFailure") or {})
    if isinstance(destination, dict) and "Destination" in destination:
        mapping.on_failure = str(destination["Destination"])
        fields.append("on_failure")
    criteria = expect(body, "FilterCriteria", dict, "an object")
    if criteria is not None:
        mapping.filter_criteria = json.dumps(criteria)
        fields.append("filter_criteria")
    scaling = expect(body, "ScalingConfig", dict, "an object")
    if scaling is not None and expect(scaling, "MaximumConcurrency", int, "an integer") is not None:
        mapping.maximum_concurrency = scaling["MaximumConcurrency"]
        fields.append("maximum_concurrency")
    return mapping, fields


class MappingsApi:
    def __init__(self, controller: ControllerStub, arns: Arns) -> None:
        self._controller = controller
        self._arns = arns

    def register(self, front: Front) -> None:
        """The mapping operations through the front door; one mapping's are authorized on its ARN."""
        front.register("lambda", "CreateEventSourceMapping", self.create)
        front.register("lambda", "ListEventSourceMappings", self.list)
        for name, handler in {"GetEventSourceMapping": self.get, "UpdateEventSourceMapping": self.update,
                              "DeleteEventSourceMapping": self.delete}.items():
            front.register("lambda", name, handler, self._resource)

    def _resource(self, ctx: Context, params: dict[str, Any]) -> list[str]:
        return [f"arn:aws:lambda:{self._arns.region}:{self._arns.account}:event-source-mapping:{params['UUID']}"]

    async def _call(self, request: pb.MappingRequest) -> dict[str, Any]:
        answer = await rpc.call(self._controller.EventSourceMappings, request)
        return render(answer.mappings[0], self._arns)

    async def create(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        mapping, _ = parse(params)
        if not mapping.function or not mapping.event_source_arn:
            raise errors.InvalidParameterValue("FunctionName and EventSourceArn are required")
        if "Enabled" not in params:
            mapping.enabled = True
        return await self._call(pb.MappingRequest(op="create", mapping=mapping))

    async def get(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await self._call(pb.MappingRequest(op="get", uuid=params["UUID"]))

    async def update(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        mapping, fields = parse(params)
        return await self._call(pb.MappingRequest(op="update", uuid=params["UUID"], mapping=mapping, fields=fields))

    async def delete(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return await self._call(pb.MappingRequest(op="delete", uuid=params["UUID"]))

    async def list(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        function = params.get("FunctionName") or ""
        answer = await rpc.call(self._controller.EventSourceMappings, pb.MappingRequest(
            op="list", function=parse_function(function).name if function else "",
            event_source_arn=params.get("EventSourceArn") or "", marker=params.get("Marker") or "",
            max_items=max_items(params.get("MaxItems"), 100)))
        body: dict[str, Any] = {"EventSourceMappings": [render(m, self._arns) for m in answer.mappings]}
        if answer.next_marker:
            body["NextMarker"] = answer.next_marker
        return body
