"""The event source mapping operations of the Lambda API (2015-03-31/event-source-mappings)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from functions.render import expect, max_items
from kambda import rpc
from kambda.aws import auth, errors
from kambda.aws.bodies import json_body
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
                                   ("MaximumRetryAttempts", "maximum_retry_attempts", int, "an integer")):
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
    scaling = expect(body, "ScalingConfig", dict, "an object")
    if scaling is not None and expect(scaling, "MaximumConcurrency", int, "an integer") is not None:
        mapping.maximum_concurrency = scaling["MaximumConcurrency"]
        fields.append("maximum_concurrency")
    return mapping, fields


class MappingsApi:
    def __init__(self, controller: ControllerStub, arns: Arns) -> None:
        self._controller = controller
        self._arns = arns

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(BASE + "/", self.create), web.post(BASE, self.create),
            web.get(BASE + "/", self.list), web.get(BASE, self.list),
            web.get(BASE + "/{uuid}", self.get), web.put(BASE + "/{uuid}", self.update),
            web.delete(BASE + "/{uuid}", self.delete),
        ]

    async def _call(self, request: pb.MappingRequest) -> pb.MappingResponse:
        return await rpc.call(self._controller.EventSourceMappings, request)

    def _answer(self, mapping: EventSourceMapping, status: int) -> web.Response:
        return web.Response(body=orjson.dumps(render(mapping, self._arns)), status=status,
                            content_type="application/json")

    @auth.requires("lambda:CreateEventSourceMapping")
    async def create(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        mapping, _ = parse(body)
        if not mapping.function or not mapping.event_source_arn:
            raise errors.InvalidParameterValue("FunctionName and EventSourceArn are required")
        if "Enabled" not in body:
            mapping.enabled = True
        answer = await self._call(pb.MappingRequest(op="create", mapping=mapping))
        return self._answer(answer.mappings[0], 202)

    @auth.requires("lambda:GetEventSourceMapping")
    async def get(self, request: web.Request) -> web.Response:
        answer = await self._call(pb.MappingRequest(op="get", uuid=request.match_info["uuid"]))
        return self._answer(answer.mappings[0], 200)

    @auth.requires("lambda:UpdateEventSourceMapping")
    async def update(self, request: web.Request) -> web.Response:
        mapping, fields = parse(await json_body(request))
        answer = await self._call(pb.MappingRequest(op="update", uuid=request.match_info["uuid"], mapping=mapping,
                                                    fields=fields))
        return self._answer(answer.mappings[0], 202)

    @auth.requires("lambda:DeleteEventSourceMapping")
    async def delete(self, request: web.Request) -> web.Response:
        answer = await self._call(pb.MappingRequest(op="delete", uuid=request.match_info["uuid"]))
        return self._answer(answer.mappings[0], 202)

    @auth.requires("lambda:ListEventSourceMappings")
    async def list(self, request: web.Request) -> web.Response:
        function = request.query.get("FunctionName", "")
        most = max_items(request.query.get("MaxItems", ""), 100)
        answer = await self._call(pb.MappingRequest(
            op="list", function=parse_function(function).name if function else "",
            event_source_arn=request.query.get("EventSourceArn", ""), marker=request.query.get("Marker", ""),
            max_items=most))
        body: dict[str, Any] = {"EventSourceMappings": [render(m, self._arns) for m in answer.mappings]}
        if answer.next_marker:
            body["NextMarker"] = answer.next_marker
        return web.Response(body=orjson.dumps(body), content_type="application/json")
